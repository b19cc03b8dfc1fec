//! The official TRM ARC builder (`dataset/build_arc_dataset.py`), reproduced draw for draw
//! with NumPy's legacy generator so that, for the same inputs, subsets and seed, every
//! file it writes is byte-identical to the Python output (checked in the tests against
//! files the Python builder wrote).
//!
//! Per subset, in order: shuffle its tasks; the demonstration pairs go to the train split,
//! the test pairs to the test split if the subset is the test set, else to train. Each task
//! gets up to `num_aug` augmented versions (random dihedral id, random permutation of
//! colours 1-9), a version being rejected when its multiset of (input, output) pairs equals
//! one already kept; at most 5 x num_aug tries. Identifiers are numbered from 1 in order
//! of first appearance (train split first), 0 being `<blank>`. Then per split, per version:
//! one random example stays at the top-left, the others (train split only) get a random
//! offset inside the canvas.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::encode::{encode_into, ArcAug, SEQ_LEN, VOCAB_SIZE};
use super::{read_kaggle_subset, read_task_dir, write_tasks_json, ArcPair, ArcTask, Section, MAX_SIDE};
use crate::metadata::{write_python_json, DatasetMetadata};
use crate::numpy_rng::NumpyRng;
use crate::recipe::{resolve_data_path, BuildSummary, Progress};
use crate::writer::SetWriter;
use crate::DataError;

/// Which benchmark the default subsets reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArcVersion {
    /// training + evaluation + concept, test = evaluation (`arc1concept-aug-1000`).
    #[default]
    Arc1,
    /// training2 + evaluation2 + concept, test = evaluation2 (`arc2concept-aug-1000`).
    Arc2,
}

fn thousand() -> usize {
    1000
}
fn forty_two() -> u64 {
    42
}

/// `kind = "arc"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArcRecipe {
    #[serde(default)]
    pub version: ArcVersion,
    /// `--input-file-prefix`; default `<shared data>/arc/trm-kaggle-combined/arc-agi`.
    #[serde(default)]
    pub input_file_prefix: Option<PathBuf>,
    /// `--subsets`; default from `version`.
    #[serde(default)]
    pub subsets: Option<Vec<String>>,
    /// `--test-set-name`; default from `version`.
    #[serde(default)]
    pub test_set_name: Option<String>,
    #[serde(default = "thousand")]
    pub num_aug: usize,
    #[serde(default = "forty_two")]
    pub seed: u64,
    /// Read task folders instead of Kaggle files: each folder is one subset named after
    /// its last path component, tasks read recursively and sorted by path.
    #[serde(default)]
    pub folders: Option<Vec<PathBuf>>,
}

impl Default for ArcRecipe {
    fn default() -> Self {
        ArcRecipe {
            version: ArcVersion::Arc1,
            input_file_prefix: None,
            subsets: None,
            test_set_name: None,
            num_aug: 1000,
            seed: 42,
            folders: None,
        }
    }
}

/// A task split by destination: `train` pairs, and `test` pairs if it goes to the test split.
struct Converted {
    task: ArcTask,
    train: Vec<ArcPair>,
    test: Option<Vec<ArcPair>>,
    versions: Vec<ArcAug>,
}

/// Exact stand-in for the official `puzzle_hash`: the sorted multiset of (input, output)
/// pairs over both destinations. Equal keys exactly when the SHA-256 lists would be equal.
fn puzzle_key(pairs: &[&ArcPair], aug: &ArcAug) -> Vec<u8> {
    let mut items: Vec<Vec<u8>> = pairs
        .iter()
        .map(|p| {
            let (i, o) = (aug.apply(&p.input), aug.apply(&p.output));
            let mut v = vec![i.rows as u8, i.cols as u8];
            v.extend(&i.cells);
            v.extend([o.rows as u8, o.cols as u8]);
            v.extend(&o.cells);
            v
        })
        .collect();
    items.sort_unstable();
    let mut key = Vec::new();
    for it in items {
        key.extend((it.len() as u32).to_le_bytes());
        key.extend(it);
    }
    key
}

/// `aug(name)`: a dihedral id from `randint(0, 8)`, then a permutation of colours 1..9.
fn draw_aug(rng: &mut NumpyRng) -> ArcAug {
    let tid = rng.randint(0, 8) as u8;
    let mut colours: Vec<u8> = (1..10).collect();
    rng.shuffle(&mut colours);
    let mut perm = [0u8; 10];
    perm[1..].copy_from_slice(&colours);
    ArcAug { tid, perm }
}

fn augment(c: &mut Converted, num_aug: usize, rng: &mut NumpyRng) -> bool {
    c.versions = vec![ArcAug::IDENTITY];
    if num_aug == 0 {
        return true;
    }
    let all: Vec<&ArcPair> = c.train.iter().chain(c.test.iter().flatten()).collect();
    let mut seen = HashSet::new();
    seen.insert(puzzle_key(&all, &ArcAug::IDENTITY));
    for _ in 0..5 * num_aug {
        let a = draw_aug(rng);
        if seen.insert(puzzle_key(&all, &a)) {
            c.versions.push(a);
        }
        if c.versions.len() > num_aug {
            break;
        }
    }
    c.versions.len() > num_aug
}

/// One example to encode: task, destination, version, example index, offset.
#[derive(Clone, Copy)]
struct Job {
    task: u32,
    version: u32,
    example: u16,
    pad_r: u8,
    pad_c: u8,
}

impl ArcRecipe {
    fn subsets(&self) -> (Vec<String>, String) {
        let (subs, test) = match self.version {
            ArcVersion::Arc1 => (["training", "evaluation", "concept"], "evaluation"),
            ArcVersion::Arc2 => (["training2", "evaluation2", "concept"], "evaluation2"),
        };
        (
            self.subsets.clone().unwrap_or_else(|| subs.map(String::from).to_vec()),
            self.test_set_name.clone().unwrap_or_else(|| test.into()),
        )
    }

    fn load(&self) -> Result<Vec<(String, Vec<ArcTask>)>, DataError> {
        if let Some(folders) = &self.folders {
            return folders
                .iter()
                .map(|f| {
                    let name = f.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    Ok((name, read_task_dir(f)?))
                })
                .collect();
        }
        let prefix = resolve_data_path(&self.input_file_prefix, "arc/trm-kaggle-combined/arc-agi")?;
        self.subsets().0.iter().map(|s| Ok((s.clone(), read_kaggle_subset(&prefix, s)?))).collect()
    }

    pub fn build(&self, out: &Path, progress: &dyn Progress) -> Result<BuildSummary, DataError> {
        let seed = u32::try_from(self.seed).map_err(|_| DataError::Config("seed must be below 2^32".into()))?;
        let test_name = if self.folders.is_some() {
            self.test_set_name.clone().unwrap_or_else(|| "evaluation".into())
        } else {
            self.subsets().1
        };
        let subsets = self.load()?;
        if !subsets.iter().any(|(s, _)| *s == test_name) {
            return Err(DataError::Config(format!("the test set {test_name:?} is not one of the subsets")));
        }
        let mut rng = NumpyRng::new(seed);
        let mut converted: Vec<Converted> = Vec::new();
        let mut notes = Vec::new();
        let total_tasks: usize = subsets.iter().map(|s| s.1.len()).sum();
        progress.begin("augmenting ARC tasks", total_tasks as u64);
        for (subset, mut tasks) in subsets {
            rng.shuffle(&mut tasks);
            // The official builder also sends a subset literally named "your_test_set" to test.
            let to_test = subset == test_name || subset == "your_test_set";
            for task in tasks {
                let train: Vec<ArcPair> = if to_test {
                    task.pairs(Section::Train).cloned().collect()
                } else {
                    task.sections.iter().flat_map(|(_, p)| p.iter().cloned()).collect()
                };
                let test = to_test.then(|| task.pairs(Section::Test).cloned().collect::<Vec<_>>());
                if test.as_ref().is_some_and(|t| t.is_empty()) {
                    return Err(DataError::Config(format!("test-set task {} has no test pairs", task.name)));
                }
                let mut c = Converted { task, train, test, versions: Vec::new() };
                if !augment(&mut c, self.num_aug, &mut rng) {
                    notes.push(format!("[Puzzle {}] augmentation not full, only {}", c.task.name, c.versions.len()));
                }
                converted.push(c);
                progress.advance(1);
            }
        }
        progress.finish();

        // Identifiers in order of first appearance, train split first.
        let mut names: Vec<String> = vec!["<blank>".into()];
        let mut ids: HashMap<String, i32> = HashMap::new();
        let mut version_ids: Vec<Vec<i32>> = Vec::with_capacity(converted.len());
        for c in &converted {
            let v = c
                .versions
                .iter()
                .enumerate()
                .map(|(vi, a)| {
                    // Version 0 is the original and keeps the bare task name.
                    let name = if vi == 0 { c.task.name.clone() } else { a.name(&c.task.name) };
                    *ids.entry(name.clone()).or_insert_with(|| {
                        names.push(name);
                        names.len() as i32 - 1
                    })
                })
                .collect();
            version_ids.push(v);
        }
        // Test-split versions are the same names, so they are already numbered.

        let mut summaries = Vec::new();
        for split in ["train", "test"] {
            let is_train = split == "train";
            fn pairs_in(c: &Converted, is_train: bool) -> Option<&Vec<ArcPair>> {
                if is_train {
                    Some(&c.train)
                } else {
                    c.test.as_ref()
                }
            }
            let pairs_of = |c| pairs_in(c, is_train);
            let dir = out.join(split);
            let members: Vec<usize> = (0..converted.len()).filter(|&i| pairs_of(&converted[i]).is_some()).collect();
            let n_examples: usize = members
                .iter()
                .map(|&i| converted[i].versions.len() * pairs_of(&converted[i]).map_or(0, |p| p.len()))
                .sum();
            // Draw offsets in the official order (sequential, cheap), then encode in parallel.
            let mut jobs = Vec::with_capacity(n_examples);
            let mut w = SetWriter::create(&dir, "all", n_examples, SEQ_LEN)?;
            let mut boundaries = Vec::new(); // (jobs end, identifier) per puzzle; None = group end
            for &ti in &members {
                let c = &converted[ti];
                let pairs = pairs_of(c).map_or(&[][..], |p| &p[..]);
                for (vi, aug) in c.versions.iter().enumerate() {
                    let no_aug = rng.randint(0, pairs.len() as i64) as usize;
                    for (k, p) in pairs.iter().enumerate() {
                        let (mut pr, mut pc) = (0, 0);
                        if is_train && k != no_aug {
                            // Shapes after the dihedral transform (rotations by 90 degrees
                            // and (anti-)transposes swap rows and columns).
                            let swap = matches!(aug.tid, 1 | 3 | 6 | 7);
                            let dims = |g: &crate::grid::Grid| if swap { (g.cols, g.rows) } else { (g.rows, g.cols) };
                            let ((ar, ac), (br, bc)) = (dims(&p.input), dims(&p.output));
                            pr = rng.randint(0, (MAX_SIDE - ar.max(br) + 1) as i64) as u8;
                            pc = rng.randint(0, (MAX_SIDE - ac.max(bc) + 1) as i64) as u8;
                        }
                        jobs.push(Job { task: ti as u32, version: vi as u32, example: k as u16, pad_r: pr, pad_c: pc });
                    }
                    boundaries.push((jobs.len(), Some(version_ids[ti][vi])));
                }
                boundaries.push((jobs.len(), None));
            }
            progress.begin(&format!("encoding {split}"), jobs.len() as u64);
            let mut b = boundaries.iter().peekable();
            for chunk in jobs.chunks(8192) {
                let rows: Vec<(Vec<u8>, Vec<u8>)> = chunk
                    .par_iter()
                    .map(|j| {
                        let c = &converted[j.task as usize];
                        let p = &pairs_of(c).map_or(&[][..], |p| &p[..])[j.example as usize];
                        let aug = &c.versions[j.version as usize];
                        let (mut i, mut o) = (vec![0u8; SEQ_LEN], vec![0u8; SEQ_LEN]);
                        encode_into(&aug.apply(&p.input), j.pad_r as usize, j.pad_c as usize, &mut i);
                        encode_into(&aug.apply(&p.output), j.pad_r as usize, j.pad_c as usize, &mut o);
                        (i, o)
                    })
                    .collect();
                let inputs: Vec<u8> = rows.iter().flat_map(|r| r.0.iter().copied()).collect();
                let labels: Vec<u8> = rows.iter().flat_map(|r| r.1.iter().copied()).collect();
                w.push_examples(&inputs, &labels)?;
                while let Some(&&(end, id)) = b.peek() {
                    if end > w.examples_written() {
                        break;
                    }
                    match id {
                        Some(id) => w.end_puzzle_at(id, end),
                        None => w.end_group(),
                    }
                    b.next();
                }
                progress.advance(chunk.len() as u64);
            }
            for &(end, id) in b {
                match id {
                    Some(id) => w.end_puzzle_at(id, end),
                    None => w.end_group(),
                }
            }
            progress.finish();
            let counts = w.finish()?;
            DatasetMetadata {
                pad_id: 0,
                ignore_label_id: Some(0),
                blank_identifier_id: 0,
                vocab_size: VOCAB_SIZE,
                seq_len: SEQ_LEN,
                num_puzzle_identifiers: names.len(),
                total_groups: counts.groups,
                mean_puzzle_examples: counts.examples as f64 / counts.puzzles.max(1) as f64,
                total_puzzles: Some(counts.puzzles),
                sets: vec!["all".into()],
            }
            .save(&dir.join("dataset.json"))?;
            summaries.push(counts);
        }
        write_python_json(&out.join("identifiers.json"), &names)?;
        // test_puzzles.json: the test-set tasks as read (outputs filled in), shuffled order;
        // a repeated name keeps its first position and its last value, like a Python dict.
        let mut order: Vec<&str> = Vec::new();
        let mut latest: HashMap<&str, &ArcTask> = HashMap::new();
        for c in converted.iter().filter(|c| c.test.is_some()) {
            if latest.insert(&c.task.name, &c.task).is_none() {
                order.push(&c.task.name);
            }
        }
        let tasks: Vec<&ArcTask> = order.iter().map(|n| latest[n]).collect();
        write_tasks_json(&out.join("test_puzzles.json"), &tasks)?;
        Ok(BuildSummary {
            out_dir: out.to_owned(),
            train: summaries[0],
            test: summaries[1],
            vocab_size: VOCAB_SIZE,
            seq_len: SEQ_LEN,
            num_puzzle_identifiers: names.len(),
            bytes: 0,
            elapsed: Default::default(),
            notes,
        })
    }
}
