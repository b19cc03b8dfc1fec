//! How many threads one kernel call spreads over: rayon's whole pool, or only the calling
//! thread while it runs one share of a batch split across the pool (`batch_split_cpu`).
//!
//! Splitting every product and elementwise pass of a network call over the threads costs a
//! fork-join each (~26 per call at D = 128) and leaves each product's operands split
//! between the cores' caches. When the batch itself is split, each thread runs whole network
//! calls on its samples, and the kernels inside must not split again: a stolen half would
//! make the thread that waits for it run another share's work in the meantime.

use std::cell::Cell;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every kernel call on this thread kept on this thread (products through
/// `gemm` without threads, rayon loops as one task), then restores the previous state, a
/// panic included.
pub(crate) fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.set(self.0);
        }
    }
    let _restore = Restore(SERIAL.replace(true));
    f()
}

/// Whether this thread is inside [`serially`].
pub(crate) fn is_serial() -> bool {
    SERIAL.get()
}

/// Threads a kernel call may split its work over: the rayon pool's, or 1 inside [`serially`].
pub(crate) fn threads() -> usize {
    if is_serial() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// The least number of items of one rayon task (`with_min_len`): `usual` normally, all of
/// them (no split, run on the calling thread) inside [`serially`].
pub(crate) fn min_len(usual: usize) -> usize {
    if is_serial() {
        usize::MAX
    } else {
        usual
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn serial_sections_keep_loops_on_the_calling_thread_and_end_on_panic() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            assert_eq!(threads(), 3);
            let me = rayon::current_thread_index();
            let seen: Vec<Option<usize>> = serially(|| {
                assert_eq!(threads(), 1);
                (0..64).into_par_iter().with_min_len(min_len(1)).map(|_| rayon::current_thread_index()).collect()
            });
            assert!(seen.iter().all(|&t| t == me), "every item on the calling thread");
            assert!(!is_serial());
            let caught = std::panic::catch_unwind(|| serially(|| panic!("inside")));
            assert!(caught.is_err());
            assert!(!is_serial(), "a panic leaves the serial state");
            // Nested sections restore the outer one.
            serially(|| {
                serially(|| ());
                assert!(is_serial());
            });
        });
    }
}
