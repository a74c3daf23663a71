//! Counters shared by the camera threads and the IO tasks, the `<prefix>/stats` payload, and the
//! Prometheus text the HTTP server's `/metrics` serves (`edge/http.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Where a camera's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceStatus {
    Starting = 0,
    Online = 1,
    Reconnecting = 2,
    Ended = 3,
    /// Switched off (`<prefix>/<camera>/enabled/set OFF`): no pipeline.
    Disabled = 4,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Starting => "starting",
            SourceStatus::Online => "online",
            SourceStatus::Reconnecting => "reconnecting",
            SourceStatus::Ended => "ended",
            SourceStatus::Disabled => "disabled",
        }
    }
    fn from_u8(v: u8) -> Self {
        match v {
            1 => SourceStatus::Online,
            2 => SourceStatus::Reconnecting,
            3 => SourceStatus::Ended,
            4 => SourceStatus::Disabled,
            _ => SourceStatus::Starting,
        }
    }
}

/// One camera's counters. Times are microseconds; `*_ms` marks are milliseconds since start.
#[derive(Default)]
pub struct CameraMetrics {
    pub name: String,
    pub frames_in: AtomicU64,
    pub frames_processed: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub queue_depth: AtomicU64,
    pub queue_capacity: AtomicU64,
    pub source_restarts: AtomicU64,
    pub source_errors: AtomicU64,
    pub stalls: AtomicU64,
    pub state_resets: AtomicU64,
    pub tracks_active: AtomicU64,
    pub tracks_total: AtomicU64,
    pub events: AtomicU64,
    pub events_suppressed: AtomicU64,
    pub engine_errors: AtomicU64,
    pub wait_us: AtomicU64,
    pub infer_us: AtomicU64,
    pub encode_us: AtomicU64,
    pub last_frame_ms: AtomicU64,
    pub engine_alive_ms: AtomicU64,
    pub source_alive_ms: AtomicU64,
    status: AtomicU8,
    /// Every status change not yet published, oldest first: a source that goes online and
    /// ends between two looks of the MQTT task still shows `online` (the status topic is
    /// retained, so its last value is the status now).
    status_changes: Mutex<Vec<SourceStatus>>,
    /// Snapshots not queued because the encoder was behind.
    pub snapshots_dropped: AtomicU64,
    /// `[camera.clips]`: clips written, dropped, failed, and their CPU time.
    pub clips: Arc<crate::edge::clips::ClipStats>,
    /// Track events held back by the camera's label filters.
    pub events_filtered: AtomicU64,
    /// Line crossings by (line, label, direction) since start.
    pub line_crossings: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// Detection on (frames reach the engine) or off (`<prefix>/<camera>/detect/set`).
    pub detect: AtomicBool,
    /// Snapshots on or off (`<prefix>/<camera>/snapshots/set`; only with `[camera.snapshots]`).
    pub snapshots_on: AtomicBool,
    /// Frames not given to the engine because detection was off.
    pub frames_skipped: AtomicU64,
    /// Processed frames per second (moving average), x1000.
    pub fps_milli: AtomicU64,
    /// The live view the HTTP API serves.
    pub live: Arc<crate::edge::live::LiveView>,
}

impl CameraMetrics {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            detect: AtomicBool::new(true),
            snapshots_on: AtomicBool::new(true),
            ..Self::default()
        }
    }
    pub fn status(&self) -> SourceStatus {
        SourceStatus::from_u8(self.status.load(Relaxed))
    }

    pub fn set_line_crossings(&self, counts: BTreeMap<(String, String, &'static str), u64>) {
        *self
            .line_crossings
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = counts;
    }

    fn line_crossings(&self) -> BTreeMap<(String, String, &'static str), u64> {
        self.line_crossings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `{line: {label: {forward: n, backward: n}}}` for the stats message.
    fn line_crossings_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for ((line, label, dir), n) in self.line_crossings() {
            let by_label = out.entry(line).or_insert_with(|| serde_json::json!({}));
            by_label[label.as_str()][dir] = serde_json::json!(n);
        }
        serde_json::Value::Object(out)
    }
    pub fn set_status(&self, s: SourceStatus) {
        let mut changes = self
            .status_changes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.status.swap(s as u8, Relaxed) != s as u8 {
            changes.push(s);
        }
    }

    /// The status changes since the last call, oldest first.
    pub fn take_status_changes(&self) -> Vec<SourceStatus> {
        std::mem::take(
            &mut *self
                .status_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

#[derive(Default)]
pub struct MqttMetrics {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub connection_errors: AtomicU64,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub queued: AtomicU64,
    pub inflight: AtomicU64,
    /// QoS 0 messages dropped while disconnected or because the outbox was full.
    pub dropped: AtomicU64,
    /// Messages over `max_packet_size` even without their mask.
    pub too_large: AtomicU64,
    pub masks_stripped: AtomicU64,
    pub spool_messages: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub spooled_total: AtomicU64,
    pub replayed_total: AtomicU64,
    /// Control messages acted on.
    pub commands: AtomicU64,
    /// Control messages refused: unknown camera or topic, bad payload, retained, too many.
    pub commands_rejected: AtomicU64,
}

pub struct Metrics {
    pub start: Instant,
    /// The cameras configured now (SIGHUP adds and removes them), in config order.
    cameras: RwLock<Vec<Arc<CameraMetrics>>>,
    pub mqtt: MqttMetrics,
    pub model: String,
    pub engine: String,
    pub random_weights: bool,
}

impl Metrics {
    pub fn new(cameras: &[String], model: String, engine: String, random_weights: bool) -> Self {
        Self {
            start: Instant::now(),
            cameras: RwLock::new(
                cameras
                    .iter()
                    .map(|n| Arc::new(CameraMetrics::new(n)))
                    .collect(),
            ),
            mqtt: MqttMetrics::default(),
            model,
            engine,
            random_weights,
        }
    }

    /// The cameras configured now.
    pub fn cameras(&self) -> Vec<Arc<CameraMetrics>> {
        self.cameras
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Camera `name`'s counters.
    pub fn camera(&self, name: &str) -> Option<Arc<CameraMetrics>> {
        self.cameras
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    /// Camera `name`'s counters, added at the end if it is new (a camera added by SIGHUP); a
    /// camera that is restarted keeps its counters.
    pub fn add_camera(&self, name: &str) -> Arc<CameraMetrics> {
        let mut cams = self.cameras.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cams.iter().find(|c| c.name == name) {
            return c.clone();
        }
        let c = Arc::new(CameraMetrics::new(name));
        cams.push(c.clone());
        c
    }

    /// Forget camera `name` (removed by SIGHUP).
    pub fn remove_camera(&self, name: &str) {
        self.cameras
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.name != name);
    }

    /// Milliseconds since start (the clock of the `*_ms` marks).
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(s, "# HELP inspro_{name} {help}");
            let _ = writeln!(s, "# TYPE inspro_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(s, "inspro_{name}{labels} {v}");
            }
        };
        let cameras = self.cameras();
        let cam = |f: &dyn Fn(&CameraMetrics) -> f64| -> Vec<(String, f64)> {
            cameras
                .iter()
                .map(|c| (format!("{{camera=\"{}\"}}", c.name), f(c)))
                .collect()
        };
        let one = |v: f64| vec![(String::new(), v)];
        let l = |a: &AtomicU64| a.load(Relaxed) as f64;
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            one(self.start.elapsed().as_secs_f64()),
        );
        metric(
            "random_weights",
            "gauge",
            "1 when the model runs with random weights (no trained weights found).",
            one(f64::from(u8::from(self.random_weights))),
        );
        metric(
            "frames_in_total",
            "counter",
            "Frames delivered by the source.",
            cam(&|c| l(&c.frames_in)),
        );
        metric(
            "frames_processed_total",
            "counter",
            "Frames run through the engine.",
            cam(&|c| l(&c.frames_processed)),
        );
        metric(
            "frames_dropped_total",
            "counter",
            "Frames dropped because the engine queue was full.",
            cam(&|c| l(&c.frames_dropped)),
        );
        metric(
            "queue_depth",
            "gauge",
            "Items waiting for the engine.",
            cam(&|c| l(&c.queue_depth)),
        );
        metric(
            "source_restarts_total",
            "counter",
            "Source pipeline restarts (errors, stalls, end of live stream).",
            cam(&|c| l(&c.source_restarts)),
        );
        metric(
            "source_errors_total",
            "counter",
            "Errors posted by the source pipeline.",
            cam(&|c| l(&c.source_errors)),
        );
        metric(
            "source_stalls_total",
            "counter",
            "Restarts because no frame arrived within stall_timeout_s.",
            cam(&|c| l(&c.stalls)),
        );
        metric(
            "state_resets_total",
            "counter",
            "InsPro state resets (restart, PTS jump, size change).",
            cam(&|c| l(&c.state_resets)),
        );
        metric(
            "source_online",
            "gauge",
            "1 while the source delivers frames.",
            cam(&|c| f64::from(u8::from(c.status() == SourceStatus::Online))),
        );
        metric(
            "tracks_active",
            "gauge",
            "Open tracks.",
            cam(&|c| l(&c.tracks_active)),
        );
        metric(
            "tracks_total",
            "counter",
            "Tracks born.",
            cam(&|c| l(&c.tracks_total)),
        );
        metric(
            "events_total",
            "counter",
            "Event messages produced.",
            cam(&|c| l(&c.events)),
        );
        metric(
            "engine_errors_total",
            "counter",
            "Frames the engine failed on.",
            cam(&|c| l(&c.engine_errors)),
        );
        metric(
            "engine_seconds_total",
            "counter",
            "Time in the engine.",
            cam(&|c| l(&c.infer_us) / 1e6),
        );
        metric(
            "encode_seconds_total",
            "counter",
            "Time turning tracks into messages (masks, JSON).",
            cam(&|c| l(&c.encode_us) / 1e6),
        );
        metric(
            "queue_wait_seconds_total",
            "counter",
            "Time frames waited in the queue.",
            cam(&|c| l(&c.wait_us) / 1e6),
        );
        metric(
            "events_filtered_total",
            "counter",
            "Track events held back by [camera.filters].",
            cam(&|c| l(&c.events_filtered)),
        );
        metric(
            "snapshots_dropped_total",
            "counter",
            "Snapshots not queued because the encoder was behind.",
            cam(&|c| l(&c.snapshots_dropped)),
        );
        metric(
            "clips_written_total",
            "counter",
            "Event clips written ([camera.clips]).",
            cam(&|c| l(&c.clips.written)),
        );
        metric(
            "clips_dropped_total",
            "counter",
            "Event clips not written because the writer was behind.",
            cam(&|c| l(&c.clips.dropped)),
        );
        metric(
            "clips_failed_total",
            "counter",
            "Event clips that could not be written (the log says why).",
            cam(&|c| l(&c.clips.failed)),
        );
        metric(
            "clip_cpu_seconds_total",
            "counter",
            "Time spent on clips: keeping encoded frames and muxing them.",
            cam(&|c| l(&c.clips.cpu_us) / 1e6),
        );
        metric(
            "detect",
            "gauge",
            "1 while detection is on (frames reach the engine), 0 while it is switched off.",
            cam(&|c| f64::from(u8::from(c.detect.load(Relaxed)))),
        );
        metric(
            "frames_skipped_total",
            "counter",
            "Frames not given to the engine because detection was off.",
            cam(&|c| l(&c.frames_skipped)),
        );
        metric(
            "line_crossings_total",
            "counter",
            "Tracks crossing a [[camera.line]], by line, label and direction.",
            cameras
                .iter()
                .flat_map(|c| {
                    c.line_crossings()
                        .into_iter()
                        .map(|((line, label, dir), n)| {
                            (
                                format!(
                                "{{camera=\"{}\",line=\"{}\",label=\"{}\",direction=\"{dir}\"}}",
                                escape(&c.name),
                                escape(&line),
                                escape(&label)
                            ),
                                n as f64,
                            )
                        })
                })
                .collect(),
        );
        let m = &self.mqtt;
        metric(
            "mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            one(f64::from(u8::from(m.connected.load(Relaxed)))),
        );
        metric(
            "mqtt_connects_total",
            "counter",
            "Successful connections (ConnAck).",
            one(l(&m.connects)),
        );
        metric(
            "mqtt_connection_errors_total",
            "counter",
            "Connection errors.",
            one(l(&m.connection_errors)),
        );
        metric(
            "mqtt_published_total",
            "counter",
            "Messages handed to the connection.",
            one(l(&m.published)),
        );
        metric(
            "mqtt_acked_total",
            "counter",
            "QoS >= 1 messages acknowledged by the broker.",
            one(l(&m.acked)),
        );
        metric(
            "mqtt_queued",
            "gauge",
            "Messages waiting in memory.",
            one(l(&m.queued)),
        );
        metric(
            "mqtt_inflight",
            "gauge",
            "QoS >= 1 messages sent, not yet acknowledged.",
            one(l(&m.inflight)),
        );
        metric(
            "mqtt_dropped_total",
            "counter",
            "QoS 0 messages dropped (disconnected or queue full).",
            one(l(&m.dropped)),
        );
        metric(
            "mqtt_too_large_total",
            "counter",
            "Messages dropped: over max_packet_size even without a mask.",
            one(l(&m.too_large)),
        );
        metric(
            "mqtt_masks_stripped_total",
            "counter",
            "Messages sent without their mask to fit max_packet_size.",
            one(l(&m.masks_stripped)),
        );
        metric(
            "spool_messages",
            "gauge",
            "Messages in the on-disk spool.",
            one(l(&m.spool_messages)),
        );
        metric(
            "spool_bytes",
            "gauge",
            "Bytes in the on-disk spool.",
            one(l(&m.spool_bytes)),
        );
        metric(
            "spool_dropped_total",
            "counter",
            "Spooled messages dropped (oldest first) to keep the spool bound.",
            one(l(&m.spool_dropped)),
        );
        metric(
            "spooled_total",
            "counter",
            "Messages written to the spool.",
            one(l(&m.spooled_total)),
        );
        metric(
            "commands_total",
            "counter",
            "MQTT control messages acted on.",
            one(l(&m.commands)),
        );
        metric(
            "commands_rejected_total",
            "counter",
            "MQTT control messages refused (unknown camera or topic, bad payload, retained).",
            one(l(&m.commands_rejected)),
        );
        metric(
            "spool_replayed_total",
            "counter",
            "Messages replayed from the spool.",
            one(l(&m.replayed_total)),
        );
        s
    }
}

/// Per-camera counters at one time, to turn totals into rates: by camera name, (frames
/// processed, engine us, encode us, queue wait us).
#[derive(Clone, Default)]
pub struct Snapshot {
    at: Option<Instant>,
    cameras: BTreeMap<String, [u64; 4]>,
}

impl Metrics {
    /// The `<prefix>/stats` payload: rates since the previous call.
    pub fn stats_json(&self, prev: &mut Snapshot) -> serde_json::Value {
        let now = Instant::now();
        let dt = prev
            .at
            .map_or(self.start.elapsed(), |t| now - t)
            .as_secs_f64()
            .max(1e-3);
        let mut cams = serde_json::Map::new();
        let mut next = Snapshot {
            at: Some(now),
            ..Snapshot::default()
        };
        for c in self.cameras() {
            let processed = c.frames_processed.load(Relaxed);
            let (iu, eu, wu) = (
                c.infer_us.load(Relaxed),
                c.encode_us.load(Relaxed),
                c.wait_us.load(Relaxed),
            );
            let old = prev.cameras.get(&c.name).copied().unwrap_or_default();
            let n = processed.saturating_sub(old[0]);
            let per = |tot: u64, old: u64| {
                if n == 0 {
                    0.0
                } else {
                    (tot.saturating_sub(old)) as f64 / n as f64 / 1000.0
                }
            };
            cams.insert(
                c.name.clone(),
                serde_json::json!({
                    "status": c.status().as_str(),
                    "fps": n as f64 / dt,
                    "ms": {
                        "queue_wait": per(wu, old[3]),
                        "engine": per(iu, old[1]),
                        "encode": per(eu, old[2]),
                    },
                    "frames_in": c.frames_in.load(Relaxed),
                    "frames_processed": processed,
                    "frames_dropped": c.frames_dropped.load(Relaxed),
                    "queue_depth": c.queue_depth.load(Relaxed),
                    "queue_capacity": c.queue_capacity.load(Relaxed),
                    "source_restarts": c.source_restarts.load(Relaxed),
                    "state_resets": c.state_resets.load(Relaxed),
                    "tracks_active": c.tracks_active.load(Relaxed),
                    "tracks_total": c.tracks_total.load(Relaxed),
                    "events": c.events.load(Relaxed),
                    "line_crossings": c.line_crossings_json(),
                    "events_filtered": c.events_filtered.load(Relaxed),
                    "snapshots_dropped": c.snapshots_dropped.load(Relaxed),
                    "clips_written": c.clips.written.load(Relaxed),
                    "detect": c.detect.load(Relaxed),
                    "frames_skipped": c.frames_skipped.load(Relaxed),
                }),
            );
            next.cameras.insert(c.name.clone(), [processed, iu, eu, wu]);
        }
        *prev = next;
        let m = &self.mqtt;
        serde_json::json!({
            "uptime_s": self.start.elapsed().as_secs_f64(),
            "wall_time": crate::edge::events::wall_time_now(),
            "model": self.model,
            "engine": self.engine,
            "random_weights": self.random_weights,
            "cameras": cams,
            "mqtt": {
                "connected": m.connected.load(Relaxed),
                "connects": m.connects.load(Relaxed),
                "queued": m.queued.load(Relaxed),
                "inflight": m.inflight.load(Relaxed),
                "dropped": m.dropped.load(Relaxed),
                "too_large": m.too_large.load(Relaxed),
                "commands": m.commands.load(Relaxed),
                "commands_rejected": m.commands_rejected.load(Relaxed),
                "spool_messages": m.spool_messages.load(Relaxed),
                "spool_bytes": m.spool_bytes.load(Relaxed),
                "spool_dropped": m.spool_dropped.load(Relaxed),
            },
            "rss_bytes": rss_bytes(),
        })
    }
}

/// Resident set size of this process (Linux `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_change_is_kept_in_order() {
        let c = CameraMetrics::new("door");
        for s in [
            SourceStatus::Reconnecting,
            SourceStatus::Online,
            SourceStatus::Online,
            SourceStatus::Ended,
        ] {
            c.set_status(s);
        }
        assert_eq!(
            c.take_status_changes(),
            [
                SourceStatus::Reconnecting,
                SourceStatus::Online,
                SourceStatus::Ended
            ]
        );
        assert!(c.take_status_changes().is_empty());
        assert_eq!(c.status(), SourceStatus::Ended);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn line_crossings_reach_stats_and_prometheus() {
        let m = Metrics::new(&["door".to_string()], "tiny".into(), "candle".into(), false);
        m.cameras()[0].set_line_crossings(
            [
                (("gate".to_string(), "person".to_string(), "forward"), 3),
                (("gate".to_string(), "person".to_string(), "backward"), 1),
            ]
            .into_iter()
            .collect(),
        );
        let text = m.render_prometheus();
        assert!(
            text.contains(
                "inspro_line_crossings_total{camera=\"door\",line=\"gate\",label=\"person\",direction=\"forward\"} 3"
            ),
            "{text}"
        );
        let stats = m.stats_json(&mut Snapshot::default());
        assert_eq!(
            stats["cameras"]["door"]["line_crossings"]["gate"]["person"],
            serde_json::json!({"forward": 3, "backward": 1})
        );
    }
}
