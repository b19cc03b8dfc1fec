//! Inference with adaptive halting: up to K_max supervision steps, each sample stopping
//! once its halt logit is positive. Halted samples leave the batch (it is compacted), so
//! they stop costing compute.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::Trm;

/// How long inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceOptions {
    /// K_max: the most supervision steps a sample gets.
    pub max_steps: usize,
    /// Stop a sample when its halt logit is > 0 (false: every sample runs K_max steps).
    pub halt: bool,
}

/// Per-sample results.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceOutput {
    /// Argmax tokens at the step each sample stopped, [B * L] row-major.
    pub predictions: Vec<i64>,
    /// Tokens per sample.
    pub seq_len: usize,
    /// Supervision steps each sample ran (1..=K_max).
    pub steps: Vec<usize>,
    /// Halt logit at the step each sample stopped.
    pub q_halt: Vec<f32>,
    /// Continue logit at the step each sample stopped.
    pub q_continue: Vec<f32>,
}

impl InferenceOutput {
    /// Row `i` of the predictions.
    pub fn prediction(&self, i: usize) -> &[i64] {
        &self.predictions[i * self.seq_len..(i + 1) * self.seq_len]
    }
}

/// Runs the model on `inputs` `[B, L]` with `puzzle_ids` `[B]` (seed's `trm_inference`).
pub fn trm_inference<B: Backend>(
    model: &Trm<B>,
    inputs: Tensor<B, 2, Int>,
    puzzle_ids: Tensor<B, 1, Int>,
    options: InferenceOptions,
) -> InferenceOutput {
    let [batch, seq_len] = inputs.dims();
    let device = inputs.device();
    let rows = model.puzzle_rows(puzzle_ids);
    let x = model.input_embeddings(inputs, rows);
    let carry = model.initial_carry(batch);
    let mut out = InferenceOutput {
        predictions: vec![0; batch * seq_len],
        seq_len,
        steps: vec![0; batch],
        q_halt: vec![0.0; batch],
        q_continue: vec![0.0; batch],
    };
    // At batch 1-2 on the CPU backend the weights are packed once here, not per product.
    crate::kernels::with_packed_weights(model, batch * model.config().full_seq_len(), || {
        run_steps(model, x, carry, &mut out, options, &device)
    });
    out
}

/// The supervision steps of [`trm_inference`], halted rows compacted away.
fn run_steps<B: Backend>(
    model: &Trm<B>,
    mut x: Tensor<B, 3>,
    mut carry: crate::model::Carry<B>,
    out: &mut InferenceOutput,
    options: InferenceOptions,
    device: &B::Device,
) {
    let seq_len = out.seq_len;
    // active[j] = original index of the j-th row still running.
    let mut active: Vec<usize> = (0..out.steps.len()).collect();
    for step in 1..=options.max_steps.max(1) {
        let result = model.supervision_step(&x, carry);
        carry = result.carry;
        let q_halt = result.heads.q_halt.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data");
        let q_cont = result.heads.q_continue.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data");
        let last = step >= options.max_steps;
        let done: Vec<bool> = q_halt.iter().map(|&q| last || (options.halt && q > 0.0)).collect();
        if done.iter().any(|&d| d) {
            let preds = result.heads.logits.argmax(2).into_data().convert::<i64>().to_vec::<i64>().expect("int data");
            for (j, &orig) in active.iter().enumerate() {
                if done[j] {
                    out.predictions[orig * seq_len..(orig + 1) * seq_len]
                        .copy_from_slice(&preds[j * seq_len..(j + 1) * seq_len]);
                    out.steps[orig] = step;
                    out.q_halt[orig] = q_halt[j];
                    out.q_continue[orig] = q_cont[j];
                }
            }
            let keep: Vec<i64> = (0..active.len()).filter(|&j| !done[j]).map(|j| j as i64).collect();
            if keep.is_empty() {
                break;
            }
            active = keep.iter().map(|&j| active[j as usize]).collect();
            let index = Tensor::<B, 1, Int>::from_data(TensorData::new(keep.clone(), [keep.len()]), device);
            x = x.select(0, index.clone());
            carry = carry.select(index);
        }
    }
}
