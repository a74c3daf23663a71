//! Engines that run one frame of the network: candle (the pure-Rust reference) and ONNX Runtime
//! (CPU / CUDA / TensorRT execution providers). The daemon, the GStreamer element and
//! `inspro segment` hold an `Arc<dyn Engine>` and one `StreamState` per stream.

pub mod onnxruntime;

use std::sync::Arc;

use crate::model::{FrameRef, InsPro, ModelConfig, ModelError};
use crate::tracking::{FrameOutput, StreamState};
pub use onnxruntime::{OrtEngine, OrtOptions, Provider};

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

/// The candle network as an engine.
pub struct CandleEngine {
    pub model: Arc<InsPro>,
}

impl CandleEngine {
    pub fn new(model: Arc<InsPro>) -> Self {
        Self { model }
    }
}

impl Engine for CandleEngine {
    fn name(&self) -> String {
        "candle".into()
    }

    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    fn init_state(&self, width: usize, height: usize) -> Result<StreamState, ModelError> {
        self.model.init_state(width, height)
    }

    fn step(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
    ) -> Result<FrameOutput, ModelError> {
        self.model.step(frame, state)
    }
}
