//! `trm parity DIR`: compare the model with tensors recorded from the official code.

use std::path::PathBuf;

use anyhow::{bail, Context};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use trm_backend::{BackendJob, BackendKind};
use trm_model::parity::run_parity;

/// Arguments of `trm parity`.
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Fixture folder with config.json, checkpoint.pt (or weights.safetensors) and io.safetensors.
    pub dir: PathBuf,
    /// Write every tensor trm computed to this safetensors file, under the fixture's names.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print only failures and the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Backend: cpu (ndarray), wgpu or cuda (the last two need their cargo feature).
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Device index on the backend.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

struct Job(ParityArgs);

impl BackendJob for Job {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let report =
            run_parity::<B>(&args.dir, &device).with_context(|| format!("parity on {}", args.dir.display()))?;
        println!("parity {} on backend {kind}", args.dir.display());
        if !report.floors_measured {
            println!("(this backend has no float64: tolerances are the base ones, with no float32-rounding floor)");
        }
        println!("{:<64} {:>10} {:>10} {:>9}  ", "tensor", "rel err", "f32 floor", "tolerance");
        for row in &report.rows {
            if args.quiet && row.ok {
                continue;
            }
            let floor = row.floor.map(|f| format!("{f:.2e}")).unwrap_or_else(|| "-".into());
            let status = if row.ok { "ok" } else { "FAIL" };
            let note = row.note.as_deref().unwrap_or("");
            println!("{:<64} {:>10.2e} {:>10} {:>9.1e}  {status} {note}", row.name, row.rel_err, floor, row.tolerance);
        }
        for (name, why) in &report.skipped {
            println!("{name:<64} not compared: {why}");
        }
        let failed = report.rows.iter().filter(|r| !r.ok).count();
        println!(
            "{} tensors compared, {failed} out of tolerance, max rel err {:.3e}",
            report.rows.len(),
            report.max_rel_err()
        );
        if let Some(out) = &args.out {
            report.write(out).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
        if failed > 0 || report.rows.is_empty() {
            bail!("parity failed: {failed} tensor(s) out of tolerance");
        }
        Ok(())
    }
}

/// Runs `trm parity`.
pub fn run(args: ParityArgs) -> anyhow::Result<()> {
    let (backend, device) = (args.backend, args.device);
    trm_backend::dispatch(backend, device, Job(args))?
}
