//! One built split (`out/train` or `out/test`): memory-mapped arrays for every set, checked
//! against `dataset.json` when opened.

use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::metadata::{load_identifiers, DatasetMetadata};
use crate::npy::{read_index_array, U8Matrix};
use crate::DataError;

/// The arrays of one set (`{set}__*.npy`) of a split.
#[derive(Debug)]
pub struct PuzzleSet {
    name: String,
    inputs: U8Matrix,
    labels: U8Matrix,
    puzzle_identifiers: Vec<i32>,
    puzzle_indices: Vec<usize>,
    group_indices: Vec<usize>,
}

impl PuzzleSet {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn num_examples(&self) -> usize {
        self.inputs.rows()
    }
    pub fn num_puzzles(&self) -> usize {
        self.puzzle_identifiers.len()
    }
    pub fn num_groups(&self) -> usize {
        self.group_indices.len() - 1
    }
    /// Input tokens of example `i` (panics if out of range, like slice indexing).
    pub fn inputs(&self, i: usize) -> &[u8] {
        self.inputs.row(i)
    }
    /// Label tokens of example `i` (raw, before ignore_label_id becomes -100).
    pub fn labels(&self, i: usize) -> &[u8] {
        self.labels.row(i)
    }
    /// Examples of puzzle `p`.
    pub fn puzzle_examples(&self, p: usize) -> Range<usize> {
        self.puzzle_indices[p]..self.puzzle_indices[p + 1]
    }
    /// Puzzles (augmented versions) of group `g`.
    pub fn group_puzzles(&self, g: usize) -> Range<usize> {
        self.group_indices[g]..self.group_indices[g + 1]
    }
    pub fn puzzle_identifier(&self, p: usize) -> i32 {
        self.puzzle_identifiers[p]
    }
    pub fn puzzle_identifiers(&self) -> &[i32] {
        &self.puzzle_identifiers
    }
    /// The puzzle that example `i` belongs to.
    pub fn puzzle_of_example(&self, i: usize) -> usize {
        self.puzzle_indices.partition_point(|&s| s <= i) - 1
    }
}

/// A built split directory.
#[derive(Debug)]
pub struct PuzzleDataset {
    dir: PathBuf,
    metadata: DatasetMetadata,
    sets: Vec<PuzzleSet>,
}

fn npy_path(dir: &Path, set: &str, field: &str) -> PathBuf {
    dir.join(format!("{set}__{field}.npy"))
}

/// Check an index array: starts at 0, strictly increasing, ends at `end`.
fn check_offsets(path: &Path, raw: &[i64], end: usize, what: &str) -> Result<Vec<usize>, DataError> {
    let bad = |m: String| DataError::metadata(path, m);
    if raw.first() != Some(&0) {
        return Err(bad(format!("{what} must start with 0, found {:?}", raw.first())));
    }
    for (k, w) in raw.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(bad(format!("{what} not strictly increasing at position {}: {} then {}", k + 1, w[0], w[1])));
        }
    }
    let last = *raw.last().unwrap_or(&0);
    if last != end as i64 {
        return Err(bad(format!("{what} ends at {last}, expected {end}")));
    }
    Ok(raw.iter().map(|&v| v as usize).collect())
}

impl PuzzleDataset {
    /// Open a split directory and check every array against `dataset.json`, including every
    /// token against `vocab_size` (a parallel scan; see [`Self::open_unverified`]).
    pub fn open(split_dir: &Path) -> Result<Self, DataError> {
        let ds = Self::open_unverified(split_dir)?;
        ds.verify_tokens()?;
        Ok(ds)
    }

    /// Open and check the structure (files, dtypes, shapes, indices, identifiers) but not
    /// the value of every token, for very large splits that were verified before.
    pub fn open_unverified(split_dir: &Path) -> Result<Self, DataError> {
        let meta_path = split_dir.join("dataset.json");
        let metadata = DatasetMetadata::load(&meta_path)?;
        let mbad = |m: String| DataError::metadata(&meta_path, m);
        if metadata.sets.is_empty() {
            return Err(mbad("\"sets\" is empty".into()));
        }
        if metadata.vocab_size == 0 || metadata.vocab_size > 256 {
            return Err(mbad(format!("vocab_size {} is not in 1..=256 for uint8 tokens", metadata.vocab_size)));
        }
        if metadata.pad_id < 0 || metadata.pad_id as usize >= metadata.vocab_size {
            return Err(mbad(format!("pad_id {} outside the vocabulary", metadata.pad_id)));
        }
        if metadata.blank_identifier_id < 0
            || metadata.blank_identifier_id as usize >= metadata.num_puzzle_identifiers.max(1)
        {
            return Err(mbad(format!(
                "blank_identifier_id {} outside 0..{}",
                metadata.blank_identifier_id, metadata.num_puzzle_identifiers
            )));
        }
        let mut sets = Vec::new();
        for set in &metadata.sets {
            let p = |f: &str| npy_path(split_dir, set, f);
            let inputs = U8Matrix::open(&p("inputs"))?;
            let labels = U8Matrix::open(&p("labels"))?;
            if inputs.cols() != metadata.seq_len {
                return Err(DataError::metadata(
                    p("inputs"),
                    format!("rows have {} tokens but seq_len is {}", inputs.cols(), metadata.seq_len),
                ));
            }
            if (labels.rows(), labels.cols()) != (inputs.rows(), inputs.cols()) {
                return Err(DataError::metadata(
                    p("labels"),
                    format!(
                        "shape [{}, {}] differs from inputs [{}, {}]",
                        labels.rows(),
                        labels.cols(),
                        inputs.rows(),
                        inputs.cols()
                    ),
                ));
            }
            let ids_raw = read_index_array(&p("puzzle_identifiers"))?;
            let n_ids = metadata.num_puzzle_identifiers as i64;
            if let Some((k, v)) = ids_raw.iter().enumerate().find(|(_, &v)| v < 0 || v >= n_ids) {
                return Err(DataError::metadata(
                    p("puzzle_identifiers"),
                    format!("identifier {v} of puzzle {k} outside 0..{n_ids} (num_puzzle_identifiers)"),
                ));
            }
            let puzzle_indices = check_offsets(
                &p("puzzle_indices"),
                &read_index_array(&p("puzzle_indices"))?,
                inputs.rows(),
                "puzzle_indices",
            )?;
            if puzzle_indices.len() != ids_raw.len() + 1 {
                return Err(DataError::metadata(
                    p("puzzle_indices"),
                    format!(
                        "{} entries for {} puzzle identifiers (expected one more)",
                        puzzle_indices.len(),
                        ids_raw.len()
                    ),
                ));
            }
            let group_indices = check_offsets(
                &p("group_indices"),
                &read_index_array(&p("group_indices"))?,
                ids_raw.len(),
                "group_indices",
            )?;
            sets.push(PuzzleSet {
                name: set.clone(),
                inputs,
                labels,
                puzzle_identifiers: ids_raw.iter().map(|&v| v as i32).collect(),
                puzzle_indices,
                group_indices,
            });
        }
        let groups: usize = sets.iter().map(|s| s.num_groups()).sum();
        let puzzles: usize = sets.iter().map(|s| s.num_puzzles()).sum();
        let examples: usize = sets.iter().map(|s| s.num_examples()).sum();
        if groups != metadata.total_groups {
            return Err(mbad(format!("total_groups is {} but the arrays hold {groups} groups", metadata.total_groups)));
        }
        if let Some(tp) = metadata.total_puzzles {
            // The official Sudoku and Maze builders write the number of groups here (a
            // quirk: `len(group_indices) - 1`); the ARC builder writes the puzzle count.
            if tp != puzzles && tp != groups {
                return Err(mbad(format!("total_puzzles is {tp} but the arrays hold {puzzles} puzzles")));
            }
        }
        let mean = examples as f64 / puzzles as f64;
        if (mean - metadata.mean_puzzle_examples).abs() > 1e-6 * mean.max(1.0) {
            return Err(mbad(format!(
                "mean_puzzle_examples is {} but the arrays give {examples}/{puzzles} = {mean}",
                metadata.mean_puzzle_examples
            )));
        }
        let ds = PuzzleDataset { dir: split_dir.to_owned(), metadata, sets };
        if let Some(path) = ds.identifiers_path() {
            let names = load_identifiers(&path)?;
            if names.len() != ds.metadata.num_puzzle_identifiers {
                return Err(DataError::metadata(
                    &path,
                    format!(
                        "{} names but num_puzzle_identifiers is {}",
                        names.len(),
                        ds.metadata.num_puzzle_identifiers
                    ),
                ));
            }
        }
        Ok(ds)
    }

    /// Check that every input and label token is below `vocab_size`.
    pub fn verify_tokens(&self) -> Result<(), DataError> {
        let vocab = self.metadata.vocab_size;
        for set in &self.sets {
            for (field, m) in [("inputs", &set.inputs), ("labels", &set.labels)] {
                let cols = m.cols().max(1);
                let bad = m
                    .data()
                    .par_chunks(cols * 4096)
                    .enumerate()
                    .find_first(|(_, c)| c.iter().any(|&t| t as usize >= vocab))
                    .and_then(|(ci, c)| {
                        c.iter().position(|&t| t as usize >= vocab).map(|k| (ci * cols * 4096 + k, c[k]))
                    });
                if let Some((pos, tok)) = bad {
                    return Err(DataError::metadata(
                        npy_path(&self.dir, &set.name, field),
                        format!(
                            "token {tok} at example {}, position {} is not below vocab_size {vocab}",
                            pos / cols,
                            pos % cols
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn metadata(&self) -> &DatasetMetadata {
        &self.metadata
    }
    pub fn sets(&self) -> &[PuzzleSet] {
        &self.sets
    }
    /// Total examples over all sets.
    pub fn num_examples(&self) -> usize {
        self.sets.iter().map(|s| s.num_examples()).sum()
    }

    /// `(set index, index inside the set)` of global example `i`, sets in `sets` order.
    pub fn locate(&self, mut i: usize) -> Option<(usize, usize)> {
        for (k, s) in self.sets.iter().enumerate() {
            if i < s.num_examples() {
                return Some((k, i));
            }
            i -= s.num_examples();
        }
        None
    }

    /// Global example `i`: `(inputs, labels)` as raw tokens; `None` past the end.
    pub fn example(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let (k, j) = self.locate(i)?;
        Some((self.sets[k].inputs(j), self.sets[k].labels(j)))
    }

    /// Puzzle identifier of global example `i`.
    pub fn example_identifier(&self, i: usize) -> Option<i32> {
        let (k, j) = self.locate(i)?;
        let s = &self.sets[k];
        Some(s.puzzle_identifier(s.puzzle_of_example(j)))
    }

    /// `identifiers.json` next to the split directory, if present.
    pub fn identifiers_path(&self) -> Option<PathBuf> {
        let p = self.dir.parent()?.join("identifiers.json");
        p.is_file().then_some(p)
    }

    /// The names of the puzzle identifiers (`identifiers.json`), if the file exists.
    pub fn identifiers(&self) -> Result<Option<Vec<String>>, DataError> {
        self.identifiers_path().map(|p| load_identifiers(&p)).transpose()
    }
}
