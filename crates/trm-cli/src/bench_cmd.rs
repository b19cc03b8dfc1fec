//! `trm bench`: time a training supervision step, inference and a reference matrix multiply
//! on synthetic batches of a config's shapes. One JSON line per result, then a table.
//! `trm bench --ar` times AR-TRM decoding instead (see [`run_ar`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use trm_backend::{BackendJob, BackendKind};
use trm_model::ar::bench::{
    ar_fits, bench_ar_decode, bench_ar_memory, sweep_cells, ArBenchSpec, ArDecodeResult, ArFit, ArMemoryResult,
    CacheCapacity,
};
use trm_model::ar::ArTrmConfig;
use trm_model::bench::{
    bench_bound, bench_inference, bench_matmul, bench_train_step, BenchResult, BenchSpec, BoundOf, DeviceMemoryProbe,
};
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
    /// with an [arch] table (sizes it leaves out come from its built dataset,
    /// `<data.dir>/train/dataset.json`, else Sudoku's: vocab 11, seq 81). Default
    /// sudoku-att; with --ar, an AR-TRM config file (default: the built-in small AR-TRM).
    #[arg(long)]
    pub config: Option<String>,
    /// Batch size for the training step and the inference throughput.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Override the width D (heads kept; puzzle_emb_ndim follows D when it was equal to it).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Timed iterations per measurement (the median is reported). Default 3; with --ar, 5
    /// timed rounds (one decode of every cell per round).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Supervision steps for inference (default: 4 for throughput, as the numbers).
    #[arg(long, default_value_t = 4)]
    pub n_sup: usize,
    /// Supervision steps for the batch-1 latency measurement (0 skips it).
    #[arg(long, default_value_t = 16)]
    pub latency_n_sup: usize,
    /// What to run: comma-separated among train, infer, latency, matmul, bound. `bound`
    /// adds, for each of train, infer and latency also asked for (all three when none is),
    /// the least time its arithmetic can take on this CPU: every product at hot-loop speed
    /// plus the unavoidable exps, the rest free (CPU backend only; docs/benchmarks.md).
    #[arg(long, default_value = "matmul,train,infer,latency,bound")]
    pub only: String,
    /// Print only the JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Benchmark AR-TRM decoding (batch 1, KV cache) instead; the --ar-* flags shape it.
    #[arg(long)]
    pub ar: bool,
    #[command(flatten)]
    pub ar_args: ArArgs,
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
                let data_dir = match value.get("data").map(|d| d.get("dir")) {
                    Some(Some(toml::Value::String(dir))) => Some(PathBuf::from(dir)),
                    Some(Some(_)) => bail!("{path}: data.dir is not a string"),
                    _ => None,
                };
                let mut arch = match value.remove("arch") {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => bail!("{path}: [arch] is not a table"),
                    None => value,
                };
                if DATASET_SIZES.iter().any(|k| !arch.contains_key(*k)) {
                    for (k, v) in DATASET_SIZES.into_iter().zip(dataset_sizes(path, data_dir.as_deref())?) {
                        arch.entry(k).or_insert(toml::Value::Integer(v as i64));
                    }
                }
                arch.entry("n_sup").or_insert(toml::Value::Integer(16));
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

/// The model sizes a training config may leave to its dataset.
const DATASET_SIZES: [&str; 3] = ["vocab_size", "seq_len", "num_puzzle_identifiers"];

/// [`DATASET_SIZES`] for a config file whose dataset is `data_dir`: from the built dataset's
/// `train/dataset.json`, else Sudoku's (11, 81, 1), with a note on stderr when the config
/// names a dataset that is not built.
fn dataset_sizes(path: &str, data_dir: Option<&Path>) -> anyhow::Result<[usize; 3]> {
    const SUDOKU: [usize; 3] = [11, 81, 1];
    let Some(dir) = data_dir else { return Ok(SUDOKU) };
    let metadata = dir.join("train").join("dataset.json");
    if !metadata.exists() {
        eprintln!(
            "note: {path}: {} is not built, so the benchmark takes Sudoku's sizes (vocab 11, seq 81); \
             build the dataset first (`trm data build`, or `trm train`, which builds it from [data.recipe]) \
             or set vocab_size and seq_len in [arch]",
            dir.display()
        );
        return Ok(SUDOKU);
    }
    let m =
        trm_data::DatasetMetadata::load(&metadata).with_context(|| format!("{path}: reading its dataset's sizes"))?;
    Ok([m.vocab_size, m.seq_len, m.num_puzzle_identifiers])
}

const DEFAULT_CONFIG: &str = "sudoku-att";

struct Job {
    args: BenchArgs,
    cfg: TrmConfig,
    /// The device index, for reading a GPU backend's memory.
    device: usize,
}

fn table(results: &[BenchResult]) {
    // GPU backends: the allocator's peak on the device beside the host's RSS.
    let on_device = results.iter().any(|r| r.device_peak_mib.is_some());
    print!(
        "{:<16} {:<22} {:>5} {:>6} {:>5} {:>10} {:>12} {:>9} {:>9} {:>8} {:>9} {:>10}",
        "kind",
        "config",
        "batch",
        "hidden",
        "n_sup",
        "median s",
        "per s",
        "GFLOP",
        "GFLOP/s",
        "of mm",
        "peak MiB",
        "faults/it"
    );
    println!("{}", if on_device { format!(" {:>10}", "device MiB") } else { String::new() });
    for r in results {
        let frac = r.frac_of_matmul.map(|f| format!("{:.0}%", 100.0 * f)).unwrap_or_else(|| "-".into());
        let rss = r.peak_rss_mib.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into());
        let faults = r.page_faults_per_iter.map(|f| format!("{f:.0}")).unwrap_or_else(|| "-".into());
        let device = r.device_peak_mib.map(|m| format!(" {m:>10.0}")).unwrap_or_else(|| format!(" {:>10}", "-"));
        println!(
            "{:<16} {:<22} {:>5} {:>6} {:>5} {:>10.4} {:>12.3} {:>9.2} {:>9.1} {:>8} {:>9} {:>10}{}",
            r.kind,
            r.config,
            r.batch,
            r.hidden,
            r.n_sup,
            r.median_s,
            r.per_s,
            r.gflop,
            r.gflops,
            frac,
            rss,
            faults,
            if on_device { device.as_str() } else { "" }
        );
    }
}

/// The pieces of each bound, after the table.
fn bound_tables(results: &[BenchResult]) {
    for r in results.iter().filter(|r| !r.bound_parts.is_empty()) {
        let (p, e) = (r.products_s.unwrap_or(0.0), r.exp_s.unwrap_or(0.0));
        println!("\n{} {}: {:.4} s = products {p:.4} s + exps {e:.4} s", r.kind, r.config, r.median_s);
        println!("  {:<48} {:>7} {:>10} {:>9} {:>9}", "piece", "count", "each us", "GFLOP/s", "total s");
        for part in &r.bound_parts {
            let rate = part.gflops.map(|g| format!("{g:.1}")).unwrap_or_else(|| "-".into());
            let total = part.each_s * part.count as f64;
            println!("  {:<48} {:>7} {:>10.1} {:>9} {:>9.4}", part.what, part.count, part.each_s * 1e6, rate, total);
        }
    }
}

impl BackendJob for Job {
    type Output = anyhow::Result<Vec<BenchResult>>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<Vec<BenchResult>> {
        let Job { args, cfg, device: index } = self;
        let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
        let config_name = args.config.as_deref().unwrap_or(DEFAULT_CONFIG);
        let name = format!("{}-h{}", config_name.trim_end_matches(".toml"), cfg.hidden_size);
        let steps = args.steps.unwrap_or(3);
        let spec = BenchSpec {
            name,
            config: cfg.clone(),
            backend: format!("{kind}"),
            warmup: args.warmup,
            iters: steps.max(1),
            device_memory: trm_backend::device_memory(kind, index).map(|_| {
                DeviceMemoryProbe::new(move || trm_backend::device_memory(kind, index).map(|m| m.reserved_bytes))
            }),
        };
        let mut results = Vec::new();
        let emit = |r: BenchResult, results: &mut Vec<BenchResult>| {
            println!("{}", serde_json::to_string(&r).expect("plain struct"));
            results.push(r);
        };
        let mut mm_rate = None;
        if only.contains(&"matmul") {
            let rows = args.batch * cfg.full_seq_len();
            // Cheap (tens of ms), so more iterations than the rest: with 3 the rate moved by
            // ±25 % between runs, and the training step's share of it with it.
            let r = bench_matmul::<B::InnerBackend>(&spec.backend, rows, 512, 1536, (3, steps.max(10)), &device);
            // A bound (fastest calls) is compared with the fastest call of the reference,
            // a measured phase (median) with its median.
            mm_rate = Some((r.gflops, r.gflop / r.min_s));
            emit(r, &mut results);
        }
        let with_frac = |mut r: BenchResult| {
            let bound = !r.bound_parts.is_empty();
            r.frac_of_matmul = mm_rate.map(|(median, fastest)| r.gflops / if bound { fastest } else { median });
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
        if only.contains(&"bound") && kind != BackendKind::Cpu {
            eprintln!("bound: skipped on {kind}: it times the CPU kernels");
        } else if only.contains(&"bound") {
            let phases = [
                ("train", BoundOf::TrainStep, args.batch, 1),
                ("infer", BoundOf::Inference, args.batch, args.n_sup),
                ("latency", BoundOf::Latency, 1, args.latency_n_sup),
            ];
            let none_asked = !phases.iter().any(|(name, ..)| only.contains(name));
            let asked = phases.iter().filter(|(name, ..)| none_asked || only.contains(name));
            for &(_, of, batch, n_sup) in asked.filter(|p| p.3 > 0) {
                match bench_bound(&spec, of, batch, n_sup) {
                    Some(r) => emit(with_frac(r), &mut results),
                    None => {
                        eprintln!("bound: skipped: built without trm-model's cpu-kernels feature");
                        break;
                    }
                }
            }
        }
        if !args.json {
            println!();
            table(&results);
            bound_tables(&results);
        }
        Ok(results)
    }
}

/// Runs `trm bench` (or `trm bench --ar`).
pub fn run(args: BenchArgs, backend: BackendKind, device: usize) -> anyhow::Result<()> {
    if args.ar {
        return run_ar(args, backend, device);
    }
    run_model(args, backend, device).map(drop)
}

/// What `--only` takes.
const PHASES: [&str; 5] = ["matmul", "train", "infer", "latency", "bound"];

/// Arguments that would run nothing, or run on nothing, are errors before anything starts.
fn check_args(args: &BenchArgs) -> anyhow::Result<()> {
    let only: Vec<&str> = args.only.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if only.is_empty() {
        bail!("--only is empty: give some of {}", PHASES.join(", "));
    }
    if let Some(p) = only.iter().find(|p| !PHASES.contains(p)) {
        bail!("unknown --only entry `{p}`: expected some of {}", PHASES.join(", "));
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.batch > MAX_BATCH {
        bail!("--batch {} is more than {MAX_BATCH} (its activations would not fit in memory)", args.batch);
    }
    if args.n_sup == 0 && (only.contains(&"infer") || only == ["bound"]) {
        bail!("--n-sup must be at least 1 for the inference phase");
    }
    Ok(())
}

/// `trm bench` without `--ar`: prints the results and returns them.
fn run_model(args: BenchArgs, backend: BackendKind, device: usize) -> anyhow::Result<Vec<BenchResult>> {
    check_args(&args)?;
    let cfg = load_config(args.config.as_deref().unwrap_or(DEFAULT_CONFIG), args.hidden)?;
    trm_backend::dispatch(backend, device, Job { args, cfg, device })?
}

// ---------------------------------------------------------------------------------------
// `trm bench --ar`: AR-TRM decoding at batch 1 with the KV cache.

/// The sweeps of `trm bench --ar`.
#[derive(Debug, Args)]
pub struct ArArgs {
    /// Prefix lengths P of the prefix sweep (each at --ar-fixed-k steps).
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 64, 256, 512, 1024])]
    pub ar_prefixes: Vec<usize>,
    /// Refinement steps K of the steps sweep (each at prefix --ar-fixed-p).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2, 4, 8, 16])]
    pub ar_steps: Vec<usize>,
    /// K of the prefix sweep.
    #[arg(long, default_value_t = 4)]
    pub ar_fixed_k: usize,
    /// P of the steps sweep.
    #[arg(long, default_value_t = 64)]
    pub ar_fixed_p: usize,
    /// Cache sizings to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![CacheCapacity::Shared, CacheCapacity::Tight])]
    pub ar_capacity: Vec<CacheCapacity>,
    /// Tokens the memory check generates (0 skips it). Small by default to keep the run
    /// short: K = 16 costs 336 net calls per token.
    #[arg(long, default_value_t = 32)]
    pub ar_mem_tokens: usize,
    /// Refinement steps of the memory check's runs, in this order (largest first, so the
    /// smaller K cannot have warmed the allocator for the larger one).
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 1])]
    pub ar_mem_steps: Vec<usize>,
}

/// Reads `--config` for `--ar`: none for `ArTrmConfig::default()`; a `trm train-ar` run
/// config (configs/ar/*.toml) for its model; else a TOML or JSON file whose fields (top
/// level, or an `[ar]` / `[arch]` table) override the default.
pub fn load_ar_config(path: Option<&str>, hidden: Option<usize>) -> anyhow::Result<ArTrmConfig> {
    let cfg = match path {
        None => ArTrmConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(Path::new(path)).with_context(|| format!("reading {path}"))?;
            let mut file: toml::Table = if path.ends_with(".json") {
                serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?
            } else {
                toml::from_str(&text).with_context(|| format!("parsing {path}"))?
            };
            // A run config of `trm train-ar` (configs/ar/*.toml): its model.
            if file.contains_key("task") && file.contains_key("model") && !path.ends_with(".json") {
                let run =
                    trm_train::ar::ArRunConfig::from_toml_str(&text).with_context(|| format!("reading {path}"))?;
                return finish(run.ar_trm_config(), hidden);
            }
            let fields = match file.remove("ar").or_else(|| file.remove("arch")) {
                Some(toml::Value::Table(t)) => t,
                Some(_) => bail!("{path}: [ar] / [arch] is not a table"),
                None => file,
            };
            let mut merged = toml::Table::try_from(ArTrmConfig::default())?;
            merged.extend(fields);
            toml::Value::Table(merged).try_into().with_context(|| format!("{path}: not an AR-TRM config"))?
        }
    };
    finish(cfg, hidden)
}

fn finish(mut cfg: ArTrmConfig, hidden: Option<usize>) -> anyhow::Result<ArTrmConfig> {
    if let Some(h) = hidden {
        cfg.hidden_size = h;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Largest `--batch`, and largest AR prefix or step count: beyond these a run aborts on
/// memory or does not finish.
const MAX_BATCH: usize = 1 << 20;
const MAX_AR_LEN: usize = 1 << 16;

fn check_ar_args(a: &ArArgs) -> anyhow::Result<()> {
    let lists = [("--ar-prefixes", &a.ar_prefixes), ("--ar-steps", &a.ar_steps)];
    for (flag, list) in lists {
        if list.is_empty() || list.contains(&0) {
            bail!("{flag} needs one or more positive values");
        }
        if let Some(v) = list.iter().find(|&&v| v > MAX_AR_LEN) {
            bail!("{flag}: {v} is more than {MAX_AR_LEN} (each cell decodes that many tokens)");
        }
    }
    if a.ar_fixed_k == 0 || a.ar_fixed_p == 0 {
        bail!("--ar-fixed-k and --ar-fixed-p must be positive");
    }
    if a.ar_capacity.is_empty() {
        bail!("--ar-capacity needs shared, tight or both");
    }
    if a.ar_mem_tokens > 0 && (a.ar_mem_steps.is_empty() || a.ar_mem_steps.contains(&0)) {
        bail!("--ar-mem-steps needs one or more positive values");
    }
    Ok(())
}

struct ArJob {
    args: BenchArgs,
    cfg: ArTrmConfig,
}

/// Prints a result `v` as one JSON line with the backend name added.
fn emit_json(mut v: serde_json::Value, backend: &str) {
    if let Some(map) = v.as_object_mut() {
        map.insert("backend".into(), backend.into());
    }
    println!("{v}");
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn ar_tables(cfg: &ArTrmConfig, decode: &[ArDecodeResult], fits: &[ArFit], memory: &[ArMemoryResult]) {
    println!(
        "\nAR-TRM D={} heads={} layers={} T={} n={} ({} net calls per step), V={}, KV {} B per token",
        cfg.hidden_size,
        cfg.num_heads,
        cfg.layers,
        cfg.t_cycles,
        cfg.n_cycles,
        cfg.net_calls_per_step(),
        cfg.vocab_size,
        cfg.kv_bytes_per_token()
    );
    println!(
        "{:<7} {:>5} {:>5} {:>3} {:>6} {:>9} {:>8} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9} {:>8} {:>9}",
        "cache",
        "max",
        "P",
        "K",
        "calls",
        "ms/token",
        "ms/step",
        "us/call",
        "tok/s",
        "x ref",
        "GFLOP/s",
        "KV B/tok",
        "KV KiB",
        "peak MiB",
        "grow KiB"
    );
    for r in decode {
        println!(
            "{:<7} {:>5} {:>5} {:>3} {:>6} {:>9.2} {:>8.3} {:>8.1} {:>8.2} {:>6} {:>7.2} {:>9.0} {:>9.1} {:>8} {:>9}",
            r.capacity.to_string(),
            r.max_len,
            r.prefix,
            r.steps,
            r.net_calls,
            r.ms_per_token,
            r.ms_per_step,
            r.us_per_net_call,
            r.tokens_per_s,
            opt(r.rel_to_ref, 2),
            r.gflops,
            r.kv_bytes_per_token,
            r.kv_allocated_bytes as f64 / 1024.0,
            opt(r.peak_rss_mib, 0),
            opt(r.rss_growth_kib, 0),
        );
    }
    println!(
        "\n{:<7} {:<6} {:>5} {:<22} {:>12} {:>12} {:>8} {:>10} {:>6}",
        "cache", "sweep", "fixed", "points", "slope ms", "intercept ms", "R^2", "max resid", "span"
    );
    for f in fits {
        let xs: Vec<String> = f.xs.iter().map(usize::to_string).collect();
        println!(
            "{:<7} {:<6} {:>5} {:<18} {:>10.4} {:>12.3} {:>8.4} {:>9.1}% {:>5.2}x {:>10} {:>8}",
            f.capacity.to_string(),
            f.sweep,
            f.fixed,
            xs.join(","),
            f.fit.slope,
            f.fit.intercept,
            f.fit.r2,
            100.0 * f.fit.max_rel_residual,
            f.span,
            opt(f.fit_min.map(|m| m.slope), 4),
            opt(f.fit_min.map(|m| m.r2), 4),
        );
    }
    if !memory.is_empty() {
        println!(
            "\n{:>6} {:>3} {:>9} {:>10} {:>11} {:>10} {:>14} {:>13}",
            "tokens", "K", "ms/token", "KV KiB", "KV used KiB", "RSS0 MiB", "peak grow KiB", "RSS grow KiB"
        );
        for m in memory {
            println!(
                "{:>6} {:>3} {:>9.2} {:>10.1} {:>11.1} {:>10} {:>14} {:>13}",
                m.tokens,
                m.steps,
                m.ms_per_token,
                m.kv_allocated_bytes as f64 / 1024.0,
                m.kv_committed_bytes as f64 / 1024.0,
                opt(m.rss_before_mib, 1),
                opt(m.peak_growth_kib, 0),
                opt(m.rss_growth_kib, 0),
            );
        }
    }
}

impl BackendJob for ArJob {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        // Decoding needs no gradients: run it on the inner backend, as inference does.
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        let ArJob { args, cfg } = self;
        let a = &args.ar_args;
        let backend = kind.to_string();
        let cells = sweep_cells(&a.ar_prefixes, &a.ar_steps, a.ar_fixed_k, a.ar_fixed_p);
        let mut decode = Vec::new();
        for &capacity in &a.ar_capacity {
            let spec =
                ArBenchSpec { config: cfg.clone(), capacity, warmup: args.warmup, iters: args.steps.unwrap_or(5) };
            for r in bench_ar_decode::<I<B>>(&spec, &cells, &device)? {
                emit_json(serde_json::to_value(&r)?, &backend);
                decode.push(r);
            }
        }
        let fits = ar_fits(&decode);
        for f in &fits {
            emit_json(serde_json::to_value(f)?, &backend);
        }
        let mut memory = Vec::new();
        if a.ar_mem_tokens > 0 {
            for &k in &a.ar_mem_steps {
                let m = bench_ar_memory::<I<B>>(&cfg, a.ar_mem_tokens, k, &device)?;
                emit_json(serde_json::to_value(&m)?, &backend);
                memory.push(m);
            }
        }
        if !args.json {
            ar_tables(&cfg, &decode, &fits, &memory);
        }
        Ok(())
    }
}

/// Runs `trm bench --ar`.
fn run_ar(args: BenchArgs, backend: BackendKind, device: usize) -> anyhow::Result<()> {
    check_ar_args(&args.ar_args)?;
    let cfg = load_ar_config(args.config.as_deref(), args.hidden)?;
    trm_backend::dispatch(backend, device, ArJob { args, cfg })?
}

#[cfg(test)]
#[path = "bench_cmd_tests.rs"]
mod tests;
