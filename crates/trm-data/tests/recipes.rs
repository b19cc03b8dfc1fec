//! Recipes: the TOML shape a training config embeds, and small offline builds end to end.

mod common;

use std::collections::HashSet;

use common::TempDir;
use trm_data::maze::build::MazeRecipe;
use trm_data::maze::{check_row, token_char};
use trm_data::sudoku::canonical::Canonicalizer;
use trm_data::sudoku::solver::Solver;
use trm_data::sudoku::SudokuShape;
use trm_data::{DatasetRecipe, NoProgress, PuzzleDataset};

#[derive(serde::Deserialize)]
struct Config {
    data: DatasetRecipe,
}

#[test]
fn toml_shapes() {
    let c: Config =
        toml::from_str("[data]\nkind = \"sudoku\"\nsize = 4\ntrain = 2000\ntest = 500\nnum_aug = 0\nseed = 0\n")
            .unwrap();
    let DatasetRecipe::Sudoku(s) = &c.data else { panic!("not sudoku") };
    assert_eq!((s.size, s.train, s.test, s.num_aug), (4, Some(2000), Some(500), 0));
    let c: Config = toml::from_str("[data]\nkind = \"sudoku-hard\"\n").unwrap();
    let DatasetRecipe::SudokuHard(h) = &c.data else { panic!("not sudoku-hard") };
    assert_eq!((h.train, h.num_aug, h.lists.len()), (1000, 1000, 3));
    let c: Config = toml::from_str("[data]\nkind = \"maze\"\nsize = 9\ntrain = 100\ntest = 100\naug = true\n").unwrap();
    assert!(matches!(c.data, DatasetRecipe::Maze(MazeRecipe { size: 9, aug: true, .. })));
    let c: Config = toml::from_str("[data]\nkind = \"arc\"\nversion = \"arc2\"\nnum_aug = 10\n").unwrap();
    let DatasetRecipe::Arc(a) = &c.data else { panic!("not arc") };
    assert_eq!((a.num_aug, a.seed), (10, 42));
    assert!(toml::from_str::<Config>("[data]\nkind = \"chess\"\n").is_err());
    // JSON round trip (recipe.json is written next to every build).
    let j = serde_json::to_string(&c.data).unwrap();
    assert_eq!(serde_json::from_str::<DatasetRecipe>(&j).unwrap(), c.data);
}

fn values(tokens: &[u8]) -> Vec<u8> {
    tokens.iter().map(|t| t - 1).collect()
}

#[test]
fn generated_sudoku_splits_are_unique_solvable_and_disjoint() {
    for (size, train, test, aug) in [(4, 300, 60, 2), (6, 60, 20, 1), (9, 12, 6, 1)] {
        let out = TempDir::new(&format!("gen-sudoku-{size}"));
        let text =
            format!("kind = \"sudoku\"\nsize = {size}\ntrain = {train}\ntest = {test}\nnum_aug = {aug}\nseed = 1\n");
        let recipe: DatasetRecipe = toml::from_str(&text).unwrap();
        let s = recipe.build(out.path(), &NoProgress).unwrap();
        assert_eq!((s.train.groups, s.train.examples, s.test.examples), (train, train * (1 + aug), test));
        assert_eq!((s.vocab_size, s.seq_len), (size + 2, size * size));
        let shape = SudokuShape::for_size(size).unwrap();
        let solver = Solver::new(shape);
        let canon = Canonicalizer::new(shape);
        let tr = PuzzleDataset::open(&out.path().join("train")).unwrap();
        let te = PuzzleDataset::open(&out.path().join("test")).unwrap();
        let mut train_forms = HashSet::new();
        for i in 0..tr.num_examples() {
            let (q, a) = tr.example(i).unwrap();
            let r = solver.solve(&values(q), 2, &[]);
            assert_eq!(r.solutions, 1, "{size}x{size} train {i}");
            assert_eq!(r.first.unwrap(), values(a));
            train_forms.insert(canon.canonical(&values(q)));
        }
        for i in 0..te.num_examples() {
            let (q, _) = te.example(i).unwrap();
            assert!(solver.is_unique(&values(q)));
            assert!(!train_forms.contains(&canon.canonical(&values(q))), "{size}x{size} test {i} equivalent to train");
        }
    }
}

#[test]
fn generated_maze_build() {
    let out = TempDir::new("gen-maze");
    let recipe = DatasetRecipe::Maze(MazeRecipe {
        size: 9,
        train: 20,
        test: 10,
        min_path_len: Some(14),
        aug: true,
        seed: 2,
        train_csv: None,
        test_csv: None,
        subsample: None,
    });
    let s = recipe.build(out.path(), &NoProgress).unwrap();
    assert_eq!((s.train.examples, s.train.groups, s.test.examples), (160, 20, 10));
    let tr = PuzzleDataset::open(&out.path().join("train")).unwrap();
    for i in 0..tr.num_examples() {
        let (q, a) = tr.example(i).unwrap();
        let q: Vec<u8> = q.iter().map(|&t| token_char(t)).collect();
        let a: Vec<u8> = a.iter().map(|&t| token_char(t)).collect();
        check_row(&q, &a, 9).unwrap();
        assert!(a.iter().filter(|&&c| c == b'o').count() >= 13, "path of at least 14 moves");
    }
}

#[test]
fn a_build_with_an_empty_split_is_an_error() {
    // A header-only CSV: before, a dataset of 0 examples was built and training "finished"
    // after 0 steps.
    let dir = TempDir::new("empty-split");
    let csv = dir.path().join("empty.csv");
    std::fs::write(&csv, "source,question,answer,rating\n").unwrap();
    let recipe: DatasetRecipe = serde_json::from_value(serde_json::json!({
        "kind": "sudoku", "size": 9, "train_csv": csv, "test_csv": csv
    }))
    .unwrap();
    let err = recipe.build(&dir.path().join("out"), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("train split came out empty"), "{err}");
    // Generated, with no test puzzles asked for.
    let recipe: DatasetRecipe =
        toml::from_str("kind = \"sudoku\"\nsize = 4\ntrain = 4\ntest = 0\ngivens = 8\n").unwrap();
    let out = dir.path().join("gen");
    let good: DatasetRecipe = toml::from_str("kind = \"sudoku\"\nsize = 4\ntrain = 4\ntest = 2\ngivens = 8\n").unwrap();
    good.build(&out, &NoProgress).unwrap();
    let err = recipe.build(&out, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("test split came out empty"), "{err}");
    // The failed build left no record of the earlier one over its own files.
    assert!(!out.join("recipe.json").exists());
}

#[test]
fn a_subsample_larger_than_the_csv_is_noted() {
    // `train = 5` on a one-puzzle CSV keeps that one puzzle (as the official builder does),
    // and the summary says so instead of leaving a split of 1 to be found later.
    let dir = TempDir::new("short-csv");
    let csv = dir.path().join("one.csv");
    let q = "4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........";
    let a = "468931527751624839392578461134756298289413675675289314846192753513867942927345186";
    std::fs::write(&csv, format!("source,question,answer,rating\nx,{q},{a},3\n")).unwrap();
    let recipe: DatasetRecipe = serde_json::from_value(serde_json::json!({
        "kind": "sudoku", "size": 9, "train_csv": csv, "test_csv": csv, "train": 5, "test": 1
    }))
    .unwrap();
    let summary = recipe.build(&dir.path().join("out"), &NoProgress).unwrap();
    assert_eq!(summary.notes, ["train: 5 puzzles asked for, the CSV has 1; all 1 kept"]);
    assert_eq!(PuzzleDataset::open(&dir.path().join("out/train")).unwrap().num_examples(), 1);
}

#[test]
fn impossible_maze_requests_are_errors_not_hangs() {
    let dir = TempDir::new("maze-impossible");
    // No path in a 5x5 grid has 1000 moves.
    let recipe: DatasetRecipe =
        toml::from_str("kind = \"maze\"\nsize = 5\ntrain = 2\ntest = 2\nmin_path_len = 1000\n").unwrap();
    let err = recipe.build(&dir.path().join("a"), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("min_path_len 1000 is impossible"), "{err}");
    // A 2x2 grid has a single maze up to rotation and reflection: asking for 4 used to run
    // through 200 million layouts.
    let start = std::time::Instant::now();
    let recipe: DatasetRecipe = toml::from_str("kind = \"maze\"\nsize = 2\ntrain = 2\ntest = 2\n").unwrap();
    let err = recipe.build(&dir.path().join("b"), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("distinct 2x2 mazes"), "{err}");
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
}
