//! The training engine, generic over `B: AutodiffBackend`: deep supervision (official
//! per-slot ACT loop or the paper's pseudo-code), the loss, both optimizers, the LR
//! schedule and the EMA.

use std::sync::Arc;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use trm_data::{Batch, PuzzleDataset, SamplerConfig, TrainSampler};
use trm_model::{
    supervision_step_gradients, ActCarry, Carry, GradientScope, HaltingRule, HostBatch, LossOptions, StepGradients,
    Trm, TrmConfig,
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

fn to_host_batch(b: &Batch) -> HostBatch {
    HostBatch {
        inputs: b.inputs.clone(),
        labels: b.labels.clone(),
        puzzle_identifiers: b.puzzle_identifiers.clone(),
        batch_size: b.batch_size,
        seq_len: b.seq_len,
    }
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
        let h = self.optimize(&inner, &carry.data, carry.state.clone(), Some(&is_last))?;
        let rule = HaltingRule::from_config(&self.model_cfg);
        let halted = rule.update(&mut carry.steps, &h.q_halt, &h.q_continue, true, &mut self.rng);
        let mut m = self.metrics(&h, &halted, &carry.steps);
        carry.state = h.carry;
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
            let h = self.optimize(&inner, data, state, Some(&is_last))?;
            let all = vec![true; data.batch_size];
            let mut m = self.metrics(&h, &all, &vec![k + 1; data.batch_size]);
            m.step = self.step;
            out.push(m);
            if h.q_halt.iter().all(|&q| q > 0.0) {
                break;
            }
            state = h.carry;
        }
        Ok(out)
    }

    /// One supervision step with gradients on `data` from `state`, then the updates of both
    /// optimizers and the EMA. Returns the step's results (its gradients used up) and the new
    /// (detached) carry in it.
    fn optimize(
        &mut self,
        inner: &Trm<B::InnerBackend>,
        data: &HostBatch,
        state: Carry<B::InnerBackend>,
        is_last: Option<&[bool]>,
    ) -> Result<StepGradients<B>, TrainError> {
        let t = &self.cfg.train;
        let scope = match t.grad {
            GradMode::Full => GradientScope::LastCycle,
            GradMode::OneStep => GradientScope::OneStep,
        };
        let options = LossOptions { loss_type: t.loss, scale: t.global_batch_size as f64, scope };
        let mut g = supervision_step_gradients(&self.model, inner, data, state, is_last, options);
        if !g.loss.is_finite() {
            return Err(TrainError::NonFinite { step: self.step + 1, value: g.loss });
        }
        self.step += 1;
        let factor = lr_factor(self.step, t.lr_warmup_steps, self.total_steps, t.lr_min_ratio);
        let mut model = self.opt.step(t.lr * factor, self.model.clone(), std::mem::take(&mut g.params));
        if let (Some(table), Some(rows)) = (model.puzzle_emb.take(), g.puzzle_rows.take()) {
            let updated = sign_sgd_rows(
                table.inner(),
                &data.puzzle_identifiers,
                rows,
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
        Ok(g)
    }

    fn metrics(&self, h: &StepGradients<B>, counted: &[bool], steps: &[usize]) -> StepMetrics {
        let mut m = StepMetrics {
            lr: self.last_lr,
            loss: h.loss,
            lm_loss: h.lm_loss,
            q_halt_loss: h.q_halt_loss,
            ..Default::default()
        };
        for i in 0..counted.len() {
            if !counted[i] || h.valid_tokens[i] == 0 {
                continue;
            }
            m.count += 1;
            m.accuracy += h.correct_tokens[i] as f64 / h.valid_tokens[i] as f64;
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

/// HRM's 1-step gradient (for the ablation); it lives in `trm_model` beside the full one.
pub use trm_model::one_step_train;
