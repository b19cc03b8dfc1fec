//! Weights packed once per inference for the products with few rows (batch 1: the 97
//! positions of one puzzle), instead of once per product.
//!
//! `gemm` packs W into its micro-kernel's layout on every call; at batch 1 that packing is
//! amortised over 97 rows only, and with two threads each packs its part again (docs/
//! perf-levers.md: +27 % packing and +12 % micro-kernel samples against one thread). Inside
//! [`with_packed`] (`trm_inference` opens it for small batches) every weight of the network
//! is copied once into 64-column panels, each a 64-byte-aligned [k, 64] row-major block, and
//! the products of at most [`MAX_ROWS`] rows run [`matmul`] on them: a 6-row × 4-vector
//! register tile of FMAs over k, one x element broadcast at a time, the panel read in order;
//! the threads split the panels. Each output element is the same FMA chain over k, in the
//! same order, that `gemm` computes when it takes k in one block (k ≤ 512), so the results
//! are `gemm`'s bits (tested) and the packed path changes no result.
//!
//! The packed copies are found by the address of the weight's buffer. The scope holds the
//! model, whose tensors keep those buffers alive and unchanged (Burn writes in place only
//! into buffers nothing else holds), so an address found in the registry is that weight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::gemm_cpu::Threads;
use super::{fast_math, pool};

/// Columns of a panel: 4 AVX-512 vectors (two tiles of 4 AVX2 vectors).
const PANEL: usize = 64;
/// Rows of the register tile.
const TILE_ROWS: usize = 6;
/// Vectors across the register tile.
const TILE_VECS: usize = 4;
/// The longest k packed: `gemm` takes k in one block up to 512 (beyond, it adds blocks, and
/// the bits would differ).
const MAX_K: usize = 512;
/// Most rows of a product run on the packed weights: the batch-1 and batch-2 products. On
/// the 1552-row shares of B=32 inference `gemm` was the faster kernel (+3 to +6 % with the
/// packed one; docs/perf-levers.md); between the two the limit is not tuned.
pub(crate) const MAX_ROWS: usize = 256;

/// A weight matrix [k, n] as `ceil(n / 64)` panels of [k, 64], the last one zero-padded.
pub(crate) struct Packed {
    k: usize,
    n: usize,
    buffer: Vec<f32>,
    /// Where the 64-byte-aligned panels start in `buffer`.
    start: usize,
}

impl Packed {
    fn new(w: &[f32], k: usize, n: usize) -> Self {
        let len = n.div_ceil(PANEL) * k * PANEL;
        let mut buffer = vec![0.0f32; len + 15];
        let start = (64 - buffer.as_ptr() as usize % 64) % 64 / std::mem::size_of::<f32>();
        let panels = &mut buffer[start..start + len];
        for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
            let (j0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
            for (row, w_row) in panel.chunks_exact_mut(PANEL).zip(w.chunks_exact(n)) {
                row[..width].copy_from_slice(&w_row[j0..j0 + width]);
            }
        }
        Self { k, n, buffer, start }
    }

    /// Panel `p`: [k, 64] row-major.
    fn panel(&self, p: usize) -> &[f32] {
        let from = self.start + p * self.k * PANEL;
        &self.buffer[from..from + self.k * PANEL]
    }
}

/// The packed copies of the weights of the open scopes, by buffer address, with the number
/// of scopes that hold each.
type Registry = HashMap<usize, (usize, Arc<Packed>)>;

static REGISTRY: RwLock<Option<Registry>> = RwLock::new(None);
/// Open scopes: the products look the registry up only while one is.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Whether products with k ≤ 512 get packed copies on this CPU (FMA: AVX2 or AVX-512).
fn packs(k: usize, n: usize) -> bool {
    matches!(fast_math::simd_level(), "AVX-512" | "AVX2+FMA") && (1..=MAX_K).contains(&k) && n > 0
}

/// Runs `f` with packed copies of `weights` (each a row-major [k, n] slice in place in a
/// tensor that outlives `f`) registered for [`lookup`]; removed again when `f` returns or
/// panics. Scopes may nest and overlap across threads.
pub(crate) fn with_packed<R>(weights: &[(&[f32], usize, usize)], f: impl FnOnce() -> R) -> R {
    let keys: Vec<usize> = {
        let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
        let registry = registry.get_or_insert_with(HashMap::new);
        weights
            .iter()
            .filter(|(w, k, n)| packs(*k, *n) && w.len() == k * n)
            .map(|&(w, k, n)| {
                let key = w.as_ptr() as usize;
                let entry = registry.entry(key);
                entry.and_modify(|(holders, _)| *holders += 1).or_insert_with(|| (1, Arc::new(Packed::new(w, k, n))));
                key
            })
            .collect()
    };
    struct Close(Vec<usize>);
    impl Drop for Close {
        fn drop(&mut self) {
            OPEN.fetch_sub(1, Ordering::AcqRel);
            let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
            if let Some(registry) = registry.as_mut() {
                for key in &self.0 {
                    if let Some((holders, _)) = registry.get_mut(key) {
                        *holders -= 1;
                        if *holders == 0 {
                            registry.remove(key);
                        }
                    }
                }
            }
        }
    }
    OPEN.fetch_add(1, Ordering::AcqRel);
    let _close = Close(keys);
    f()
}

/// The packed copy of `w` ([k, n]) when an open scope registered it and a product of `rows`
/// rows should use it.
pub(crate) fn lookup(w: &[f32], rows: usize, k: usize, n: usize) -> Option<Arc<Packed>> {
    if OPEN.load(Ordering::Acquire) == 0 || rows == 0 || rows > MAX_ROWS {
        return None;
    }
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let (_, packed) = registry.as_ref()?.get(&(w.as_ptr() as usize))?;
    (packed.k == k && packed.n == n && w.len() == k * n).then(|| packed.clone())
}

/// x·W into a new row-major buffer, W packed: x is [rows, k]. With `Threads::Pool` the
/// panels are split into one contiguous range per thread, so each thread reads only its
/// part of W.
pub(crate) fn matmul(x: &[f32], w: &Packed, threads: Threads) -> Vec<f32> {
    matmul_many(x, &[w], threads).pop().expect("one product")
}

/// x·W for several packed W of the same k (the attention's q, k and v projections) in one
/// parallel section: one fork-join instead of one per product. Each product's panels are
/// split as in [`matmul`].
pub(crate) fn matmul_many(x: &[f32], ws: &[&Packed], threads: Threads) -> Vec<Vec<f32>> {
    let k = ws.first().map_or(1, |w| w.k);
    assert!(ws.iter().all(|w| w.k == k), "the products share x, so they share k");
    let rows = x.len() / k;
    let threads = match threads {
        Threads::One => 1,
        Threads::Pool => pool::threads(),
    };
    // Not zeroed first (that memset was 4 % of batch-1 samples): the tiles write every
    // element, each row's columns of each panel, through raw pointers.
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| Vec::with_capacity(rows * w.n)).collect();
    let mut tasks = Vec::new();
    for (w, out) in ws.iter().zip(&mut outs) {
        let c = OutPtr(out.as_mut_ptr(), rows * w.n);
        let panels = w.n.div_ceil(PANEL);
        let parts = threads.min(panels);
        tasks.extend((0..parts).map(|part| (*w, part * panels / parts..(part + 1) * panels / parts, c)));
    }
    tasks.into_par_iter().with_min_len(pool::min_len(1)).for_each(|(w, range, c)| {
        pulp::Arch::new().dispatch(Product { x, w, range, c });
    });
    for (w, out) in ws.iter().zip(&mut outs) {
        // SAFETY: each product's panels 0..panels were split among its tasks without gaps,
        // and for each panel `Product` writes every row's valid columns (together all n
        // columns), so all rows·n elements of the capacity were written above.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(rows * w.n)
        };
    }
    outs
}

/// The output of [`matmul`] (pointer and length), written by each thread in its own columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);

// SAFETY: the threads write disjoint ranges of columns (see `OutPtr::row`).
#[allow(unsafe_code)]
unsafe impl Send for OutPtr {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes `values` to elements `from..from + values.len()` of the output.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn write(&self, from: usize, values: &[f32]) {
        assert!(from + values.len() <= self.1, "inside the output");
        // SAFETY: `matmul` made the pointer from the capacity of a live buffer of `self.1`
        // floats that outlives every use, the range is inside it (checked above), and each
        // caller writes only columns of its own panels: no two threads' ranges overlap. The
        // write goes through the raw pointer, so no reference to uninitialised memory is made.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(from), values.len()) }
    }
}

/// One thread's panels `range` of c = x·W.
struct Product<'a> {
    x: &'a [f32],
    w: &'a Packed,
    range: std::ops::Range<usize>,
    c: OutPtr,
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Product { x, w, range, c } = self;
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        let tile_cols = TILE_VECS * lanes;
        let rows = x.len() / w.k;
        for p in range {
            let panel = w.panel(p);
            for j in (0..PANEL).step_by(tile_cols) {
                let (col, valid) = (p * PANEL + j, (w.n.saturating_sub(p * PANEL + j)).min(tile_cols));
                if valid == 0 {
                    break;
                }
                let mut r = 0;
                while r + TILE_ROWS <= rows {
                    tile::<S, TILE_ROWS>(simd, &x[r * w.k..], w.k, panel, j, c, w.n, r, col, valid);
                    r += TILE_ROWS;
                }
                let x = &x[r * w.k..];
                match rows - r {
                    0 => {}
                    1 => tile::<S, 1>(simd, x, w.k, panel, j, c, w.n, r, col, valid),
                    2 => tile::<S, 2>(simd, x, w.k, panel, j, c, w.n, r, col, valid),
                    3 => tile::<S, 3>(simd, x, w.k, panel, j, c, w.n, r, col, valid),
                    4 => tile::<S, 4>(simd, x, w.k, panel, j, c, w.n, r, col, valid),
                    _ => tile::<S, 5>(simd, x, w.k, panel, j, c, w.n, r, col, valid),
                }
            }
        }
    }
}

/// Rows `row0..row0 + R` of c, columns `col..col + valid`: Σ_kk x[r, kk]·panel[kk, j..],
/// accumulated in registers over kk in order (the panel's padding columns are computed and
/// not stored).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, const R: usize>(
    simd: S,
    x: &[f32],
    k: usize,
    panel: &[f32],
    j: usize,
    c: OutPtr,
    n: usize,
    row0: usize,
    col: usize,
    valid: usize,
) {
    let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
    let mut acc = [[simd.splat_f32s(0.0); TILE_VECS]; R];
    let x_rows: [&[f32]; R] = std::array::from_fn(|r| &x[r * k..(r + 1) * k]);
    for (kk, panel_row) in panel.chunks_exact(PANEL).enumerate() {
        let (wv, _) = S::as_simd_f32s(&panel_row[j..j + TILE_VECS * lanes]);
        for (acc, x_row) in acc.iter_mut().zip(&x_rows) {
            let xs = simd.splat_f32s(x_row[kk]);
            for (acc, &wv) in acc.iter_mut().zip(wv) {
                *acc = simd.mul_add_f32s(xs, wv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let values: &[f32] = pulp::bytemuck::cast_slice(&acc[..]);
        c.write((row0 + r) * n + col, &values[..valid]);
    }
}

#[cfg(test)]
#[path = "packed_cpu_tests.rs"]
mod tests;
