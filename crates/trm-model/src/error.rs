//! Errors of the model crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong building, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A config value is invalid; the message names the field.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint could not be parsed (truncated, not a checkpoint, wrong format).
    #[error("{path}: cannot read checkpoint: {reason}")]
    CheckpointFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint parsed, but its tensors do not fit the model. Every problem is listed.
    #[error("checkpoint does not match the model config:\n{}", .problems.join("\n"))]
    CheckpointMismatch {
        /// One line per missing, unexpected or misshaped tensor.
        problems: Vec<String>,
    },
    /// An input tensor has the wrong shape or contents.
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), source }
    }
}
