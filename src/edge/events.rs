//! Track events to MQTT messages, Frigate-style: `<prefix>/<camera>/events` with `type`
//! new / update / end and `before` / `after`; updates throttled (a significant change at once,
//! any change at most every `update_interval_s`, a heartbeat every `heartbeat_s`); masks as COCO
//! RLE of the box crop plus its origin (or of the full frame, or polygons); a per-camera `seq`
//! for consumer de-duplication. Pure: no IO, no clocks other than the ones passed in.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::edge::config::{MaskFormat, MaskRegion, PublishConfig, QosConfig};
use crate::edge::polygons::polygons;
use crate::edge::topics::Topics;
use crate::tracking::rules::{Crossed, RuleState, Rules};
use crate::tracking::{
    box_crop_rle, full_frame_rle, EndReason, FrameOutput, Track, TrackEvent, TrackState,
};

/// One MQTT message, ready to send.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutMsg {
    pub topic: String,
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
    /// A binary payload (snapshots' JPEG) sent instead of `payload`; never spooled (QoS 0).
    #[serde(skip)]
    pub bytes: Option<std::sync::Arc<[u8]>>,
}

impl OutMsg {
    /// A binary message at QoS 0.
    pub fn binary(topic: String, bytes: Vec<u8>, retain: bool) -> Self {
        Self {
            topic,
            payload: String::new(),
            qos: 0,
            retain,
            bytes: Some(bytes.into()),
        }
    }

    /// The bytes on the wire.
    pub fn wire_bytes(&self) -> Vec<u8> {
        self.bytes
            .as_deref()
            .map_or_else(|| self.payload.clone().into_bytes(), <[u8]>::to_vec)
    }
}

/// Frame facts every message carries.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub index: u64,
    /// Presentation time, nanoseconds (None when the source has none).
    pub pts_ns: Option<u64>,
    pub width: usize,
    pub height: usize,
}

/// The last frame a track was seen on, kept so that Lost tracks and `end` events still carry the
/// mask of the object as last seen (one slot's stride-4 logits; bounded by the open tracks).
#[derive(Debug, Clone)]
struct LastSeen {
    out: FrameOutput,
}

impl LastSeen {
    fn capture(out: &FrameOutput, slot: usize) -> Self {
        let plane = out.mask_h * out.mask_w;
        Self {
            out: FrameOutput {
                frame_index: out.frame_index,
                key_frame: out.key_frame,
                stages_run: out.stages_run,
                geometry: out.geometry,
                class_probs: vec![out.class_probs[slot].clone()],
                boxes_xyxy: vec![out.boxes_xyxy[slot]],
                mask_logits: out.mask_logits[slot * plane..(slot + 1) * plane].to_vec(),
                mask_h: out.mask_h,
                mask_w: out.mask_w,
            },
        }
    }
}

struct Published {
    at_s: f64,
    box_xyxy: [f32; 4],
    label: usize,
    state: TrackState,
    score: f32,
    /// The `after` block without its mask: the next message's `before`.
    after: Value,
}

/// Per-camera event state: throttling, `before` blocks, sequence numbers.
pub struct EventBuilder {
    camera: String,
    events_topic: String,
    tracks_topic: String,
    run: String,
    class_names: Vec<String>,
    cfg: PublishConfig,
    qos: QosConfig,
    max_payload: usize,
    seq: u64,
    last: HashMap<u64, Published>,
    seen: HashMap<u64, LastSeen>,
    /// Messages sent without their mask because they were too large.
    pub masks_stripped: u64,
    /// update events held back by the throttle.
    pub suppressed: u64,
    /// Zones, lines and filters of this camera, and where its tracks stood.
    rules: Rules,
    rule_state: RuleState,
    /// Track events not published because the track fails its label's filter.
    pub filtered: u64,
    /// The tracks the last `on_events` sent `new` for.
    born: Vec<u64>,
}

/// Why an update went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Significant,
    Interval,
    Heartbeat,
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        1.0
    }
}

/// A box clamped to the frame (the network's boxes may overhang it).
fn clamp_box(b: &[f32; 4], f: &FrameInfo) -> [f32; 4] {
    if f.width == 0 || f.height == 0 {
        return *b;
    }
    let (w, h) = (f.width as f32, f.height as f32);
    [
        b[0].clamp(0.0, w),
        b[1].clamp(0.0, h),
        b[2].clamp(0.0, w),
        b[3].clamp(0.0, h),
    ]
}

fn round2(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

fn round4(v: f32) -> f64 {
    (f64::from(v) * 10000.0).round() / 10000.0
}

/// Unix time in seconds (float) and RFC 3339 UTC with milliseconds.
/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn wall_time_now() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let ms = d.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What an [`EventBuilder`] is made from: one camera's topics, run id, classes and publishing
/// settings.
pub struct EventBuilderOptions<'a> {
    /// `mqtt.topic_prefix`.
    pub prefix: &'a str,
    pub camera: &'a str,
    pub run: &'a str,
    pub class_names: Vec<String>,
    pub cfg: PublishConfig,
    pub qos: QosConfig,
    /// `mqtt.max_packet_size`: payloads are kept below it.
    pub max_packet_size: usize,
    /// The camera's zones, lines and filters.
    pub rules: Rules,
}

impl EventBuilder {
    pub fn new(opts: EventBuilderOptions<'_>) -> Self {
        let EventBuilderOptions {
            prefix,
            camera,
            run,
            class_names,
            cfg,
            qos,
            max_packet_size,
            rules,
        } = opts;
        let topics = Topics::new(prefix);
        let topics = topics.camera(camera);
        Self {
            camera: camera.to_string(),
            events_topic: topics.events(),
            tracks_topic: topics.tracks(),
            run: run.to_string(),
            class_names,
            cfg,
            qos,
            // Fixed header (<= 5), topic length (2), packet id (2), the topic itself.
            max_payload: max_packet_size.saturating_sub(16 + prefix.len() + camera.len() + 16),
            seq: 0,
            last: HashMap::new(),
            seen: HashMap::new(),
            masks_stripped: 0,
            suppressed: 0,
            rules,
            rule_state: RuleState::default(),
            filtered: 0,
            born: Vec::new(),
        }
    }

    /// Hot reload of the camera's rules (zones entered so far are kept).
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// Line crossings so far by (line, label, direction).
    pub fn line_counts(&self) -> std::collections::BTreeMap<(String, String, &'static str), u64> {
        self.rule_state
            .counts
            .iter()
            .map(|((line, label, dir), n)| ((line.clone(), label.clone(), dir.as_str()), *n))
            .collect()
    }

    /// Hot reload of the publishing options.
    pub fn set_config(&mut self, cfg: PublishConfig) {
        self.cfg = cfg;
    }

    /// The tracks the last [`EventBuilder::on_events`] published as `new` (a filtered track is
    /// born when it first passes).
    /// This run's id (the first part of every `event_id`).
    pub fn run(&self) -> &str {
        &self.run
    }

    pub fn born(&self) -> &[u64] {
        &self.born
    }

    /// Whether a `new` went out for this track and no `end` yet.
    pub fn is_published(&self, id: u64) -> bool {
        self.last.contains_key(&id)
    }

    pub fn open_tracks(&self) -> usize {
        self.seen.len()
    }

    /// The tracks published as open (a `new` went out, no `end` yet): id -> the last published
    /// `after` block (without its mask). With `seq` and `run`, what a restart needs to end them.
    pub fn open_state(&self) -> (u64, &str, Vec<(u64, &Value)>) {
        let mut open: Vec<(u64, &Value)> =
            self.last.iter().map(|(id, p)| (*id, &p.after)).collect();
        open.sort_by_key(|(id, _)| *id);
        (self.seq, &self.run, open)
    }

    /// A class's name (`class_<i>` where the model has none).
    pub fn label_name(&self, i: usize) -> String {
        self.class_names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class_{i}"))
    }

    /// A track as published; the box is clamped to the frame (the network's may overhang it).
    fn track_json(&self, t: &Track, f: &FrameInfo) -> Value {
        let b = clamp_box(&t.box_xyxy, f);
        json!({
            "id": t.id,
            "event_id": format!("{}-{}-{}", self.run, self.camera, t.id),
            "label": self.label_name(t.label),
            "label_id": t.label,
            "score": round4(t.score),
            "frame_score": round4(t.frame_score),
            "state": t.state,
            "box": b.iter().map(|v| round2(*v)).collect::<Vec<_>>(),
            "area": round2((b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)),
            "slot": t.slot,
            "first_frame": t.first_frame,
            "last_seen_frame": t.last_seen_frame,
            "hits": t.hits,
            "lost_frames": t.lost_frames,
            "current_zones": self.rule_state.zones(t.id).0,
            "entered_zones": self.rule_state.zones(t.id).1,
        })
    }

    /// What every event carries: its type, the next `seq`, run, camera, frame and times.
    fn envelope(&mut self, kind: &str, f: &FrameInfo) -> Value {
        self.seq += 1;
        let now = SystemTime::now();
        json!({
            "type": kind,
            "seq": self.seq,
            "run": self.run,
            "camera": self.camera,
            "frame": Self::frame_json(f),
            "wall_time": rfc3339(now),
            "timestamp": now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        })
    }

    /// A track crossing a line: `type` `line`, the line, the direction and the track.
    fn line_message(&mut self, line: &str, dir: Crossed, t: &Track, f: &FrameInfo) -> OutMsg {
        let mut body = self.envelope("line", f);
        body["line"] = json!(line);
        body["direction"] = json!(dir.as_str());
        body["after"] = self.track_json(t, f);
        OutMsg {
            topic: self.events_topic.clone(),
            payload: body.to_string(),
            qos: self.qos.lifecycle,
            retain: false,
            bytes: None,
        }
    }

    fn mask_json(&self, id: u64) -> Value {
        let Some(seen) = self.seen.get(&id) else {
            return Value::Null;
        };
        let out = &seen.out;
        let frame = out.frame_index;
        match (self.cfg.mask_format, self.cfg.mask_region) {
            (MaskFormat::None, _) => Value::Null,
            (MaskFormat::CocoRle, MaskRegion::Box) => {
                let (origin, rle) = box_crop_rle(out, 0, &out.boxes_xyxy[0]);
                json!({
                    "format": "coco_rle",
                    "size": [rle.h, rle.w],
                    "counts": rle.to_compressed(),
                    "origin": origin,
                    "frame": frame,
                    "pixels": rle.area(),
                })
            }
            (MaskFormat::CocoRle, MaskRegion::Frame) => {
                let rle = full_frame_rle(out, 0);
                json!({
                    "format": "coco_rle",
                    "size": [rle.h, rle.w],
                    "counts": rle.to_compressed(),
                    "frame": frame,
                    "pixels": rle.area(),
                })
            }
            (MaskFormat::Polygon, _) => {
                let (origin, rle) = box_crop_rle(out, 0, &out.boxes_xyxy[0]);
                let polys = polygons(&rle, origin, self.cfg.polygon_tolerance);
                json!({"format": "polygon", "polygons": polys, "frame": frame, "pixels": rle.area()})
            }
        }
    }

    pub fn frame_json(f: &FrameInfo) -> Value {
        json!({
            "index": f.index,
            "pts": f.pts_ns.map(|p| p as f64 / 1e9),
            "width": f.width,
            "height": f.height,
        })
    }

    fn message(
        &mut self,
        kind: &str,
        reason: &str,
        extra: Option<(&str, Value)>,
        t: &Track,
        f: &FrameInfo,
        mask: bool,
    ) -> OutMsg {
        let after = self.track_json(t, f);
        let before = self
            .last
            .get(&t.id)
            .map_or(Value::Null, |p| p.after.clone());
        let mut body = self.envelope(kind, f);
        body["reason"] = json!(reason);
        if let Some((k, v)) = extra {
            body[k] = v;
        }
        body["before"] = before;
        body["after"] = after.clone();
        if mask {
            body["after"]["mask"] = self.mask_json(t.id);
        }
        let mut payload = body.to_string();
        if payload.len() > self.max_payload && mask {
            body["after"]["mask"] = Value::Null;
            body["after"]["mask_omitted"] = json!("larger than mqtt.max_packet_size");
            payload = body.to_string();
            self.masks_stripped += 1;
        }
        let qos = if kind == "update" {
            self.qos.update
        } else {
            self.qos.lifecycle
        };
        let time_s = self.stream_time(f);
        self.last.insert(
            t.id,
            Published {
                at_s: time_s,
                box_xyxy: t.box_xyxy,
                label: t.label,
                state: t.state,
                score: t.score,
                after,
            },
        );
        OutMsg {
            topic: self.events_topic.clone(),
            payload,
            qos,
            retain: false,
            bytes: None,
        }
    }

    /// Stream time for throttling: the PTS when there is one (files run faster than real time),
    /// else the frame index at a nominal 30 fps.
    fn stream_time(&self, f: &FrameInfo) -> f64 {
        f.pts_ns.map_or(f.index as f64 / 30.0, |p| p as f64 / 1e9)
    }

    fn update_reason(&self, t: &Track, time_s: f64) -> Option<Reason> {
        let Some(p) = self.last.get(&t.id) else {
            return Some(Reason::Significant);
        };
        let dt = time_s - p.at_s;
        // A stream-time jump backwards (restart) counts as long ago.
        let dt = if dt < 0.0 { f64::INFINITY } else { dt };
        if p.label != t.label
            || p.state != t.state
            || iou(&p.box_xyxy, &t.box_xyxy) < self.cfg.significant_iou
        {
            return Some(Reason::Significant);
        }
        let changed = p.box_xyxy != t.box_xyxy || (p.score - t.score).abs() > 1e-4;
        if changed && dt >= self.cfg.update_interval_s {
            return Some(Reason::Interval);
        }
        if self.cfg.heartbeat_s > 0.0 && dt >= self.cfg.heartbeat_s {
            return Some(Reason::Heartbeat);
        }
        None
    }

    /// Turn one frame's track events into messages. `out` is the frame the events came from
    /// (None for events without a frame: shutdown, source restart).
    pub fn on_events(
        &mut self,
        events: &[TrackEvent],
        out: Option<&FrameOutput>,
        f: &FrameInfo,
    ) -> Vec<OutMsg> {
        let mut msgs = Vec::new();
        self.born.clear();
        for ev in events {
            let t = ev.track();
            if let Some(out) = out {
                // Seen on this frame: keep the slot's mask as last seen.
                if t.state != TrackState::Lost
                    && t.last_seen_frame == out.frame_index
                    && t.slot < out.num_slots()
                    && !matches!(ev, TrackEvent::End(..))
                {
                    self.seen.insert(t.id, LastSeen::capture(out, t.slot));
                }
            }
            let published = self.last.contains_key(&t.id);
            if let TrackEvent::End(t, why) = ev {
                if published {
                    // A merged track names its survivor beside the reason.
                    let extra = match why {
                        EndReason::Merged { into } => Some(("merged_into", json!(into))),
                        _ => None,
                    };
                    msgs.push(self.message("end", why.as_str(), extra, t, f, true));
                }
                self.last.remove(&t.id);
                self.seen.remove(&t.id);
                self.rule_state.forget(t.id);
                continue;
            }
            let label = self.label_name(t.label);
            let b = clamp_box(&t.box_xyxy, f);
            if !published && !self.rules.passes(&label, t.score, &b) {
                // Not published until it passes its label's filter; then as `new`.
                self.filtered += 1;
                continue;
            }
            let seen_now = out.is_some_and(|o| t.last_seen_frame == o.frame_index);
            let obs = (seen_now && t.state != TrackState::Lost)
                .then(|| self.rule_state.observe(&self.rules, t.id, &label, &b));
            if !published {
                msgs.push(self.message("new", "new", None, t, f, true));
                self.born.push(t.id);
            } else {
                let time_s = self.stream_time(f);
                let zones_changed = obs.as_ref().is_some_and(|o| o.zones_changed);
                let reason = match self.update_reason(t, time_s) {
                    Some(Reason::Significant) => Some("significant"),
                    _ if zones_changed => Some("zone"),
                    Some(Reason::Interval) => Some("interval"),
                    Some(Reason::Heartbeat) => Some("heartbeat"),
                    None => None,
                };
                match reason {
                    Some(reason) => {
                        let mask = self.cfg.mask_in_update;
                        msgs.push(self.message("update", reason, None, t, f, mask));
                    }
                    None => self.suppressed += 1,
                }
            }
            for (line, dir) in obs.map(|o| o.crossings).unwrap_or_default() {
                msgs.push(self.line_message(&line, dir, t, f));
            }
        }
        msgs
    }

    /// The per-frame `tracks` message (boxes, no masks), when enabled for this frame.
    pub fn tracks_message<'a>(
        &self,
        tracks: impl Iterator<Item = &'a Track>,
        f: &FrameInfo,
    ) -> Option<OutMsg> {
        if !self.cfg.tracks
            || !f
                .index
                .is_multiple_of(u64::from(self.cfg.tracks_every.max(1)))
        {
            return None;
        }
        let tracks: Vec<Value> = tracks
            .map(|t| {
                json!({
                    "id": t.id,
                    "label": self.label_name(t.label),
                    "score": round4(t.score),
                    "state": t.state,
                    "box": clamp_box(&t.box_xyxy, f).iter().map(|v| round2(*v)).collect::<Vec<_>>(),
                })
            })
            .collect();
        Some(OutMsg {
            topic: self.tracks_topic.clone(),
            payload: json!({
                "camera": self.camera,
                "run": self.run,
                "frame": Self::frame_json(f),
                "wall_time": wall_time_now(),
                "tracks": tracks,
            })
            .to_string(),
            qos: self.qos.tracks,
            retain: false,
            bytes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_199_123);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.123Z");
    }
}
