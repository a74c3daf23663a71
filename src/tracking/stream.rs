//! One stream end to end, shared by the daemon, the GStreamer element and `inspro segment`:
//! engine step, state, and track lifecycle. A change of frame size starts a fresh state.

use std::sync::Arc;

use crate::frame::FrameRef;
use crate::model::ModelError;
use crate::runtime::{Engine, FrameOutput, StreamState};
use crate::tracking::{EndReason, TrackEvent, Tracker, TrackerConfig};
use crate::ytvis::Rle;

/// One processed frame.
#[derive(Debug, Clone)]
pub struct ProcessedFrame {
    pub output: FrameOutput,
    pub events: Vec<TrackEvent>,
    /// Events of tracks ended because the stream was reset before this frame (size change).
    pub reset_events: Vec<TrackEvent>,
}

pub struct StreamProcessor {
    engine: Arc<dyn Engine>,
    state: Option<StreamState>,
    tracker: Tracker,
}

impl StreamProcessor {
    pub fn new(engine: Arc<dyn Engine>, tracker: TrackerConfig) -> Self {
        Self {
            engine,
            state: None,
            tracker: Tracker::new(tracker),
        }
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut Tracker {
        &mut self.tracker
    }

    /// Frames processed since the last reset.
    pub fn frames(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.frame_index)
    }

    /// Segment a frame, advance the state and the tracks.
    pub fn process(&mut self, frame: &FrameRef<'_>) -> Result<ProcessedFrame, ModelError> {
        let mut reset_events = Vec::new();
        let fits = self.state.as_ref().is_some_and(|s| {
            s.geometry.orig_width == frame.width && s.geometry.orig_height == frame.height
        });
        if !fits {
            if self.state.is_some() {
                reset_events = self.reset(EndReason::StreamRestart);
            }
            self.state = Some(self.engine.init_state(frame.width, frame.height)?);
        }
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| ModelError::Input("stream state missing".into()))?;
        let output = self.engine.step(frame, state)?;
        let events = self.tracker.update(&output);
        Ok(ProcessedFrame {
            output,
            events,
            reset_events,
        })
    }

    /// Forget the InsPro state (stream restart, seek, jump, lost source, end) and end every open
    /// track for `reason`.
    pub fn reset(&mut self, reason: EndReason) -> Vec<TrackEvent> {
        self.state = None;
        self.tracker.end_all(reason)
    }
}

/// A slot's mask cropped to its box: the crop's origin in frame pixels and its COCO RLE
/// (column-major over the crop, size [crop_h, crop_w]).
pub fn box_crop_rle(out: &FrameOutput, slot: usize, box_xyxy: &[f32; 4]) -> ([usize; 2], Rle) {
    let rect = out.box_rect(box_xyxy);
    let (w, h) = (rect[2] - rect[0], rect[3] - rect[1]);
    let mask: Vec<u8> = out
        .mask_logits_in(slot, rect)
        .into_iter()
        .map(|v| u8::from(v > 0.0))
        .collect();
    (
        [rect[0], rect[1]],
        Rle::encode_row_major(&mask, h as u32, w as u32),
    )
}

/// A slot's mask over the whole frame as COCO RLE.
pub fn full_frame_rle(out: &FrameOutput, slot: usize) -> Rle {
    let g = &out.geometry;
    let mask: Vec<u8> = out
        .mask_logits_at_original(slot)
        .into_iter()
        .map(|v| u8::from(v > 0.0))
        .collect();
    Rle::encode_row_major(&mask, g.orig_height as u32, g.orig_width as u32)
}
