//! The `trm` command-line tool.

use clap::{Parser, Subcommand};

mod train_cmd;

#[derive(Debug, Parser)]
#[command(name = "trm", version, about = "Tiny Recursive Models on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train from a config (builds the data if needed), or resume a run.
    Train(train_cmd::TrainArgs),
    /// Evaluate a checkpoint on a dataset's test split.
    Eval(train_cmd::EvalArgs),
    /// Solve one Sudoku or maze given on the command line.
    Solve(train_cmd::SolveArgs),
    /// Plot a run's metrics to PNG.
    Plot(train_cmd::PlotArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train_cmd::run_train(a),
        Command::Eval(a) => train_cmd::run_eval(a),
        Command::Solve(a) => train_cmd::run_solve(a),
        Command::Plot(a) => train_cmd::run_plot(a),
    }
}
