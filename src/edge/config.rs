//! The daemon's configuration: TOML layers plus `INSPRO__SECTION__KEY` environment overrides (the
//! `config` crate), deserialised with the path of any bad field, then validated field by field.
//! Secrets (the MQTT password) never come from the config file: they are read from the
//! environment or from `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), and never logged.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tracking::TrackerConfig;

/// The commented default configuration (`inspro config default`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../configs/edge.toml");

/// Exit status of a bad configuration (sysexits.h EX_CONFIG).
pub const EX_CONFIG: u8 = 78;

/// A configuration error that names the field and says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config error: {field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    pub model: ModelSection,
    pub engine: EngineSection,
    #[serde(rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    pub tracking: TrackerConfig,
    pub mqtt: MqttConfig,
    pub publish: PublishConfig,
    pub service: ServiceConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Model config TOML (`configs/models/*.toml`).
    pub config: PathBuf,
    /// safetensors weights; when unset, `engines/<model name>/model.safetensors` is tried, and
    /// without it the model runs with random weights (said loudly in the log).
    pub weights: Option<PathBuf>,
    /// Seed of the random weights.
    pub seed: u64,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            config: PathBuf::from("configs/models/inspro-tiny.toml"),
            weights: None,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Candle,
    Onnxruntime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub kind: EngineKind,
    /// ONNX graph for `onnxruntime`; unset: `engines/<model name>/model.onnx`.
    pub onnx: Option<PathBuf>,
    /// Engine cache (TensorRT plans) for `onnxruntime`; unset: `$CACHE_DIRECTORY` or none.
    pub cache_dir: Option<PathBuf>,
    /// Execution provider for `onnxruntime`: `cpu`, `cuda` or `tensorrt`.
    pub provider: String,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            kind: EngineKind::Candle,
            onnx: None,
            cache_dir: None,
            provider: "cpu".into(),
        }
    }
}

/// How a camera's frames reach the engine when it is slower than the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// `block` for files, `drop` for live sources.
    Auto,
    /// Bounded queue, the oldest frame is dropped (and counted) when full.
    Drop,
    /// The source waits for the engine (every frame of a file is processed).
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Topic-safe name: letters, digits, `-`, `_`.
    pub name: String,
    /// `file:///path` (or a plain path), `rtsp://...`, `v4l2:///dev/video0`, or
    /// `test:<pattern>[?live=true&width=W&height=H&fps=N&num_buffers=N]` (videotestsrc).
    pub uri: String,
    /// Frame-rate cap (frames per second); 0 = none.
    pub fps: f64,
    /// Size the frames are scaled to before the engine; 0 = the model's input size.
    pub width: u32,
    pub height: u32,
    pub pace: Pace,
    /// Frames held between the source and the engine.
    pub queue: usize,
    /// Seconds without a frame before the source is restarted.
    pub stall_timeout_s: f64,
    /// A PTS jump (backwards, or forwards by more than this many seconds) resets the stream state.
    pub jump_threshold_s: f64,
    /// RTSP jitter-buffer latency, ms.
    pub rtsp_latency_ms: u32,
    /// Restart a file source at end of stream instead of ending the camera.
    pub loop_file: bool,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            uri: String::new(),
            fps: 0.0,
            width: 0,
            height: 0,
            pace: Pace::Auto,
            queue: 2,
            stall_timeout_s: 10.0,
            jump_threshold_s: 5.0,
            rtsp_latency_ms: 200,
            loop_file: false,
        }
    }
}

/// The nicks of videotestsrc's `pattern` enum (GStreamer 1.22); a test against the installed
/// element keeps this list true. Only these reach the element (as a property, never pipeline text).
pub const VIDEOTESTSRC_PATTERNS: &[&str] = &[
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];

/// Largest frame side accepted anywhere (8K).
pub const MAX_SIDE: u32 = 8192;

/// Upper bounds of durations, seconds: large enough for any real use, small enough that every
/// conversion to a `Duration` or a deadline stays exact.
pub const MAX_DURATION_S: f64 = 86_400.0;
/// `service.shutdown_timeout_s` at most: systemd's `TimeoutStopSec=120` covers the camera join
/// (30 s) plus this flush.
pub const MAX_SHUTDOWN_S: f64 = 60.0;

/// A parsed camera URI.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUri {
    File(PathBuf),
    Rtsp(String),
    V4l2(PathBuf),
    Test(TestSource),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestSource {
    pub pattern: String,
    pub live: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// -1 = endless.
    pub num_buffers: i64,
}

impl SourceUri {
    pub fn parse(uri: &str) -> Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("file:// needs a path".into());
            }
            return Ok(SourceUri::File(PathBuf::from(rest)));
        }
        if uri.starts_with("rtsp://") || uri.starts_with("rtsps://") {
            return Ok(SourceUri::Rtsp(uri.to_string()));
        }
        if let Some(rest) = uri.strip_prefix("v4l2://") {
            let dev = if rest.is_empty() { "/dev/video0" } else { rest };
            return Ok(SourceUri::V4l2(PathBuf::from(dev)));
        }
        if let Some(rest) = uri.strip_prefix("test:") {
            let rest = rest.trim_start_matches("//");
            let (pattern, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut t = TestSource {
                pattern: if pattern.is_empty() {
                    "ball".into()
                } else {
                    pattern.into()
                },
                live: true,
                width: 320,
                height: 240,
                fps: 30,
                num_buffers: -1,
            };
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("test source option `{kv}` is not key=value"))?;
                let bad = |e: &dyn fmt::Display| format!("test source option `{k}={v}`: {e}");
                match k {
                    "live" => t.live = v.parse().map_err(|e| bad(&e))?,
                    "width" => t.width = v.parse().map_err(|e| bad(&e))?,
                    "height" => t.height = v.parse().map_err(|e| bad(&e))?,
                    "fps" => t.fps = v.parse().map_err(|e| bad(&e))?,
                    "num_buffers" => t.num_buffers = v.parse().map_err(|e| bad(&e))?,
                    _ => {
                        return Err(format!(
                        "unknown test source option `{k}` (live, width, height, fps, num_buffers)"
                    ))
                    }
                }
            }
            if !VIDEOTESTSRC_PATTERNS.contains(&t.pattern.as_str()) {
                return Err(format!(
                    "unknown test pattern `{}` (videotestsrc patterns: {})",
                    t.pattern.escape_debug(),
                    VIDEOTESTSRC_PATTERNS.join(", ")
                ));
            }
            if t.width == 0 || t.height == 0 || t.fps == 0 {
                return Err("test source width, height and fps must be positive".into());
            }
            if t.width > MAX_SIDE || t.height > MAX_SIDE || t.fps > 1000 {
                return Err(format!(
                    "test source width and height must be at most {MAX_SIDE}, fps at most 1000"
                ));
            }
            return Ok(SourceUri::Test(t));
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(format!(
                "unknown scheme `{scheme}` (use file://, rtsp://, v4l2:// or test:)"
            ));
        }
        if uri.is_empty() {
            return Err("empty".into());
        }
        Ok(SourceUri::File(PathBuf::from(uri)))
    }

    /// Live sources drop frames when the engine is slow; files wait.
    pub fn is_live(&self) -> bool {
        match self {
            SourceUri::File(_) => false,
            SourceUri::Test(t) => t.live,
            _ => true,
        }
    }
}

impl CameraConfig {
    pub fn source(&self) -> Result<SourceUri, String> {
        SourceUri::parse(&self.uri)
    }

    /// Whether frames are dropped (true) or the source waits (false).
    pub fn drops_frames(&self) -> bool {
        match self.pace {
            Pace::Drop => true,
            Pace::Block => false,
            Pace::Auto => self.source().map(|s| s.is_live()).unwrap_or(true),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QosConfig {
    /// `new` and `end` events.
    pub lifecycle: u8,
    /// `update` events (throttled) and heartbeats.
    pub update: u8,
    /// The per-frame `tracks` topic.
    pub tracks: u8,
    /// `stats` and camera `status`.
    pub stats: u8,
}

impl Default for QosConfig {
    fn default() -> Self {
        Self {
            lifecycle: 1,
            update: 0,
            tracks: 0,
            stats: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA bundle that signs the broker's certificate. Setting it (or using `mqtts://`) turns
    /// TLS on.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// First wait after a failure, seconds.
    pub initial_s: f64,
    /// Longest wait, seconds.
    pub max_s: f64,
    /// Random spread, as a fraction of the wait (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_s: 0.5,
            max_s: 30.0,
            jitter: 0.2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Unique per daemon on a broker.
    pub client_id: String,
    /// Unique per daemon on a broker: topics are `<prefix>/available`, `<prefix>/<camera>/events`...
    pub topic_prefix: String,
    pub username: Option<String>,
    /// File holding the password. Also: env `INSPRO_MQTT_PASSWORD`, or the systemd credential
    /// `mqtt-password` (`$CREDENTIALS_DIRECTORY/mqtt-password`).
    pub password_file: Option<PathBuf>,
    pub keep_alive_s: u64,
    /// A persistent session (the broker keeps our QoS 1 state across reconnects).
    pub clean_session: bool,
    pub qos: QosConfig,
    pub tls: TlsConfig,
    /// Largest MQTT packet sent or received, bytes (rumqttc's own default is only 10 KiB).
    pub max_packet_size: usize,
    /// QoS 1 messages in flight at once.
    pub inflight: u16,
    pub backoff: BackoffConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "inspro".into(),
            topic_prefix: "inspro".into(),
            username: None,
            password_file: None,
            keep_alive_s: 30,
            clean_session: false,
            qos: QosConfig::default(),
            tls: TlsConfig::default(),
            max_packet_size: 256 * 1024,
            inflight: 32,
            backoff: BackoffConfig::default(),
        }
    }
}

/// The parts of `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!(
                "`{}` does not start with mqtt:// or mqtts://",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("port `{p}` is not a number in 1..65535"))?;
                (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
            }
            _ => (rest.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        if port == 0 {
            return Err("port 0".into());
        }
        Ok(BrokerAddr { host, port, tls })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskFormat {
    /// COCO compressed RLE (pycocotools `counts` string).
    CocoRle,
    /// Outer contours as `[[x, y, x, y, ...], ...]` in frame pixels (lossy: no holes).
    Polygon,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskRegion {
    /// The mask of the box crop, plus the crop's origin (small, decodes without the frame size).
    Box,
    /// The mask over the whole frame.
    Frame,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    pub mask_format: MaskFormat,
    pub mask_region: MaskRegion,
    /// Douglas-Peucker tolerance of polygons, pixels.
    pub polygon_tolerance: f64,
    /// A changed track is published at most this often, seconds (a significant change — new
    /// label, Tracked/Lost flip, box moved below `significant_iou` — goes out at once).
    pub update_interval_s: f64,
    /// An unchanged track is still published this often, seconds (0 = never).
    pub heartbeat_s: f64,
    /// A box whose IoU with the last published one falls below this is a significant change.
    pub significant_iou: f32,
    /// Publish `<prefix>/<camera>/tracks`: every track on every `tracks_every`-th frame (QoS 0).
    pub tracks: bool,
    pub tracks_every: u32,
    /// Masks in `update` events too (always in `new` and `end`).
    pub mask_in_update: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            mask_format: MaskFormat::CocoRle,
            mask_region: MaskRegion::Box,
            polygon_tolerance: 1.0,
            update_interval_s: 5.0,
            heartbeat_s: 60.0,
            significant_iou: 0.7,
            tracks: false,
            tracks_every: 1,
            mask_in_update: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Ping the systemd watchdog (when `WatchdogSec=` is set) while every camera's threads are alive.
    pub watchdog: bool,
    /// `<prefix>/stats` period, seconds.
    pub stats_interval_s: f64,
    /// Prometheus `/metrics` address; empty = off.
    pub metrics_listen: String,
    /// Spool of undelivered QoS >= 1 messages; empty = `$STATE_DIRECTORY/spool`, else
    /// `$XDG_STATE_HOME/inspro/spool` (`~/.local/state/inspro/spool`).
    pub spool_dir: String,
    /// Spool bound; the oldest messages are dropped (and counted) beyond it.
    pub spool_max_bytes: u64,
    /// How long shutdown waits for the broker to acknowledge what is queued, seconds; what is
    /// left stays in the spool for the next start.
    pub shutdown_timeout_s: f64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            watchdog: true,
            stats_interval_s: 30.0,
            metrics_listen: "127.0.0.1:9464".into(),
            spool_dir: String::new(),
            spool_max_bytes: 64 * 1024 * 1024,
            shutdown_timeout_s: 5.0,
        }
    }
}

impl ServiceConfig {
    pub fn spool_path(&self) -> PathBuf {
        if !self.spool_dir.is_empty() {
            return PathBuf::from(&self.spool_dir);
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
            // systemd may list several, separated by ':'.
            let first = dir
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            if !first.is_empty() {
                return Path::new(&first).join("spool");
            }
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("inspro").join("spool")
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the MQTT password came from (for the log; never the value).
pub fn mqtt_password(
    cfg: &MqttConfig,
    env: &BTreeMap<String, String>,
) -> Result<Option<(Secret, String)>, ConfigError> {
    let read = |path: &Path, field: &str| -> Result<Secret, ConfigError> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
        Ok(Secret(s.trim_end_matches(['\n', '\r']).to_string()))
    };
    if let Some(p) = env.get("INSPRO_MQTT_PASSWORD") {
        return Ok(Some((Secret(p.clone()), "env INSPRO_MQTT_PASSWORD".into())));
    }
    if let Some(path) = &cfg.password_file {
        return Ok(Some((
            read(path, "mqtt.password_file")?,
            format!("file {}", path.display()),
        )));
    }
    if let Some(dir) = env.get("CREDENTIALS_DIRECTORY") {
        let path = Path::new(dir).join("mqtt-password");
        if path.exists() {
            return Ok(Some((
                read(&path, "$CREDENTIALS_DIRECTORY/mqtt-password")?,
                "systemd credential mqtt-password".into(),
            )));
        }
    }
    Ok(None)
}

/// Build the configuration from the embedded defaults, an optional file and the environment
/// (`INSPRO__SECTION__KEY=value`, e.g. `INSPRO__MQTT__URL=mqtt://broker:1883`).
pub fn load(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<EdgeConfig, ConfigError> {
    use config::{Config, Environment, File, FileFormat};
    let mut b = Config::builder();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        b = b.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("INSPRO__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    b = b.add_source(
        Environment::with_prefix("INSPRO")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    let merged = b.build().map_err(|e| {
        ConfigError::new(
            file.map_or("config".into(), |p| p.display().to_string()),
            e.to_string(),
        )
    })?;
    let value: serde_json::Value = merged
        .try_deserialize()
        .map_err(|e| ConfigError::new("config", e.to_string()))?;
    let cfg: EdgeConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "config".into() } else { path };
        ConfigError::new(field, e.into_inner().to_string())
    })?;
    Ok(cfg)
}

/// The process environment as a map (tests pass their own).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn positive(field: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{v} must be a positive number"),
        ))
    }
}

/// A finite number in `lo..=hi`.
fn within(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{} is not in {lo}..={hi}", short_number(v)),
        ))
    }
}

/// `v` as written by a person: plain up to 1e9, in exponent form beyond (1e300, not 301 digits).
fn short_number(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e9 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A finite number in `(0, hi]`.
fn positive_upto(field: &str, v: f64, hi: f64) -> Result<(), ConfigError> {
    positive(field, v)?;
    within(field, v, 0.0, hi)
}

fn readable(field: &str, p: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(p)
        .map(|_| ())
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", p.display())))
}

impl EdgeConfig {
    /// Every check that needs no network or device; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        readable("model.config", &self.model.config)?;
        crate::model::ModelConfig::from_file(&self.model.config)
            .map_err(|e| ConfigError::new("model.config", e.to_string()))?;
        if let Some(w) = &self.model.weights {
            readable("model.weights", w)?;
        }
        if let Some(p) = &self.engine.onnx {
            readable("engine.onnx", p)?;
        }
        if !["cpu", "cuda", "tensorrt"].contains(&self.engine.provider.as_str()) {
            return Err(ConfigError::new(
                "engine.provider",
                format!("`{}` is not cpu, cuda or tensorrt", self.engine.provider),
            ));
        }

        if self.cameras.is_empty() {
            return Err(ConfigError::new(
                "camera",
                "no [[camera]] is configured; add at least one",
            ));
        }
        let mut names = HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let f = |k: &str| format!("camera[{i}].{k}");
            if !topic_safe(&c.name) {
                return Err(ConfigError::new(
                    f("name"),
                    format!(
                        "`{}` must be non-empty letters, digits, '-' or '_' (it is an MQTT topic level)",
                        c.name
                    ),
                ));
            }
            if !names.insert(c.name.clone()) {
                return Err(ConfigError::new(
                    f("name"),
                    format!("`{}` is used by another camera", c.name),
                ));
            }
            c.source().map_err(|r| ConfigError::new(f("uri"), r))?;
            within(&f("fps"), c.fps, 0.0, 1000.0)?;
            if c.width > MAX_SIDE || c.height > MAX_SIDE {
                return Err(ConfigError::new(
                    f("width"),
                    format!("{}x{} is larger than {MAX_SIDE}", c.width, c.height),
                ));
            }
            if c.rtsp_latency_ms > 60_000 {
                return Err(ConfigError::new(
                    f("rtsp_latency_ms"),
                    format!("{} is above 60000", c.rtsp_latency_ms),
                ));
            }
            if (c.width == 0) != (c.height == 0) {
                return Err(ConfigError::new(
                    f("width"),
                    "set both width and height, or neither",
                ));
            }
            if c.width != 0
                && (c.width < 16 || c.height < 16 || c.width % 2 == 1 || c.height % 2 == 1)
            {
                return Err(ConfigError::new(
                    f("width"),
                    format!("{}x{} must be even and at least 16x16", c.width, c.height),
                ));
            }
            if c.queue == 0 || c.queue > 64 {
                return Err(ConfigError::new(
                    f("queue"),
                    format!("{} is not in 1..=64", c.queue),
                ));
            }
            positive_upto(&f("stall_timeout_s"), c.stall_timeout_s, 3600.0)?;
            positive_upto(&f("jump_threshold_s"), c.jump_threshold_s, MAX_DURATION_S)?;
        }

        self.tracking
            .validate()
            .map_err(|(k, r)| ConfigError::new(format!("tracking.{k}"), r))?;
        if self.tracking.max_lost_frames > 100_000 {
            return Err(ConfigError::new(
                "tracking.max_lost_frames",
                "is above 100000 frames",
            ));
        }

        let m = &self.mqtt;
        let broker = m.broker().map_err(|r| ConfigError::new("mqtt.url", r))?;
        if !topic_safe(&m.client_id.replace(['.', ':'], "")) || m.client_id.len() > 64 {
            return Err(ConfigError::new(
                "mqtt.client_id",
                format!(
                    "`{}` must be 1..64 letters, digits, '-', '_', '.', ':'",
                    m.client_id
                ),
            ));
        }
        if m.topic_prefix.is_empty()
            || m.topic_prefix.starts_with('/')
            || m.topic_prefix.ends_with('/')
            || m.topic_prefix.contains(['#', '+', '\0'])
        {
            return Err(ConfigError::new(
                "mqtt.topic_prefix",
                format!(
                    "`{}` must be non-empty, without '#', '+' or a leading/trailing '/'",
                    m.topic_prefix
                ),
            ));
        }
        for (k, q) in [
            ("lifecycle", m.qos.lifecycle),
            ("update", m.qos.update),
            ("tracks", m.qos.tracks),
            ("stats", m.qos.stats),
        ] {
            if q > 2 {
                return Err(ConfigError::new(
                    format!("mqtt.qos.{k}"),
                    format!("{q} is not 0, 1 or 2"),
                ));
            }
        }
        if m.keep_alive_s < 5 || m.keep_alive_s > 65535 {
            return Err(ConfigError::new(
                "mqtt.keep_alive_s",
                format!("{} is not in 5..=65535", m.keep_alive_s),
            ));
        }
        if m.max_packet_size < 4096 || m.max_packet_size > 256 * 1024 * 1024 {
            return Err(ConfigError::new(
                "mqtt.max_packet_size",
                format!("{} is not in 4096..=268435456 bytes", m.max_packet_size),
            ));
        }
        if m.inflight == 0 || m.inflight > 1000 {
            return Err(ConfigError::new(
                "mqtt.inflight",
                format!("{} is not in 1..=1000", m.inflight),
            ));
        }
        positive_upto("mqtt.backoff.initial_s", m.backoff.initial_s, 3600.0)?;
        positive_upto("mqtt.backoff.max_s", m.backoff.max_s, 3600.0)?;
        if m.backoff.max_s < m.backoff.initial_s {
            return Err(ConfigError::new(
                "mqtt.backoff.max_s",
                format!(
                    "{} is below initial_s {}",
                    m.backoff.max_s, m.backoff.initial_s
                ),
            ));
        }
        if !(0.0..=1.0).contains(&m.backoff.jitter) {
            return Err(ConfigError::new(
                "mqtt.backoff.jitter",
                format!("{} is not in [0, 1]", m.backoff.jitter),
            ));
        }
        if m.username
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.len() > 65535)
        {
            return Err(ConfigError::new(
                "mqtt.username",
                "must be 1..65535 bytes (leave it out for no login)",
            ));
        }
        if m.password_file.is_some() && m.username.is_none() {
            return Err(ConfigError::new(
                "mqtt.username",
                "a password is configured but no username",
            ));
        }
        if let Some(p) = &m.password_file {
            readable("mqtt.password_file", p)?;
        }
        let t = &m.tls;
        for (k, p) in [
            ("ca_file", &t.ca_file),
            ("client_cert", &t.client_cert),
            ("client_key", &t.client_key),
        ] {
            if let Some(p) = p {
                readable(&format!("mqtt.tls.{k}"), p)?;
                let text = std::fs::read_to_string(p).unwrap_or_default();
                if !text.contains("-----BEGIN ") {
                    return Err(ConfigError::new(
                        format!("mqtt.tls.{k}"),
                        format!("{} is not a PEM file", p.display()),
                    ));
                }
            }
        }
        if t.client_cert.is_some() != t.client_key.is_some() {
            return Err(ConfigError::new(
                "mqtt.tls.client_key",
                "client_cert and client_key go together",
            ));
        }
        let wants_tls = broker.tls || t.ca_file.is_some() || t.client_cert.is_some();
        if wants_tls && !broker.tls {
            return Err(ConfigError::new(
                "mqtt.url",
                "TLS files are set: use an mqtts:// URL",
            ));
        }
        if broker.tls {
            crate::edge::tls::client_config(t)?;
        }

        let p = &self.publish;
        if !(p.polygon_tolerance.is_finite() && p.polygon_tolerance >= 0.0) {
            return Err(ConfigError::new(
                "publish.polygon_tolerance",
                "must be >= 0",
            ));
        }
        within(
            "publish.polygon_tolerance",
            p.polygon_tolerance,
            0.0,
            1000.0,
        )?;
        within(
            "publish.update_interval_s",
            p.update_interval_s,
            0.0,
            MAX_DURATION_S,
        )?;
        within("publish.heartbeat_s", p.heartbeat_s, 0.0, MAX_DURATION_S)?;
        if p.heartbeat_s > 0.0 && p.heartbeat_s < p.update_interval_s {
            return Err(ConfigError::new(
                "publish.heartbeat_s",
                format!(
                    "{} is below update_interval_s {}",
                    p.heartbeat_s, p.update_interval_s
                ),
            ));
        }
        if !(0.0..=1.0).contains(&p.significant_iou) {
            return Err(ConfigError::new(
                "publish.significant_iou",
                format!("{} is not in [0, 1]", p.significant_iou),
            ));
        }
        if p.tracks_every == 0 || p.tracks_every > 100_000 {
            return Err(ConfigError::new(
                "publish.tracks_every",
                format!("{} is not in 1..=100000", p.tracks_every),
            ));
        }

        let s = &self.service;
        positive_upto(
            "service.stats_interval_s",
            s.stats_interval_s,
            MAX_DURATION_S,
        )?;
        within(
            "service.shutdown_timeout_s",
            s.shutdown_timeout_s,
            0.0,
            MAX_SHUTDOWN_S,
        )?;
        if !s.metrics_listen.is_empty() {
            s.metrics_listen.parse::<SocketAddr>().map_err(|e| {
                ConfigError::new(
                    "service.metrics_listen",
                    format!("`{}`: {e} (use ip:port, or \"\" for off)", s.metrics_listen),
                )
            })?;
        }
        if s.spool_max_bytes < 64 * 1024 || s.spool_max_bytes > 1 << 40 {
            return Err(ConfigError::new(
                "service.spool_max_bytes",
                format!("{} is not in 65536..=1099511627776", s.spool_max_bytes),
            ));
        }
        Ok(())
    }

    /// Keys that differ between two configs but only take effect on restart.
    pub fn cold_changes(&self, new: &EdgeConfig) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.model != new.model {
            v.push("model");
        }
        if self.engine != new.engine {
            v.push("engine");
        }
        if self.cameras != new.cameras {
            v.push("camera");
        }
        if self.mqtt != new.mqtt {
            v.push("mqtt");
        }
        if self.service.metrics_listen != new.service.metrics_listen {
            v.push("service.metrics_listen");
        }
        if self.service.spool_dir != new.service.spool_dir
            || self.service.spool_max_bytes != new.service.spool_max_bytes
        {
            v.push("service.spool_*");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn default_config_parses_and_matches_default_struct() {
        let f = write(DEFAULT_CONFIG_TOML);
        let cfg = load(Some(f.path()), &BTreeMap::new()).expect("default parses");
        assert_eq!(cfg.cameras.len(), 1);
        let expect = EdgeConfig {
            cameras: cfg.cameras.clone(),
            ..EdgeConfig::default()
        };
        assert_eq!(cfg, expect, "configs/edge.toml and Default disagree");
    }

    #[test]
    fn env_overrides_file() {
        let f = write(DEFAULT_CONFIG_TOML);
        let cfg = load(
            Some(f.path()),
            &env(&[
                ("INSPRO__MQTT__URL", "mqtt://broker.lan:1884"),
                ("INSPRO__MQTT__MAX_PACKET_SIZE", "65536"),
                ("INSPRO__TRACKING__BIRTH_SCORE", "0.7"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.mqtt.url, "mqtt://broker.lan:1884");
        assert_eq!(cfg.mqtt.max_packet_size, 65536);
        assert_eq!(cfg.tracking.birth_score, 0.7);
        let b = cfg.mqtt.broker().expect("url");
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.lan", 1884, false)
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let f = write("[mqtt]\nmax_packet_sise = 3\n");
        let e = load(Some(f.path()), &BTreeMap::new()).unwrap_err();
        assert!(e.field.starts_with("mqtt"), "{e}");
        assert!(e.reason.contains("max_packet_sise"), "{e}");
        let f = write("[[camera]]\nname = \"a\"\nuri = \"test:\"\nqueue = \"many\"\n");
        let e = load(Some(f.path()), &BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "camera[0].queue", "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = EdgeConfig::default();
        cfg.cameras.push(CameraConfig {
            name: "cam".into(),
            uri: "test:ball".into(),
            ..CameraConfig::default()
        });
        cfg.validate().expect("valid");
        let mut bad = cfg.clone();
        bad.cameras[0].uri = "htp://x".into();
        assert_eq!(bad.validate().unwrap_err().field, "camera[0].uri");
        let mut bad = cfg.clone();
        bad.mqtt.qos.lifecycle = 3;
        assert_eq!(bad.validate().unwrap_err().field, "mqtt.qos.lifecycle");
        let mut bad = cfg.clone();
        bad.tracking.keep_score = 0.9;
        assert_eq!(bad.validate().unwrap_err().field, "tracking.keep_score");
        let mut bad = cfg.clone();
        bad.cameras.push(bad.cameras[0].clone());
        assert_eq!(bad.validate().unwrap_err().field, "camera[1].name");
        let mut bad = cfg.clone();
        bad.mqtt.topic_prefix = "a/#".into();
        assert_eq!(bad.validate().unwrap_err().field, "mqtt.topic_prefix");
        let mut bad = cfg.clone();
        bad.service.metrics_listen = "localhost".into();
        assert_eq!(bad.validate().unwrap_err().field, "service.metrics_listen");
    }

    #[test]
    fn uris() {
        assert_eq!(
            SourceUri::parse("file:///a/b.mkv").unwrap(),
            SourceUri::File("/a/b.mkv".into())
        );
        assert_eq!(
            SourceUri::parse("clip.mkv").unwrap(),
            SourceUri::File("clip.mkv".into())
        );
        let SourceUri::Test(t) =
            SourceUri::parse("test:smpte?live=false&width=64&height=48&num_buffers=10").unwrap()
        else {
            panic!("test source")
        };
        assert_eq!(
            (t.pattern.as_str(), t.live, t.width, t.num_buffers),
            ("smpte", false, 64, 10)
        );
        assert!(SourceUri::parse("test:ball?colour=red").is_err());
        assert!(SourceUri::parse("http://x").is_err());
    }

    #[test]
    fn password_sources_and_no_leak() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mqtt-password"), "s3cret\n").unwrap();
        let cfg = MqttConfig::default();
        let (s, from) = mqtt_password(
            &cfg,
            &env(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert!(from.contains("credential"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let (s, _) = mqtt_password(&cfg, &env(&[("INSPRO_MQTT_PASSWORD", "pw")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "pw");
        assert!(mqtt_password(&cfg, &BTreeMap::new()).unwrap().is_none());
    }
}
