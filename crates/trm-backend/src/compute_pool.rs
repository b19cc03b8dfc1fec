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

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `job` on a worker of rayon's global pool and returns its result; the calling thread
/// waits, and the pool's other workers poll for work until `job` ends instead of sleeping
/// between parallel calls (so they use their cores fully meanwhile, as OpenMP threads do
/// by default). The pool is built here on first use, with `RAYON_NUM_THREADS` threads
/// (default: one per CPU) and 8 MiB stacks; if it already exists it is used as it is.
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
    rayon::scope(|_| with_spinning_workers(job))
}

/// Runs `job` (on a pool worker) while the pool's other workers poll for work instead of
/// sleeping between the kernels' parallel calls.
///
/// A rayon worker with nothing to do sleeps after a few microseconds of spinning, and the
/// next parallel call must wake it through the kernel; on these VMs that wake-up is slow
/// enough that at batch 1 (kernel calls of tens of microseconds, ~26 parallel calls per
/// network call) one thread often ran alone while the other was still waking: 24-31 % of
/// the samples of a batch-1 sudoku-att run (`xtask/py/perf_serial.py`). PyTorch's OpenMP
/// threads spin the same way by default. The spinners take whatever work is pending
/// (`rayon::yield_now`) and stop when `job` returns or panics.
fn with_spinning_workers<R>(job: impl FnOnce() -> R) -> R {
    thread_local! {
        static SPINNING: Cell<bool> = const { Cell::new(false) };
    }
    let Some(home) = rayon::current_thread_index() else { return job() };
    let done = AtomicBool::new(false);
    rayon::in_place_scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(|_| {
                // Taken by the job's own thread (while it waits in a join), the job would
                // wait on itself; taken by a thread already spinning, it would hide a
                // spinner from the threads still asleep. Either way: return at once.
                if rayon::current_thread_index() == Some(home) || SPINNING.get() {
                    return;
                }
                SPINNING.set(true);
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
                SPINNING.set(false);
            });
        }
        // Set on the way out, a panic included: the scope waits for the spinners to end.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _stop = Stop(&done);
        job()
    })
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

    #[test]
    fn spinning_workers_run_nested_parallel_work_and_stop_on_a_panic() {
        use rayon::prelude::*;
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let sum: u64 =
                pool.install(|| with_spinning_workers(|| (0..10_000u64).into_par_iter().map(|i| i * i).sum::<u64>()));
            assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>(), "{threads} threads");
            // Nested calls and joins from inside the job.
            let (a, b) = pool.install(|| {
                with_spinning_workers(|| {
                    rayon::join(|| with_spinning_workers(|| 1), || (0..100).into_par_iter().sum::<i32>())
                })
            });
            assert_eq!((a, b), (1, 4950));
            // A panic in the job reaches the caller (the spinners stop instead of waiting
            // forever for the job to finish).
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| with_spinning_workers(|| panic!("job failed")))
            }));
            assert!(caught.is_err(), "{threads} threads");
        }
    }
}
