//! The training engine, generic over `B: AutodiffBackend`: deep supervision (official
//! per-slot ACT loop or the paper's pseudo-code), the loss, both optimizers, the LR
//! schedule and the EMA.

use std::sync::Arc;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use trm_data::{Batch, PuzzleDataset, SamplerConfig, TrainSampler};
use trm_model::act::q_continue_target;
use trm_model::{
    act_loss, supervision_step_train, ActCarry, Carry, HaltingRule, HostBatch, StepOutput, Trm, TrmConfig,
};

use crate::config::{ActMode, GradMode, TrainConfig};
use crate::ema::ema_update;
use crate::error::TrainError;
use crate::optim::{lr_factor, sign_sgd_rows, DenseOptimizer};

/// Metrics of one optimizer step. Accuracies and `steps` are over the slots that halted at
/// this step and have at least one label (official); losses are divided by the global batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step (1-based, after this step).
    pub step: u64,
    /// Dense learning rate used.
    pub lr: f64,
    /// Total loss / global batch.
    pub loss: f64,
    /// Token loss / global batch.
    pub lm_loss: f64,
    /// Halt BCE / global batch.
    pub q_halt_loss: f64,
    /// Samples the accuracies are over.
    pub count: usize,
    /// Token accuracy (mean over samples of their token accuracy).
    pub accuracy: f64,
    /// Fraction of samples entirely right.
    pub exact_accuracy: f64,
    /// Fraction where (q_halt >= 0) equals "entirely right".
    pub q_halt_accuracy: f64,
    /// Mean supervision steps of the halted samples.
    pub steps: f64,
}

/// Host-side results of one supervision step.
struct StepHost {
    loss: f64,
    lm_loss: f64,
    q_halt_loss: f64,
    q_halt: Vec<f32>,
    q_continue: Vec<f32>,
    valid: Vec<i64>,
    correct: Vec<i64>,
    seq_correct: Vec<bool>,
}

fn to_host_batch(b: &Batch) -> HostBatch {
    HostBatch {
        inputs: b.inputs.clone(),
        labels: b.labels.clone(),
        puzzle_identifiers: b.puzzle_identifiers.clone(),
        batch_size: b.batch_size,
        seq_len: b.seq_len,
    }
}

fn f32s<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("float data")
}

/// A bool tensor's values, read through an int cast: backends store bools differently
/// (ndarray as `bool`, the cubecl backends as `u32`), and `TensorData` converts numbers only.
fn bools<B: burn::tensor::backend::Backend>(t: Tensor<B, 1, burn::tensor::Bool>) -> Vec<bool> {
    t.int().into_data().convert::<i64>().to_vec::<i64>().expect("int data").into_iter().map(|v| v != 0).collect()
}

fn scalar<B: burn::tensor::backend::Backend>(t: Tensor<B, 1>) -> f64 {
    f32s(t)[0] as f64
}

/// TRM's training state: raw model (with the live puzzle table), EMA shadow, optimizer,
/// sampler, halting RNG and (official mode) the ACT carry.
pub struct Trainer<B: AutodiffBackend> {
    /// The run configuration.
    pub cfg: TrainConfig,
    /// The architecture.
    pub model_cfg: TrmConfig,
    /// The raw model; `puzzle_emb` is the live table.
    pub model: Trm<B>,
    /// EMA shadow of the dense weights.
    pub ema: Option<Trm<B::InnerBackend>>,
    pub(crate) opt: DenseOptimizer<B>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Optimizer steps the run lasts.
    pub total_steps: u64,
    pub(crate) sampler: TrainSampler,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) carry: Option<ActCarry<B::InnerBackend>>,
    pub(crate) device: B::Device,
    pub(crate) last_lr: f64,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A fresh run on the training split `train`.
    pub fn new(cfg: TrainConfig, train: Arc<PuzzleDataset>, device: B::Device) -> Result<Self, TrainError> {
        cfg.validate()?;
        let meta = train.metadata();
        let model_cfg = cfg.model_config(meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers)?;
        let total_steps = match (cfg.train.max_steps, cfg.train.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => trm_data::official_total_steps(meta, e, cfg.train.global_batch_size).max(1),
            (None, None) => unreachable!("validated"),
        };
        let sampler = TrainSampler::new(train, SamplerConfig::new(cfg.seed, cfg.train.global_batch_size))?;
        let model: Trm<B> = model_cfg.init_seeded(&device, cfg.seed);
        let ema = cfg.train.ema.then(|| model.valid());
        let opt = DenseOptimizer::new(&cfg.train);
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(crate::checkpoint::halting_seed(cfg.seed)),
            cfg,
            model_cfg,
            model,
            ema,
            opt,
            step: 0,
            total_steps,
            sampler,
            carry: None,
            device,
            last_lr: 0.0,
        })
    }

    /// The device.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Whether the step budget is used up.
    pub fn finished(&self) -> bool {
        self.step >= self.total_steps
    }

    /// The model evaluation and export use: the EMA weights (raw without EMA) with the live
    /// puzzle table, on the inner backend.
    pub fn eval_model(&self) -> Trm<B::InnerBackend> {
        match &self.ema {
            Some(ema) => {
                let mut m = ema.clone();
                m.puzzle_emb = self.model.puzzle_emb.clone().map(|t| t.inner());
                m
            }
            None => self.model.valid(),
        }
    }

    /// One unit of training: an optimizer step (official mode) or one minibatch of up to
    /// N_sup optimizer steps (paper mode). Returns the metrics of each optimizer step; empty
    /// when the budget is spent or the sampler has run dry.
    pub fn train_step(&mut self) -> Result<Vec<StepMetrics>, TrainError> {
        if self.finished() {
            return Ok(Vec::new());
        }
        let Some(batch) = self.sampler.next() else { return Ok(Vec::new()) };
        let host = to_host_batch(&batch);
        match self.cfg.train.act {
            ActMode::Official => Ok(vec![self.official_step(&host)?]),
            ActMode::Paper => self.paper_minibatch(&host),
        }
    }

    fn official_step(&mut self, fresh: &HostBatch) -> Result<StepMetrics, TrainError> {
        let inner = self.model.valid();
        let mut carry = self.carry.take().unwrap_or_else(|| ActCarry::new(&inner, fresh.batch_size));
        carry.refill(&inner, fresh);
        let n_sup = self.model_cfg.n_sup;
        let is_last: Vec<bool> = carry.steps.iter().map(|s| s + 1 >= n_sup).collect();
        let (h, new_state) = self.optimize(&inner, &carry.data, carry.state.clone(), Some(&is_last))?;
        let rule = HaltingRule::from_config(&self.model_cfg);
        let halted = rule.update(&mut carry.steps, &h.q_halt, &h.q_continue, true, &mut self.rng);
        let mut m = self.metrics(&h, &halted, &carry.steps);
        carry.state = new_state;
        carry.halted = halted;
        self.carry = Some(carry);
        m.step = self.step;
        Ok(m)
    }

    fn paper_minibatch(&mut self, data: &HostBatch) -> Result<Vec<StepMetrics>, TrainError> {
        let mut state = self.model.valid().initial_carry(data.batch_size);
        let mut out = Vec::new();
        for k in 0..self.model_cfg.n_sup {
            if self.finished() {
                break;
            }
            let inner = self.model.valid();
            let is_last = vec![k + 1 >= self.model_cfg.n_sup; data.batch_size];
            let (h, new_state) = self.optimize(&inner, data, state, Some(&is_last))?;
            state = new_state;
            let all = vec![true; data.batch_size];
            let mut m = self.metrics(&h, &all, &vec![k + 1; data.batch_size]);
            m.step = self.step;
            out.push(m);
            if h.q_halt.iter().all(|&q| q > 0.0) {
                break;
            }
        }
        Ok(out)
    }

    /// One supervision step with gradients on `data` from `state`, then the updates of both
    /// optimizers and the EMA. Returns the host results and the new (detached) carry.
    fn optimize(
        &mut self,
        inner: &Trm<B::InnerBackend>,
        data: &HostBatch,
        state: Carry<B::InnerBackend>,
        is_last: Option<&[bool]>,
    ) -> Result<(StepHost, Carry<B::InnerBackend>), TrainError> {
        let device = self.device.clone();
        let inputs: Tensor<B, 2, Int> = data.inputs_tensor(&device);
        let labels: Tensor<B, 2, Int> = data.labels_tensor(&device);
        let ids_inner: Tensor<B::InnerBackend, 1, Int> = data.puzzle_ids_tensor(&device);
        let rows = inner.puzzle_rows(ids_inner).map(|r| Tensor::<B, 2>::from_inner(r).require_grad());
        let x = self.model.input_embeddings(inputs, rows.clone());
        let x_inner = x.clone().inner();
        let out = match self.cfg.train.grad {
            GradMode::Full => supervision_step_train(&self.model, inner, x, state),
            GradMode::OneStep => one_step_train(&self.model, inner, x, state),
        };
        let target = match (self.model_cfg.no_act_continue, is_last) {
            (false, Some(last)) => {
                let t = q_continue_target(inner, &x_inner, out.carry.clone(), last);
                Some(Tensor::<B, 1>::from_inner(t))
            }
            _ => None,
        };
        let loss = act_loss(&out.heads, labels, self.cfg.train.loss, target);
        let gbs = self.cfg.train.global_batch_size as f64;
        let scaled = loss.total.clone().div_scalar(gbs);
        let value = scalar(scaled.clone().inner());
        if !value.is_finite() {
            return Err(TrainError::NonFinite { step: self.step + 1, value });
        }
        let host = StepHost {
            loss: value,
            lm_loss: scalar(loss.lm_loss.clone().inner()) / gbs,
            q_halt_loss: scalar(loss.q_halt_loss.clone().inner()) / gbs,
            q_halt: f32s(out.heads.q_halt.clone().inner()),
            q_continue: f32s(out.heads.q_continue.clone().inner()),
            valid: loss.correctness.valid_tokens.clone().into_data().convert::<i64>().to_vec().expect("int data"),
            correct: loss.correctness.correct_tokens.clone().into_data().convert::<i64>().to_vec().expect("int data"),
            seq_correct: bools(loss.correctness.seq_is_correct.clone()),
        };
        let grads = scaled.backward();
        let row_grads = rows.and_then(|r| r.grad(&grads));
        let params = GradientsParams::from_grads(grads, &self.model);
        self.step += 1;
        let t = &self.cfg.train;
        let factor = lr_factor(self.step, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio);
        let mut model = self.opt.step(t.lr * factor, self.model.clone(), params);
        if let (Some(table), Some(g)) = (model.puzzle_emb.take(), row_grads) {
            let updated = sign_sgd_rows(
                table.inner(),
                &data.puzzle_identifiers,
                g,
                t.puzzle_emb_lr * factor,
                t.puzzle_emb_weight_decay,
            );
            model.puzzle_emb = Some(Tensor::from_inner(updated));
        }
        self.model = model;
        if let Some(ema) = self.ema.take() {
            self.ema = Some(ema_update(ema, &self.model.valid(), t.ema_rate));
        }
        self.last_lr = t.lr * factor;
        Ok((host, out.carry))
    }

    fn metrics(&self, h: &StepHost, counted: &[bool], steps: &[usize]) -> StepMetrics {
        let mut m = StepMetrics {
            lr: self.last_lr,
            loss: h.loss,
            lm_loss: h.lm_loss,
            q_halt_loss: h.q_halt_loss,
            ..Default::default()
        };
        for i in 0..counted.len() {
            if !counted[i] || h.valid[i] == 0 {
                continue;
            }
            m.count += 1;
            m.accuracy += h.correct[i] as f64 / h.valid[i] as f64;
            m.exact_accuracy += h.seq_correct[i] as u8 as f64;
            m.q_halt_accuracy += ((h.q_halt[i] >= 0.0) == h.seq_correct[i]) as u8 as f64;
            m.steps += steps[i] as f64;
        }
        if m.count > 0 {
            let c = m.count as f64;
            m.accuracy /= c;
            m.exact_accuracy /= c;
            m.q_halt_accuracy /= c;
            m.steps /= c;
        }
        m
    }
}

/// HRM's 1-step gradient (for the ablation): everything but the last z update and the y
/// update runs without gradients.
pub fn one_step_train<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    x: Tensor<B, 3>,
    carry: Carry<B::InnerBackend>,
) -> StepOutput<B, B::InnerBackend> {
    let cfg = model.config();
    let x_inner = x.clone().inner();
    let c = inner.deep_recursion(&x_inner, carry, cfg.t_cycles - 1);
    let (y, mut z) = (c.y, c.z);
    for _ in 1..cfg.n_cycles {
        z = inner.net.forward(z, y.clone() + x_inner.clone(), inner.rope());
    }
    let y = Tensor::<B, 3>::from_inner(y);
    let z = model.net.forward(Tensor::from_inner(z), y.clone() + x, model.rope());
    let y = model.net.forward(y, z.clone(), model.rope());
    StepOutput { heads: model.heads(y.clone()), carry: Carry { y: y.inner(), z: z.inner() } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use trm_model::TrmConfig;

    type B = Autodiff<NdArray<f32>>;

    #[test]
    fn bools_reads_a_bool_tensor() {
        let t = Tensor::<NdArray<f32>, 1>::from_floats([1.0, -2.0, 3.0, 0.0], &Default::default());
        assert_eq!(bools(t.greater_elem(0.5)), vec![true, false, true, false]);
    }

    /// Gradient of sum(logits) w.r.t. the last block's down projection, for one step.
    fn grad_of(t: usize, n: usize, one_step: bool) -> Vec<f32> {
        let mut c = TrmConfig::sudoku_att();
        (c.hidden_size, c.num_heads, c.seq_len, c.vocab_size, c.puzzle_emb_ndim, c.puzzle_emb_len) =
            (16, 2, 5, 4, 0, 0);
        (c.t_cycles, c.n_cycles) = (t, n);
        let device = Default::default();
        let model = c.init_seeded::<B>(&device, 5);
        let inner = model.valid();
        // The same input for every call (a random tensor would differ between calls).
        let data: Vec<f32> = (0..2 * 5 * 16).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let x = Tensor::<B, 3>::from_data(burn::tensor::TensorData::new(data, [2, 5, 16]), &device);
        let carry = inner.initial_carry(2);
        let out = if one_step {
            one_step_train(&model, &inner, x, carry)
        } else {
            supervision_step_train(&model, &inner, x, carry)
        };
        let grads = out.heads.logits.sum().backward();
        let w = &model.net.blocks[1].mlp.down.weight;
        w.grad(&grads).expect("a gradient").into_data().to_vec().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// With RoPE: at T = 1, n = 1 the 1-step gradient is the full gradient (the whole step
    /// is the last z and y update); at T = 2, n = 2 it must differ.
    #[test]
    fn one_step_gradient_with_rope_equals_full_only_when_nothing_is_cut() {
        let (full, one) = (grad_of(1, 1, false), grad_of(1, 1, true));
        assert!(max_diff(&full, &one) < 1e-6, "T=1 n=1: {}", max_diff(&full, &one));
        let (full, one) = (grad_of(2, 2, false), grad_of(2, 2, true));
        assert!(max_diff(&full, &one) > 1e-4, "T=2 n=2 should differ: {}", max_diff(&full, &one));
    }
}
