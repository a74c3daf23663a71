//! Per-stream state: each stream's (instance query, proposal box) pairs and feature bank, carried
//! from frame to frame so that query slot i stays bound to one object with no tracker.

pub mod state;

pub use state::{FrameOutput, StreamState};
