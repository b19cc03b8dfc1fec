//! `trm bench`: time a training supervision step, inference and a reference matrix multiply
//! on synthetic batches of a config's shapes. One JSON line per result, then a table.

use std::path::Path;

use anyhow::{bail, Context};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use trm_backend::{BackendJob, BackendKind};
use trm_model::bench::{bench_inference, bench_matmul, bench_train_step, BenchResult, BenchSpec};
use trm_model::TrmConfig;

/// Arguments of `trm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backend: cpu (ndarray), wgpu or cuda (the last two need their cargo feature).
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Device index.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// A preset (sudoku-att, sudoku-mlp), a model config (TOML or JSON) or a training config
    /// with an [arch] table (dataset fields default to Sudoku: vocab 11, seq 81).
    #[arg(long, default_value = "sudoku-att")]
    pub config: String,
    /// Batch size for the training step and the inference throughput.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Override the width D (heads kept; puzzle_emb_ndim follows D when it was equal to it).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Timed iterations per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Supervision steps for inference (default: 4 for throughput, as the numbers).
    #[arg(long, default_value_t = 4)]
    pub n_sup: usize,
    /// Supervision steps for the batch-1 latency measurement (0 skips it).
    #[arg(long, default_value_t = 16)]
    pub latency_n_sup: usize,
    /// What to run: comma-separated among train, infer, latency, matmul.
    #[arg(long, default_value = "matmul,train,infer,latency")]
    pub only: String,
    /// Print only the JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Reads `--config`: a preset name or a file.
pub fn load_config(name: &str, hidden: Option<usize>) -> anyhow::Result<TrmConfig> {
    let mut cfg = match name {
        "sudoku-att" => TrmConfig::sudoku_att(),
        "sudoku-mlp" => TrmConfig::sudoku_mlp(),
        path => {
            let text = std::fs::read_to_string(Path::new(path)).with_context(|| format!("reading {path}"))?;
            if path.ends_with(".json") {
                TrmConfig::from_json_str(&text)?
            } else {
                let mut value: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {path}"))?;
                let mut arch = match value.remove("arch") {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => bail!("{path}: [arch] is not a table"),
                    None => value,
                };
                for (k, v) in [("vocab_size", 11), ("seq_len", 81), ("num_puzzle_identifiers", 1), ("n_sup", 16)] {
                    arch.entry(k).or_insert(toml::Value::Integer(v));
                }
                TrmConfig::from_toml_str(&toml::to_string(&arch)?)?
            }
        }
    };
    if let Some(h) = hidden {
        if cfg.puzzle_emb_ndim == cfg.hidden_size {
            cfg.puzzle_emb_ndim = h;
        }
        cfg.hidden_size = h;
    }
    cfg.validate()?;
    Ok(cfg)
}

struct Job {
    args: BenchArgs,
    cfg: TrmConfig,
}

fn table(results: &[BenchResult]) {
    println!(
        "{:<10} {:<22} {:>5} {:>6} {:>5} {:>10} {:>12} {:>9} {:>9} {:>8} {:>9}",
        "kind", "config", "batch", "hidden", "n_sup", "median s", "per s", "GFLOP", "GFLOP/s", "of mm", "peak MiB"
    );
    for r in results {
        let frac = r.frac_of_matmul.map(|f| format!("{:.0}%", 100.0 * f)).unwrap_or_else(|| "-".into());
        let rss = r.peak_rss_mib.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<22} {:>5} {:>6} {:>5} {:>10.4} {:>12.3} {:>9.2} {:>9.1} {:>8} {:>9}",
            r.kind, r.config, r.batch, r.hidden, r.n_sup, r.median_s, r.per_s, r.gflop, r.gflops, frac, rss
        );
    }
}

impl BackendJob for Job {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let Job { args, cfg } = self;
        let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
        let name = format!("{}-h{}", args.config.trim_end_matches(".toml"), cfg.hidden_size);
        let spec = BenchSpec {
            name,
            config: cfg.clone(),
            backend: format!("{kind}"),
            warmup: args.warmup,
            iters: args.steps.max(1),
        };
        let mut results = Vec::new();
        let emit = |r: BenchResult, results: &mut Vec<BenchResult>| {
            println!("{}", serde_json::to_string(&r).expect("plain struct"));
            results.push(r);
        };
        let mut mm_rate = None;
        if only.contains(&"matmul") {
            let rows = args.batch * cfg.full_seq_len();
            let r = bench_matmul::<B::InnerBackend>(&spec.backend, rows, 512, 1536, (1, args.steps.max(3)), &device);
            mm_rate = Some(r.gflops);
            emit(r, &mut results);
        }
        let with_frac = |mut r: BenchResult| {
            r.frac_of_matmul = mm_rate.map(|m| r.gflops / m);
            r
        };
        if only.contains(&"train") {
            emit(with_frac(bench_train_step::<B>(&spec, args.batch, &device)), &mut results);
        }
        if only.contains(&"infer") {
            let r = bench_inference::<B::InnerBackend>(&spec, "inference", args.batch, args.n_sup, &device);
            emit(with_frac(r), &mut results);
        }
        if only.contains(&"latency") && args.latency_n_sup > 0 {
            let r = bench_inference::<B::InnerBackend>(&spec, "latency", 1, args.latency_n_sup, &device);
            emit(with_frac(r), &mut results);
        }
        if !args.json {
            println!();
            table(&results);
        }
        Ok(())
    }
}

/// Runs `trm bench`.
pub fn run(args: BenchArgs, backend: BackendKind, device: usize) -> anyhow::Result<()> {
    let cfg = load_config(&args.config, args.hidden)?;
    trm_backend::dispatch(backend, device, Job { args, cfg })?
}
