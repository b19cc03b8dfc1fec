//! A whole run: build or reuse the data, train, evaluate and checkpoint on schedule, log
//! every step to `RUN_DIR/metrics.jsonl`, stop at the step budget, the time limit or the
//! target accuracy. Resuming continues from the latest checkpoint exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use trm_data::{Progress, PuzzleDataset};

use crate::checkpoint::{latest_checkpoint, load_trainer_and_budget, save_checkpoint};
use crate::config::TrainConfig;
use crate::engine::{StepMetrics, Trainer};
use crate::error::TrainError;
use crate::eval::{evaluate, EvalMetrics};

/// Receives progress while a run goes on (the CLI draws a progress bar with it).
pub trait Observer {
    /// The run starts at `step` of `total`.
    fn on_start(&mut self, _step: u64, _total: u64) {}
    /// An optimizer step finished.
    fn on_step(&mut self, _m: &StepMetrics) {}
    /// An evaluation finished.
    fn on_eval(&mut self, _m: &EvalMetrics) {}
    /// Something worth telling the user.
    fn on_message(&mut self, _msg: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the latest checkpoint in the run folder.
    pub resume: bool,
    /// Stop after this many optimizer steps in this process (the budget is unchanged):
    /// for tests of resuming, and for short sessions.
    pub stop_after_steps: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Optimizer steps done in total.
    pub steps: u64,
    /// Seconds this process trained (evaluations included).
    pub seconds: f64,
    /// The last evaluation.
    pub last_eval: Option<EvalMetrics>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
}

/// Opens the run's data, building it from the recipe when the folder lacks it or holds a
/// different recipe. Returns (train, test).
pub fn prepare_data(
    cfg: &TrainConfig,
    progress: &dyn Progress,
) -> Result<(Arc<PuzzleDataset>, PuzzleDataset), TrainError> {
    let dir = &cfg.data.dir;
    if let Some(recipe) = &cfg.data.recipe {
        let recorded = std::fs::read(dir.join("recipe.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<trm_data::DatasetRecipe>(&b).ok());
        let complete =
            dir.join("train").join("dataset.json").exists() && dir.join("test").join("dataset.json").exists();
        if recorded.as_ref() != Some(recipe) || !complete {
            recipe.build(dir, progress)?;
        }
    }
    let train = PuzzleDataset::open(&dir.join("train"))?;
    let test = PuzzleDataset::open(&dir.join("test"))?;
    // A run needs something to train on and something to evaluate (every run evaluates).
    for (split, ds) in [("train", &train), ("test", &test)] {
        if ds.num_examples() == 0 {
            return Err(TrainError::Mismatch(format!(
                "{}: the {split} split holds no examples",
                dir.join(split).display()
            )));
        }
    }
    Ok((Arc::new(train), test))
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'a str,
    time_s: f64,
    #[serde(flatten)]
    metrics: &'a T,
}

/// The JSONL metrics log.
struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    /// Opens for appending; drops lines after `keep_until` (a resumed run rewrites them).
    fn open(path: &Path, keep_until: Option<u64>) -> Result<Self, TrainError> {
        if let (Some(step), Ok(text)) = (keep_until, std::fs::read_to_string(path)) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))?;
        }
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
        Ok(Self { file, path: path.to_owned() })
    }

    fn write<T: Serialize>(&mut self, kind: &str, time_s: f64, m: &T) -> Result<(), TrainError> {
        let line = serde_json::to_string(&Line { kind, time_s, metrics: m }).expect("metrics serialise");
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Trains `cfg` on device `device`.
pub fn train<B: AutodiffBackend>(
    cfg: TrainConfig,
    options: &RunOptions,
    device: B::Device,
    progress: &dyn Progress,
    obs: &mut dyn Observer,
) -> Result<RunOutcome, TrainError> {
    cfg.validate()?;
    let run_dir = cfg.out_dir.clone();
    let (train, test) = prepare_data(&cfg, progress)?;
    let mut trainer: Trainer<B> = if options.resume {
        let ckpt = latest_checkpoint(&run_dir)?;
        obs.on_message(&format!("resuming from {}", ckpt.display()));
        let (t, written_budget) = load_trainer_and_budget(cfg.clone(), train, &ckpt, device)?;
        if written_budget != t.total_steps {
            obs.on_message(&format!(
                "the step budget is now {} (the checkpoint's run had {written_budget}): the LR schedule follows it",
                t.total_steps
            ));
        }
        t
    } else {
        Trainer::new(cfg.clone(), train, device)?
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    let old = crate::checkpoint::checkpoints_dir(&run_dir);
    if !options.resume && old.exists() {
        obs.on_message(&format!("starting afresh: removing the old checkpoints in {}", old.display()));
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    }
    let cfg_path = run_dir.join("config.toml");
    let text = toml::to_string_pretty(&cfg).map_err(|e| TrainError::Config(e.to_string()))?;
    trm_model::checkpoint::write_atomic(&cfg_path, text.as_bytes())?;
    let mut log = MetricsLog::open(&run_dir.join("metrics.jsonl"), Some(trainer.step))?;
    obs.on_start(trainer.step, trainer.total_steps);

    let start = Instant::now();
    let first_step = trainer.step;
    let mut outcome = RunOutcome {
        run_dir: run_dir.clone(),
        steps: trainer.step,
        seconds: 0.0,
        last_eval: None,
        last_checkpoint: None,
    };
    let r = cfg.run.clone();
    let limit = r.time_limit_minutes.map(|m| m * 60.0);
    loop {
        let before = trainer.step;
        let metrics = trainer.train_step()?;
        if metrics.is_empty() {
            if !trainer.finished() {
                return Err(TrainError::Mismatch(format!(
                    "no full batch of {} could be drawn from the training split (incomplete batches are dropped); \
                     lower train.global_batch_size",
                    cfg.train.global_batch_size
                )));
            }
            break;
        }
        for m in &metrics {
            log.write("train", start.elapsed().as_secs_f64(), m)?;
            obs.on_step(m);
        }
        let after = trainer.step;
        let crossed = |every: u64| every > 0 && before / every != after / every;
        let out_of_time = limit.is_some_and(|l| start.elapsed().as_secs_f64() >= l);
        let stop_here = options.stop_after_steps.is_some_and(|s| after - first_step >= s);
        let last = trainer.finished() || out_of_time;
        if crossed(r.eval_interval) || last {
            let model = trainer.eval_model();
            let mut e = evaluate(&model, &test, r.eval_batch_size, r.eval_max_examples, |_, _| {})?;
            e.step = after;
            log.write("eval", start.elapsed().as_secs_f64(), &e)?;
            obs.on_eval(&e);
            outcome.last_checkpoint = Some(save_checkpoint(&trainer, &run_dir)?);
            let reached = r.target_exact_accuracy.is_some_and(|t| e.exact_accuracy >= t);
            outcome.last_eval = Some(e);
            if reached {
                obs.on_message("target exact accuracy reached");
                break;
            }
        } else if crossed(r.checkpoint_every) || stop_here {
            outcome.last_checkpoint = Some(save_checkpoint(&trainer, &run_dir)?);
        }
        if out_of_time {
            obs.on_message("time limit reached");
            break;
        }
        if stop_here || trainer.finished() {
            break;
        }
    }
    outcome.steps = trainer.step;
    outcome.seconds = start.elapsed().as_secs_f64();
    Ok(outcome)
}
