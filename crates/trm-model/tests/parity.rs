//! Parity against the official PyTorch implementation on every fixture folder in
//! `shared/fixtures/parity` (or `$TRM_PARITY_DIR`).

use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use trm_model::parity::run_parity;

fn fixture_root() -> Option<PathBuf> {
    let root = std::env::var_os("TRM_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity"));
    root.is_dir().then_some(root)
}

#[test]
fn parity_on_every_fixture_cpu() {
    let Some(root) = fixture_root() else {
        eprintln!("skipping parity: no fixtures at ../shared/fixtures/parity (set TRM_PARITY_DIR)");
        return;
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixture folders in {}", root.display());
    let device = Default::default();
    let mut failures = Vec::new();
    for dir in &dirs {
        let report =
            run_parity::<Autodiff<NdArray<f32>>>(dir, &device).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        eprintln!("{}: {} tensors, max rel err {:.3e}", dir.display(), report.rows.len(), report.max_rel_err());
        for row in report.rows.iter().filter(|r| !r.ok) {
            failures.push(format!(
                "{}: {} rel err {:.3e} (tol {:.0e}) {:?}",
                dir.display(),
                row.name,
                row.rel_err,
                row.tolerance,
                row.note
            ));
        }
        assert!(report.rows.iter().any(|r| r.name.starts_with("grad.")), "no gradients compared");
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[test]
fn parity_fails_for_a_subtly_wrong_model() {
    let Some(root) = fixture_root() else {
        eprintln!("skipping: no parity fixtures");
        return;
    };
    let dir = root.join("att_rope");
    if !dir.is_dir() {
        eprintln!("skipping: no att_rope fixture");
        return;
    }
    // RMSNorm eps 1e-5 -> 1e-4: a change the float32 floor must not hide.
    let mut config = trm_model::TrmConfig::from_file(&dir.join("config.json")).unwrap();
    config.rms_norm_eps = 1e-4;
    let device = Default::default();
    let model = config.init::<Autodiff<NdArray<f32>>>(&device).load_checkpoint(&dir.join("checkpoint.pt")).unwrap();
    let io = trm_model::checkpoint::read_tensors(&dir.join("io.safetensors")).unwrap();
    let report = trm_model::parity::run_parity_with(&model, &io, &device).unwrap();
    assert!(!report.passed(), "a model with the wrong eps passed parity");
    assert!(report.rows.iter().any(|r| r.name.ends_with(".y") && !r.ok));
}
