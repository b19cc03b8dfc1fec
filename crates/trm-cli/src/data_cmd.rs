//! `trm data ...`: build datasets in the official layout and look at examples.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use trm_data::arc::build::{ArcRecipe, ArcVersion};
use trm_data::arc::encode::parse_identifier;
use trm_data::maze::build::MazeRecipe;
use trm_data::render::{detect_kind_in, render_example};
use trm_data::sudoku::build::{default_hard_lists, SudokuHardRecipe, SudokuRecipe};
use trm_data::{BuildSummary, DatasetRecipe, Progress, PuzzleDataset};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Build a dataset (out/train, out/test, out/identifiers.json) in the official layout.
    Build(BuildArgs),
    /// Render one example of a built split, with its label.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(subcommand)]
    pub kind: BuildKind,
}

#[derive(Debug, Subcommand)]
pub enum BuildKind {
    /// Sudoku from the official CSVs (--train-csv/--test-csv), or generated offline.
    Sudoku(SudokuArgs),
    /// Sudoku-Extreme-like set from the tdoku lists (see docs/data.md).
    SudokuHard(SudokuHardArgs),
    /// Maze from the official CSVs, or generated Maze-Hard style.
    Maze(MazeArgs),
    /// ARC-AGI-1 or -2 exactly as the official TRM builder.
    Arc(ArcArgs),
    /// Any recipe from a TOML or JSON file (`kind = "sudoku" | "sudoku-hard" | "maze" | "arc"`).
    Recipe {
        /// Recipe file; a TOML file may hold the recipe at top level or under `[data]`.
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SudokuArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// Grid side: 4, 6 or 9.
    #[arg(long, default_value_t = 9)]
    pub size: usize,
    /// Generated: training puzzles. CSV: subsample size.
    #[arg(long)]
    pub train: Option<usize>,
    /// Generated: test puzzles. CSV: seeded subsample of the test file.
    #[arg(long)]
    pub test: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub num_aug: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, requires = "test_csv")]
    pub train_csv: Option<PathBuf>,
    #[arg(long, requires = "train_csv")]
    pub test_csv: Option<PathBuf>,
    /// CSV: minimum rating. Generated: minimum solver guesses.
    #[arg(long)]
    pub min_difficulty: Option<u64>,
    /// Generated: number of clues to stop at (default: minimal puzzles).
    #[arg(long)]
    pub givens: Option<usize>,
}

#[derive(Debug, Args)]
pub struct SudokuHardArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// Folder with csv/<list>.csv (default: <shared data>/sudoku/tdoku).
    #[arg(long)]
    pub tdoku_dir: Option<PathBuf>,
    /// Lists forming the pool (repeat the flag); default the three hard lists.
    #[arg(long = "list")]
    pub lists: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub train: usize,
    #[arg(long, default_value_t = 1000)]
    pub num_aug: usize,
    #[arg(long)]
    pub test: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct MazeArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 30)]
    pub size: usize,
    #[arg(long, default_value_t = 1000)]
    pub train: usize,
    #[arg(long, default_value_t = 1000)]
    pub test: usize,
    /// Minimum shortest-path moves (default 110 for 30x30, else the side).
    #[arg(long)]
    pub min_path_len: Option<usize>,
    /// Add the 8 dihedral transforms of each training maze.
    #[arg(long)]
    pub aug: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, requires = "test_csv")]
    pub train_csv: Option<PathBuf>,
    #[arg(long, requires = "train_csv")]
    pub test_csv: Option<PathBuf>,
    #[arg(long)]
    pub subsample: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ArcArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// 1 (ARC-AGI-1 + ConceptARC) or 2 (ARC-AGI-2 + ConceptARC).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub version: u8,
    #[arg(long, default_value_t = 1000)]
    pub num_aug: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Kaggle file prefix (default: <shared data>/arc/trm-kaggle-combined/arc-agi).
    #[arg(long)]
    pub input_file_prefix: Option<PathBuf>,
    /// Subsets (repeat the flag); default from --version.
    #[arg(long = "subset")]
    pub subsets: Vec<String>,
    #[arg(long)]
    pub test_set_name: Option<String>,
    /// Read task folders instead (each folder = one subset named after it; repeat).
    #[arg(long = "folder")]
    pub folders: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A split directory (with dataset.json) or a dataset root (then --split picks one).
    pub dir: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Print ARC colours as digits instead of ANSI colour blocks.
    #[arg(long)]
    pub no_color: bool,
}

/// Progress bars for the library's build stages.
struct Bars(Mutex<Option<ProgressBar>>);

impl Progress for Bars {
    fn begin(&self, stage: &str, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:32} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(stage.to_owned());
        if let Ok(mut b) = self.0.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.0.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.0.lock() {
            if let Some(b) = b.take() {
                b.finish();
            }
        }
    }
}

fn recipe_of(kind: BuildKind) -> anyhow::Result<(DatasetRecipe, PathBuf)> {
    Ok(match kind {
        BuildKind::Sudoku(a) => (
            DatasetRecipe::Sudoku(SudokuRecipe {
                size: a.size,
                train: a.train,
                test: a.test,
                num_aug: a.num_aug,
                seed: a.seed,
                train_csv: a.train_csv,
                test_csv: a.test_csv,
                min_difficulty: a.min_difficulty,
                givens: a.givens,
            }),
            a.out,
        ),
        BuildKind::SudokuHard(a) => (
            DatasetRecipe::SudokuHard(SudokuHardRecipe {
                tdoku_dir: a.tdoku_dir,
                lists: if a.lists.is_empty() { default_hard_lists() } else { a.lists },
                train: a.train,
                num_aug: a.num_aug,
                test: a.test,
                seed: a.seed,
            }),
            a.out,
        ),
        BuildKind::Maze(a) => (
            DatasetRecipe::Maze(MazeRecipe {
                size: a.size,
                train: a.train,
                test: a.test,
                min_path_len: a.min_path_len,
                aug: a.aug,
                seed: a.seed,
                train_csv: a.train_csv,
                test_csv: a.test_csv,
                subsample: a.subsample,
            }),
            a.out,
        ),
        BuildKind::Arc(a) => (
            DatasetRecipe::Arc(ArcRecipe {
                version: if a.version == 2 { ArcVersion::Arc2 } else { ArcVersion::Arc1 },
                input_file_prefix: a.input_file_prefix,
                subsets: (!a.subsets.is_empty()).then_some(a.subsets),
                test_set_name: a.test_set_name,
                num_aug: a.num_aug,
                seed: a.seed,
                folders: (!a.folders.is_empty()).then_some(a.folders),
            }),
            a.out,
        ),
        BuildKind::Recipe { file, out } => (read_recipe(&file)?, out),
    })
}

/// A recipe from JSON, or TOML at top level or under `[data]`.
fn read_recipe(file: &Path) -> anyhow::Result<DatasetRecipe> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()));
    }
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let table = value.get("data").cloned().unwrap_or(value);
    table.try_into().with_context(|| format!("reading the recipe in {}", file.display()))
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

fn print_summary(s: &BuildSummary) {
    println!("built {}", s.out_dir.display());
    for (name, c) in [("train", &s.train), ("test", &s.test)] {
        println!("  {name:5}: {} examples, {} puzzles, {} groups", c.examples, c.puzzles, c.groups);
    }
    println!("  vocab {}, seq_len {}, {} puzzle identifiers", s.vocab_size, s.seq_len, s.num_puzzle_identifiers);
    println!("  {} on disk, {:.1} s", human_bytes(s.bytes), s.elapsed.as_secs_f64());
    for n in s.notes.iter().take(10) {
        println!("  note: {n}");
    }
    if s.notes.len() > 10 {
        println!("  ... and {} more notes", s.notes.len() - 10);
    }
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let dir = if a.dir.join("dataset.json").is_file() { a.dir.clone() } else { a.dir.join(&a.split) };
    let ds = PuzzleDataset::open_unverified(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let meta = ds.metadata();
    let (inputs, labels) = ds
        .example(a.index)
        .with_context(|| format!("index {} out of range: {} examples", a.index, ds.num_examples()))?;
    // The split is opened unverified (so a damaged one can still be looked at), so a token
    // the vocabulary does not have is named here rather than drawn as something else.
    for (what, tokens) in [("input", inputs), ("label", labels)] {
        if let Some(pos) = tokens.iter().position(|&t| t as usize >= meta.vocab_size) {
            bail!(
                "{}: example {} has {what} token {} at position {pos}, outside the vocabulary 0..{} of dataset.json",
                dir.display(),
                a.index,
                tokens[pos],
                meta.vocab_size
            );
        }
    }
    let id = ds.example_identifier(a.index).unwrap_or(0);
    let names = ds.identifiers()?.unwrap_or_default();
    let name = names.get(id as usize).map(String::as_str).unwrap_or("?");
    println!(
        "{}: example {} of {} | vocab {}, seq_len {} | puzzle identifier {id} ({name})",
        dir.display(),
        a.index,
        ds.num_examples(),
        meta.vocab_size,
        meta.seq_len
    );
    if let Ok((task, Some(aug))) = parse_identifier(name) {
        let perm: String = aug.perm.iter().map(|d| d.to_string()).collect();
        println!("ARC task {task}, dihedral transform {}, colour map {perm}", aug.tid);
    }
    print!("{}", render_example(detect_kind_in(&dir, meta), inputs, labels, !a.no_color));
    Ok(())
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Build(b) => {
            let (recipe, out) = recipe_of(b.kind)?;
            let summary = recipe.build(&out, &Bars(Mutex::new(None)))?;
            print_summary(&summary);
            Ok(())
        }
        DataCommand::Show(a) => show(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_names_a_token_outside_the_vocabulary() {
        let dir = std::env::temp_dir().join(format!("trm-data-show-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let recipe: DatasetRecipe = toml::from_str("kind = \"sudoku\"\nsize = 4\ntrain = 2\ntest = 1\n").unwrap();
        recipe.build(&dir, &trm_data::NoProgress).unwrap();
        let args = |index| ShowArgs { dir: dir.clone(), index, split: "train".into(), no_color: true };
        show(args(1)).unwrap();
        // Token 200 into the second example's third input cell (the uint8 data ends the file).
        let npy = dir.join("train/all__inputs.npy");
        let mut bytes = std::fs::read(&npy).unwrap();
        let at = bytes.len() - 16 + 2;
        bytes[at] = 200;
        std::fs::write(&npy, bytes).unwrap();
        let err = show(args(1)).unwrap_err().to_string();
        assert!(err.contains("example 1 has input token 200 at position 2, outside the vocabulary 0..6"), "{err}");
        show(args(0)).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
