//! AR evaluation: exact and token accuracy of the answer, refinement steps per token, their
//! correlation with per-token difficulty, and block evaluations per token.
//!
//! Why teacher-forced evaluation is exact greedy decoding: an answer is right under greedy
//! decoding iff every answer token is right; while that holds, the prefix decoding feeds
//! back is the true prefix, i.e. the teacher-forced input. So "every answer token right
//! under teacher forcing" and "greedy decoding produces the whole answer" are the same
//! event, and the per-token steps up to the first error are the same too. The AR-TRM paths
//! additionally reproduce decoding's per-token halting exactly: with
//! [`KvSource::Embedding`] the committed K/V do not depend on refinement, so all positions
//! refine in parallel and each one's halting step is read off the per-step heads; with
//! [`KvSource::RefinedY`] the prefix is committed position by position by
//! [`commit_states`], which is the decoding loop. A test checks both against `generate`.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;
use trm_data::ar_tasks::{batch, ArSample, IGNORE};
use trm_model::ar::{commit_states, ArBaseline, ArTrm, KvSource, StepPolicy};

/// Predictions of one evaluation mode for a batch, row-major [B * L].
#[derive(Debug, Clone)]
pub struct ModePredictions {
    /// fixed, adaptive.
    pub mode: &'static str,
    /// Predicted next token at each input position.
    pub preds: Vec<i64>,
    /// Refinement steps each position took (1 for the baselines).
    pub steps: Vec<usize>,
    /// With fixed k = 1..=K steps, the predictions (AR-TRM with embedding K/V only; empty otherwise).
    pub per_k: Vec<Vec<i64>>,
}

/// A model that can be evaluated: predictions per mode for inputs [B, L].
pub trait ArPredict<B: Backend> {
    /// The predictions of every mode the model has.
    fn predict(&self, inputs: Tensor<B, 2, Int>) -> Vec<ModePredictions>;
    /// Block evaluations one refinement step costs per token.
    fn block_evals_per_step(&self) -> usize;
}

fn host_i64<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().expect("int tensor")
}

fn argmax<B: Backend>(logits: Tensor<B, 3>) -> Vec<i64> {
    let [b, l, _] = logits.dims();
    host_i64(logits.argmax(2).reshape([b, l]))
}

impl<B: Backend> ArPredict<B> for ArTrm<B> {
    fn predict(&self, inputs: Tensor<B, 2, Int>) -> Vec<ModePredictions> {
        let k = self.config().k_max;
        let x = self.embed(inputs);
        match self.config().kv_source {
            KvSource::Embedding => {
                let outs = self.teacher_forced(&x, x.clone(), k);
                let per_k: Vec<Vec<i64>> = outs.iter().map(|o| argmax(o.logits.clone())).collect();
                let halts: Vec<Vec<f32>> = outs
                    .into_iter()
                    .map(|o| o.halt.into_data().convert::<f32>().to_vec::<f32>().expect("float tensor"))
                    .collect();
                let n = per_k[0].len();
                let steps: Vec<usize> =
                    (0..n).map(|i| (0..k).find(|&s| halts[s][i] > 0.0).map_or(k, |s| s + 1)).collect();
                let adaptive = (0..n).map(|i| per_k[steps[i] - 1][i]).collect();
                let fixed = per_k[k - 1].clone();
                vec![
                    ModePredictions { mode: "fixed", preds: fixed, steps: vec![k; n], per_k },
                    ModePredictions { mode: "adaptive", preds: adaptive, steps, per_k: Vec::new() },
                ]
            }
            KvSource::RefinedY => [("fixed", StepPolicy::Fixed(k)), ("adaptive", StepPolicy::Halting { max: k })]
                .into_iter()
                .map(|(mode, policy)| {
                    let pass = commit_states(self, &x, policy);
                    ModePredictions { mode, preds: argmax(pass.output.logits), steps: pass.steps, per_k: Vec::new() }
                })
                .collect(),
        }
    }

    fn block_evals_per_step(&self) -> usize {
        self.config().net_calls_per_step() * self.config().layers
    }
}

impl<B: Backend> ArPredict<B> for ArBaseline<B> {
    fn predict(&self, inputs: Tensor<B, 2, Int>) -> Vec<ModePredictions> {
        let preds = argmax(self.forward(inputs));
        let n = preds.len();
        vec![ModePredictions { mode: "fixed", preds, steps: vec![1; n], per_k: Vec::new() }]
    }

    fn block_evals_per_step(&self) -> usize {
        self.config().block_evals_per_token()
    }
}

/// The metrics of one mode on one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArEvalResult {
    /// test or test_long.
    pub split: String,
    /// fixed or adaptive.
    pub mode: String,
    /// Sequences.
    pub samples: usize,
    /// Fraction of sequences whose whole answer (through `$`) is right.
    pub exact_accuracy: f64,
    /// Fraction of answer tokens right.
    pub token_accuracy: f64,
    /// Mean refinement steps per answer token.
    pub mean_steps: f64,
    /// Most refinement steps any answer token took.
    pub max_steps: usize,
    /// Mean block evaluations per answer token (steps x block evaluations per step).
    pub block_evals_per_token: f64,
    /// Pearson correlation of steps with the per-token difficulty, where the task defines
    /// one and the steps vary (None otherwise).
    pub steps_difficulty_correlation: Option<f64>,
    /// Mean steps per difficulty value: (difficulty, mean steps, tokens).
    pub steps_by_difficulty: Vec<(u32, f64, usize)>,
    /// Exact accuracy with fixed k = 1..=K steps (AR-TRM with embedding K/V).
    pub exact_accuracy_at_k: Vec<f64>,
}

#[derive(Default)]
struct Tally {
    samples: usize,
    exact: usize,
    tokens: usize,
    right: usize,
    steps: Vec<usize>,
    difficulty: Vec<(u32, usize)>,
    exact_at_k: Vec<usize>,
}

/// Inputs and labels of `samples`, row-major, padded to the longest: (len, inputs, labels).
pub(crate) fn padded_batch(samples: &[ArSample]) -> (usize, Vec<i64>, Vec<i64>) {
    let len = samples.iter().map(|s| s.tokens.len() - 1).max().unwrap_or(1);
    let (inputs, labels) = batch(samples, len);
    (len, inputs, labels)
}

/// A [rows, len] int tensor of row-major `values`.
pub(crate) fn int_tensor<B: Backend>(
    values: Vec<i64>,
    rows: usize,
    len: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(values, [rows, len]), device)
}

/// Pearson correlation; None when either side is constant or there are under 2 points.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return None;
    }
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Evaluates `model` on `samples` in batches of `batch_size`; one result per mode.
pub fn evaluate_ar<B: Backend, M: ArPredict<B>>(
    model: &M,
    samples: &[ArSample],
    split: &str,
    batch_size: usize,
    device: &B::Device,
) -> Vec<ArEvalResult> {
    let mut tallies: Vec<(&'static str, Tally)> = Vec::new();
    for chunk in samples.chunks(batch_size.max(1)) {
        let (len, inputs, labels) = padded_batch(chunk);
        for m in model.predict(int_tensor(inputs, chunk.len(), len, device)) {
            let idx = match tallies.iter().position(|(mode, _)| *mode == m.mode) {
                Some(i) => i,
                None => {
                    tallies.push((m.mode, Tally::default()));
                    tallies.len() - 1
                }
            };
            let tally = &mut tallies[idx].1;
            tally.exact_at_k.resize(m.per_k.len(), 0);
            for (r, sample) in chunk.iter().enumerate() {
                let row = r * len..(r + 1) * len;
                let scored: Vec<usize> = row.clone().filter(|&i| labels[i] != IGNORE).collect();
                let all_right = |p: &[i64]| scored.iter().all(|&i| p[i] == labels[i]);
                tally.samples += 1;
                tally.exact += all_right(&m.preds) as usize;
                for (k, p) in m.per_k.iter().enumerate() {
                    tally.exact_at_k[k] += all_right(p) as usize;
                }
                for (j, &i) in scored.iter().enumerate() {
                    tally.tokens += 1;
                    tally.right += (m.preds[i] == labels[i]) as usize;
                    tally.steps.push(m.steps[i]);
                    if let Some(d) = &sample.difficulty {
                        tally.difficulty.push((d[j], m.steps[i]));
                    }
                }
            }
        }
    }
    let per_step = model.block_evals_per_step() as f64;
    tallies
        .into_iter()
        .map(|(mode, t)| {
            let mean_steps = t.steps.iter().sum::<usize>() as f64 / t.steps.len().max(1) as f64;
            let pairs: Vec<(f64, f64)> = t.difficulty.iter().map(|&(d, s)| (d as f64, s as f64)).collect();
            let mut levels: Vec<u32> = t.difficulty.iter().map(|p| p.0).collect();
            levels.sort_unstable();
            levels.dedup();
            let steps_by_difficulty = levels
                .into_iter()
                .map(|lvl| {
                    let s: Vec<usize> = t.difficulty.iter().filter(|p| p.0 == lvl).map(|p| p.1).collect();
                    (lvl, s.iter().sum::<usize>() as f64 / s.len() as f64, s.len())
                })
                .collect();
            let frac = |a: usize, b: usize| a as f64 / b.max(1) as f64;
            ArEvalResult {
                split: split.to_string(),
                mode: mode.to_string(),
                samples: t.samples,
                exact_accuracy: frac(t.exact, t.samples),
                token_accuracy: frac(t.right, t.tokens),
                mean_steps,
                max_steps: t.steps.iter().copied().max().unwrap_or(0),
                block_evals_per_token: mean_steps * per_step,
                steps_difficulty_correlation: pearson(&pairs),
                steps_by_difficulty,
                exact_accuracy_at_k: t.exact_at_k.iter().map(|&e| frac(e, t.samples)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::module::Param;
    use trm_data::ar_tasks::{addition, sort};
    use trm_model::ar::{generate, ArTrmConfig};

    type B = NdArray<f32>;

    #[test]
    fn pearson_of_known_pairs() {
        assert!((pearson(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]).unwrap() + 1.0).abs() < 1e-12);
        // x = 1,2,3,4; y = 1,3,2,4: r = 0.8.
        assert!((pearson(&[(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0)]).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(pearson(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    fn tiny(kv_source: KvSource) -> ArTrmConfig {
        ArTrmConfig {
            hidden_size: 16,
            num_heads: 2,
            expansion: 2.0,
            layers: 2,
            t_cycles: 1,
            n_cycles: 1,
            k_max: 3,
            vocab_size: trm_data::ar_tasks::VOCAB_SIZE,
            max_len: 16,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            kv_source,
        }
    }

    /// Teacher-forced evaluation agrees with greedy decoding: for each sample, the sample is
    /// exactly right iff `generate` reproduces its answer, and when it is, the steps match.
    /// A random model is rarely right, so the check uses its own greedy outputs as the
    /// "answers": then every sample must come out exactly right with decoding's steps.
    #[test]
    fn teacher_forced_evaluation_equals_greedy_decoding_with_halting() {
        let device = Default::default();
        for kv in [KvSource::Embedding, KvSource::RefinedY] {
            for halting in [false, true] {
                let mut model = tiny(kv).init_seeded::<B>(&device, 7);
                // Let some tokens halt early: bias the halt head so its logit straddles 0.
                let w: Vec<f32> = (0..16).map(|i| if i % 3 == 0 { 0.8 } else { -0.5 }).collect();
                let param = |v: Vec<f32>, shape: Vec<usize>| TensorData::new(v, shape);
                model.halt_head.weight = Param::from_tensor(Tensor::from_data(param(w, vec![16, 1]), &device));
                model.halt_head.bias = Some(Param::from_tensor(Tensor::from_data(param(vec![0.1], vec![1]), &device)));
                let prompts = [addition(&[4, 7], &[5, 8]), sort(&[3, 1, 2])];
                let mut samples = Vec::new();
                let mut decoded_steps = Vec::new();
                for p in &prompts {
                    let prompt: Vec<usize> = p.tokens[..p.prompt_len].iter().map(|&t| t as usize).collect();
                    let n_answer = p.tokens.len() - p.prompt_len;
                    let g = generate(&model, &prompt, n_answer, 3, halting);
                    let mut tokens = p.tokens[..p.prompt_len].to_vec();
                    tokens.extend(g.tokens.iter().map(|&t| t as u32));
                    samples.push(ArSample { tokens, prompt_len: p.prompt_len, difficulty: None });
                    decoded_steps.extend(g.steps);
                }
                let results = evaluate_ar::<B, _>(&model, &samples, "test", 2, &device);
                let mode = if halting { "adaptive" } else { "fixed" };
                let r = results.iter().find(|r| r.mode == mode).unwrap();
                assert_eq!(r.exact_accuracy, 1.0, "{kv:?} {mode}");
                let mean = decoded_steps.iter().sum::<usize>() as f64 / decoded_steps.len() as f64;
                assert!((r.mean_steps - mean).abs() < 1e-12, "{kv:?} {mode}: {} vs {mean}", r.mean_steps);
                if halting {
                    assert!(decoded_steps.iter().any(|&s| s < 3), "no token halted early: {decoded_steps:?}");
                }
            }
        }
    }
}
