//! Tracks from slots, in ByteTrack's words (`New`, `Tracked`, `Lost`, `Removed`). InsPro needs no
//! association: slot i is object i. This only decides when a slot holds an object worth
//! reporting, gives it a per-stream id, and ends it; a slot that is reused by a new object gets a
//! new id. Removed tracks are forgotten, so memory stays bounded on endless streams.

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
        prob("birth_nms_iou", self.birth_nms_iou)
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

/// What happened to a track on a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    New(Track),
    /// Seen again (Tracked) or still Lost; the publisher decides what is worth sending.
    Update(Track),
    /// Removed: lost for too long, reused by another object, or the stream ended.
    End(Track),
}

impl TrackEvent {
    pub fn track(&self) -> &Track {
        match self {
            TrackEvent::New(t) | TrackEvent::Update(t) | TrackEvent::End(t) => t,
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
}

/// The lifecycle of every slot of one stream.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    next_id: u64,
    slots: Vec<Slot>,
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
                        events.push(TrackEvent::End(t));
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
                            events.push(TrackEvent::End(t));
                            Slot::Empty
                        } else {
                            t.state = TrackState::Lost;
                            events.push(TrackEvent::Update(t.clone()));
                            Slot::Active(t)
                        }
                    }
                }
                Slot::Candidate { frames, prob_sum } => self.candidate(probs, p, prob_sum, frames),
                Slot::Empty => self.candidate(probs, p, Vec::new(), 0),
            };
        }
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

    /// End every open track (end of stream, shutdown, stream restart). Ids keep counting.
    pub fn end_all(&mut self) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        for s in &mut self.slots {
            if let Slot::Active(mut t) = std::mem::replace(s, Slot::Empty) {
                t.state = TrackState::Removed;
                events.push(TrackEvent::End(t));
            } else {
                *s = Slot::Empty;
            }
        }
        events
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
