//! Decoding: refine one position per sequence over the KV cache, with per-token halting or
//! a fixed number of steps, then commit. Used for greedy generation and, under teacher
//! forcing, to compute the memory that [`KvSource::RefinedY`](super::KvSource) commits.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::model::{ArState, ArStepOutput, ArTrm};
use crate::layers::int_tensor;

/// How many refinement steps a token gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPolicy {
    /// Exactly this many steps.
    Fixed(usize),
    /// Until the halt logit is > 0, at most `max` steps.
    Halting {
        /// The most steps.
        max: usize,
    },
}

impl StepPolicy {
    fn max(self) -> usize {
        match self {
            StepPolicy::Fixed(k) | StepPolicy::Halting { max: k } => k,
        }
    }
}

/// Refines the tokens `x` [B, 1, D] at the caches' position under `policy`. A row that halts
/// keeps its state while the others go on; the loop ends when every row has halted.
/// Returns the final state, the heads on it, and the steps each row took. Does not commit.
pub fn decode_position<B: Backend>(
    model: &ArTrm<B>,
    x: &Tensor<B, 3>,
    caches: &mut [KvCache<B>],
    policy: StepPolicy,
) -> (ArState<B>, ArStepOutput<B>, Vec<usize>) {
    let [b, _, d] = x.dims();
    let mut state = model.initial_state(b, 1);
    let mut steps = vec![0usize; b];
    let max = policy.max();
    assert!(max > 0, "at least one refinement step");
    for k in 1..=max {
        let new = model.decode_step(x, state.clone(), caches);
        let active: Vec<bool> = steps.iter().map(|&s| s == 0).collect();
        if active.iter().all(|&a| a) {
            state = new;
        } else {
            let mask = Tensor::<B, 1, Bool>::from_data(TensorData::new(active.clone(), [b]), &x.device())
                .reshape([b, 1, 1])
                .expand([b, 1, d]);
            state = ArState { y: state.y.mask_where(mask.clone(), new.y), z: state.z.mask_where(mask, new.z) };
        }
        let halt_now: Vec<bool> = match policy {
            StepPolicy::Fixed(_) => vec![k == max; b],
            StepPolicy::Halting { .. } => {
                let q = model.heads(state.y.clone()).halt.into_data().convert::<f32>().to_vec::<f32>().unwrap();
                q.iter().map(|&v| v > 0.0 || k == max).collect()
            }
        };
        for (i, s) in steps.iter_mut().enumerate() {
            if *s == 0 && (active[i] && halt_now[i]) {
                *s = k;
            }
        }
        if steps.iter().all(|&s| s > 0) {
            break;
        }
    }
    let out = model.heads(state.y.clone());
    (state, out, steps)
}

/// What decoding a whole teacher-forced sequence produced.
#[derive(Debug, Clone)]
pub struct CommitPass<B: Backend> {
    /// The memory each position committed (its final y, or x), [B, L, D].
    pub memory: Tensor<B, 3>,
    /// The heads at each position's last step, [B, L, V] and [B, L].
    pub output: ArStepOutput<B>,
    /// Steps per position, row-major [B * L].
    pub steps: Vec<usize>,
}

/// Decodes the teacher-forced inputs `x` [B, L, D] position by position under `policy`,
/// committing each position as decoding would. The memory it returns is what
/// [`ArTrm::teacher_forced`] needs so that training sees the prefix K/V decoding will see.
/// Run it on a non-autodiff backend in training (it is the no-grad part).
pub fn commit_states<B: Backend>(model: &ArTrm<B>, x: &Tensor<B, 3>, policy: StepPolicy) -> CommitPass<B> {
    let [b, len, _] = x.dims();
    let mut caches = model.new_caches(b);
    let (mut memory, mut logits, mut halt) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = vec![0usize; b * len];
    for t in 0..len {
        let xt = x.clone().narrow(1, t, 1);
        let (state, out, s) = decode_position(model, &xt, &mut caches, policy);
        for (i, k) in s.into_iter().enumerate() {
            steps[i * len + t] = k;
        }
        memory.push(model.commit_source(xt.clone(), state.y.clone()));
        logits.push(out.logits);
        halt.push(out.halt);
        if t + 1 < len {
            model.commit(&mut caches, xt, state.y);
        }
    }
    let output = ArStepOutput { logits: Tensor::cat(logits, 1), halt: Tensor::cat(halt, 1) };
    CommitPass { memory: Tensor::cat(memory, 1), output, steps }
}

/// Greedy decoding output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated tokens (prompt excluded).
    pub tokens: Vec<usize>,
    /// Refinement steps each generated token took.
    pub steps: Vec<usize>,
    /// Refinement steps of the prompt positions before the last (their predictions are
    /// not used; the last prompt position emits the first generated token).
    pub prompt_steps: Vec<usize>,
}

/// Greedy decoding of one sequence at batch size 1: every position (prompt included, as in
/// training) is refined with per-token halting (halt logit > 0, at most `k_max` steps) or
/// exactly `k_max` steps, emits its argmax and is committed. Stops after `max_new` tokens
/// or when the cache is full.
pub fn generate<B: Backend>(
    model: &ArTrm<B>,
    prompt: &[usize],
    max_new: usize,
    k_max: usize,
    halting: bool,
) -> Generation {
    generate_until(model, prompt, max_new, k_max, halting, None)
}

/// [`generate`] that also stops right after emitting the token `stop` (for example `$`).
pub fn generate_until<B: Backend>(
    model: &ArTrm<B>,
    prompt: &[usize],
    max_new: usize,
    k_max: usize,
    halting: bool,
    stop: Option<usize>,
) -> Generation {
    assert!(!prompt.is_empty(), "an empty prompt has no position to predict from");
    let device = model.device();
    let policy = if halting { StepPolicy::Halting { max: k_max } } else { StepPolicy::Fixed(k_max) };
    let mut caches = model.new_caches(1);
    let mut seq = prompt.to_vec();
    let mut gen = Generation { tokens: Vec::new(), steps: Vec::new(), prompt_steps: Vec::new() };
    let mut t = 0;
    while t < seq.len() && gen.tokens.len() < max_new && t < model.config().max_len {
        let token = int_tensor::<B, 2>(TensorData::new(vec![seq[t] as i64], [1, 1]), &device);
        let x = model.embed(token);
        let (state, out, steps) = decode_position(model, &x, &mut caches, policy);
        if t + 1 < prompt.len() {
            gen.prompt_steps.push(steps[0]);
        } else {
            let next: Tensor<B, 1, Int> = out.logits.argmax(2).reshape([1]);
            let next = next.into_data().convert::<i64>().to_vec::<i64>().unwrap()[0] as usize;
            gen.tokens.push(next);
            gen.steps.push(steps[0]);
            seq.push(next);
            if stop == Some(next) {
                break;
            }
        }
        if t + 1 < model.config().max_len && gen.tokens.len() < max_new {
            model.commit(&mut caches, x, state.y);
        }
        t += 1;
    }
    gen
}
