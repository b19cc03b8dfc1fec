//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixtures folder of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// A fresh empty directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("trm-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The project's shared data (`$TRM_SHARED_DATA`, else `../../../shared/data` from this
/// crate), or `None` with a printed reason so tests can skip.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("TRM_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let p = base.join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found (set TRM_SHARED_DATA)", p.display());
        None
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_owned());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Assert that every file of `expected` exists in `actual` with identical bytes.
pub fn assert_same_files(expected: &Path, actual: &Path) {
    assert_same_files_except(expected, actual, &[]);
}

/// [`assert_same_files`] skipping the relative paths in `skip`.
pub fn assert_same_files_except(expected: &Path, actual: &Path, skip: &[&str]) {
    let want = files(expected);
    assert!(!want.is_empty());
    for f in want.into_iter().filter(|f| !skip.iter().any(|s| Path::new(s) == f)) {
        let a = std::fs::read(expected.join(&f)).unwrap();
        let b = std::fs::read(actual.join(&f)).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            let lo = at.saturating_sub(40);
            panic!(
                "{} differs at byte {at} (sizes {} vs {}):\nexpected ...{:?}\nactual   ...{:?}",
                f.display(),
                a.len(),
                b.len(),
                String::from_utf8_lossy(&a[lo..(at + 40).min(a.len())]),
                String::from_utf8_lossy(&b[lo..(at + 40).min(b.len())])
            );
        }
    }
}
