//! The crate's error type: every variant says what was wrong and where.

use std::path::PathBuf;

/// Everything that can stop a training, evaluation or checkpoint operation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad training configuration; the message names the field.
    #[error("invalid training config: {0}")]
    Config(String),
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint or run folder that cannot be used.
    #[error("{path}: {problem}")]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A model that cannot run on a dataset (another vocabulary, sequence length or
    /// identifier range), or a dataset with nothing to evaluate.
    #[error("{0}")]
    Mismatch(String),
    /// The loss became NaN or infinite.
    #[error(
        "the training loss became {value} at step {step}; stopping (the last good checkpoint, if any, is untouched). \
         Try a lower learning rate or a longer warmup"
    )]
    NonFinite {
        /// Optimizer step at which it happened.
        step: u64,
        /// The value seen.
        value: f64,
    },
    /// An error from the data crate.
    #[error(transparent)]
    Data(#[from] trm_data::DataError),
    /// An error from the model crate.
    #[error(transparent)]
    Model(#[from] trm_model::ModelError),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }

    /// A checkpoint problem at `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        TrainError::Checkpoint { path: path.into(), problem: problem.into() }
    }

    /// This error from reading the config file `path`: a config problem names the file once
    /// ("invalid training config: FILE: field: why"); any other error is wrapped as before.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            TrainError::Config(message) => TrainError::Config(format!("{}: {message}", path.display())),
            other => TrainError::Config(format!("{}: {other}", path.display())),
        }
    }
}
