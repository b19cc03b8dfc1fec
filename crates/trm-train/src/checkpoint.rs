//! Run checkpoints: `RUN_DIR/checkpoints/step-NNNNNNNN/` holds
//! - `model.safetensors`: the exported model (EMA weights + live puzzle table, config in the
//!   metadata), loadable by `trm eval`/`trm solve` and [`trm_model::load_model`];
//! - `raw.bin`, `ema.bin`, `optim.bin`: raw weights, EMA shadow and optimizer state (Burn
//!   records, parameter ids included);
//! - `state.safetensors`: the live puzzle table and the ACT carry (y, z);
//! - `state.json`: step, RNG position, sampler state, the carry's step counts and data.
//!
//! A checkpoint is written into a temporary folder (every file synced), then renamed, and
//! `checkpoints/latest` is replaced atomically; the last `keep_last` are kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use trm_data::{PuzzleDataset, SamplerState, TrainSampler};
use trm_model::checkpoint::{read_tensors, write_atomic, write_safetensors};
use trm_model::{ActCarry, Carry, HostBatch, TrmConfig};

use crate::config::{OptimizerKind, TrainConfig};
use crate::engine::Trainer;
use crate::error::TrainError;
use crate::optim::{module_from_bytes, module_to_bytes, seal, unseal};

/// `raw.bin`, `ema.bin` and `optim.bin` are sealed under this magic (length and hash first).
const RECORD_MAGIC: &[u8; 8] = b"TRMREC\x00\x01";

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Step budget.
    pub total_steps: u64,
    /// Seed of the halting RNG.
    pub rng_seed: u64,
    /// Its position (32-bit words consumed).
    pub rng_word_pos: u128,
    /// The sampler.
    pub sampler: SamplerState,
    /// The last learning rate.
    pub last_lr: f64,
    /// The ACT carry's host part (official mode), if a step has run.
    pub carry: Option<CarryHost>,
    /// The model config the weights were written with (absent in older checkpoints; then
    /// the one in `model.safetensors` is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_config: Option<TrmConfig>,
    /// The dense optimizer the state in `optim.bin` belongs to (absent in older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,
}

/// Host part of the ACT carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarryHost {
    /// Steps per slot.
    pub steps: Vec<usize>,
    /// Halted flags.
    pub halted: Vec<bool>,
    /// Slot inputs.
    pub inputs: Vec<i32>,
    /// Slot labels.
    pub labels: Vec<i32>,
    /// Slot puzzle ids.
    pub puzzle_identifiers: Vec<i32>,
    /// Slots.
    pub batch_size: usize,
    /// Tokens per slot.
    pub seq_len: usize,
}

/// The folder of checkpoints in a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic(path, bytes).map_err(TrainError::from)
}

pub(crate) fn halting_seed(seed: u64) -> u64 {
    seed ^ 0x5eed_4a17
}

/// Writes a checkpoint of `trainer` into `run_dir`; returns its folder.
pub fn save_checkpoint<B: AutodiffBackend>(trainer: &Trainer<B>, run_dir: &Path) -> Result<PathBuf, TrainError> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let name = format!("step-{:08}", trainer.step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;

    trainer.eval_model().save(&tmp.join("model.safetensors"))?;
    write(&tmp.join("raw.bin"), &seal(RECORD_MAGIC, &module_to_bytes::<B, _>(trainer.model.clone())?))?;
    if let Some(ema) = &trainer.ema {
        write(&tmp.join("ema.bin"), &seal(RECORD_MAGIC, &module_to_bytes::<B::InnerBackend, _>(ema.clone())?))?;
    }
    write(&tmp.join("optim.bin"), &seal(RECORD_MAGIC, &trainer.opt.to_bytes()?))?;

    let mut tensors = BTreeMap::new();
    if let Some(t) = &trainer.model.puzzle_emb {
        tensors.insert("puzzle_emb".to_string(), t.clone().inner().into_data());
    }
    let carry = trainer.carry.as_ref().map(|c| {
        tensors.insert("carry.y".to_string(), c.state.y.clone().into_data());
        tensors.insert("carry.z".to_string(), c.state.z.clone().into_data());
        CarryHost {
            steps: c.steps.clone(),
            halted: c.halted.clone(),
            inputs: c.data.inputs.clone(),
            labels: c.data.labels.clone(),
            puzzle_identifiers: c.data.puzzle_identifiers.clone(),
            batch_size: c.data.batch_size,
            seq_len: c.data.seq_len,
        }
    });
    write_safetensors(&tmp.join("state.safetensors"), &tensors, HashMap::new())?;
    let state = CheckpointState {
        step: trainer.step,
        total_steps: trainer.total_steps,
        rng_seed: halting_seed(trainer.cfg.seed),
        rng_word_pos: trainer.rng.get_word_pos(),
        sampler: trainer.sampler.state(),
        last_lr: trainer.last_lr,
        carry,
        model_config: Some(trainer.model_cfg.clone()),
        optimizer: Some(trainer.cfg.train.optimizer),
    };
    let json = serde_json::to_vec_pretty(&state).expect("state serialises");
    write(&tmp.join("state.json"), &json)?;

    let dest = root.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| TrainError::io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    if let Ok(dir) = std::fs::File::open(&root) {
        let _ = dir.sync_all();
    }
    write(&root.join("latest"), name.as_bytes())?;
    prune(&root, trainer.cfg.run.keep_last)?;
    Ok(dest)
}

/// Checkpoint folders in step order.
pub fn list_checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let root = checkpoints_dir(run_dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn prune(root: &Path, keep: usize) -> Result<(), TrainError> {
    let all = list_checkpoints(root.parent().unwrap_or(root));
    if all.len() > keep {
        for old in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
        }
    }
    Ok(())
}

/// The latest checkpoint of a run.
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf, TrainError> {
    let root = checkpoints_dir(run_dir);
    // `latest` names one folder in `checkpoints/`; anything else (empty, a path) is ignored.
    let named = std::fs::read_to_string(root.join("latest"))
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("step-") && !n.contains(['/', '\\']))
        .map(|n| root.join(n));
    match named.filter(|p| p.is_dir()).or_else(|| list_checkpoints(run_dir).pop()) {
        Some(p) => Ok(p),
        None => Err(TrainError::checkpoint(run_dir, "no checkpoint in this run folder")),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Rebuilds a trainer from checkpoint folder `ckpt` with the run's config and training data.
///
/// The step budget is the config's (`train.max_steps`, or `train.epochs` over the data), so
/// editing it before a resume lengthens or shortens the run, and the LR schedule follows the
/// new budget from the checkpoint's step on; a budget below that step is an error.
pub fn load_trainer<B: AutodiffBackend>(
    cfg: TrainConfig,
    train: Arc<PuzzleDataset>,
    ckpt: &Path,
    device: B::Device,
) -> Result<Trainer<B>, TrainError> {
    load_trainer_and_budget(cfg, train, ckpt, device).map(|(t, _)| t)
}

/// [`load_trainer`], plus the step budget the checkpoint was written with.
pub(crate) fn load_trainer_and_budget<B: AutodiffBackend>(
    cfg: TrainConfig,
    train: Arc<PuzzleDataset>,
    ckpt: &Path,
    device: B::Device,
) -> Result<(Trainer<B>, u64), TrainError> {
    let mut t = Trainer::<B>::new(cfg, train.clone(), device.clone())?;
    let state: CheckpointState = serde_json::from_slice(&read(&ckpt.join("state.json"))?)
        .map_err(|e| TrainError::checkpoint(ckpt.join("state.json"), e.to_string()))?;
    check_state(&state, &t, ckpt).map_err(|p| TrainError::checkpoint(ckpt.join("state.json"), p))?;
    // The weights must come from the same architecture: Burn loads a record of another shape
    // silently (or panics on another layer count).
    let written = match &state.model_config {
        Some(c) => Some(c.clone()),
        None => trm_model::checkpoint::read_model_config(&ckpt.join("model.safetensors")).ok(),
    };
    if let Some(written) = written {
        let diff = config_differences(&written, &t.model_cfg);
        if !diff.is_empty() {
            return Err(TrainError::checkpoint(
                ckpt,
                format!(
                    "written by a model with another architecture than the run's config now gives: {}",
                    diff.join(", ")
                ),
            ));
        }
    }
    if let Some(kind) = state.optimizer.filter(|&k| k != t.cfg.train.optimizer) {
        return Err(TrainError::checkpoint(
            ckpt,
            format!("its optimizer state is for {kind:?}, but the run's config says {:?}", t.cfg.train.optimizer),
        ));
    }
    let tensors = read_tensors(&ckpt.join("state.safetensors"))?;
    let expect_shape = |k: &str, data: &TensorData, want: &[usize]| -> Result<(), TrainError> {
        if data.shape.as_slice() == want {
            Ok(())
        } else {
            Err(TrainError::checkpoint(
                ckpt.join("state.safetensors"),
                format!("`{k}` has shape {:?}, this run needs {want:?} (damaged, or from another config)", data.shape),
            ))
        }
    };
    let take = |k: &str| -> Result<TensorData, TrainError> {
        tensors
            .get(k)
            .cloned()
            .ok_or_else(|| TrainError::checkpoint(ckpt.join("state.safetensors"), format!("missing `{k}`")))
    };
    // Each record file: its sealed payload (or the whole file, for checkpoints written before
    // records were sealed), an error naming the file when it is damaged or does not decode.
    let record = |file: &str| -> Result<(PathBuf, Vec<u8>), TrainError> {
        let path = ckpt.join(file);
        let bytes = read(&path)?;
        let payload = match unseal(RECORD_MAGIC, &bytes).map_err(|p| TrainError::checkpoint(&path, p))? {
            Some(payload) => payload.to_vec(),
            None => bytes,
        };
        Ok((path, payload))
    };
    let at = |path: PathBuf| {
        move |e: TrainError| match e {
            TrainError::Checkpoint { problem, .. } => TrainError::checkpoint(path, problem),
            other => other,
        }
    };
    // Loaded into the autodiff model so the parameters keep requiring gradients.
    let (path, bytes) = record("raw.bin")?;
    let mut model = module_from_bytes::<B, _>(t.model.clone(), &bytes, &device).map_err(at(path))?;
    if let Some(table) = &model.puzzle_emb {
        let data = take("puzzle_emb")?;
        expect_shape("puzzle_emb", &data, &table.dims())?;
        model.puzzle_emb = Some(Tensor::from_data(data, &device));
    }
    t.model = model;
    if t.ema.is_some() {
        let ema = t.model.valid();
        let (path, bytes) = record("ema.bin")?;
        t.ema = Some(module_from_bytes::<B::InnerBackend, _>(ema, &bytes, &device).map_err(at(path))?);
    }
    let opt = std::mem::replace(&mut t.opt, crate::optim::DenseOptimizer::new(&t.cfg.train));
    let (path, bytes) = record("optim.bin")?;
    t.opt = opt.load_bytes(&bytes, &device).map_err(at(path))?;
    if t.total_steps < state.step {
        return Err(TrainError::checkpoint(
            ckpt,
            format!(
                "it is at step {}, past the run's budget of {} steps (train.max_steps or train.epochs in the \
                 config); raise the budget, or start the run afresh",
                state.step, t.total_steps
            ),
        ));
    }
    t.step = state.step;
    t.last_lr = state.last_lr;
    let mut rng = ChaCha8Rng::seed_from_u64(state.rng_seed);
    rng.set_word_pos(state.rng_word_pos);
    t.rng = rng;
    t.sampler = TrainSampler::from_state(train, state.sampler)?;
    t.carry = match state.carry {
        Some(c) => Some(ActCarry {
            state: {
                let want = t.model.initial_carry(c.batch_size).y.dims();
                let (y, z) = (take("carry.y")?, take("carry.z")?);
                expect_shape("carry.y", &y, &want)?;
                expect_shape("carry.z", &z, &want)?;
                Carry { y: Tensor::from_data(y, &device), z: Tensor::from_data(z, &device) }
            },
            steps: c.steps,
            halted: c.halted,
            data: HostBatch {
                inputs: c.inputs,
                labels: c.labels,
                puzzle_identifiers: c.puzzle_identifiers,
                batch_size: c.batch_size,
                seq_len: c.seq_len,
            },
        }),
        None => None,
    };
    Ok((t, state.total_steps))
}

/// Checks `state.json` against the run it is loaded into: a damaged or foreign state would
/// otherwise index out of bounds when training resumes.
fn check_state<B: AutodiffBackend>(state: &CheckpointState, t: &Trainer<B>, ckpt: &Path) -> Result<(), String> {
    let dir_step = ckpt
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(d) = dir_step.filter(|&d| d != state.step) {
        return Err(format!("step {} disagrees with the folder name (step {d})", state.step));
    }
    if state.total_steps == 0 || state.step > state.total_steps {
        return Err(format!("step {} of a budget of {} steps is impossible", state.step, state.total_steps));
    }
    let batch = t.cfg.train.global_batch_size;
    if state.sampler.config.global_batch_size != batch {
        return Err(format!(
            "written with global_batch_size {}, but the run's config says {batch}",
            state.sampler.config.global_batch_size
        ));
    }
    let Some(c) = &state.carry else { return Ok(()) };
    let m = &t.model_cfg;
    let (b, l) = (c.batch_size, c.seq_len);
    if b != batch || l != m.seq_len {
        return Err(format!("the carry holds {b} rows of {l} tokens; this run needs {batch} of {}", m.seq_len));
    }
    let lens = [c.steps.len(), c.halted.len(), c.puzzle_identifiers.len(), c.inputs.len(), c.labels.len()];
    if lens != [b, b, b, b * l, b * l] {
        return Err(format!(
            "the carry's arrays have lengths {lens:?} (steps, halted, puzzle_identifiers, inputs, labels); \
             {b} rows of {l} tokens need {:?}",
            [b, b, b, b * l, b * l]
        ));
    }
    let vocab = m.vocab_size as i32;
    if let Some(s) = c.steps.iter().find(|&&s| s > m.n_sup) {
        return Err(format!("the carry has a slot at supervision step {s}, past N_sup = {}", m.n_sup));
    }
    if let Some(x) = c.inputs.iter().find(|&&x| !(0..vocab).contains(&x)) {
        return Err(format!("the carry holds input token {x}, outside the vocabulary 0..{vocab}"));
    }
    if let Some(x) = c.labels.iter().find(|&&x| x != trm_data::IGNORE_LABEL_ID && !(0..vocab).contains(&x)) {
        return Err(format!("the carry holds label {x}, outside the vocabulary 0..{vocab}"));
    }
    let ids = m.num_puzzle_identifiers as i32;
    if let Some(x) = c.puzzle_identifiers.iter().find(|&&x| m.puzzle_emb_ndim > 0 && !(0..ids).contains(&x)) {
        return Err(format!("the carry holds puzzle identifier {x}, outside 0..{ids}"));
    }
    Ok(())
}

/// `field: checkpoint value -> config value` for each field where two model configs differ.
fn config_differences(written: &TrmConfig, now: &TrmConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(written), serde_json::to_value(now))
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {v} (config: {})", b.get(k).map_or("none".to_string(), |x| x.to_string())))
        .collect()
}
