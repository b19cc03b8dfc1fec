//! `cargo xtask`: project automation that is not part of the library.
//!
//! - `cargo xtask ci`: what `.ci/run` runs (fmt check, tests, clippy).
//! - `cargo xtask parity [DIR]`: `trm parity` on every fixture folder (release build).
//! - `cargo xtask check-gpu`: compile the wgpu and cuda paths (no GPU needed).
//! - `cargo xtask bench [--features wgpu,cuda] [--vs-official DIR --python PY
//!   [--official-compile] [--official-device cuda]]`: `trm bench` on the issue-5
//!   configurations for every backend built, the official code beside it, criterion
//!   micro-benchmarks, and docs/benchmarks.md (see bench.rs). With `--trm PATH` it runs a
//!   prebuilt binary and needs no cargo (xtask/gpu/run.sh, on a GPU machine).

mod bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// fmt check, the workspace tests, clippy with warnings denied.
    Ci,
    /// Run `trm parity` on every folder of a fixture root.
    Parity {
        /// Fixture root (default ../shared/fixtures/parity).
        dir: Option<PathBuf>,
        /// Extra cargo features for trm-cli (e.g. wgpu or cuda).
        #[arg(long)]
        features: Option<String>,
        /// Backend to run on.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// cargo check of the wgpu and cuda backends, tests included.
    CheckGpu,
    /// Benchmarks: `trm bench` per backend, criterion, optional official comparison.
    Bench(bench::BenchTask),
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn main() -> Result<()> {
    // A binary built here and carried to another machine (`cargo xtask bench --trm` on a GPU
    // host) runs from that machine's checkout, where this path does not exist.
    let root = workspace_root();
    if root.is_dir() {
        std::env::set_current_dir(root)?;
    }
    match Cli::parse().command {
        Task::Ci => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&["test", "--workspace", "--locked"])?;
            cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])
        }
        Task::Parity { dir, features, backend } => {
            let root = dir.unwrap_or_else(|| PathBuf::from("../shared/fixtures/parity"));
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
                .with_context(|| format!("reading {}", root.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("config.json").exists())
                .collect();
            dirs.sort();
            if dirs.is_empty() {
                bail!("no fixture folders (with config.json) in {}", root.display());
            }
            let mut build = vec!["build", "--release", "-p", "trm-cli"];
            if let Some(f) = features.as_deref() {
                build.extend(["--features", f]);
            }
            cargo(&build)?;
            let mut failed = Vec::new();
            for d in &dirs {
                let status = Command::new("target/release/trm")
                    .args(["parity", "--quiet", "--backend", &backend])
                    .arg(d)
                    .status()?;
                if !status.success() {
                    failed.push(d.display().to_string());
                }
            }
            if !failed.is_empty() {
                bail!("parity failed on: {}", failed.join(", "));
            }
            println!("parity passed on {} fixture folder(s)", dirs.len());
            Ok(())
        }
        Task::Bench(task) => bench::run(task),
        Task::CheckGpu => {
            cargo(&["check", "-p", "trm-cli", "--features", "wgpu,cuda"])?;
            cargo(&["check", "-p", "trm-model", "--tests", "--features", "test-wgpu,test-cuda"])
        }
    }
}
