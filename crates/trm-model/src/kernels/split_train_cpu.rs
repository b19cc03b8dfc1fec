//! A training supervision step with the batch split into shares, on the CPU backend with
//! autodiff: each share runs forward, loss and backward on its samples as one rayon task,
//! with a copy of the model whose parameters are leaves of a graph of its own
//! (burn-autodiff keeps separate graphs apart, each behind its own lock), and the shares'
//! gradients are added in share order. When the shares divide evenly over the threads,
//! every kernel inside a share stays on its thread ([`pool::serially`]); otherwise the
//! kernels split their work as usual and rayon balances the rest.
//!
//! How many shares depends on the batch size alone ([`training_shares`]), never on the
//! thread count, and no kernel's bits depend on it either, so a run computes the same bits
//! on any number of threads. Per sample nothing changes: outputs, the new carry and the
//! puzzle rows' gradients are the whole batch's bits. The weight gradients are sums over the
//! samples, here summed per share and then across shares, so they differ from the whole
//! batch's by float32 rounding.

use std::any::{Any, TypeId};
use std::ops::Range;

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::pool;
use crate::act::HostBatch;
use crate::model::{Carry, Trm};
use crate::train_step::{whole_batch, LossOptions, StepGradients};

type Nd = NdArray<f32>;
type Ad = Autodiff<Nd>;

/// Samples per share, at least.
const SHARE_SAMPLES: usize = 16;
/// Shares at most.
const MAX_SHARES: usize = 16;

/// The shares of a training batch of `batch` samples: a power of two of them, one per
/// [`SHARE_SAMPLES`] samples and at most [`MAX_SHARES`], contiguous and in order, sizes
/// differing by at most one; `None` below two shares. A power of two divides evenly over
/// the usual thread counts (2, 4, 8, 16), so each thread gets whole shares.
fn training_shares(batch: usize) -> Option<Vec<Range<usize>>> {
    let n = (batch / SHARE_SAMPLES).min(MAX_SHARES);
    if n < 2 {
        return None;
    }
    let n = 1 << n.ilog2();
    Some((0..n).map(|i| i * batch / n..(i + 1) * batch / n).collect())
}

/// [`crate::train_step::supervision_step_gradients`] with the batch split into
/// [`training_shares`], when `B` is `Autodiff<NdArray<f32>>` and the batch has two or
/// more; `None` otherwise.
pub(crate) fn step_gradients<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    batch: &HostBatch,
    carry: &Carry<B::InnerBackend>,
    is_last: Option<&[bool]>,
    options: LossOptions,
) -> Option<StepGradients<B>> {
    if TypeId::of::<B>() != TypeId::of::<Ad>() {
        return None;
    }
    let shares = training_shares(batch.batch_size)?;
    let serial = shares.len().is_multiple_of(rayon::current_num_threads());
    let model = (model as &dyn Any).downcast_ref::<Trm<Ad>>()?;
    let inner = (inner as &dyn Any).downcast_ref::<Trm<Nd>>()?;
    let carry = (carry as &dyn Any).downcast_ref::<Carry<Nd>>()?;
    let parts: Vec<StepGradients<Ad>> = shares
        .into_par_iter()
        .map(|r| {
            let share = || {
                let replica = model.clone().map(&mut FreshLeaves);
                let last = is_last.map(|l| &l[r.clone()]);
                whole_batch(&replica, inner, &batch.rows(r.clone()), carry.narrow(r.clone()), last, options)
            };
            if serial {
                pool::serially(share)
            } else {
                share()
            }
        })
        .collect();
    let whole = merge(inner, parts);
    (Box::new(whole) as Box<dyn Any>).downcast::<StepGradients<B>>().ok().map(|g| *g)
}

/// Each parameter as a new leaf over the same buffer, with the same id and the same
/// `require_grad`, so that a share's graph shares no tracked node with another's.
struct FreshLeaves;

impl ModuleMapper<Ad> for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Ad, D>>) -> Param<Tensor<Ad, D>> {
        let (id, tensor, mapper) = param.consume();
        let fresh = Tensor::from_inner(tensor.clone().inner());
        Param::from_mapped_value(id, if tensor.is_require_grad() { fresh.require_grad() } else { fresh }, mapper)
    }
}

/// The shares' results as one: gradients added, per-sample results concatenated.
fn merge(inner: &Trm<Nd>, parts: Vec<StepGradients<Ad>>) -> StepGradients<Ad> {
    let mut parts = parts.into_iter();
    let mut out = parts.next().expect("at least two shares");
    let mut grads = vec![std::mem::take(&mut out.params)];
    let mut rows: Vec<_> = out.puzzle_rows.take().into_iter().collect();
    let mut carries = vec![out.carry.clone()];
    for p in parts {
        grads.push(p.params);
        rows.extend(p.puzzle_rows);
        carries.push(p.carry);
        out.loss += p.loss;
        out.lm_loss += p.lm_loss;
        out.q_halt_loss += p.q_halt_loss;
        out.q_halt.extend(p.q_halt);
        out.q_continue.extend(p.q_continue);
        out.valid_tokens.extend(p.valid_tokens);
        out.correct_tokens.extend(p.correct_tokens);
        out.seq_correct.extend(p.seq_correct);
    }
    let mut sum = SumGradients { parts: grads, out: GradientsParams::new() };
    inner.visit(&mut sum);
    out.params = sum.out;
    out.puzzle_rows = (!rows.is_empty()).then(|| Tensor::cat(rows, 0));
    out.carry = Carry::cat(carries);
    out
}

/// Adds each parameter's gradients over the shares, in share order.
struct SumGradients {
    parts: Vec<GradientsParams>,
    out: GradientsParams,
}

impl ModuleVisitor<Nd> for SumGradients {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Nd, D>>) {
        let sum = self.parts.iter_mut().filter_map(|p| p.remove::<Nd, D>(param.id)).reduce(|a, b| a + b);
        if let Some(sum) = sum {
            self.out.register::<Nd, D>(param.id, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrmConfig;
    use crate::loss::LossType;
    use crate::train_step::GradientScope;
    use burn::module::AutodiffModule;

    fn batch(cfg: &TrmConfig, b: usize) -> HostBatch {
        let l = cfg.seq_len;
        let v = cfg.vocab_size as i32;
        HostBatch {
            inputs: (0..b * l).map(|i| 1 + (i as i32 * 7 + 3) % (v - 1)).collect(),
            labels: (0..b * l).map(|i| if i % 5 == 0 { -100 } else { (i as i32 * 3 + 1) % v }).collect(),
            puzzle_identifiers: (0..b).map(|i| (i % cfg.num_puzzle_identifiers) as i32).collect(),
            batch_size: b,
            seq_len: l,
        }
    }

    /// Every parameter's gradient (empty where it has none), in the model's order.
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor<Ad> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
            let g = self.0.get::<Nd, D>(param.id).map(|g| g.into_data().to_vec::<f32>().unwrap());
            self.1.push(g.unwrap_or_default());
        }
    }

    fn small(mlp_t: bool) -> TrmConfig {
        let mut cfg = if mlp_t { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
        (cfg.hidden_size, cfg.num_heads, cfg.seq_len, cfg.vocab_size) = (32, 4, 9, 6);
        (cfg.puzzle_emb_ndim, cfg.num_puzzle_identifiers, cfg.n_cycles, cfg.t_cycles) = (32, 5, 2, 2);
        cfg.no_act_continue = false;
        cfg
    }

    /// A model with non-zero puzzle rows, so that their gradients are not trivially equal.
    fn model(cfg: &TrmConfig) -> Trm<Ad> {
        let device = Default::default();
        let mut model = cfg.init_seeded::<Ad>(&device, 7);
        let table = Tensor::<Ad, 2>::random([5, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        model.puzzle_emb = Some(table);
        model
    }

    fn last(b: usize) -> Vec<bool> {
        (0..b).map(|i| i % 3 == 1).collect()
    }

    /// Every gradient of a step (parameters, puzzle rows) and its carry, as plain data.
    fn bits(model: &Trm<Ad>, g: &StepGradients<Ad>) -> (Vec<Vec<f32>>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut c = Collect(&g.params, vec![]);
        model.visit(&mut c);
        let data = |t: Tensor<Nd, 3>| t.into_data().to_vec::<f32>().unwrap();
        let rows = g.puzzle_rows.clone().unwrap().into_data().to_vec::<f32>().unwrap();
        (c.1, rows, data(g.carry.y.clone()), data(g.carry.z.clone()))
    }

    #[test]
    fn shares_depend_on_the_batch_alone() {
        assert_eq!(training_shares(31), None);
        assert_eq!(training_shares(32), Some(vec![0..16, 16..32]));
        assert_eq!(training_shares(33), Some(vec![0..16, 16..33]));
        assert_eq!(training_shares(48).map(|s| s.len()), Some(2), "3 rounds down to a power of two");
        assert_eq!(training_shares(64).map(|s| s.len()), Some(4));
        let s = training_shares(768).expect("the paper's batch");
        assert_eq!(s.len(), MAX_SHARES);
        assert!(s.iter().all(|r| r.len() == 48));
    }

    /// The split step against the whole batch: the same per-sample bits, weight gradients
    /// within float32 rounding of a sum, for both mixers, with puzzle embeddings and the
    /// Q-continue term, at both gradient scopes.
    #[test]
    fn split_step_matches_the_whole_batch() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (mlp_t, scope) in [(false, GradientScope::LastCycle), (true, GradientScope::OneStep)] {
            let cfg = small(mlp_t);
            let model = model(&cfg);
            let inner = model.valid();
            let b = 33;
            let (data, last) = (batch(&cfg, b), last(b));
            let carry = inner.initial_carry(b);
            let options = LossOptions { loss_type: LossType::StablemaxCrossEntropy, scale: 40.0, scope };
            let whole = whole_batch::<Ad>(&model, &inner, &data, carry.clone(), Some(&last), options);
            let split = pool
                .install(|| step_gradients::<Ad>(&model, &inner, &data, &carry, Some(&last), options))
                .expect("33 samples make two shares");
            let tag = format!("mlp_t {mlp_t}");
            assert_eq!(split.q_halt, whole.q_halt, "{tag}");
            assert_eq!(split.q_continue, whole.q_continue, "{tag}");
            assert_eq!(split.valid_tokens, whole.valid_tokens, "{tag}");
            assert_eq!(split.correct_tokens, whole.correct_tokens, "{tag}");
            assert_eq!(split.seq_correct, whole.seq_correct, "{tag}");
            let (gs, rows_s, ys, zs) = bits(&model, &split);
            let (gw, rows_w, yw, zw) = bits(&model, &whole);
            assert_eq!((ys, zs), (yw, zw), "{tag}: carry");
            assert_eq!(rows_s, rows_w, "{tag}: puzzle rows' gradients");
            for (a, b) in
                [(split.loss, whole.loss), (split.lm_loss, whole.lm_loss), (split.q_halt_loss, whole.q_halt_loss)]
            {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{tag}: loss {a} vs {b}");
            }
            assert_eq!(gs.len(), gw.len());
            let mut nonzero = 0;
            for (i, (s, w)) in gs.iter().zip(&gw).enumerate() {
                assert_eq!(s.len(), w.len(), "{tag}: parameter {i} has a gradient on one side only");
                let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
                let diff = s.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff <= 1e-5 * scale, "{tag}: parameter {i}: {diff} against a largest gradient of {scale}");
                nonzero += (scale > 1e-9) as usize;
            }
            assert!(nonzero > gw.len() / 2, "{tag}: most gradients are non-zero ({nonzero} of {})", gw.len());
        }
    }

    /// The same bits on 1, 2 and 3 threads (2 shares: serial kernels on 1 and 2 threads,
    /// kernels split by rayon on 3), and with four shares.
    #[test]
    fn split_step_gives_the_same_bits_on_any_thread_count() {
        let cfg = small(false);
        let model = model(&cfg);
        let inner = model.valid();
        let options =
            LossOptions { loss_type: LossType::StablemaxCrossEntropy, scale: 1.0, scope: GradientScope::LastCycle };
        for b in [32, 64] {
            let (data, last) = (batch(&cfg, b), last(b));
            let carry = inner.initial_carry(b);
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let g = pool.install(|| step_gradients::<Ad>(&model, &inner, &data, &carry, Some(&last), options));
                bits(&model, &g.expect("split"))
            };
            let one = run(1);
            assert_eq!(run(2), one, "batch {b}: 2 threads");
            assert_eq!(run(3), one, "batch {b}: 3 threads");
        }
    }

    #[test]
    fn batches_of_fewer_than_two_shares_are_not_split() {
        let device = Default::default();
        let mut cfg = TrmConfig::sudoku_att();
        (cfg.hidden_size, cfg.num_heads, cfg.seq_len, cfg.vocab_size) = (16, 2, 4, 5);
        (cfg.puzzle_emb_ndim, cfg.puzzle_emb_len) = (0, 0);
        let model = cfg.init::<Ad>(&device);
        let inner = model.valid();
        let options =
            LossOptions { loss_type: LossType::SoftmaxCrossEntropy, scale: 1.0, scope: GradientScope::LastCycle };
        for (b, split) in [(1, false), (31, false), (32, true)] {
            let data = batch(&cfg, b);
            let g = step_gradients::<Ad>(&model, &inner, &data, &inner.initial_carry(b), None, options);
            assert_eq!(g.is_some(), split, "batch {b}");
        }
    }
}
