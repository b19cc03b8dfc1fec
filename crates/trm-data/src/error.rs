//! The crate's error type. Every variant names the file, row or task that was bad and
//! what was wrong with it, so a user can fix the input without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while reading, validating, building or sampling data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.npy` file that cannot be used: truncated, wrong dtype, wrong shape, bad header.
    #[error("{path}: {problem}")]
    Npy { path: PathBuf, problem: String },
    /// A JSON file that does not parse or has the wrong structure.
    #[error("{path}: invalid JSON: {problem}")]
    Json { path: PathBuf, problem: String },
    /// `dataset.json` disagrees with the arrays next to it (or with itself).
    #[error("{path}: dataset does not match its metadata: {problem}")]
    Metadata { path: PathBuf, problem: String },
    /// A bad row in a CSV or text puzzle list. `row` counts from 1 and includes the header.
    #[error("{path}, row {row}: {problem}")]
    Row { path: PathBuf, row: usize, problem: String },
    /// A bad ARC task (ragged or oversized grid, colour outside 0-9, missing solution...).
    #[error("{path}: task {task}: {problem}")]
    Task { path: PathBuf, task: String, problem: String },
    /// A recipe or sampler configuration that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A generator that could not produce the requested data (e.g. too few distinct puzzles).
    #[error("generation failed: {0}")]
    Generation(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn npy(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Npy { path: path.into(), problem: problem.into() }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        DataError::Json { path: path.into(), problem: problem.to_string() }
    }

    pub(crate) fn metadata(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Metadata { path: path.into(), problem: problem.into() }
    }

    pub(crate) fn row(path: impl Into<PathBuf>, row: usize, problem: impl Into<String>) -> Self {
        DataError::Row { path: path.into(), row, problem: problem.into() }
    }

    pub(crate) fn task(path: impl Into<PathBuf>, task: impl Into<String>, problem: impl Into<String>) -> Self {
        DataError::Task { path: path.into(), task: task.into(), problem: problem.into() }
    }
}
