//! Tests of `trm bench`'s argument checks and phases.
use super::*;

#[test]
fn ar_config_from_a_train_ar_run_config_and_capacities_round_trip() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ar/addition.toml");
    let cfg = load_ar_config(Some(path.to_str().unwrap()), None).unwrap();
    assert_eq!((cfg.hidden_size, cfg.n_cycles, cfg.k_max), (64, 1, 3));
    assert_eq!(cfg.kv_source, trm_model::ar::KvSource::Embedding);
    assert_eq!(load_ar_config(Some(path.to_str().unwrap()), Some(32)).unwrap().hidden_size, 32);
    assert_eq!(load_ar_config(None, None).unwrap(), ArTrmConfig::default());
    for c in [CacheCapacity::Shared, CacheCapacity::Tight] {
        assert_eq!(c.to_string().parse::<CacheCapacity>().unwrap(), c);
    }
    assert!("wide".parse::<CacheCapacity>().is_err());
}

#[test]
fn bench_runs_a_tiny_config_with_its_bounds() {
    // The whole `trm bench` path on a config file: the bound rows are built for the
    // phases asked for, and a bad --only entry or config is an error, not a panic.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    let dir = std::env::temp_dir().join(format!("trm-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.toml");
    let mut cfg = TrmConfig::sudoku_att();
    (cfg.hidden_size, cfg.num_heads, cfg.puzzle_emb_ndim, cfg.t_cycles, cfg.n_cycles) = (16, 2, 16, 2, 1);
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let args = |only: &str| {
        let argv = ["bench", "--config", path.to_str().unwrap(), "--batch", "2", "--steps", "1", "--warmup", "0"];
        <Cli as clap::Parser>::parse_from(argv.into_iter().chain(["--only", only, "--latency-n-sup", "2"])).bench
    };
    let cases: [(&str, &[&str]); 3] = [
        ("train,bound", &["train_step", "train_step_bound"]),
        ("bound", &["train_step_bound", "inference_bound", "latency_bound"]),
        ("matmul,latency,bound", &["matmul", "latency", "latency_bound"]),
    ];
    for (only, kinds) in cases {
        let results = run_model(args(only), BackendKind::Cpu, 0).unwrap_or_else(|e| panic!("--only {only}: {e:#}"));
        assert_eq!(results.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), kinds, "--only {only}");
        let mut bounds = results.iter().filter(|r| r.kind.ends_with("_bound"));
        assert!(bounds.clone().all(|r| !r.bound_parts.is_empty() && r.median_s > 0.0));
        // With the reference in the same run, a bound's share is against its fastest call.
        if let (Some(mm), Some(b)) = (results.iter().find(|r| r.kind == "matmul"), bounds.next_back()) {
            let want = b.gflops / (mm.gflop / mm.min_s);
            assert!((b.frac_of_matmul.unwrap() - want).abs() < 1e-9 * want);
        }
    }
    // Arguments that would run nothing or panic inside Burn are errors that say so.
    for (only, extra, says) in [
        ("bogus", None, "unknown --only entry `bogus`"),
        ("train,,", None, ""),
        ("infer", Some(["--batch", "0"]), "--batch must be at least 1"),
        ("infer", Some(["--n-sup", "0"]), "--n-sup must be at least 1"),
        ("infer", Some(["--batch", "100000000000"]), "--batch 100000000000 is more than"),
    ] {
        let mut a = args(only);
        if let Some([flag, value]) = extra {
            let argv = ["bench", "--only", only, flag, value];
            a = <Cli as clap::Parser>::parse_from(argv).bench;
        }
        match check_args(&a) {
            Err(e) => assert!(!says.is_empty() && e.to_string().contains(says), "--only {only} {extra:?}: {e}"),
            Ok(()) => assert!(says.is_empty(), "--only {only} {extra:?} accepted"),
        }
    }
    assert!(run(args("bogus"), BackendKind::Cpu, 0).is_err());
    std::fs::write(&path, "hidden_size = 'wide'\n").unwrap();
    assert!(run(args("bound"), BackendKind::Cpu, 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ar_lengths_that_would_not_finish_are_refused() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    let parse = |flag: &str, value: &str| <Cli as clap::Parser>::parse_from(["bench", "--ar", flag, value]).bench;
    // A prefix of 10^8 tokens decoded for hours.
    let err = check_ar_args(&parse("--ar-prefixes", "100000000").ar_args).unwrap_err().to_string();
    assert!(err.contains("--ar-prefixes: 100000000 is more than"), "{err}");
    let err = check_ar_args(&parse("--ar-steps", "100000000").ar_args).unwrap_err().to_string();
    assert!(err.contains("--ar-steps: 100000000 is more than"), "{err}");
    assert!(check_ar_args(&parse("--ar-prefixes", "16").ar_args).is_ok());
}

#[test]
fn a_training_config_takes_its_sizes_from_its_built_dataset() {
    let dir = std::env::temp_dir().join(format!("trm-bench-sizes-{}", std::process::id()));
    let data = dir.join("maze");
    std::fs::create_dir_all(data.join("train")).unwrap();
    let path = dir.join("train.toml");
    // A model config without the dataset's sizes.
    let mut arch: toml::Table = toml::Table::try_from(TrmConfig::sudoku_att()).unwrap();
    for k in DATASET_SIZES {
        arch.remove(k);
    }
    let write = |extra_arch: &str, data_dir: &str| {
        let text = format!("name = 'm'\n[data]\ndir = {data_dir}\n[arch]\n{arch}{extra_arch}");
        std::fs::write(&path, text).unwrap();
    };
    let load = || load_config(path.to_str().unwrap(), None);
    let quoted = format!("'{}'", data.display());
    // Not built yet: Sudoku's sizes.
    write("", &quoted);
    let cfg = load().unwrap();
    assert_eq!((cfg.vocab_size, cfg.seq_len, cfg.num_puzzle_identifiers), (11, 81, 1));
    // Built: the dataset's sizes, except where [arch] sets one.
    let meta = trm_data::DatasetMetadata {
        pad_id: 0,
        ignore_label_id: Some(0),
        blank_identifier_id: 0,
        vocab_size: 6,
        seq_len: 900,
        num_puzzle_identifiers: 3,
        total_groups: 1,
        mean_puzzle_examples: 1.0,
        total_puzzles: Some(1),
        sets: vec!["all".into()],
    };
    meta.save(&data.join("train").join("dataset.json")).unwrap();
    let cfg = load().unwrap();
    assert_eq!((cfg.vocab_size, cfg.seq_len, cfg.num_puzzle_identifiers), (6, 900, 3));
    write("seq_len = 100\n", &quoted);
    assert_eq!((load().unwrap().vocab_size, load().unwrap().seq_len), (6, 100));
    // A broken dataset.json or data.dir is an error that says where, not Sudoku's sizes.
    std::fs::write(data.join("train").join("dataset.json"), "{\"vocab_size\": 6,").unwrap();
    write("", &quoted);
    let err = format!("{:#}", load().unwrap_err());
    assert!(err.contains("reading its dataset's sizes") && err.contains("dataset.json"), "{err}");
    write("", "3");
    assert!(load().unwrap_err().to_string().contains("data.dir is not a string"));
    // Every size set in [arch]: the (still broken) dataset.json is not read at all.
    write("vocab_size = 12\nseq_len = 30\nnum_puzzle_identifiers = 1\n", &quoted);
    assert_eq!(load().unwrap().seq_len, 30);
    std::fs::remove_dir_all(&dir).unwrap();
}
