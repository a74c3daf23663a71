//! Per-stream state: each stream's (instance query, proposal box) pairs and feature bank, carried
//! from frame to frame so that query slot i stays bound to one object with no tracker; and the
//! YouTube-VIS results a video's slots become.

pub mod rules;
pub mod stream;
pub mod tracks;
pub mod video;

// The state lives in the runtime; these paths stay for callers.
pub use crate::runtime::{FrameOutput, StreamState};
pub use stream::{box_crop_rle, full_frame_rle, ProcessedFrame, StreamProcessor};
pub use tracks::{
    EndReason, Track, TrackEvent, TrackState, Tracker, TrackerConfig, TrackerConfigError,
};
pub use video::{ResultOptions, VideoAccumulator};
