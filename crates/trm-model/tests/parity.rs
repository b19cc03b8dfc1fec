//! Parity against the official PyTorch implementation on every fixture folder in
//! `shared/fixtures/parity` (or `$TRM_PARITY_DIR`). The same check runs on each backend:
//! ndarray always, wgpu with `--features test-wgpu`, cuda with `--features test-cuda`.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;
use trm_model::checkpoint::read_tensors;
use trm_model::parity::{compare_with_reference, compute_fixture_tensors, float32_floors, run_parity, ParityReport};
use trm_model::{Trm, TrmConfig};

type Cpu = Autodiff<NdArray<f32>>;

fn fixture_dirs() -> Option<Vec<PathBuf>> {
    let root = std::env::var_os("TRM_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity"));
    if !root.is_dir() {
        eprintln!("skipping parity: no fixtures at {} (set TRM_PARITY_DIR)", root.display());
        return None;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture folders in {}", root.display());
    Some(dirs)
}

fn load<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Trm<B> {
    let config = TrmConfig::from_file(&dir.join("config.json")).unwrap();
    config.init::<B>(device).load_checkpoint(&dir.join("checkpoint.pt")).unwrap()
}

fn assert_passed(dir: &Path, report: &ParityReport, failures: &mut Vec<String>) {
    eprintln!("{}: {} tensors, max rel err {:.3e}", dir.display(), report.rows.len(), report.max_rel_err());
    assert!(report.rows.iter().any(|r| r.name.starts_with("grad.")), "no gradients compared");
    assert!(report.rows.iter().any(|r| r.name.starts_with("eval.")), "no evaluation steps compared");
    for row in report.rows.iter().filter(|r| !r.ok) {
        failures.push(format!(
            "{}: {} rel err {:.3e} (tol {:.1e}) {:?}",
            dir.display(),
            row.name,
            row.rel_err,
            row.tolerance,
            row.note
        ));
    }
}

/// Runs parity on backend `B`, with float32 floors measured on the CPU (float64 there).
#[allow(dead_code)]
fn parity_on<B: AutodiffBackend>(device: &B::Device) {
    let Some(dirs) = fixture_dirs() else { return };
    let cpu = Default::default();
    let mut failures = Vec::new();
    for dir in &dirs {
        let io = read_tensors(&dir.join("io.safetensors")).unwrap();
        let model = load::<Cpu>(dir, &cpu);
        let f32_run = compute_fixture_tensors(&model, &io, &cpu).unwrap();
        let f64_run = compute_fixture_tensors(&model.cast(burn::tensor::DType::F64), &io, &cpu).unwrap();
        let floors = float32_floors(&f32_run, &f64_run);
        let computed = compute_fixture_tensors(&load::<B>(dir, device), &io, device).unwrap();
        assert_passed(dir, &compare_with_reference(computed, &io, Some(&floors)), &mut failures);
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[test]
fn parity_on_every_fixture_cpu() {
    let Some(dirs) = fixture_dirs() else { return };
    let device = Default::default();
    let mut failures = Vec::new();
    for dir in &dirs {
        let report = run_parity::<Cpu>(dir, &device).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(report.floors_measured);
        assert_passed(dir, &report, &mut failures);
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[cfg(feature = "test-wgpu")]
#[test]
fn parity_on_every_fixture_wgpu() {
    parity_on::<Autodiff<burn::backend::Wgpu>>(&Default::default());
}

#[cfg(feature = "test-cuda")]
#[test]
fn parity_on_every_fixture_cuda() {
    parity_on::<Autodiff<burn::backend::Cuda>>(&Default::default());
}

#[test]
fn parity_fails_for_a_subtly_wrong_model() {
    let Some(dirs) = fixture_dirs() else { return };
    let dir = &dirs[0];
    // RMSNorm eps x10: a change the float32 floor must not hide.
    let mut config = TrmConfig::from_file(&dir.join("config.json")).unwrap();
    config.rms_norm_eps *= 10.0;
    let device = Default::default();
    let model = config.init::<Cpu>(&device).load_checkpoint(&dir.join("checkpoint.pt")).unwrap();
    let io = read_tensors(&dir.join("io.safetensors")).unwrap();
    let report = trm_model::parity::run_parity_with(&model, &io, &device).unwrap();
    assert!(!report.passed(), "a model with the wrong eps passed parity");
    assert!(report.rows.iter().any(|r| r.name.ends_with(".y") && !r.ok));
}
