//! Runs resumed or evaluated with damaged, edited or foreign files: every case is an error
//! that says what is wrong, never a panic or a run that silently does something else.

use std::path::{Path, PathBuf};

use trm_data::{DatasetRecipe, NoProgress, PuzzleDataset};
use trm_train::{evaluate, latest_checkpoint, train, RunOptions, Silent, TrainConfig};

type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
type Inner = burn::backend::NdArray<f32>;

mod common;

fn scratch(name: &str) -> PathBuf {
    common::scratch("trm-damaged-runs", name)
}

/// A tiny official-mode run on generated 4x4 Sudoku (48 train / 12 test puzzles), in a
/// fresh folder.
fn config(name: &str, edit: impl Fn(&str) -> String) -> TrainConfig {
    config_at(&scratch(name), edit)
}

/// The same config with its run and data in `root` (left as it is).
fn config_at(root: &Path, edit: impl Fn(&str) -> String) -> TrainConfig {
    let arch =
        "t_cycles = 1\nn_cycles = 1\nn_sup = 2\npos_encodings = \"rope\"\npuzzle_emb_ndim = 16\npuzzle_emb_len = 1";
    let text = common::tiny_sudoku_toml(&root.join("run"), &root.join("data"), arch, "");
    TrainConfig::from_toml_str(&edit(&text)).unwrap()
}

fn run(cfg: &TrainConfig, resume: bool, stop_after: Option<u64>) -> Result<trm_train::RunOutcome, String> {
    let options = RunOptions { resume, stop_after_steps: stop_after };
    train::<B>(cfg.clone(), &options, Default::default(), &NoProgress, &mut Silent).map_err(|e| e.to_string())
}

/// A run stopped after 3 steps: `checkpoints/step-00000003`.
fn stopped_run(name: &str) -> (TrainConfig, PathBuf) {
    let cfg = config(name, |t| t.to_string());
    run(&cfg, false, Some(3)).unwrap();
    let ckpt = latest_checkpoint(&cfg.out_dir).unwrap();
    assert!(ckpt.ends_with("step-00000003"), "{}", ckpt.display());
    (cfg, ckpt)
}

fn edit_state(ckpt: &Path, f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let path = ckpt.join("state.json");
    let whole = std::fs::read(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    whole
}

#[test]
fn an_edited_or_damaged_state_json_is_an_error_not_a_panic() {
    let (cfg, ckpt) = stopped_run("state-json");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 8] = [
        (|v| v["carry"]["batch_size"] = 1000.into(), "the carry holds 1000 rows"),
        (|v| v["carry"]["seq_len"] = 81.into(), "rows of 81 tokens"),
        (|v| v["carry"]["steps"] = serde_json::json!([1]), "the carry's arrays have lengths"),
        (|v| v["carry"]["inputs"] = serde_json::json!([1, 2]), "the carry's arrays have lengths"),
        (|v| v["carry"]["inputs"][0] = 999.into(), "input token 999"),
        (|v| v["sampler"]["config"]["global_batch_size"] = 16.into(), "written with global_batch_size 16"),
        (|v| v["step"] = 1_000_000.into(), "disagrees with the folder name"),
        (|v| v["total_steps"] = 0.into(), "budget of 0 steps"),
    ];
    for (edit, expected) in cases {
        let whole = edit_state(&ckpt, edit);
        let err = run(&cfg, true, None).expect_err(expected);
        assert!(err.contains(expected) && err.contains("state.json"), "{expected}: {err}");
        std::fs::write(ckpt.join("state.json"), whole).unwrap();
    }
    run(&cfg, true, None).unwrap();
}

#[test]
fn resuming_with_another_architecture_or_optimizer_is_an_error() {
    let (cfg, _) = stopped_run("arch");
    let root = cfg.out_dir.parent().unwrap().to_path_buf();
    for (from, to, expected) in [
        ("hidden_size = 16", "hidden_size = 32", "hidden_size 16 (config: 32)"),
        ("num_heads = 2", "num_heads = 4", "num_heads 2 (config: 4)"),
        ("n_sup = 2", "n_sup = 3", "n_sup 2 (config: 3)"),
        ("[arch]", "[arch]\nlayers = 3", "layers 2 (config: 3)"),
        ("global_batch_size = 8", "global_batch_size = 16", "global_batch_size 8"),
        ("[train]", "[train]\noptimizer = \"adamw\"", "optimizer state is for AdamAtan2"),
    ] {
        let edited = config_at(&root, |t| t.replace(from, to));
        let err = run(&edited, true, None).expect_err(expected);
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // A checkpoint from before the config was recorded in state.json: the weights are
    // checked against model.safetensors' config, then record by record.
    let ckpt = latest_checkpoint(&cfg.out_dir).unwrap();
    edit_state(&ckpt, |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("model_config");
        o.remove("optimizer");
    });
    let edited = config_at(&root, |t| t.replace("hidden_size = 16", "hidden_size = 32"));
    let err = run(&edited, true, None).unwrap_err();
    assert!(err.contains("hidden_size 16 (config: 32)"), "{err}");
    std::fs::remove_file(ckpt.join("model.safetensors")).unwrap();
    let err = run(&edited, true, None).unwrap_err();
    assert!(err.contains("raw.bin") && err.contains("not of this model's architecture"), "{err}");
}

#[test]
fn damaged_state_tensors_and_an_empty_latest_file() {
    let (cfg, ckpt) = stopped_run("state-tensors");
    let path = ckpt.join("state.safetensors");
    let whole = std::fs::read(&path).unwrap();
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let err = run(&cfg, true, None).unwrap_err();
    assert!(err.contains("state.safetensors") && err.contains("checksum"), "{err}");
    std::fs::write(&path, whole).unwrap();
    // An empty `latest` named the checkpoints folder itself ("checkpoints/state.json: No such
    // file"); now it is ignored like a missing one.
    std::fs::write(cfg.out_dir.join("checkpoints").join("latest"), "").unwrap();
    assert_eq!(latest_checkpoint(&cfg.out_dir).unwrap(), ckpt);
    assert_eq!(run(&cfg, true, None).unwrap().steps, 6);
}

#[test]
fn nothing_to_train_on_is_an_error_not_a_finished_run() {
    let cfg = config("too-big-batch", |t| t.replace("global_batch_size = 8", "global_batch_size = 1000"));
    let err = run(&cfg, false, None).unwrap_err();
    assert!(err.contains("no full batch of 1000 could be drawn"), "{err}");
    let cfg = config("empty-test", |t| t.replace("test = 12", "test = 0"));
    let err = run(&cfg, false, None).unwrap_err();
    assert!(err.contains("test split came out empty"), "{err}");
    let cfg = config("eval-none", |t| t.replace("[run]", "[run]\neval_max_examples = 0"));
    let err = run(&cfg, false, None).unwrap_err();
    assert!(err.contains("run.eval_max_examples"), "{err}");
}

#[test]
fn evaluating_a_model_on_another_task_is_an_error() {
    let (cfg, ckpt) = stopped_run("other-task");
    let model: trm_model::Trm<Inner> =
        trm_model::load_model(&ckpt.join("model.safetensors"), &Default::default()).unwrap();
    let test = PuzzleDataset::open(&cfg.data.dir.join("test")).unwrap();
    // Larger batches than the split are cut to it (a batch of usize::MAX overflowed).
    let e = evaluate(&model, &test, usize::MAX, None, |_, _| {}).unwrap();
    assert_eq!(e.examples, 12);
    let err = evaluate(&model, &test, 8, Some(0), |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("nothing to evaluate"), "{err}");
    // 6x6 Sudoku: 36 tokens, vocabulary 8. This panicked inside the embedding lookup.
    let dir = scratch("other-task-6x6");
    let recipe: DatasetRecipe =
        toml::from_str("kind = \"sudoku\"\nsize = 6\ntrain = 4\ntest = 4\ngivens = 20\n").unwrap();
    recipe.build(&dir, &NoProgress).unwrap();
    let six = PuzzleDataset::open(&dir.join("test")).unwrap();
    let err = evaluate(&model, &six, 8, None, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("does not fit this dataset") && err.contains("seq_len 16"), "{err}");
}
