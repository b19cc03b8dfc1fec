//! `trm`: train, evaluate and run Tiny Recursive Models. A thin layer over the library
//! crates: every command parses its arguments and calls one library entry point.

#![recursion_limit = "256"]

mod data_cmd;
mod parity_cmd;

use clap::{Parser, Subcommand};
use trm_backend::BackendKind;

#[derive(Debug, Parser)]
#[command(name = "trm", version, about = "Tiny Recursive Models in Rust (Burn)")]
struct Cli {
    /// Backend: cpu (ndarray), wgpu or cuda (the last two need their cargo feature).
    #[arg(long, global = true, default_value = "cpu")]
    backend: BackendKind,
    /// Device index on the backend.
    #[arg(long, global = true, default_value_t = 0)]
    device: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and inspect datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Check the model against tensors recorded from the official PyTorch code.
    Parity(parity_cmd::ParityArgs),
    /// List the backends compiled into this binary.
    Backends,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Parity(args) => parity_cmd::run(args, cli.backend, cli.device),
        Command::Backends => {
            for kind in BackendKind::ALL {
                let state = if kind.is_compiled() { "compiled in" } else { "not compiled (cargo feature missing)" };
                println!("{kind:<5} {state:<40} feature `{}`", kind.cargo_feature());
            }
            Ok(())
        }
    }
}
