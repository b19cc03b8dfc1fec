//! How much memory a bench phase takes: the process's resident set (Linux `/proc`), and on
//! GPU backends the device memory their allocator holds, read through a probe the binary
//! supplies.

use std::sync::Arc;

use burn::tensor::backend::Backend;

use super::{sync, BenchResult};

/// Peak resident set size of this process in bytes (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Current resident set size in bytes (`VmRSS`), on Linux.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak RSS to the current RSS (Linux >= 4.0, `echo 5 > /proc/self/clear_refs`),
/// so each phase of a run reports its own peak. Returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Starts a phase: resets the peak RSS and returns the RSS now, in MiB.
pub(super) fn phase_start() -> Option<f64> {
    reset_peak_rss();
    rss_bytes().map(mib)
}

/// Minor page faults of this process so far (all threads; field 10 of `/proc/self/stat`),
/// on Linux.
pub fn minor_page_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(7)?.parse().ok()
}

/// Reads how many bytes a GPU backend's allocator holds on the bench's device. The binary,
/// which knows the concrete backend, supplies it (`trm_backend::device_memory`); model code
/// stays generic over `Backend`.
#[derive(Clone)]
pub struct DeviceMemoryProbe(Arc<dyn Fn() -> Option<u64> + Send + Sync>);

impl DeviceMemoryProbe {
    /// A probe from a function returning the allocator's reserved bytes.
    pub fn new(read: impl Fn() -> Option<u64> + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    fn read(&self) -> Option<u64> {
        (self.0)()
    }
}

impl std::fmt::Debug for DeviceMemoryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceMemoryProbe")
    }
}

/// The device memory of one phase: the largest of the allocator's reserved bytes read at its
/// start, after its set-up and after every call (warm-up included).
pub(super) struct DevicePeak<'a> {
    probe: Option<&'a DeviceMemoryProbe>,
    base: Option<u64>,
    peak: Option<u64>,
}

impl<'a> DevicePeak<'a> {
    /// Frees the pages earlier phases left in the allocator's pools, then reads the base.
    pub(super) fn start<B: Backend>(probe: Option<&'a DeviceMemoryProbe>, device: &B::Device) -> Self {
        if probe.is_some() {
            sync::<B>(device);
            B::memory_cleanup(device);
        }
        let base = probe.and_then(DeviceMemoryProbe::read);
        Self { probe, base, peak: base }
    }

    pub(super) fn sample(&mut self) {
        if let Some(now) = self.probe.and_then(DeviceMemoryProbe::read) {
            self.peak = Some(self.peak.map_or(now, |p| p.max(now)));
        }
    }

    pub(super) fn record(&self, r: &mut BenchResult) {
        r.device_peak_mib = self.peak.map(mib);
        r.device_base_mib = self.base.map(mib);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use burn::backend::NdArray;

    use super::*;
    use crate::bench::{bench_inference, BenchSpec};
    use crate::TrmConfig;

    fn tiny_spec(probe: Option<DeviceMemoryProbe>) -> BenchSpec {
        let mut cfg = TrmConfig::sudoku_mlp();
        (cfg.hidden_size, cfg.puzzle_emb_ndim, cfg.t_cycles, cfg.n_cycles) = (16, 16, 1, 1);
        BenchSpec { name: "tiny".into(), config: cfg, backend: "cpu".into(), warmup: 1, iters: 2, device_memory: probe }
    }

    #[test]
    fn a_phase_reports_the_largest_reading_of_its_probe() {
        // A probe whose n-th reading is n MiB: the phase reads it once at the start, once
        // after the set-up and once after each of its 1 + 2 calls.
        let reads = Arc::new(AtomicU64::new(0));
        let counter = reads.clone();
        let probe = DeviceMemoryProbe::new(move || Some((counter.fetch_add(1, Ordering::SeqCst) + 1) << 20));
        let spec = tiny_spec(Some(probe));
        let r = bench_inference::<NdArray<f32>>(&spec, "inference", 2, 1, &Default::default());
        assert_eq!(reads.load(Ordering::SeqCst), 5);
        assert_eq!((r.device_base_mib, r.device_peak_mib), (Some(1.0), Some(5.0)));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"device_peak_mib\":5.0"), "{json}");
    }

    #[test]
    fn without_a_probe_the_result_has_no_device_fields() {
        let spec = tiny_spec(None);
        let r = bench_inference::<NdArray<f32>>(&spec, "latency", 1, 1, &Default::default());
        assert_eq!((r.device_base_mib, r.device_peak_mib), (None, None));
        assert!(!serde_json::to_string(&r).unwrap().contains("device_"));
    }
}
