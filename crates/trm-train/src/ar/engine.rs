//! The AR training loop: fresh samples every step, AdamATan2 with warmup + cosine, EMA,
//! periodic evaluation on the in-distribution and the long test, a JSONL metrics log, and
//! the final (EMA) weights written atomically with the config and the results.
//!
//! AR-TRM steps: [`ar_train_losses`] runs K_max refinement steps of all positions in
//! parallel (teacher forcing consistent with decoding), each supervised (deep supervision),
//! the first T-1 cycles of each without gradients on the inner backend; the K_max step
//! losses are averaged into one optimizer step (the graphs of different steps are disjoint,
//! since the state is detached between them). Baselines: one causal forward, token CE.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use serde::Serialize;
use trm_data::ar_tasks::{ArSample, Split};
use trm_model::ar::{ar_train_losses, scored_lm_loss, ArBaseline, ArTrm, StepPolicy};

use super::config::{ArModelKind, ArRunConfig, CommitPolicy};
use super::eval::{evaluate_ar, int_tensor, padded_batch, ArEvalResult, ArPredict};
use crate::ema::ema_update;
use crate::error::TrainError;
use crate::optim::{lr_factor, module_from_bytes, module_to_bytes, seal, unseal, AdamAtan2};

/// A trainable AR model: its loss on a teacher-forced batch.
pub trait ArLearner<B: AutodiffBackend>: AutodiffModule<B> + Clone {
    /// The loss (with gradients) and (answer tokens right, answer tokens) at the last step.
    fn loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        labels: Tensor<B, 2, Int>,
        cfg: &ArRunConfig,
    ) -> (Tensor<B, 1>, usize, usize);
}

impl<B: AutodiffBackend> ArLearner<B> for ArTrm<B> {
    fn loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        labels: Tensor<B, 2, Int>,
        cfg: &ArRunConfig,
    ) -> (Tensor<B, 1>, usize, usize) {
        let k = self.config().k_max;
        let policy = match cfg.train.commit_policy {
            CommitPolicy::Halting => StepPolicy::Halting { max: k },
            CommitPolicy::Fixed => StepPolicy::Fixed(k),
        };
        let losses = ar_train_losses(self, &self.valid(), inputs, labels, k, policy);
        let (correct, scored) = losses.last().map_or((0, 0), |l| (l.correct, l.scored));
        let total = losses.into_iter().map(|l| l.total).reduce(|a, b| a + b).expect("k_max >= 1");
        (total.div_scalar(k as f64), correct, scored)
    }
}

impl<B: AutodiffBackend> ArLearner<B> for ArBaseline<B> {
    fn loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        labels: Tensor<B, 2, Int>,
        _: &ArRunConfig,
    ) -> (Tensor<B, 1>, usize, usize) {
        let s = scored_lm_loss(self.forward(inputs), labels);
        (s.lm, s.correct, s.scored)
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line<'a> {
    Train { step: u64, time_s: f64, lr: f64, loss: f64, token_accuracy: f64 },
    Eval { step: u64, time_s: f64, results: &'a [ArEvalResult] },
}

/// What an AR run produced (also written to `results.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ArRunOutcome {
    /// Run name.
    pub name: String,
    /// ar_trm, transformer or looped.
    pub kind: ArModelKind,
    /// Trainable parameters.
    pub params: usize,
    /// Block evaluations per token at full depth.
    pub block_evals_per_token: usize,
    /// KV bytes per committed token (4-byte floats).
    pub kv_bytes_per_token: usize,
    /// Optimizer steps done.
    pub steps: u64,
    /// Training seconds (evaluations excluded).
    pub train_seconds: f64,
    /// The final evaluation: each mode on test and test_long.
    pub results: Vec<ArEvalResult>,
}

/// Trains the model `cfg` describes; `on_message` receives progress lines.
pub fn train_ar<B: AutodiffBackend>(
    cfg: &ArRunConfig,
    device: &B::Device,
    on_message: &mut dyn FnMut(&str),
) -> Result<ArRunOutcome, TrainError> {
    cfg.validate()?;
    match cfg.model.kind {
        ArModelKind::ArTrm => {
            let m = cfg.ar_trm_config();
            let kv = m.kv_bytes_per_token();
            run_loop(m.init_seeded::<B>(device, cfg.seed), kv, cfg, device, on_message)
        }
        _ => {
            let m = cfg.baseline_config();
            let kv = m.kv_bytes_per_token();
            run_loop(m.init_seeded::<B>(device, cfg.seed), kv, cfg, device, on_message)
        }
    }
}

fn tensors<B: Backend>(samples: &[ArSample], device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let (len, inputs, labels) = padded_batch(samples);
    let t = |v: Vec<i64>| int_tensor(v, samples.len(), len, device);
    (t(inputs), t(labels))
}

fn run_loop<B, M>(
    mut model: M,
    kv_bytes_per_token: usize,
    cfg: &ArRunConfig,
    device: &B::Device,
    on_message: &mut dyn FnMut(&str),
) -> Result<ArRunOutcome, TrainError>
where
    B: AutodiffBackend,
    M: ArLearner<B>,
    M::InnerModule: ArPredict<B::InnerBackend>,
{
    let dir = &cfg.out_dir;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    trm_model::checkpoint::write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    let log_path = dir.join("metrics.jsonl");
    let mut log = std::fs::File::create(&log_path).map_err(|e| TrainError::io(&log_path, e))?;
    let mut write_line = |line: &Line| -> Result<(), TrainError> {
        let text = serde_json::to_string(line).expect("metrics serialise");
        writeln!(log, "{text}").map_err(|e| TrainError::io(&log_path, e))
    };
    let tasks = cfg.task.task_config();
    let test = tasks.split(Split::Test, cfg.task.test_samples, cfg.seed);
    let long = tasks.split(Split::TestLong, cfg.task.long_samples, cfg.seed);
    let tr = &cfg.train;
    let mut optim = OptimizerAdaptor::<AdamAtan2, M, B>::from(AdamAtan2 {
        beta1: tr.beta1,
        beta2: tr.beta2,
        weight_decay: tr.weight_decay,
    });
    let mut ema = tr.ema.then(|| model.valid());
    let params = model.num_params();
    let evaluate = |ema: &Option<M::InnerModule>, model: &M| -> Vec<ArEvalResult> {
        let owned;
        let m = match ema {
            Some(e) => e,
            None => {
                owned = model.valid();
                &owned
            }
        };
        let mut r = evaluate_ar(m, &test, "test", tr.eval_batch_size, device);
        r.extend(evaluate_ar(m, &long, "test_long", tr.eval_batch_size, device));
        r
    };
    on_message(&format!(
        "{}: {:?}, {params} parameters, {} block evaluations per token, {} steps of {} sequences",
        cfg.name,
        cfg.model.kind,
        cfg.block_evals_per_token(),
        tr.max_steps,
        tr.batch_size
    ));
    let start = Instant::now();
    let mut eval_seconds = 0.0;
    let mut step = 0u64;
    let (mut loss_sum, mut right, mut scored, mut since) = (0.0, 0usize, 0usize, 0u64);
    let time_limit = tr.time_limit_minutes.map(|m| m * 60.0);
    while step < tr.max_steps {
        if time_limit.is_some_and(|l| start.elapsed().as_secs_f64() - eval_seconds > l) {
            on_message(&format!("time limit reached at step {step}"));
            break;
        }
        // A fresh, deterministic batch per step: seed stream 0 of a per-step seed.
        let seed = cfg.seed.wrapping_mul(0x9e37_79b9).wrapping_add(step + 1);
        let samples = tasks.split(Split::Train, tr.batch_size, seed);
        let (inputs, labels) = tensors::<B>(&samples, device);
        let (loss, c, s) = model.loss(inputs, labels, cfg);
        let value = loss.clone().into_scalar().elem::<f64>();
        if !value.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, value });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        step += 1;
        let lr = tr.lr * lr_factor(step, tr.lr_warmup_steps, tr.max_steps, tr.lr_min_ratio);
        model = optim.step(lr, model, grads);
        if let Some(shadow) = ema.take() {
            ema = Some(ema_update(shadow, &model.valid(), tr.ema_rate));
        }
        (loss_sum, right, scored, since) = (loss_sum + value, right + c, scored + s, since + 1);
        if step.is_multiple_of(50) || step == tr.max_steps {
            let time_s = start.elapsed().as_secs_f64();
            let (l, acc) = (loss_sum / since as f64, right as f64 / scored.max(1) as f64);
            write_line(&Line::Train { step, time_s, lr, loss: l, token_accuracy: acc })?;
            on_message(&format!("step {step:>6}  {time_s:>6.0}s  loss {l:.4}  token acc {acc:.3}"));
            (loss_sum, right, scored, since) = (0.0, 0, 0, 0);
        }
        if tr.eval_interval > 0 && step.is_multiple_of(tr.eval_interval) && step < tr.max_steps {
            let t0 = Instant::now();
            let results = evaluate(&ema, &model);
            eval_seconds += t0.elapsed().as_secs_f64();
            write_line(&Line::Eval { step, time_s: start.elapsed().as_secs_f64(), results: &results })?;
            on_message(&summary(&results));
        }
    }
    let train_seconds = start.elapsed().as_secs_f64() - eval_seconds;
    let results = evaluate(&ema, &model);
    write_line(&Line::Eval { step, time_s: start.elapsed().as_secs_f64(), results: &results })?;
    on_message(&summary(&results));
    let final_model = ema.unwrap_or_else(|| model.valid());
    let bytes = seal(MAGIC, &module_to_bytes::<B::InnerBackend, _>(final_model)?);
    trm_model::checkpoint::write_atomic(&dir.join("model.bin"), &bytes)?;
    let outcome = ArRunOutcome {
        name: cfg.name.clone(),
        kind: cfg.model.kind,
        params,
        block_evals_per_token: cfg.block_evals_per_token(),
        kv_bytes_per_token,
        steps: step,
        train_seconds,
        results,
    };
    let json = serde_json::to_string_pretty(&outcome).expect("results serialise");
    trm_model::checkpoint::write_atomic(&dir.join("results.json"), json.as_bytes())?;
    Ok(outcome)
}

/// One line per result: split, mode, exact and token accuracy, steps.
pub fn summary(results: &[ArEvalResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "  {:<9} {:<8} exact {:.3}  token {:.3}  steps {:.2} (max {})",
                r.split, r.mode, r.exact_accuracy, r.token_accuracy, r.mean_steps, r.max_steps
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `model.bin` is sealed ([`seal`]: length and hash before the Burn record) under this magic.
const MAGIC: &[u8; 8] = b"TRMAR\x00\x00\x01";

/// Loads a trained AR-TRM run (`config.toml` and `model.bin` in `run_dir`) for decoding.
pub fn load_ar_trm<B: Backend>(run_dir: &Path, device: &B::Device) -> Result<(ArRunConfig, ArTrm<B>), TrainError> {
    // A `trm train` run folder has a config.toml too, which would fail to parse as an AR
    // config with an error about some field; say what the folder is instead.
    if !run_dir.join("model.bin").is_file() {
        let problem = if crate::latest_checkpoint(run_dir).is_ok() {
            "a `trm train` run folder (a TRM; `trm solve` and `trm eval` take it), not a `trm train-ar` run".to_string()
        } else {
            "no model.bin: not a `trm train-ar` run folder".to_string()
        };
        return Err(TrainError::checkpoint(run_dir, problem));
    }
    let cfg = ArRunConfig::from_file(&run_dir.join("config.toml"))?;
    if cfg.model.kind != ArModelKind::ArTrm {
        return Err(TrainError::checkpoint(
            run_dir,
            format!("this run trained a {:?} baseline; decoding with halting needs an ar_trm run", cfg.model.kind),
        ));
    }
    let path: PathBuf = run_dir.join("model.bin");
    let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let payload = unseal(MAGIC, &bytes)
        .and_then(|p| p.ok_or_else(|| "not an AR model file (bad header)".to_string()))
        .map_err(|problem| TrainError::checkpoint(&path, problem))?;
    let model = module_from_bytes(cfg.ar_trm_config().init_seeded::<B>(device, cfg.seed), payload, device)
        .map_err(|e| TrainError::checkpoint(&path, format!("not a model of this run's config: {e}")))?;
    Ok((cfg, model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    type B = Autodiff<NdArray<f32>>;

    fn cfg(kind: &str, dir: &Path, steps: u64) -> ArRunConfig {
        ArRunConfig::from_toml_str(&format!(
            r#"
name = "t"
out_dir = "{}"
[task]
task = "sort"
train_sizes = [2, 3]
long_sizes = [4, 4]
test_samples = 40
long_samples = 20
[model]
kind = "{kind}"
hidden_size = 32
num_heads = 2
k_max = 2
loops = 2
kv_source = "embedding"
[train]
batch_size = 32
max_steps = {steps}
lr = 3e-3
lr_warmup_steps = 5
eval_batch_size = 64
"#,
            dir.display()
        ))
        .unwrap()
    }

    /// Every model kind learns something in a few steps (token accuracy of sorting 2-3
    /// digits well above chance), writes its files, and an AR-TRM run reloads to the same
    /// predictions.
    #[test]
    fn each_kind_trains_writes_its_run_and_reloads() {
        let tmp = std::env::temp_dir().join(format!("trm-ar-engine-{}", std::process::id()));
        for kind in ["ar_trm", "transformer", "looped"] {
            let dir = tmp.join(kind);
            let c = cfg(kind, &dir, 120);
            let out = train_ar::<B>(&c, &Default::default(), &mut |_| {}).unwrap();
            let test = out.results.iter().find(|r| r.split == "test" && r.mode == "fixed").unwrap();
            // Chance is 1/14 per token; copying sorted digits is learnable in 120 steps.
            assert!(test.token_accuracy > 0.4, "{kind}: {}", test.token_accuracy);
            for f in ["config.toml", "metrics.jsonl", "model.bin", "results.json"] {
                assert!(dir.join(f).exists(), "{kind}: {f}");
            }
            if kind == "ar_trm" {
                assert_eq!(out.results.len(), 4);
                let (_, model) = load_ar_trm::<NdArray<f32>>(&dir, &Default::default()).unwrap();
                let samples = c.task.task_config().split(Split::Test, 40, c.seed);
                let again = evaluate_ar(&model, &samples, "test", 64, &Default::default());
                assert_eq!(again[0], out.results[0]);
            } else {
                assert!(load_ar_trm::<NdArray<f32>>(&dir, &Default::default()).is_err());
            }
        }
        std::fs::remove_dir_all(&tmp).ok();
    }

    #[test]
    fn a_folder_that_is_no_ar_run_says_what_it_is() {
        let tmp = std::env::temp_dir().join(format!("trm-ar-notrun-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let err = load_ar_trm::<NdArray<f32>>(&tmp, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("no model.bin: not a `trm train-ar` run folder"), "{err}");
        // A `trm train` run: its config.toml is no AR config (it used to fail on that TOML).
        std::fs::write(tmp.join("config.toml"), "out_dir = \"x\"\n[data]\ndir = \"d\"\n").unwrap();
        std::fs::create_dir_all(tmp.join("checkpoints/step-00000003")).unwrap();
        let err = load_ar_trm::<NdArray<f32>>(&tmp, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("a `trm train` run folder (a TRM"), "{err}");
        std::fs::remove_dir_all(&tmp).ok();
    }

    #[test]
    fn a_truncated_model_file_is_a_clear_error() {
        let tmp = std::env::temp_dir().join(format!("trm-ar-trunc-{}", std::process::id()));
        let c = cfg("ar_trm", &tmp, 1);
        train_ar::<B>(&c, &Default::default(), &mut |_| {}).unwrap();
        let bytes = std::fs::read(tmp.join("model.bin")).unwrap();
        std::fs::write(tmp.join("model.bin"), &bytes[..bytes.len() / 2]).unwrap();
        let err = load_ar_trm::<NdArray<f32>>(&tmp, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("model.bin") && err.contains("truncated"), "{err}");
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(tmp.join("model.bin"), &flipped).unwrap();
        let err = load_ar_trm::<NdArray<f32>>(&tmp, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        std::fs::remove_dir_all(&tmp).ok();
    }
}
