//! AR-TRM decoding benchmarks (`trm bench --ar`): batch size 1, KV cache, one token.
//!
//! They test three claims of the design (docs/ar-trm.md):
//! 1. the compute of one refinement step is linear in the prefix length P (attention reads
//!    P + 1 cached K/V; everything else is per token);
//! 2. the compute of one token is linear in its refinement steps K (K · T(n+1) net calls);
//! 3. memory is bounded by the committed KV cache: refinement overwrites the scratch slot
//!    and never allocates per step, so memory does not grow with K.
//!
//! A cell (P, K) fills the caches with P committed tokens and then times
//! [`decode_position`] of one more token under `StepPolicy::Fixed(K)`. `decode_position`
//! writes only the scratch slot and never commits, so the same call can be repeated on the
//! same caches and the median taken. Cells are timed round-robin so that load from other
//! processes spreads over all of them. Weights are random (timing does not depend on them).
//! Linearity is checked by least-squares fits ([`fit_line`], with R²) over each sweep, not by
//! eye. Memory is the process RSS (Linux `VmRSS` / `VmHWM`, the peak reset before each timed
//! decode), so it is host memory only on GPU backends. Nothing here asserts on time.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use super::bench_fit::{ar_fits, fit_line, set_reference_ratios, ArFit, LineFit};
use super::{decode_position, ArTrm, ArTrmConfig, KvCache, StepPolicy};
use crate::bench::{median, peak_rss_bytes, reset_peak_rss, rss_bytes};
use crate::config::swiglu_inner;
use crate::error::ModelError;
use crate::layers::int_tensor;

const MIB: f64 = 1024.0 * 1024.0;

/// How large the caches are in a decoding cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheCapacity {
    /// One `max_len` for every cell (the largest prefix plus one), as a model with a fixed
    /// context length decodes: a short prefix sits in a long cache.
    Shared,
    /// `max_len` = P + 1 in each cell: isolates costs that scale with the allocated capacity
    /// rather than with the prefix (e.g. a cache write that copies the whole buffer).
    Tight,
}

impl std::fmt::Display for CacheCapacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CacheCapacity::Shared => "shared",
            CacheCapacity::Tight => "tight",
        })
    }
}

impl std::str::FromStr for CacheCapacity {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "shared" => Ok(CacheCapacity::Shared),
            "tight" => Ok(CacheCapacity::Tight),
            _ => Err(ModelError::Config(format!("cache capacity {s:?}: expected shared or tight"))),
        }
    }
}

/// What a decoding sweep runs.
#[derive(Debug, Clone)]
pub struct ArBenchSpec {
    /// The architecture; its `max_len` is replaced per [`CacheCapacity`].
    pub config: ArTrmConfig,
    /// Cache sizing.
    pub capacity: CacheCapacity,
    /// Untimed rounds first (one decode of every cell per round).
    pub warmup: usize,
    /// Timed rounds: decodes per cell (the median is reported).
    pub iters: usize,
}

/// One (P, K) cell: a JSON line of `trm bench --ar` (`kind` = `ar_decode`).
#[derive(Debug, Clone, Serialize)]
pub struct ArDecodeResult {
    /// Always `ar_decode`.
    pub kind: String,
    /// Cache sizing.
    pub capacity: CacheCapacity,
    /// Cache capacity (positions) of this cell.
    pub max_len: usize,
    /// Width D.
    pub hidden: usize,
    /// Blocks.
    pub layers: usize,
    /// Committed prefix length P.
    pub prefix: usize,
    /// Refinement steps K of the timed token.
    pub steps: usize,
    /// Network evaluations for the token: K · T(n+1).
    pub net_calls: usize,
    /// Timed decodes.
    pub iters: usize,
    /// Median milliseconds per token.
    pub ms_per_token: f64,
    /// Fastest decode, milliseconds.
    pub min_ms: f64,
    /// `ms_per_token` / K.
    pub ms_per_step: f64,
    /// `ms_per_token` / net calls, microseconds.
    pub us_per_net_call: f64,
    /// 1 / median latency.
    pub tokens_per_s: f64,
    /// Median latency over that of the reference cell (smallest P, smallest K) of the same
    /// capacity and run; set by [`set_reference_ratios`].
    pub rel_to_ref: Option<f64>,
    /// Analytic GFLOP per token ([`ar_token_flops`]).
    pub gflop_per_token: f64,
    /// Achieved GFLOP/s at the median.
    pub gflops: f64,
    /// Committed KV bytes over P, measured from the caches.
    pub kv_bytes_per_token: f64,
    /// What [`ArTrmConfig::kv_bytes_per_token`] predicts.
    pub kv_bytes_per_token_expected: usize,
    /// Committed KV bytes (all layers).
    pub kv_committed_bytes: usize,
    /// Allocated KV bytes (all layers; fixed by `max_len`).
    pub kv_allocated_bytes: usize,
    /// Highest peak RSS over the timed decodes, MiB (Linux; process-wide).
    pub peak_rss_mib: Option<f64>,
    /// The largest peak-RSS growth over one timed decode, KiB: what decoding this token
    /// needs beyond the model and the filled caches (0 once the allocator holds it).
    pub rss_growth_kib: Option<f64>,
}

/// Analytic FLOPs of decoding one token at prefix P with K steps (matrix products only,
/// multiply-add = 2): per block and net call, q/k/v/o projections 8·D², scores and weighted
/// sum over the P + 1 window 4·(P+1)·D, SwiGLU 6·D·I; then the heads once, 2·D·(V+1).
pub fn ar_token_flops(cfg: &ArTrmConfig, prefix: usize, steps: usize) -> f64 {
    let d = cfg.hidden_size as f64;
    let inner = swiglu_inner(cfg.hidden_size, cfg.expansion) as f64;
    let block = 8.0 * d * d + 4.0 * (prefix + 1) as f64 * d + 6.0 * d * inner;
    let calls = (steps * cfg.net_calls_per_step()) as f64;
    calls * cfg.layers as f64 * block + 2.0 * d * (cfg.vocab_size + 1) as f64
}

/// The (P, K) cells of the two default sweeps: every P at `fixed_k`, every K at `fixed_p`,
/// and the reference (smallest P, smallest K); sorted by P then K, without duplicates.
pub fn sweep_cells(prefixes: &[usize], steps: &[usize], fixed_k: usize, fixed_p: usize) -> Vec<(usize, usize)> {
    let mut cells: Vec<(usize, usize)> = prefixes.iter().map(|&p| (p, fixed_k)).collect();
    cells.extend(steps.iter().map(|&k| (fixed_p, k)));
    let min_p = cells.iter().map(|c| c.0).min();
    let min_k = cells.iter().map(|c| c.1).min();
    if let (Some(p), Some(k)) = (min_p, min_k) {
        cells.push((p, k));
    }
    cells.sort_unstable();
    cells.dedup();
    cells
}

fn sync<B: Backend>(device: &B::Device) {
    // A failed sync means a failed kernel; the next read reports it, so ignore it here.
    let _ = B::sync(device);
}

fn check(cfg: &ArTrmConfig, cells: &[(usize, usize)]) -> Result<(), ModelError> {
    cfg.validate()?;
    if let Some((p, k)) = cells.iter().find(|c| c.0 == 0 || c.1 == 0) {
        return Err(ModelError::Config(format!("bench cell P={p} K={k}: prefix and steps must be positive")));
    }
    Ok(())
}

/// Embeddings [1, len, D] of `len` random tokens (content does not matter for timing).
fn random_embeddings<B: Backend>(model: &ArTrm<B>, len: usize, seed: u64) -> Tensor<B, 3> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = model.config().vocab_size as i64;
    let ids: Vec<i64> = (0..len).map(|_| rng.gen_range(0..v)).collect();
    model.embed(int_tensor::<B, 2>(TensorData::new(ids, [1, len]), &model.device()))
}

/// Commits tokens from `prefix` [1, L, D] until the caches hold `len`. The committed memory
/// is the embedding itself (for `RefinedY` too): refining the prefix would only cost setup
/// time, and the cached values do not change the work of later tokens.
fn fill_to<B: Backend>(model: &ArTrm<B>, caches: &mut [KvCache<B>], prefix: &Tensor<B, 3>, len: usize) {
    while caches[0].len() < len {
        let x = prefix.clone().narrow(1, caches[0].len(), 1);
        model.commit(caches, x.clone(), x);
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / MIB
}

/// One prefix length's state: which model, its filled caches, and the token to decode.
struct Station<B: Backend> {
    model: usize,
    caches: Vec<KvCache<B>>,
    x: Tensor<B, 3>,
}

/// Times decoding one token at each (P, K) of `cells` on `B` at batch size 1.
///
/// The cells are timed round-robin (one decode of every cell per round, `warmup` untimed
/// rounds first), so a burst of load from other processes spreads over all cells instead of
/// bending one sweep. [`CacheCapacity::Shared`] uses one model of `max_len` = largest P + 1;
/// [`CacheCapacity::Tight`] one model of `max_len` P + 1 per prefix length. Each prefix length
/// has its own caches, filled once. [`set_reference_ratios`] is applied to the results.
pub fn bench_ar_decode<B: Backend>(
    spec: &ArBenchSpec,
    cells: &[(usize, usize)],
    device: &B::Device,
) -> Result<Vec<ArDecodeResult>, ModelError> {
    check(&spec.config, cells)?;
    let mut cells = cells.to_vec();
    cells.sort_unstable();
    cells.dedup();
    let mut prefixes: Vec<usize> = cells.iter().map(|c| c.0).collect();
    prefixes.dedup();
    let max_p = prefixes.last().copied().unwrap_or(0);
    let lens: Vec<usize> = match spec.capacity {
        CacheCapacity::Shared => vec![max_p + 1],
        CacheCapacity::Tight => prefixes.iter().map(|p| p + 1).collect(),
    };
    // Models and the random sequence whose first P tokens each station commits.
    let models: Vec<(ArTrm<B>, Tensor<B, 3>)> = lens
        .iter()
        .map(|&max_len| {
            let model = ArTrmConfig { max_len, ..spec.config.clone() }.init_seeded::<B>(device, 0);
            let seq = random_embeddings(&model, max_len, 1);
            (model, seq)
        })
        .collect();
    let mut stations: Vec<Station<B>> = prefixes
        .iter()
        .map(|&p| {
            let m = lens.iter().position(|&l| l > p).expect("a model holds every prefix");
            let (model, seq) = &models[m];
            let mut caches = model.new_caches(1);
            fill_to(model, &mut caches, seq, p);
            // The timed token: position P of the same random sequence.
            Station { model: m, caches, x: seq.clone().narrow(1, p, 1) }
        })
        .collect();
    sync::<B>(device);
    let mut samples: Vec<Samples> = cells.iter().map(|_| Samples::default()).collect();
    for round in 0..spec.warmup + spec.iters.max(1) {
        for (&(p, k), out) in cells.iter().zip(samples.iter_mut()) {
            let st = &mut stations[prefixes.binary_search(&p).expect("listed above")];
            let model = &models[st.model].0;
            reset_peak_rss();
            let rss0 = rss_bytes();
            let t = Instant::now();
            // `decode_position` writes only the scratch slot and never commits, so the
            // caches stay at P and every round decodes the same token.
            let (state, heads, _) = decode_position(model, &st.x, &mut st.caches, StepPolicy::Fixed(k));
            sync::<B>(device);
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box((state, heads));
            if round >= spec.warmup {
                let peak = peak_rss_bytes();
                out.secs.push(secs);
                out.peak = out.peak.max(peak);
                let growth = peak.zip(rss0).map(|(a, b)| (a as f64 - b as f64) / 1024.0);
                out.growth = match (out.growth, growth) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    let mut results: Vec<ArDecodeResult> = cells
        .iter()
        .zip(&samples)
        .map(|(&(p, k), s)| {
            let st = &stations[prefixes.binary_search(&p).expect("listed above")];
            summarize(models[st.model].0.config(), spec.capacity, &st.caches, k, s)
        })
        .collect();
    set_reference_ratios(&mut results);
    Ok(results)
}

/// Timing samples of one cell.
#[derive(Default)]
struct Samples {
    secs: Vec<f64>,
    /// Highest peak RSS over the timed decodes.
    peak: Option<u64>,
    /// Largest peak-over-start RSS growth of one decode, KiB.
    growth: Option<f64>,
}

fn summarize<B: Backend>(
    cfg: &ArTrmConfig,
    capacity: CacheCapacity,
    caches: &[KvCache<B>],
    steps: usize,
    s: &Samples,
) -> ArDecodeResult {
    let prefix = caches[0].len();
    let med = median(&s.secs);
    let ms = med * 1e3;
    let calls = steps * cfg.net_calls_per_step();
    let flops = ar_token_flops(cfg, prefix, steps);
    let committed: usize = caches.iter().map(KvCache::committed_bytes).sum();
    ArDecodeResult {
        kind: "ar_decode".into(),
        capacity,
        max_len: cfg.max_len,
        hidden: cfg.hidden_size,
        layers: cfg.layers,
        prefix,
        steps,
        net_calls: calls,
        iters: s.secs.len(),
        ms_per_token: ms,
        min_ms: s.secs.iter().copied().fold(f64::INFINITY, f64::min) * 1e3,
        ms_per_step: ms / steps as f64,
        us_per_net_call: ms * 1e3 / calls as f64,
        tokens_per_s: if med > 0.0 { 1.0 / med } else { 0.0 },
        rel_to_ref: None,
        gflop_per_token: flops / 1e9,
        gflops: if med > 0.0 { flops / med / 1e9 } else { 0.0 },
        kv_bytes_per_token: if prefix > 0 { committed as f64 / prefix as f64 } else { 0.0 },
        kv_bytes_per_token_expected: cfg.kv_bytes_per_token(),
        kv_committed_bytes: committed,
        kv_allocated_bytes: caches.iter().map(KvCache::allocated_bytes).sum(),
        peak_rss_mib: s.peak.map(mib),
        rss_growth_kib: s.growth,
    }
}

/// Generation of many tokens at fixed K: a JSON line of `trm bench --ar` (`kind` = `ar_memory`).
#[derive(Debug, Clone, Serialize)]
pub struct ArMemoryResult {
    /// Always `ar_memory`.
    pub kind: String,
    /// Tokens decoded and committed.
    pub tokens: usize,
    /// Refinement steps per token.
    pub steps: usize,
    /// Mean milliseconds per token over the run (the prefix grows from 0 to `tokens` - 1).
    pub ms_per_token: f64,
    /// KV bytes allocated (all layers; `max_len` = tokens).
    pub kv_allocated_bytes: usize,
    /// KV bytes committed at the end.
    pub kv_committed_bytes: usize,
    /// RSS before the run (model built, caches not yet), MiB.
    pub rss_before_mib: Option<f64>,
    /// Peak RSS during the run minus `rss_before`, KiB.
    pub peak_growth_kib: Option<f64>,
    /// RSS after the run (caches still alive) minus `rss_before`, KiB.
    pub rss_growth_kib: Option<f64>,
    /// Whether the peak could be reset before the run; if not, the peak is the process's.
    pub peak_reset: bool,
}

/// Decodes and commits `tokens` tokens at exactly `steps` refinement steps each (batch 1, a
/// fresh cache of `max_len` = tokens) and reports the RSS high-water mark against the KV
/// cache's size. Run it at several K in one process to see whether memory grows with K.
pub fn bench_ar_memory<B: Backend>(
    config: &ArTrmConfig,
    tokens: usize,
    steps: usize,
    device: &B::Device,
) -> Result<ArMemoryResult, ModelError> {
    check(config, &[(tokens, steps)])?;
    let cfg = ArTrmConfig { max_len: tokens, ..config.clone() };
    let model = cfg.init_seeded::<B>(device, 0);
    let xs = random_embeddings(&model, tokens, 2);
    sync::<B>(device);
    let peak_reset = reset_peak_rss();
    let rss0 = rss_bytes();
    let start = std::time::Instant::now();
    let mut caches = model.new_caches(1);
    for t in 0..tokens {
        let x = xs.clone().narrow(1, t, 1);
        let (state, _, _) = decode_position(&model, &x, &mut caches, StepPolicy::Fixed(steps));
        model.commit(&mut caches, x, state.y);
    }
    sync::<B>(device);
    let elapsed = start.elapsed().as_secs_f64();
    let (peak, rss1) = (peak_rss_bytes(), rss_bytes());
    let growth = |b: Option<u64>| b.zip(rss0).map(|(b, r)| (b as f64 - r as f64) / 1024.0);
    Ok(ArMemoryResult {
        kind: "ar_memory".into(),
        tokens,
        steps,
        ms_per_token: elapsed * 1e3 / tokens as f64,
        kv_allocated_bytes: caches.iter().map(KvCache::allocated_bytes).sum(),
        kv_committed_bytes: caches.iter().map(KvCache::committed_bytes).sum(),
        rss_before_mib: rss0.map(mib),
        peak_growth_kib: growth(peak),
        rss_growth_kib: growth(rss1),
        peak_reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn tiny() -> ArTrmConfig {
        ArTrmConfig {
            hidden_size: 8,
            num_heads: 2,
            layers: 3,
            t_cycles: 1,
            n_cycles: 1,
            k_max: 2,
            vocab_size: 5,
            ..ArTrmConfig::default()
        }
    }

    #[test]
    fn sweep_cells_adds_the_reference_and_dedups() {
        let cells = sweep_cells(&[16, 64], &[1, 4], 4, 64);
        assert_eq!(cells, vec![(16, 1), (16, 4), (64, 1), (64, 4)]);
    }

    #[test]
    fn flops_are_affine_in_prefix_and_steps() {
        let cfg = ArTrmConfig::default();
        let f = |p, k| ar_token_flops(&cfg, p, k);
        // Attention adds 4·D per prefix token per block and net call.
        let per_p = (f(100, 2) - f(99, 2)) / (2 * cfg.net_calls_per_step() * cfg.layers) as f64;
        assert!((per_p - 4.0 * 128.0).abs() < 1e-6);
        let heads = 2.0 * 128.0 * 17.0;
        assert!(((f(64, 4) - heads) - 4.0 * (f(64, 1) - heads)).abs() < 1e-3);
    }

    #[test]
    fn committed_kv_bytes_per_token_match_the_formula() {
        let cfg = tiny();
        let spec = ArBenchSpec { config: cfg.clone(), capacity: CacheCapacity::Tight, warmup: 0, iters: 1 };
        let r = bench_ar_decode::<B>(&spec, &[(5, 1)], &Default::default()).unwrap();
        assert_eq!(cfg.kv_bytes_per_token(), 2 * 3 * 8 * 4);
        assert_eq!(r[0].kv_committed_bytes, 5 * 2 * 3 * 8 * 4);
        assert_eq!(r[0].kv_bytes_per_token, (2 * 3 * 8 * 4) as f64);
        assert_eq!(r[0].kv_allocated_bytes, 6 * 2 * 3 * 8 * 4, "tight: P + 1 slots");
    }

    #[test]
    fn a_tiny_sweep_returns_every_cell_with_positive_latencies_and_fits() {
        let device = Default::default();
        let cells = sweep_cells(&[2, 4, 8], &[1, 2, 3], 2, 4);
        for capacity in [CacheCapacity::Shared, CacheCapacity::Tight] {
            let spec = ArBenchSpec { config: tiny(), capacity, warmup: 1, iters: 2 };
            let rs = bench_ar_decode::<B>(&spec, &cells, &device).unwrap();
            assert_eq!(rs.iter().map(|r| (r.prefix, r.steps)).collect::<Vec<_>>(), cells);
            for r in &rs {
                assert!(r.ms_per_token.is_finite() && r.ms_per_token > 0.0 && r.tokens_per_s > 0.0);
                assert_eq!(r.net_calls, r.steps * 2);
                assert_eq!(r.kv_committed_bytes, r.prefix * tiny().kv_bytes_per_token());
                let want = if capacity == CacheCapacity::Shared { 9 } else { r.prefix + 1 };
                assert_eq!(r.max_len, want);
                assert!(r.rel_to_ref.unwrap() > 0.0);
            }
            assert_eq!(rs[0].rel_to_ref, Some(1.0), "the reference is the first cell");
            let fits = ar_fits(&rs);
            // The reference cell (2, 1) adds a K = 1 line through (4, 1): two points, no fit.
            assert_eq!(fits.len(), 2, "{fits:?}");
            let prefix = fits.iter().find(|f| f.sweep == "prefix" && f.fixed == 2).unwrap();
            assert_eq!((prefix.fixed, prefix.xs.clone()), (2, vec![2, 4, 8]));
            let steps = fits.iter().find(|f| f.sweep == "steps" && f.fixed == 4).unwrap();
            assert_eq!((steps.fixed, steps.xs.clone()), (4, vec![1, 2, 3]));
            assert!(fits.iter().all(|f| f.fit.r2.is_finite() && f.capacity == capacity));
        }
    }

    #[test]
    fn memory_run_commits_every_token_and_bad_cells_are_errors() {
        let device = Default::default();
        let m = bench_ar_memory::<B>(&tiny(), 6, 2, &device).unwrap();
        assert_eq!(m.kv_committed_bytes, 6 * tiny().kv_bytes_per_token());
        assert_eq!(m.kv_allocated_bytes, m.kv_committed_bytes, "max_len = tokens");
        assert!(m.ms_per_token > 0.0);
        let spec = ArBenchSpec { config: tiny(), capacity: CacheCapacity::Shared, warmup: 0, iters: 1 };
        assert!(bench_ar_decode::<B>(&spec, &[(4, 0)], &device).is_err());
        assert!(bench_ar_decode::<B>(&spec, &[(0, 1)], &device).is_err());
        let bad = ArTrmConfig { num_heads: 3, ..tiny() };
        assert!(bench_ar_memory::<B>(&bad, 4, 1, &device).is_err());
    }
}
