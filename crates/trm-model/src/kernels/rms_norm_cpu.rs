//! Parameter-free RMSNorm y = x / sqrt(mean(x²) + eps) over rows of width d, in float32 on
//! the CPU, forward and backward. Burn's composition is six passes (square, mean, add, sqrt,
//! reciprocal, product), each a graph node under autodiff; here it is one pass per row.

use rayon::prelude::*;

use super::{buffers, fast_math, pool};

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// Normalised rows of x (+ residual, when given: the post-norm block's `norm(h + f(h))` in
/// one pass) and each row's 1/rms.
pub(crate) fn forward(x: &[f32], residual: Option<&[f32]>, d: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / d;
    let (mut y, mut inv) = (buffers::zeroed(x.len()), vec![0.0f32; rows]);
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .with_min_len(pool::min_len(1))
        .enumerate()
        .for_each(|(task, (y, inv))| {
            let start = task * d * ROWS_PER_TASK;
            let x = &x[start..start + y.len()];
            let residual = residual.map(|r| &r[start..start + y.len()]);
            fast_math::widest_simd(
                #[inline(always)]
                || {
                    for (row, (y, inv)) in y.chunks_exact_mut(d).zip(inv).enumerate() {
                        let rows = row * d..(row + 1) * d;
                        *inv = normalize_row(y, &x[rows.clone()], residual.map(|r| &r[rows]), eps);
                    }
                },
            )
        });
    (y, inv)
}

/// y = norm(x (+ residual)) for one row; returns its 1/rms. Callers run it inside
/// [`fast_math::widest_simd`] (AVX-512 where the crate's baseline is SSE2: it was ~2 % of
/// inference at D=128 in baseline code); every width gives the same bits.
#[inline(always)]
pub(crate) fn normalize_row(y: &mut [f32], x: &[f32], residual: Option<&[f32]>, eps: f32) -> f32 {
    match residual {
        // The sum rounded once into y, as a separate add then norm would.
        Some(r) => y.iter_mut().zip(x).zip(r).for_each(|((y, a), b)| *y = a + b),
        None => y.copy_from_slice(x),
    }
    let mean_sq = fast_math::dot(y, y) / y.len() as f32;
    // As the official code: x * rsqrt(mean + eps), the reciprocal taken once.
    let inv = 1.0 / (mean_sq + eps).sqrt();
    y.iter_mut().for_each(|y| *y *= inv);
    inv
}

/// dx = r·(dy − y·mean(dy·y)) per row, from the output y and r = 1/rms.
pub(crate) fn backward(y: &[f32], inv: &[f32], dy: &[f32], d: usize) -> Vec<f32> {
    let mut dx = buffers::zeroed(y.len());
    dx.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(inv.par_chunks(ROWS_PER_TASK))
        .zip(y.par_chunks(d * ROWS_PER_TASK).zip(dy.par_chunks(d * ROWS_PER_TASK)))
        .with_min_len(pool::min_len(1))
        .for_each(|((dx, inv), (y, dy))| {
            fast_math::widest_simd(
                #[inline(always)]
                || {
                    let rows = dx.chunks_exact_mut(d).zip(inv).zip(y.chunks_exact(d)).zip(dy.chunks_exact(d));
                    for (((dx, inv), y), dy) in rows {
                        let mean = fast_math::dot(y, dy) / d as f32;
                        for ((dx, y), g) in dx.iter_mut().zip(y).zip(dy) {
                            *dx = inv * (g - y * mean);
                        }
                    }
                },
            )
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_dispatched_rows_are_bit_identical_to_the_baseline_loops() {
        // forward and backward run their rows at the widest SIMD width; the same calls
        // compiled for the crate's baseline must give the same bits (D = 128 and an odd width).
        for d in [128, 37] {
            let rows = ROWS_PER_TASK + 5;
            let x: Vec<f32> = (0..rows * d).map(|i| ((i * 7919) % 1009) as f32 / 100.0 - 5.0).collect();
            let r: Vec<f32> = (0..rows * d).map(|i| ((i * 131) % 97) as f32 / 40.0 - 1.2).collect();
            let dy: Vec<f32> = (0..rows * d).map(|i| ((i * 31) % 17) as f32 / 8.5 - 1.0).collect();
            let (y, inv) = forward(&x, Some(&r), d, 1e-5);
            let dx = backward(&y, &inv, &dy, d);
            for (row, &got_inv) in inv.iter().enumerate() {
                let span = row * d..(row + 1) * d;
                let mut want = vec![0.0f32; d];
                let want_inv = normalize_row(&mut want, &x[span.clone()], Some(&r[span.clone()]), 1e-5);
                assert_eq!(want_inv.to_bits(), got_inv.to_bits());
                assert!(want.iter().zip(&y[span.clone()]).all(|(a, b)| a.to_bits() == b.to_bits()), "d {d} row {row}");
                let mean = fast_math::dot(&y[span.clone()], &dy[span.clone()]) / d as f32;
                let want_dx = y[span.clone()].iter().zip(&dy[span.clone()]).map(|(y, g)| got_inv * (g - y * mean));
                assert!(want_dx.zip(&dx[span]).all(|(a, b)| a.to_bits() == b.to_bits()), "d {d} row {row}");
            }
        }
    }

    fn norm(x: &[f64], eps: f64) -> Vec<f64> {
        let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
        x.iter().map(|v| v * r).collect()
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        let (d, rows, eps) = (12, ROWS_PER_TASK * 2 + 3, 1e-5);
        let x: Vec<f32> = (0..rows * d).map(|i| ((i * 7919) % 1009) as f32 / 100.0 - 5.0).collect();
        let dy: Vec<f32> = (0..rows * d).map(|i| ((i * 31) % 17) as f32 / 8.5 - 1.0).collect();
        let (y, inv) = forward(&x, None, d, eps as f32);
        let dx = backward(&y, &inv, &dy, d);
        for r in 0..rows {
            let xr: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
            let want = norm(&xr, eps);
            for i in 0..d {
                assert!((y[r * d + i] as f64 - want[i]).abs() < 1e-6 * (1.0 + want[i].abs()));
                // d/dx_i of Σ_j dy_j·y_j, by central differences in f64.
                let h = 1e-5;
                let loss = |xs: &[f64]| norm(xs, eps).iter().zip(&dy[r * d..]).map(|(y, g)| y * *g as f64).sum::<f64>();
                let (mut up, mut down) = (xr.clone(), xr.clone());
                up[i] += h;
                down[i] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
                let got = dx[r * d + i] as f64;
                assert!((got - numeric).abs() < 1e-4 * (1.0 + numeric.abs()), "row {r} elem {i}: {got} vs {numeric}");
            }
        }
    }

    #[test]
    fn a_residual_is_summed_as_a_separate_add_would() {
        let (d, rows) = (20, ROWS_PER_TASK * 3 + 5);
        let a: Vec<f32> = (0..rows * d).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0).collect();
        let b: Vec<f32> = (0..rows * d).map(|i| ((i * 104_729) % 997) as f32 / 301.0 - 1.5).collect();
        let sum: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        let (want_y, want_inv) = forward(&sum, None, d, 1e-5);
        let (y, inv) = forward(&a, Some(&b), d, 1e-5);
        assert_eq!(y, want_y);
        assert_eq!(inv, want_inv);
        assert_ne!(forward(&a, None, d, 1e-5).0, y, "the residual was used");
    }
}
