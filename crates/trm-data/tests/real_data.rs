//! Tests on the real benchmark files in the project's shared data. Each skips, saying why,
//! when the data is absent (`$TRM_SHARED_DATA` or `../../../shared/data` from this crate).

mod common;

use std::collections::HashSet;

use common::{shared_data, TempDir};
use trm_data::arc::build::{ArcRecipe, ArcVersion};
use trm_data::arc::encode::{crop, encode, parse_identifier, ArcAug};
use trm_data::arc::{read_kaggle_subset, read_task_dir, ArcTask, Section};
use trm_data::numpy_rng::NumpyRng;
use trm_data::sudoku::build::SudokuHardRecipe;
use trm_data::sudoku::canonical::Canonicalizer;
use trm_data::sudoku::{read_csv, SudokuShape};
use trm_data::{DatasetRecipe, NoProgress, PuzzleDataset};

/// Encode, augment, invert and crop every grid of every task, under every dihedral id and
/// two colour permutations each, going through the identifier name as the evaluator does.
fn round_trip(tasks: &[ArcTask], rng: &mut NumpyRng) -> usize {
    let mut grids = 0;
    for t in tasks {
        for (_, pairs) in &t.sections {
            for p in pairs {
                for g in [&p.input, &p.output] {
                    for tid in 0..8u8 {
                        for _ in 0..2 {
                            let mut colours: Vec<u8> = (1..10).collect();
                            rng.shuffle(&mut colours);
                            let mut perm = [0u8; 10];
                            perm[1..].copy_from_slice(&colours);
                            let name = ArcAug { tid, perm }.name(&t.name);
                            let (task, aug) = parse_identifier(&name).unwrap();
                            assert_eq!(task, t.name);
                            let aug = aug.unwrap();
                            let back = aug.invert(&crop(&encode(&aug.apply(g))));
                            assert_eq!(&back, g, "task {} tid {tid}", t.name);
                        }
                    }
                    grids += 1;
                }
            }
        }
    }
    grids
}

#[test]
fn arc_round_trip_on_every_real_task() {
    let Some(arc) = shared_data("arc") else { return };
    let mut rng = NumpyRng::new(0);
    let mut total = 0;
    for dir in [
        "arc-agi-1/training",
        "arc-agi-1/evaluation",
        "arc-agi-2/training",
        "arc-agi-2/evaluation",
        "conceptarc/corpus",
        "conceptarc/MinimalTasks",
    ] {
        let tasks = read_task_dir(&arc.join(dir)).unwrap();
        total += round_trip(&tasks, &mut rng);
    }
    for subset in ["training", "evaluation", "concept", "training2", "evaluation2"] {
        let tasks = read_kaggle_subset(&arc.join("trm-kaggle-combined/arc-agi"), subset).unwrap();
        total += round_trip(&tasks, &mut rng);
    }
    eprintln!("{total} grids round-tripped");
    assert!(total > 30_000);
}

#[test]
fn kaggle_subset_counts_match_the_reference() {
    let Some(arc) = shared_data("arc/trm-kaggle-combined") else { return };
    // (tasks, demonstration pairs, test inputs) from the TRM reference, section 6.3.
    for (subset, want) in [
        ("training", (400, 1302, 416)),
        ("evaluation", (400, 1363, 419)),
        ("concept", (160, 427, 480)),
        ("training2", (1000, 3232, 1076)),
        ("evaluation2", (120, 358, 172)),
    ] {
        let tasks = read_kaggle_subset(&arc.join("arc-agi"), subset).unwrap();
        let demos: usize = tasks.iter().map(|t| t.pairs(Section::Train).count()).sum();
        let tests: usize = tasks.iter().map(|t| t.pairs(Section::Test).count()).sum();
        assert_eq!((tasks.len(), demos, tests), want, "{subset}");
    }
}

#[test]
fn arc1_build_with_two_augmentations() {
    let Some(_) = shared_data("arc/trm-kaggle-combined") else { return };
    let out = TempDir::new("arc1-aug2");
    let recipe = DatasetRecipe::Arc(ArcRecipe { version: ArcVersion::Arc1, num_aug: 2, ..ArcRecipe::default() });
    let s = recipe.build(out.path(), &NoProgress).unwrap();
    // Reference: 3,988 training examples over 960 groups; 419 test inputs of 400 tasks.
    assert_eq!((s.train.groups, s.test.groups), (960, 400));
    assert_eq!((s.train.examples, s.test.examples), (3 * 3988, 3 * 419));
    assert_eq!(s.num_puzzle_identifiers, 1 + 3 * 960);
    let train = PuzzleDataset::open(&out.path().join("train")).unwrap();
    let test = PuzzleDataset::open(&out.path().join("test")).unwrap();
    assert_eq!(train.metadata().num_puzzle_identifiers, test.metadata().num_puzzle_identifiers);
    let tp = trm_data::arc::read_tasks_json(&out.path().join("test_puzzles.json")).unwrap();
    assert_eq!(tp.len(), 400);
    // Every test example maps back to its original test input through its identifier.
    let names = test.identifiers().unwrap().unwrap();
    let set = &test.sets()[0];
    for i in (0..set.num_examples()).step_by(7) {
        let p = set.puzzle_of_example(i);
        let (task, aug) = parse_identifier(&names[set.puzzle_identifier(p) as usize]).unwrap();
        let k = i - set.puzzle_examples(p).start;
        let original = tp.iter().find(|t| t.name == task).unwrap().pairs(Section::Test).nth(k).unwrap();
        let aug = aug.unwrap_or(ArcAug::IDENTITY);
        assert_eq!(aug.invert(&crop(set.inputs(i))), original.input);
        assert_eq!(aug.invert(&crop(set.labels(i))), original.output);
    }
}

#[test]
fn tdoku_lists_read_and_validate() {
    let Some(dir) = shared_data("sudoku/tdoku/csv") else { return };
    let shape = SudokuShape::for_size(9).unwrap();
    for (name, n) in [
        ("puzzles2_17_clue", 49_158),
        ("puzzles3_magictour_top1465", 1_465),
        ("puzzles5_forum_hardest_1905_11+", 48_766),
        ("puzzles6_forum_hardest_1106", 375),
    ] {
        assert_eq!(read_csv(&dir.join(format!("{name}.csv")), shape).unwrap().len(), n, "{name}");
    }
}

#[test]
fn royle_17_clue_puzzles_are_pairwise_inequivalent() {
    let Some(dir) = shared_data("sudoku/tdoku/csv") else { return };
    let shape = SudokuShape::for_size(9).unwrap();
    let puzzles = read_csv(&dir.join("puzzles2_17_clue.csv"), shape).unwrap();
    let c = Canonicalizer::new(shape);
    // Royle's list is a list of essentially different puzzles.
    let forms: HashSet<Vec<u8>> = puzzles.iter().take(1500).map(|p| c.canonical(&p.question)).collect();
    assert_eq!(forms.len(), 1500);
}

#[test]
fn sudoku_hard_keeps_test_inequivalent_to_train() {
    let Some(dir) = shared_data("sudoku/tdoku") else { return };
    let out = TempDir::new("sudoku-hard-small");
    let recipe = SudokuHardRecipe {
        tdoku_dir: Some(dir),
        lists: vec!["puzzles6_forum_hardest_1106".into()],
        train: 100,
        num_aug: 3,
        test: None,
        seed: 0,
    };
    let s = DatasetRecipe::SudokuHard(recipe).build(out.path(), &NoProgress).unwrap();
    assert_eq!((s.train.examples, s.train.groups), (400, 100));
    assert_eq!(s.test.examples + 100, 375, "375 distinct puzzles in the list");
    let shape = SudokuShape::for_size(9).unwrap();
    let c = Canonicalizer::new(shape);
    let form = |tokens: &[u8]| c.canonical(&tokens.iter().map(|t| t - 1).collect::<Vec<_>>());
    let train = PuzzleDataset::open(&out.path().join("train")).unwrap();
    let test = PuzzleDataset::open(&out.path().join("test")).unwrap();
    let train_forms: HashSet<Vec<u8>> = (0..train.num_examples()).map(|i| form(train.example(i).unwrap().0)).collect();
    assert_eq!(train_forms.len(), 100, "augmented copies share their original's class");
    for i in 0..test.num_examples() {
        assert!(!train_forms.contains(&form(test.example(i).unwrap().0)), "test {i} equivalent to a train puzzle");
    }
}
