//! `trm`: train, evaluate and run Tiny Recursive Models. A thin layer over the library
//! crates: every command parses its arguments and calls one library entry point.

#![recursion_limit = "256"]
// The doc comments of the argument structs are clap's `--help` text, written for the
// terminal (`<list>`, `[arch]`), not rustdoc.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use clap::{Parser, Subcommand};
use trm_backend::BackendKind;

mod ar_cmd;
mod bench_cmd;
mod data_cmd;
mod parity_cmd;
mod train_cmd;

#[derive(Debug, Parser)]
#[command(name = "trm", version, about = "Tiny Recursive Models on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and inspect datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train from a config (builds the data if needed), or resume a run.
    Train(train_cmd::TrainArgs),
    /// Evaluate a checkpoint on a dataset's test split.
    Eval(train_cmd::EvalArgs),
    /// Solve one Sudoku or maze given on the command line.
    Solve(train_cmd::SolveArgs),
    /// Train an autoregressive TRM (or a baseline, or the whole baseline ladder) on a generated task.
    TrainAr(ar_cmd::TrainArArgs),
    /// Decode with a trained AR-TRM: the generated tokens and the refinement steps each took.
    Generate(ar_cmd::GenerateArgs),
    /// Plot a run's metrics to PNG.
    Plot(train_cmd::PlotArgs),
    /// Time a training step, inference and a matmul on synthetic batches.
    Bench(bench_cmd::BenchArgs),
    /// Check the model against tensors recorded from the official PyTorch code.
    Parity(parity_cmd::ParityArgs),
    /// List the backends compiled into this binary.
    Backends,
}

fn main() -> anyhow::Result<()> {
    // Reuse freed multi-MB buffers instead of page-faulting them in again (glibc; up to
    // 1.35-1.47x faster CPU inference in its own process, see trm_backend::keep_freed_memory).
    if trm_backend::keep_freed_memory() == trm_backend::AllocatorTuning::Refused {
        eprintln!("note: glibc refused the malloc settings (trm_backend::keep_freed_memory); CPU runs may be slower");
    }
    let command = Cli::parse().command;
    // The CPU kernels split work with rayon; running the command on a pool worker saves two
    // context switches per kernel call (see trm_backend::run_on_compute_pool).
    trm_backend::run_on_compute_pool(|| run(command))
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Parity(args) => parity_cmd::run(args),
        Command::Backends => {
            for kind in BackendKind::ALL {
                let state = if kind.is_compiled() { "compiled in" } else { "not compiled (cargo feature missing)" };
                println!("{kind:<5} {state:<40} feature `{}`", kind.cargo_feature());
                // A GPU backend compiled in: does its device 0 start here?
                if kind.is_compiled() && kind != BackendKind::Cpu {
                    match trm_backend::check_device(kind, 0) {
                        Ok(()) => println!("      device 0 starts"),
                        Err(e) => println!("      {e}"),
                    }
                }
            }
            Ok(())
        }
        Command::Train(a) => train_cmd::run_train(a),
        Command::Eval(a) => train_cmd::run_eval(a),
        Command::Solve(a) => train_cmd::run_solve(a),
        Command::Plot(a) => train_cmd::run_plot(a),
        Command::TrainAr(a) => ar_cmd::run_train_ar(a),
        Command::Generate(a) => ar_cmd::run_generate(a),
        Command::Bench(a) => {
            let (backend, device) = (a.backend, a.device);
            bench_cmd::run(a, backend, device)
        }
    }
}
