//! TRM training: deep supervision (the official per-slot ACT loop, or the paper's
//! pseudo-code), AdamATan2/AdamW plus sign-SGD for the puzzle embeddings, warmup + cosine,
//! EMA, evaluation (fixed N_sup and adaptive halting, ARC voting), atomic checkpoints with
//! exact resume, and a JSONL metrics log. Generic over `B: AutodiffBackend`.
//!
//! ```no_run
//! use trm_train::{train, RunOptions, Silent, TrainConfig};
//! type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
//! let cfg = TrainConfig::from_file("configs/quickstart.toml".as_ref()).unwrap();
//! let out = train::<B>(cfg, &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
//! println!("{:?}", out.last_eval);
//! ```

#![recursion_limit = "256"]

pub mod ar;
pub mod arc_eval;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod engine;
pub mod error;
pub mod eval;
pub mod optim;
pub mod plot;
pub mod run;

pub use checkpoint::{latest_checkpoint, list_checkpoints, load_trainer, save_checkpoint};
pub use config::{ActMode, GradMode, OptimizerKind, TrainConfig};
pub use engine::{StepMetrics, Trainer};
pub use error::TrainError;
pub use eval::{evaluate, BatchPredictions, EvalMetrics};
pub use optim::{lr_factor, sign_sgd_rows, AdamAtan2, DenseOptimizer};
pub use run::{prepare_data, train, Observer, RunOptions, RunOutcome, Silent};
