//! The one GEMM of the CPU kernels: the `gemm` crate on ndarray views, on rayon's pool.
//!
//! Why not matrixmultiply (what ndarray and burn-ndarray call): it threads only over
//! blocks of rows, so a product with fewer rows than one block (every linear map at
//! batch 1, where rows = S = 97) runs on one core, and its threads are a second pool beside
//! rayon's. `gemm` splits small products too, on the rayon pool the kernels already use, and
//! picks AVX2/FMA or AVX-512 at run time. On the model's batch-1 shapes it is 1.8-2.2x
//! faster with 2 threads; on the batch-32 shapes the two are within ±10 % of each other
//! (docs/perf-levers.md).

use ndarray::{s, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::pool;

/// Threads one product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// The calling thread only: for products inside a task that is already one of many
    /// (the attention's per-item, per-head products).
    One,
    /// Every thread of the current rayon pool (`gemm` keeps small products on one).
    Pool,
}

impl Threads {
    fn parallelism(self) -> gemm::Parallelism {
        match self {
            Threads::One => gemm::Parallelism::None,
            Threads::Pool if pool::is_serial() => gemm::Parallelism::None,
            // 0 = rayon::current_num_threads().
            Threads::Pool => gemm::Parallelism::Rayon(0),
        }
    }
}

/// c = alpha·a·b + beta·c, as ndarray's `general_mat_mul`; with `beta == 0` c is only
/// written, never read (so it may hold garbage, NaN included).
#[allow(unsafe_code)]
pub(crate) fn gemm_into(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
    threads: Threads,
) {
    let ((m, k), (k_b, n)) = (a.dim(), b.dim());
    assert_eq!(k, k_b, "inner dimensions agree");
    assert_eq!(c.dim(), (m, n), "the output is [rows of a, columns of b]");
    let (sa, sb) = (a.strides(), b.strides());
    let sc = [c.strides()[0], c.strides()[1]];
    let (a_ptr, b_ptr, c_ptr) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY: a, b and c are ndarray views, whose pointer and strides reach only elements of
    // their (borrowed, alive) data, and c is a mutable view, so its elements are distinct
    // from each other and not reachable through a or b while it is borrowed. The shapes were
    // checked above. `gemm` computes dst = alpha'·dst + beta'·lhs·rhs: here alpha' = beta
    // and beta' = alpha; with read_dst = false it never reads dst and writes every element
    // of it, also when k = 0 (zeros).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c_ptr,
            sc[1],
            sc[0],
            beta != 0.0,
            a_ptr,
            sa[1],
            sa[0],
            b_ptr,
            sb[1],
            sb[0],
            beta,
            alpha,
            false,
            false,
            false,
            threads.parallelism(),
        );
    }
}

/// a·b into a new row-major buffer, without zeroing it first: for the mlp_t mixer's
/// [B·D, 512] products that memset was ~9 % of inference (`perf`), since the kept heap
/// (trm_backend::keep_freed_memory) hands calloc reused blocks that it must clear.
#[allow(unsafe_code)]
pub(crate) fn matmul_new(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>, threads: Threads) -> Vec<f32> {
    let (m, n) = (a.nrows(), b.ncols());
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: a view of the m·n elements of `out`'s capacity, row-major (in bounds,
    // distinct, exclusively ours). They are uninitialised, but the view is only handed to
    // `gemm_into`, which with beta = 0 writes every element through its raw pointer and
    // reads none; no reference to an uninitialised element is made.
    let mut c = unsafe { ArrayViewMut2::from_shape_ptr((m, n), out.as_mut_ptr()) };
    gemm_into(1.0, a, b, 0.0, &mut c, threads);
    // SAFETY: every element was written above.
    unsafe { out.set_len(m * n) };
    out
}

/// At most this many partial products in [`matmul_long_k`].
const MAX_K_PARTS: usize = 8;

/// At least this much of k per part: below it a task costs more than it saves.
const MIN_K_PER_PART: usize = 256;

/// How many parts [`matmul_long_k`] cuts an [m, k]·[k, n] product into: one per
/// 2·max(m, n) of k and at most one per [`MIN_K_PER_PART`], up to [`MAX_K_PARTS`]. It depends on the shape alone, never on the
/// thread count, so a run gives the same bits on any pool (gemm's own threading splits only
/// m and n, never the sum over k).
fn k_parts(m: usize, k: usize, n: usize) -> usize {
    (k / (2 * m.max(n)).max(1)).min(k / MIN_K_PER_PART).clamp(1, MAX_K_PARTS)
}

/// a·b into a new row-major buffer, for products whose inner dimension dwarfs the output
/// (the weight gradients xᵀ·dy of the mlp_t mixer: [97, B·D]·[B·D, 512]). gemm threads only
/// over the output's m and n, which for a [97, 512] output leaves the cores short of work
/// per packed block; here k is cut into [`k_parts`] slices, each slice's product runs as a
/// rayon task (on the pool's threads where gemm finds work for them), and the partial
/// products are added in slice order. 1.1-1.7x on the mixer's shapes with 2 threads
/// (docs/perf-levers.md). Outputs are the same bits on every thread count; they differ
/// from [`matmul_new`]'s by float32 rounding of the regrouped sum.
pub(crate) fn matmul_long_k(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Vec<f32> {
    let ((m, k), n) = (a.dim(), b.ncols());
    let parts = k_parts(m, k, n);
    if parts == 1 {
        return matmul_new(a, b, Threads::Pool);
    }
    let partial: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .with_min_len(pool::min_len(1))
        .map(|p| {
            // parts <= k, so every slice holds at least one index of k.
            let (k0, k1) = (p * k / parts, (p + 1) * k / parts);
            matmul_new(&a.slice(s![.., k0..k1]), &b.slice(s![k0..k1, ..]), Threads::Pool)
        })
        .collect();
    let mut partial = partial.into_iter();
    let mut out = partial.next().expect("at least two parts");
    for part in partial {
        out.iter_mut().zip(&part).for_each(|(o, v)| *o += v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};

    fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(r, c)| ((r * 131 + c * 71 + seed * 977) % 401) as f32 / 200.0 - 1.0)
    }

    fn naive(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|l| a[[i, l]] as f64 * b[[l, j]] as f64).sum()
        })
    }

    fn assert_close(got: &ArrayView2<'_, f32>, want: &Array2<f64>) {
        assert_eq!(got.dim(), want.dim());
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn strided_and_transposed_views_match_the_definition_on_one_thread_and_the_pool() {
        // Sizes on both sides of gemm's threading threshold, transposed operands, a
        // per-head slice of a [S, H, hd] array (what the attention passes), and alpha/beta.
        for (m, k, n) in [(7, 5, 3), (97, 16, 97), (97, 128, 512), (300, 64, 70)] {
            for threads in [Threads::One, Threads::Pool] {
                let (a, b_t) = (filled(m, k, 1), filled(n, k, 2));
                let want = naive(&a.view(), &b_t.t());
                let got = matmul_new(&a.view(), &b_t.t(), threads);
                assert_close(&ArrayView2::from_shape((m, n), &got).unwrap(), &want);

                let heads = Array3::from_shape_fn((k, 3, n), |(l, h, j)| b_t[[j, l]] + h as f32);
                let mut out = Array3::from_elem((m, 3, n), f32::NAN);
                let b = heads.slice(s![.., 1, ..]);
                let mut c = out.slice_mut(s![.., 2, ..]);
                gemm_into(0.5, &a.t().t(), &b, 0.0, &mut c, threads);
                let want_half = naive(&a.view(), &b).mapv(|x| 0.5 * x);
                assert_close(&out.slice(s![.., 2, ..]), &want_half);
                assert!(out.slice(s![.., 0..2, ..]).iter().all(|x| x.is_nan()), "only the slice is written");

                let mut acc = filled(m, n, 3);
                let want_acc = &want_half + &acc.mapv(|x| 2.0 * x as f64);
                gemm_into(0.5, &a.view(), &b, 2.0, &mut acc.view_mut(), threads);
                assert_close(&acc.view(), &want_acc);
            }
        }
    }

    #[test]
    fn fresh_outputs_have_every_element_written() {
        // NaN left in freed memory of the size about to be asked for would show through an
        // element the GEMM skipped; with k = 0 the product is all zeros.
        for threads in [Threads::One, Threads::Pool] {
            for _ in 0..4 {
                drop(std::hint::black_box(vec![f32::NAN; 64 * 48]));
                let (a, b) = (Array2::<f32>::zeros((64, 0)), Array2::<f32>::zeros((0, 48)));
                assert!(matmul_new(&a.view(), &b.view(), threads).iter().all(|&v| v == 0.0));
            }
            drop(std::hint::black_box(vec![f32::NAN; 370 * 290]));
            let out = matmul_new(&filled(370, 11, 4).view(), &filled(11, 290, 5).view(), threads);
            assert!(out.len() == 370 * 290 && out.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn long_k_products_match_the_definition_and_give_the_same_bits_on_any_pool() {
        // Unsplit (k < 2·max(m, n)), k in 4 and 2 parts that do not divide it, the mixer's
        // [97, 4096]·[4096, 12] in 8, each with a transposed operand as grad_w passes it.
        for (m, k, n) in [(5, 11, 7), (5, 1031, 7), (16, 701, 9), (97, 4096, 12)] {
            let (a_t, b) = (filled(k, m, 6), filled(k, n, 7));
            let want = naive(&a_t.t(), &b.view());
            let on = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| matmul_long_k(&a_t.t(), &b.view()))
            };
            let one = on(1);
            assert_close(&ArrayView2::from_shape((m, n), &one).unwrap(), &want);
            for threads in [2, 3] {
                assert_eq!(one, on(threads), "({m}, {k}, {n}) on {threads} threads");
            }
        }
        assert_eq!((k_parts(5, 11, 7), k_parts(5, 1031, 7), k_parts(16, 701, 9), k_parts(97, 4096, 12)), (1, 4, 2, 8));
        assert_eq!((k_parts(97, 8192, 512), k_parts(128, 3104, 512), k_parts(512, 1552, 1536)), (8, 3, 1));
    }
}
