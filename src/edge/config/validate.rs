//! `EdgeConfig::validate`: every check that needs no network or device, one function a section;
//! the error names the field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use super::schema::{
    BackoffConfig, CameraConfig, EdgeConfig, EngineSection, ModelSection, MqttConfig,
    PublishConfig, ServiceConfig, TlsConfig, MAX_DURATION_S, MAX_SHUTDOWN_S, MAX_SIDE,
};
use super::sources::BrokerAddr;
use super::ConfigError;
use crate::tracking::TrackerConfig;

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

/// A whole number in `lo..=hi`.
fn int_within<T>(field: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{v} is not in {lo}..={hi}"),
        ))
    }
}

fn readable(field: &str, p: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(p)
        .map(|_| ())
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", p.display())))
}

/// The errors found so far: every check runs, and each failing one adds its field, so a file
/// with several mistakes is told all of them at once.
#[derive(Debug, Default)]
struct Findings(Vec<ConfigError>);

impl Findings {
    /// Record `r`'s error; true when it passed.
    fn check(&mut self, r: Result<(), ConfigError>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.0.push(e);
                false
            }
        }
    }

    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(field, reason));
    }
}

impl EdgeConfig {
    /// Every check that needs no network or device; the first error, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.errors().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every check that needs no network or device; all the errors, in file order.
    pub fn errors(&self) -> Vec<ConfigError> {
        let mut out = Findings::default();
        validate_model(&self.model, &self.engine, &mut out);
        validate_cameras(&self.cameras, self.tracking, &mut out);
        validate_tracking(&self.tracking, &mut out);
        validate_mqtt(&self.mqtt, &mut out);
        validate_publish(&self.publish, &mut out);
        validate_service(&self.service, &mut out);
        validate_http(&self.http, &mut out);
        out.check(within(
            "store.max_age_days",
            self.store.max_age_days,
            0.001,
            36_500.0,
        ));
        out.check(int_within(
            "store.max_bytes",
            self.store.max_bytes,
            1 << 20,
            1 << 40,
        ));
        // Clips live as long as their tracks in the store: without it nothing would remove them.
        for (i, c) in self.cameras.iter().enumerate() {
            if c.clips.enabled && !self.store.enabled {
                out.fail(
                    format!("camera[{i}].clips.enabled"),
                    "clips need the event store ([store] enabled = true), which keeps and removes them",
                );
            }
        }
        out.0
    }
}

/// `[model]` and `[engine]`: the files exist, the model config parses, the provider is known.
fn validate_model(model: &ModelSection, engine: &EngineSection, out: &mut Findings) {
    if out.check(readable("model.config", &model.config)) {
        out.check(
            crate::model::ModelConfig::from_file(&model.config)
                .map(|_| ())
                .map_err(|e| ConfigError::new("model.config", e.to_string())),
        );
    }
    if let Some(w) = &model.weights {
        out.check(readable("model.weights", w));
    }
    if let Some(p) = &engine.onnx {
        out.check(readable("engine.onnx", p));
    }
    if let Some(lib) = &engine.library {
        out.check(readable("engine.library", lib));
    }
    out.check(int_within("engine.device_id", engine.device_id, 0, 255));
    if let Some(n) = engine.sessions {
        out.check(int_within("engine.sessions", n, 1, 64));
    }
    if let Some(n) = engine.threads {
        out.check(int_within("engine.threads", n, 1, 256));
    }
    if let Err(reason) = engine.provider.parse::<crate::runtime::Provider>() {
        out.fail("engine.provider", reason);
    }
}

/// Every `[[camera]]`: at least one, unique topic-safe names, each camera's fields.
fn validate_cameras(cameras: &[CameraConfig], tracking: TrackerConfig, out: &mut Findings) {
    if cameras.is_empty() {
        out.fail("camera", "no [[camera]] is configured; add at least one");
    }
    let mut names = HashSet::new();
    for (i, c) in cameras.iter().enumerate() {
        validate_camera(i, c, &mut names, tracking, out);
    }
}

/// One camera, `camera[i]`; `names` collects the names seen so far.
fn validate_camera(
    i: usize,
    c: &CameraConfig,
    names: &mut HashSet<String>,
    tracking: TrackerConfig,
    out: &mut Findings,
) {
    let f = |k: &str| format!("camera[{i}].{k}");
    if !topic_safe(&c.name) {
        out.fail(
            f("name"),
            format!(
                "`{}` must be non-empty letters, digits, '-' or '_' (it is an MQTT topic level)",
                c.name
            ),
        );
    } else if !names.insert(c.name.clone()) {
        out.fail(f("name"), format!("`{}` is used by another camera", c.name));
    }
    out.check(
        c.source()
            .map(|_| ())
            .map_err(|r| ConfigError::new(f("uri"), r)),
    );
    out.check(within(&f("fps"), c.fps, 0.0, 1000.0));
    if c.width > MAX_SIDE || c.height > MAX_SIDE {
        out.fail(
            f("width"),
            format!("{}x{} is larger than {MAX_SIDE}", c.width, c.height),
        );
    } else if (c.width == 0) != (c.height == 0) {
        out.fail(f("width"), "set both width and height, or neither");
    } else if c.width != 0
        && (c.width < 16 || c.height < 16 || c.width % 2 == 1 || c.height % 2 == 1)
    {
        out.fail(
            f("width"),
            format!("{}x{} must be even and at least 16x16", c.width, c.height),
        );
    }
    if let Some(p) = &c.password_file {
        if c.source()
            .is_ok_and(|s| !matches!(s, super::SourceUri::Rtsp(_)))
        {
            out.fail(
                f("password_file"),
                "a password is only used by rtsp:// cameras",
            );
        } else {
            out.check(readable(&f("password_file"), p));
        }
    }
    if c.rtsp_latency_ms > 60_000 {
        out.fail(
            f("rtsp_latency_ms"),
            format!("{} is above 60000", c.rtsp_latency_ms),
        );
    }
    out.check(int_within(&f("queue"), c.queue, 1, 64));
    out.check(positive_upto(
        &f("stall_timeout_s"),
        c.stall_timeout_s,
        3600.0,
    ));
    out.check(positive_upto(
        &f("jump_threshold_s"),
        c.jump_threshold_s,
        MAX_DURATION_S,
    ));
    let snap = &c.snapshots;
    out.check(int_within(
        &f("snapshots.max_files"),
        snap.max_files,
        1,
        100_000,
    ));
    out.check(int_within(
        &f("snapshots.quality"),
        usize::from(snap.quality),
        1,
        100,
    ));
    out.check(within(
        &f("snapshots.padding"),
        f64::from(snap.padding),
        0.0,
        2.0,
    ));
    let clips = &c.clips;
    out.check(within(&f("clips.pre_s"), clips.pre_s, 0.0, 60.0));
    out.check(within(&f("clips.post_s"), clips.post_s, 0.0, 60.0));
    out.check(positive_upto(&f("clips.max_s"), clips.max_s, 3600.0));
    out.check(
        c.rules()
            .validate()
            .map_err(|e| ConfigError::new(f(&e.field), e.reason)),
    );
    // The overrides with the global values (a bad global value is `[tracking]`'s own error).
    if c.tracking != Default::default() {
        out.check(
            c.tracking
                .apply(tracking)
                .validate()
                .map_err(|e| ConfigError::new(f(&format!("tracking.{}", e.field)), e.reason)),
        );
    }
}

/// `[tracking]`: the tracker's own checks plus a bound on the lost-frame count.
fn validate_tracking(tracking: &TrackerConfig, out: &mut Findings) {
    out.check(
        tracking
            .validate()
            .map_err(|e| ConfigError::new(format!("tracking.{}", e.field), e.reason)),
    );
    if tracking.max_lost_frames > 100_000 {
        out.fail("tracking.max_lost_frames", "is above 100000 frames");
    }
}

/// `[mqtt]`: the URL, names and limits, then the backoff, the login and TLS.
fn validate_mqtt(m: &MqttConfig, out: &mut Findings) {
    let broker = m.broker().map_err(|r| ConfigError::new("mqtt.url", r));
    validate_mqtt_session(m, out);
    validate_backoff(&m.backoff, out);
    validate_login(m, out);
    match broker {
        Ok(broker) => validate_tls(&m.tls, &broker, out),
        Err(e) => out.0.push(e),
    }
}

/// `mqtt.client_id`, `topic_prefix`, `qos`, `keep_alive_s`, `max_packet_size`, `inflight`.
fn validate_mqtt_session(m: &MqttConfig, out: &mut Findings) {
    if !topic_safe(&m.client_id.replace(['.', ':'], "")) || m.client_id.len() > 64 {
        out.fail(
            "mqtt.client_id",
            format!(
                "`{}` must be 1..64 letters, digits, '-', '_', '.', ':'",
                m.client_id
            ),
        );
    }
    topic_prefix_ok("mqtt.topic_prefix", &m.topic_prefix, out);
    topic_prefix_ok("mqtt.discovery_prefix", &m.discovery_prefix, out);
    for (k, q) in [
        ("lifecycle", m.qos.lifecycle),
        ("update", m.qos.update),
        ("tracks", m.qos.tracks),
        ("stats", m.qos.stats),
    ] {
        if q > 2 {
            out.fail(format!("mqtt.qos.{k}"), format!("{q} is not 0, 1 or 2"));
        }
    }
    out.check(int_within("mqtt.keep_alive_s", m.keep_alive_s, 5, 65535));
    if m.max_packet_size < 4096 || m.max_packet_size > 256 * 1024 * 1024 {
        out.fail(
            "mqtt.max_packet_size",
            format!("{} is not in 4096..=268435456 bytes", m.max_packet_size),
        );
    }
    out.check(int_within("mqtt.inflight", m.inflight, 1, 1000));
}

/// `[mqtt.backoff]`.
fn validate_backoff(b: &BackoffConfig, out: &mut Findings) {
    let initial = out.check(positive_upto("mqtt.backoff.initial_s", b.initial_s, 3600.0));
    let max = out.check(positive_upto("mqtt.backoff.max_s", b.max_s, 3600.0));
    if initial && max && b.max_s < b.initial_s {
        out.fail(
            "mqtt.backoff.max_s",
            format!("{} is below initial_s {}", b.max_s, b.initial_s),
        );
    }
    if !(0.0..=1.0).contains(&b.jitter) {
        out.fail(
            "mqtt.backoff.jitter",
            format!("{} is not in [0, 1]", b.jitter),
        );
    }
}

/// `mqtt.username` and `mqtt.password_file`.
fn validate_login(m: &MqttConfig, out: &mut Findings) {
    if m.username
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.len() > 65535)
    {
        out.fail(
            "mqtt.username",
            "must be 1..65535 bytes (leave it out for no login)",
        );
    }
    if m.password_file.is_some() && m.username.is_none() {
        out.fail("mqtt.username", "a password is configured but no username");
    }
    if let Some(p) = &m.password_file {
        out.check(readable("mqtt.password_file", p));
    }
}

/// `[mqtt.tls]`: readable PEM files, paired client cert and key, and an `mqtts://` URL to go
/// with them.
fn validate_tls(t: &TlsConfig, broker: &BrokerAddr, out: &mut Findings) {
    let mut files_ok = true;
    for (k, p) in [
        ("ca_file", &t.ca_file),
        ("client_cert", &t.client_cert),
        ("client_key", &t.client_key),
    ] {
        let Some(p) = p else { continue };
        let field = format!("mqtt.tls.{k}");
        if !out.check(readable(&field, p)) {
            files_ok = false;
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap_or_default();
        if !text.contains("-----BEGIN ") {
            files_ok = false;
            out.fail(field, format!("{} is not a PEM file", p.display()));
        }
    }
    if t.client_cert.is_some() != t.client_key.is_some() {
        files_ok = false;
        out.fail(
            "mqtt.tls.client_key",
            "client_cert and client_key go together",
        );
    }
    let wants_tls = broker.tls || t.ca_file.is_some() || t.client_cert.is_some();
    if wants_tls && !broker.tls {
        out.fail("mqtt.url", "TLS files are set: use an mqtts:// URL");
    }
    if broker.tls && files_ok {
        out.check(crate::edge::tls::client_config(t).map(|_| ()));
    }
}

/// `[publish]`.
fn validate_publish(p: &PublishConfig, out: &mut Findings) {
    if !(p.polygon_tolerance.is_finite() && p.polygon_tolerance >= 0.0) {
        out.fail("publish.polygon_tolerance", "must be >= 0");
    } else {
        out.check(within(
            "publish.polygon_tolerance",
            p.polygon_tolerance,
            0.0,
            1000.0,
        ));
    }
    let interval = out.check(within(
        "publish.update_interval_s",
        p.update_interval_s,
        0.0,
        MAX_DURATION_S,
    ));
    let heartbeat = out.check(within(
        "publish.heartbeat_s",
        p.heartbeat_s,
        0.0,
        MAX_DURATION_S,
    ));
    if interval && heartbeat && p.heartbeat_s > 0.0 && p.heartbeat_s < p.update_interval_s {
        out.fail(
            "publish.heartbeat_s",
            format!(
                "{} is below update_interval_s {}",
                p.heartbeat_s, p.update_interval_s
            ),
        );
    }
    if !(0.0..=1.0).contains(&p.significant_iou) {
        out.fail(
            "publish.significant_iou",
            format!("{} is not in [0, 1]", p.significant_iou),
        );
    }
    out.check(int_within(
        "publish.tracks_every",
        p.tracks_every,
        1,
        100_000,
    ));
}

/// `[service]`.
fn validate_service(s: &ServiceConfig, out: &mut Findings) {
    out.check(positive_upto(
        "service.stats_interval_s",
        s.stats_interval_s,
        MAX_DURATION_S,
    ));
    out.check(within(
        "service.shutdown_timeout_s",
        s.shutdown_timeout_s,
        0.0,
        MAX_SHUTDOWN_S,
    ));
    if !s.metrics_listen.is_empty() {
        if let Err(e) = s.metrics_listen.parse::<SocketAddr>() {
            out.fail(
                "service.metrics_listen",
                format!("`{}`: {e} (use ip:port, or \"\" for off)", s.metrics_listen),
            );
        }
    }
    out.check(int_within(
        "service.spool_max_bytes",
        s.spool_max_bytes,
        64 * 1024,
        1 << 40,
    ));
}

/// `[http]`: `listen` is ip:port; a `token_file` is readable. (Whether a token is needed, and
/// found, is `preflight`'s: it can come from the environment.)
fn validate_http(h: &super::HttpConfig, out: &mut Findings) {
    if !h.listen.is_empty() {
        if let Err(e) = h.listen.parse::<SocketAddr>() {
            out.fail("http.listen", format!("`{}`: {e} (use ip:port)", h.listen));
        }
    }
    if let Some(p) = &h.token_file {
        out.check(readable("http.token_file", p));
    }
    if h.token.as_deref().is_some_and(str::is_empty) {
        out.fail("http.token", "empty");
    }
    if !(0..=19).contains(&h.nice) {
        out.fail("http.nice", format!("{} is not within 0..=19", h.nice));
    }
    if h.coalesce_ms > 1000 {
        out.fail(
            "http.coalesce_ms",
            format!("{} is not within 0..=1000", h.coalesce_ms),
        );
    }
}

/// A topic prefix: non-empty, no wildcard, no leading or trailing `/`.
fn topic_prefix_ok(field: &str, p: &str, out: &mut Findings) {
    if p.is_empty() || p.starts_with('/') || p.ends_with('/') || p.contains(['#', '+', '\0']) {
        out.fail(
            field,
            format!("`{p}` must be non-empty, without '#', '+' or a leading/trailing '/'"),
        );
    }
}
