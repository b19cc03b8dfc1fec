//! The `maze` recipe: official CSVs, or generated Maze-Hard style mazes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::generator::MazeGenerator;
use super::{char_token, read_csv, MazePuzzle};
use crate::grid::Grid;
use crate::metadata::write_python_json;
use crate::numpy_rng::NumpyRng;
use crate::recipe::{BuildSummary, Progress};
use crate::writer::{split_metadata, SetCounts, SetWriter};
use crate::DataError;

fn thirty() -> usize {
    30
}
fn thousand() -> usize {
    1000
}

/// `kind = "maze"`. With `train_csv`/`test_csv` it is the official builder
/// (`build_maze_dataset.py`, `--subsample-size` = `subsample` after `np.random.seed(seed)`).
/// Without them, `train` + `test` mazes are generated (see `maze::generator`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MazeRecipe {
    #[serde(default = "thirty")]
    pub size: usize,
    #[serde(default = "thousand")]
    pub train: usize,
    #[serde(default = "thousand")]
    pub test: usize,
    /// Minimum shortest-path length in moves; default 110 for 30x30 (Maze-Hard: ratings
    /// 110-154 observed, i.e. more than 110 cells on the path including S and G), else the
    /// side length (the Searchformer base rule).
    #[serde(default)]
    pub min_path_len: Option<usize>,
    /// The 8 dihedral transforms of every training maze (`--aug`); test never augmented.
    #[serde(default)]
    pub aug: bool,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub train_csv: Option<PathBuf>,
    #[serde(default)]
    pub test_csv: Option<PathBuf>,
    /// CSV only: subsample the training file (`--subsample-size`).
    #[serde(default)]
    pub subsample: Option<usize>,
}

fn write_split(
    dir: &Path,
    side: usize,
    mazes: &[MazePuzzle],
    aug: bool,
    progress: &dyn Progress,
) -> Result<SetCounts, DataError> {
    let l = side * side;
    let copies = if aug { 8 } else { 1 };
    let mut w = SetWriter::create(dir, "all", mazes.len() * copies, l)?;
    progress.begin(&format!("writing {}", dir.display()), mazes.len() as u64);
    for m in mazes {
        let q = Grid::new(side, side, m.question.iter().map(|&c| char_token(c)).collect());
        let a = Grid::new(side, side, m.answer.iter().map(|&c| char_token(c)).collect());
        for t in 0..copies as u8 {
            w.push_examples(&q.dihedral(t).cells, &a.dihedral(t).cells)?;
            w.end_puzzle(0);
        }
        w.end_group();
        progress.advance(1);
    }
    progress.finish();
    let counts = w.finish()?;
    split_metadata(&counts, 6, l, 1, counts.groups).save(&dir.join("dataset.json"))?;
    Ok(counts)
}

/// The smallest of the 8 dihedral images of a question: equal for mazes that are
/// rotations or reflections of each other.
fn dihedral_class(m: &MazePuzzle) -> Vec<u8> {
    let g = Grid::new(m.side, m.side, m.question.clone());
    (0..8).map(|t| g.dihedral(t).cells).min().unwrap_or_default()
}

impl MazeRecipe {
    pub fn build(&self, out: &Path, progress: &dyn Progress) -> Result<BuildSummary, DataError> {
        let (train, test) = match (&self.train_csv, &self.test_csv) {
            (Some(tr), Some(te)) => {
                let mut train = read_csv(tr)?;
                if let Some(k) = self.subsample {
                    if k < train.len() {
                        let seed = u32::try_from(self.seed)
                            .map_err(|_| DataError::Config("seed must be below 2^32".into()))?;
                        let idx = NumpyRng::new(seed).choice_without_replacement(train.len(), k);
                        train = idx.into_iter().map(|i| train[i].clone()).collect();
                    }
                }
                (train, read_csv(te)?)
            }
            (None, None) => self.generate(progress)?,
            _ => return Err(DataError::Config("give both train_csv and test_csv, or neither to generate".into())),
        };
        let side = train.first().or(test.first()).map_or(self.size, |m| m.side);
        if test.iter().chain(&train).any(|m| m.side != side) {
            return Err(DataError::Config("train and test mazes have different sizes".into()));
        }
        let tr = write_split(&out.join("train"), side, &train, self.aug, progress)?;
        let te = write_split(&out.join("test"), side, &test, false, progress)?;
        write_python_json(&out.join("identifiers.json"), &["<blank>"])?;
        Ok(BuildSummary {
            out_dir: out.to_owned(),
            train: tr,
            test: te,
            vocab_size: 6,
            seq_len: side * side,
            num_puzzle_identifiers: 1,
            bytes: 0,
            elapsed: Default::default(),
            notes: Vec::new(),
        })
    }

    /// Generate until `train` + `test` mazes, dropping any maze that is a rotation or
    /// reflection of one already kept; the first `train` go to train, the rest to test.
    fn generate(&self, progress: &dyn Progress) -> Result<(Vec<MazePuzzle>, Vec<MazePuzzle>), DataError> {
        if self.size < 2 {
            return Err(DataError::Config(format!("maze size {} is too small", self.size)));
        }
        let min_path_len = self.min_path_len.unwrap_or(if self.size == 30 { 110 } else { self.size });
        // A path visits each of the side^2 cells at most once.
        if min_path_len >= self.size * self.size {
            return Err(DataError::Config(format!(
                "min_path_len {min_path_len} is impossible in a {0}x{0} maze (a path has at most {1} moves)",
                self.size,
                self.size * self.size - 1
            )));
        }
        let gen = MazeGenerator { side: self.size, min_path_len, seed: self.seed };
        let total = self.train + self.test;
        let mut kept: Vec<MazePuzzle> = Vec::with_capacity(total);
        let mut classes = HashSet::new();
        let mut next = 0u64;
        let mut chunk = 1024u64;
        let limit = 200_000_000u64;
        progress.begin(&format!("generating {0}x{0} mazes (path >= {min_path_len} moves)", self.size), total as u64);
        // Layouts tried when the last new maze was kept: a small grid has few distinct mazes
        // (up to rotation and reflection), so asking for more would otherwise run to `limit`.
        let mut last_new = 0u64;
        while kept.len() < total {
            let stalled = !kept.is_empty() && next - last_new > (100_000u64).max(100 * last_new / kept.len() as u64);
            if next >= limit || stalled {
                return Err(DataError::Generation(format!(
                    "only {} of {total} distinct {1}x{1} mazes after {next} layouts (none new in the last {2}); \
                     ask for fewer, a larger size or a lower min_path_len ({min_path_len})",
                    kept.len(),
                    self.size,
                    next - last_new
                )));
            }
            let found: Vec<MazePuzzle> = (next..next + chunk).into_par_iter().filter_map(|i| gen.layout(i)).collect();
            next += chunk;
            for m in found {
                if kept.len() < total && classes.insert(dihedral_class(&m)) {
                    kept.push(m);
                    last_new = next;
                    progress.advance(1);
                }
            }
            // Size the next round from the acceptance rate so far, to not overshoot much.
            let missing = (total - kept.len()) as f64;
            let rate = (kept.len().max(1) as f64) / next as f64;
            chunk = ((missing / rate * 1.1) as u64 + 256).min(1 << 22);
        }
        progress.finish();
        let test = kept.split_off(self.train);
        Ok((kept, test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dihedral_class_is_invariant() {
        let g = MazeGenerator { side: 7, min_path_len: 7, seed: 1 };
        let m = (0..100).find_map(|i| g.layout(i)).unwrap();
        let grid = Grid::new(7, 7, m.question.clone());
        for t in 0..8 {
            let r = MazePuzzle { question: grid.dihedral(t).cells, ..m.clone() };
            assert_eq!(dihedral_class(&r), dihedral_class(&m));
        }
    }
}
