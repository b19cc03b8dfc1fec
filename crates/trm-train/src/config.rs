//! The training configuration (one TOML file): data, architecture, optimisation, evaluation
//! and run settings. [`TrainConfig::validate`] rejects bad values before any work starts,
//! with a message naming the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trm_data::DatasetRecipe;
use trm_model::{LossType, TrmConfig};

use crate::error::TrainError;

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder holding `train/` and `test/` (built there from `recipe` if missing).
    pub dir: PathBuf,
    /// How to build the data when `dir` has none (or holds a different recipe).
    #[serde(default)]
    pub recipe: Option<DatasetRecipe>,
}

/// Dense-weight optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamATan2 as the official code (no epsilon; atan2 instead of division).
    #[default]
    #[serde(alias = "adamatan2", alias = "adam-atan2")]
    AdamAtan2,
    /// Burn's AdamW (epsilon 1e-8 here).
    #[serde(alias = "adamw")]
    AdamW,
}

/// How deep supervision is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActMode {
    /// The official code: a persistent batch of slots, one supervision step per optimizer
    /// step, halted slots refilled from the sampler, exploration.
    #[default]
    Official,
    /// The paper's pseudo-code: up to N_sup supervision steps (each an optimizer step) on one
    /// minibatch, stopping early once every sample's halt logit is positive.
    Paper,
}

/// Which part of the recursion receives gradients (for the ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GradMode {
    /// TRM: back-propagate through the whole last cycle (n + 1 network calls).
    #[default]
    Full,
    /// HRM's 1-step approximation: only the last z update and the y update get gradients.
    OneStep,
}

fn default_ema_rate() -> f64 {
    0.999
}
fn default_true() -> bool {
    true
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_one() -> f64 {
    1.0
}
fn default_keep() -> usize {
    3
}
fn default_eval_batch() -> usize {
    256
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Global batch size (= ACT slots).
    pub global_batch_size: usize,
    /// Optimizer steps to run; if absent, computed from `epochs` the official way.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Epochs (official step budget: epochs x groups x mean examples / batch).
    #[serde(default)]
    pub epochs: Option<u64>,
    /// Base learning rate of the dense weights.
    pub lr: f64,
    /// Cosine floor as a fraction of the base rates (1.0 = constant after warmup).
    #[serde(default = "default_one")]
    pub lr_min_ratio: f64,
    /// Linear warmup steps.
    #[serde(default)]
    pub lr_warmup_steps: u64,
    /// Decoupled weight decay of the dense weights.
    #[serde(default)]
    pub weight_decay: f64,
    /// Adam beta1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam beta2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Dense optimizer.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Sign-SGD learning rate of the puzzle-embedding table.
    #[serde(default)]
    pub puzzle_emb_lr: f64,
    /// Decoupled weight decay of the touched puzzle-embedding rows.
    #[serde(default)]
    pub puzzle_emb_weight_decay: f64,
    /// Keep an exponential moving average of the dense weights (used for eval and export).
    #[serde(default = "default_true")]
    pub ema: bool,
    /// EMA decay.
    #[serde(default = "default_ema_rate")]
    pub ema_rate: f64,
    /// Token loss.
    #[serde(default)]
    pub loss: LossType,
    /// Deep-supervision schedule.
    #[serde(default)]
    pub act: ActMode,
    /// Gradient path (ablation).
    #[serde(default)]
    pub grad: GradMode,
}

/// Evaluation, checkpoint and stopping settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Evaluate every this many optimizer steps (and at the end).
    pub eval_interval: u64,
    /// Also checkpoint every this many steps (0 = only at evaluations).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Evaluation batch size.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// Evaluate on at most this many test examples (all if absent).
    #[serde(default)]
    pub eval_max_examples: Option<usize>,
    /// Stop once an evaluation reaches this exact accuracy.
    #[serde(default)]
    pub target_exact_accuracy: Option<f64>,
    /// Stop (after a final evaluation) once training has run this long.
    #[serde(default)]
    pub time_limit_minutes: Option<f64>,
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (informational).
    #[serde(default)]
    pub name: String,
    /// Run folder: checkpoints, metrics.jsonl, plots.
    pub out_dir: PathBuf,
    /// Seed of the model init, the sampler and the halting exploration.
    #[serde(default)]
    pub seed: u64,
    /// Data.
    pub data: DataConfig,
    /// Architecture: a [`TrmConfig`] table; `vocab_size`, `seq_len` and
    /// `num_puzzle_identifiers` may be omitted (taken from the dataset).
    pub arch: toml::Table,
    /// Optimisation.
    pub train: OptimConfig,
    /// Evaluation and checkpoints.
    pub run: RunSettings,
}

impl TrainConfig {
    /// Parses a TOML config; relative paths are kept as written.
    pub fn from_toml_str(text: &str) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// The model config with the dataset's sizes filled in where the file left them out.
    pub fn model_config(
        &self,
        vocab_size: usize,
        seq_len: usize,
        num_puzzle_identifiers: usize,
    ) -> Result<TrmConfig, TrainError> {
        let mut arch = self.arch.clone();
        arch.entry("vocab_size").or_insert(toml::Value::Integer(vocab_size as i64));
        arch.entry("seq_len").or_insert(toml::Value::Integer(seq_len as i64));
        arch.entry("num_puzzle_identifiers").or_insert(toml::Value::Integer(num_puzzle_identifiers as i64));
        let cfg: TrmConfig = arch.try_into().map_err(|e: toml::de::Error| TrainError::Config(format!("arch: {e}")))?;
        cfg.validate().map_err(|e| TrainError::Config(format!("arch: {e}")))?;
        if cfg.vocab_size != vocab_size || cfg.seq_len != seq_len {
            return Err(TrainError::Config(format!(
                "arch: vocab_size/seq_len ({}, {}) disagree with the dataset ({vocab_size}, {seq_len})",
                cfg.vocab_size, cfg.seq_len
            )));
        }
        if cfg.puzzle_emb_ndim > 0 && cfg.num_puzzle_identifiers < num_puzzle_identifiers {
            return Err(TrainError::Config(format!(
                "arch.num_puzzle_identifiers: {} is smaller than the dataset's {num_puzzle_identifiers}",
                cfg.num_puzzle_identifiers
            )));
        }
        Ok(cfg)
    }

    /// Checks every training field (the architecture is checked against the dataset by
    /// [`TrainConfig::model_config`]). The error names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, why: String| Err(TrainError::Config(format!("{field}: {why}")));
        let t = &self.train;
        let pos = |x: f64| x.is_finite() && x > 0.0;
        let nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if t.global_batch_size == 0 {
            return bad("train.global_batch_size", "must be positive".into());
        }
        match (t.max_steps, t.epochs) {
            (None, None) => return bad("train.max_steps", "give train.max_steps or train.epochs".into()),
            (Some(0), _) => return bad("train.max_steps", "must be positive".into()),
            (_, Some(0)) => return bad("train.epochs", "must be positive".into()),
            _ => {}
        }
        if !pos(t.lr) {
            return bad("train.lr", format!("must be a positive number, got {}", t.lr));
        }
        if !(nonneg(t.lr_min_ratio) && t.lr_min_ratio <= 1.0) {
            return bad("train.lr_min_ratio", format!("must be in [0, 1], got {}", t.lr_min_ratio));
        }
        if !nonneg(t.weight_decay) {
            return bad("train.weight_decay", format!("must be >= 0, got {}", t.weight_decay));
        }
        if !(0.0..1.0).contains(&t.beta1) {
            return bad("train.beta1", format!("must be in [0, 1), got {}", t.beta1));
        }
        if !(0.0..1.0).contains(&t.beta2) {
            return bad("train.beta2", format!("must be in [0, 1), got {}", t.beta2));
        }
        if !nonneg(t.puzzle_emb_lr) {
            return bad("train.puzzle_emb_lr", format!("must be >= 0, got {}", t.puzzle_emb_lr));
        }
        if !nonneg(t.puzzle_emb_weight_decay) {
            return bad("train.puzzle_emb_weight_decay", format!("must be >= 0, got {}", t.puzzle_emb_weight_decay));
        }
        if !(0.0..1.0).contains(&t.ema_rate) {
            return bad("train.ema_rate", format!("must be in [0, 1), got {}", t.ema_rate));
        }
        let r = &self.run;
        if r.eval_interval == 0 {
            return bad("run.eval_interval", "must be positive".into());
        }
        if r.keep_last == 0 {
            return bad("run.keep_last", "must be at least 1".into());
        }
        if r.eval_max_examples == Some(0) {
            return bad("run.eval_max_examples", "must be positive (leave it out to evaluate every example)".into());
        }
        if r.eval_batch_size == 0 {
            return bad("run.eval_batch_size", "must be positive".into());
        }
        if let Some(a) = r.target_exact_accuracy {
            if !(0.0..=1.0).contains(&a) {
                return bad("run.target_exact_accuracy", format!("must be in [0, 1], got {a}"));
            }
        }
        if let Some(m) = r.time_limit_minutes {
            if !pos(m) {
                return bad("run.time_limit_minutes", format!("must be positive, got {m}"));
            }
        }
        if self.data.dir.as_os_str().is_empty() {
            return bad("data.dir", "must not be empty".into());
        }
        // The architecture table must at least parse (sizes from the dataset filled with 1).
        let mut arch = self.arch.clone();
        for k in ["vocab_size", "seq_len", "num_puzzle_identifiers"] {
            arch.entry(k).or_insert(toml::Value::Integer(1));
        }
        let cfg: TrmConfig = arch.try_into().map_err(|e: toml::de::Error| TrainError::Config(format!("arch: {e}")))?;
        cfg.validate().map_err(|e| TrainError::Config(format!("arch: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SMALL: &str = r#"
out_dir = "runs/x"
[data]
dir = "data/x"
[data.recipe]
kind = "sudoku"
size = 4
train = 10
test = 5
[arch]
hidden_size = 16
num_heads = 2
expansion = 2.0
t_cycles = 2
n_cycles = 1
n_sup = 2
mlp_t = true
pos_encodings = "none"
puzzle_emb_len = 0
[train]
global_batch_size = 4
max_steps = 3
lr = 1e-3
[run]
eval_interval = 2
"#;

    #[test]
    fn parses_and_fills_dataset_sizes() {
        let c = TrainConfig::from_toml_str(SMALL).unwrap();
        c.validate().unwrap();
        let m = c.model_config(6, 16, 1).unwrap();
        assert_eq!((m.vocab_size, m.seq_len, m.hidden_size), (6, 16, 16));
        assert_eq!(c.train.optimizer, OptimizerKind::AdamAtan2);
        assert_eq!(c.train.ema_rate, 0.999);
        assert_eq!(c.train.act, ActMode::Official);
    }

    #[test]
    fn errors_name_the_field() {
        let c = TrainConfig::from_toml_str(&SMALL.replace("lr = 1e-3", "lr = -1.0")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("train.lr"));
        let c = TrainConfig::from_toml_str(&SMALL.replace("eval_interval = 2", "eval_interval = 0")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("run.eval_interval"));
        let c = TrainConfig::from_toml_str(&SMALL.replace("t_cycles = 2", "t_cycles = 0")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("t_cycles"));
        let c = TrainConfig::from_toml_str(&SMALL.replace("max_steps = 3", "")).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("max_steps"));
        let e = TrainConfig::from_toml_str(&SMALL.replace("[run]", "[run]\nbogus = 1")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let c = TrainConfig::from_toml_str(SMALL).unwrap();
        assert!(c.model_config(7, 16, 1).is_ok());
        let mut c2 = c.clone();
        c2.arch.insert("seq_len".into(), toml::Value::Integer(81));
        assert!(c2.model_config(6, 16, 1).unwrap_err().to_string().contains("seq_len"));
    }

    #[test]
    fn a_bad_config_file_is_named_once_with_the_problem() {
        let dir = std::env::temp_dir().join(format!("trm-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "name = \"x\"\n[arch\n").unwrap();
        let message = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert_eq!(message.matches("invalid training config").count(), 1, "{message}");
        assert!(message.contains("bad.toml") && message.contains("line 2"), "{message}");
        let missing = TrainConfig::from_file(&dir.join("missing.toml")).unwrap_err().to_string();
        assert!(missing.contains("missing.toml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
