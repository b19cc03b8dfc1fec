//! Fused SwiGLU activation `silu(g)·u` in float32 on the CPU, forward and backward: one pass
//! and one (vectorised) `exp` per element each way, split across rayon tasks. Burn's composition under
//! autodiff is sigmoid (exp, log, exp), two products and their graph nodes.

use rayon::prelude::*;

use super::gemm_cpu::{matmul_new, Threads};
use super::linear_cpu::view;
use super::{buffers, fast_math, packed_cpu, pool, rms_norm_cpu};

/// Elements per rayon task: large enough to amortise the split, small enough for 2+ tasks.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_math::exp(-x))
}

/// silu(g)·u elementwise (each task's loop compiled for the widest SIMD: one `exp` per
/// element, compute-bound while the data is in cache, as at batch 1).
pub(crate) fn forward(g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut out = buffers::zeroed(g.len());
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(u.par_chunks(CHUNK))
        .with_min_len(pool::min_len(1))
        .for_each(|((out, g), u)| forward_into(out, g, u));
    out
}

/// [`forward`] on the calling thread, into `out`.
pub(crate) fn forward_into(out: &mut [f32], g: &[f32], u: &[f32]) {
    fast_math::widest_simd(
        #[inline(always)]
        || {
            for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                *o = g * u / (1.0 + fast_math::exp(-g));
            }
        },
    )
}

/// g ← silu(g)·u, the same expression as [`forward_into`].
fn in_place(g: &mut [f32], u: &[f32]) {
    fast_math::widest_simd(
        #[inline(always)]
        || {
            for (g, &u) in g.iter_mut().zip(u) {
                *g = *g * u / (1.0 + fast_math::exp(-*g));
            }
        },
    )
}

/// The channel half of a post-norm block without gradients,
/// `rms_norm(h + down(silu(h·W_gate)·(h·W_up)))`, with the rows split into rayon tasks (one
/// or a few per thread), each running its three products on its own thread and the activation and
/// norm on the rows it made: one fork-join where the separate kernels make five to eight,
/// each a hand-off between the threads. See [`rows_per_task`] for the split. h: [rows, d];
/// W_gate, W_up: [d, inner]; W_down: [inner, d].
pub(crate) fn swiglu_add_rms_norm(
    h: &[f32],
    [w_gate, w_up, w_down]: [&[f32]; 3],
    d: usize,
    inner: usize,
    eps: f32,
) -> Vec<f32> {
    let rows = h.len() / d;
    let per_task = rows_per_task(rows, d, inner, pool::threads());
    let mut out = buffers::zeroed(h.len());
    out.par_chunks_mut(per_task * d).zip(h.par_chunks(per_task * d)).with_min_len(pool::min_len(1)).for_each(
        |(out, h)| {
            let mut a = product(h, w_gate, d, inner);
            let u = product(h, w_up, d, inner);
            in_place(&mut a, &u);
            let m = product(&a, w_down, inner, d);
            fast_math::widest_simd(
                #[inline(always)]
                || {
                    for ((y, h), m) in out.chunks_exact_mut(d).zip(h.chunks_exact(d)).zip(m.chunks_exact(d)) {
                        rms_norm_cpu::normalize_row(y, h, Some(m), eps);
                    }
                },
            );
        },
    );
    out
}

/// x·W on the calling thread (x [rows, k], W [k, n]): on W's packed copy when an inference
/// scope holds one for these rows ([`packed_cpu`], the same bits), else through `gemm`.
fn product(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
    let rows = x.len() / k;
    match packed_cpu::lookup(w, rows, k, n) {
        Some(packed) => packed_cpu::matmul(x, &packed, Threads::One),
        None => matmul_new(&view(x, rows, k), &view(w, k, n), Threads::One),
    }
}

/// Rows per task of [`swiglu_add_rms_norm`]: one task per thread, unless the weights are
/// small and a thread's share of the [rows, inner] activations is large; then each thread
/// gets several tasks of at most ~1 MiB of activations. Each task packs the three weight
/// matrices for its products: at D=512 (3 MiB each) that costs more than the finer split
/// gains (256-row tasks: −1 to −5 % at D=512 B=16), at D=128 (256 KiB each) the activations
/// staying in a core's cache win (388-row tasks at B=32: sudoku-mlp inference −3 to −7 %,
/// faster in 4 of 5 interleaved rounds twice; sudoku-att and training unchanged). Batch 1
/// keeps one task per thread.
fn rows_per_task(rows: usize, d: usize, inner: usize, threads: usize) -> usize {
    const WEIGHTS_SMALL: usize = 1 << 20;
    const ACTIVATIONS_PER_TASK: usize = 1 << 20;
    let threads = threads.max(1);
    let per_thread = rows.div_ceil(threads).max(1);
    let f32_bytes = std::mem::size_of::<f32>();
    if 3 * d * inner * f32_bytes > WEIGHTS_SMALL {
        return per_thread;
    }
    let tasks_per_thread = (per_thread * inner * f32_bytes).div_ceil(ACTIVATIONS_PER_TASK).max(1);
    rows.div_ceil(threads * tasks_per_thread).max(1)
}

/// Gradients of g and u given the output gradient: with s = sigmoid(g),
/// dg = dout·u·s·(1 + g·(1 − s)) and du = dout·g·s.
pub(crate) fn backward(g: &[f32], u: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut dg, mut du) = (buffers::zeroed(g.len()), buffers::zeroed(g.len()));
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)).zip(dout.par_chunks(CHUNK)))
        .with_min_len(pool::min_len(1))
        .for_each(|((dg, du), ((g, u), dout))| {
            fast_math::widest_simd(
                #[inline(always)]
                || {
                    for i in 0..g.len() {
                        let s = sigmoid(g[i]);
                        dg[i] = dout[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                        du[i] = dout[i] * g[i] * s;
                    }
                },
            )
        });
    (dg, du)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_split_finer_only_when_the_weights_are_small() {
        // (rows, d, inner, threads) -> rows per task.
        for (case, want) in [
            ((3104, 128, 512, 2), 388),  // sudoku D=128 B=32 channel half: 4 tasks per thread
            ((4096, 97, 512, 2), 512),   // its mlp_t mixer (rows B·D, width S)
            ((97, 128, 512, 2), 49),     // batch 1: one task per thread
            ((128, 97, 512, 2), 64),     // batch-1 mixer
            ((1552, 512, 1536, 2), 776), // D=512: weights of 9 MiB, one task per thread
            ((3104, 128, 512, 1), 444),  // one thread: 6.1 MiB of activations, 7 tasks
            ((0, 128, 512, 2), 1),
            ((5, 128, 512, 0), 5),
        ] {
            let (rows, d, inner, threads) = case;
            assert_eq!(rows_per_task(rows, d, inner, threads), want, "{case:?}");
        }
    }

    fn silu_mul(g: f64, u: f64) -> f64 {
        g * u / (1.0 + (-g).exp())
    }

    /// g spread over [−g_range, g_range] (saturated sigmoids at the ends), u and dout in [−1, 1].
    fn inputs(n: usize, g_range: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let g = (0..n).map(|i| ((i * 7919) % 4001) as f32 / (2000.0 / g_range) - g_range).collect();
        let u = (0..n).map(|i| ((i * 104729) % 997) as f32 / 498.5 - 1.0).collect();
        let dout = (0..n).map(|i| ((i * 31) % 13) as f32 / 6.5 - 1.0).collect();
        (g, u, dout)
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        // Covers several rayon chunks and saturated sigmoids.
        let n = 3 * CHUNK + 17;
        let (g, u, dout) = inputs(n, 20.0);
        let out = forward(&g, &u);
        let (dg, du) = backward(&g, &u, &dout);
        for i in 0..n {
            let (gi, ui, di) = (g[i] as f64, u[i] as f64, dout[i] as f64);
            let want = silu_mul(gi, ui);
            assert!((out[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "out {i}: {} vs {want}", out[i]);
            let h = 1e-4 * (1.0 + gi.abs());
            let dg_want = di * (silu_mul(gi + h, ui) - silu_mul(gi - h, ui)) / (2.0 * h);
            let du_want = di * gi / (1.0 + (-gi).exp());
            assert!((dg[i] as f64 - dg_want).abs() <= 1e-5 * (1.0 + dg_want.abs()), "dg {i}: {} vs {dg_want}", dg[i]);
            assert!((du[i] as f64 - du_want).abs() <= 1e-6 * (1.0 + du_want.abs()), "du {i}: {} vs {du_want}", du[i]);
        }
    }

    #[test]
    fn simd_dispatched_loops_are_bit_identical_to_plain_ones() {
        let n = CHUNK + 333;
        let (g, u, dout) = inputs(n, 40.0);
        let out = forward(&g, &u);
        let (dg, du) = backward(&g, &u, &dout);
        for i in 0..n {
            assert_eq!(out[i].to_bits(), (g[i] * u[i] / (1.0 + fast_math::exp(-g[i]))).to_bits(), "out {i}");
            let s = sigmoid(g[i]);
            assert_eq!(dg[i].to_bits(), (dout[i] * u[i] * s * (1.0 + g[i] * (1.0 - s))).to_bits(), "dg {i}");
            assert_eq!(du[i].to_bits(), (dout[i] * g[i] * s).to_bits(), "du {i}");
        }
    }
}
