//! Dataset recipes: one serde-tagged enum a training config can embed
//! (`[data] kind = "sudoku", size = 4, train = 2000, test = 500, num_aug = 0, seed = 0`)
//! and that builds `out_dir/{train,test}` and `out_dir/identifiers.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::arc::build::ArcRecipe;
use crate::maze::build::MazeRecipe;
use crate::sudoku::build::{SudokuHardRecipe, SudokuRecipe};
use crate::writer::SetCounts;
use crate::DataError;

/// Progress reporting for long builds (the CLI draws bars; libraries pass [`NoProgress`]).
pub trait Progress: Sync {
    /// A new stage with `total` units of work (0 if unknown).
    fn begin(&self, stage: &str, total: u64);
    /// `n` more units done.
    fn advance(&self, n: u64);
    /// The current stage is over.
    fn finish(&self);
}

/// Progress that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub out_dir: PathBuf,
    pub train: SetCounts,
    pub test: SetCounts,
    pub vocab_size: usize,
    pub seq_len: usize,
    pub num_puzzle_identifiers: usize,
    /// Bytes of all files written.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Anything a user should know (e.g. puzzles that got fewer augmentations).
    pub notes: Vec<String>,
}

/// A dataset recipe. Serialised with a `kind` tag: `sudoku`, `sudoku-hard`, `maze`, `arc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DatasetRecipe {
    Sudoku(SudokuRecipe),
    SudokuHard(SudokuHardRecipe),
    Maze(MazeRecipe),
    Arc(ArcRecipe),
}

impl DatasetRecipe {
    /// Build into `out_dir` (created if needed; existing files of the layout are replaced).
    /// Also writes `out_dir/recipe.json` recording the recipe.
    pub fn build(&self, out_dir: &Path, progress: &dyn Progress) -> Result<BuildSummary, DataError> {
        let start = Instant::now();
        std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
        // The record of the previous build goes first: a build that fails half-way must not
        // leave its files under an older recipe that `trm train` would then trust.
        let recipe_path = out_dir.join("recipe.json");
        match std::fs::remove_file(&recipe_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(DataError::io(&recipe_path, e)),
            _ => {}
        }
        let mut summary = match self {
            DatasetRecipe::Sudoku(r) => r.build(out_dir, progress)?,
            DatasetRecipe::SudokuHard(r) => r.build(out_dir, progress)?,
            DatasetRecipe::Maze(r) => r.build(out_dir, progress)?,
            DatasetRecipe::Arc(r) => r.build(out_dir, progress)?,
        };
        // An empty split is a dataset nothing can be trained or evaluated on: an empty or
        // header-only input file, a filter that kept nothing, a count of 0.
        for (split, counts) in [("train", &summary.train), ("test", &summary.test)] {
            if counts.examples == 0 {
                return Err(DataError::Config(format!(
                    "the {split} split came out empty (no puzzles in the input, or none left after \
                     filtering / subsampling); nothing usable was built in {}",
                    out_dir.display()
                )));
            }
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| DataError::json(&recipe_path, e))?;
        std::fs::write(&recipe_path, text).map_err(|e| DataError::io(&recipe_path, e))?;
        summary.bytes = dir_bytes(out_dir);
        summary.elapsed = start.elapsed();
        summary.out_dir = out_dir.to_owned();
        Ok(summary)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Where the project's shared data lives: `$TRM_SHARED_DATA`, else the first
/// `shared/data` found beside the current directory or one of its ancestors
/// (the repository sits next to `shared/`).
pub fn shared_data_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TRM_SHARED_DATA") {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|a| a.join("shared").join("data")).find(|p| p.is_dir())
}

/// Resolve a data path: explicit, else `shared_data_dir()/default_rel`.
pub(crate) fn resolve_data_path(explicit: &Option<PathBuf>, default_rel: &str) -> Result<PathBuf, DataError> {
    match explicit {
        Some(p) => Ok(p.clone()),
        None => shared_data_dir().map(|d| d.join(default_rel)).ok_or_else(|| {
            DataError::Config(format!(
                "no path given and no shared data found for {default_rel} (set TRM_SHARED_DATA or pass the path)"
            ))
        }),
    }
}
