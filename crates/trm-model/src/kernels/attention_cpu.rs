//! Fused RoPE + softmax attention in float32 on the CPU, forward and backward, over the
//! [B, S, H, hd] layout the q/k/v projections produce (no head transposes).
//!
//! Per batch item (one rayon task each) and head: scores = scale·q kᵀ with one GEMM into a
//! reused [S, S] buffer, the row exps in place (max, then exp and sum in one pass, while the
//! row is in cache), then out = P v with one GEMM written straight into the output layout
//! and each output row divided by its row's sum. With fewer
//! items than threads (batch 1) the forward makes each (item, head) a task instead.
//! The backward recomputes P from the saved row log-sum-exp (as flash attention does) instead
//! of keeping the [B, H, S, S] probabilities: per call it keeps the rotated q and k (two new
//! [B, S, D] buffers), v by reference and one float per score row.

use ndarray::{s, Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3};
use rayon::prelude::*;

use super::gemm_cpu::{gemm_into, Threads};
use super::{buffers, fast_math, pool};

/// Shape of q, k, v and the output: [b, s, h, d].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub b: usize,
    pub s: usize,
    pub h: usize,
    pub d: usize,
}

impl Dims {
    /// Elements of one batch item.
    fn item(&self) -> usize {
        self.s * self.h * self.d
    }

    pub fn len(&self) -> usize {
        self.b * self.item()
    }

    fn scale(&self) -> f32 {
        // Burn's and torch's default: 1/sqrt(head_dim), computed in f64 then rounded.
        (1.0 / (self.d as f64).sqrt()) as f32
    }
}

/// RoPE tables, row-major [positions >= s, d], in the `rotate_half` pairing (i, i + d/2).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RopeTables<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// What the backward needs besides v (which the caller keeps by reference): the rotated q
/// and k, and the log-sum-exp of every score row.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    pub q_rot: Vec<f32>,
    pub k_rot: Vec<f32>,
    /// [b, h, s].
    pub lse: Vec<f32>,
}

/// Rotates every head of one [s, h, d] item in place: x·cos + rotate_half(x)·sin.
fn rope_item(x: &mut [f32], dims: Dims, rope: RopeTables<'_>) {
    let (d, half) = (dims.d, dims.d / 2);
    for (pos, row) in x.chunks_exact_mut(dims.h * d).enumerate() {
        let cos = &rope.cos[pos * d..(pos + 1) * d];
        let sin = &rope.sin[pos * d..(pos + 1) * d];
        for head in row.chunks_exact_mut(d) {
            let (x1, x2) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * cos[i] + -b * sin[i];
                x2[i] = b * cos[i + half] + a * sin[i + half];
            }
        }
    }
}

/// The transpose of [`rope_item`]: maps a gradient with respect to the rotated values back to
/// the values before rotation.
fn rope_item_transposed(g: &mut [f32], dims: Dims, rope: RopeTables<'_>) {
    let (d, half) = (dims.d, dims.d / 2);
    for (pos, row) in g.chunks_exact_mut(dims.h * d).enumerate() {
        let cos = &rope.cos[pos * d..(pos + 1) * d];
        let sin = &rope.sin[pos * d..(pos + 1) * d];
        for head in row.chunks_exact_mut(d) {
            let (g1, g2) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (g1[i], g2[i]);
                g1[i] = a * cos[i] + b * sin[i + half];
                g2[i] = b * cos[i + half] - a * sin[i];
            }
        }
    }
}

/// A copy of `x` with RoPE applied when there is RoPE (the backward keeps it).
fn rotated(x: &[f32], dims: Dims, rope: Option<RopeTables<'_>>) -> Vec<f32> {
    let mut out = buffers::copied(x);
    if let Some(rope) = rope {
        out.par_chunks_mut(dims.item()).with_min_len(pool::min_len(1)).for_each(|item| rope_item(item, dims, rope));
    }
    out
}

fn item_view(x: &[f32], dims: Dims) -> ArrayView3<'_, f32> {
    ArrayView3::from_shape((dims.s, dims.h, dims.d), x).expect("an item is s·h·d long")
}

fn item_view_mut(x: &mut [f32], dims: Dims) -> ArrayViewMut3<'_, f32> {
    ArrayViewMut3::from_shape((dims.s, dims.h, dims.d), x).expect("an item is s·h·d long")
}

/// softmax(scale·q kᵀ) v with RoPE on q and k. Returns the output [b, s, h, d] and, when
/// `save` is set, what [`backward`] needs.
pub(crate) fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: Dims,
    rope: Option<RopeTables<'_>>,
    save: bool,
) -> (Vec<f32>, Option<Saved>) {
    let q_rot = rotated(q, dims, rope);
    let k_rot = rotated(k, dims, rope);
    let mut out = buffers::zeroed(dims.len());
    let mut lse = vec![0.0f32; dims.b * dims.h * dims.s];
    let scale = dims.scale();
    fn item(x: &[f32], b: usize, dims: Dims) -> ArrayView3<'_, f32> {
        item_view(&x[b * dims.item()..(b + 1) * dims.item()], dims)
    }
    if dims.b < pool::threads() {
        // Fewer items than threads (batch 1): one task per (item, head), each into its own
        // [s, hd] block, scattered into the [s, h, hd] layout afterwards; one task per item
        // would leave the other threads idle for the whole attention.
        let heads: Vec<(Array2<f32>, Vec<f32>)> = (0..dims.b * dims.h)
            .into_par_iter()
            .map(|bh| {
                let (b, h) = (bh / dims.h, bh % dims.h);
                let mut p = Array2::<f32>::zeros((dims.s, dims.s));
                let mut out_h = Array2::<f32>::zeros((dims.s, dims.d));
                let (mut lse_h, mut sums) = (vec![0.0f32; dims.s], vec![0.0f32; dims.s]);
                let head = |x| item(x, b, dims).slice_move(s![.., h, ..]);
                let qkv = [head(&q_rot), head(&k_rot), head(v)];
                head_forward(qkv, scale, &mut p, &mut sums, &mut out_h.view_mut(), save.then_some(&mut lse_h[..]));
                (out_h, lse_h)
            })
            .collect();
        for (bh, (out_h, lse_h)) in heads.into_iter().enumerate() {
            let (b, h) = (bh / dims.h, bh % dims.h);
            item_view_mut(&mut out[b * dims.item()..(b + 1) * dims.item()], dims)
                .slice_mut(s![.., h, ..])
                .assign(&out_h);
            if save {
                lse[bh * dims.s..(bh + 1) * dims.s].copy_from_slice(&lse_h);
            }
        }
    } else {
        out.par_chunks_mut(dims.item())
            .zip(lse.par_chunks_mut(dims.h * dims.s))
            .with_min_len(pool::min_len(1))
            .enumerate()
            .for_each(|(b, (out, lse))| {
                let (qi, ki, vi) = (item(&q_rot, b, dims), item(&k_rot, b, dims), item(v, b, dims));
                let mut out = item_view_mut(out, dims);
                let (mut p, mut sums) = (Array2::<f32>::zeros((dims.s, dims.s)), vec![0.0f32; dims.s]);
                for (h, lse_h) in lse.chunks_exact_mut(dims.s).enumerate() {
                    let qkv = [qi.slice(s![.., h, ..]), ki.slice(s![.., h, ..]), vi.slice(s![.., h, ..])];
                    let mut out_h = out.slice_mut(s![.., h, ..]);
                    head_forward(qkv, scale, &mut p, &mut sums, &mut out_h, save.then_some(lse_h));
                }
            });
    }
    let saved = save.then_some(Saved { q_rot, k_rot, lse });
    (out, saved)
}

/// One head: out = softmax(scale·q kᵀ) v and the rows' log-sum-exp, through the [s, s]
/// scratch `p` and the [s] scratch `sums`. P is left unnormalised (e^(score − max)) and each output row divided by its
/// sum afterwards, as flash attention does: d multiplies per row instead of s.
fn head_forward(
    [q, k, v]: [ArrayView2<'_, f32>; 3],
    scale: f32,
    p: &mut Array2<f32>,
    sums: &mut [f32],
    out: &mut ArrayViewMut2<'_, f32>,
    lse: Option<&mut [f32]>,
) {
    gemm_into(scale, &q, &k.t(), 0.0, &mut p.view_mut(), Threads::One);
    let rows = p.as_slice_mut().expect("a fresh [s, s] array is standard layout");
    exp_rows(rows, q.nrows(), lse, sums);
    gemm_into(1.0, &p.view(), &v, 0.0, out, Threads::One);
    for (mut row, &sum) in out.rows_mut().into_iter().zip(sums.iter()) {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Replaces every `s`-long row of `p` by e^(x − max of the row), and writes the row's sum
/// to `sums` and, when asked (the backward needs it; inference and the no-grad cycles do
/// not, and a scalar `ln` per row was ~1 % of inference), its log-sum-exp to `lse`.
///
/// Compiled for the widest SIMD the CPU has ([`fast_math::widest_simd`]): the `exp`
/// polynomial over B·H·S² scores is compute-bound.
fn exp_rows(p: &mut [f32], s: usize, mut lse: Option<&mut [f32]>, sums: &mut [f32]) {
    fast_math::widest_simd(
        #[inline(always)]
        || {
            for (i, (row, sum)) in p.chunks_exact_mut(s).zip(sums).enumerate() {
                let max = fast_math::max(row);
                *sum = fast_math::exp_sum_in_place(row, max);
                if let Some(lse) = lse.as_deref_mut() {
                    lse[i] = max + sum.ln();
                }
            }
        },
    )
}

/// P = exp(scores − lse) row by row: the normalised probabilities, which the forward never
/// formed (it divided its output rows instead); widest SIMD, as [`exp_rows`].
fn probabilities_from_lse(p: &mut [f32], s: usize, lse: &[f32]) {
    fast_math::widest_simd(
        #[inline(always)]
        || {
            for (row, &lse) in p.chunks_exact_mut(s).zip(lse) {
                row.iter_mut().for_each(|x| *x = fast_math::exp(*x - lse));
            }
        },
    )
}

/// dS = P ∘ (dP − rowsum(P ∘ dP)) · scale in place of dP, row by row (widest SIMD, as
/// [`exp_rows`]).
fn softmax_backward_rows(p: &[f32], dp: &mut [f32], s: usize, scale: f32) {
    fast_math::widest_simd(
        #[inline(always)]
        || {
            for (p_row, dp_row) in p.chunks_exact(s).zip(dp.chunks_exact_mut(s)) {
                let dot = fast_math::dot(p_row, dp_row);
                dp_row.iter_mut().zip(p_row).for_each(|(g, &p)| *g = p * (*g - dot) * scale);
            }
        },
    )
}

/// Replaces `row` by its softmax; returns its log-sum-exp.
#[inline(always)]
pub(crate) fn softmax_in_place(row: &mut [f32]) -> f32 {
    let max = fast_math::max(row);
    let sum = fast_math::exp_sum_in_place(row, max);
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
    max + sum.ln()
}

/// Gradients of q, k and v (before RoPE) given the output gradient `dout` [b, s, h, d].
pub(crate) fn backward(
    saved: &Saved,
    v: &[f32],
    dout: &[f32],
    dims: Dims,
    rope: Option<RopeTables<'_>>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = dims.len();
    let (mut dq, mut dk, mut dv) = (buffers::zeroed(n), buffers::zeroed(n), buffers::zeroed(n));
    let scale = dims.scale();
    dq.par_chunks_mut(dims.item())
        .zip(dk.par_chunks_mut(dims.item()))
        .zip(dv.par_chunks_mut(dims.item()))
        .with_min_len(pool::min_len(1))
        .enumerate()
        .for_each(|(b, ((dq, dk), dv))| {
            let range = b * dims.item()..(b + 1) * dims.item();
            let qi = item_view(&saved.q_rot[range.clone()], dims);
            let ki = item_view(&saved.k_rot[range.clone()], dims);
            let vi = item_view(&v[range.clone()], dims);
            let doi = item_view(&dout[range], dims);
            let lse = &saved.lse[b * dims.h * dims.s..(b + 1) * dims.h * dims.s];
            {
                let (mut dqi, mut dki, mut dvi) =
                    (item_view_mut(dq, dims), item_view_mut(dk, dims), item_view_mut(dv, dims));
                let mut p = Array2::<f32>::zeros((dims.s, dims.s));
                let mut dp = Array2::<f32>::zeros((dims.s, dims.s));
                for h in 0..dims.h {
                    let (qh, kh, vh, doh) = (
                        qi.slice(s![.., h, ..]),
                        ki.slice(s![.., h, ..]),
                        vi.slice(s![.., h, ..]),
                        doi.slice(s![.., h, ..]),
                    );
                    // P from the saved log-sum-exp.
                    gemm_into(scale, &qh, &kh.t(), 0.0, &mut p.view_mut(), Threads::One);
                    let rows = p.as_slice_mut().expect("a fresh [s, s] array is standard layout");
                    probabilities_from_lse(rows, dims.s, &lse[h * dims.s..(h + 1) * dims.s]);
                    gemm_into(1.0, &p.t(), &doh, 0.0, &mut dvi.slice_mut(s![.., h, ..]), Threads::One);
                    gemm_into(1.0, &doh, &vh.t(), 0.0, &mut dp.view_mut(), Threads::One);
                    // dS = P ∘ (dP − rowsum(P ∘ dP)), with the score scale folded in.
                    softmax_backward_rows(
                        p.as_slice().expect("a fresh [s, s] array is standard layout"),
                        dp.as_slice_mut().expect("a fresh [s, s] array is standard layout"),
                        dims.s,
                        scale,
                    );
                    gemm_into(1.0, &dp.view(), &kh, 0.0, &mut dqi.slice_mut(s![.., h, ..]), Threads::One);
                    gemm_into(1.0, &dp.t(), &qh, 0.0, &mut dki.slice_mut(s![.., h, ..]), Threads::One);
                }
            }
            if let Some(rope) = rope {
                rope_item_transposed(dq, dims, rope);
                rope_item_transposed(dk, dims, rope);
            }
        });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-scale, scale).
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn tables(positions: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
        let half = d / 2;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..positions {
            for i in 0..d {
                let angle = p as f64 / 10000f64.powf((2 * (i % half)) as f64 / d as f64);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }

    /// Attention in f64 straight from the definition, with RoPE as x·cos + rotate_half(x)·sin.
    fn naive(q: &[f32], k: &[f32], v: &[f32], dims: Dims, rope: Option<RopeTables<'_>>) -> Vec<f64> {
        let Dims { b, s, h, d } = dims;
        let at = |x: &[f32], bi: usize, si: usize, hi: usize, di: usize| x[((bi * s + si) * h + hi) * d + di] as f64;
        let rot = |x: &[f32], bi, si, hi, di: usize| -> f64 {
            let Some(r) = rope else { return at(x, bi, si, hi, di) };
            let half = d / 2;
            let partner = if di < half { -at(x, bi, si, hi, di + half) } else { at(x, bi, si, hi, di - half) };
            at(x, bi, si, hi, di) * r.cos[si * d + di] as f64 + partner * r.sin[si * d + di] as f64
        };
        let mut out = vec![0.0; dims.len()];
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..s {
                    let scores: Vec<f64> = (0..s)
                        .map(|j| {
                            (0..d).map(|c| rot(q, bi, i, hi, c) * rot(k, bi, j, hi, c)).sum::<f64>() / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..d {
                        out[((bi * s + i) * h + hi) * d + c] = (0..s).map(|j| e[j] / total * at(v, bi, j, hi, c)).sum();
                    }
                }
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn forward_matches_the_definition_with_and_without_rope() {
        let dims = Dims { b: 2, s: 7, h: 3, d: 8 };
        let (q, k, v) = (values(dims.len(), 1, 2.0), values(dims.len(), 2, 2.0), values(dims.len(), 3, 1.0));
        let (cos, sin) = tables(9, dims.d);
        // One thread: a task per batch item; four threads (more than the 2 items): a task
        // per (item, head), scattered back. Both give the same output and log-sum-exps.
        let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for rope in [None, Some(RopeTables { cos: &cos, sin: &sin })] {
            let (per_item, per_head) = (pool(1), pool(4));
            let (out, saved) = per_item.install(|| forward(&q, &k, &v, dims, rope, true));
            close(&out, &naive(&q, &k, &v, dims, rope), 1e-5);
            let saved = saved.expect("asked to save");
            assert_eq!(saved.lse.len(), dims.b * dims.h * dims.s);
            let (out_heads, saved_heads) = per_head.install(|| forward(&q, &k, &v, dims, rope, true));
            assert_eq!(out_heads, out);
            assert_eq!(saved_heads.expect("asked to save").lse, saved.lse);
        }
    }

    #[test]
    fn backward_matches_finite_differences_of_the_definition() {
        let dims = Dims { b: 2, s: 5, h: 2, d: 4 };
        let (q, k, v) = (values(dims.len(), 4, 1.5), values(dims.len(), 5, 1.5), values(dims.len(), 6, 1.0));
        let w = values(dims.len(), 7, 1.0); // loss = Σ w · out
        let (cos, sin) = tables(dims.s, dims.d);
        for rope in [None, Some(RopeTables { cos: &cos, sin: &sin })] {
            let (_, saved) = forward(&q, &k, &v, dims, rope, true);
            let saved = saved.expect("asked to save");
            let (dq, dk, dv) = backward(&saved, &v, &w, dims, rope);
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                naive(q, k, v, dims, rope).iter().zip(&w).map(|(o, w)| o * *w as f64).sum()
            };
            for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                for i in (0..dims.len()).step_by(3) {
                    let eps = 1e-2f32;
                    let mut inputs = [q.clone(), k.clone(), v.clone()];
                    inputs[which][i] += eps;
                    let up = loss(&inputs[0], &inputs[1], &inputs[2]);
                    inputs[which][i] -= 2.0 * eps;
                    let down = loss(&inputs[0], &inputs[1], &inputs[2]);
                    let numeric = (up - down) / (2.0 * eps as f64);
                    let analytic = grad[i] as f64;
                    assert!(
                        (numeric - analytic).abs() <= 2e-3 * (1.0 + numeric.abs()),
                        "input {which} element {i} (rope {}): numeric {numeric}, analytic {analytic}",
                        rope.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn simd_dispatched_rows_are_bit_identical_to_the_plain_loops() {
        // The row loops run at the widest SIMD width the CPU has; the same arithmetic in a
        // plain loop must give the same bits (no FMA contraction, same summation order).
        let s = 97;
        let scores = values(3 * s * s, 11, 40.0);
        let mut p = scores.clone();
        let (mut lse, mut sums) = (vec![0.0f32; 3 * s], vec![0.0f32; 3 * s]);
        exp_rows(&mut p, s, Some(&mut lse), &mut sums);
        let mut want = scores.clone();
        for ((row, &got_lse), &got_sum) in want.chunks_exact_mut(s).zip(&lse).zip(&sums) {
            let max = fast_math::max(row);
            let sum = fast_math::exp_sum_in_place(row, max);
            assert_eq!((sum.to_bits(), (max + sum.ln()).to_bits()), (got_sum.to_bits(), got_lse.to_bits()));
        }
        assert!(p.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Without the log-sum-exp (inference, no-grad cycles): the same rows and sums.
        let (mut p_only, mut sums_only) = (scores.clone(), vec![0.0f32; 3 * s]);
        exp_rows(&mut p_only, s, None, &mut sums_only);
        assert!(p_only.iter().zip(&p).all(|(a, b)| a.to_bits() == b.to_bits()) && sums_only == sums);
        // The probabilities the backward uses: the unnormalised rows over their sums.
        for ((row, &sum), scores) in p.chunks_exact_mut(s).zip(&sums).zip(scores.chunks_exact(s)) {
            let mut softmax = scores.to_vec();
            softmax_in_place(&mut softmax);
            row.iter_mut().for_each(|x| *x /= sum);
            assert!(row.iter().zip(&softmax).all(|(a, b)| (a - b).abs() <= 1e-6 * b.max(1e-30)));
        }

        let mut again = scores.clone();
        probabilities_from_lse(&mut again, s, &lse);
        let plain: Vec<f32> = scores.iter().enumerate().map(|(i, &x)| fast_math::exp(x - lse[i / s])).collect();
        assert!(again.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));

        let dp = values(3 * s * s, 12, 1.0);
        let mut ds = dp.clone();
        softmax_backward_rows(&p, &mut ds, s, 0.25);
        for ((p_row, dp_row), ds_row) in p.chunks_exact(s).zip(dp.chunks_exact(s)).zip(ds.chunks_exact(s)) {
            let dot = fast_math::dot(p_row, dp_row);
            for ((&p, &g), &got) in p_row.iter().zip(dp_row).zip(ds_row) {
                assert_eq!((p * (g - dot) * 0.25).to_bits(), got.to_bits());
            }
        }
    }

    #[test]
    fn rope_transpose_is_the_adjoint_of_rope() {
        // <R x, g> = <x, Rᵀ g> for any x, g.
        let dims = Dims { b: 1, s: 6, h: 2, d: 6 };
        let (cos, sin) = tables(dims.s, dims.d);
        let rope = RopeTables { cos: &cos, sin: &sin };
        let (x, g) = (values(dims.len(), 8, 1.0), values(dims.len(), 9, 1.0));
        let (mut rx, mut rtg) = (x.clone(), g.clone());
        rope_item(&mut rx, dims, rope);
        rope_item_transposed(&mut rtg, dims, rope);
        let lhs: f64 = rx.iter().zip(&g).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        let rhs: f64 = x.iter().zip(&rtg).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        assert!((lhs - rhs).abs() < 1e-5 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
    }
}
