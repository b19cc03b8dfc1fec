//! The ACT loss head of the official code: stablemax (or softmax) cross-entropy as a
//! per-sample token mean summed over the batch, plus 0.5 x BCE of the halt logit against
//! "the whole answer is right" (and of the continue logit against its bootstrapped target).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::HeadOutput;

/// Label value that is ignored (padding).
pub const IGNORE_LABEL_ID: i64 = -100;

/// Which token cross-entropy to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Stablemax (Prieto et al., "Grokking at the edge of numerical stability"), the official default.
    #[default]
    #[serde(alias = "stablemax")]
    StablemaxCrossEntropy,
    /// Ordinary softmax cross-entropy.
    #[serde(alias = "softmax")]
    SoftmaxCrossEntropy,
}

/// log stablemax over the last dim: log(s(x) / sum s(x)), s(x) = x + 1 for x >= 0, 1/(1 - x) below.
///
/// Computed in float32 (the official code uses float64; tests bound the difference). Each
/// branch sees only its own half of the inputs, so neither produces inf/NaN gradients.
pub fn log_stablemax<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let negative = x.clone().lower_elem(0.0);
    let s_neg = x.clone().clamp_max(0.0).neg().add_scalar(1.0).recip();
    let s_pos = x.clamp_min(0.0).add_scalar(1.0);
    let s = s_pos.mask_where(negative, s_neg);
    let log_sum = s.clone().sum_dim(D - 1).log();
    s.log() - log_sum
}

/// Per-token cross-entropy [B, L] (0 where the label is ignored).
pub fn token_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    loss_type: LossType,
) -> Tensor<B, 2> {
    let [b, l, _] = logits.dims();
    let valid = labels.clone().not_equal_elem(IGNORE_LABEL_ID);
    let safe_labels = labels.mask_fill(valid.clone().bool_not(), 0);
    let logp = match loss_type {
        LossType::StablemaxCrossEntropy => log_stablemax(logits),
        LossType::SoftmaxCrossEntropy => log_softmax(logits, 2),
    };
    let picked = logp.gather(2, safe_labels.reshape([b, l, 1])).reshape([b, l]);
    picked.neg().mask_fill(valid.bool_not(), 0.0)
}

/// Numerically stable BCE with logits, per element: max(x,0) - x t + log(1 + exp(-|x|)).
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 1>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    logits.clone().clamp_min(0.0) - logits.clone() * targets + logits.abs().neg().exp().log1p()
}

/// Correctness of this step's prediction, computed without gradients.
#[derive(Debug, Clone)]
pub struct Correctness<B: Backend> {
    /// Valid (labelled) tokens per sample, `[B]`.
    pub valid_tokens: Tensor<B, 1, Int>,
    /// Correct valid tokens per sample, `[B]`.
    pub correct_tokens: Tensor<B, 1, Int>,
    /// Every valid token correct, `[B]` (true for a sample with no valid token, as officially).
    pub seq_is_correct: Tensor<B, 1, Bool>,
}

/// Argmax predictions [B, L] and their correctness against `labels`.
pub fn correctness<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> (Tensor<B, 2, Int>, Correctness<B>) {
    let [b, l, _] = logits.dims();
    let preds = logits.argmax(2).reshape([b, l]);
    let valid = labels.clone().not_equal_elem(IGNORE_LABEL_ID);
    let hit = preds.clone().equal(labels).int() * valid.clone().int();
    let valid_tokens = valid.int().sum_dim(1).reshape([b]);
    let correct_tokens = hit.sum_dim(1).reshape([b]);
    let seq_is_correct = correct_tokens.clone().equal(valid_tokens.clone());
    (preds, Correctness { valid_tokens, correct_tokens, seq_is_correct })
}

/// The loss of one supervision step, summed over the batch (divide by the global batch size
/// before `backward`, as the official trainer does).
#[derive(Debug, Clone)]
pub struct ActLoss<B: Backend> {
    /// lm_loss + 0.5 (q_halt_loss + q_continue_loss).
    pub total: Tensor<B, 1>,
    /// Sum over samples of the per-sample mean token CE.
    pub lm_loss: Tensor<B, 1>,
    /// Sum of BCE(q_halt, seq_is_correct).
    pub q_halt_loss: Tensor<B, 1>,
    /// Sum of BCE(q_continue, target), when a target was given.
    pub q_continue_loss: Option<Tensor<B, 1>>,
    /// Predictions [B, L].
    pub predictions: Tensor<B, 2, Int>,
    /// Per-sample correctness.
    pub correctness: Correctness<B>,
}

/// The official `ACTLossHead` loss for one step. `q_continue_target` `[B]` enables the
/// Q-continue term (`no_act_continue = false`).
pub fn act_loss<B: Backend>(
    heads: &HeadOutput<B>,
    labels: Tensor<B, 2, Int>,
    loss_type: LossType,
    q_continue_target: Option<Tensor<B, 1>>,
) -> ActLoss<B> {
    let (predictions, correctness) = correctness(heads.logits.clone().detach(), labels.clone());
    let dtype = heads.logits.dtype();
    let divisor = correctness.valid_tokens.clone().clamp_min(1).float().cast(dtype).unsqueeze_dim::<2>(1);
    let lm_loss = (token_cross_entropy(heads.logits.clone(), labels, loss_type) / divisor).sum();
    let target = correctness.seq_is_correct.clone().float().cast(dtype);
    let q_halt_loss = bce_with_logits(heads.q_halt.clone(), target).sum();
    let q_continue_loss = q_continue_target.map(|t| bce_with_logits(heads.q_continue.clone(), t).sum());
    let q_sum = match &q_continue_loss {
        Some(c) => q_halt_loss.clone() + c.clone(),
        None => q_halt_loss.clone(),
    };
    let total = lm_loss.clone() + q_sum.mul_scalar(0.5);
    ActLoss { total, lm_loss, q_halt_loss, q_continue_loss, predictions, correctness }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    /// Float64 reference of the official formula, written independently.
    fn stablemax_ce_f64(logits: &[f64], label: usize) -> f64 {
        let s: Vec<f64> = logits.iter().map(|&x| if x < 0.0 { 1.0 / (1.0 - x + 1e-30) } else { x + 1.0 }).collect();
        -(s[label] / s.iter().sum::<f64>()).ln()
    }

    #[test]
    fn stablemax_float32_equals_the_float64_reference() {
        let device = Default::default();
        let v = 7;
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|r| {
                (0..v).map(|c| ((r * 31 + c * 17) % 23) as f64 * 1.7 - 19.0 + (r as f64 * 0.37).sin() * 40.0).collect()
            })
            .collect();
        let labels: Vec<i64> = (0..40).map(|r| if r % 9 == 0 { IGNORE_LABEL_ID } else { (r % v) as i64 }).collect();
        let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
        let logits = Tensor::<B, 3>::from_data(TensorData::new(flat, [4, 10, v]), &device);
        let lab = Tensor::<B, 2, Int>::from_data(TensorData::new(labels.clone(), [4, 10]), &device);
        let got =
            token_cross_entropy(logits, lab, LossType::StablemaxCrossEntropy).into_data().to_vec::<f32>().unwrap();
        for (i, row) in rows.iter().enumerate() {
            let want = if labels[i] == IGNORE_LABEL_ID { 0.0 } else { stablemax_ce_f64(row, labels[i] as usize) };
            assert!((got[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0), "row {i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn stablemax_gradient_is_finite_at_the_branch_point() {
        let device = Default::default();
        let x = Tensor::<Autodiff<B>, 1>::from_data(TensorData::new(vec![1.0f32, 0.0, -1.0, 5.0], [4]), &device)
            .require_grad();
        let loss = log_stablemax(x.clone()).narrow(0, 0, 1).sum();
        let g = x.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        // d/dx0 of log(s0) - log(sum s) with s = [2, 1, 0.5, 6]: 1/2 - 1/9.5.
        assert!((g[0] as f64 - (0.5 - 1.0 / 9.5)).abs() < 1e-6);
    }

    #[test]
    fn softmax_cross_entropy_matches_log_sum_exp() {
        let device = Default::default();
        let logits = Tensor::<B, 3>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 1, 3]), &device);
        let lab = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64], [1, 1]), &device);
        let got = token_cross_entropy(logits, lab, LossType::SoftmaxCrossEntropy).into_scalar();
        let want = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 1.0;
        assert!((got as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn bce_with_logits_is_stable_and_right() {
        let device = Default::default();
        let x = Tensor::<B, 1>::from_data(TensorData::new(vec![-100.0f32, 0.0, 3.0, 100.0], [4]), &device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 0.0], [4]), &device);
        let got = bce_with_logits(x, t).into_data().to_vec::<f32>().unwrap();
        let want = [100.0, std::f64::consts::LN_2, 3.0 + (-3f64).exp().ln_1p(), 100.0];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn seq_correctness_ignores_padding_and_counts_empty_as_correct() {
        let device = Default::default();
        // Logits argmax: sample 0 -> [1, 0], sample 1 -> [0, 0].
        let logits = Tensor::<B, 3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [2, 2, 2]),
            &device,
        );
        let labels = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, -100, -100, -100], [2, 2]), &device);
        let (_, c) = correctness(logits, labels);
        assert_eq!(c.seq_is_correct.into_data().to_vec::<bool>().unwrap(), vec![true, true]);
        assert_eq!(c.valid_tokens.into_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![1, 0]);
    }
}
