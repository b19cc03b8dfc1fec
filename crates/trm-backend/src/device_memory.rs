//! Device memory of the GPU backends, read from their allocator (cubecl's memory manager),
//! for `trm bench`'s peak-memory column on wgpu and cuda. The CPU backend's memory is the
//! process's resident set, which `trm_model::bench` reads from `/proc`.

use crate::BackendKind;

/// What a GPU backend's allocator holds on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes in live tensors (without padding).
    pub in_use_bytes: u64,
    /// Bytes the allocator has taken from the device: live tensors, their padding and the
    /// free pages it keeps for later allocations. Comparable with PyTorch's
    /// `torch.cuda.memory_reserved()`.
    pub reserved_bytes: u64,
}

/// Reads the allocator's memory on device `index` of backend `kind`; `None` for the CPU
/// backend, for a backend not compiled in, and when the device does not answer.
///
/// The read is queued behind the work already submitted on this thread's stream, so it
/// sees that work's allocations.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(unused_variables))]
pub fn device_memory(kind: BackendKind, index: usize) -> Option<DeviceMemory> {
    #[allow(unreachable_patterns)]
    match kind {
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => read::<cubecl::wgpu::WgpuRuntime>(&crate::wgpu_device(index)),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => read::<cubecl::cuda::CudaRuntime>(&burn::backend::cuda::CudaDevice::new(index)),
        _ => None,
    }
}

/// Starts the runtime of GPU backend `kind` on device `index` by reading its memory once.
/// Its runtimes panic when they cannot start (a driver library that does not load, no
/// adapter): that becomes an error with the first panic's message, and the panic messages
/// are kept off stderr meanwhile.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn start_gpu(kind: BackendKind, index: usize) -> Result<(), crate::BackendError> {
    use std::sync::{Arc, Mutex};
    let first_panic: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = first_panic.clone();
    let previous = std::panic::take_hook();
    // The runtime's own threads panic too (the root cause comes first, from its device
    // thread; the calling thread's "channel closed" follows), so the hook is process-wide.
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the runtime panicked".into());
        seen.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(message);
    }));
    let started = std::panic::catch_unwind(|| device_memory(kind, index));
    std::panic::set_hook(previous);
    match started {
        Ok(_) => Ok(()),
        Err(_) => {
            let message = first_panic.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            // cudarc appends every library name it tried; the first sentence says enough.
            let mut reason = message.split(" - searched for").next().unwrap_or_default().trim().to_string();
            if kind == BackendKind::Cuda && reason.contains("dynamically load") {
                reason.push_str(": is an NVIDIA driver installed, with its libcuda.so on the loader's path?");
            }
            Err(crate::BackendError::Unavailable { kind, index, reason })
        }
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn read<R: cubecl::Runtime>(device: &R::Device) -> Option<DeviceMemory> {
    let usage = R::client(device).memory_usage().ok()?;
    Some(DeviceMemory { in_use_bytes: usage.bytes_in_use, reserved_bytes: usage.bytes_reserved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_has_no_device_memory() {
        assert_eq!(device_memory(BackendKind::Cpu, 0), None);
    }

    /// Without a CUDA driver (this project's CI and dev machines) starting the backend is an
    /// error naming the library, not a panic; with one it starts.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_starts_or_says_why_not() {
        match crate::check_device(BackendKind::Cuda, 0) {
            Ok(()) => assert!(device_memory(BackendKind::Cuda, 0).is_some()),
            Err(e) => {
                let e = e.to_string();
                assert!(e.starts_with("backend `cuda` could not start on device 0: "), "{e}");
                assert!(e.len() > 50 && !e.contains("searched for"), "{e}");
            }
        }
    }

    /// Needs a Vulkan driver (lavapipe does): `cargo test -p trm-backend --features wgpu`.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_memory_grows_with_a_live_tensor() {
        use burn::tensor::{Distribution, Tensor};
        let device = crate::wgpu_device(0);
        let before = device_memory(BackendKind::Wgpu, 0).expect("wgpu answers");
        let t = Tensor::<crate::Wgpu, 2>::random([512, 1024], Distribution::Default, &device);
        let _ = t.clone().sum().into_scalar();
        let during = device_memory(BackendKind::Wgpu, 0).unwrap();
        assert!(during.in_use_bytes >= before.in_use_bytes + 512 * 1024 * 4, "{before:?} -> {during:?}");
        assert!(during.reserved_bytes >= during.in_use_bytes);
        drop(t);
    }
}
