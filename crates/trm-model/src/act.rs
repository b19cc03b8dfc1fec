//! Adaptive computation time as the official code runs it: a persistent batch of slots,
//! each holding one sample for 1..=N_sup supervision steps. Halted slots are reset and
//! refilled from the next batch; the others keep their data and (y, z).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::Rng;

use crate::config::TrmConfig;
use crate::layers::int_tensor;
use crate::model::{Carry, Trm};

/// A batch on the host: row-major [batch_size, seq_len] inputs and labels (-100 = ignored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostBatch {
    /// Token ids, [batch_size * seq_len].
    pub inputs: Vec<i32>,
    /// Labels, [batch_size * seq_len]; -100 is ignored.
    pub labels: Vec<i32>,
    /// Puzzle identifiers, `[batch_size]`.
    pub puzzle_identifiers: Vec<i32>,
    /// Rows.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
}

impl HostBatch {
    /// An all-zero batch (the content of slots that were never filled).
    pub fn zeros(batch_size: usize, seq_len: usize) -> Self {
        Self {
            inputs: vec![0; batch_size * seq_len],
            labels: vec![0; batch_size * seq_len],
            puzzle_identifiers: vec![0; batch_size],
            batch_size,
            seq_len,
        }
    }

    /// Inputs as an int tensor [B, L].
    pub fn inputs_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        int_tensor(TensorData::new(self.inputs.clone(), [self.batch_size, self.seq_len]), device)
    }

    /// Labels as an int tensor [B, L].
    pub fn labels_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        int_tensor(TensorData::new(self.labels.clone(), [self.batch_size, self.seq_len]), device)
    }

    /// Puzzle identifiers as an int tensor `[B]`.
    pub fn puzzle_ids_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 1, Int> {
        int_tensor(TensorData::new(self.puzzle_identifiers.clone(), [self.batch_size]), device)
    }

    /// The samples `rows` of this batch, in order.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> HostBatch {
        let l = self.seq_len;
        HostBatch {
            inputs: self.inputs[rows.start * l..rows.end * l].to_vec(),
            labels: self.labels[rows.start * l..rows.end * l].to_vec(),
            puzzle_identifiers: self.puzzle_identifiers[rows.clone()].to_vec(),
            batch_size: rows.len(),
            seq_len: l,
        }
    }

    /// Copies row `src_row` of `src` into row `row`.
    fn copy_row(&mut self, row: usize, src: &HostBatch, src_row: usize) {
        let l = self.seq_len;
        self.inputs[row * l..(row + 1) * l].copy_from_slice(&src.inputs[src_row * l..(src_row + 1) * l]);
        self.labels[row * l..(row + 1) * l].copy_from_slice(&src.labels[src_row * l..(src_row + 1) * l]);
        self.puzzle_identifiers[row] = src.puzzle_identifiers[src_row];
    }
}

/// The official halting rule, applied after each supervision step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaltingRule {
    /// N_sup.
    pub n_sup: usize,
    /// Probability of a random minimum step count in training.
    pub exploration_prob: f64,
    /// Halt on q_halt > 0 (true) or on q_halt > q_continue (false).
    pub no_act_continue: bool,
}

impl HaltingRule {
    /// The rule of a model config.
    pub fn from_config(config: &TrmConfig) -> Self {
        Self {
            n_sup: config.n_sup,
            exploration_prob: config.halt_exploration_prob,
            no_act_continue: config.no_act_continue,
        }
    }

    /// Increments `steps` and returns which samples halt. In evaluation only N_sup halts;
    /// in training also the Q head (q_halt > 0, or > q_continue), unless exploration drew a
    /// minimum step count in [2, N_sup] that is not reached yet.
    pub fn update<R: Rng>(
        &self,
        steps: &mut [usize],
        q_halt: &[f32],
        q_continue: &[f32],
        training: bool,
        rng: &mut R,
    ) -> Vec<bool> {
        steps
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                *s += 1;
                let mut halted = *s >= self.n_sup;
                if training && self.n_sup > 1 {
                    let wants = if self.no_act_continue { q_halt[i] > 0.0 } else { q_halt[i] > q_continue[i] };
                    halted |= wants;
                    // Draw both numbers for every sample, as the official code does.
                    let explore = rng.gen::<f64>() < self.exploration_prob;
                    let min_steps = rng.gen_range(2..=self.n_sup);
                    if explore && *s < min_steps {
                        halted = false;
                    }
                }
                halted
            })
            .collect()
    }
}

/// The ACT carry: recursive state, step counts, halted flags and the slots' current data.
#[derive(Debug, Clone)]
pub struct ActCarry<B: Backend> {
    /// (y, z) per slot.
    pub state: Carry<B>,
    /// Supervision steps each slot has had.
    pub steps: Vec<usize>,
    /// Whether each slot halted after its last step (and is refilled next).
    pub halted: Vec<bool>,
    /// The data each slot works on.
    pub data: HostBatch,
}

impl<B: Backend> ActCarry<B> {
    /// Every slot halted, so the first [`ActCarry::refill`] fills all of them.
    pub fn new(model: &Trm<B>, batch_size: usize) -> Self {
        let seq_len = model.config().seq_len;
        Self {
            state: model.initial_carry(batch_size),
            steps: vec![0; batch_size],
            halted: vec![true; batch_size],
            data: HostBatch::zeros(batch_size, seq_len),
        }
    }

    /// Halted slots take row i of `fresh` (the same index), their step count returns to 0 and
    /// (y, z) to the initial state. The fresh rows at the other indices are discarded, as in
    /// the official trainer. Returns how many slots were refilled.
    pub fn refill(&mut self, model: &Trm<B>, fresh: &HostBatch) -> usize {
        assert_eq!(fresh.batch_size, self.data.batch_size, "fresh batch size must equal the number of slots");
        let mut n = 0;
        for i in 0..self.halted.len() {
            if self.halted[i] {
                self.data.copy_row(i, fresh, i);
                self.steps[i] = 0;
                n += 1;
            }
        }
        if n > 0 {
            let device = self.state.y.device();
            let mask =
                Tensor::<B, 1, Bool>::from_data(TensorData::new(self.halted.clone(), [self.halted.len()]), &device);
            self.state = model.reset_carry(mask, self.state.clone());
        }
        n
    }
}

/// The bootstrapped Q-continue target of the `no_act_continue = false` path (the working
/// form of HRM; the released TRM code crashes here): one more no-grad supervision step from
/// the new carry, then sigmoid(q_halt') on the last step, sigmoid(max(q_halt', q_continue')) before.
pub fn q_continue_target<B: Backend>(
    model: &Trm<B>,
    x: &Tensor<B, 3>,
    carry: Carry<B>,
    is_last: &[bool],
) -> Tensor<B, 1> {
    let next = model.supervision_step(x, carry).heads;
    let device = next.q_halt.device();
    let last = Tensor::<B, 1, Bool>::from_data(TensorData::new(is_last.to_vec(), [is_last.len()]), &device);
    let best = next.q_halt.clone().max_pair(next.q_continue);
    burn::tensor::activation::sigmoid(best.mask_where(last, next.q_halt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn evaluation_halts_only_at_n_sup() {
        let rule = HaltingRule { n_sup: 3, exploration_prob: 0.1, no_act_continue: true };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut steps = vec![0, 1, 2];
        let halted = rule.update(&mut steps, &[9.0, 9.0, -9.0], &[0.0; 3], false, &mut rng);
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(halted, vec![false, false, true]);
    }

    #[test]
    fn training_halts_on_q_unless_exploring() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let no_explore = HaltingRule { n_sup: 16, exploration_prob: 0.0, no_act_continue: true };
        let mut steps = vec![0, 0];
        assert_eq!(no_explore.update(&mut steps, &[0.5, -0.5], &[0.0; 2], true, &mut rng), vec![true, false]);
        // With certain exploration, a first step never halts (min steps >= 2).
        let always = HaltingRule { exploration_prob: 1.0, ..no_explore };
        let mut steps = vec![0; 100];
        assert!(always.update(&mut steps, &[5.0; 100], &[0.0; 100], true, &mut rng).iter().all(|h| !h));
        // q_halt > q_continue rule.
        let cont = HaltingRule { no_act_continue: false, ..no_explore };
        let mut steps = vec![0, 0];
        assert_eq!(cont.update(&mut steps, &[-1.0, -1.0], &[-2.0, 0.0], true, &mut rng), vec![true, false]);
    }

    #[test]
    fn refill_replaces_only_halted_slots() {
        use burn::backend::NdArray;
        let device = Default::default();
        let mut cfg = TrmConfig::sudoku_mlp();
        cfg.hidden_size = 8;
        cfg.seq_len = 2;
        cfg.puzzle_emb_ndim = 8;
        let model = cfg.init::<NdArray<f32>>(&device);
        let mut carry = ActCarry::new(&model, 2);
        let a = HostBatch {
            inputs: vec![1, 2, 3, 4],
            labels: vec![5, 6, 7, 8],
            puzzle_identifiers: vec![0, 0],
            batch_size: 2,
            seq_len: 2,
        };
        assert_eq!(carry.refill(&model, &a), 2);
        carry.halted = vec![false, true];
        carry.steps = vec![3, 5];
        let b = HostBatch { inputs: vec![9, 9, 9, 9], ..a.clone() };
        assert_eq!(carry.refill(&model, &b), 1);
        assert_eq!(carry.data.inputs, vec![1, 2, 9, 9]);
        assert_eq!(carry.steps, vec![3, 0]);
    }
}
