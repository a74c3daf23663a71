//! Errors of the YouTube-VIS tooling: each names the file, the json path and the reason.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum YtvisError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The json does not parse or does not have the YouTube-VIS shape.
    #[error("{file}: {path}: {reason}")]
    Json {
        file: String,
        path: String,
        reason: String,
    },
    /// The json parses but its content is inconsistent (unknown video, wrong mask size, ...).
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
    #[error("run-length encoding: {reason}")]
    Rle { reason: String },
    #[error("synthetic data option {field}: {reason}")]
    Options { field: &'static str, reason: String },
    #[error("{}: {source}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("encoding {}: {reason}", path.display())]
    Encoder { path: PathBuf, reason: String },
}

impl YtvisError {
    pub(crate) fn invalid(file: &str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        YtvisError::Invalid {
            file: file.to_string(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        YtvisError::Io {
            path: path.into(),
            source,
        }
    }
}
