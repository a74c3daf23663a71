//! Per-stream state: each stream's (instance query, proposal box) pairs and feature bank, carried
//! from frame to frame so that query slot i stays bound to one object with no tracker; and the
//! YouTube-VIS results a video's slots become.

pub mod state;
pub mod stream;
pub mod tracks;
pub mod video;

pub use state::{FrameOutput, StreamState};
pub use stream::{box_crop_rle, full_frame_rle, ProcessedFrame, StreamProcessor};
pub use tracks::{Track, TrackEvent, TrackState, Tracker, TrackerConfig, TrackerConfigError};
pub use video::{ResultOptions, VideoAccumulator};
