//! Softmax attention of a few queries over a KV cache in float32 on the CPU, forward only
//! (AR-TRM decoding runs without autodiff).
//!
//! A decode step has one query per sequence and head against the whole cache window. As
//! Burn ops that is a batched [1, hd]·[hd, len] product (matrixmultiply packs the window's
//! K for every head and call), a softmax and a [1, len]·[len, hd] product, each handing work
//! between threads. Here each (sequence, head) is one rayon task of dot products over the
//! window's rows, read in place from the cache's strided view, a softmax and a weighted
//! sum of V's rows.

use ndarray::{s, ArrayView1, ArrayView4};
use rayon::prelude::*;

use super::attention_cpu::softmax_in_place;
use super::fast_math;

fn dot(q: &[f32], k: ArrayView1<'_, f32>) -> f32 {
    match k.as_slice() {
        Some(k) => fast_math::dot(q, k),
        None => q.iter().zip(k.iter()).map(|(a, b)| a * b).sum(),
    }
}

/// softmax(scale·q kᵀ) v with scale = 1/sqrt(hd): q [b, h, sq, hd], k and v [b, h, skv, hd]
/// (any strides), no mask. Returns [b, h, sq, hd] in row-major order.
pub(crate) fn forward(q: ArrayView4<'_, f32>, k: ArrayView4<'_, f32>, v: ArrayView4<'_, f32>) -> Vec<f32> {
    let (b, h, sq, d) = q.dim();
    let skv = k.dim().2;
    // Burn's and torch's default: 1/sqrt(head_dim), computed in f64 then rounded.
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let mut out = vec![0.0f32; b * h * sq * d];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(sq * d).with_min_len(super::pool::min_len(1)).enumerate().for_each_init(
        || (vec![0.0f32; skv], vec![0.0f32; d]),
        |(scores, q_row), (bh, out)| {
            let (bi, hi) = (bh / h, bh % h);
            let (qh, kh, vh) = (q.slice(s![bi, hi, .., ..]), k.slice(s![bi, hi, .., ..]), v.slice(s![bi, hi, .., ..]));
            for (i, out_row) in out.chunks_exact_mut(d).enumerate() {
                q_row.iter_mut().zip(qh.row(i)).for_each(|(dst, &x)| *dst = x);
                for (score, k_row) in scores.iter_mut().zip(kh.rows()) {
                    // As the reference: the product first, then the scale.
                    *score = dot(q_row, k_row) * scale;
                }
                softmax_in_place(scores);
                for (&p, v_row) in scores.iter().zip(vh.rows()) {
                    out_row.iter_mut().zip(v_row).for_each(|(o, &x)| *o += p * x);
                }
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    /// The definition in float64.
    fn naive(q: &Array4<f32>, k: &Array4<f32>, v: &Array4<f32>) -> Vec<f64> {
        let (b, h, sq, d) = q.dim();
        let skv = k.dim().2;
        let mut out = Vec::new();
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..sq {
                    let scores: Vec<f64> = (0..skv)
                        .map(|j| {
                            (0..d).map(|c| q[[bi, hi, i, c]] as f64 * k[[bi, hi, j, c]] as f64).sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..d {
                        out.push((0..skv).map(|j| e[j] / total * v[[bi, hi, j, c]] as f64).sum());
                    }
                }
            }
        }
        out
    }

    fn filled(shape: (usize, usize, usize, usize), seed: usize, scale: f32) -> Array4<f32> {
        let mut i = 0usize;
        Array4::from_shape_fn(shape, |_| {
            i += 1;
            (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0) * scale
        })
    }

    #[test]
    fn matches_the_definition_on_strided_cache_windows() {
        // A cache of capacity 9 of which the first 6 positions are the window (a strided
        // view, as `KvCache::window` gives), with one and with three queries.
        let (b, h, d, cap, len) = (2, 3, 8, 9, 6);
        let (k_cache, v_cache) = (filled((b, h, cap, d), 2, 2.0), filled((b, h, cap, d), 3, 1.0));
        let (k, v) = (k_cache.slice(s![.., .., ..len, ..]), v_cache.slice(s![.., .., ..len, ..]));
        for sq in [1, 3] {
            let q = filled((b, h, sq, d), 1, 2.0);
            let got = forward(q.view(), k, v);
            let want = naive(&q, &k.to_owned(), &v.to_owned());
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "sq {sq} element {i}: {g} vs {w}");
            }
        }
    }
}
