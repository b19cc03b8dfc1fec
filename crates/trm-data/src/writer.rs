//! Writing one set of a split in the official layout, streaming the example rows.

use std::path::{Path, PathBuf};

use crate::metadata::DatasetMetadata;
use crate::npy::{write_i32, U8MatrixWriter};
use crate::DataError;

/// Counts of one written set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetCounts {
    pub examples: usize,
    pub puzzles: usize,
    pub groups: usize,
    /// Bytes of all five `.npy` files.
    pub bytes: u64,
}

/// Writes `{set}__*.npy` in a split directory: examples go straight to disk; a puzzle is
/// closed with its identifier, a group after its puzzles (the original and its
/// augmented versions), exactly the bookkeeping of the official builders.
pub struct SetWriter {
    dir: PathBuf,
    set: String,
    seq_len: usize,
    inputs: U8MatrixWriter,
    labels: U8MatrixWriter,
    puzzle_identifiers: Vec<i32>,
    puzzle_indices: Vec<i32>,
    group_indices: Vec<i32>,
    examples: usize,
    total_examples: usize,
}

impl SetWriter {
    /// `num_examples` must be known up front because the `.npy` header comes first.
    pub fn create(dir: &Path, set: &str, num_examples: usize, seq_len: usize) -> Result<Self, DataError> {
        if num_examples > i32::MAX as usize {
            return Err(DataError::Config(format!("{num_examples} examples do not fit int32 indices")));
        }
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        Ok(SetWriter {
            dir: dir.to_owned(),
            set: set.to_owned(),
            seq_len,
            inputs: U8MatrixWriter::create(&dir.join(format!("{set}__inputs.npy")), num_examples, seq_len)?,
            labels: U8MatrixWriter::create(&dir.join(format!("{set}__labels.npy")), num_examples, seq_len)?,
            puzzle_identifiers: Vec::new(),
            puzzle_indices: vec![0],
            group_indices: vec![0],
            examples: 0,
            total_examples: num_examples,
        })
    }

    /// Append examples (`inputs.len() == labels.len()`, a multiple of seq_len).
    pub fn push_examples(&mut self, inputs: &[u8], labels: &[u8]) -> Result<(), DataError> {
        debug_assert_eq!(inputs.len(), labels.len());
        self.inputs.write_rows(inputs)?;
        self.labels.write_rows(labels)?;
        self.examples += inputs.len() / self.seq_len;
        Ok(())
    }

    /// Close the current puzzle (the examples pushed since the previous one).
    pub fn end_puzzle(&mut self, identifier: i32) {
        self.puzzle_identifiers.push(identifier);
        self.puzzle_indices.push(self.examples as i32);
    }

    /// Close a puzzle whose examples end at `examples_end` (for writers that push examples
    /// in chunks ahead of the puzzle boundaries).
    pub fn end_puzzle_at(&mut self, identifier: i32, examples_end: usize) {
        self.puzzle_identifiers.push(identifier);
        self.puzzle_indices.push(examples_end as i32);
    }

    /// Close the current group (the puzzles closed since the previous one).
    pub fn end_group(&mut self) {
        self.group_indices.push(self.puzzle_identifiers.len() as i32);
    }

    pub fn examples_written(&self) -> usize {
        self.examples
    }

    pub fn finish(self) -> Result<SetCounts, DataError> {
        if self.examples != self.total_examples {
            return Err(DataError::Generation(format!(
                "internal: set {} got {} examples, expected {}",
                self.set, self.examples, self.total_examples
            )));
        }
        self.inputs.finish()?;
        self.labels.finish()?;
        let f = |n: &str| self.dir.join(format!("{}__{n}.npy", self.set));
        write_i32(&f("puzzle_identifiers"), &self.puzzle_identifiers)?;
        write_i32(&f("puzzle_indices"), &self.puzzle_indices)?;
        write_i32(&f("group_indices"), &self.group_indices)?;
        let mut bytes = 0;
        for n in ["inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"] {
            bytes += std::fs::metadata(f(n)).map_err(|e| DataError::io(f(n), e))?.len();
        }
        Ok(SetCounts {
            examples: self.examples,
            puzzles: self.puzzle_identifiers.len(),
            groups: self.group_indices.len() - 1,
            bytes,
        })
    }
}

/// Metadata of a single-set split, computed from its counts the way the builders do.
/// `total_puzzles` is passed explicitly because the official Sudoku/Maze builders write the
/// group count there while the ARC builder writes the puzzle count.
pub fn split_metadata(
    counts: &SetCounts,
    vocab_size: usize,
    seq_len: usize,
    num_puzzle_identifiers: usize,
    total_puzzles: usize,
) -> DatasetMetadata {
    DatasetMetadata {
        pad_id: 0,
        ignore_label_id: Some(0),
        blank_identifier_id: 0,
        vocab_size,
        seq_len,
        num_puzzle_identifiers,
        total_groups: counts.groups,
        mean_puzzle_examples: if counts.puzzles == 0 { 1.0 } else { counts.examples as f64 / counts.puzzles as f64 },
        total_puzzles: Some(total_puzzles),
        sets: vec!["all".into()],
    }
}
