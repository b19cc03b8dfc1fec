//! Evaluation: every test example runs exactly N_sup supervision steps (the official
//! metric), and in the same pass the adaptive rule is scored: a sample stops at the first
//! step whose halt logit is > 0 (or at N_sup), and its answer there counts.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use trm_data::{test_batches, Batch, DatasetMetadata, PuzzleDataset, IGNORE_LABEL_ID};
use trm_model::{Trm, TrmConfig};

use crate::error::TrainError;

/// Evaluation results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Optimizer step of the evaluated weights.
    pub step: u64,
    /// Test examples scored.
    pub examples: usize,
    /// Token accuracy after N_sup steps (mean over examples).
    pub accuracy: f64,
    /// Exact accuracy after N_sup steps: the official metric.
    pub exact_accuracy: f64,
    /// (q_halt >= 0) == exactly right, after N_sup steps.
    pub q_halt_accuracy: f64,
    /// Supervision steps of the fixed run (N_sup).
    pub steps: f64,
    /// Exact accuracy when each example stops once its halt logit is > 0.
    pub adaptive_exact_accuracy: f64,
    /// Token accuracy of the adaptive run.
    pub adaptive_accuracy: f64,
    /// Mean supervision steps of the adaptive run.
    pub adaptive_steps: f64,
    /// Wall time of the evaluation in seconds.
    pub seconds: f64,
}

/// One evaluated batch, for evaluators that need the predictions (ARC voting).
#[derive(Debug, Clone)]
pub struct BatchPredictions {
    /// Argmax tokens after N_sup steps, [num_valid * seq_len].
    pub predictions: Vec<i64>,
    /// Halt logits after N_sup steps, `[num_valid]`.
    pub q_halt: Vec<f32>,
}

fn score(pred: &[i64], labels: &[i32]) -> (usize, usize) {
    let mut valid = 0;
    let mut correct = 0;
    for (p, &l) in pred.iter().zip(labels) {
        if l != IGNORE_LABEL_ID {
            valid += 1;
            correct += (*p == l as i64) as usize;
        }
    }
    (valid, correct)
}

/// Checks that `model` can run on `data`: the same sequence length, every token inside the
/// model's vocabulary and, with puzzle embeddings, every identifier inside its table. A model
/// trained on another task would otherwise index past its embedding tables.
pub(crate) fn check_model_fits(model: &TrmConfig, data: &DatasetMetadata) -> Result<(), TrainError> {
    let mut problems = Vec::new();
    if model.seq_len != data.seq_len {
        problems.push(format!("seq_len {} (the dataset's is {})", model.seq_len, data.seq_len));
    }
    if model.vocab_size < data.vocab_size {
        problems.push(format!("vocab_size {} (the dataset's is {})", model.vocab_size, data.vocab_size));
    }
    if model.puzzle_emb_ndim > 0 && model.num_puzzle_identifiers < data.num_puzzle_identifiers {
        problems.push(format!(
            "num_puzzle_identifiers {} (the dataset's is {})",
            model.num_puzzle_identifiers, data.num_puzzle_identifiers
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TrainError::Mismatch(format!(
            "the model does not fit this dataset (trained on another task?): model {}",
            problems.join(", ")
        )))
    }
}

/// Evaluates `model` on the test split; `on_batch` sees each batch with its predictions.
///
/// Errors if the model does not fit the dataset (another sequence length, a smaller
/// vocabulary or puzzle-identifier table) or if there is
/// nothing to evaluate (an empty split, or `max_examples` of 0). A `batch_size` larger than
/// the split is cut to the split's size (the same results, without padding rows).
pub fn evaluate<B: Backend>(
    model: &Trm<B>,
    test: &PuzzleDataset,
    batch_size: usize,
    max_examples: Option<usize>,
    mut on_batch: impl FnMut(&Batch, &BatchPredictions),
) -> Result<EvalMetrics, TrainError> {
    let start = Instant::now();
    check_model_fits(model.config(), test.metadata())?;
    let limit = max_examples.unwrap_or(usize::MAX);
    if test.num_examples() == 0 || limit == 0 {
        return Err(TrainError::Mismatch(format!(
            "nothing to evaluate: the split holds {} examples and at most {} were asked for",
            test.num_examples(),
            max_examples.map_or("all".to_string(), |n| n.to_string())
        )));
    }
    let batch_size = batch_size.clamp(1, test.num_examples());
    let device = model.h_init.device();
    let n_sup = model.config().n_sup;
    let mut m = EvalMetrics { steps: n_sup as f64, ..Default::default() };
    for batch in test_batches(test, batch_size, 0, 1)? {
        if m.examples >= limit {
            break;
        }
        let (b, l) = (batch.batch_size, batch.seq_len);
        let use_rows = batch.num_valid.min(limit - m.examples);
        let to_i64 = |v: &[i32]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(to_i64(&batch.inputs), [b, l]), &device);
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(to_i64(&batch.puzzle_identifiers), [b]), &device);
        let x = model.input_embeddings(inputs, model.puzzle_rows(ids));
        let mut carry = model.initial_carry(b);
        let mut stopped = vec![false; use_rows];
        let mut final_pred = Vec::new();
        let mut final_q = Vec::new();
        for k in 1..=n_sup {
            let out = model.supervision_step(&x, carry);
            carry = out.carry;
            let q: Vec<f32> = out.heads.q_halt.into_data().convert::<f32>().to_vec().expect("float data");
            let last = k == n_sup;
            let newly: Vec<usize> = (0..use_rows).filter(|&i| !stopped[i] && (last || q[i] > 0.0)).collect();
            if newly.is_empty() && !last {
                continue;
            }
            let pred: Vec<i64> = out.heads.logits.argmax(2).into_data().convert::<i64>().to_vec().expect("int data");
            for &i in &newly {
                stopped[i] = true;
                let (v, c) = score(&pred[i * l..(i + 1) * l], &batch.labels[i * l..(i + 1) * l]);
                if v > 0 {
                    m.adaptive_accuracy += c as f64 / v as f64;
                    m.adaptive_exact_accuracy += (c == v) as u8 as f64;
                }
                m.adaptive_steps += k as f64;
            }
            if last {
                final_pred = pred;
                final_q = q;
            }
        }
        for i in 0..use_rows {
            let (v, c) = score(&final_pred[i * l..(i + 1) * l], &batch.labels[i * l..(i + 1) * l]);
            let exact = c == v;
            if v > 0 {
                m.accuracy += c as f64 / v as f64;
                m.exact_accuracy += exact as u8 as f64;
            }
            m.q_halt_accuracy += ((final_q[i] >= 0.0) == exact) as u8 as f64;
        }
        m.examples += use_rows;
        final_pred.truncate(use_rows * l);
        final_q.truncate(use_rows);
        on_batch(&batch, &BatchPredictions { predictions: final_pred, q_halt: final_q });
    }
    if m.examples > 0 {
        let n = m.examples as f64;
        for v in [
            &mut m.accuracy,
            &mut m.exact_accuracy,
            &mut m.q_halt_accuracy,
            &mut m.adaptive_accuracy,
            &mut m.adaptive_exact_accuracy,
            &mut m.adaptive_steps,
        ] {
            *v /= n;
        }
    }
    m.seconds = start.elapsed().as_secs_f64();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_ignores_unlabelled_tokens() {
        assert_eq!(score(&[1, 2, 3, 4], &[1, -100, 3, 5]), (3, 2));
        assert_eq!(score(&[1], &[-100]), (0, 0));
    }
}
