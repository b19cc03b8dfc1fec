//! Running a whole CPU job on rayon's pool instead of handing each kernel to it.
//!
//! The CPU kernels (`trm_model::kernels`) split their work with rayon. Called from a thread
//! outside the pool, as `main` is, every such call injects a job, wakes a worker through a
//! futex, and puts the caller to sleep until the job is done: two context switches per
//! kernel call. At batch 1 a kernel call lasts tens of microseconds, so this hand-off was
//! 14 % of single-threaded inference latency under `perf`. Run on a pool worker, the same
//! calls push their halves onto the worker's own deque and go on working.

/// The stack of the pool's threads: they run whole training and inference jobs, so they
/// get the 8 MiB a main thread has on Linux instead of the 2 MiB of a spawned thread.
const STACK_BYTES: usize = 8 << 20;

/// Runs `job` on a worker of rayon's global pool and returns its result; the calling thread
/// waits. The pool is built here on first use, with `RAYON_NUM_THREADS` threads (default:
/// one per CPU) and 8 MiB stacks; if it already exists it is used as it is.
///
/// Results are the same as calling `job()` directly: only which thread runs it changes.
/// Process-wide like the pool, so binaries call it and libraries do not.
pub fn run_on_compute_pool<R: Send>(job: impl FnOnce() -> R + Send) -> R {
    // Err means the global pool was built already (by us or by a dependency): use that one.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(STACK_BYTES).build_global();
    if rayon::current_thread_index().is_some() {
        return job();
    }
    // `scope` runs its closure on a pool worker when called from outside the pool.
    rayon::scope(|_| job())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_runs_on_a_pool_worker_and_returns_its_result() {
        assert_eq!(rayon::current_thread_index(), None, "the test harness thread is not a pool worker");
        let (value, index) = run_on_compute_pool(|| (6 * 7, rayon::current_thread_index()));
        assert_eq!(value, 42);
        assert!(index.is_some(), "the job ran outside the pool");
        // Nested calls run in place.
        let nested = run_on_compute_pool(|| run_on_compute_pool(rayon::current_thread_index));
        assert!(nested.is_some());
    }

    #[test]
    fn a_deep_recursion_fits_the_stack() {
        // ~4 MiB of frames: more than a default 2 MiB thread stack holds.
        fn depth(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 {
                pad[0] as usize
            } else {
                1 + depth(n - 1) + pad[n % 1024] as usize
            }
        }
        assert_eq!(run_on_compute_pool(|| depth(4000)), 4000);
    }
}
