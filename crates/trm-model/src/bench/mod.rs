//! Benchmarks of the model on synthetic batches: one training supervision step, inference
//! at N_sup steps, a reference matrix multiply, analytic FLOP counts and peak memory.
//!
//! Used by `trm bench` and the criterion benches. Nothing here asserts on time.
//!
//! # FLOP count (multiply-add = 2 FLOPs; matrix products only)
//!
//! With batch B, full sequence S = P + L (puzzle prefix P included), width D, SwiGLU inner
//! width I = `swiglu_inner(D, expansion)`, token-mixer inner width I_t = `swiglu_inner(S,
//! expansion)`, vocabulary V and `layers` blocks, one network call costs per block
//!
//! - attention block: q, k, v, o projections 8·B·S·D², scores and weighted sum 4·B·S²·D;
//! - `mlp_t` block: token-mixing SwiGLU over the sequence axis 6·B·D·S·I_t;
//! - channel SwiGLU (both kinds): 6·B·S·D·I.
//!
//! The heads cost 2·B·L·D·V (lm head; the Q head is negligible). A training supervision step
//! makes T(n+1) forward calls and backpropagates through the last n+1 of them at twice their
//! forward cost (gradients for inputs and weights): (T+2)(n+1)·F_call + 3·F_heads. Inference
//! for N_sup steps costs N_sup·(T(n+1)·F_call + F_heads). Elementwise work (RMSNorm, SiLU,
//! RoPE, softmax, the optimizer) is not counted, so achieved GFLOP/s measures how close the
//! step gets to pure matrix-multiply speed.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::act::HostBatch;
use crate::config::{swiglu_inner, TrmConfig};
use crate::inference::{trm_inference, InferenceOptions};
use crate::loss::LossType;
use crate::model::Trm;
use crate::train_step::{supervision_step_gradients, GradientScope, LossOptions};

mod memory;
use memory::{mib, phase_start, DevicePeak};
pub use memory::{minor_page_faults, peak_rss_bytes, reset_peak_rss, rss_bytes, DeviceMemoryProbe};

/// FLOPs of one network call (all blocks) on a batch of `batch`.
pub fn net_call_flops(cfg: &TrmConfig, batch: usize) -> f64 {
    let (b, s, d) = (batch as f64, cfg.full_seq_len() as f64, cfg.hidden_size as f64);
    let inner = swiglu_inner(cfg.hidden_size, cfg.expansion) as f64;
    let mixer = if cfg.mlp_t {
        let inner_t = swiglu_inner(cfg.full_seq_len(), cfg.expansion) as f64;
        6.0 * b * d * s * inner_t
    } else {
        8.0 * b * s * d * d + 4.0 * b * s * s * d
    };
    cfg.layers as f64 * (mixer + 6.0 * b * s * d * inner)
}

/// FLOPs of the output heads on a batch of `batch`.
pub fn heads_flops(cfg: &TrmConfig, batch: usize) -> f64 {
    2.0 * batch as f64 * cfg.seq_len as f64 * cfg.hidden_size as f64 * cfg.vocab_size as f64
}

/// FLOPs of one training supervision step (forward, backward through the last cycle).
pub fn train_step_flops(cfg: &TrmConfig, batch: usize) -> f64 {
    let calls = ((cfg.t_cycles + 2) * (cfg.n_cycles + 1)) as f64;
    calls * net_call_flops(cfg, batch) + 3.0 * heads_flops(cfg, batch)
}

/// FLOPs of inference for `n_sup` supervision steps (no early halting).
pub fn inference_flops(cfg: &TrmConfig, batch: usize, n_sup: usize) -> f64 {
    let calls = (cfg.t_cycles * (cfg.n_cycles + 1)) as f64;
    n_sup as f64 * (calls * net_call_flops(cfg, batch) + heads_flops(cfg, batch))
}

/// Median of timings in seconds (0 for none).
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Timings of [`time_iters`].
#[derive(Debug, Clone)]
pub struct Timings {
    /// Seconds per timed call.
    pub seconds: Vec<f64>,
    /// Minor page faults per timed call (Linux).
    pub page_faults_per_iter: Option<f64>,
}

/// Times `iters` calls of `f` after `warmup` untimed ones, counting the page faults of the
/// timed ones.
pub fn time_iters(warmup: usize, iters: usize, f: impl FnMut()) -> Timings {
    time_iters_then(warmup, iters, f, || {})
}

/// [`time_iters`], calling `after` outside the timed span after each call of `f` (warm-up
/// ones too): the bench reads device memory there.
pub fn time_iters_then(warmup: usize, iters: usize, mut f: impl FnMut(), mut after: impl FnMut()) -> Timings {
    for _ in 0..warmup {
        f();
        after();
    }
    let mut faults = 0;
    let mut faults_known = true;
    let seconds: Vec<f64> = (0..iters)
        .map(|_| {
            let before = minor_page_faults();
            let t = Instant::now();
            f();
            let elapsed = t.elapsed().as_secs_f64();
            match (before, minor_page_faults()) {
                (Some(a), Some(b)) => faults += b.saturating_sub(a),
                _ => faults_known = false,
            }
            after();
            elapsed
        })
        .collect();
    let page_faults_per_iter = (faults_known && iters > 0).then(|| faults as f64 / iters as f64);
    Timings { seconds, page_faults_per_iter }
}

/// One benchmark result (one JSON line of `trm bench`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `train_step`, `inference`, `latency` or `matmul`.
    pub kind: String,
    /// Configuration name.
    pub config: String,
    /// Backend name.
    pub backend: String,
    /// On the CPU backend: the SIMD width the kernels' loops run at here
    /// ([`crate::kernels::cpu_simd_level`]), which moves every figure between CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simd: Option<String>,
    /// Batch size (rows for `matmul`).
    pub batch: usize,
    /// Width D.
    pub hidden: usize,
    /// Supervision steps (inference), else 1.
    pub n_sup: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Fastest iteration.
    pub min_s: f64,
    /// Training steps/s, puzzles/s or matmuls/s (1 / median, times batch for inference).
    pub per_s: f64,
    /// Analytic FLOPs per iteration, in GFLOP.
    pub gflop: f64,
    /// Achieved GFLOP/s at the median.
    pub gflops: f64,
    /// `gflops` over the matmul rate measured in the same run, when known.
    pub frac_of_matmul: Option<f64>,
    /// Peak RSS during this phase in MiB (Linux; process-wide on other backends).
    pub peak_rss_mib: Option<f64>,
    /// RSS when the phase started in MiB (Linux): `peak_rss_mib` minus this is what the
    /// phase itself allocated, without the binary and its libraries.
    pub base_rss_mib: Option<f64>,
    /// Minor page faults per timed iteration (Linux, whole process). Thousands here mean
    /// the allocator hands freed buffers back to the kernel and faults them in again (see
    /// `trm_backend::keep_freed_memory`).
    pub page_faults_per_iter: Option<f64>,
    /// On a GPU backend: the most device memory its allocator held during the phase, in MiB
    /// (reserved bytes, read after the set-up and after every call; the pages it keeps for
    /// reuse included, as in PyTorch's `torch.cuda.max_memory_reserved()`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_peak_mib: Option<f64>,
    /// On a GPU backend: the allocator's reserved memory when the phase started, after
    /// freeing the pages earlier phases left, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_base_mib: Option<f64>,
    /// For a bound ([`bench_bound`]): seconds of the phase's matrix products at hot-loop speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products_s: Option<f64>,
    /// For a bound: seconds of the `exp`s its forward calls cannot avoid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp_s: Option<f64>,
    /// For a bound: its pieces, the products first and the exps last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bound_parts: Vec<BoundPart>,
}

/// One timed piece of a bound ([`bench_bound`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundPart {
    /// What was timed: a product's shape (ᵀ marks a transposed view), the attention's
    /// per-head products, or the exps of one forward call.
    pub what: String,
    /// Times the phase runs it.
    pub count: usize,
    /// Fastest seconds of one run in the hot loop.
    pub each_s: f64,
    /// Its FLOPs over `each_s`; none for the exps.
    pub gflops: Option<f64>,
}

impl BenchResult {
    #[allow(clippy::too_many_arguments)]
    fn new(
        kind: &str,
        config: &str,
        backend: &str,
        cfg: Option<&TrmConfig>,
        batch: usize,
        n_sup: usize,
        timings: &Timings,
        flop: f64,
        base_rss_mib: Option<f64>,
    ) -> Self {
        let samples = &timings.seconds;
        let med = median(samples);
        let per_item = if kind == "inference" { batch as f64 } else { 1.0 };
        Self {
            kind: kind.into(),
            config: config.into(),
            backend: backend.into(),
            simd: if backend == "cpu" { crate::kernels::cpu_simd_level().map(Into::into) } else { None },
            batch,
            hidden: cfg.map(|c| c.hidden_size).unwrap_or(0),
            n_sup,
            iters: samples.len(),
            median_s: med,
            min_s: samples.iter().copied().fold(f64::INFINITY, f64::min),
            per_s: if med > 0.0 { per_item / med } else { 0.0 },
            gflop: flop / 1e9,
            gflops: if med > 0.0 { flop / med / 1e9 } else { 0.0 },
            frac_of_matmul: None,
            peak_rss_mib: peak_rss_bytes().map(mib),
            base_rss_mib,
            page_faults_per_iter: timings.page_faults_per_iter,
            device_peak_mib: None,
            device_base_mib: None,
            products_s: None,
            exp_s: None,
            bound_parts: Vec::new(),
        }
    }
}

/// What to run: a named config, iteration counts.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Name printed with the results.
    pub name: String,
    /// The architecture.
    pub config: TrmConfig,
    /// Backend name printed with the results.
    pub backend: String,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Reads the device memory on a GPU backend (none on the CPU, whose memory is the RSS).
    pub device_memory: Option<DeviceMemoryProbe>,
}

fn sync<B: Backend>(device: &B::Device) {
    // A failed sync means a failed kernel; the next read would report it, so ignore it here.
    let _ = B::sync(device);
}

/// A synthetic batch: random tokens in 1..V (0 is padding) and random labels.
pub fn synthetic_batch<B: Backend>(
    cfg: &TrmConfig,
    batch: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 1, Int>) {
    let host = synthetic_host_batch(cfg, batch);
    (host.inputs_tensor(device), host.labels_tensor(device), host.puzzle_ids_tensor(device))
}

/// [`synthetic_batch`] on the host: random tokens in 1..V and labels, puzzle id 0.
pub fn synthetic_host_batch(cfg: &TrmConfig, batch: usize) -> HostBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = batch * cfg.seq_len;
    let v = cfg.vocab_size.max(2) as i32;
    let mut draw = || (0..n).map(|_| rng.gen_range(1..v)).collect::<Vec<i32>>();
    let inputs = draw();
    let labels = draw();
    HostBatch { inputs, labels, puzzle_identifiers: vec![0; batch], batch_size: batch, seq_len: cfg.seq_len }
}

/// Times `[n, k] x [k, m]` matrix products on the inner backend, through the GEMM the model's
/// linear maps use ([`crate::kernels::linear`]: the `gemm` crate on the CPU backend, Burn's
/// matmul elsewhere), so a step's share of this rate compares it with its own GEMM.
pub fn bench_matmul<B: Backend>(
    backend: &str,
    n: usize,
    k: usize,
    m: usize,
    spec: (usize, usize),
    device: &B::Device,
) -> BenchResult {
    let base_rss = phase_start();
    let a = Tensor::<B, 2>::random([n, k], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<B, 2>::random([k, m], Distribution::Normal(0.0, 1.0), device);
    sync::<B>(device);
    let timings = time_iters(spec.0, spec.1, || {
        let c = crate::kernels::linear(a.clone(), b.clone(), None);
        sync::<B>(device);
        drop(c);
    });
    let mut r = BenchResult::new(
        "matmul",
        &format!("[{n},{k}]x[{k},{m}]"),
        backend,
        None,
        n,
        1,
        &timings,
        2.0 * (n * k * m) as f64,
        base_rss,
    );
    r.hidden = k;
    r
}

/// Times one training supervision step as the trainer runs it
/// ([`crate::supervision_step_gradients`]: input embedding, T-1 no-grad cycles, one cycle
/// with autodiff, heads, the ACT loss, backward; on the CPU backend with the batch split
/// across the threads) and an AdamW step (burn's; the official trainer uses AdamATan2, which
/// costs the same elementwise work).
pub fn bench_train_step<B: AutodiffBackend>(spec: &BenchSpec, batch: usize, device: &B::Device) -> BenchResult {
    let base_rss = phase_start();
    let mut device_peak = DevicePeak::start::<B>(spec.device_memory.as_ref(), device);
    let cfg = &spec.config;
    let mut model: Trm<B> = cfg.init(device);
    let mut optim = AdamWConfig::new().with_beta_2(0.95).with_weight_decay(0.1).init::<B, Trm<B>>();
    let data = synthetic_host_batch(cfg, batch);
    let mut carry = Some(model.valid().initial_carry(batch));
    let options =
        LossOptions { loss_type: LossType::StablemaxCrossEntropy, scale: 1.0, scope: GradientScope::LastCycle };
    let step = || {
        let inner = model.valid();
        let g = supervision_step_gradients(&model, &inner, &data, carry.take().expect("carry"), None, options);
        model = optim.step(1e-4, model.clone(), g.params);
        carry = Some(g.carry);
        sync::<B>(device);
    };
    device_peak.sample();
    let timings = time_iters_then(spec.warmup, spec.iters, step, || device_peak.sample());
    let mut r = BenchResult::new(
        "train_step",
        &spec.name,
        &spec.backend,
        Some(cfg),
        batch,
        1,
        &timings,
        train_step_flops(cfg, batch),
        base_rss,
    );
    device_peak.record(&mut r);
    r
}

/// Times inference for `n_sup` supervision steps (no early halting) on a batch of `batch`.
/// `kind` is `inference` (reports puzzles/s) or `latency`.
pub fn bench_inference<B: Backend>(
    spec: &BenchSpec,
    kind: &str,
    batch: usize,
    n_sup: usize,
    device: &B::Device,
) -> BenchResult {
    let base_rss = phase_start();
    let mut device_peak = DevicePeak::start::<B>(spec.device_memory.as_ref(), device);
    let cfg = &spec.config;
    let model: Trm<B> = cfg.init(device);
    let (inputs, _, ids) = synthetic_batch::<B>(cfg, batch, device);
    let options = InferenceOptions { max_steps: n_sup, halt: false };
    device_peak.sample();
    let infer = || {
        let out = trm_inference(&model, inputs.clone(), ids.clone(), options);
        sync::<B>(device);
        std::hint::black_box(out);
    };
    let timings = time_iters_then(spec.warmup, spec.iters, infer, || device_peak.sample());
    let mut r = BenchResult::new(
        kind,
        &spec.name,
        &spec.backend,
        Some(cfg),
        batch,
        n_sup,
        &timings,
        inference_flops(cfg, batch, n_sup),
        base_rss,
    );
    device_peak.record(&mut r);
    r
}

/// The phase a bound is for: the same work as [`bench_train_step`] or [`bench_inference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundOf {
    /// One training supervision step.
    TrainStep,
    /// Inference for N_sup steps (batch throughput).
    Inference,
    /// Inference for N_sup steps at batch 1.
    Latency,
}

impl BoundOf {
    /// `kind` of the result: the bounded phase's kind with `_bound` appended.
    pub fn kind(self) -> &'static str {
        match self {
            BoundOf::TrainStep => "train_step_bound",
            BoundOf::Inference => "inference_bound",
            BoundOf::Latency => "latency_bound",
        }
    }
}

/// The least time the phase's arithmetic can take on this CPU (the fused CPU kernels only;
/// `None` without the `cpu-kernels` feature): each matrix product the FLOP formula counts,
/// timed alone in a hot loop through the kernels' GEMM on the current rayon pool, times how
/// often the phase runs it, plus the `exp` of every softmax score and SiLU element of its
/// forward calls. Everything else counts as free. `median_s` is the sum, `gflops` the
/// formula's FLOPs over it: no step of this arithmetic on this machine with this GEMM gets
/// above that rate, so a goal set above it is out of reach. Nothing is backend-generic here:
/// on a GPU backend the bound of the CPU would be meaningless, so callers skip it there.
pub fn bench_bound(spec: &BenchSpec, of: BoundOf, batch: usize, n_sup: usize) -> Option<BenchResult> {
    #[cfg(feature = "cpu-kernels")]
    {
        let cfg = &spec.config;
        let cycle_calls = cfg.t_cycles * (cfg.n_cycles + 1);
        let (calls, flop, n_sup) = match of {
            BoundOf::TrainStep => {
                let calls = crate::kernels::Calls {
                    forward: cycle_calls,
                    backward: cfg.n_cycles + 1,
                    heads_forward: 1,
                    heads_backward: 1,
                };
                (calls, train_step_flops(cfg, batch), 1)
            }
            BoundOf::Inference | BoundOf::Latency => {
                let calls = crate::kernels::Calls {
                    forward: n_sup * cycle_calls,
                    backward: 0,
                    heads_forward: n_sup,
                    heads_backward: 0,
                };
                (calls, inference_flops(cfg, batch, n_sup), n_sup)
            }
        };
        let (parts, fewest) = crate::kernels::time_bound(cfg, batch, calls);
        let total = |exps: bool| {
            parts.iter().filter(|p| p.gflops.is_none() == exps).map(|p| p.each_s * p.count as f64).sum::<f64>()
        };
        let (products_s, exp_s) = (total(false), total(true));
        let timings = Timings { seconds: vec![products_s + exp_s], page_faults_per_iter: None };
        let mut r =
            BenchResult::new(of.kind(), &spec.name, &spec.backend, Some(cfg), batch, n_sup, &timings, flop, None);
        if of == BoundOf::Inference {
            r.per_s = batch as f64 / r.median_s;
        }
        (r.iters, r.peak_rss_mib, r.products_s, r.exp_s) = (fewest, None, Some(products_s), Some(exp_s));
        r.bound_parts = parts;
        Some(r)
    }
    #[cfg(not(feature = "cpu-kernels"))]
    {
        let _ = (spec, of, batch, n_sup);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    #[test]
    fn flop_formula_matches_a_hand_count() {
        // Paper TRM-Att Sudoku: S = 97, D = 512, I = 1536, 2 blocks, T = 3, n = 6.
        let cfg = TrmConfig::sudoku_att();
        let (s, d, i) = (97.0, 512.0, 1536.0);
        let per_block = 8.0 * s * d * d + 4.0 * s * s * d + 6.0 * s * d * i;
        assert_eq!(net_call_flops(&cfg, 1), 2.0 * per_block);
        assert_eq!(train_step_flops(&cfg, 1), 35.0 * 2.0 * per_block + 3.0 * 2.0 * 81.0 * d * 11.0);
        let mlp = TrmConfig::sudoku_mlp();
        let it = swiglu_inner(97, 4.0) as f64;
        assert_eq!(net_call_flops(&mlp, 2), 2.0 * 2.0 * (6.0 * d * s * it + 6.0 * s * d * i));
    }

    #[test]
    fn median_and_rss() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
        }
    }

    #[test]
    fn page_faults_count_fresh_memory() {
        if !cfg!(target_os = "linux") {
            eprintln!("skipped: page fault counts are read from Linux's /proc");
            return;
        }
        // 64 MiB is above glibc's largest mmap threshold, so the block is always a fresh
        // mapping: 16384 faults of 4 KiB pages, or 32 of 2 MiB with transparent huge pages.
        let timings = time_iters(0, 1, || {
            std::hint::black_box(vec![1u8; 64 << 20]);
        });
        let faults = timings.page_faults_per_iter.expect("Linux reports minor faults");
        assert!(faults >= 16.0, "{faults} faults for a fresh 64 MiB block");
        assert_eq!(timings.seconds.len(), 1);
    }

    #[test]
    fn tiny_benches_run() {
        let mut cfg = TrmConfig::sudoku_att();
        cfg.hidden_size = 16;
        cfg.num_heads = 2;
        cfg.puzzle_emb_ndim = 16;
        cfg.t_cycles = 2;
        cfg.n_cycles = 1;
        let spec = BenchSpec {
            name: "tiny".into(),
            config: cfg,
            backend: "cpu".into(),
            warmup: 0,
            iters: 2,
            device_memory: None,
        };
        let device = Default::default();
        let t = bench_train_step::<Autodiff<NdArray<f32>>>(&spec, 2, &device);
        assert_eq!((t.iters, t.kind.as_str()), (2, "train_step"));
        assert!(t.gflop > 0.0 && t.median_s > 0.0);
        assert_eq!(t.page_faults_per_iter.is_some(), cfg!(target_os = "linux"));
        let i = bench_inference::<NdArray<f32>>(&spec, "inference", 2, 2, &device);
        assert!(i.per_s > 0.0);
        let m = bench_matmul::<NdArray<f32>>("cpu", 8, 8, 8, (0, 1), &device);
        assert_eq!(m.gflop, 2.0 * 512.0 / 1e9);
        let b = bench_bound(&spec, BoundOf::TrainStep, 2, 1).expect("the default build has the CPU kernels");
        assert_eq!((b.kind.as_str(), b.gflop), ("train_step_bound", t.gflop));
        assert_eq!(b.median_s, b.products_s.unwrap() + b.exp_s.unwrap());
        let parts_s: f64 = b.bound_parts.iter().map(|p| p.each_s * p.count as f64).sum();
        assert!((parts_s - b.median_s).abs() <= 1e-12 * parts_s);
        let line = serde_json::to_string(&b).unwrap();
        assert!(line.contains("\"products_s\"") && !serde_json::to_string(&t).unwrap().contains("products_s"));
    }
}
