//! AR-TRM: incremental decoding against the teacher-forced parallel forward, causality,
//! agreement with the parity-tested TRM at a single position, halting and the cache size.

use burn::backend::NdArray;
use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData};
use trm_model::ar::{commit_states, generate, generate_until, ArStepOutput, ArTrm, ArTrmConfig, KvSource, StepPolicy};
use trm_model::{PosEncoding, TrmConfig};

type B = NdArray<f32>;

fn tiny(kv_source: KvSource) -> ArTrmConfig {
    ArTrmConfig {
        hidden_size: 16,
        num_heads: 2,
        expansion: 2.0,
        layers: 2,
        t_cycles: 2,
        n_cycles: 2,
        k_max: 3,
        vocab_size: 7,
        max_len: 10,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        kv_source,
    }
}

fn tokens(rows: &[&[i64]]) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &Default::default())
}

fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Token-by-token decoding with the cache, written out from the public primitives:
/// logits after each of `steps` refinement steps, [step][B, L, V], and the committed memory.
fn decode_incrementally(model: &ArTrm<B>, toks: Tensor<B, 2, Int>, steps: usize) -> (Vec<Vec<f32>>, Tensor<B, 3>) {
    let [b, len] = toks.dims();
    let mut caches = model.new_caches(b);
    let mut per_step: Vec<Vec<Tensor<B, 3>>> = vec![Vec::new(); steps];
    let mut memory = Vec::new();
    for t in 0..len {
        let x = model.embed(toks.clone().narrow(1, t, 1));
        let mut state = model.initial_state(b, 1);
        for logits in per_step.iter_mut() {
            state = model.decode_step(&x, state, &mut caches);
            logits.push(model.heads(state.y.clone()).logits);
        }
        assert_eq!(caches[0].len(), t, "refinement never advances the cache");
        memory.push(model.commit_source(x.clone(), state.y.clone()));
        model.commit(&mut caches, x, state.y);
    }
    (per_step.into_iter().map(|l| vals(Tensor::cat(l, 1))).collect(), Tensor::cat(memory, 1))
}

fn teacher_forced_consistency(kv_source: KvSource) {
    let model = tiny(kv_source).init_seeded::<B>(&Default::default(), 3);
    let toks = tokens(&[&[1, 4, 2, 6, 0, 3, 5], &[6, 6, 1, 0, 2, 4, 4]]);
    let steps = 3;
    let (inc, memory) = decode_incrementally(&model, toks.clone(), steps);
    let x = model.embed(toks);
    // The memory decoding commits is what the no-grad commit pass computes.
    let pass = commit_states(&model, &x, StepPolicy::Fixed(steps));
    assert!(rel_err(&vals(pass.memory.clone()), &vals(memory.clone())) < 1e-6);
    assert!(pass.steps.iter().all(|&s| s == steps));
    let par = model.teacher_forced(&x, memory, steps);
    for (k, out) in par.iter().enumerate() {
        let e = rel_err(&vals(out.logits.clone()), &inc[k]);
        assert!(e < 1e-4, "{kv_source:?} step {k}: rel err {e}");
    }
    assert!(rel_err(&vals(pass.output.logits), &inc[steps - 1]) < 1e-4);
    // The steps really refine: logits move between steps.
    assert!(rel_err(&inc[0], &inc[steps - 1]) > 1e-2);
}

#[test]
fn incremental_decoding_equals_the_parallel_forward_refined_y_kv() {
    teacher_forced_consistency(KvSource::RefinedY);
}

#[test]
fn incremental_decoding_equals_the_parallel_forward_embedding_kv() {
    teacher_forced_consistency(KvSource::Embedding);
}

/// Changing the token at position 3 leaves positions 0..3 bit-identical and changes the rest
/// (through attention to position 3's committed K/V, not only through position 3 itself).
#[test]
fn the_decoder_is_causal() {
    for kv_source in [KvSource::RefinedY, KvSource::Embedding] {
        let model = tiny(kv_source).init_seeded::<B>(&Default::default(), 4);
        let run = |row: &[i64]| {
            let x = model.embed(tokens(&[row]));
            let pass = commit_states(&model, &x, StepPolicy::Fixed(2));
            let out: ArStepOutput<B> = model.teacher_forced(&x, pass.memory, 2).pop().unwrap();
            vals(out.logits)
        };
        let (a, b) = (run(&[1, 2, 3, 4, 5, 6]), run(&[1, 2, 3, 0, 5, 6]));
        let v = 7;
        assert_eq!(a[..3 * v], b[..3 * v], "{kv_source:?}: the past must not see the future");
        for t in 3..6 {
            assert!(rel_err(&a[t * v..(t + 1) * v], &b[t * v..(t + 1) * v]) > 1e-4, "{kv_source:?}: position {t}");
        }
    }
}

/// At a single position AR-TRM attends only to itself, so with the same weights it is the
/// parity-tested (non-causal) TRM on a length-1 sequence: k refinement steps = k
/// supervision steps from the initial carry.
#[test]
fn one_position_equals_trm_with_the_same_weights() {
    let device = Default::default();
    let ar_cfg = tiny(KvSource::RefinedY);
    let mut trm_cfg = TrmConfig::sudoku_att();
    trm_cfg.hidden_size = ar_cfg.hidden_size;
    trm_cfg.num_heads = ar_cfg.num_heads;
    trm_cfg.expansion = ar_cfg.expansion;
    trm_cfg.t_cycles = ar_cfg.t_cycles;
    trm_cfg.n_cycles = ar_cfg.n_cycles;
    trm_cfg.vocab_size = ar_cfg.vocab_size;
    trm_cfg.seq_len = 1;
    trm_cfg.puzzle_emb_ndim = 0;
    trm_cfg.puzzle_emb_len = 0;
    trm_cfg.pos_encodings = PosEncoding::Rope;
    let trm = trm_cfg.init_seeded::<B>(&device, 9);
    let mut ar = ar_cfg.init_seeded::<B>(&device, 1);
    ar.embed_tokens = Param::from_tensor(trm.embed_tokens.val());
    ar.lm_head = trm.lm_head.clone();
    ar.y_init = trm.h_init.clone();
    ar.z_init = trm.l_init.clone();
    for (a, t) in ar.blocks.iter_mut().zip(&trm.net.blocks) {
        let att = t.attention.as_ref().unwrap();
        a.attention.q = att.q.clone();
        a.attention.k = att.k.clone();
        a.attention.v = att.v.clone();
        a.attention.o = att.o.clone();
        a.mlp = t.mlp.clone();
    }
    let toks = tokens(&[&[5], &[2]]);
    let x = ar.embed(toks.clone());
    let ar_out = ar.teacher_forced(&x, x.clone(), 3);
    let tx = trm.input_embeddings(toks, None);
    let mut carry = trm.initial_carry(2);
    for (k, out) in ar_out.iter().enumerate() {
        let step = trm.supervision_step(&tx, carry);
        carry = step.carry;
        let e = rel_err(&vals(out.logits.clone()), &vals(step.heads.logits));
        assert!(e < 1e-5, "step {k}: rel err {e}");
    }
}

#[test]
fn a_fresh_halting_head_never_halts_and_a_positive_bias_halts_at_once() {
    let device = Default::default();
    let mut model = tiny(KvSource::RefinedY).init_seeded::<B>(&device, 5);
    let halt = model.heads(model.initial_state(1, 1).y).halt;
    assert_eq!(vals(halt), vec![-5.0]);
    let prompt = [1, 2, 3];
    let fixed = generate(&model, &prompt, 4, 3, false);
    let halting = generate(&model, &prompt, 4, 3, true);
    assert_eq!(fixed, halting, "bias -5 with zero weight: the halt logit is -5 everywhere");
    assert_eq!(fixed.steps, vec![3; 4]);
    assert_eq!(fixed.prompt_steps, vec![3; 2]);
    // Fixed-steps generation is the argmax of the teacher-forced forward on its own output.
    let mut seq: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    seq.extend(fixed.tokens.iter().map(|&t| t as i64));
    seq.pop();
    let x = model.embed(tokens(&[&seq]));
    let pass = commit_states(&model, &x, StepPolicy::Fixed(3));
    let logits = model.teacher_forced(&x, pass.memory, 3).pop().unwrap().logits;
    let argmax = logits.argmax(2).into_data().convert::<i64>().to_vec::<i64>().unwrap();
    let want: Vec<i64> = fixed.tokens.iter().map(|&t| t as i64).collect();
    assert_eq!(argmax[prompt.len() - 1..], want[..]);
    // A halt bias of +5 halts every token after one step: the same as k_max = 1.
    model.halt_head.bias = Some(Param::from_tensor(Tensor::from_floats([5.0], &device)));
    let halt_at_once = generate(&model, &prompt, 4, 3, true);
    assert_eq!(halt_at_once.steps, vec![1; 4]);
    assert_eq!(halt_at_once.tokens, generate(&model, &prompt, 4, 1, false).tokens);
    // Stopping at a token: the output is the prefix of the unstopped one through the first
    // occurrence of that token (or all of it when the token never comes).
    let long = generate(&model, &prompt, 8, 2, false);
    for stop in [long.tokens[1], long.tokens[5], 99] {
        let cut = long.tokens.iter().position(|&t| t == stop).map_or(long.tokens.len(), |i| i + 1);
        let stopped = generate_until(&model, &prompt, 8, 2, false, Some(stop));
        assert_eq!(stopped.tokens, long.tokens[..cut], "stop {stop}");
        assert_eq!(stopped.steps, long.steps[..cut]);
    }
}

/// Rows of a batch that halt at different steps keep their own state: the batched commit
/// pass equals running each row alone.
#[test]
fn batched_halting_equals_each_row_alone() {
    let device = Default::default();
    let mut model = tiny(KvSource::RefinedY).init_seeded::<B>(&device, 6);
    let d = model.config().hidden_size;
    let w: Vec<f32> = (0..d).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.8).collect();
    model.halt_head.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d, 1]), &device));
    model.halt_head.bias = Some(Param::from_tensor(Tensor::from_floats([0.0], &device)));
    let rows: [&[i64]; 2] = [&[1, 4, 2, 6, 0], &[3, 0, 5, 5, 1]];
    let policy = StepPolicy::Halting { max: 4 };
    let both = commit_states(&model, &model.embed(tokens(&rows)), policy);
    let mut steps = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let one = commit_states(&model, &model.embed(tokens(&[row])), policy);
        let got = vals(both.memory.clone().narrow(0, i, 1));
        assert!(rel_err(&got, &vals(one.memory)) < 1e-5, "row {i}");
        assert_eq!(both.steps[i * 5..(i + 1) * 5], one.steps[..]);
        steps.extend(one.steps);
    }
    let (lo, hi) = (steps.iter().min().unwrap(), steps.iter().max().unwrap());
    assert!(lo < hi, "the test needs tokens that halt at different steps: {steps:?}");
}

#[test]
fn the_cache_is_preallocated_to_max_len() {
    let cfg = tiny(KvSource::RefinedY);
    let model = cfg.init::<B>(&Default::default());
    let caches = model.new_caches(1);
    let total: usize = caches.iter().map(|c| c.allocated_bytes()).sum();
    assert_eq!(total, cfg.kv_bytes_per_token() * cfg.max_len);
    assert_eq!(cfg.kv_bytes_per_token(), 2 * 2 * 16 * 4);
}

/// The step loss against a float64 hand computation: softmax CE averaged over scored tokens,
/// plus 0.5 x BCE(halt, prediction right) over the same tokens.
#[test]
fn the_step_loss_matches_a_hand_computation() {
    let device = Default::default();
    let logits = Tensor::<B, 3>::from_data(TensorData::new(vec![2.0f32, 0.0, 1.0, 0.0, 1.0, 3.0], [1, 3, 2]), &device);
    let halt = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5f32, -1.0, 7.0], [1, 3]), &device);
    let labels = tokens(&[&[0, 0, -100]]);
    let loss = trm_model::ar::ar_step_loss(&ArStepOutput { logits, halt }, labels);
    // Token 0: logits (2, 0), label 0, right. Token 1: (1, 0), label 0, right. Token 2 ignored.
    let ce = |a: f64, b: f64| (a.exp() + b.exp()).ln() - a;
    let bce = |x: f64, t: f64| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
    let lm = (ce(2.0, 0.0) + ce(1.0, 0.0)) / 2.0;
    let h = (bce(0.5, 1.0) + bce(-1.0, 1.0)) / 2.0;
    assert_eq!((loss.correct, loss.scored), (2, 2));
    assert!((loss.lm.into_scalar() as f64 - lm).abs() < 1e-6);
    assert!((loss.halt.into_scalar() as f64 - h).abs() < 1e-6);
    assert!((loss.total.into_scalar() as f64 - (lm + 0.5 * h)).abs() < 1e-6);
}

/// A few optimizer steps on a toy copy task (each position predicts its own input token
/// again) lower the deep-supervision loss to well under half its start (chance is ln 5).
#[test]
fn training_lowers_the_loss_on_a_copy_task() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    type A = Autodiff<NdArray<f32>>;
    let device = Default::default();
    let cfg =
        ArTrmConfig { hidden_size: 32, t_cycles: 2, n_cycles: 1, k_max: 2, max_len: 8, ..tiny(KvSource::RefinedY) };
    let mut model = cfg.init_seeded::<A>(&device, 11);
    let mut opt = AdamConfig::new().init::<A, ArTrm<A>>();
    let mut seed = 12345u64;
    let mut rand = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % 5) as i64
    };
    let (batch, len) = (8, 6);
    let mut history = Vec::new();
    for _ in 0..25 {
        let seq: Vec<i64> = (0..batch * len).map(|_| rand()).collect();
        let inputs = Tensor::<A, 2, Int>::from_data(TensorData::new(seq.clone(), [batch, len]), &device);
        let labels = Tensor::<A, 2, Int>::from_data(TensorData::new(seq, [batch, len]), &device);
        let inner = model.valid();
        let losses = trm_model::ar::ar_train_losses(&model, &inner, inputs, labels, 2, StepPolicy::Fixed(2));
        let total = losses.iter().map(|l| l.total.clone()).reduce(|a, b| a + b).unwrap();
        history.push(losses[1].lm.clone().into_scalar());
        let grads = GradientsParams::from_grads(total.backward(), &model);
        model = opt.step(1e-2, model, grads);
    }
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&history[..3]), mean(&history[20..]));
    assert!(last < 0.4 * first, "loss {first} -> {last}: {history:?}");
}
