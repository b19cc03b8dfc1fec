//! Row-major copies of strided views: what the kernels read when Burn hands them a permuted
//! tensor (the mlp_t mixer swaps the sequence and channel axes before and after its SwiGLU,
//! and the gradients come back swapped too).

use rayon::prelude::*;

use super::{buffers, pool};

/// Side of the square tiles of [`transposed_last_two`]: 16 source cache lines (one per
/// output column) are read 16 floats at a time while the 16 output rows stay in L1.
const TILE: usize = 16;

/// Elements per rayon task of the tiled copy. Smaller transposes (batch 1: 97 × 128) are
/// tiled on the calling thread: splitting them costs more than it saves, but the row copy
/// of a strided run (an element per cache line, through `step_by`) took 15 µs per
/// batch-1 mixer transpose, 4.9 % of sudoku-mlp latency samples with the other thread idle.
const TASK_ELEMENTS: usize = 1 << 14;

/// The elements of a strided view in row-major logical order. `memory` holds them all
/// (element [0, ..] first, non-negative `strides`, one per axis of `shape`).
pub(crate) fn gather(memory: &[f32], shape: &[usize], strides: &[usize]) -> Vec<f32> {
    transposed_last_two(memory, shape, strides).unwrap_or_else(|| gather_rows(memory, shape, strides))
}

/// [`gather`] when the last two axes are a transpose (the second-to-last has stride 1, the
/// last does not): a `swap_dims` of the last two axes of a row-major array. Copied in
/// [`TILE`]-square tiles, on all threads from [`TASK_ELEMENTS`] elements on; row by row
/// each output element came from another cache line, and the copy ran on one thread
/// (`perf`: 4.6 % of sudoku-mlp B=32 inference samples, with the other thread waiting).
fn transposed_last_two(memory: &[f32], shape: &[usize], strides: &[usize]) -> Option<Vec<f32>> {
    let n = shape.len();
    if n < 2 || strides[n - 2] != 1 || strides[n - 1] == 1 {
        return None;
    }
    let (rows, cols, col_stride) = (shape[n - 2], shape[n - 1], strides[n - 1]);
    let len: usize = shape.iter().product();
    if len == 0 {
        return None;
    }
    // Offset of every index of the leading axes, in row-major order.
    let mut bases = vec![0usize];
    for (&size, &stride) in shape[..n - 2].iter().zip(&strides[..n - 2]) {
        bases = bases.iter().flat_map(|&b| (0..size).map(move |i| b + i * stride)).collect();
    }
    // One band of TILE output rows, copied tile by tile.
    let band = |(tile_row, out): (usize, &mut [f32])| {
        let first = tile_row * TILE;
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for (i, row) in out.chunks_exact_mut(cols).enumerate() {
                let g = first + i;
                let base = bases[g / rows] + g % rows;
                for (c, o) in (c0..c1).zip(&mut row[c0..c1]) {
                    *o = memory[base + c * col_stride];
                }
            }
        }
    };
    if len < TASK_ELEMENTS {
        let mut out = vec![0.0; len];
        out.chunks_mut(TILE * cols).enumerate().for_each(band);
        return Some(out);
    }
    let mut out = buffers::zeroed(len);
    let min_tiles = (TASK_ELEMENTS / (TILE * cols)).max(1);
    out.par_chunks_mut(TILE * cols).with_min_len(pool::min_len(min_tiles)).enumerate().for_each(band);
    Some(out)
}

/// [`gather`] for any strides, row by row, each row a strided run (ndarray's element
/// iterator over such a view was ~14 % of mlp_t inference, `perf`).
fn gather_rows(memory: &[f32], shape: &[usize], strides: &[usize]) -> Vec<f32> {
    let len: usize = shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let Some((&n, outer)) = shape.split_last() else { return memory[..len.min(memory.len())].to_vec() };
    let step = *strides.last().expect("as many strides as axes");
    if len == 0 {
        return out;
    }
    let mut index = vec![0usize; outer.len()];
    loop {
        let base: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        if step == 1 {
            out.extend_from_slice(&memory[base..base + n]);
        } else {
            out.extend(memory[base..].iter().step_by(step).take(n));
        }
        // The next index of the outer axes, last axis fastest.
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < outer[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};

    /// (the tiled copy, when it was taken; `gather`; ndarray's logical-order iteration).
    fn gathered(shape: &[usize], perm: &[usize]) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let n: usize = shape.iter().product();
        let base = Array::from_iter((0..n).map(|v| v as f32)).into_shape_with_order(IxDyn(shape)).unwrap();
        let view = base.view().permuted_axes(IxDyn(perm));
        let want: Vec<f32> = view.iter().copied().collect();
        let memory = view.as_slice_memory_order().expect("a permutation of a contiguous array");
        let strides: Vec<usize> = view.strides().iter().map(|&s| s as usize).collect();
        let tiled = transposed_last_two(memory, view.shape(), &strides);
        (tiled, gather(memory, view.shape(), &strides), want)
    }

    #[test]
    fn swapped_last_axes_are_copied_in_tiles_in_logical_order() {
        // Sizes on both sides of a tile and of a task, leading axes of rank 0 to 2, and the
        // mixer's own shape ([B, D, S] from [B, S, D]) at batch 3.
        for (shape, perm) in [
            (vec![130, 129], vec![1, 0]),
            (vec![3, 97, 128], vec![0, 2, 1]),
            (vec![2, 3, 47, 59], vec![0, 1, 3, 2]),
            (vec![4, 300, 129], vec![0, 2, 1]),
        ] {
            let (tiled, got, want) = gathered(&shape, &perm);
            assert_eq!(tiled.as_ref(), Some(&want), "tiled {shape:?} {perm:?}");
            assert_eq!(got, want, "{shape:?} {perm:?}");
        }
        // Small transposes (batch 1, under one task) are tiled on the calling thread, also
        // with fewer elements than a tile; other permutations take the row-by-row copy.
        for (shape, perm) in [(vec![1, 97, 128], vec![0, 2, 1]), (vec![97, 128], vec![1, 0]), (vec![3, 5], vec![1, 0])]
        {
            let (tiled, got, want) = gathered(&shape, &perm);
            assert_eq!(tiled.as_ref(), Some(&want), "tiled {shape:?} {perm:?}");
            assert_eq!(got, want, "{shape:?} {perm:?}");
        }
        let (tiled, got, want) = gathered(&[30, 40, 50], &[2, 0, 1]);
        assert!(tiled.is_none());
        assert_eq!(got, want);
        assert!(transposed_last_two(&[0.0; 20000], &[100, 200], &[200, 1]).is_none(), "already row-major");
        assert!(transposed_last_two(&[], &[0, 3], &[1, 5]).is_none(), "empty");
    }
}
