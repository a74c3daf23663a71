//! The serde structs of the configuration: one per TOML section, with the defaults that
//! `configs/edge.toml` spells out, and the limits the checks share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tracking::rules::{LabelFilter, Line, Rules, Zone};
use crate::tracking::TrackerConfig;

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
    pub http: HttpConfig,
    pub store: StoreConfig,
}

/// `[store]`: the event store (an embedded SQLite database) and its retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub enabled: bool,
    /// The database file; unset: `<spool_dir>/events.db`.
    pub path: Option<PathBuf>,
    /// Tracks (and their snapshots) older than this go.
    pub max_age_days: f64,
    /// The database is kept under this size, the oldest tracks going first.
    pub max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_age_days: 10.0,
            max_bytes: 1 << 30,
        }
    }
}

impl EdgeConfig {
    /// The event store's file (`None`: no store).
    pub fn store_path(&self) -> Option<PathBuf> {
        self.store.enabled.then(|| {
            self.store
                .path
                .clone()
                .unwrap_or_else(|| self.service.spool_path().join("events.db"))
        })
    }
}

/// `[http]`: the daemon's HTTP server (`/metrics` and the JSON API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; empty: `service.metrics_listen` (default `127.0.0.1:9464`). Beyond loopback
    /// it needs a token.
    pub listen: String,
    /// The token every request must carry (`Authorization: Bearer <token>` or `?token=`). Also:
    /// `token_file`, env `INSPRO_HTTP_TOKEN`, or the systemd credential `http-token`.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The nice value of the server's threads and the live views' encoders (0-19; 0: the
    /// engine's own priority): the page yields to the engine when the cores are busy.
    pub nice: i32,
    /// The server handles what its connections have for it at most once per this many
    /// milliseconds (0-1000; 0: as soon as it comes): a busy page then wakes it, and takes a
    /// core from the engine, a few dozen times a second instead of at every request and live
    /// frame, for at most this much more latency.
    pub coalesce_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            token: None,
            token_file: None,
            nice: 10,
            coalesce_ms: 20,
        }
    }
}

impl EdgeConfig {
    /// Where the HTTP server listens (`""`: nowhere).
    pub fn http_listen(&self) -> &str {
        if self.http.listen.is_empty() {
            &self.service.metrics_listen
        } else {
            &self.http.listen
        }
    }
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
            config: PathBuf::from("configs/models/inspro-small.toml"),
            weights: None,
            seed: 0,
        }
    }
}

/// `[engine] kind`: `onnxruntime` (the default) or `candle`, the runtime's one engine enum.
pub use crate::runtime::EngineKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub kind: EngineKind,
    /// Exported engine directory for `onnxruntime`; unset: `engines/<model name>/` when it holds
    /// one and `weights` is unset, else the weights are exported into a temporary directory.
    pub onnx: Option<PathBuf>,
    /// Engine cache (TensorRT plans) for `onnxruntime`; unset: `$CACHE_DIRECTORY` or none.
    pub cache_dir: Option<PathBuf>,
    /// Execution provider for `onnxruntime`: `auto` (TensorRT, then CUDA, then the CPU, by what
    /// the loaded library offers), `cpu`, `cuda` or `tensorrt`.
    pub provider: String,
    /// `libonnxruntime.so` for `onnxruntime` (a GPU build for CUDA/TensorRT); unset:
    /// `ORT_DYLIB_PATH`, then the venv of `scripts/setup.sh`.
    pub library: Option<PathBuf>,
    /// GPU index for `cuda` / `tensorrt`.
    pub device_id: i32,
    /// `onnxruntime`: sessions per graph, i.e. frames of different cameras that run at once
    /// (cameras take turns when fewer); unset: one per camera, at most four per core.
    pub sessions: Option<usize>,
    /// `onnxruntime`: intra-op threads of each session; unset: the cores divided among the
    /// sessions.
    pub threads: Option<usize>,
    /// `onnxruntime`: whether a session's idle intra-op threads spin waiting for work (faster
    /// alone, but they hold cores the page's server and other processes need) or sleep; unset:
    /// spin with one session, sleep with several.
    pub spin: Option<bool>,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            kind: EngineKind::Onnxruntime,
            onnx: None,
            cache_dir: None,
            provider: "auto".into(),
            library: None,
            device_id: 0,
            sessions: None,
            threads: None,
            spin: None,
        }
    }
}

/// How a camera's frames reach the engine when it is slower than the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pace {
    /// `block` for files, `drop` for live sources.
    Auto,
    /// Bounded queue, the oldest frame is dropped (and counted) when full. A file plays at its
    /// own frame rate, like a live camera (`loop_file` loops once per clip duration).
    Drop,
    /// The source waits for the engine (every frame of a file is processed).
    Block,
}

/// How an RTSP camera's media travels (rtspsrc's `protocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// UDP, then TCP when UDP gets nothing (rtspsrc's default).
    #[default]
    Auto,
    /// RTP interleaved in the RTSP TCP connection: through NAT and firewalls, no loss.
    Tcp,
    /// RTP over UDP only: the lowest latency on a clean LAN.
    Udp,
}

impl RtspTransport {
    /// rtspsrc's `protocols` flags.
    pub fn protocols(&self) -> &'static str {
        match self {
            RtspTransport::Auto => "udp+udp-mcast+tcp",
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
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
    /// Size the frames are scaled to before the engine; 0 = the camera's own size (the engine
    /// letterboxes it for the network; boxes and masks come back in these pixels).
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
    /// RTSP transport: `auto`, `tcp` or `udp`.
    pub rtsp_transport: RtspTransport,
    /// File holding the camera's password (RTSP basic or digest authentication); the user is
    /// the URI's (`rtsp://user@host/path`). Also: the systemd credential
    /// `camera-<name>-password` (`LoadCredential=`). Never logged or published.
    pub password_file: Option<PathBuf>,
    /// Restart a file source at end of stream instead of ending the camera.
    pub loop_file: bool,
    /// `[[camera.zone]]`: polygons in camera pixels (Frigate's `coordinates`); events carry
    /// `current_zones` / `entered_zones`.
    pub zone: Vec<Zone>,
    /// `[[camera.line]]`: counting lines (two points, a direction); crossings are events and
    /// counts.
    pub line: Vec<Line>,
    /// `[camera.filters.<label>]`: `min_area`, `max_area`, `min_score`; a track that fails its
    /// label's filter is not published.
    pub filters: BTreeMap<String, LabelFilter>,
    /// `[camera.tracking]`: this camera's overrides of `[tracking]`.
    pub tracking: TrackingOverride,
    /// `[camera.snapshots]`: a JPEG of each track's best frame.
    pub snapshots: SnapshotConfig,
    /// `[camera.clips]`: each track's clip, cut from the camera's encoded stream.
    pub clips: ClipConfig,
}

/// Event clips: per track an MP4 from `pre_s` before its birth to `post_s` after its end, cut
/// from the camera's H.264 / H.265 stream without re-encoding, under
/// `<spool_dir>/clips/<camera>/`, kept as long as the track is in the event store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    pub enabled: bool,
    /// Seconds before the track's birth (back to the keyframe at or before it).
    pub pre_s: f64,
    /// Seconds after its end.
    pub post_s: f64,
    /// A clip ends this long after it began even if its track goes on.
    pub max_s: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            pre_s: 3.0,
            post_s: 2.0,
            max_s: 120.0,
        }
    }
}

/// Snapshots, Frigate's way: per track the frame with the highest score (the larger box on a
/// tie), cropped around the box with the mask outlined, published retained on
/// `<prefix>/<camera>/<label>/snapshot` when the track is born and when it ends, and written
/// under `<spool_dir>/snapshots/<camera>/`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    pub enabled: bool,
    /// Files kept per camera; the oldest go first.
    pub max_files: usize,
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// Context around the box, as a fraction of its size on each side.
    pub padding: f32,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_files: 200,
            quality: 85,
            padding: 0.15,
        }
    }
}

/// Per-camera overrides of `[tracking]`; unset keys keep the global value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingOverride {
    pub birth_score: Option<f32>,
    pub min_frames: Option<u32>,
    pub keep_score: Option<f32>,
    pub max_lost_frames: Option<u32>,
    pub reuse_iou: Option<f32>,
    pub birth_nms_iou: Option<f32>,
    pub merge_iou: Option<f32>,
    pub merge_frames: Option<u32>,
}

impl TrackingOverride {
    /// The global settings with this camera's overrides.
    pub fn apply(&self, global: TrackerConfig) -> TrackerConfig {
        TrackerConfig {
            birth_score: self.birth_score.unwrap_or(global.birth_score),
            min_frames: self.min_frames.unwrap_or(global.min_frames),
            keep_score: self.keep_score.unwrap_or(global.keep_score),
            max_lost_frames: self.max_lost_frames.unwrap_or(global.max_lost_frames),
            reuse_iou: self.reuse_iou.unwrap_or(global.reuse_iou),
            birth_nms_iou: self.birth_nms_iou.unwrap_or(global.birth_nms_iou),
            merge_iou: self.merge_iou.unwrap_or(global.merge_iou),
            merge_frames: self.merge_frames.unwrap_or(global.merge_frames),
        }
    }
}

impl CameraConfig {
    /// The camera's analytics rules.
    pub fn rules(&self) -> Rules {
        Rules {
            zones: self.zone.clone(),
            lines: self.line.clone(),
            filters: self.filters.clone(),
        }
    }

    /// The camera without what SIGHUP changes (rules, tracking overrides): a difference here
    /// needs a restart.
    pub fn cold(&self) -> CameraConfig {
        CameraConfig {
            zone: Vec::new(),
            line: Vec::new(),
            filters: BTreeMap::new(),
            tracking: TrackingOverride::default(),
            ..self.clone()
        }
    }
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
            rtsp_transport: RtspTransport::Auto,
            password_file: None,
            loop_file: false,
            zone: Vec::new(),
            line: Vec::new(),
            filters: BTreeMap::new(),
            tracking: TrackingOverride::default(),
            snapshots: SnapshotConfig::default(),
            clips: ClipConfig::default(),
        }
    }
}
/// Largest frame side accepted anywhere (8K).
pub const MAX_SIDE: u32 = 8192;

/// Upper bounds of durations, seconds: large enough for any real use, small enough that every
/// conversion to a `Duration` or a deadline stays exact.
pub const MAX_DURATION_S: f64 = 86_400.0;
/// `service.shutdown_timeout_s` at most: systemd's `TimeoutStopSec=120` covers the camera join
/// (30 s) plus this flush.
pub const MAX_SHUTDOWN_S: f64 = 60.0;
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
    /// Home Assistant MQTT discovery: retained entity configs for each camera's connectivity,
    /// switches and per-label counts under `discovery_prefix`.
    pub home_assistant: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
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
            home_assistant: false,
            discovery_prefix: "homeassistant".into(),
        }
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
