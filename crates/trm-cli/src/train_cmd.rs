//! `trm train`, `trm eval`, `trm solve`, `trm plot`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use trm_backend::{dispatch, BackendJob, BackendKind};
use trm_data::render::{detect_kind, render_example, DataKind};
use trm_data::{NoProgress, PuzzleDataset};
use trm_model::{load_model, trm_inference, InferenceOptions, Trm};
use trm_train::arc_eval::ArcVoting;
use trm_train::{evaluate, EvalMetrics, Observer, RunOptions, StepMetrics, TrainConfig};

/// `trm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training config (TOML); see configs/.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (uses its config.toml).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Override the run folder of the config.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backend: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Device index.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Stop after this many optimizer steps in this invocation (checkpointed; resume later).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// `trm eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model file (`model.safetensors`), a checkpoint folder, or a run folder (latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder (holding test/) or a split folder.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// ARC voting evaluation; writes submission.json into this folder.
    #[arg(long)]
    pub arc_submission: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

/// `trm solve`.
#[derive(Debug, Args)]
pub struct SolveArgs {
    /// A model file, checkpoint folder or run folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Sudoku: n*n characters, `.` or `0` blank. Maze: the grid's characters (`#` wall, space, S, G), rows concatenated.
    #[arg(long)]
    pub puzzle: String,
    /// Most supervision steps (default: the model's N_sup).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Run every step instead of stopping when the halt head says so.
    #[arg(long)]
    pub no_halt: bool,
}

/// `trm plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run folder (holding metrics.jsonl).
    pub run_dir: PathBuf,
    /// Output PNG (default RUN_DIR/curves.png).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct Bar {
    bar: ProgressBar,
    last_exact: f64,
}

impl Observer for Bar {
    fn on_start(&mut self, step: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(step);
    }
    fn on_step(&mut self, m: &StepMetrics) {
        if m.count > 0 {
            self.last_exact = 0.9 * self.last_exact + 0.1 * m.exact_accuracy;
        }
        self.bar.set_position(m.step);
        self.bar.set_message(format!("loss {:.4}  train exact {:.3}  steps {:.1}", m.loss, self.last_exact, m.steps));
    }
    fn on_eval(&mut self, e: &EvalMetrics) {
        self.bar.println(eval_line(&format!("step {}", e.step), e));
    }
    fn on_message(&mut self, msg: &str) {
        self.bar.println(msg);
    }
}

/// One evaluation's metrics; `at` names what was evaluated (a step of this run, a file).
fn eval_line(at: &str, e: &EvalMetrics) -> String {
    format!(
        "eval @ {at}: exact {:.4}  token {:.4}  q-halt acc {:.3}  (N_sup = {})  | adaptive: exact {:.4}, mean steps {:.2}  [{} examples, {:.1}s]",
        e.exact_accuracy, e.accuracy, e.q_halt_accuracy, e.steps, e.adaptive_exact_accuracy, e.adaptive_steps, e.examples, e.seconds
    )
}

struct TrainJob {
    cfg: TrainConfig,
    options: RunOptions,
}

impl BackendJob for TrainJob {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let started = Instant::now();
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        let mut obs = Bar { bar, last_exact: 0.0 };
        let out = trm_train::train::<B>(self.cfg.clone(), &self.options, device.clone(), &NoProgress, &mut obs)?;
        obs.bar.finish_and_clear();
        println!(
            "trained {} steps in {:.1}s; run folder {}",
            out.steps,
            started.elapsed().as_secs_f64(),
            out.run_dir.display()
        );
        if let Some(e) = &out.last_eval {
            println!("{}", eval_line(&format!("step {}", e.step), e));
        }
        if let Some(ckpt) = &out.last_checkpoint {
            println!("checkpoint: {}", ckpt.display());
            let model: Trm<B::InnerBackend> = load_model(&ckpt.join("model.safetensors"), &device)?;
            let test = PuzzleDataset::open(&self.cfg.data.dir.join("test"))?;
            show_solved(&model, &test)?;
        }
        Ok(())
    }
}

/// Prints the first test puzzle among the first 64 the model solves.
fn show_solved<B: Backend>(model: &Trm<B>, test: &PuzzleDataset) -> anyhow::Result<()> {
    let kind = detect_kind(test.metadata());
    let n = test.num_examples().min(64);
    if n == 0 {
        return Ok(());
    }
    let l = test.metadata().seq_len;
    let mut inputs = Vec::with_capacity(n * l);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        inputs.extend(test.example(i).expect("in range").0.iter().map(|&t| t as i64));
        ids.push(test.example_identifier(i).unwrap_or(0) as i64);
    }
    let device = model.h_init.device();
    let opts = InferenceOptions { max_steps: model.config().n_sup, halt: false };
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &device);
    let out = trm_inference(model, Tensor::from_data(TensorData::new(inputs, [n, l]), &device), ids, opts);
    for i in 0..n {
        let (inp, lab) = test.example(i).expect("in range");
        let pred: Vec<u8> = out.prediction(i).iter().map(|&t| t as u8).collect();
        if pred.as_slice() == lab {
            println!("\nA held-out puzzle it solved (test example {i}):\n{}", render_example(kind, inp, &pred, false));
            return Ok(());
        }
    }
    println!("(none of the first {n} test puzzles was solved)");
    Ok(())
}

/// `trm train`.
pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let (mut cfg, resume) = match (&args.config, &args.resume) {
        (_, Some(run)) => (TrainConfig::from_file(&run.join("config.toml"))?, true),
        (Some(path), None) => (TrainConfig::from_file(path)?, false),
        (None, None) => bail!("give --config FILE or --resume RUN_DIR"),
    };
    if let Some(out) = args.out.or(args.resume.clone()) {
        cfg.out_dir = out;
    }
    cfg.validate()?;
    let options = RunOptions { resume, stop_after_steps: args.stop_after };
    dispatch(args.backend, args.device, TrainJob { cfg, options })?
}

/// Resolves a model file from a file, checkpoint folder or run folder.
pub fn resolve_model(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_owned());
    }
    if path.join("model.safetensors").is_file() {
        return Ok(path.join("model.safetensors"));
    }
    let ckpt = trm_train::latest_checkpoint(path)
        .with_context(|| format!("{}: not a model, checkpoint or run folder", path.display()))?;
    Ok(ckpt.join("model.safetensors"))
}

struct EvalJob(EvalArgs);

impl BackendJob for EvalJob {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let a = self.0;
        let model_path = resolve_model(&a.checkpoint)?;
        let model: Trm<B::InnerBackend> = load_model(&model_path, &device)?;
        let split = if a.data.join("test").is_dir() { a.data.join("test") } else { a.data.clone() };
        let test = PuzzleDataset::open(&split)?;
        let mut voting = match &a.arc_submission {
            Some(_) => Some(ArcVoting::open(split.parent().unwrap_or(&split))?),
            None => None,
        };
        let mut vote_err = None;
        let e = evaluate(&model, &test, a.batch_size, a.max_examples, |b, p| {
            if let Some(v) = voting.as_mut() {
                if let Err(err) = v.add_batch(b, p) {
                    vote_err.get_or_insert(err);
                }
            }
        })?;
        if let Some(err) = vote_err {
            return Err(err.into());
        }
        // A standalone model file knows no optimizer step: name the file instead.
        println!("{}", eval_line(&model_path.display().to_string(), &e));
        if let (Some(v), Some(dir)) = (voting, &a.arc_submission) {
            for (k, p) in v.pass_at_k() {
                println!("ARC/pass@{k}: {p:.4}");
            }
            std::fs::create_dir_all(dir)?;
            let path = dir.join("submission.json");
            std::fs::write(&path, serde_json::to_vec(&v.submission())?)?;
            println!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// `trm eval`.
pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    dispatch(args.backend, args.device, EvalJob(args))?
}

/// The most supervision steps `trm solve --max-steps` accepts.
const MAX_SOLVE_STEPS: usize = 10_000;

/// `trm solve` (CPU).
pub fn run_solve(args: SolveArgs) -> anyhow::Result<()> {
    type Cpu = burn::backend::NdArray<f32>;
    if args.max_steps == Some(0) {
        bail!("--max-steps must be at least 1 (the answer is read after a supervision step)");
    }
    if let Some(n) = args.max_steps.filter(|&n| n > MAX_SOLVE_STEPS) {
        bail!("--max-steps {n} is more than {MAX_SOLVE_STEPS} supervision steps (a model that never halts would run for hours)");
    }
    let model: Trm<Cpu> = load_model(&resolve_model(&args.checkpoint)?, &Default::default())?;
    let cfg = model.config().clone();
    let side = (cfg.seq_len as f64).sqrt().round() as usize;
    let kind = if cfg.vocab_size == side + 2 && side * side == cfg.seq_len {
        DataKind::Sudoku(trm_data::sudoku::SudokuShape::for_size(side)?)
    } else if cfg.vocab_size == 6 && side * side == cfg.seq_len {
        DataKind::Maze { side }
    } else {
        bail!("this model (vocab {}, {} tokens) is neither a Sudoku nor a maze model", cfg.vocab_size, cfg.seq_len);
    };
    let text: String = args.puzzle.chars().filter(|c| *c != '\n' && *c != '\r' && *c != '|').collect();
    let tokens: Vec<u8> = match kind {
        DataKind::Sudoku(_) => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let cells = trm_data::sudoku::parse_grid(&compact, side).map_err(anyhow::Error::msg)?;
            if let DataKind::Sudoku(shape) = kind {
                let unique = trm_data::sudoku::check_puzzle(shape, &cells).map_err(anyhow::Error::msg)?;
                if !unique {
                    println!("note: this puzzle has more than one solution; the answer is checked against the rules");
                }
            }
            trm_data::sudoku::to_tokens(&cells)
        }
        _ => {
            let count = text.chars().count();
            if count != cfg.seq_len {
                bail!("a {side}x{side} maze needs {} characters, got {count}", cfg.seq_len);
            }
            trm_data::maze::check_question(text.as_bytes()).map_err(anyhow::Error::msg)?;
            text.bytes().map(trm_data::maze::char_token).collect()
        }
    };
    let device = Default::default();
    let inputs = Tensor::<Cpu, 2, Int>::from_data(
        TensorData::new(tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, cfg.seq_len]),
        &device,
    );
    let ids = Tensor::<Cpu, 1, Int>::zeros([1], &device);
    let opts = InferenceOptions { max_steps: args.max_steps.unwrap_or(cfg.n_sup), halt: !args.no_halt };
    let out = trm_inference(&model, inputs, ids, opts);
    let pred: Vec<u8> = out.prediction(0).iter().map(|&t| t.clamp(0, 255) as u8).collect();
    println!("{}", render_example(kind, &tokens, &pred, false));
    println!("supervision steps: {} (halt logit {:.2})", out.steps[0], out.q_halt[0]);
    if let DataKind::Sudoku(shape) = kind {
        let q: Vec<u8> = tokens.iter().map(|&t| t.saturating_sub(1)).collect();
        let a: Vec<u8> = pred.iter().map(|&t| t.saturating_sub(1)).collect();
        match trm_data::sudoku::check_solution(shape, &q, &a) {
            Ok(()) => println!("valid solution"),
            Err(e) => println!("not a valid solution: {e}"),
        }
    }
    Ok(())
}

/// `trm plot`.
pub fn run_plot(args: PlotArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| args.run_dir.join("curves.png"));
    trm_train::plot::plot_run(&args.run_dir.join("metrics.jsonl"), &out)?;
    println!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_refuses_a_step_count_that_would_never_end() {
        // Checked before the checkpoint is read: a model that never halts ran 10^12 steps.
        let args = SolveArgs {
            checkpoint: PathBuf::from("/nonexistent"),
            puzzle: String::new(),
            max_steps: Some(1_000_000_000_000),
            no_halt: false,
        };
        let err = run_solve(args).unwrap_err().to_string();
        assert!(err.contains("--max-steps 1000000000000 is more than"), "{err}");
    }
}
