//! Engines that run one frame of the network: candle (the pure-Rust reference) and ONNX Runtime
//! (CPU / CUDA / TensorRT execution providers). The daemon, the GStreamer element and
//! `inspro segment` hold an `Arc<dyn Engine>` and one `StreamState` per stream.

pub mod calibrate;
pub mod candle;
pub mod factory;
pub mod onnxruntime;
mod ort_bench;
mod ort_lanes;
mod ort_setup;
pub mod state;

use crate::frame::FrameRef;
use crate::model::{ModelConfig, ModelError};
pub use candle::CandleEngine;
pub use factory::{build_engine, BuiltEngine, EngineBuildError, EngineKind, EngineSpec};
pub use onnxruntime::{OrtEngine, OrtOptions, Provider};
pub use state::{FrameOutput, StreamState};

/// One shared network; the per-stream state is the caller's.
pub trait Engine: Send + Sync {
    /// Short name for logs and benchmarks (`candle`, `onnxruntime/cpu`, ...).
    fn name(&self) -> String;
    fn config(&self) -> &ModelConfig;
    /// A fresh state for a stream of `width` x `height` frames.
    fn init_state(&self, width: usize, height: usize) -> Result<StreamState, ModelError>;
    /// Segment one frame and advance the stream's state.
    fn step(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
    ) -> Result<FrameOutput, ModelError>;
}
