//! The official ARC evaluator (`evaluators/arc.py`): each prediction is cropped and
//! un-augmented (inverse dihedral, then inverse colour map), matched to its original test
//! input the same way, and voted on: candidates are ranked by vote count, then by mean
//! sigmoid(q_halt). pass@K counts a test input solved when its answer is among the top K;
//! a puzzle scores the fraction of its test inputs solved; the result is the mean over
//! puzzles. `submission.json` holds the top two per test input (ARC Prize format).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{json, Value};
use trm_data::arc::encode::{crop, parse_identifier, ArcAug};
use trm_data::arc::{read_tasks_json, ArcTask, Section};
use trm_data::grid::Grid;
use trm_data::metadata::load_identifiers;
use trm_data::Batch;

use crate::error::TrainError;
use crate::eval::BatchPredictions;

/// The K of pass@K reported.
pub const PASS_KS: [usize; 6] = [1, 2, 5, 10, 100, 1000];

/// Votes of one test input: candidate grid -> (count, sum of sigmoid(q_halt)).
type Votes = HashMap<Grid, (usize, f64)>;

/// Collects predictions over an evaluation (or several, as the official aggregated voting).
pub struct ArcVoting {
    names: Vec<String>,
    tasks: Vec<ArcTask>,
    inputs: HashMap<String, HashMap<Grid, usize>>,
    votes: HashMap<String, Vec<Votes>>,
}

fn undo(aug: Option<ArcAug>, g: Grid) -> Grid {
    match aug {
        Some(a) => a.invert(&g),
        None => g,
    }
}

fn grid_json(g: &Grid) -> Value {
    let rows: Vec<Vec<u8>> =
        if g.cols == 0 { vec![vec![0]] } else { g.cells.chunks(g.cols).map(|r| r.to_vec()).collect() };
    json!(rows)
}

impl ArcVoting {
    /// From the identifier names and the original test tasks (outputs included).
    pub fn new(names: Vec<String>, tasks: Vec<ArcTask>) -> Self {
        let mut inputs = HashMap::new();
        let mut votes = HashMap::new();
        for t in &tasks {
            let tests: Vec<_> = t.pairs(Section::Test).collect();
            let index: HashMap<Grid, usize> = tests.iter().enumerate().map(|(i, p)| (p.input.clone(), i)).collect();
            inputs.insert(t.name.clone(), index);
            votes.insert(t.name.clone(), vec![Votes::new(); tests.len()]);
        }
        Self { names, tasks, inputs, votes }
    }

    /// Reads `identifiers.json` and `test_puzzles.json` of a built ARC dataset folder.
    pub fn open(data_dir: &Path) -> Result<Self, TrainError> {
        let names = load_identifiers(&data_dir.join("identifiers.json"))?;
        let tasks = read_tasks_json(&data_dir.join("test_puzzles.json"))?;
        Ok(Self::new(names, tasks))
    }

    /// Adds the predictions of one evaluated batch.
    pub fn add_batch(&mut self, batch: &Batch, preds: &BatchPredictions) -> Result<(), TrainError> {
        let l = batch.seq_len;
        for (i, &q) in preds.q_halt.iter().enumerate() {
            let id = batch.puzzle_identifiers[i];
            let Some(name) = self.names.get(id as usize) else { continue };
            let (task, aug) = parse_identifier(name).map_err(TrainError::Config)?;
            let Some(index) = self.inputs.get(&task) else { continue };
            let input: Vec<u8> = batch.inputs[i * l..(i + 1) * l].iter().map(|&t| t as u8).collect();
            let Some(&j) = index.get(&undo(aug, crop(&input))) else { continue };
            let pred: Vec<u8> = preds.predictions[i * l..(i + 1) * l].iter().map(|&t| t.clamp(0, 255) as u8).collect();
            let answer = undo(aug, crop(&pred));
            let entry = self.votes.get_mut(&task).expect("same keys")[j].entry(answer).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 += 1.0 / (1.0 + (-q as f64).exp());
        }
        Ok(())
    }

    fn ranked(votes: &Votes) -> Vec<&Grid> {
        let mut v: Vec<(&Grid, usize, f64)> = votes.iter().map(|(g, &(n, s))| (g, n, s / n as f64)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(b.0)));
        v.into_iter().map(|(g, _, _)| g).collect()
    }

    /// pass@K for K in [`PASS_KS`], averaged over puzzles.
    pub fn pass_at_k(&self) -> BTreeMap<usize, f64> {
        let mut out: BTreeMap<usize, f64> = PASS_KS.iter().map(|&k| (k, 0.0)).collect();
        for t in &self.tasks {
            let votes = &self.votes[&t.name];
            let tests: Vec<_> = t.pairs(Section::Test).collect();
            for &k in &PASS_KS {
                let solved = tests
                    .iter()
                    .zip(votes)
                    .filter(|(p, v)| Self::ranked(v).iter().take(k).any(|g| **g == p.output))
                    .count();
                *out.get_mut(&k).expect("k") += solved as f64 / tests.len().max(1) as f64;
            }
        }
        let n = self.tasks.len().max(1) as f64;
        out.values_mut().for_each(|v| *v /= n);
        out
    }

    /// The ARC Prize submission: per task, per test input, `attempt_1` and `attempt_2`.
    pub fn submission(&self) -> Value {
        let mut map = serde_json::Map::new();
        for t in &self.tasks {
            let attempts: Vec<Value> = self.votes[&t.name]
                .iter()
                .map(|v| {
                    let r = Self::ranked(v);
                    let empty = Grid::new(1, 1, vec![0]);
                    let first = r.first().copied().unwrap_or(&empty);
                    let second = r.get(1).copied().unwrap_or(first);
                    json!({"attempt_1": grid_json(first), "attempt_2": grid_json(second)})
                })
                .collect();
            map.insert(t.name.clone(), Value::Array(attempts));
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trm_data::arc::encode::encode;
    use trm_data::arc::ArcPair;

    fn batch(rows: &[(Vec<u8>, i32)]) -> Batch {
        Batch {
            inputs: rows.iter().flat_map(|(t, _)| t.iter().map(|&x| x as i32)).collect(),
            labels: vec![-100; rows.len() * 900],
            puzzle_identifiers: rows.iter().map(|r| r.1).collect(),
            batch_size: rows.len(),
            seq_len: 900,
            num_valid: rows.len(),
            global_valid: rows.len(),
            set_index: 0,
        }
    }

    #[test]
    fn votes_are_unaugmented_and_ranked_by_count_then_confidence() {
        let input = Grid::new(1, 2, vec![1, 2]);
        let answer = Grid::new(2, 1, vec![3, 4]);
        let wrong = Grid::new(1, 1, vec![5]);
        let task = ArcTask {
            name: "t".into(),
            sections: vec![(Section::Test, vec![ArcPair { input: input.clone(), output: answer.clone() }])],
        };
        // Id 1: original. Id 2: transpose-like dihedral 1 with colours 1<->2 swapped.
        let aug = ArcAug { tid: 1, perm: [0, 2, 1, 3, 4, 5, 6, 7, 8, 9] };
        let names = vec!["<blank>".to_string(), "t".to_string(), aug.name("t")];
        let mut v = ArcVoting::new(names, vec![task]);
        let aug_in = encode(&aug.apply(&input));
        let rows = [(encode(&input), 1), (aug_in.clone(), 2), (encode(&wrong), 1)];
        // Predictions: original says `answer`, augmented says aug(answer) (= answer after
        // undoing), the third says `wrong` with a higher confidence.
        let preds: Vec<i64> =
            [encode(&answer), encode(&aug.apply(&answer)), encode(&wrong)].concat().iter().map(|&t| t as i64).collect();
        // The third row's input is `wrong`, not a test input: it is skipped.
        v.add_batch(&batch(&rows), &BatchPredictions { predictions: preds, q_halt: vec![0.0, 0.0, 5.0] }).unwrap();
        let p = v.pass_at_k();
        assert_eq!(p[&1], 1.0);
        // A single wrong vote with high confidence does not beat two votes.
        let preds2: Vec<i64> = encode(&wrong).iter().map(|&t| t as i64).collect();
        v.add_batch(&batch(&rows[..1]), &BatchPredictions { predictions: preds2, q_halt: vec![9.0] }).unwrap();
        assert_eq!(v.pass_at_k()[&1], 1.0);
        let sub = v.submission();
        assert_eq!(sub["t"][0]["attempt_1"], json!([[3], [4]]));
        assert_eq!(sub["t"][0]["attempt_2"], json!([[5]]));
    }
}
