//! The AR-TRM training forward: teacher forcing consistent with decoding, deep supervision
//! over refinement steps, and no-grad early cycles (as TRM's `supervision_step_train`).
//!
//! 1. x = embed(inputs) with gradients.
//! 2. The committed memory: for [`KvSource::RefinedY`], decode the teacher-forced inputs
//!    position by position on the inner backend ([`commit_states`], no graph) under the
//!    decoding policy, so the prefix K/V are exactly what decoding will commit; they enter
//!    as constants (gradients reach the K/V projections, not the prefix's refinement). For
//!    [`KvSource::Embedding`] the memory is x itself, with gradients.
//! 3. `steps` refinement steps of all positions in parallel: in each, the first T-1
//!    cycles run on the inner backend and the last with autodiff; the state is detached
//!    between steps; every step is supervised (deep supervision).
//! 4. Per step: mean token cross-entropy over scored tokens + 0.5 x mean BCE of the halt
//!    logit against "this token's prediction is right".

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, ElementConversion, Int, Tensor};

use super::attention::strict_causal_mask;
use super::decode::{commit_states, StepPolicy};
use super::model::{ArState, ArStepOutput, ArTrm, NetContext};
use super::KvSource;
use crate::loss::{bce_with_logits, token_cross_entropy, LossType, IGNORE_LABEL_ID};

/// The loss of one refinement step.
#[derive(Debug, Clone)]
pub struct ArStepLoss<B: Backend> {
    /// lm + 0.5 halt.
    pub total: Tensor<B, 1>,
    /// Mean token cross-entropy over scored tokens.
    pub lm: Tensor<B, 1>,
    /// Mean BCE of the halt logit against per-token correctness, over scored tokens.
    pub halt: Tensor<B, 1>,
    /// Scored tokens predicted right.
    pub correct: usize,
    /// Scored tokens.
    pub scored: usize,
}

/// The LM part of a loss against `labels` [B, L] (IGNORE_LABEL_ID = not scored): mean
/// softmax cross-entropy over the scored tokens, and which of them the argmax gets right.
#[derive(Debug, Clone)]
pub struct ScoredLm<B: Backend> {
    /// Mean token cross-entropy over scored tokens.
    pub lm: Tensor<B, 1>,
    /// [B, L]: scored and predicted right.
    pub right: Tensor<B, 2, Bool>,
    /// [B, L]: scored.
    pub valid: Tensor<B, 2, Bool>,
    /// Scored tokens predicted right.
    pub correct: usize,
    /// Scored tokens.
    pub scored: usize,
}

/// [`ScoredLm`] of next-token `logits` [B, L, V] (AR-TRM's heads or a baseline's output).
pub fn scored_lm_loss<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> ScoredLm<B> {
    let [b, l, _] = logits.dims();
    let valid = labels.clone().not_equal_elem(IGNORE_LABEL_ID);
    let preds = logits.clone().detach().argmax(2).reshape([b, l]);
    let right = preds.equal(labels.clone()).bool_and(valid.clone());
    let scored = valid.clone().int().sum().into_scalar().elem::<i64>() as usize;
    let correct = right.clone().int().sum().into_scalar().elem::<i64>() as usize;
    let lm = token_cross_entropy(logits, labels, LossType::SoftmaxCrossEntropy).sum().div_scalar(scored.max(1) as f64);
    ScoredLm { lm, right, valid, correct, scored }
}

/// The loss of one step's heads against `labels` [B, L] (IGNORE_LABEL_ID = not scored).
pub fn ar_step_loss<B: Backend>(out: &ArStepOutput<B>, labels: Tensor<B, 2, Int>) -> ArStepLoss<B> {
    let [b, l, _] = out.logits.dims();
    let dtype = out.logits.dtype();
    let ScoredLm { lm, right, valid, correct, scored } = scored_lm_loss(out.logits.clone(), labels);
    let target = right.float().cast(dtype).reshape([b * l]);
    let halt = bce_with_logits(out.halt.clone().reshape([b * l]), target)
        .mask_fill(valid.bool_not().reshape([b * l]), 0.0)
        .sum()
        .div_scalar(scored.max(1) as f64);
    ArStepLoss { total: lm.clone() + halt.clone().mul_scalar(0.5), lm, halt, correct, scored }
}

/// The training forward over `steps` refinement steps; returns each step's loss (with
/// gradients through that step's last cycle). `inner = model.valid()`, made once per
/// optimizer step; `policy` is the decoding policy used to commit the prefix.
pub fn ar_train_losses<B: AutodiffBackend>(
    model: &ArTrm<B>,
    inner: &ArTrm<B::InnerBackend>,
    inputs: Tensor<B, 2, Int>,
    labels: Tensor<B, 2, Int>,
    steps: usize,
    policy: StepPolicy,
) -> Vec<ArStepLoss<B>> {
    let t = model.config().t_cycles;
    let [b, len] = inputs.dims();
    let x = model.embed(inputs);
    let x_inner = x.clone().inner();
    let memory = match model.config().kv_source {
        KvSource::RefinedY => Tensor::from_inner(commit_states(inner, &x_inner, policy).memory),
        KvSource::Embedding => x.clone(),
    };
    let kv = model.memory_kv(memory.clone(), 0);
    let kv_inner = inner.memory_kv(memory.inner(), 0);
    let heads = model.config().num_heads;
    let mask = strict_causal_mask::<B>(b, heads, len, &x.device());
    let mask_inner = strict_causal_mask::<B::InnerBackend>(b, heads, len, &x_inner.device());
    let mut state = inner.initial_state(b, len);
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        state = inner.refine(&x_inner, state, t - 1, &mut NetContext::Parallel(&kv_inner, &mask_inner));
        let start = ArState { y: Tensor::from_inner(state.y), z: Tensor::from_inner(state.z) };
        let end = model.refine(&x, start, 1, &mut NetContext::Parallel(&kv, &mask));
        losses.push(ar_step_loss(&model.heads(end.y.clone()), labels.clone()));
        state = ArState { y: end.y.inner(), z: end.z.inner() };
    }
    losses
}
