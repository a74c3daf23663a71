//! Tracks from slots, in ByteTrack's words (`New`, `Tracked`, `Lost`, `Removed`). InsPro needs no
//! association: slot i is object i. This only decides when a slot holds an object worth
//! reporting, gives it a per-stream id, and ends it (saying why, [`EndReason`]); a slot that is
//! reused by a new object gets a new id; two live slots that converge on one object become one
//! track. Removed tracks are forgotten, so memory stays bounded on endless streams.

use serde::{Deserialize, Serialize};

use crate::model::boxes::iou;
use crate::runtime::FrameOutput;

/// Options of the track lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// A slot's best class probability must reach this ...
    pub birth_score: f32,
    /// ... on this many consecutive frames for a track to be born.
    pub min_frames: u32,
    /// A track stays `Tracked` while its slot's best probability is at least this.
    pub keep_score: f32,
    /// A `Lost` track is `Removed` after this many frames below `keep_score`.
    pub max_lost_frames: u32,
    /// A lost track whose slot comes back with a box overlapping its last one by less than this
    /// IoU is taken as a new object in the same slot: the old track ends, a new id starts.
    pub reuse_iou: f32,
    /// Class-agnostic NMS at birth: a slot ready to become a track is held back while its box
    /// overlaps a track seen on this frame, or a slot of higher probability born on it, by more
    /// than this IoU (a second slot on one object). 1 (the default) births every slot, as the
    /// paper does: its box deduplication loss is what keeps slots apart.
    pub birth_nms_iou: f32,
    /// One slot per object: two live tracks whose masks overlap by at least this IoU on
    /// `merge_frames` consecutive frames on which both are seen are one object twice; the younger
    /// ends (reason `merged`, naming the older) and its slot is held back while it stays on the
    /// survivor. 1 turns merging off.
    pub merge_iou: f32,
    /// ... on this many consecutive frames.
    pub merge_frames: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            birth_score: 0.5,
            min_frames: 2,
            keep_score: 0.3,
            max_lost_frames: 30,
            reuse_iou: 0.1,
            birth_nms_iou: 1.0,
            merge_iou: 0.7,
            merge_frames: 5,
        }
    }
}

/// A tracker setting out of range: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TrackerConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl TrackerConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl TrackerConfig {
    /// Check the numbers; the error names the field.
    pub fn validate(&self) -> Result<(), TrackerConfigError> {
        let prob = |field: &'static str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(TrackerConfigError::new(
                    field,
                    format!("{v} is not in [0, 1]"),
                ))
            }
        };
        prob("birth_score", self.birth_score)?;
        prob("keep_score", self.keep_score)?;
        if self.keep_score > self.birth_score {
            return Err(TrackerConfigError::new(
                "keep_score",
                format!(
                    "{} is above birth_score {}",
                    self.keep_score, self.birth_score
                ),
            ));
        }
        if self.min_frames == 0 {
            return Err(TrackerConfigError::new("min_frames", "must be at least 1"));
        }
        prob("reuse_iou", self.reuse_iou)?;
        prob("birth_nms_iou", self.birth_nms_iou)?;
        prob("merge_iou", self.merge_iou)?;
        if self.merge_frames == 0 {
            return Err(TrackerConfigError::new(
                "merge_frames",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackState {
    /// Born on this frame.
    New,
    Tracked,
    /// Below `keep_score`, not yet removed.
    Lost,
    Removed,
}

/// A track as the outside sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Per-stream id: 1, 2, 3, ... in birth order.
    pub id: u64,
    /// The query slot carrying the object.
    pub slot: usize,
    pub state: TrackState,
    /// Argmax of the running mean of class probabilities.
    pub label: usize,
    /// Running mean probability of `label`.
    pub score: f32,
    /// This frame's best class probability of the slot.
    pub frame_score: f32,
    /// Last box seen above `keep_score`, xyxy in frame pixels.
    pub box_xyxy: [f32; 4],
    pub first_frame: u64,
    pub last_seen_frame: u64,
    /// Frames seen above `keep_score`.
    pub hits: u64,
    /// Consecutive frames below `keep_score`.
    pub lost_frames: u32,
    #[serde(skip)]
    prob_sum: Vec<f64>,
}

/// Why a track ended: the tracker's own reasons (the object left, its slot was reused, it was
/// merged), and the ones a stream's owner gives when it ends every track at once
/// ([`Tracker::end_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Not seen for `max_lost_frames`: the object left the view (or stayed hidden too long).
    Removed,
    /// Its slot came back on another object (`reuse_iou`).
    Replaced,
    /// The same object as the older track `into` (`merge_iou`): one slot per object.
    Merged { into: u64 },
    /// The stream ended (end of a file or a finite source).
    EndOfStream,
    /// The process is stopping.
    Shutdown,
    /// The stream started again (a file looped, a timestamp jump, new caps, a seek).
    StreamRestart,
    /// The source failed, stalled or disconnected: the camera was lost.
    CameraLost,
    /// Detection was switched off for the stream (its frames no longer reach the engine).
    DetectOff,
    /// The camera was disabled (its pipeline stopped).
    Disabled,
    /// The camera was removed from the configuration.
    CameraRemoved,
    /// The camera's settings changed (SIGHUP): its pipeline restarted.
    Reconfigured,
}

impl EndReason {
    /// The reason as events carry it (`"reason"` of an `end`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Removed => "removed",
            EndReason::Replaced => "replaced",
            EndReason::Merged { .. } => "merged",
            EndReason::EndOfStream => "end_of_stream",
            EndReason::Shutdown => "shutdown",
            EndReason::StreamRestart => "stream_restart",
            EndReason::CameraLost => "camera_lost",
            EndReason::DetectOff => "detect_off",
            EndReason::Disabled => "disabled",
            EndReason::CameraRemoved => "camera_removed",
            EndReason::Reconfigured => "reconfigured",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Merged { into } => write!(f, "merged into {into}"),
            r => f.write_str(r.as_str()),
        }
    }
}

/// What happened to a track on a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    New(Track),
    /// Seen again (Tracked) or still Lost; the publisher decides what is worth sending.
    Update(Track),
    /// Removed, and why.
    End(Track, EndReason),
}

impl TrackEvent {
    pub fn track(&self) -> &Track {
        match self {
            TrackEvent::New(t) | TrackEvent::Update(t) | TrackEvent::End(t, _) => t,
        }
    }

    /// Why the track ended (`None` unless this is an `End`).
    pub fn end_reason(&self) -> Option<EndReason> {
        match self {
            TrackEvent::End(_, r) => Some(*r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    /// Consecutive frames at or above `birth_score`, with their probabilities summed.
    Candidate {
        frames: u32,
        prob_sum: Vec<f64>,
    },
    Active(Track),
    /// Its track was merged into track `into` (in slot `slot`): held back while it stays on that
    /// object (seen, its box overlapping the survivor's by more than `reuse_iou`).
    Absorbed {
        into: u64,
        slot: usize,
    },
}

/// The lifecycle of every slot of one stream.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    next_id: u64,
    slots: Vec<Slot>,
    /// Consecutive frames on which two live tracks' masks overlapped by `merge_iou` or more,
    /// by (older id, younger id).
    overlaps: std::collections::BTreeMap<(u64, u64), u32>,
}

fn argmax(v: &[f64]) -> (usize, f64) {
    v.iter().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |b, (i, &x)| if x > b.1 { (i, x) } else { b },
    )
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            next_id: 1,
            slots: Vec::new(),
            overlaps: Default::default(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Change the thresholds without touching live tracks (SIGHUP reload).
    pub fn set_config(&mut self, cfg: TrackerConfig) {
        self.cfg = cfg;
    }

    /// Tracks that are not removed.
    pub fn active(&self) -> impl Iterator<Item = &Track> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Active(t) => Some(t),
            _ => None,
        })
    }

    /// Advance by one frame; returns the events of this frame in slot order.
    pub fn update(&mut self, out: &FrameOutput) -> Vec<TrackEvent> {
        let n = out.num_slots();
        if self.slots.len() != n {
            self.slots.resize(n, Slot::Empty);
        }
        let mut events = Vec::new();
        for slot in 0..n {
            let (_, p) = out.best_class(slot);
            let (probs, bx) = (&out.class_probs[slot], out.boxes_xyxy[slot]);
            let current = std::mem::replace(&mut self.slots[slot], Slot::Empty);
            self.slots[slot] = match current {
                Slot::Active(mut t) => {
                    if p >= self.cfg.keep_score
                        && t.state == TrackState::Lost
                        && iou(&t.box_xyxy, &bx) < self.cfg.reuse_iou
                    {
                        // Another object took the slot: end this track, judge the newcomer afresh.
                        t.state = TrackState::Removed;
                        events.push(TrackEvent::End(t, EndReason::Replaced));
                        self.candidate(probs, p, Vec::new(), 0)
                    } else if p >= self.cfg.keep_score {
                        for (s, v) in t.prob_sum.iter_mut().zip(probs) {
                            *s += f64::from(*v);
                        }
                        t.hits += 1;
                        t.lost_frames = 0;
                        t.state = TrackState::Tracked;
                        t.box_xyxy = bx;
                        t.last_seen_frame = out.frame_index;
                        t.frame_score = p;
                        let (label, sum) = argmax(&t.prob_sum);
                        t.label = label;
                        t.score = (sum / t.hits as f64) as f32;
                        events.push(TrackEvent::Update(t.clone()));
                        Slot::Active(t)
                    } else {
                        t.lost_frames += 1;
                        t.frame_score = p;
                        if t.lost_frames > self.cfg.max_lost_frames {
                            t.state = TrackState::Removed;
                            events.push(TrackEvent::End(t, EndReason::Removed));
                            Slot::Empty
                        } else {
                            t.state = TrackState::Lost;
                            events.push(TrackEvent::Update(t.clone()));
                            Slot::Active(t)
                        }
                    }
                }
                Slot::Candidate { frames, prob_sum } => self.candidate(probs, p, prob_sum, frames),
                Slot::Absorbed { into, slot: s } => {
                    let on_survivor = match self.slots.get(s) {
                        Some(Slot::Active(sv)) if sv.id == into => {
                            iou(&sv.box_xyxy, &bx) > self.cfg.reuse_iou
                        }
                        _ => false,
                    };
                    if p >= self.cfg.keep_score && on_survivor {
                        Slot::Absorbed { into, slot: s }
                    } else {
                        // Let go of the object (or the survivor ended): judged afresh.
                        self.candidate(probs, p, Vec::new(), 0)
                    }
                }
                Slot::Empty => self.candidate(probs, p, Vec::new(), 0),
            };
        }
        events.extend(self.merges(out));
        for slot in self.births(out) {
            events.extend(self.birth(slot, out));
        }
        // In slot order; a slot's `End` (reused by a newcomer) stays before its `New`.
        events.sort_by_key(|e| e.track().slot);
        events
    }

    /// A slot that holds no track yet, seen with class probabilities `probs` (best `p`):
    /// `frames` frames so far above `birth_score`, whose class probabilities sum to `prob_sum`.
    /// After `min_frames` it is ready to be born; `update` decides which ready slots become
    /// tracks ([`TrackerConfig::birth_nms_iou`]).
    fn candidate(&self, probs: &[f32], p: f32, mut prob_sum: Vec<f64>, frames: u32) -> Slot {
        if p < self.cfg.birth_score {
            return Slot::Empty;
        }
        if prob_sum.is_empty() {
            prob_sum = vec![0.0; probs.len()];
        }
        for (s, v) in prob_sum.iter_mut().zip(probs) {
            *s += f64::from(*v);
        }
        Slot::Candidate {
            frames: frames + 1,
            prob_sum,
        }
    }

    /// Of the slots ready to be born on this frame, the ones that are not a second slot on an
    /// object already tracked: NMS in descending probability against the boxes of the tracks seen
    /// on this frame. Returned in slot order, the order ids are given in.
    fn births(&self, out: &FrameOutput) -> Vec<usize> {
        let min_frames = self.cfg.min_frames;
        let mut ready: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                matches!(self.slots[i], Slot::Candidate { frames, .. } if frames >= min_frames)
            })
            .collect();
        if self.cfg.birth_nms_iou >= 1.0 || ready.is_empty() {
            return ready;
        }
        let mut kept: Vec<[f32; 4]> = self
            .active()
            .filter(|t| t.state == TrackState::Tracked && t.last_seen_frame == out.frame_index)
            .map(|t| t.box_xyxy)
            .collect();
        ready.sort_by(|&a, &b| out.best_class(b).1.total_cmp(&out.best_class(a).1));
        let mut born = Vec::with_capacity(ready.len());
        for slot in ready {
            let bx = out.boxes_xyxy[slot];
            if kept.iter().all(|k| iou(k, &bx) <= self.cfg.birth_nms_iou) {
                kept.push(bx);
                born.push(slot);
            }
        }
        born.sort_unstable();
        born
    }

    /// Candidate slot `slot` becomes a track with the next id (`None`: it holds no candidate).
    fn birth(&mut self, slot: usize, out: &FrameOutput) -> Option<TrackEvent> {
        let Slot::Candidate { frames, prob_sum } =
            std::mem::replace(&mut self.slots[slot], Slot::Empty)
        else {
            return None;
        };
        let (label, sum) = argmax(&prob_sum);
        let frame = out.frame_index;
        let t = Track {
            id: self.next_id,
            slot,
            state: TrackState::New,
            label,
            score: (sum / frames as f64) as f32,
            frame_score: out.best_class(slot).1,
            box_xyxy: out.boxes_xyxy[slot],
            first_frame: frame + 1 - u64::from(frames),
            last_seen_frame: frame,
            hits: u64::from(frames),
            lost_frames: 0,
            prob_sum,
        };
        self.next_id += 1;
        self.slots[slot] = Slot::Active(Track {
            state: TrackState::Tracked,
            ..t.clone()
        });
        Some(TrackEvent::New(t))
    }

    /// Two live tracks seen on this frame whose masks overlapped by `merge_iou` or more on
    /// `merge_frames` consecutive such frames: the younger ends, merged into the older, and its
    /// slot is held back while it stays on the survivor. Pairs not both seen keep their count;
    /// pairs seen apart start again.
    fn merges(&mut self, out: &FrameOutput) -> Vec<TrackEvent> {
        if self.cfg.merge_iou >= 1.0 {
            return Vec::new();
        }
        let seen: Vec<(usize, u64, [f32; 4])> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Active(t)
                    if t.state == TrackState::Tracked && t.last_seen_frame == out.frame_index =>
                {
                    Some((i, t.id, t.box_xyxy))
                }
                _ => None,
            })
            .collect();
        let live: std::collections::BTreeSet<u64> = self.active().map(|t| t.id).collect();
        self.overlaps
            .retain(|(a, b), _| live.contains(a) && live.contains(b));
        let mut masks: std::collections::BTreeMap<usize, Vec<bool>> = Default::default();
        let mut merged = Vec::new();
        for (x, &(si, ida, ba)) in seen.iter().enumerate() {
            for &(sj, idb, bb) in &seen[x + 1..] {
                // Ids grow with age: the smaller id is the older track.
                let (older, younger) = if ida < idb { (ida, idb) } else { (idb, ida) };
                let key = (older, younger);
                if iou(&ba, &bb) <= 0.0 {
                    self.overlaps.remove(&key);
                    continue;
                }
                let mi = mask_iou(out, &mut masks, si, sj);
                if mi < self.cfg.merge_iou {
                    self.overlaps.remove(&key);
                    continue;
                }
                let n = self.overlaps.entry(key).or_insert(0);
                *n += 1;
                if *n >= self.cfg.merge_frames {
                    merged.push(key);
                }
            }
        }
        let mut events = Vec::new();
        for (older, younger) in merged {
            let survivor_slot = self.slot_of(older);
            let Some(ys) = self.slot_of(younger) else {
                continue;
            };
            let Some(ss) = survivor_slot else {
                continue;
            };
            self.overlaps
                .retain(|(a, b), _| *a != younger && *b != younger);
            let absorbed = Slot::Absorbed {
                into: older,
                slot: ss,
            };
            if let Slot::Active(mut t) = std::mem::replace(&mut self.slots[ys], absorbed) {
                t.state = TrackState::Removed;
                events.push(TrackEvent::End(t, EndReason::Merged { into: older }));
            }
        }
        events
    }

    /// The slot holding live track `id`.
    fn slot_of(&self, id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(s, Slot::Active(t) if t.id == id))
    }

    /// End every open track, for `reason` (end of stream, shutdown, stream restart, camera
    /// lost, ...). Ids keep counting.
    pub fn end_all(&mut self, reason: EndReason) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        for s in &mut self.slots {
            if let Slot::Active(mut t) = std::mem::replace(s, Slot::Empty) {
                t.state = TrackState::Removed;
                events.push(TrackEvent::End(t, reason));
            }
        }
        self.overlaps.clear();
        events
    }
}

/// The IoU of two slots' masks on the network's mask grid (logit > 0), each mask thresholded once
/// per frame (`cache`).
fn mask_iou(
    out: &FrameOutput,
    cache: &mut std::collections::BTreeMap<usize, Vec<bool>>,
    a: usize,
    b: usize,
) -> f32 {
    let area = out.mask_h * out.mask_w;
    let mut get = |s: usize| -> Vec<bool> {
        cache
            .entry(s)
            .or_insert_with(|| {
                out.mask_logits
                    .get(s * area..(s + 1) * area)
                    .map_or_else(Vec::new, |m| m.iter().map(|v| *v > 0.0).collect())
            })
            .clone()
    };
    let (ma, mb) = (get(a), get(b));
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in ma.iter().zip(&mb) {
        inter += usize::from(*x && *y);
        union += usize::from(*x || *y);
    }
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

impl TrackerConfig {
    /// The defaults with another birth score; the keep score follows at the default ratio
    /// (0.3 / 0.5), so 0.5 gives the defaults. The element's `score-threshold` and
    /// `inspro segment --show-threshold` set it.
    pub fn with_birth_score(birth_score: f32) -> Self {
        let d = Self::default();
        Self {
            birth_score,
            keep_score: birth_score * d.keep_score / d.birth_score,
            ..d
        }
    }

    /// These settings with another [`TrackerConfig::birth_nms_iou`].
    pub fn with_birth_nms_iou(self, birth_nms_iou: f32) -> Self {
        Self {
            birth_nms_iou,
            ..self
        }
    }
}
