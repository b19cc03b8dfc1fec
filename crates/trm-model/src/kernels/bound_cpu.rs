//! A lower bound on the time of a training step or an inference on this CPU: every matrix
//! product the FLOP formula counts, each timed alone in a hot loop with the GEMM the
//! kernels use, plus the one `exp` per softmax score and per SiLU element that a forward
//! call cannot avoid, timed the same way.
//!
//! Everything else a step does (RMSNorm, RoPE, residual adds, copies, the backward's
//! elementwise work, the optimizer, every hand-off between threads) counts as free, and
//! each product runs with its operands as warm as repetition makes them. No implementation
//! of the same arithmetic on this machine with this GEMM can be faster, so the bound says
//! how much of a goal is reachable at all: achieved GFLOP/s can not exceed the bound's, and
//! a speed-up over another implementation can not exceed its time over the bound.
//!
//! Used by `trm_model::bench::bench_bound` (`trm bench --only bound`).

use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;

use super::gemm_cpu::{gemm_into, matmul_long_k, matmul_new, Threads};
use super::{fast_math, swiglu_cpu};
use crate::bench::BoundPart;
use crate::config::{swiglu_inner, TrmConfig};

/// One kind of matrix product of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// `[rows, k]·[k, n]` on the pool, as a linear map runs it. `a_t`: the left operand is a
    /// transposed view (a weight gradient, xᵀ·dy); `b_t`: the right one is (an input
    /// gradient, dy·Wᵀ).
    Pool { rows: usize, k: usize, n: usize, a_t: bool, b_t: bool },
    /// The attention's per-(item, head) products, each on one thread, items·heads of them
    /// spread over the pool, reading q, k, v in their [B, S, H, hd] layout. Forward: the
    /// scores q·kᵀ and P·v. Backward: dP = dO·vᵀ, dV = Pᵀ·dO, dQ = dS·k, dK = dSᵀ·q (P not
    /// recomputed: the bound counts the formula's products only).
    Heads { batch: usize, heads: usize, s: usize, hd: usize, backward: bool },
}

impl Product {
    /// Multiply-adds times two.
    pub(crate) fn flops(&self) -> f64 {
        match *self {
            Product::Pool { rows, k, n, .. } => 2.0 * (rows * k * n) as f64,
            Product::Heads { batch, heads, s, hd, backward } => {
                let per_head = 2.0 * 2.0 * (s * s * hd) as f64;
                (batch * heads) as f64 * per_head * if backward { 2.0 } else { 1.0 }
            }
        }
    }
}

/// How many times a phase runs the network and the output heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Calls {
    /// Forward network calls (with and without gradients).
    pub forward: usize,
    /// Network calls backpropagated through.
    pub backward: usize,
    /// Forward passes of the lm head.
    pub heads_forward: usize,
    /// Backward passes of the lm head.
    pub heads_backward: usize,
}

/// Every product of a phase with its count, equal shapes merged.
pub(crate) fn products(cfg: &TrmConfig, batch: usize, calls: Calls) -> Vec<(Product, usize)> {
    let (s, d, l) = (cfg.full_seq_len(), cfg.hidden_size, cfg.layers);
    let mut list: Vec<(Product, usize)> = Vec::new();
    let mut add = |p: Product, count: usize| {
        if count == 0 {
            return;
        }
        match list.iter_mut().find(|(q, _)| *q == p) {
            Some((_, c)) => *c += count,
            None => list.push((p, count)),
        }
    };
    // A linear map [rows, k] -> [rows, n]: forward; input and weight gradients.
    let mut linear = |rows: usize, k: usize, n: usize, fwd: usize, bwd: usize| {
        add(Product::Pool { rows, k, n, a_t: false, b_t: false }, fwd);
        add(Product::Pool { rows, k: n, n: k, a_t: false, b_t: true }, bwd);
        add(Product::Pool { rows: k, k: rows, n, a_t: true, b_t: false }, bwd);
    };
    let (fwd, bwd) = (calls.forward * l, calls.backward * l);
    if cfg.mlp_t {
        let inner_t = swiglu_inner(s, cfg.expansion);
        linear(batch * d, s, inner_t, 2 * fwd, 2 * bwd);
        linear(batch * d, inner_t, s, fwd, bwd);
    } else {
        linear(batch * s, d, d, 4 * fwd, 4 * bwd);
    }
    let inner = swiglu_inner(d, cfg.expansion);
    linear(batch * s, d, inner, 2 * fwd, 2 * bwd);
    linear(batch * s, inner, d, fwd, bwd);
    linear(batch * cfg.seq_len, d, cfg.vocab_size, calls.heads_forward, calls.heads_backward);
    if !cfg.mlp_t {
        let (heads, hd) = (cfg.num_heads, cfg.head_dim());
        add(Product::Heads { batch, heads, s, hd, backward: false }, fwd);
        add(Product::Heads { batch, heads, s, hd, backward: true }, bwd);
    }
    list
}

/// Deterministic values in [-1, 1).
fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(r, c)| ((r * 131 + c * 71 + seed * 977) % 401) as f32 / 200.0 - 1.0)
}

/// Fewest seconds of `f` in a hot loop: two warm-up calls, then enough calls for ~0.1 s
/// (5 to 100). The fastest call, not the median: a bound takes the best the machine showed
/// (on a shared machine the median of the same loop moved by up to 1.8x between runs).
fn hot_loop(mut f: impl FnMut()) -> (f64, usize) {
    f();
    let t = std::time::Instant::now();
    f();
    let first = t.elapsed().as_secs_f64();
    let iters = ((0.1 / first.max(1e-9)) as usize).clamp(5, 100);
    let seconds: Vec<f64> = (0..iters)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (seconds.into_iter().fold(f64::INFINITY, f64::min), iters)
}

/// Rows `row..row + s`, columns `col..col + hd` of `x`.
fn head_view(x: &Array2<f32>, row: usize, s: usize, col: usize, hd: usize) -> ArrayView2<'_, f32> {
    x.slice(s![row..row + s, col..col + hd])
}

/// Seconds one run of `p` takes in a hot loop, and the calls timed.
fn time_product(p: Product) -> (f64, usize) {
    match p {
        Product::Pool { rows, k, n, a_t, b_t } => {
            let a = if a_t { filled(k, rows, 1) } else { filled(rows, k, 1) };
            let b = if b_t { filled(n, k, 2) } else { filled(k, n, 2) };
            let (a, b) = (if a_t { a.t() } else { a.view() }, if b_t { b.t() } else { b.view() });
            // As `linear_cpu` runs them: weight gradients through the split along k.
            if a_t {
                hot_loop(|| drop(std::hint::black_box(matmul_long_k(&a, &b))))
            } else {
                hot_loop(|| drop(std::hint::black_box(matmul_new(&a, &b, Threads::Pool))))
            }
        }
        Product::Heads { batch, heads, s, hd, backward } => {
            // q, k, v and dO as the kernel reads them: [B, S, H·hd] rows, one head a strided
            // [S, hd] slice.
            let width = heads * hd;
            let [q, k, v, dout] = [1, 2, 3, 4].map(|seed| filled(batch * s, width, seed));
            let view = |x, item, h| head_view(x, item * s, s, h * hd, hd);
            let p_shared = filled(s, s, 5);
            hot_loop(|| {
                (0..batch * heads).into_par_iter().for_each_init(
                    || (Array2::<f32>::zeros((s, s)), Array2::<f32>::zeros((s, hd)), Array2::<f32>::zeros((s, hd))),
                    |(scores, out, out2), bh| {
                        let (item, h) = (bh / heads, bh % heads);
                        let (qh, kh, vh) = (view(&q, item, h), view(&k, item, h), view(&v, item, h));
                        if backward {
                            let doh = view(&dout, item, h);
                            gemm_into(1.0, &doh, &vh.t(), 0.0, &mut scores.view_mut(), Threads::One);
                            gemm_into(1.0, &p_shared.t(), &doh, 0.0, &mut out.view_mut(), Threads::One);
                            gemm_into(1.0, &scores.view(), &kh, 0.0, &mut out2.view_mut(), Threads::One);
                            gemm_into(1.0, &scores.t(), &qh, 0.0, &mut out.view_mut(), Threads::One);
                        } else {
                            gemm_into(0.25, &qh, &kh.t(), 0.0, &mut scores.view_mut(), Threads::One);
                            gemm_into(1.0, &scores.view(), &vh, 0.0, &mut out.view_mut(), Threads::One);
                        }
                        std::hint::black_box((&scores, &out, &out2));
                    },
                )
            })
        }
    }
}

/// Seconds of the `exp`s one forward network call cannot avoid, in a hot loop: a softmax
/// over every score (each [S, S] head block in cache, as after its product) and the SiLU of
/// every gate element (16K-element chunks in cache, as the fused kernels process them).
fn time_forward_exps(cfg: &TrmConfig, batch: usize) -> (f64, usize) {
    let (s, d) = (cfg.full_seq_len(), cfg.hidden_size);
    let mut silu_elements = batch * s * swiglu_inner(d, cfg.expansion);
    let (mut seconds, mut fewest) = (0.0, usize::MAX);
    if cfg.mlp_t {
        silu_elements += batch * d * swiglu_inner(s, cfg.expansion);
    } else {
        let items = batch * cfg.num_heads;
        let init = filled(s, s, 7).mapv(|x| 0.5 + 0.5 * x);
        let (softmax_s, iters) = hot_loop(|| {
            (0..items).into_par_iter().for_each_init(
                || init.clone(),
                |p, _| {
                    let p = p.as_slice_mut().expect("standard layout");
                    fast_math::widest_simd(
                        #[inline(always)]
                        || {
                            // Values stay in (e^-1, 1]: e^(x − 1) of x in (0, 1].
                            for row in p.chunks_exact_mut(s) {
                                std::hint::black_box(fast_math::exp_sum_in_place(row, 1.0));
                            }
                        },
                    )
                },
            )
        });
        (seconds, fewest) = (softmax_s, iters);
    }
    const CHUNK: usize = 1 << 14;
    let chunks = silu_elements.div_ceil(CHUNK);
    let (g, u) = (filled(1, CHUNK, 8), filled(1, CHUNK, 9));
    let (g, u) = (g.as_slice().expect("row"), u.as_slice().expect("row"));
    let (silu_s, iters) = hot_loop(|| {
        (0..chunks).into_par_iter().for_each_init(
            || vec![0.0f32; CHUNK],
            |out, _| {
                swiglu_cpu::forward_into(out, g, u);
                std::hint::black_box(&out);
            },
        )
    });
    ((seconds + silu_s) * cfg.layers as f64, fewest.min(iters))
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Product::Pool { rows, k, n, a_t, b_t } => {
                let t = |yes: bool| if yes { "ᵀ" } else { "" };
                let (a, b) = (if a_t { [k, rows] } else { [rows, k] }, if b_t { [n, k] } else { [k, n] });
                write!(f, "[{},{}]{}·[{},{}]{}", a[0], a[1], t(a_t), b[0], b[1], t(b_t))
            }
            Product::Heads { batch, heads, s, hd, backward } => {
                let what = if backward { "dP, dV, dQ, dK" } else { "q·kᵀ, P·v" };
                write!(f, "{batch}x{heads} heads of S={s}, hd={hd}: {what}")
            }
        }
    }
}

/// The bound of a phase, piece by piece (the products first, the exps last), and the fewest
/// calls any piece was timed over.
/// Every piece is timed in [`ROUNDS`] rounds over the whole list, so that a burst of load
/// from elsewhere on the machine, which slows every call of one hot loop, has to strike the
/// same piece in each round to raise the bound.
pub(crate) fn time_bound(cfg: &TrmConfig, batch: usize, calls: Calls) -> (Vec<BoundPart>, usize) {
    const ROUNDS: usize = 2;
    let list = products(cfg, batch, calls);
    let mut best = vec![(f64::INFINITY, 0); list.len() + 1];
    for _ in 0..ROUNDS {
        for ((p, _), best) in list.iter().zip(&mut best) {
            let (seconds, iters) = time_product(*p);
            *best = (best.0.min(seconds), best.1 + iters);
        }
        if calls.forward > 0 {
            let (seconds, iters) = time_forward_exps(cfg, batch);
            let last = best.last_mut().expect("one slot for the exps");
            *last = (last.0.min(seconds), last.1 + iters);
        }
    }
    let fewest = best.iter().take(list.len() + usize::from(calls.forward > 0)).map(|b| b.1).min().unwrap_or(0);
    let mut pieces: Vec<BoundPart> = list
        .iter()
        .zip(&best)
        .map(|(&(p, count), &(each_s, _))| BoundPart {
            what: p.to_string(),
            count,
            each_s,
            gflops: Some(p.flops() / each_s / 1e9),
        })
        .collect();
    if calls.forward > 0 {
        let each_s = best[list.len()].0;
        pieces.push(BoundPart { what: "exps of one forward call".into(), count: calls.forward, each_s, gflops: None });
    }
    (pieces, fewest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{inference_flops, train_step_flops};

    fn tiny(mlp_t: bool) -> TrmConfig {
        let mut cfg = if mlp_t { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
        cfg.hidden_size = 32;
        cfg.num_heads = 4;
        cfg.puzzle_emb_ndim = 32;
        cfg.t_cycles = 2;
        cfg.n_cycles = 1;
        cfg
    }

    #[test]
    fn the_products_add_up_to_the_flop_formula() {
        // The list is built product by product; the formula in bench.rs per block. Both
        // kinds of mixer, a puzzle prefix and odd sizes.
        for mlp_t in [false, true] {
            for (hidden, heads, seq, prefix) in [(512, 8, 81, 16), (128, 8, 81, 16), (96, 3, 30, 0)] {
                let mut cfg = if mlp_t { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
                (cfg.hidden_size, cfg.num_heads, cfg.seq_len, cfg.puzzle_emb_len) = (hidden, heads, seq, prefix);
                cfg.puzzle_emb_ndim = if prefix == 0 { 0 } else { hidden };
                let total = |calls| products(&cfg, 3, calls).iter().map(|(p, c)| p.flops() * *c as f64).sum::<f64>();
                let n_calls = cfg.t_cycles * (cfg.n_cycles + 1);
                let train = Calls { forward: n_calls, backward: cfg.n_cycles + 1, heads_forward: 1, heads_backward: 1 };
                let infer = Calls { forward: 5 * n_calls, backward: 0, heads_forward: 5, heads_backward: 0 };
                for (got, want) in
                    [(total(train), train_step_flops(&cfg, 3)), (total(infer), inference_flops(&cfg, 3, 5))]
                {
                    assert!((got - want).abs() <= 1e-9 * want, "mlp_t {mlp_t} D={hidden}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn inference_has_no_backward_products_and_shapes_merge() {
        let cfg = tiny(false);
        let calls = Calls { forward: 3, backward: 0, heads_forward: 1, heads_backward: 0 };
        let list = products(&cfg, 2, calls);
        assert!(list.iter().all(|(p, _)| match p {
            Product::Pool { a_t, b_t, .. } => !a_t && !b_t,
            Product::Heads { backward, .. } => !backward,
        }));
        // q, k, v, o are one shape, run 4 times per block per call.
        let qkvo = Product::Pool { rows: 2 * cfg.full_seq_len(), k: 32, n: 32, a_t: false, b_t: false };
        assert_eq!(list.iter().find(|(p, _)| *p == qkvo).map(|(_, c)| *c), Some(4 * cfg.layers * 3));
    }

    #[test]
    fn timing_a_tiny_bound_gives_positive_times_for_both_mixers() {
        for mlp_t in [false, true] {
            let cfg = tiny(mlp_t);
            let calls = Calls { forward: 4, backward: 2, heads_forward: 1, heads_backward: 1 };
            let (pieces, fewest) = time_bound(&cfg, 2, calls);
            assert_eq!(pieces.len(), products(&cfg, 2, calls).len() + 1, "every product and the exps");
            assert!(pieces.iter().all(|p| p.each_s > 0.0 && p.count > 0) && fewest >= 10, "{pieces:?}");
            assert_eq!(pieces.last().map(|p| p.count), Some(4), "exps once per forward call");
        }
    }
}
