//! `cargo xtask bench`: builds `trm` in release, runs `trm bench` on the issue-5
//! configurations for every backend built, optionally the official code through
//! xtask/py/bench_official.py (interleaved, same thread count), the criterion
//! micro-benchmarks, and rewrites the generated part of docs/benchmarks.md (between the
//! `<!-- bench:begin -->` and `<!-- bench:end -->` markers; the rest is hand-written).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cargo;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchTask {
    /// Extra trm-cli features (wgpu, cuda or wgpu,cuda); their backends are benched too.
    #[arg(long)]
    features: Option<String>,
    /// Bench this prebuilt `trm` binary instead of building one (on a machine without
    /// cargo, e.g. a GPU host the binary was carried to); the criterion benches are skipped.
    #[arg(long)]
    trm: Option<PathBuf>,
    /// The backends to bench (comma-separated); default: cpu and those of --features.
    #[arg(long)]
    backends: Option<String>,
    /// Where the official model runs: cpu (with --threads) or cuda.
    #[arg(long, default_value = "cpu")]
    official_device: String,
    /// A checkout of the official TinyRecursiveModels repository to compare against
    /// (needs python3 with torch, pydantic and einops).
    #[arg(long)]
    vs_official: Option<PathBuf>,
    /// The python that runs the official harness (one with torch, pydantic and einops).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Time the official model under torch.compile, as its pretrain.py trains by default
    /// (compilation is in the untimed warm-up); eager otherwise.
    #[arg(long)]
    official_compile: bool,
    /// Timed iterations per measurement (median reported).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// CPU threads for both sides (RAYON_NUM_THREADS, torch.set_num_threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only the hidden-128 configurations.
    #[arg(long)]
    quick: bool,
    /// Only the configurations of this width (128 or 512).
    #[arg(long)]
    hidden: Option<usize>,
    /// Skip the criterion micro-benchmarks.
    #[arg(long)]
    no_criterion: bool,
    /// The markdown file whose generated section is rewritten.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
}

/// (config, hidden, batch, phases): the issue-5 configurations. Each phase runs in its own
/// process on both sides, so each peak RSS is that phase's alone.
const CASES: [(&str, usize, usize, &[&str]); 4] = [
    ("sudoku-att", 128, 32, &["train", "infer", "latency"]),
    ("sudoku-mlp", 128, 32, &["train", "infer", "latency"]),
    ("sudoku-att", 512, 16, &["train", "infer"]),
    ("sudoku-mlp", 512, 16, &["train", "infer"]),
];

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What matches a result with the official one: a bound matches the phase it bounds, and a
/// CPU result the official code's on the CPU, a GPU backend's its result on the GPU.
fn key(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or("?");
    let backend = v["backend"].as_str().unwrap_or("cpu");
    let on_cpu = backend == "cpu" || (backend.starts_with("torch-") && backend.contains("-cpu-"));
    let place = if on_cpu { "cpu" } else { "gpu" };
    format!("{}|{}|{}|{}|{place}", kind.trim_end_matches("_bound"), v["config"], v["batch"], v["n_sup"])
}

fn is_bound(v: &Value) -> bool {
    v["kind"].as_str().is_some_and(|k| k.ends_with("_bound"))
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

/// Peak RSS minus the RSS when the phase started: what the phase allocated, without the
/// binary or interpreter and its libraries.
fn rss_growth(v: &Value) -> Option<f64> {
    Some(num(v, "peak_rss_mib")? - num(v, "base_rss_mib")?)
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

fn run_ours(backend: &str, case: &(&str, usize, usize, &[&str]), phase: &str, t: &BenchTask) -> Result<Vec<Value>> {
    let (config, hidden, batch, _) = case;
    // The matmul rate goes with the training step, whose GFLOP/s is given as a share of it;
    // each phase's bound (CPU only) follows it in the same process.
    let only = match (phase, backend) {
        ("train", "cpu") => "matmul,train,bound".to_string(),
        ("train", _) => "matmul,train".to_string(),
        (phase, "cpu") => format!("{phase},bound"),
        (phase, _) => phase.to_string(),
    };
    let trm = t.trm.clone().unwrap_or_else(|| PathBuf::from("target/release/trm"));
    let out = Command::new(&trm)
        .args(["bench", "--json", "--backend", backend, "--config", config])
        .args(["--hidden", &hidden.to_string(), "--batch", &batch.to_string()])
        .args(["--steps", &t.steps.to_string(), "--warmup", &t.warmup.to_string(), "--only", &only])
        .env("RAYON_NUM_THREADS", t.threads.to_string())
        .output()
        .with_context(|| format!("running {} bench", trm.display()))?;
    if !out.status.success() {
        bail!("trm bench {config} h{hidden} on {backend} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(json_lines(&out.stdout))
}

/// Ok(None) when the harness skipped (torch or the checkout missing); it said why.
fn run_official(
    dir: &std::path::Path,
    case: &(&str, usize, usize, &[&str]),
    phase: &str,
    t: &BenchTask,
) -> Result<Option<Vec<Value>>> {
    let (config, hidden, batch, _) = case;
    let mut cmd = Command::new(&t.python);
    cmd.arg("xtask/py/bench_official.py");
    if t.official_compile {
        cmd.arg("--compile");
    }
    let out = match cmd
        .arg("--dir")
        .arg(dir)
        .args(["--config", config, "--hidden", &hidden.to_string(), "--batch", &batch.to_string()])
        .args(["--steps", &t.steps.to_string(), "--warmup", &t.warmup.to_string()])
        .args(["--threads", &t.threads.to_string(), "--only", phase, "--device", &t.official_device])
        .env("OMP_NUM_THREADS", t.threads.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("official code: skipped: {} not found (pass --python)", t.python.display());
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("running {}", t.python.display())),
    };
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => Ok(Some(json_lines(&out.stdout))),
        Some(3) => Ok(None),
        _ => bail!("the official harness failed on {config} h{hidden}"),
    }
}

fn run_criterion() -> Result<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "trm-model", "--bench", "model"])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .context("cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Criterion prints the name, then (indented, sometimes on the same line) `time: [lo mid hi]`.
    let mut rows = Vec::new();
    let mut name = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            name = line.split_whitespace().next().unwrap_or("").to_string();
        }
        if let Some(i) = line.find("time:") {
            rows.push(format!("| `{name}` | {} |", line[i + 5..].trim().trim_matches(['[', ']'])));
        }
    }
    Ok(rows.join("\n"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn render(t: &BenchTask, ours: &[Value], official: &[Value], criterion: Option<&str>) -> String {
    let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().ok();
    let date = date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    // The SIMD width our CPU kernels ran at, as they report it: CPUs of one model name differ
    // in it between hosts, and it moves every ratio.
    let simd = ours.iter().find_map(|v| v.get("simd").and_then(Value::as_str));
    let mut s = format!(
        "Generated by `cargo xtask bench` on {date}: {}{}, {} hardware threads, {} threads used, release build, \
         median of {} iterations after {} warm-up.\n\n",
        cpu_model(),
        simd.map(|l| format!(" (kernels at {l})")).unwrap_or_default(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        t.threads,
        t.steps,
        t.warmup
    );
    // The device-memory columns only when a GPU backend reported it.
    let on_device = ours.iter().chain(official).any(|v| num(v, "device_peak_mib").is_some());
    let mut header = vec![
        "backend",
        "config",
        "kind",
        "batch",
        "N_sup",
        "median s",
        "per s",
        "GFLOP/s",
        "of matmul",
        "page faults / iter",
        "peak RSS MiB",
        "RSS growth MiB",
    ];
    header.extend(on_device.then_some("device MiB"));
    header.extend(["official s", "official peak RSS MiB", "official RSS growth MiB"]);
    header.extend(on_device.then_some("official device MiB"));
    header.push("speed-up");
    s.push_str(&format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len())));
    for v in ours {
        let off = official.iter().find(|o| key(o) == key(v));
        let off_s = off.and_then(|o| num(o, "median_s"));
        let speedup = off_s.zip(num(v, "median_s")).map(|(o, m)| o / m);
        let mut cells = vec![
            v["backend"].as_str().unwrap_or("?").to_string(),
            v["config"].as_str().unwrap_or("?").to_string(),
            v["kind"].as_str().unwrap_or("?").to_string(),
            v["batch"].to_string(),
            v["n_sup"].to_string(),
            fmt_opt(num(v, "median_s"), 4),
            fmt_opt(num(v, "per_s"), 2),
            fmt_opt(num(v, "gflops"), 1),
            num(v, "frac_of_matmul").map(|f| format!("{:.0}%", 100.0 * f)).unwrap_or_else(|| "-".into()),
            fmt_opt(num(v, "page_faults_per_iter"), 0),
            fmt_opt(num(v, "peak_rss_mib"), 0),
            fmt_opt(rss_growth(v), 0),
        ];
        cells.extend(on_device.then(|| fmt_opt(num(v, "device_peak_mib"), 0)));
        cells.extend([
            fmt_opt(off_s, 4),
            fmt_opt(off.and_then(|o| num(o, "peak_rss_mib")), 0),
            fmt_opt(off.and_then(rss_growth), 0),
        ]);
        cells.extend(on_device.then(|| fmt_opt(off.and_then(|o| num(o, "device_peak_mib")), 0)));
        // A bound's "speed-up" is the most any implementation could reach here.
        cells.push(
            speedup
                .map(|x| format!("{}{x:.2}x", if is_bound(v) { "at most " } else { "" }))
                .unwrap_or_else(|| "-".into()),
        );
        s.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if ours.iter().any(is_bound) {
        s.push_str(
            "\nRows `*_bound`: the least time the phase's arithmetic can take on this CPU (every matrix \
             product timed alone in a hot loop, plus the unavoidable exps; everything else free; \
             `trm bench --only bound`). Their share of matmul is against the reference's fastest call, \
             their speed-up column the most any implementation could reach against the official time.\n",
        );
    }
    if on_device {
        s.push_str(
            "\nDevice MiB: the most memory the GPU allocator held during the phase (reserved, its cached \
             pages included: cubecl's memory manager for ours, `torch.cuda.max_memory_reserved()` for the \
             official code); peak RSS is the host's.\n",
        );
    }
    if official.is_empty() {
        s.push_str("\nOfficial code: not run (pass `--vs-official DIR` with torch installed).\n");
    } else if let Some(o) = official.first() {
        let gpu = o.get("gpu").and_then(Value::as_str).map(|g| format!(" on {g}")).unwrap_or_default();
        s.push_str(&format!(
            "\nOfficial code: {}{gpu} ({}). Speed-up = official time / ours. \
             Each phase ran in its own process on both sides, ours first.\n",
            o["backend"], o["note"]
        ));
    }
    if let Some(c) = criterion {
        s.push_str("\nCriterion micro-benchmarks (`cargo bench -p trm-model`; hidden 128, batch 8):\n\n");
        s.push_str("| benchmark | time [low median high] |\n|---|---|\n");
        s.push_str(c);
        s.push('\n');
    }
    s
}

fn write_section(path: &std::path::Path, body: &str) -> Result<()> {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| format!("# Benchmarks\n\n{BEGIN}\n{END}\n"));
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{body}{}", &old[..b], &old[e..]),
        _ => format!("{old}\n{BEGIN}\n{body}{END}\n"),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// Runs `cargo xtask bench`.
pub fn run(t: BenchTask) -> Result<()> {
    if !matches!(t.official_device.as_str(), "cpu" | "cuda") {
        bail!("--official-device must be cpu or cuda, not `{}`", t.official_device);
    }
    match &t.trm {
        Some(trm) if !trm.is_file() => bail!("--trm {}: no such file", trm.display()),
        Some(_) => {}
        None => {
            let mut build = vec!["build", "--release", "-p", "trm-cli"];
            if let Some(f) = t.features.as_deref() {
                build.extend(["--features", f]);
            }
            cargo(&build)?;
        }
    }
    let backends: Vec<String> = match t.backends.as_deref() {
        Some(list) => list.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect(),
        None => {
            let features = t.features.as_deref().unwrap_or("").split(',').map(str::trim);
            std::iter::once("cpu").chain(features.filter(|f| matches!(*f, "wgpu" | "cuda"))).map(String::from).collect()
        }
    };
    if let Some(b) = backends.iter().find(|b| !matches!(b.as_str(), "cpu" | "wgpu" | "cuda")) {
        bail!("unknown backend `{b}` in --backends (expected cpu, wgpu, cuda)");
    }
    let cases: Vec<_> =
        CASES.iter().filter(|c| (!t.quick || c.1 == 128) && t.hidden.is_none_or(|h| c.1 == h)).collect();
    if cases.is_empty() {
        bail!("no configuration has hidden {:?} (they have 128 and 512)", t.hidden);
    }
    let (mut ours, mut official, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut official_dir = t.vs_official.clone();
    // Interleaved per phase (ours, then the official code), each in a fresh process.
    for case in cases {
        for phase in case.3 {
            for backend in &backends {
                // A phase that fails (a GPU out of memory, a kernel error) is reported and the
                // run goes on, so the rest is still measured; the run fails at the end.
                let rows = match run_ours(backend, case, phase, &t) {
                    Ok(rows) => rows,
                    Err(e) => {
                        eprintln!("{e:#}");
                        failed.push(format!("{} h{} {phase} on {backend}", case.0, case.1));
                        continue;
                    }
                };
                for r in &rows {
                    println!("{r}");
                }
                ours.extend(rows);
            }
            if let Some(dir) = official_dir.clone() {
                match run_official(&dir, case, phase, &t) {
                    Ok(Some(rows)) => {
                        for r in &rows {
                            println!("official {r}");
                        }
                        official.extend(rows);
                    }
                    Ok(None) => official_dir = None,
                    Err(e) => {
                        eprintln!("{e:#}");
                        failed.push(format!("official {} h{} {phase}", case.0, case.1));
                    }
                }
            }
        }
    }
    // Criterion needs cargo, which a prebuilt binary's machine may not have.
    let criterion = if t.no_criterion || t.trm.is_some() { None } else { Some(run_criterion()?) };
    let body = render(&t, &ours, &official, criterion.as_deref());
    println!("{body}");
    write_section(&t.out, &body)?;
    println!("wrote {}", t.out.display());
    if !failed.is_empty() {
        bail!("these phases failed (their errors are above): {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        task: BenchTask,
    }

    fn row(kind: &str, backend: &str) -> Value {
        json!({"kind": kind, "config": "sudoku-att-h128", "batch": 32, "n_sup": 4, "backend": backend})
    }

    #[test]
    fn results_match_the_official_ones_on_the_same_kind_of_device() {
        let torch_cpu = row("inference", "torch-2.11.0-cpu-eager");
        let torch_cuda = row("inference", "torch-2.11.0+cu130-cuda-eager");
        assert_eq!(key(&row("inference", "cpu")), key(&torch_cpu));
        assert_eq!(key(&row("inference_bound", "cpu")), key(&torch_cpu));
        assert_eq!(key(&row("inference", "cuda")), key(&torch_cuda));
        assert_eq!(key(&row("inference", "wgpu")), key(&torch_cuda));
        assert_ne!(key(&row("inference", "cuda")), key(&torch_cpu));
        assert_ne!(key(&row("inference", "cpu")), key(&torch_cuda));
        assert_ne!(key(&row("train_step", "cpu")), key(&torch_cpu));
    }

    #[test]
    fn device_memory_gets_a_column_and_a_note_only_when_measured() {
        let t = Args::parse_from(["bench"]).task;
        let mut ours = row("inference", "cuda");
        ours["device_peak_mib"] = json!(123.4);
        let mut official = row("inference", "torch-2.11.0+cu130-cuda-eager");
        official["device_peak_mib"] = json!(456.0);
        official["median_s"] = json!(2.0);
        ours["median_s"] = json!(1.0);
        let table = render(&t, &[ours], &[official], None);
        let line = table.lines().find(|l| l.starts_with("| cuda |")).expect("our row");
        assert!(line.contains("| 123 |") && line.contains("| 456 |") && line.ends_with("| 2.00x |"), "{line}");
        assert!(table.contains("Device MiB:"));
        let cpu_only = render(&t, &[row("inference", "cpu")], &[], None);
        assert!(!cpu_only.contains("Device MiB:") && !cpu_only.contains("device MiB"));
        let header = table.lines().find(|l| l.starts_with("| backend")).unwrap();
        assert_eq!(header.matches('|').count(), line.matches('|').count());
    }

    #[test]
    fn the_header_names_the_simd_level_our_rows_report() {
        let t = Args::parse_from(["bench"]).task;
        let mut cpu = row("inference", "cpu");
        cpu["simd"] = json!("AVX2+FMA");
        let first = |rows: &[Value]| render(&t, rows, &[], None).lines().next().unwrap().to_string();
        assert!(first(&[cpu]).contains("(kernels at AVX2+FMA), "), "{}", first(&[]));
        assert!(!first(&[row("inference", "cuda")]).contains("kernels at"));
    }
}
