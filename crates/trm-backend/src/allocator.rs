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
//! Threads other than `main` get arenas of their own (built from mmapped 64 MiB heaps).
//! Once the `trm` binary ran its commands on a rayon worker (`run_on_compute_pool`), the
//! faults came back: `trm bench`'s faults column read 12K per D=128 training step (940
//! before), 4.7K per matmul (one per page of its output) and 56K per D=512 inference batch.
//! With every thread on the main arena they are gone again. A unit test of the allocation
//! pattern alone did not reproduce it, so that column is what watches it. The kernels
//! allocate a few large buffers per call, not many small ones, so sharing one arena's lock
//! costs nothing measurable.

/// mmap threshold: allocations below it come from the heap and are reused. 32 MiB is
/// glibc's largest accepted value on 64-bit targets (`HEAP_MAX_SIZE / 2`); setting it also
/// stops glibc from moving the threshold on its own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap is returned to the kernel only beyond this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Arenas: one, the main arena, for every thread (see the module docs).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: i32 = 1;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// glibc's malloc now keeps up to 1 GiB of freed memory and serves blocks up to 32 MiB
    /// from its main heap, for every thread.
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
            && libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) == 1
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
}
