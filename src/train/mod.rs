//! Training (paper §3.3–3.4, §4.2): exact linear assignment, temporally consistent matching, the
//! losses with the box deduplication loss, clips of YouTube-VIS-layout data, and the trainer.

pub mod assign;
pub mod auxiliary;
pub mod checkpoint;
pub mod data;
pub mod evaluation;
pub mod loss;
pub mod matching;
pub mod objective;
pub mod optim;
pub mod plot;
pub mod probe;
pub mod trainer;

use std::path::Path;

/// Box arithmetic lives with the model; re-exported for the losses' users.
pub use crate::model::boxes;
pub use assign::linear_sum_assignment;
pub use data::{Clip, ClipConfig, Dataset};
pub use trainer::{
    clip_loss, clip_loss_with, AuxHeads, LossParts, Mechanisms, TrainConfig, Trainer,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    #[error("{file}: {reason}")]
    Data { file: String, reason: String },
    #[error("loss is not finite at iteration {iteration} (video {video})")]
    NonFinite { iteration: usize, video: u64 },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Ytvis(#[from] crate::ytvis::YtvisError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        Self::data(path.display(), e)
    }

    /// A [`TrainError::Data`]: what was read (a file, a video) and what is wrong with it.
    pub fn data(file: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        TrainError::Data {
            file: file.to_string(),
            reason: reason.to_string(),
        }
    }
}
