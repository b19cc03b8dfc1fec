//! The training sampler and the test iterator on a small hand-made dataset whose tokens
//! spell out (group, puzzle, example), so every property can be read off the batches.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::TempDir;
use trm_data::writer::{split_metadata, SetWriter};
use trm_data::{test_batches, PuzzleDataset, SamplerConfig, SamplerState, TrainSampler, IGNORE_LABEL_ID};

const GROUPS: usize = 10;

/// Group g has g % 3 + 1 puzzles; puzzle k of a group has k % 2 + 1 examples.
/// Input tokens: [g, global puzzle, example, 7]; labels [0, 1, 2, 3] (0 = ignored).
fn make(tag: &str) -> (TempDir, Arc<PuzzleDataset>) {
    let dir = TempDir::new(tag);
    let split = dir.path().join("train");
    let mut rows = Vec::new();
    for g in 0..GROUPS {
        for k in 0..g % 3 + 1 {
            rows.push((g, k % 2 + 1));
        }
    }
    let n: usize = rows.iter().map(|r| r.1).sum();
    let mut w = SetWriter::create(&split, "all", n, 4).unwrap();
    let mut prev_group = 0;
    for (p, &(g, examples)) in rows.iter().enumerate() {
        if g != prev_group {
            w.end_group();
            prev_group = g;
        }
        for e in 0..examples {
            w.push_examples(&[g as u8, p as u8, e as u8, 7], &[0, 1, 2, 3]).unwrap();
        }
        w.end_puzzle(p as i32 + 1);
    }
    w.end_group();
    let counts = w.finish().unwrap();
    let mut meta = split_metadata(&counts, 256, 4, rows.len() + 1, counts.puzzles);
    meta.blank_identifier_id = 0;
    meta.save(&split.join("dataset.json")).unwrap();
    let ds = PuzzleDataset::open(&split).unwrap();
    (dir, Arc::new(ds))
}

fn rows(b: &trm_data::Batch) -> Vec<[i32; 4]> {
    b.inputs.chunks(4).take(b.num_valid).map(|r| [r[0], r[1], r[2], r[3]]).collect()
}

#[test]
fn one_puzzle_per_group_and_drop_last() {
    let (_d, ds) = make("s1");
    assert_eq!(ds.sets()[0].num_groups(), GROUPS);
    let cfg = SamplerConfig { max_iters: Some(1), ..SamplerConfig::new(3, 4) };
    let batches: Vec<_> = TrainSampler::new(ds.clone(), cfg).unwrap().collect();
    // Each group gives all examples of one of its puzzles (1 or 2), so one epoch yields
    // between 10 and 20 examples: at most 5 full batches of 4, and at least 2.
    assert!((2..=5).contains(&batches.len()), "{}", batches.len());
    let mut groups_seen = Vec::new();
    for b in &batches {
        assert_eq!((b.batch_size, b.num_valid, b.global_valid), (4, 4, 4));
        assert_eq!(b.labels, [IGNORE_LABEL_ID, 1, 2, 3].repeat(4));
        for (r, id) in rows(b).iter().zip(&b.puzzle_identifiers) {
            assert_eq!(r[1] + 1, *id, "identifier of the row's puzzle");
            if groups_seen.last().map(|x: &(i32, i32)| x.0) != Some(r[0]) {
                groups_seen.push((r[0], r[1]));
            } else {
                assert_eq!(groups_seen.last().unwrap().1, r[1], "one puzzle per group visit");
            }
        }
    }
    let distinct: HashSet<i32> = groups_seen.iter().map(|x| x.0).collect();
    assert_eq!(distinct.len(), groups_seen.len(), "a group appears at most once per epoch");
}

#[test]
fn deterministic_and_resumable() {
    let (_d, ds) = make("s2");
    let cfg = SamplerConfig { epochs_per_iter: 3, ..SamplerConfig::new(11, 6) };
    let a: Vec<_> = TrainSampler::new(ds.clone(), cfg.clone()).unwrap().take(20).collect();
    let b: Vec<_> = TrainSampler::new(ds.clone(), cfg.clone()).unwrap().take(20).collect();
    assert_eq!(a, b);
    let other: Vec<_> = TrainSampler::new(ds.clone(), SamplerConfig::new(12, 6)).unwrap().take(20).collect();
    assert_ne!(a, other);
    let mut s = TrainSampler::new(ds.clone(), cfg).unwrap();
    for _ in 0..7 {
        s.next();
    }
    let text = serde_json::to_string(&s.state()).unwrap();
    let state: SamplerState = serde_json::from_str(&text).unwrap();
    let resumed: Vec<_> = TrainSampler::from_state(ds, state).unwrap().take(13).collect();
    assert_eq!(resumed, a[7..]);
}

#[test]
fn ranks_split_the_global_batch() {
    let (_d, ds) = make("s3");
    let whole: Vec<_> = TrainSampler::new(ds.clone(), SamplerConfig::new(5, 4)).unwrap().take(6).collect();
    let r0: Vec<_> =
        TrainSampler::new(ds.clone(), SamplerConfig { rank: 0, world_size: 2, ..SamplerConfig::new(5, 4) })
            .unwrap()
            .take(6)
            .collect();
    let r1: Vec<_> =
        TrainSampler::new(ds.clone(), SamplerConfig { rank: 1, world_size: 2, ..SamplerConfig::new(5, 4) })
            .unwrap()
            .take(6)
            .collect();
    for ((w, a), b) in whole.iter().zip(&r0).zip(&r1) {
        assert_eq!(a.batch_size, 2);
        assert_eq!([a.inputs.clone(), b.inputs.clone()].concat(), w.inputs);
        assert_eq!(a.global_valid, 4);
    }
    assert!(TrainSampler::new(ds, SamplerConfig { world_size: 3, ..SamplerConfig::new(5, 4) }).is_err());
}

#[test]
fn impossible_batch_ends_instead_of_spinning() {
    let (_d, ds) = make("s4");
    // 1000 examples per batch can never be filled from at most 20 per epoch.
    assert_eq!(TrainSampler::new(ds, SamplerConfig::new(0, 1000)).unwrap().next(), None);
}

#[test]
fn test_iterator_covers_everything_in_order_with_padding() {
    let (_d, ds) = make("s5");
    let n = ds.num_examples();
    let batches: Vec<_> = test_batches(&ds, 8, 0, 1).unwrap().collect();
    assert_eq!(batches.len(), n.div_ceil(8));
    let all: Vec<(usize, usize)> = (0..n).map(|i| (i, ds.sets()[0].puzzle_of_example(i))).collect();
    let mut k = 0;
    for b in &batches {
        for (r, id) in rows(b).iter().zip(&b.puzzle_identifiers) {
            let (inp, _) = ds.example(all[k].0).unwrap();
            assert_eq!(r.map(|x| x as u8), [inp[0], inp[1], inp[2], inp[3]]);
            assert_eq!(*id as usize, all[k].1 + 1);
            k += 1;
        }
    }
    assert_eq!(k, n);
    let last = batches.last().unwrap();
    let pad = 8 - last.num_valid;
    assert!(pad > 0, "this dataset does not fill the last batch");
    assert!(last.inputs[last.num_valid * 4..].iter().all(|&t| t == 0));
    assert!(last.labels[last.num_valid * 4..].iter().all(|&t| t == IGNORE_LABEL_ID));
    assert!(last.puzzle_identifiers[last.num_valid..].iter().all(|&t| t == 0));
    // Two ranks: rank 1 gets rows 4..8 of each global chunk.
    let r1: Vec<_> = test_batches(&ds, 8, 1, 2).unwrap().collect();
    assert_eq!(r1[0].inputs, batches[0].inputs[16..32]);
}

#[test]
fn an_absurd_batch_ends_instead_of_aborting() {
    let (_d, ds) = make("sampler-too-big");
    // The whole batch was reserved up front: a failed allocation of terabytes, an abort.
    let cfg = SamplerConfig::new(0, usize::MAX / 64);
    assert_eq!(TrainSampler::new(ds, cfg).unwrap().next(), None);
}
