//! Keeps freed memory in the process instead of handing it back to the kernel after every
//! large free (glibc only).
//!
//! A CPU forward pass allocates and frees buffers of a few MB per operation. With glibc's
//! defaults, once more than the trim threshold (twice the last mmap threshold, ~13 MB after
//! a 6 MB buffer) lies free at the top of the heap it is returned to the kernel, so the
//! next operation page-faults the same memory in again. Measured on `trm bench` (sudoku-att
//! D=128 batch 32, 2 threads, docs/benchmarks.md): inference alone in a process took 2.3M
//! page faults and 7.7 s for N_sup 4; with the settings below 7.9K faults and 5.3 s.
//! Peak RSS barely moves (+3 and +11 MiB for those inference runs): the memory kept is
//! memory the process already used, reused rather than returned.
//!
//! Threads other than `main` get arenas of their own, built from mmapped 64 MiB heaps. glibc
//! trims those differently: a heap left entirely free is unmapped whatever the trim
//! threshold, unless the top pad is at least a heap's size. Once the `trm` binary ran its
//! commands on a rayon worker (`run_on_compute_pool`), that showed as 12K page faults per
//! D=128 training step (940 before) in `trm bench`'s faults column. Putting every thread on
//! the main arena (`M_ARENA_MAX` = 1) removed them, until the batch splits had each thread
//! run a whole network: then the threads queued on that arena's lock (`perf`: futex waits
//! under `malloc` and `free`), and per-thread arenas made a D=128 training step 4 % and
//! inference 6 % faster even with the faults back. With the top pad at 64 MiB the
//! worker arenas keep their heaps and the faults stay gone (docs/perf-levers.md).

/// mmap threshold: allocations below it come from the heap and are reused. 32 MiB is
/// glibc's largest accepted value on 64-bit targets (`HEAP_MAX_SIZE / 2`); setting it also
/// stops glibc from moving the threshold on its own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap is returned to the kernel only beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Free memory kept at the top of a heap: glibc's `heap_trim` unmaps a worker arena's heap
/// that is entirely free only when the top pad is below the heap size (64 MiB, `HEAP_MAX_SIZE`
/// on 64-bit targets), so at that size the worker arenas keep their heaps. It only reserves
/// address space: untouched pages are not resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: i32 = 64 << 20;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// glibc's malloc now keeps up to 1 GiB of freed memory and serves blocks up to 32 MiB
    /// from its heaps, in each thread's arena.
    Applied,
    /// glibc refused a setting (its defaults stay).
    Refused,
    /// Not glibc: nothing to do (other allocators have their own policies).
    Unsupported,
}

/// Tunes glibc's malloc for many short-lived multi-MB buffers (see the module docs). The
/// `trm` binary calls it first thing; a program embedding the CPU backend can do the same.
/// It affects the whole process, so a library never calls it on its own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() -> AllocatorTuning {
    // SAFETY: mallopt only sets malloc's tunables (under its own lock); the values are
    // within the ranges glibc documents, and it reports a refused value by returning 0.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
    };
    if ok {
        AllocatorTuning::Applied
    } else {
        AllocatorTuning::Refused
    }
}

/// Tunes glibc's malloc for many short-lived multi-MB buffers; a no-op elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() -> AllocatorTuning {
    AllocatorTuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far (field 10 of /proc/thread-self/stat).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        rest.split(' ').nth(7).and_then(|f| f.parse().ok()).expect("minflt field")
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_are_reused_without_page_faults() {
        assert_eq!(keep_freed_memory(), AllocatorTuning::Applied);
        const SIZE: usize = 8 << 20;
        let first = vec![1u8; SIZE];
        let address = first.as_ptr() as usize;
        // Read before the free, so that reading allocates nothing in the freed block.
        let before = minor_faults();
        drop(first);
        // glibc's defaults would map this block afresh (a new address, or the old one
        // trimmed and faulted in again: 2048 faults of 4 KiB).
        let second = vec![2u8; SIZE];
        let faults = minor_faults() - before;
        assert_eq!(second.as_ptr() as usize, address);
        assert!(faults < 64, "{faults} page faults for a reused block");
    }

    /// On a thread's own arena, a 64 MiB heap left entirely free stays mapped (glibc's
    /// defaults unmap it, so that the next block of that size is faulted in afresh).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_worker_arena_keeps_a_heap_left_free() {
        assert_eq!(keep_freed_memory(), AllocatorTuning::Applied);
        // Bytes the arenas hold from the kernel, all arenas together.
        // SAFETY: mallinfo2 only reads malloc's statistics (under the arenas' locks).
        #[allow(unsafe_code)]
        fn arena_bytes() -> usize {
            unsafe { libc::mallinfo2() }.arena
        }
        let (before, after) = std::thread::spawn(|| {
            const SIZE: usize = 30 << 20;
            // Two blocks fill the arena's first heap; the third needs a heap of its own.
            // (black_box: an allocation never read could be optimised away.)
            let ab = std::hint::black_box((vec![1u8; SIZE], vec![1u8; SIZE]));
            let c = std::hint::black_box(vec![1u8; SIZE]);
            let before = arena_bytes();
            drop(c);
            let after = arena_bytes();
            drop(ab);
            (before, after)
        })
        .join()
        .expect("the allocating thread");
        // Other tests allocate meanwhile, but none frees 16 MiB of heap.
        assert!(after + (16 << 20) > before, "the arenas went from {before} to {after} bytes");
    }
}
