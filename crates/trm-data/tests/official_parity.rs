//! Parity with the official Python builders: datasets they wrote open unchanged, and our
//! builders write byte-identical files from the same inputs (see fixtures/README.md).

mod common;

use common::{assert_same_files, assert_same_files_except, fixtures, TempDir};
use trm_data::arc::build::ArcRecipe;
use trm_data::maze::build::MazeRecipe;
use trm_data::npy::U8Matrix;
use trm_data::sudoku::build::SudokuRecipe;
use trm_data::{DatasetRecipe, NoProgress, PuzzleDataset};

#[test]
fn official_datasets_open_unchanged() {
    for (name, examples) in [
        ("arc_official/train", 44),
        ("arc_official/test", 15),
        ("sudoku_official/train", 16),
        ("sudoku_official/test", 3),
        ("maze_official/train", 16),
        ("maze_official/test", 1),
    ] {
        let ds = PuzzleDataset::open(&fixtures().join("official").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.num_examples(), examples, "{name}");
    }
    let arc = PuzzleDataset::open(&fixtures().join("official/arc_official/train")).unwrap();
    assert_eq!(arc.identifiers().unwrap().unwrap().len(), 23);
}

#[test]
fn arc_build_is_byte_identical() {
    let out = TempDir::new("arc-parity");
    let recipe = DatasetRecipe::Arc(ArcRecipe {
        input_file_prefix: Some(fixtures().join("official/arc_input/arc-agi")),
        subsets: Some(vec!["train".into(), "evalx".into()]),
        test_set_name: Some("evalx".into()),
        num_aug: 4,
        seed: 42,
        ..ArcRecipe::default()
    });
    let s = recipe.build(out.path(), &NoProgress).unwrap();
    assert_eq!(s.num_puzzle_identifiers, 23);
    assert_eq!(s.notes, vec!["[Puzzle t02] augmentation not full, only 2".to_string()]);
    assert_same_files(&fixtures().join("official/arc_official"), out.path());
}

#[test]
fn sudoku_build_is_byte_identical() {
    let out = TempDir::new("sudoku-parity");
    let input = fixtures().join("official/sudoku_input");
    let recipe = DatasetRecipe::Sudoku(SudokuRecipe {
        size: 9,
        train: Some(4),
        test: None,
        num_aug: 3,
        seed: 123,
        train_csv: Some(input.join("train.csv")),
        test_csv: Some(input.join("test.csv")),
        min_difficulty: None,
        givens: None,
    });
    recipe.build(out.path(), &NoProgress).unwrap();
    // The official builder stores augmented training tokens as int64 (its digit map is an
    // int64 array); ours are uint8, as the layout intends. Same values, different dtype.
    let wide = ["train/all__inputs.npy", "train/all__labels.npy"];
    let official = fixtures().join("official/sudoku_official");
    assert_same_files_except(&official, out.path(), &wide);
    for f in wide {
        let a = U8Matrix::open(&official.join(f)).unwrap();
        let b = U8Matrix::open(&out.path().join(f)).unwrap();
        assert_eq!((a.rows(), a.cols()), (16, 81));
        assert_eq!(a.data(), b.data(), "{f}");
    }
}

#[test]
fn maze_build_is_byte_identical() {
    let out = TempDir::new("maze-parity");
    let input = fixtures().join("official/maze_input");
    let recipe = DatasetRecipe::Maze(MazeRecipe {
        size: 5,
        train: 0,
        test: 0,
        min_path_len: None,
        aug: true,
        seed: 0,
        train_csv: Some(input.join("train.csv")),
        test_csv: Some(input.join("test.csv")),
        subsample: None,
    });
    recipe.build(out.path(), &NoProgress).unwrap();
    assert_same_files(&fixtures().join("official/maze_official"), out.path());
}
