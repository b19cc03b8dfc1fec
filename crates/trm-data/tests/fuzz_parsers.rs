//! Fuzzing every parser with proptest: random bytes and mutations of valid inputs must give
//! `Ok` or `Err`, never a panic. `fixtures/fuzz/` is the regression corpus, replayed first.

mod common;

use std::path::Path;

use common::{fixtures, TempDir};
use proptest::prelude::*;
use trm_data::arc::encode::{crop, parse_identifier};
use trm_data::sudoku::SudokuShape;
use trm_data::{arc, csv, maze, npy, sudoku, DatasetMetadata, PuzzleDataset};

/// Run every bytes-level parser on `bytes`.
fn feed_all(bytes: &[u8]) {
    let p = Path::new("fuzz");
    let _ = npy::parse_header(p, bytes);
    let text = String::from_utf8_lossy(bytes);
    let _ = csv::parse(&text);
    for n in [4, 6, 9] {
        let _ = sudoku::parse_csv(p, &text, SudokuShape::for_size(n).unwrap());
        let _ = sudoku::parse_grid(&text, n);
    }
    let _ = maze::parse_csv(p, &text);
    let _ = arc::parse_task_file(p, "fuzz", bytes);
    let _ = serde_json::from_slice::<DatasetMetadata>(bytes);
    let _ = parse_identifier(&text);
    let _ = crop(bytes);
}

#[test]
fn regression_corpus() {
    let dir = fixtures().join("fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        feed_all(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Each corpus file is a bad input for the parser its name starts with.
        let shape = SudokuShape::for_size(9).unwrap();
        let failed = if name.starts_with("npy_") {
            npy::parse_header(&path, &bytes).is_err()
        } else if name.starts_with("csv_") {
            sudoku::read_csv(&path, shape).is_err() && maze::read_csv(&path).is_err()
        } else if name.starts_with("sudoku_") {
            sudoku::read_csv(&path, shape).is_err()
        } else if name.starts_with("maze_") {
            maze::read_csv(&path).is_err()
        } else if name.starts_with("arc_") {
            arc::parse_task_file(&path, "t", &bytes).is_err()
        } else if name.starts_with("dataset_json") {
            let d = TempDir::new("corpus-meta");
            std::fs::write(d.path().join("dataset.json"), &bytes).unwrap();
            PuzzleDataset::open(d.path()).is_err()
        } else {
            npy::parse_header(&path, &bytes).is_err()
        };
        assert!(failed, "{name} was accepted");
        n += 1;
    }
    assert!(n >= 15);
}

fn mutate(mut v: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, pos, byte) in ops {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = pos % v.len();
        match kind % 4 {
            0 => v[i] = byte,
            1 => v.truncate(i),
            2 => v.insert(i, byte),
            _ => {
                v.remove(i);
            }
        }
    }
    v
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
}

fn sample_inputs() -> Vec<Vec<u8>> {
    let off = fixtures().join("official");
    [
        "arc_official/test/all__puzzle_indices.npy",
        "maze_official/train/all__inputs.npy",
        "sudoku_input/train.csv",
        "maze_input/train.csv",
        "arc_official/train/dataset.json",
        "arc_official/identifiers.json",
    ]
    .iter()
    .map(|f| std::fs::read(off.join(f)).unwrap())
    .chain([br#"{"train":[{"input":[[1,2],[3,4]],"output":[[5]]}],"test":[{"input":[[0]],"output":[[9]]}]}"#.to_vec()])
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        feed_all(&bytes);
    }

    #[test]
    fn mutated_valid_inputs_never_panic(which in 0usize..7, ops in ops()) {
        let samples = sample_inputs();
        feed_all(&mutate(samples[which].clone(), &ops));
    }

    #[test]
    fn identifier_and_grid_text_never_panic(s in "[a-z0-9|t]{0,40}", g in "[.0-9]{0,90}") {
        let _ = parse_identifier(&s);
        for n in [4, 6, 9] {
            let _ = sudoku::parse_grid(&g, n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A whole split with one file damaged must open with an error or not at all, no panic.
    #[test]
    fn damaged_split_never_panics(file in 0usize..6, ops in ops()) {
        let names = ["dataset.json", "all__inputs.npy", "all__labels.npy", "all__puzzle_identifiers.npy", "all__puzzle_indices.npy", "all__group_indices.npy"];
        let src = fixtures().join("official/maze_official/train");
        let d = TempDir::new(&format!("damaged-{file}-{}", ops.len()));
        for n in names {
            std::fs::copy(src.join(n), d.path().join(n)).unwrap();
        }
        let bytes = std::fs::read(src.join(names[file])).unwrap();
        std::fs::write(d.path().join(names[file]), mutate(bytes, &ops)).unwrap();
        let _ = PuzzleDataset::open(d.path());
    }
}
