//! `trm train-ar` (an AR run or the whole baseline ladder) and `trm generate` (greedy
//! decoding with a trained AR-TRM, printing the steps each token took).

use std::path::PathBuf;

use anyhow::bail;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use trm_backend::{dispatch, BackendJob, BackendKind};
use trm_data::ar_tasks::{render, tokenize, EOS, EQUALS};
use trm_model::ar::generate_until;
use trm_train::ar::{ladder_table, load_ar_trm, run_ladder, train_ar, ArRunConfig};

/// `trm train-ar`.
#[derive(Debug, Args)]
pub struct TrainArArgs {
    /// AR run config (TOML); see configs/ar/.
    #[arg(long)]
    pub config: PathBuf,
    /// Train the baseline ladder derived from this AR-TRM config (transformer, deep
    /// transformer, looped, AR-TRM), one after another, and print the table.
    #[arg(long)]
    pub ladder: bool,
    /// Override the run folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override train.max_steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Backend: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Device index.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

struct TrainArJob {
    cfg: ArRunConfig,
    ladder: bool,
}

impl BackendJob for TrainArJob {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let mut print = |m: &str| println!("{m}");
        if self.ladder {
            let outcomes = run_ladder::<B>(&self.cfg, &device, &mut print)?;
            println!("\n{}", ladder_table(&outcomes));
            println!("table written to {}", self.cfg.out_dir.join("ladder.md").display());
        } else {
            let out = train_ar::<B>(&self.cfg, &device, &mut print)?;
            println!("\n{}", ladder_table(std::slice::from_ref(&out)));
            println!("run folder {}", self.cfg.out_dir.display());
        }
        Ok(())
    }
}

/// `trm train-ar`.
pub fn run_train_ar(args: TrainArArgs) -> anyhow::Result<()> {
    let mut cfg = ArRunConfig::from_file(&args.config)?;
    if let Some(out) = args.out {
        cfg.out_dir = out;
    }
    if let Some(steps) = args.steps {
        cfg.train.max_steps = steps;
    }
    cfg.validate()?;
    dispatch(args.backend, args.device, TrainArJob { cfg, ladder: args.ladder })?
}

/// `trm generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// An AR-TRM run folder (written by `trm train-ar`).
    #[arg(long)]
    pub run: PathBuf,
    /// The prompt, ending in `=`: for addition "57+68=", for sorting "3142=".
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate (decoding stops earlier, right after `$`).
    #[arg(long, default_value_t = 32)]
    pub max_new: usize,
    /// Refine every token exactly K_max steps instead of halting adaptively.
    #[arg(long)]
    pub fixed: bool,
    /// Backend: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Device index.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

struct GenerateJob {
    args: GenerateArgs,
    prompt: Vec<u32>,
}

impl BackendJob for GenerateJob {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let (cfg, model) = load_ar_trm::<B::InnerBackend>(&self.args.run, &device)?;
        let max_len = model.config().max_len;
        if self.prompt.len() >= max_len {
            bail!("the prompt has {} tokens; this model's context holds {max_len}", self.prompt.len());
        }
        let prompt: Vec<usize> = self.prompt.iter().map(|&t| t as usize).collect();
        let k_max = model.config().k_max;
        let gen = generate_until(&model, &prompt, self.args.max_new, k_max, !self.args.fixed, Some(EOS as usize));
        let end = gen.tokens.iter().position(|&t| t == EOS as usize).map_or(gen.tokens.len(), |i| i + 1);
        let answer: Vec<u32> = gen.tokens[..end].iter().map(|&t| t as u32).collect();
        let mode = if self.args.fixed { format!("fixed {k_max} steps") } else { format!("halting, K_max {k_max}") };
        println!("{} ({:?}, {mode})", cfg.name, cfg.task.task);
        println!("{}{}", render(&self.prompt), render(&answer));
        println!("token  steps");
        for (t, s) in answer.iter().zip(&gen.steps) {
            println!("{:>5}  {s}", render(&[*t]));
        }
        let total: usize = gen.steps[..end].iter().sum();
        println!("{} tokens, {total} refinement steps ({:.2} per token)", end, total as f64 / end.max(1) as f64);
        Ok(())
    }
}

/// `trm generate`.
pub fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    let prompt = tokenize(&args.prompt)?;
    if prompt.last() != Some(&EQUALS) {
        bail!("the prompt must end with '=' (for example \"57+68=\" or \"3142=\")");
    }
    if args.max_new == 0 {
        bail!("--max-new must be positive");
    }
    let (backend, device) = (args.backend, args.device);
    dispatch(backend, device, GenerateJob { args, prompt })?
}
