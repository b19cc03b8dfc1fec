//! Training and evaluation of the autoregressive TRM and its baselines on the generated
//! AR tasks (trm-data `ar_tasks`): one TOML config per run ([`ArRunConfig`]), the training
//! loop ([`train_ar`]), evaluation that equals greedy decoding ([`evaluate_ar`]), and the
//! baseline ladder ([`ArRunConfig::ladder`], [`run_ladder`], [`ladder_table`]).

pub mod config;
pub mod engine;
pub mod eval;

pub use config::{ArModelKind, ArModelSpec, ArRunConfig, ArTaskSpec, ArTrainSpec, CommitPolicy};
pub use engine::{load_ar_trm, summary, train_ar, ArLearner, ArRunOutcome};
pub use eval::{evaluate_ar, pearson, ArEvalResult, ArPredict, ModePredictions};

use burn::tensor::backend::AutodiffBackend;

use crate::error::TrainError;

/// Trains every rung of `cfg.ladder()` in turn; writes `ladder.md` (the table) into `cfg.out_dir`.
pub fn run_ladder<B: AutodiffBackend>(
    cfg: &ArRunConfig,
    device: &B::Device,
    on_message: &mut dyn FnMut(&str),
) -> Result<Vec<ArRunOutcome>, TrainError> {
    let mut outcomes = Vec::new();
    for rung in cfg.ladder()? {
        outcomes.push(train_ar::<B>(&rung, device, on_message)?);
        let table = ladder_table(&outcomes);
        std::fs::create_dir_all(&cfg.out_dir).map_err(|e| TrainError::io(&cfg.out_dir, e))?;
        trm_model::checkpoint::write_atomic(&cfg.out_dir.join("ladder.md"), table.as_bytes())?;
    }
    Ok(outcomes)
}

/// A markdown table: one row per (run, mode) with parameters, exact accuracy in and beyond
/// the training length, token accuracy, steps per token, block evaluations per token, the
/// steps-difficulty correlation, KV bytes per token and training time.
pub fn ladder_table(outcomes: &[ArRunOutcome]) -> String {
    let mut out = String::from(
        "| model | mode | params | exact (test) | exact (long) | token (test) | steps/token mean (max) | block evals/token | corr(steps, difficulty) | KV bytes/token | train s | steps |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let modes: Vec<&str> = o.results.iter().filter(|r| r.split == "test").map(|r| r.mode.as_str()).collect();
        for mode in modes {
            let get = |split: &str| o.results.iter().find(|r| r.split == split && r.mode == mode);
            let (Some(t), long) = (get("test"), get("test_long")) else { continue };
            let corr = t.steps_difficulty_correlation.map_or("-".to_string(), |c| format!("{c:.2}"));
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {} | {:.3} | {:.2} ({}) | {:.1} | {} | {} | {:.0} | {} |\n",
                o.name,
                mode,
                o.params,
                t.exact_accuracy,
                long.map_or("-".to_string(), |l| format!("{:.3}", l.exact_accuracy)),
                t.token_accuracy,
                t.mean_steps,
                t.max_steps,
                t.block_evals_per_token,
                corr,
                o.kv_bytes_per_token,
                o.train_seconds,
                o.steps
            ));
        }
    }
    out
}
