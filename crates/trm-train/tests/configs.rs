//! Every shipped config parses and passes validation.

#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = trm_train::TrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 9, "found {n} configs");
}

#[test]
fn shipped_ar_configs_are_valid_ar_trm_configs_with_a_ladder() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ar");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = trm_train::ar::ArRunConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.ladder().unwrap().len(), 4, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 3, "found {n} AR configs");
}
