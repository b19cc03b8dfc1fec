//! Batches: the official training sampler and the sequential test iterator.
//!
//! Training (`puzzle_dataset.py` `_iter_train`): one *iteration* per set is
//! `epochs_per_iter` concatenated shuffles of the groups. Walking that order, each group
//! contributes one random puzzle (one augmented version), and that puzzle a random subset,
//! without replacement, of its examples, as many as fit; the batch is filled to the global
//! size, the last incomplete batch of the iteration is dropped, and each data-parallel rank
//! takes its contiguous slice. The official code seeds a NumPy Philox generator with
//! `seed + iteration` for the shuffle and puzzle choice but draws the example subset from
//! NumPy's *unseeded* global generator; here one ChaCha8 stream seeded with
//! `seed + iteration` draws everything, so the order is fully reproducible (it does not
//! reproduce the Python order bit for bit).

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{PuzzleDataset, PuzzleSet};
use crate::metadata::DatasetMetadata;
use crate::DataError;

/// Label value the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_LABEL_ID: i32 = -100;

/// A batch as plain row-major arrays; the trainer turns them into tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch_size, seq_len]` input tokens (padding rows hold `pad_id`).
    pub inputs: Vec<i32>,
    /// `[batch_size, seq_len]` label tokens, `ignore_label_id` (and padding) mapped to -100.
    pub labels: Vec<i32>,
    /// `[batch_size]` puzzle identifiers (padding rows hold `blank_identifier_id`).
    pub puzzle_identifiers: Vec<i32>,
    /// Rows in this rank's batch (the local batch size, padding included).
    pub batch_size: usize,
    pub seq_len: usize,
    /// Leading rows that are real examples; the rest is padding.
    pub num_valid: usize,
    /// Real examples in the whole global batch (all ranks); the official loop divides the
    /// loss by this number.
    pub global_valid: usize,
    /// Index of the set (in `dataset.json` `sets`) the rows come from.
    pub set_index: usize,
}

/// Configuration of [`TrainSampler`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub seed: u64,
    pub global_batch_size: usize,
    /// Epochs shuffled together per iteration (the official `eval_interval`); the drop-last
    /// rule applies once per iteration, so this changes how many steps a run has.
    pub epochs_per_iter: usize,
    pub rank: usize,
    pub world_size: usize,
    /// Stop after this many iterations per set; `None` = never stop.
    pub max_iters: Option<u64>,
}

impl SamplerConfig {
    pub fn new(seed: u64, global_batch_size: usize) -> Self {
        SamplerConfig { seed, global_batch_size, epochs_per_iter: 1, rank: 0, world_size: 1, max_iters: None }
    }

    fn local_batch_size(&self) -> Result<usize, DataError> {
        if self.global_batch_size == 0 || self.world_size == 0 || self.rank >= self.world_size {
            return Err(DataError::Config(format!(
                "bad batch/rank: global_batch_size {}, rank {}, world_size {}",
                self.global_batch_size, self.rank, self.world_size
            )));
        }
        if !self.global_batch_size.is_multiple_of(self.world_size) {
            return Err(DataError::Config(format!(
                "global batch size {} must be a multiple of world size {}",
                self.global_batch_size, self.world_size
            )));
        }
        Ok(self.global_batch_size / self.world_size)
    }
}

/// Everything needed to resume a [`TrainSampler`] exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub config: SamplerConfig,
    /// The official `_iters` counter: set-iterations started so far (the current one included).
    pub iters: u64,
    /// Set being iterated.
    pub set_index: usize,
    /// Position in the current iteration's group order.
    pub position: usize,
    /// Words consumed from the iteration's ChaCha8 stream.
    pub rng_word_pos: u128,
    /// Batches yielded so far (informational).
    pub batches: u64,
}

/// The official training sampler; an endless iterator of [`Batch`] (or up to `max_iters`).
pub struct TrainSampler {
    ds: Arc<PuzzleDataset>,
    cfg: SamplerConfig,
    local: usize,
    iters: u64,
    set_index: usize,
    position: usize,
    order: Vec<usize>,
    rng: ChaCha8Rng,
    batches: u64,
    /// Batches yielded since the sampler last started a pass over all sets; a whole pass
    /// without one means the data can never fill a batch, so iteration ends.
    batches_this_pass: u64,
}

impl TrainSampler {
    pub fn new(ds: Arc<PuzzleDataset>, cfg: SamplerConfig) -> Result<Self, DataError> {
        let local = cfg.local_batch_size()?;
        if cfg.epochs_per_iter == 0 {
            return Err(DataError::Config("epochs_per_iter must be at least 1".into()));
        }
        let mut s = TrainSampler {
            ds,
            cfg,
            local,
            iters: 0,
            set_index: 0,
            position: 0,
            order: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(0),
            batches: 0,
            batches_this_pass: 0,
        };
        s.start_iteration();
        Ok(s)
    }

    /// Resume from a saved [`SamplerState`].
    pub fn from_state(ds: Arc<PuzzleDataset>, state: SamplerState) -> Result<Self, DataError> {
        if state.set_index >= ds.sets().len() || state.iters == 0 {
            return Err(DataError::Config(format!(
                "sampler state (set {}, iteration {}) does not fit this dataset",
                state.set_index, state.iters
            )));
        }
        let mut s = TrainSampler::new(ds, state.config)?;
        s.iters = state.iters - 1;
        s.set_index = state.set_index;
        s.start_iteration();
        if state.position > s.order.len() {
            return Err(DataError::Config(format!(
                "sampler position {} past the group order ({})",
                state.position,
                s.order.len()
            )));
        }
        s.position = state.position;
        s.rng.set_word_pos(state.rng_word_pos);
        s.batches = state.batches;
        Ok(s)
    }

    pub fn state(&self) -> SamplerState {
        SamplerState {
            config: self.cfg.clone(),
            iters: self.iters,
            set_index: self.set_index,
            position: self.position,
            rng_word_pos: self.rng.get_word_pos(),
            batches: self.batches,
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Shuffle the groups of the current set for a new iteration.
    fn start_iteration(&mut self) {
        self.iters += 1;
        self.position = 0;
        self.rng = ChaCha8Rng::seed_from_u64(self.cfg.seed.wrapping_add(self.iters));
        let groups = self.ds.sets()[self.set_index].num_groups();
        self.order.clear();
        for _ in 0..self.cfg.epochs_per_iter {
            let mut perm: Vec<usize> = (0..groups).collect();
            perm.shuffle(&mut self.rng);
            self.order.extend(perm);
        }
    }

    /// Sample one global batch from the current iteration: `(example, puzzle)` pairs.
    fn sample_global(&mut self) -> Vec<(usize, usize)> {
        let set: &PuzzleSet = &self.ds.sets()[self.set_index];
        let global = self.cfg.global_batch_size;
        // Never more than the set holds per epoch (a batch too large to fill is dropped, and
        // reserving all of an absurd `global` aborted the process).
        let mut picked = Vec::with_capacity(global.min(set.num_examples().saturating_mul(self.cfg.epochs_per_iter)));
        while self.position < self.order.len() && picked.len() < global {
            let g = self.order[self.position];
            self.position += 1;
            let puzzles = set.group_puzzles(g);
            let p = self.rng.gen_range(puzzles);
            let ex = set.puzzle_examples(p);
            let take = ex.len().min(global - picked.len());
            for k in rand::seq::index::sample(&mut self.rng, ex.len(), take) {
                picked.push((ex.start + k, p));
            }
        }
        picked
    }

    fn collate(&self, rows: &[(usize, usize)], global_valid: usize) -> Batch {
        let set = &self.ds.sets()[self.set_index];
        collate(self.ds.metadata(), set, self.set_index, rows, self.local, global_valid)
    }
}

impl Iterator for TrainSampler {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        loop {
            if let Some(max) = self.cfg.max_iters {
                // `iters` counts iterations over all sets together, as the official counter.
                if self.iters > max * self.ds.sets().len() as u64 {
                    return None;
                }
            }
            let picked = self.sample_global();
            if picked.len() == self.cfg.global_batch_size {
                let lo = self.cfg.rank * self.local;
                let batch = self.collate(&picked[lo..lo + self.local], picked.len());
                self.batches += 1;
                self.batches_this_pass += 1;
                return Some(batch);
            }
            // Incomplete batch: the official loop drops it and ends the set's iteration.
            self.set_index += 1;
            if self.set_index == self.ds.sets().len() {
                self.set_index = 0;
                if self.batches_this_pass == 0 {
                    return None;
                }
                self.batches_this_pass = 0;
            }
            self.start_iteration();
        }
    }
}

/// Gather rows into a padded batch of `local` rows.
fn collate(
    meta: &DatasetMetadata,
    set: &PuzzleSet,
    set_index: usize,
    rows: &[(usize, usize)],
    local: usize,
    global_valid: usize,
) -> Batch {
    let seq_len = meta.seq_len;
    let ignore = meta.ignore_label_id;
    let mut inputs = Vec::with_capacity(local * seq_len);
    let mut labels = Vec::with_capacity(local * seq_len);
    let mut ids = Vec::with_capacity(local);
    for &(e, p) in rows {
        inputs.extend(set.inputs(e).iter().map(|&t| t as i32));
        labels.extend(set.labels(e).iter().map(|&t| if Some(t as i32) == ignore { IGNORE_LABEL_ID } else { t as i32 }));
        ids.push(set.puzzle_identifier(p));
    }
    let pad = local - rows.len();
    inputs.extend(std::iter::repeat_n(meta.pad_id, pad * seq_len));
    labels.extend(std::iter::repeat_n(IGNORE_LABEL_ID, pad * seq_len));
    ids.extend(std::iter::repeat_n(meta.blank_identifier_id, pad));
    Batch {
        inputs,
        labels,
        puzzle_identifiers: ids,
        batch_size: local,
        seq_len,
        num_valid: rows.len(),
        global_valid,
        set_index,
    }
}

/// The sequential evaluation iterator (`_iter_test`): every example in order, per set, in
/// global-batch chunks of which this rank takes its slice, padded to the local batch size.
pub struct TestBatches<'a> {
    ds: &'a PuzzleDataset,
    global: usize,
    local: usize,
    rank: usize,
    set_index: usize,
    start: usize,
}

/// Build the test iterator. `global_batch_size` must be a multiple of `world_size`.
pub fn test_batches(
    ds: &PuzzleDataset,
    global_batch_size: usize,
    rank: usize,
    world_size: usize,
) -> Result<TestBatches<'_>, DataError> {
    let cfg = SamplerConfig { rank, world_size, ..SamplerConfig::new(0, global_batch_size) };
    let local = cfg.local_batch_size()?;
    Ok(TestBatches { ds, global: global_batch_size, local, rank, set_index: 0, start: 0 })
}

impl Iterator for TestBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        loop {
            let set = self.ds.sets().get(self.set_index)?;
            let total = set.num_examples();
            if self.start >= total {
                self.set_index += 1;
                self.start = 0;
                continue;
            }
            let end = total.min(self.start + self.global);
            let lo = (self.start + self.rank * self.local).min(end);
            let hi = (self.start + (self.rank + 1) * self.local).min(end);
            let rows: Vec<(usize, usize)> = (lo..hi).map(|e| (e, set.puzzle_of_example(e))).collect();
            let batch = collate(self.ds.metadata(), set, self.set_index, &rows, self.local, end - self.start);
            self.start += self.global;
            return Some(batch);
        }
    }
}

/// The official step budget: `int(epochs * total_groups * mean_puzzle_examples / global_batch)`.
pub fn official_total_steps(meta: &DatasetMetadata, epochs: u64, global_batch_size: usize) -> u64 {
    (epochs as f64 * meta.total_groups as f64 * meta.mean_puzzle_examples / global_batch_size as f64) as u64
}
