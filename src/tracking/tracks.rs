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
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            birth_score: 0.5,
            min_frames: 2,
            keep_score: 0.3,
            max_lost_frames: 30,
            reuse_iou: 0.1,
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
        prob("reuse_iou", self.reuse_iou)
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

/// One slot's output on one frame, as the tracker sees it.
#[derive(Clone, Copy)]
struct Sighting<'a> {
    slot: usize,
    /// Class probabilities.
    probs: &'a [f32],
    /// The best class probability.
    p: f32,
    bx: [f32; 4],
    frame: u64,
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
            let seen = Sighting {
                slot,
                probs: &out.class_probs[slot],
                p,
                bx: out.boxes_xyxy[slot],
                frame: out.frame_index,
            };
            let (probs, bx) = (seen.probs, seen.bx);
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
                        self.candidate(&seen, Vec::new(), 0, &mut events)
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
                Slot::Candidate { frames, prob_sum } => {
                    self.candidate(&seen, prob_sum, frames, &mut events)
                }
                Slot::Empty => self.candidate(&seen, Vec::new(), 0, &mut events),
            };
        }
        events
    }

    /// A slot that holds no track yet: `frames` frames so far above `birth_score`, whose class
    /// probabilities sum to `prob_sum`; it becomes a track after `min_frames`.
    fn candidate(
        &mut self,
        seen: &Sighting<'_>,
        mut prob_sum: Vec<f64>,
        frames: u32,
        events: &mut Vec<TrackEvent>,
    ) -> Slot {
        let Sighting {
            slot,
            probs,
            p,
            bx,
            frame,
        } = *seen;
        if p < self.cfg.birth_score {
            return Slot::Empty;
        }
        if prob_sum.is_empty() {
            prob_sum = vec![0.0; probs.len()];
        }
        for (s, v) in prob_sum.iter_mut().zip(probs) {
            *s += f64::from(*v);
        }
        let frames = frames + 1;
        if frames < self.cfg.min_frames {
            return Slot::Candidate { frames, prob_sum };
        }
        let (label, sum) = argmax(&prob_sum);
        let t = Track {
            id: self.next_id,
            slot,
            state: TrackState::New,
            label,
            score: (sum / frames as f64) as f32,
            frame_score: p,
            box_xyxy: bx,
            first_frame: frame + 1 - u64::from(frames),
            last_seen_frame: frame,
            hits: u64::from(frames),
            lost_frames: 0,
            prob_sum,
        };
        self.next_id += 1;
        events.push(TrackEvent::New(t.clone()));
        let mut t = t;
        t.state = TrackState::Tracked;
        Slot::Active(t)
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
}
