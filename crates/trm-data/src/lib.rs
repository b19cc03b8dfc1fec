//! Puzzle data for trm: the official built-dataset layout (both ways), the training
//! sampler and test iterator, and Sudoku, Maze and ARC readers, generators, augmentations
//! and builders. No Burn dependency: batches are plain arrays.

pub mod ar_tasks;
pub mod arc;
pub mod csv;
pub mod dataset;
pub mod error;
pub mod grid;
pub mod maze;
pub mod metadata;
pub mod npy;
pub mod numpy_rng;
pub mod recipe;
pub mod render;
pub mod sampler;
pub mod sudoku;
pub mod writer;

pub use dataset::{PuzzleDataset, PuzzleSet};
pub use error::DataError;
pub use metadata::DatasetMetadata;
pub use recipe::{shared_data_dir, BuildSummary, DatasetRecipe, NoProgress, Progress};
pub use sampler::{
    official_total_steps, test_batches, Batch, SamplerConfig, SamplerState, TestBatches, TrainSampler, IGNORE_LABEL_ID,
};
pub use writer::SetCounts;
