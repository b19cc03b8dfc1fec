//! End-to-end runs on generated 4x4 Sudoku with a tiny model.

use std::path::Path;

use trm_train::{train, RunOptions, Silent, TrainConfig, TrainError};

type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

mod common;

fn config(name: &str, extra_train: &str) -> TrainConfig {
    let root = common::scratch("trm-train-tests", name);
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trm-train-tests").join(format!("data-{name}"));
    let arch = "t_cycles = 2\nn_cycles = 2\nn_sup = 3\nmlp_t = true\npos_encodings = \"none\"\npuzzle_emb_ndim = 16\npuzzle_emb_len = 1";
    let train = format!(
        "lr_min_ratio = 0.1\nweight_decay = 0.1\npuzzle_emb_lr = 1e-2\npuzzle_emb_weight_decay = 0.1\nema_rate = 0.9\n{extra_train}"
    );
    TrainConfig::from_toml_str(&common::tiny_sudoku_toml(&root.join("run"), &data, arch, &train)).unwrap()
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn resume_reproduces_the_uninterrupted_loss_curve() {
    let full = config("full", "");
    let out = train::<B>(full.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent)
        .unwrap();
    assert_eq!(out.steps, 6);
    let want = losses(&full.out_dir);
    assert_eq!(want.len(), 6);
    assert!(want.iter().all(|(_, l)| l.is_finite() && *l > 0.0));

    let split = config("split", "");
    let first = RunOptions { resume: false, stop_after_steps: Some(3) };
    assert_eq!(
        train::<B>(split.clone(), &first, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap().steps,
        3
    );
    let resume = RunOptions { resume: true, stop_after_steps: None };
    let out = train::<B>(split.clone(), &resume, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    assert_eq!(out.steps, 6);
    assert_eq!(losses(&split.out_dir), want, "resumed curve differs from the uninterrupted one");
    // The final exported checkpoints hold the same weights.
    let a = trm_model::checkpoint::read_tensors(&out.last_checkpoint.unwrap().join("model.safetensors")).unwrap();
    let b =
        trm_model::checkpoint::read_tensors(&full.out_dir.join("checkpoints/step-00000006/model.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        assert_eq!(v, &b[k], "tensor {k}");
    }
    // keep_last = 2: step 3 and step 6 remain.
    assert_eq!(trm_train::list_checkpoints(&split.out_dir).len(), 2);
}

/// The thread count does not change a run: at batch 32 the CPU step splits the batch into
/// two shares (one per thread on 2 threads, kernels split by rayon on 3, one after the
/// other on 1), and the loss curve and final weights are the same bits on each.
#[test]
fn the_thread_count_does_not_change_a_run() {
    let mut runs = Vec::new();
    for threads in [1, 2, 3] {
        let mut cfg = config(&format!("threads-{threads}"), "");
        cfg.train.global_batch_size = 32;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let out = pool
            .install(|| {
                train::<B>(cfg.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent)
            })
            .unwrap();
        assert_eq!(out.steps, 6);
        let weights =
            trm_model::checkpoint::read_tensors(&out.last_checkpoint.unwrap().join("model.safetensors")).unwrap();
        runs.push((threads, losses(&cfg.out_dir), weights));
    }
    let (_, want_losses, want_weights) = &runs[0];
    assert!(want_losses.iter().all(|(_, l)| l.is_finite() && *l > 0.0));
    for (threads, l, w) in &runs[1..] {
        assert_eq!(l, want_losses, "{threads} threads: loss curve");
        assert_eq!(w.len(), want_weights.len());
        for (k, v) in w {
            assert_eq!(v, &want_weights[k], "{threads} threads: tensor {k}");
        }
    }
}

/// A budget edited before a resume is the one the run keeps (it used to keep the
/// checkpoint's silently); one below the checkpoint's step is an error.
#[test]
fn resume_takes_the_step_budget_of_the_config() {
    let cfg = config("budget", "");
    let first = RunOptions { resume: false, stop_after_steps: Some(3) };
    train::<B>(cfg.clone(), &first, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    let resume = RunOptions { resume: true, stop_after_steps: None };
    let mut past = cfg.clone();
    past.train.max_steps = Some(2);
    let err = train::<B>(past, &resume, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap_err();
    assert!(err.to_string().contains("at step 3, past the run's budget of 2 steps"), "{err}");
    let mut shorter = cfg.clone();
    shorter.train.max_steps = Some(4);
    let out = train::<B>(shorter, &resume, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    assert_eq!(out.steps, 4);
    let steps: Vec<u64> = losses(&cfg.out_dir).into_iter().map(|(s, _)| s).collect();
    assert_eq!(steps, [1, 2, 3, 4]);
}

/// The quickstart's kind of run: paper-mode supervision (no carry between batches) and no
/// puzzle embeddings, so the checkpoint's state file holds no tensor at all.
#[test]
fn a_run_with_no_state_tensors_resumes_where_it_stopped() {
    let paper = |name: &str| {
        let mut cfg = config(name, "act = \"paper\"\n");
        cfg.arch.insert("puzzle_emb_ndim".into(), toml::Value::Integer(0));
        cfg.arch.insert("puzzle_emb_len".into(), toml::Value::Integer(0));
        cfg
    };
    let full = paper("paper-full");
    train::<B>(full.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    let split = paper("paper-split");
    let first = RunOptions { resume: false, stop_after_steps: Some(3) };
    let stopped = train::<B>(split.clone(), &first, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    assert!(stopped.steps >= 3 && stopped.steps < 6, "stopped at {}", stopped.steps);
    let resume = RunOptions { resume: true, stop_after_steps: None };
    let out = train::<B>(split.clone(), &resume, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    assert_eq!(out.steps, 6);
    assert_eq!(losses(&split.out_dir), losses(&full.out_dir), "resumed curve differs from the uninterrupted one");
}

#[test]
fn a_truncated_record_is_an_error_naming_its_file() {
    let cfg = config("truncated", "");
    train::<B>(cfg.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
    let last = trm_train::latest_checkpoint(&cfg.out_dir).unwrap();
    let resume_error = || {
        let resume = RunOptions { resume: true, stop_after_steps: None };
        train::<B>(cfg.clone(), &resume, Default::default(), &trm_data::NoProgress, &mut Silent)
            .expect_err("a damaged record must not load")
            .to_string()
    };
    for file in ["raw.bin", "ema.bin", "optim.bin"] {
        let path = last.join(file);
        let whole = std::fs::read(&path).unwrap();
        // Sealed (length and hash first): cut short, or one byte flipped.
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let err = resume_error();
        assert!(err.contains(file) && err.contains("truncated or padded"), "{err}");
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = resume_error();
        assert!(err.contains(file) && err.contains("payload hash does not match"), "{err}");
        // As checkpoints were written before records were sealed (the bare Burn record), cut
        // short: Burn's decoder panics, and that is an error naming the file too.
        let bare = &whole[24..];
        std::fs::write(&path, &bare[..bare.len() / 2]).unwrap();
        let err = resume_error();
        assert!(err.contains(file) && err.contains("truncated or corrupt (UnexpectedEnd"), "{err}");
        // The bare record whole still loads.
        std::fs::write(&path, bare).unwrap();
        let resume = RunOptions { resume: true, stop_after_steps: None };
        train::<B>(cfg.clone(), &resume, Default::default(), &trm_data::NoProgress, &mut Silent).unwrap();
        std::fs::write(&path, whole).unwrap();
    }
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let mut cfg = config("nan", "");
    cfg.train.lr = 1e30;
    cfg.train.lr_warmup_steps = 0;
    cfg.run.checkpoint_every = 1;
    let err = train::<B>(cfg.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent)
        .unwrap_err();
    let TrainError::NonFinite { step, .. } = err else { panic!("expected NonFinite, got {err}") };
    assert!(step >= 2, "the first step starts from finite weights");
    assert!(err.to_string().contains("last good checkpoint"));
    let last = trm_train::latest_checkpoint(&cfg.out_dir).unwrap();
    assert!(last.ends_with(format!("step-{:08}", step - 1)), "{}", last.display());
    let model =
        trm_model::load_model::<burn::backend::NdArray<f32>>(&last.join("model.safetensors"), &Default::default());
    assert!(model.is_ok());
}

#[test]
fn paper_mode_and_adamw_with_one_step_gradients_run() {
    let cfg = config("paper", "act = \"paper\"\noptimizer = \"adamw\"\ngrad = \"one_step\"\n");
    let out = train::<B>(cfg.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent)
        .unwrap();
    assert_eq!(out.steps, 6);
    let e = out.last_eval.unwrap();
    assert_eq!(e.examples, 12);
    assert_eq!(e.steps, 3.0);
    assert!((1.0..=3.0).contains(&e.adaptive_steps));
    // Paper mode: steps within a minibatch count 1, 2, 3.
    let text = std::fs::read_to_string(cfg.out_dir.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["steps"].as_f64(), Some(1.0));
}

#[test]
fn bad_config_is_rejected_before_any_work() {
    let mut cfg = config("bad", "");
    cfg.train.global_batch_size = 0;
    let err = train::<B>(cfg.clone(), &RunOptions::default(), Default::default(), &trm_data::NoProgress, &mut Silent)
        .unwrap_err();
    assert!(err.to_string().contains("train.global_batch_size"), "{err}");
    assert!(!cfg.out_dir.exists());
}
