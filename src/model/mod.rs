//! The InsPro network (paper §3) in candle: ResNet + FPN, Sparse R-CNN dynamic instance
//! interaction stages, the CondInst mask path and the intra-query attention over the feature bank.

pub mod backbone;
pub mod bank;
pub mod boxes;
pub mod config;
pub mod conv;
pub mod cost;
pub mod fpn;
pub mod head;
pub mod import;
pub mod inspro;
pub mod mask;
pub mod nn;
pub mod preprocess;
pub mod roi_align;
pub mod weights;

use std::path::PathBuf;

pub use config::{BackboneKind, ModelConfig};
pub use inspro::{FrameForward, FrameOptions, InsPro, MaskSchedule, StageSchedule, Trunk};
pub use preprocess::{FrameGeometry, FrameRef};

/// Errors of the model library: each names what a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: field `{field}`: {reason}")]
    Config {
        file: String,
        field: String,
        reason: String,
    },
    #[error("{file}: missing weight `{key}`")]
    MissingWeight { file: String, key: String },
    #[error("{file}: weight `{key}` has shape {got:?} but the model config expects {expected:?}")]
    WeightShape {
        file: String,
        key: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{file}: not a readable safetensors file: {reason}")]
    WeightFile { file: String, reason: String },
    #[error("{0}")]
    Input(String),
    #[error("frame: {0}")]
    Frame(#[from] crate::frame::FrameError),
    /// An inference engine failed on valid input (ONNX Runtime, a poisoned session lock).
    #[error("{engine}: {reason}")]
    Runtime {
        engine: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
