//! Output buffers of the CPU kernels, first written by all threads.
//!
//! `vec![0.0; n]` is a serial `calloc`: with the kept heap (`trm_backend::keep_freed_memory`)
//! it hands back a reused block that it must clear on the calling thread, and `to_vec` is a
//! serial copy. Both ran while the pool's other threads waited (~2 % of a training step at
//! D = 128 on one core, `perf`). Here large buffers are written by rayon tasks instead.

use rayon::prelude::*;

use super::pool;

/// Below this many elements (256 KiB) a buffer is written on the calling thread: splitting
/// costs more than it saves.
const PARALLEL_FROM: usize = 1 << 16;

/// `n` zeros.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    if n < PARALLEL_FROM || pool::is_serial() {
        return vec![0.0; n];
    }
    let mut out = Vec::with_capacity(n);
    out.par_extend(rayon::iter::repeat_n(0.0f32, n));
    out
}

/// A copy of `x`.
pub(crate) fn copied(x: &[f32]) -> Vec<f32> {
    if x.len() < PARALLEL_FROM || pool::is_serial() {
        return x.to_vec();
    }
    let mut out = Vec::with_capacity(x.len());
    out.par_extend(x.par_iter().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_on_both_sides_of_the_threshold_hold_what_they_say() {
        for n in [0, 5, PARALLEL_FROM - 1, PARALLEL_FROM, 3 * PARALLEL_FROM + 7] {
            // Freed memory of that size holding NaN first, so an element left unwritten shows.
            drop(std::hint::black_box(vec![f32::NAN; n]));
            let z = zeroed(n);
            assert_eq!(z.len(), n);
            assert!(z.iter().all(|&v| v == 0.0), "zeroed({n})");
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(copied(&x), x, "copied({n})");
        }
    }
}
