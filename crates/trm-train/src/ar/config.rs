//! The AR run configuration (one TOML file: `[task]`, `[model]`, `[train]`) and the baseline
//! ladder derived from an AR-TRM config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trm_data::ar_tasks::{ArTask, ArTaskConfig, VOCAB_SIZE};
use trm_model::ar::{ArBaselineConfig, ArTrmConfig, KvSource};

use crate::error::TrainError;

/// The generated task and its splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArTaskSpec {
    /// addition, carry_chains or sort.
    pub task: ArTask,
    /// Sizes (digits per operand, or items) for training and the in-distribution test, inclusive.
    pub train_sizes: [usize; 2],
    /// Sizes of the length-generalisation test (all above `train_sizes`), inclusive.
    pub long_sizes: [usize; 2],
    /// Samples in the in-distribution test.
    #[serde(default = "default_test")]
    pub test_samples: usize,
    /// Samples in the long test.
    #[serde(default = "default_test")]
    pub long_samples: usize,
}

fn default_test() -> usize {
    500
}

impl ArTaskSpec {
    /// The data-crate task config.
    pub fn task_config(&self) -> ArTaskConfig {
        ArTaskConfig {
            task: self.task,
            train_sizes: self.train_sizes[0]..=self.train_sizes[1],
            long_sizes: self.long_sizes[0]..=self.long_sizes[1],
        }
    }
}

/// Which model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArModelKind {
    /// AR-TRM: per-token (y, z) refinement with deep supervision and a halting head.
    ArTrm,
    /// A standard causal transformer: `layers` untied blocks, applied once.
    Transformer,
    /// `layers` blocks applied `loops` times with tied weights (input re-injected per loop).
    Looped,
}

/// The model: AR-TRM fields, or the baseline fields (`layers`, `loops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArModelSpec {
    /// ar_trm, transformer or looped.
    pub kind: ArModelKind,
    /// Hidden width D.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// SwiGLU expansion.
    #[serde(default = "default_expansion")]
    pub expansion: f64,
    /// Distinct blocks.
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// AR-TRM: T, cycles per refinement step.
    #[serde(default = "one")]
    pub t_cycles: usize,
    /// AR-TRM: n, latent updates per cycle.
    #[serde(default = "default_n")]
    pub n_cycles: usize,
    /// AR-TRM: K_max refinement steps (trained with deep supervision over all of them).
    #[serde(default = "default_k")]
    pub k_max: usize,
    /// AR-TRM: which K/V a committed token exposes.
    #[serde(default)]
    pub kv_source: KvSource,
    /// Baselines: applications of the block stack (transformer: 1).
    #[serde(default = "one")]
    pub loops: usize,
}

fn default_expansion() -> f64 {
    4.0
}
fn default_layers() -> usize {
    2
}
fn one() -> usize {
    1
}
fn default_n() -> usize {
    2
}
fn default_k() -> usize {
    4
}

/// How the prefix is committed in training under [`KvSource::RefinedY`] (the decoding
/// policy the model is trained for; no effect with [`KvSource::Embedding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CommitPolicy {
    /// Each prefix token halts as its halt logit says (adaptive decoding).
    #[default]
    Halting,
    /// Each prefix token takes K_max steps (fixed-steps decoding).
    Fixed,
}

/// Optimisation and evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArTrainSpec {
    /// Sequences per optimizer step (fresh samples every step).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Optimizer steps.
    pub max_steps: u64,
    /// Peak learning rate (AdamATan2).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Linear warmup steps.
    #[serde(default = "default_warmup")]
    pub lr_warmup_steps: u64,
    /// Cosine decay to this fraction of `lr` (1.0: constant).
    #[serde(default = "default_min_ratio")]
    pub lr_min_ratio: f64,
    /// Decoupled weight decay.
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Adam β1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam β2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Evaluate with an EMA of the weights.
    #[serde(default = "yes")]
    pub ema: bool,
    /// EMA decay.
    #[serde(default = "default_ema_rate")]
    pub ema_rate: f64,
    /// Evaluate every this many steps (0: only at the end).
    #[serde(default)]
    pub eval_interval: u64,
    /// Sequences per evaluation batch.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// Stop training after this many minutes (then evaluate).
    #[serde(default)]
    pub time_limit_minutes: Option<f64>,
    /// Prefix commit policy in training (RefinedY only).
    #[serde(default)]
    pub commit_policy: CommitPolicy,
}

fn default_batch() -> usize {
    64
}
fn default_lr() -> f64 {
    1e-3
}
fn default_warmup() -> u64 {
    100
}
fn default_min_ratio() -> f64 {
    0.1
}
fn default_wd() -> f64 {
    0.1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn yes() -> bool {
    true
}
fn default_ema_rate() -> f64 {
    0.99
}
fn default_eval_batch() -> usize {
    250
}

/// One AR training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArRunConfig {
    /// Run name.
    pub name: String,
    /// Run folder (metrics.jsonl, model.bin, config.toml, results.json).
    pub out_dir: PathBuf,
    /// Seed of the initialisation and the data streams.
    #[serde(default)]
    pub seed: u64,
    /// The task.
    pub task: ArTaskSpec,
    /// The model.
    pub model: ArModelSpec,
    /// Optimisation and evaluation.
    pub train: ArTrainSpec,
}

const ROPE_THETA: f64 = 10000.0;
const RMS_EPS: f64 = 1e-5;

impl ArRunConfig {
    /// Parses and validates a TOML config.
    pub fn from_toml_str(text: &str) -> Result<Self, TrainError> {
        let cfg: Self = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an AR run config always serialises")
    }

    /// The longest sequence any split produces: the model's max_len.
    pub fn max_len(&self) -> usize {
        self.task.task_config().max_tokens()
    }

    /// The AR-TRM architecture (kind = ar_trm).
    pub fn ar_trm_config(&self) -> ArTrmConfig {
        let m = &self.model;
        ArTrmConfig {
            hidden_size: m.hidden_size,
            num_heads: m.num_heads,
            expansion: m.expansion,
            layers: m.layers,
            t_cycles: m.t_cycles,
            n_cycles: m.n_cycles,
            k_max: m.k_max,
            vocab_size: VOCAB_SIZE,
            max_len: self.max_len(),
            rope_theta: ROPE_THETA,
            rms_norm_eps: RMS_EPS,
            kv_source: m.kv_source,
        }
    }

    /// The baseline architecture (kind = transformer or looped).
    pub fn baseline_config(&self) -> ArBaselineConfig {
        let m = &self.model;
        ArBaselineConfig {
            hidden_size: m.hidden_size,
            num_heads: m.num_heads,
            expansion: m.expansion,
            layers: m.layers,
            loops: if m.kind == ArModelKind::Transformer { 1 } else { m.loops },
            vocab_size: VOCAB_SIZE,
            max_len: self.max_len(),
            rope_theta: ROPE_THETA,
            rms_norm_eps: RMS_EPS,
        }
    }

    /// Block evaluations per token at full depth (AR-TRM: K_max T(n+1) layers).
    pub fn block_evals_per_token(&self) -> usize {
        match self.model.kind {
            ArModelKind::ArTrm => self.ar_trm_config().net_calls_per_step() * self.model.k_max * self.model.layers,
            _ => self.baseline_config().block_evals_per_token(),
        }
    }

    /// Rejects bad values with a message naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        /// Sequences per batch beyond which the batch would not fit in memory anyway.
        const MAX_BATCH: usize = 1 << 20;
        /// Block evaluations per token (k_max T (n+1) layers) beyond which a run never ends.
        const MAX_BLOCK_CALLS_PER_TOKEN: usize = 10_000;
        let bad = |m: String| Err(TrainError::Config(m));
        let t = &self.task;
        if t.train_sizes[0] == 0 || t.train_sizes[0] > t.train_sizes[1] {
            return bad(format!("task.train_sizes {:?} must be [low, high] with 1 <= low <= high", t.train_sizes));
        }
        if t.long_sizes[0] > t.long_sizes[1] || t.long_sizes[0] <= t.train_sizes[1] {
            return bad(format!(
                "task.long_sizes {:?} must be [low, high] with low above train_sizes' high {}",
                t.long_sizes, t.train_sizes[1]
            ));
        }
        if t.test_samples == 0 || t.long_samples == 0 {
            return bad("task.test_samples and task.long_samples must be positive".into());
        }
        match self.model.kind {
            ArModelKind::ArTrm => self.ar_trm_config().validate()?,
            _ => self.baseline_config().validate()?,
        }
        let per_token = self.block_evals_per_token();
        if per_token > MAX_BLOCK_CALLS_PER_TOKEN {
            return bad(format!(
                "model: {per_token} block evaluations per token (AR-TRM: k_max x t_cycles x (n_cycles + 1) x layers) \
                 is more than {MAX_BLOCK_CALLS_PER_TOKEN}; training would not finish"
            ));
        }
        let tr = &self.train;
        if tr.batch_size == 0 || tr.eval_batch_size == 0 || tr.max_steps == 0 {
            return bad("train.batch_size, train.eval_batch_size and train.max_steps must be positive".into());
        }
        if tr.batch_size > MAX_BATCH || tr.eval_batch_size > MAX_BATCH {
            return bad(format!(
                "train.batch_size {} / train.eval_batch_size {}: at most {MAX_BATCH} sequences per batch",
                tr.batch_size, tr.eval_batch_size
            ));
        }
        if !(tr.lr.is_finite() && tr.lr > 0.0) {
            return bad(format!("train.lr {} must be a positive number", tr.lr));
        }
        if !(0.0..=1.0).contains(&tr.lr_min_ratio) || !(0.0..1.0).contains(&tr.ema_rate) {
            return bad("train.lr_min_ratio must be in [0, 1] and train.ema_rate in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&tr.beta1) || !(0.0..1.0).contains(&tr.beta2) || tr.weight_decay < 0.0 {
            return bad("train.beta1/beta2 must be in [0, 1) and train.weight_decay >= 0".into());
        }
        if matches!(tr.time_limit_minutes, Some(m) if !(m.is_finite() && m > 0.0)) {
            return bad("train.time_limit_minutes must be positive".into());
        }
        Ok(())
    }

    /// The baseline ladder for an AR-TRM config, each in its own sub-folder of `out_dir`:
    /// a transformer with the same blocks (matched parameters), a transformer with
    /// K_max T(n+1) x layers untied blocks (matched block evaluations), the same blocks
    /// looped K_max T(n+1) times (matched parameters and block evaluations), and the AR-TRM
    /// itself (evaluated with fixed steps and with adaptive halting).
    pub fn ladder(&self) -> Result<Vec<ArRunConfig>, TrainError> {
        if self.model.kind != ArModelKind::ArTrm {
            return Err(TrainError::Config("--ladder needs a config with model.kind = \"ar_trm\"".into()));
        }
        let calls = self.ar_trm_config().net_calls_per_step() * self.model.k_max;
        let variant = |suffix: &str, kind, layers, loops| {
            let mut c = self.clone();
            c.name = format!("{}-{suffix}", self.name);
            c.out_dir = self.out_dir.join(suffix);
            c.model.kind = kind;
            c.model.layers = layers;
            c.model.loops = loops;
            c
        };
        let layers = self.model.layers;
        Ok(vec![
            variant("transformer", ArModelKind::Transformer, layers, 1),
            variant("transformer-deep", ArModelKind::Transformer, layers * calls, 1),
            variant("looped", ArModelKind::Looped, layers, calls),
            variant("ar-trm", ArModelKind::ArTrm, layers, 1),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
out_dir = "runs/t"
[task]
task = "addition"
train_sizes = [1, 3]
long_sizes = [4, 5]
[model]
kind = "ar_trm"
hidden_size = 32
num_heads = 2
[train]
max_steps = 10
"#;

    #[test]
    fn a_minimal_config_gets_the_documented_defaults_and_sizes_from_the_task() {
        let c = ArRunConfig::from_toml_str(MINIMAL).unwrap();
        assert_eq!((c.model.t_cycles, c.model.n_cycles, c.model.k_max, c.model.layers), (1, 2, 4, 2));
        assert_eq!(c.train.batch_size, 64);
        let m = c.ar_trm_config();
        assert_eq!((m.vocab_size, m.max_len), (VOCAB_SIZE, 3 * 5 + 4));
        assert_eq!(c.block_evals_per_token(), 4 * 3 * 2);
        assert_eq!(ArRunConfig::from_toml_str(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_named() {
        for (from, to, field) in [
            ("long_sizes = [4, 5]", "long_sizes = [3, 5]", "long_sizes"),
            ("train_sizes = [1, 3]", "train_sizes = [0, 3]", "train_sizes"),
            ("num_heads = 2", "num_heads = 3", "num_heads"),
            ("max_steps = 10", "max_steps = 0", "max_steps"),
            ("max_steps = 10", "max_steps = 10\nlr = -1.0", "lr"),
            ("task = \"addition\"", "task = \"division\"", "division"),
            ("max_steps = 10", "max_steps = 10\nbogus = 1", "bogus"),
            // These ran out of memory (an abort) or ran for days.
            ("max_steps = 10", "max_steps = 10\nbatch_size = 100000000000", "train.batch_size"),
            ("max_steps = 10", "max_steps = 10\neval_batch_size = 100000000000", "train.eval_batch_size"),
            ("num_heads = 2", "num_heads = 2\nk_max = 100000", "block evaluations per token"),
        ] {
            let err = ArRunConfig::from_toml_str(&MINIMAL.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn the_ladder_matches_parameters_and_block_evaluations() {
        let c = ArRunConfig::from_toml_str(MINIMAL).unwrap();
        let ladder = c.ladder().unwrap();
        let evals: Vec<usize> = ladder.iter().map(|r| r.block_evals_per_token()).collect();
        assert_eq!(evals, vec![2, 24, 24, 24]);
        assert_eq!(ladder[2].model.layers, 2);
        assert_eq!(ladder[1].model.layers, 24);
        assert!(ladder[1].out_dir.ends_with("transformer-deep"));
        assert!(ladder[0].ladder().is_err());
    }
}
