//! Backend glue: the concrete Burn backends trm can run on, each behind a cargo feature,
//! and the run-time choice between them (`--backend cpu|wgpu|cuda --device N`).
//!
//! Model and training code are generic over `B: Backend`; only binaries pick a concrete
//! backend. They do it through [`dispatch`], which monomorphises a [`BackendJob`] for the
//! backend named at run time and fails with an error naming the cargo feature when that
//! backend was not compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

mod allocator;
mod compute_pool;
mod device_memory;
pub use allocator::{keep_freed_memory, AllocatorTuning};
pub use compute_pool::run_on_compute_pool;
pub use device_memory::{device_memory, DeviceMemory};

pub use burn::backend::Autodiff;

/// CPU backend (burn-ndarray, float32).
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;
/// CPU backend with autodiff, for training.
#[cfg(feature = "ndarray")]
pub type CpuAutodiff = Autodiff<Cpu>;

/// WGPU backend (Vulkan, Metal, DX12, or software Vulkan through lavapipe).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;
/// WGPU backend with autodiff.
#[cfg(feature = "wgpu")]
pub type WgpuAutodiff = Autodiff<Wgpu>;

/// CUDA backend (needs the driver's libcuda and libnvrtc at run time).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
/// CUDA backend with autodiff.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = Autodiff<Cuda>;

/// A backend named on the command line or in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-ndarray on the CPU.
    #[default]
    Cpu,
    /// burn-wgpu.
    Wgpu,
    /// burn-cuda.
    Cuda,
}

impl BackendKind {
    /// Every backend kind, compiled in or not.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// The cargo feature (of `trm-backend`, re-exported by `trm-cli`) that compiles this backend in.
    pub fn cargo_feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with this backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends compiled into this binary.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// Lower-case name, as accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "ndarray" => Ok(BackendKind::Cpu),
            "wgpu" | "vulkan" | "metal" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }
}

/// Errors from choosing a backend.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The name is not a backend.
    #[error("unknown backend `{0}`: expected one of cpu, wgpu, cuda")]
    Unknown(String),
    /// The backend exists but this binary was built without it.
    #[error(
        "backend `{kind}` is not compiled into this binary; rebuild with `--features {feature}` \
         (for example `cargo build --release -p trm-cli --features {feature}`)"
    )]
    NotCompiled {
        /// The backend asked for.
        kind: BackendKind,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// The GPU backend could not start on this device (no driver, no adapter, no such GPU).
    #[error("backend `{kind}` could not start on device {index}: {reason}")]
    Unavailable {
        /// The backend asked for.
        kind: BackendKind,
        /// The device index asked for.
        index: usize,
        /// What its runtime reported.
        reason: String,
    },
    /// The CPU backend has a single device.
    #[error("backend `{kind}` has no device {index}")]
    NoSuchDevice {
        /// The backend asked for.
        kind: BackendKind,
        /// The device index asked for.
        index: usize,
    },
}

/// Work that runs on whichever autodiff backend is chosen at run time.
///
/// `B::InnerBackend` is the matching backend without autodiff, for inference and no-grad work.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B` and `device`.
    fn run<B: AutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend `kind`, device `index`; an error if it is not compiled in.
pub fn dispatch<J: BackendJob>(kind: BackendKind, index: usize, job: J) -> Result<J::Output, BackendError> {
    // Compiled in, an existing CPU device, a GPU runtime that starts: an error otherwise.
    check_device(kind, index)?;
    #[allow(unreachable_patterns)]
    match kind {
        #[cfg(feature = "ndarray")]
        BackendKind::Cpu => Ok(job.run::<CpuAutodiff>(kind, burn::backend::ndarray::NdArrayDevice::Cpu)),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Ok(job.run::<WgpuAutodiff>(kind, wgpu_device(index))),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(job.run::<CudaAutodiff>(kind, burn::backend::cuda::CudaDevice::new(index))),
        _ => {
            let _ = job;
            unreachable!("check_device accepts only the backends compiled in")
        }
    }
}

/// Whether backend `kind` can run on device `index` here: compiled in, device 0 for the CPU,
/// and for a GPU backend its runtime starts on that device (and stays started for the
/// process). [`dispatch`] checks this first.
pub fn check_device(kind: BackendKind, index: usize) -> Result<(), BackendError> {
    if !kind.is_compiled() {
        return Err(BackendError::NotCompiled { kind, feature: kind.cargo_feature() });
    }
    match kind {
        BackendKind::Cpu if index != 0 => Err(BackendError::NoSuchDevice { kind, index }),
        BackendKind::Cpu => Ok(()),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        _ => device_memory::start_gpu(kind, index),
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        _ => unreachable!("is_compiled() is false for the GPU backends without their features"),
    }
}

/// The wgpu device `--device index` names: the default adapter for 0, else that discrete GPU.
#[cfg(feature = "wgpu")]
fn wgpu_device(index: usize) -> burn::backend::wgpu::WgpuDevice {
    match index {
        0 => burn::backend::wgpu::WgpuDevice::DefaultDevice,
        i => burn::backend::wgpu::WgpuDevice::DiscreteGpu(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_names() {
        assert_eq!("cpu".parse::<BackendKind>(), Ok(BackendKind::Cpu));
        assert_eq!("CUDA".parse::<BackendKind>(), Ok(BackendKind::Cuda));
        assert_eq!("wgpu".parse::<BackendKind>(), Ok(BackendKind::Wgpu));
        assert!(matches!("tpu".parse::<BackendKind>(), Err(BackendError::Unknown(_))));
    }

    struct Name;
    impl BackendJob for Name {
        type Output = String;
        fn run<B: AutodiffBackend>(self, kind: BackendKind, _device: B::Device) -> String {
            format!("{kind}:{}", std::any::type_name::<B>())
        }
    }

    #[test]
    fn missing_backend_names_the_feature() {
        for kind in BackendKind::ALL {
            let result = dispatch(kind, 0, Name);
            if kind.is_compiled() {
                continue;
            }
            let err = result.unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(kind.cargo_feature()), "{msg}");
            assert!(msg.contains("--features"), "{msg}");
        }
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn dispatches_to_cpu() {
        let out = dispatch(BackendKind::Cpu, 0, Name).unwrap();
        assert!(out.starts_with("cpu:"), "{out}");
        assert!(out.contains("NdArray"), "{out}");
        assert_eq!(
            dispatch(BackendKind::Cpu, 1, Name).unwrap_err(),
            BackendError::NoSuchDevice { kind: BackendKind::Cpu, index: 1 }
        );
    }

    #[test]
    fn check_device_agrees_with_dispatch_on_what_cannot_run() {
        for kind in BackendKind::ALL.into_iter().filter(|k| !k.is_compiled()) {
            assert_eq!(check_device(kind, 0), Err(BackendError::NotCompiled { kind, feature: kind.cargo_feature() }));
        }
        if BackendKind::Cpu.is_compiled() {
            assert_eq!(check_device(BackendKind::Cpu, 0), Ok(()));
            assert_eq!(
                check_device(BackendKind::Cpu, 2),
                Err(BackendError::NoSuchDevice { kind: BackendKind::Cpu, index: 2 })
            );
        }
    }
}
