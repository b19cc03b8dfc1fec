//! Linear map y = x·W + b in float32 on the CPU over the flattened leading dimensions, with
//! its backward. Burn's `linear` on [B, S, D] broadcasts W into a batched matmul (B small
//! GEMMs that each repack W, and in the backward a [B, D, D_out] weight gradient summed
//! afterwards) and burn-ndarray copies on every reshape; here each product is one GEMM over
//! [B·S, D] views of the same buffers.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::gemm_cpu::{gemm_into, matmul_long_k, matmul_new, Threads};
use super::packed_cpu;

/// Rows (product of the leading dimensions), input width, output width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// `x` as a row-major [rows, cols] matrix.
pub(crate) fn view(x: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), x).expect("buffer length matches its dims")
}

fn view_mut(x: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), x).expect("buffer length matches its dims")
}

/// Up to this many rows, [`forward`] runs row by row over W instead of a GEMM: with a
/// handful of rows (AR-TRM decodes one position per sequence) packing W for the GEMM costs
/// more than the product itself.
pub(crate) const FEW_ROWS: usize = 4;

/// x·W (+ b): x is [rows, d_in], W [d_in, d_out], b [d_out].
pub(crate) fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, dims: Dims) -> Vec<f32> {
    if dims.rows <= FEW_ROWS {
        return forward_few_rows(x, w, bias, dims);
    }
    if let Some(packed) = packed_cpu::lookup(w, dims.rows, dims.d_in, dims.d_out) {
        // The same bits as the GEMM below (the bias added after the product, as there).
        let mut out = packed_cpu::matmul(x, &packed, Threads::Pool);
        if let Some(b) = bias {
            out.chunks_exact_mut(dims.d_out).for_each(|row| add_bias(row, b));
        }
        return out;
    }
    let Some(b) = bias else {
        return matmul_new(&view(x, dims.rows, dims.d_in), &view(w, dims.d_in, dims.d_out), Threads::Pool);
    };
    // As Burn does: the product first, then the bias added to it (C = 1·x·W + 1·b).
    let mut out = Vec::with_capacity(dims.rows * dims.d_out);
    (0..dims.rows).for_each(|_| out.extend_from_slice(b));
    gemm_into(
        1.0,
        &view(x, dims.rows, dims.d_in),
        &view(w, dims.d_in, dims.d_out),
        1.0,
        &mut view_mut(&mut out, dims.rows, dims.d_out),
        Threads::Pool,
    );
    out
}

/// [`forward`] for a few rows: each output row accumulates x[r, i]·W[i, ..] over i (W's rows
/// are contiguous, so this streams W once per row without packing), then adds the bias.
fn forward_few_rows(x: &[f32], w: &[f32], bias: Option<&[f32]>, dims: Dims) -> Vec<f32> {
    let mut out = vec![0.0f32; dims.rows * dims.d_out];
    for (out_row, x_row) in out.chunks_exact_mut(dims.d_out).zip(x.chunks_exact(dims.d_in)) {
        for (&xi, w_row) in x_row.iter().zip(w.chunks_exact(dims.d_out)) {
            out_row.iter_mut().zip(w_row).for_each(|(o, &wi)| *o += xi * wi);
        }
        if let Some(b) = bias {
            add_bias(out_row, b);
        }
    }
    out
}

/// row += b, element by element.
fn add_bias(row: &mut [f32], b: &[f32]) {
    row.iter_mut().zip(b).for_each(|(o, &bi)| *o += bi);
}

/// dx = dy·Wᵀ.
pub(crate) fn grad_x(w: &[f32], dy: &[f32], dims: Dims) -> Vec<f32> {
    matmul_new(&view(dy, dims.rows, dims.d_out), &view(w, dims.d_in, dims.d_out).t(), Threads::Pool)
}

/// dW = xᵀ·dy: a sum over all rows, cut along them where there are many more rows than
/// weights (the backward only; inference never comes here).
pub(crate) fn grad_w(x: &[f32], dy: &[f32], dims: Dims) -> Vec<f32> {
    matmul_long_k(&view(x, dims.rows, dims.d_in).t(), &view(dy, dims.rows, dims.d_out))
}

/// db = column sums of dy.
pub(crate) fn grad_b(dy: &[f32], dims: Dims) -> Vec<f32> {
    let mut db = vec![0.0f32; dims.d_out];
    for row in dy.chunks_exact(dims.d_out) {
        db.iter_mut().zip(row).for_each(|(acc, g)| *acc += g);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0).collect()
    }

    #[test]
    fn forward_and_gradients_match_the_definition() {
        let dims = Dims { rows: 13, d_in: 9, d_out: 5 };
        let (x, w, b, dy) = (values(13 * 9, 1), values(9 * 5, 2), values(5, 3), values(13 * 5, 4));
        let at = |m: &[f32], cols: usize, r: usize, c: usize| m[r * cols + c] as f64;
        let y = forward(&x, &w, Some(&b), dims);
        let (dx, dw, db) = (grad_x(&w, &dy, dims), grad_w(&x, &dy, dims), grad_b(&dy, dims));
        let close =
            |got: f32, want: f64| assert!((got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "{got} vs {want}");
        for r in 0..dims.rows {
            for o in 0..dims.d_out {
                close(y[r * 5 + o], (0..9).map(|i| at(&x, 9, r, i) * at(&w, 5, i, o)).sum::<f64>() + b[o] as f64);
            }
            for i in 0..dims.d_in {
                close(dx[r * 9 + i], (0..5).map(|o| at(&dy, 5, r, o) * at(&w, 5, i, o)).sum());
            }
        }
        for i in 0..dims.d_in {
            for o in 0..dims.d_out {
                close(dw[i * 5 + o], (0..13).map(|r| at(&x, 9, r, i) * at(&dy, 5, r, o)).sum());
            }
        }
        for (o, &got) in db.iter().enumerate() {
            close(got, (0..13).map(|r| at(&dy, 5, r, o)).sum());
        }
        let no_bias = forward(&x, &w, None, dims);
        close(no_bias[7], y[7] as f64 - b[2] as f64);
    }

    #[test]
    fn products_into_fresh_buffers_write_every_element() {
        // Leave NaN in freed memory of the size about to be asked for, so an element the
        // GEMM skipped would show; with k = 0 the product is all zeros.
        let dims = Dims { rows: 64, d_in: 0, d_out: 48 };
        for _ in 0..4 {
            drop(std::hint::black_box(vec![f32::NAN; dims.rows * dims.d_out]));
            assert!(forward(&[], &[], None, dims).iter().all(|&v| v == 0.0));
        }
        let dims = Dims { rows: 37, d_in: 11, d_out: 29 };
        let (x, w, dy) = (values(37 * 11, 8), values(11 * 29, 9), values(37 * 29, 10));
        drop(std::hint::black_box(vec![f32::NAN; 37 * 29]));
        let y = forward(&x, &w, None, dims);
        let (dx, dw) = (grad_x(&w, &dy, dims), grad_w(&x, &dy, dims));
        assert!(y.iter().chain(&dx).chain(&dw).all(|v| v.is_finite()));
        assert_eq!((y.len(), dx.len(), dw.len()), (37 * 29, 37 * 11, 11 * 29));
    }

    #[test]
    fn few_rows_match_the_definition_and_the_gemm_path() {
        for rows in 1..=FEW_ROWS {
            let dims = Dims { rows, d_in: 19, d_out: 23 };
            let (x, w, b) = (values(rows * 19, 5), values(19 * 23, 6), values(23, 7));
            for bias in [None, Some(b.as_slice())] {
                let got = forward(&x, &w, bias, dims);
                // The GEMM path on the same rows, padded with zero rows past FEW_ROWS.
                let padded = Dims { rows: FEW_ROWS + 1, ..dims };
                let mut xp = x.clone();
                xp.resize(padded.rows * 19, 0.0);
                let gemm = forward(&xp, &w, bias, padded);
                for r in 0..rows {
                    for o in 0..23 {
                        let want = (0..19).map(|i| x[r * 19 + i] as f64 * w[i * 23 + o] as f64).sum::<f64>()
                            + bias.map_or(0.0, |b| b[o] as f64);
                        let got = got[r * 23 + o];
                        assert!((got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "{got} vs {want}");
                        assert!((got - gemm[r * 23 + o]).abs() <= 1e-5 * (1.0 + got.abs()));
                    }
                }
            }
        }
    }
}
