//! Scaffolding shared by the end-to-end tests: scratch folders and the config of a tiny run
//! on generated 4x4 Sudoku.

use std::path::{Path, PathBuf};

/// `CARGO_TARGET_TMPDIR/<group>/<name>`, emptied.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(name);
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// The TOML of a tiny run (hidden 16, 2 heads, batch 8, 6 steps, a checkpoint every 3) on
/// generated 4x4 Sudoku (48 train / 12 test puzzles): `arch` adds lines to `[arch]` (cycles,
/// N_sup, mixer, embeddings), `train` lines to `[train]`.
pub fn tiny_sudoku_toml(out: &Path, data: &Path, arch: &str, train: &str) -> String {
    format!(
        r#"
out_dir = "{out}"
seed = 3
[data]
dir = "{data}"
[data.recipe]
kind = "sudoku"
size = 4
train = 48
test = 12
seed = 1
[arch]
hidden_size = 16
num_heads = 2
expansion = 2.0
{arch}
[train]
global_batch_size = 8
max_steps = 6
lr = 3e-3
lr_warmup_steps = 2
{train}
[run]
eval_interval = 100
checkpoint_every = 3
keep_last = 2
eval_batch_size = 8
"#,
        out = out.display(),
        data = data.display()
    )
}
