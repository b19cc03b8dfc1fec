//! Sudoku recipes: `sudoku` (official CSV, or generated offline) and `sudoku-hard` (tdoku).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::SudokuTransform;
use super::canonical::Canonicalizer;
use super::generator::{Difficulty, Generator};
use super::{read_csv, to_tokens, SudokuPuzzle, SudokuShape};
use crate::metadata::write_python_json;
use crate::numpy_rng::NumpyRng;
use crate::recipe::{resolve_data_path, BuildSummary, Progress};
use crate::writer::{split_metadata, SetCounts, SetWriter};
use crate::DataError;

fn default_size() -> usize {
    9
}

/// `kind = "sudoku"`. With `train_csv`/`test_csv` it is the official builder
/// (`build_sudoku_dataset.py` after `np.random.seed(seed)`: same subsample, same
/// augmentations, byte-identical files). Without them, puzzles are generated offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SudokuRecipe {
    /// Grid side: 4, 6 or 9.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Generated: number of training puzzles. CSV: subsample size (`--subsample-size`).
    #[serde(default)]
    pub train: Option<usize>,
    /// Generated: number of test puzzles. CSV: seeded subsample of the test file.
    #[serde(default)]
    pub test: Option<usize>,
    /// Augmented copies per training puzzle (`--num-aug`); the test split is never augmented.
    #[serde(default)]
    pub num_aug: usize,
    /// NumPy legacy seed (0..2^32) for subsampling and augmentation; also the generator seed.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub train_csv: Option<PathBuf>,
    #[serde(default)]
    pub test_csv: Option<PathBuf>,
    /// CSV: keep rows with `rating >= min_difficulty` (`--min-difficulty`).
    /// Generated: keep puzzles whose solver needed at least this many guesses.
    #[serde(default)]
    pub min_difficulty: Option<u64>,
    /// Generated: stop removing clues at this many givens (default: minimal puzzles).
    #[serde(default)]
    pub givens: Option<usize>,
}

/// `kind = "sudoku-hard"`: a Sudoku-Extreme-like set from the tdoku lists (see docs/data.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SudokuHardRecipe {
    /// Folder with `csv/<list>.csv`; default `<shared data>/sudoku/tdoku`.
    #[serde(default)]
    pub tdoku_dir: Option<PathBuf>,
    /// Lists forming the pool, in this order.
    #[serde(default = "default_hard_lists")]
    pub lists: Vec<String>,
    #[serde(default = "thousand")]
    pub train: usize,
    #[serde(default = "thousand")]
    pub num_aug: usize,
    /// Cap on test puzzles (seeded subsample); default every remaining class.
    #[serde(default)]
    pub test: Option<usize>,
    #[serde(default)]
    pub seed: u64,
}

fn thousand() -> usize {
    1000
}

pub fn default_hard_lists() -> Vec<String> {
    ["puzzles3_magictour_top1465", "puzzles5_forum_hardest_1905_11+", "puzzles6_forum_hardest_1106"]
        .map(String::from)
        .to_vec()
}

fn numpy_seed(seed: u64) -> Result<u32, DataError> {
    u32::try_from(seed).map_err(|_| DataError::Config(format!("seed {seed} must be below 2^32 (NumPy legacy seeding)")))
}

/// Write one split the official way: per puzzle the original then `num_aug` shuffled
/// copies, one example each, all identifier 0, one group per original.
fn write_split(
    dir: &Path,
    shape: SudokuShape,
    puzzles: &[SudokuPuzzle],
    num_aug: usize,
    rng: &mut NumpyRng,
    progress: &dyn Progress,
) -> Result<SetCounts, DataError> {
    let l = shape.seq_len();
    let mut w = SetWriter::create(dir, "all", puzzles.len() * (1 + num_aug), l)?;
    progress.begin(&format!("writing {}", dir.display()), puzzles.len() as u64);
    let mut inp = Vec::with_capacity((1 + num_aug) * l);
    let mut lab = Vec::with_capacity((1 + num_aug) * l);
    for p in puzzles {
        inp.clear();
        lab.clear();
        inp.extend(to_tokens(&p.question));
        lab.extend(to_tokens(&p.answer));
        for _ in 0..num_aug {
            let t = SudokuTransform::draw(rng, shape);
            inp.extend(to_tokens(&t.apply(&p.question)));
            lab.extend(to_tokens(&t.apply(&p.answer)));
        }
        let base = w.examples_written();
        w.push_examples(&inp, &lab)?;
        // One single-example puzzle per copy.
        for k in 1..=1 + num_aug {
            w.end_puzzle_at(0, base + k);
        }
        w.end_group();
        progress.advance(1);
    }
    progress.finish();
    let counts = w.finish()?;
    // The official builders write the group count as total_puzzles.
    split_metadata(&counts, shape.vocab_size(), l, 1, counts.groups).save(&dir.join("dataset.json"))?;
    Ok(counts)
}

fn finish(
    out: &Path,
    shape: SudokuShape,
    train: SetCounts,
    test: SetCounts,
    notes: Vec<String>,
) -> Result<BuildSummary, DataError> {
    write_python_json(&out.join("identifiers.json"), &["<blank>"])?;
    Ok(BuildSummary {
        out_dir: out.to_owned(),
        train,
        test,
        vocab_size: shape.vocab_size(),
        seq_len: shape.seq_len(),
        num_puzzle_identifiers: 1,
        bytes: 0,
        elapsed: Default::default(),
        notes,
    })
}

impl SudokuRecipe {
    pub fn build(&self, out: &Path, progress: &dyn Progress) -> Result<BuildSummary, DataError> {
        let shape = SudokuShape::for_size(self.size)?;
        let mut rng = NumpyRng::new(numpy_seed(self.seed)?);
        let (train, test) = match (&self.train_csv, &self.test_csv) {
            (Some(tr), Some(te)) => self.read_csvs(shape, tr, te, &mut rng)?,
            (None, None) => self.generate(shape, progress)?,
            _ => return Err(DataError::Config("give both train_csv and test_csv, or neither to generate".into())),
        };
        // A subsample larger than the CSV keeps every puzzle (as the official builder does);
        // the summary says so instead of leaving a smaller split to be found later.
        let mut notes = Vec::new();
        for (split, asked, got) in [("train", self.train, train.len()), ("test", self.test, test.len())] {
            if let Some(k) = asked.filter(|&k| k > got) {
                let filter = if self.min_difficulty.is_some() { " (after min_difficulty)" } else { "" };
                notes.push(format!("{split}: {k} puzzles asked for, the CSV has {got}{filter}; all {got} kept"));
            }
        }
        let tr = write_split(&out.join("train"), shape, &train, self.num_aug, &mut rng, progress)?;
        let te = write_split(&out.join("test"), shape, &test, 0, &mut rng, progress)?;
        finish(out, shape, tr, te, notes)
    }

    fn read_csvs(
        &self,
        shape: SudokuShape,
        tr: &Path,
        te: &Path,
        rng: &mut NumpyRng,
    ) -> Result<(Vec<SudokuPuzzle>, Vec<SudokuPuzzle>), DataError> {
        let keep = |v: Vec<SudokuPuzzle>| -> Vec<SudokuPuzzle> {
            v.into_iter().filter(|p| self.min_difficulty.is_none_or(|m| p.rating >= m)).collect()
        };
        let mut train = keep(read_csv(tr, shape)?);
        if let Some(k) = self.train {
            if k < train.len() {
                let idx = rng.choice_without_replacement(train.len(), k);
                train = idx.into_iter().map(|i| train[i].clone()).collect();
            }
        }
        let mut test = keep(read_csv(te, shape)?);
        if let Some(k) = self.test {
            if k < test.len() {
                // A separate stream, so capping the test set leaves the training data as is.
                let mut trng = NumpyRng::new(numpy_seed(self.seed)?.wrapping_add(1));
                let mut idx = trng.choice_without_replacement(test.len(), k);
                idx.sort_unstable();
                test = idx.into_iter().map(|i| test[i].clone()).collect();
            }
        }
        Ok((train, test))
    }

    /// Generate `train` + `test` puzzles. Splits are by equivalence class (canonical form):
    /// a class goes wholly to train or to test, so no test puzzle is a training puzzle up to
    /// the augmentations; exact duplicates are dropped.
    fn generate(
        &self,
        shape: SudokuShape,
        progress: &dyn Progress,
    ) -> Result<(Vec<SudokuPuzzle>, Vec<SudokuPuzzle>), DataError> {
        let (want_train, want_test) = match (self.train, self.test) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(DataError::Config("generated Sudoku needs `train` and `test` counts".into())),
        };
        let gen =
            Generator::new(shape, Difficulty { givens: self.givens, min_guesses: self.min_difficulty }, self.seed);
        let canon = Canonicalizer::new(shape);
        let total = want_train + want_test;
        let max_index = 50 * total as u64 + 10_000;
        let (mut train, mut test) = (Vec::new(), Vec::new());
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut class_to_train: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut next = 0u64;
        progress.begin(&format!("generating {0}x{0} Sudoku", shape.size()), total as u64);
        while train.len() < want_train || test.len() < want_test {
            if next >= max_index {
                return Err(DataError::Generation(format!(
                    "after {next} attempts only {} train / {} test distinct {n}x{n} puzzles (givens {:?}); ask for fewer or change `givens`",
                    train.len(),
                    test.len(),
                    self.givens,
                    n = shape.size()
                )));
            }
            let missing = (want_train - train.len()) + (want_test - test.len());
            let chunk = (missing + missing / 8 + 32) as u64;
            let made: Vec<Option<(SudokuPuzzle, Vec<u8>)>> = (next..next + chunk)
                .into_par_iter()
                .map(|i| {
                    gen.puzzle(i).map(|p| {
                        let c = canon.canonical(&p.question);
                        (p, c)
                    })
                })
                .collect();
            next += chunk;
            for (p, class) in made.into_iter().flatten() {
                if !seen.insert(p.question.clone()) {
                    continue;
                }
                let n_classes = class_to_train.len() as u64;
                let to_train = *class_to_train.entry(class).or_insert_with(|| {
                    if train.len() >= want_train {
                        false
                    } else if test.len() >= want_test {
                        true
                    } else {
                        // Deal new classes in proportion (deterministic, no extra RNG).
                        (n_classes * want_test as u64) % total as u64 >= want_test as u64
                    }
                });
                let before = train.len() + test.len();
                if to_train && train.len() < want_train {
                    train.push(p);
                } else if !to_train && test.len() < want_test {
                    test.push(p);
                }
                progress.advance((train.len() + test.len() - before) as u64);
            }
        }
        progress.finish();
        Ok((train, test))
    }
}

impl SudokuHardRecipe {
    pub fn build(&self, out: &Path, progress: &dyn Progress) -> Result<BuildSummary, DataError> {
        let shape = SudokuShape::for_size(9)?;
        let dir = resolve_data_path(&self.tdoku_dir, "sudoku/tdoku")?;
        let mut pool = Vec::new();
        for list in &self.lists {
            pool.extend(read_csv(&dir.join("csv").join(format!("{list}.csv")), shape)?);
        }
        progress.begin("canonical forms", pool.len() as u64);
        let canon = Canonicalizer::new(shape);
        let forms: Vec<Vec<u8>> = pool
            .par_iter()
            .map(|p| {
                let c = canon.canonical(&p.question);
                progress.advance(1);
                c
            })
            .collect();
        progress.finish();
        // One representative per class, first occurrence in pool order.
        let mut seen = HashSet::new();
        let classes: Vec<usize> = (0..pool.len()).filter(|&i| seen.insert(forms[i].clone())).collect();
        if classes.len() <= self.train {
            return Err(DataError::Config(format!(
                "only {} distinct puzzles for {} training puzzles",
                classes.len(),
                self.train
            )));
        }
        let mut rng = NumpyRng::new(numpy_seed(self.seed)?);
        let chosen = rng.choice_without_replacement(classes.len(), self.train);
        let in_train: HashSet<usize> = chosen.iter().copied().collect();
        let train: Vec<SudokuPuzzle> = chosen.iter().map(|&c| pool[classes[c]].clone()).collect();
        let mut test: Vec<SudokuPuzzle> =
            (0..classes.len()).filter(|c| !in_train.contains(c)).map(|c| pool[classes[c]].clone()).collect();
        if let Some(k) = self.test {
            if k < test.len() {
                let mut trng = NumpyRng::new(numpy_seed(self.seed)?.wrapping_add(1));
                let mut idx = trng.choice_without_replacement(test.len(), k);
                idx.sort_unstable();
                test = idx.into_iter().map(|i| test[i].clone()).collect();
            }
        }
        let tr = write_split(&out.join("train"), shape, &train, self.num_aug, &mut rng, progress)?;
        let te = write_split(&out.join("test"), shape, &test, 0, &mut rng, progress)?;
        let notes = vec![format!(
            "pool {} puzzles from {} lists, {} distinct under the augmentation group",
            pool.len(),
            self.lists.len(),
            classes.len()
        )];
        finish(out, shape, tr, te, notes)
    }
}
