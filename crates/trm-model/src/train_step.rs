//! One supervision step with its loss and gradients: what a trainer needs from the model
//! between two optimizer updates (the trainer adds the optimizers, the schedule and the EMA).
//!
//! On the CPU backend a batch of 32 or more is split into shares (how many depends on the
//! batch size alone, `kernels::split_train_cpu`), run on rayon's threads: each share runs
//! the whole step (forward, loss, backward) with a copy of the model whose parameters are
//! leaves of their own graph, and the shares' gradients are added in order. The
//! per-sample results (outputs, the new carry, the puzzle rows' gradients) are the bits of
//! the whole batch; the weight gradients, sums over the samples, differ by float32 rounding.

use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::act::{q_continue_target, HostBatch};
use crate::loss::{act_loss, LossType};
use crate::model::{one_step_train, supervision_step_train, Carry, Trm};

/// Which network calls of a supervision step receive gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GradientScope {
    /// TRM: the whole last cycle (n + 1 network calls) after T − 1 cycles without gradients.
    #[default]
    LastCycle,
    /// HRM's 1-step approximation: only the last z update and the y update.
    OneStep,
}

/// How the loss of a step is formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossOptions {
    /// Stablemax or softmax cross-entropy.
    pub loss_type: LossType,
    /// The loss summed over the samples is divided by this before the backward (the
    /// official trainer divides by the global batch size).
    pub scale: f64,
    /// Which calls get gradients.
    pub scope: GradientScope,
}

/// What one supervision step with gradients produced.
#[derive(Debug)]
pub struct StepGradients<B: AutodiffBackend> {
    /// Gradients of the dense parameters, keyed by parameter id.
    pub params: GradientsParams,
    /// Gradient of the batch's puzzle-embedding rows `[batch, puzzle_emb_ndim]`, when the
    /// model has puzzle embeddings.
    pub puzzle_rows: Option<Tensor<B::InnerBackend, 2>>,
    /// Total loss over the samples, divided by [`LossOptions::scale`].
    pub loss: f64,
    /// Token loss over the samples, divided by the scale.
    pub lm_loss: f64,
    /// Halt BCE over the samples, divided by the scale.
    pub q_halt_loss: f64,
    /// Halt logits, one per sample.
    pub q_halt: Vec<f32>,
    /// Continue logits, one per sample.
    pub q_continue: Vec<f32>,
    /// Labelled tokens per sample.
    pub valid_tokens: Vec<i64>,
    /// Correct labelled tokens per sample.
    pub correct_tokens: Vec<i64>,
    /// Whether every labelled token of a sample is right.
    pub seq_correct: Vec<bool>,
    /// The new (y, z), detached.
    pub carry: Carry<B::InnerBackend>,
}

/// One supervision step on `batch` from `carry`: input embedding, the recursion (gradients
/// as `options.scope` says), the heads, the ACT loss and its backward. The Q-continue term
/// is in the loss when the model has it (`no_act_continue = false`) and `is_last` (which
/// samples are at their last step) is given. Pass `inner = model.valid()`.
///
/// The loss may be non-finite; the caller decides what to do with such a step.
pub fn supervision_step_gradients<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    batch: &HostBatch,
    carry: Carry<B::InnerBackend>,
    is_last: Option<&[bool]>,
    options: LossOptions,
) -> StepGradients<B> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = crate::kernels::split_step_gradients(model, inner, batch, &carry, is_last, options) {
        return out;
    }
    whole_batch(model, inner, batch, carry, is_last, options)
}

/// [`supervision_step_gradients`] on the whole batch at once, with `model`'s own graph.
pub(crate) fn whole_batch<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    batch: &HostBatch,
    carry: Carry<B::InnerBackend>,
    is_last: Option<&[bool]>,
    options: LossOptions,
) -> StepGradients<B> {
    let device = model.embed_tokens.val().device();
    let inputs: Tensor<B, 2, Int> = batch.inputs_tensor(&device);
    let labels: Tensor<B, 2, Int> = batch.labels_tensor(&device);
    let ids: Tensor<B::InnerBackend, 1, Int> = batch.puzzle_ids_tensor(&device);
    // A leaf of the batch's rows of the puzzle table, for their own gradient.
    let rows = inner.puzzle_rows(ids).map(|r| Tensor::<B, 2>::from_inner(r).require_grad());
    let x = model.input_embeddings(inputs, rows.clone());
    let x_inner = x.clone().inner();
    let out = match options.scope {
        GradientScope::LastCycle => supervision_step_train(model, inner, x, carry),
        GradientScope::OneStep => one_step_train(model, inner, x, carry),
    };
    let target = match (model.config().no_act_continue, is_last) {
        (false, Some(last)) => {
            Some(Tensor::<B, 1>::from_inner(q_continue_target(inner, &x_inner, out.carry.clone(), last)))
        }
        _ => None,
    };
    let loss = act_loss(&out.heads, labels, options.loss_type, target);
    let scaled = loss.total.clone().div_scalar(options.scale);
    let grads = scaled.backward();
    StepGradients {
        puzzle_rows: rows.and_then(|r| r.grad(&grads)),
        params: GradientsParams::from_grads(grads, model),
        loss: scalar(scaled.inner()),
        lm_loss: scalar(loss.lm_loss.inner()) / options.scale,
        q_halt_loss: scalar(loss.q_halt_loss.inner()) / options.scale,
        q_halt: floats(out.heads.q_halt.inner()),
        q_continue: floats(out.heads.q_continue.inner()),
        valid_tokens: ints(loss.correctness.valid_tokens),
        correct_tokens: ints(loss.correctness.correct_tokens),
        seq_correct: bools(loss.correctness.seq_is_correct),
        carry: out.carry,
    }
}

fn floats<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("float data")
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    floats(t)[0] as f64
}

fn ints<B: Backend>(t: Tensor<B, 1, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().expect("int data")
}

/// A bool tensor's values, read through an int cast: backends store bools differently
/// (ndarray as `bool`, the cubecl backends as `u32`), and `TensorData` converts numbers only.
fn bools<B: Backend>(t: Tensor<B, 1, Bool>) -> Vec<bool> {
    ints(t.int()).into_iter().map(|v| v != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrmConfig;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::AutodiffModule;

    type B = Autodiff<NdArray<f32>>;

    #[test]
    fn bools_reads_a_bool_tensor() {
        let t = Tensor::<NdArray<f32>, 1>::from_floats([1.0, -2.0, 3.0, 0.0], &Default::default());
        assert_eq!(bools(t.greater_elem(0.5)), vec![true, false, true, false]);
    }

    /// Gradient of sum(logits) w.r.t. the last block's down projection, for one step.
    fn grad_of(t: usize, n: usize, one_step: bool) -> Vec<f32> {
        let mut c = TrmConfig::sudoku_att();
        (c.hidden_size, c.num_heads, c.seq_len, c.vocab_size, c.puzzle_emb_ndim, c.puzzle_emb_len) =
            (16, 2, 5, 4, 0, 0);
        (c.t_cycles, c.n_cycles) = (t, n);
        let device = Default::default();
        let model = c.init_seeded::<B>(&device, 5);
        let inner = model.valid();
        // The same input for every call (a random tensor would differ between calls).
        let data: Vec<f32> = (0..2 * 5 * 16).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let x = Tensor::<B, 3>::from_data(burn::tensor::TensorData::new(data, [2, 5, 16]), &device);
        let carry = inner.initial_carry(2);
        let out = if one_step {
            one_step_train(&model, &inner, x, carry)
        } else {
            supervision_step_train(&model, &inner, x, carry)
        };
        let grads = out.heads.logits.sum().backward();
        let w = &model.net.blocks[1].mlp.down.weight;
        w.grad(&grads).expect("a gradient").into_data().to_vec().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// With RoPE: at T = 1, n = 1 the 1-step gradient is the full gradient (the whole step
    /// is the last z and y update); at T = 2, n = 2 it must differ.
    #[test]
    fn one_step_gradient_with_rope_equals_full_only_when_nothing_is_cut() {
        let (full, one) = (grad_of(1, 1, false), grad_of(1, 1, true));
        assert!(max_diff(&full, &one) < 1e-6, "T=1 n=1: {}", max_diff(&full, &one));
        let (full, one) = (grad_of(2, 2, false), grad_of(2, 2, true));
        assert!(max_diff(&full, &one) > 1e-4, "T=2 n=2 should differ: {}", max_diff(&full, &one));
    }
}
