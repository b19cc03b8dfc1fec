//! Fused CPU kernels behind the generic model code.
//!
//! The model is generic over Burn's `Backend`; these functions are too. On burn-ndarray in
//! float32 (`NdArray<f32>` and `Autodiff<NdArray<f32>>`, the CPU backends of `trm-backend`)
//! they run a fused kernel with its own backward; on every other backend, dtype or
//! autodiff checkpointing strategy they run the composition of Burn ops they replace
//! (`*_reference`), which is also what the tests compare the kernels against. The choice is
//! made by `TypeId`, so no trait beyond `Backend` is asked of callers. Build without the
//! `cpu-kernels` feature to always take the reference path.

#[cfg(feature = "cpu-kernels")]
mod attention_cpu;
#[cfg(feature = "cpu-kernels")]
mod batch_split_cpu;
#[cfg(feature = "cpu-kernels")]
mod bound_cpu;
#[cfg(feature = "cpu-kernels")]
mod buffers;
#[cfg(feature = "cpu-kernels")]
mod cached_attention_cpu;
#[cfg(feature = "cpu-kernels")]
mod fast_math;
#[cfg(feature = "cpu-kernels")]
mod gather_cpu;
#[cfg(feature = "cpu-kernels")]
mod gemm_cpu;
#[cfg(feature = "cpu-kernels")]
mod linear_cpu;
#[cfg(feature = "cpu-kernels")]
mod ndarray_glue;
#[cfg(feature = "cpu-kernels")]
mod packed_cpu;
#[cfg(feature = "cpu-kernels")]
mod pool;
#[cfg(feature = "cpu-kernels")]
mod rms_norm_cpu;
#[cfg(feature = "cpu-kernels")]
mod split_train_cpu;
#[cfg(feature = "cpu-kernels")]
mod swiglu_cpu;

#[cfg(feature = "cpu-kernels")]
pub(crate) use batch_split_cpu::deep_recursion as split_deep_recursion;
#[cfg(feature = "cpu-kernels")]
pub(crate) use bound_cpu::{time_bound, Calls};
#[cfg(feature = "cpu-kernels")]
pub(crate) use split_train_cpu::step_gradients as split_step_gradients;

/// The SIMD width the CPU kernels' elementwise loops run at on this machine, picked at run
/// time (`AVX-512`, `AVX2+FMA` or `baseline`); `None` without the `cpu-kernels` feature.
pub fn cpu_simd_level() -> Option<&'static str> {
    #[cfg(feature = "cpu-kernels")]
    return Some(fast_math::simd_level());
    #[cfg(not(feature = "cpu-kernels"))]
    None
}
use burn::tensor::backend::Backend;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

use crate::attention::Rope;
use crate::layers::fast_silu;

/// Runs `f`, an inference on `model` whose products have `rows` rows (batch × positions),
/// with the network's weights packed once for the CPU kernels' few-row products instead
/// of once per product (`packed_cpu`: at most 256 rows, k ≤ 512, FMA; the same bits). On
/// other backends, or with more rows, it is `f()`.
pub fn with_packed_weights<B: Backend, R>(model: &crate::model::Trm<B>, rows: usize, f: impl FnOnce() -> R) -> R {
    #[cfg(not(feature = "cpu-kernels"))]
    let _ = (model, rows);
    #[cfg(feature = "cpu-kernels")]
    if rows <= packed_cpu::MAX_ROWS {
        if let Some(weights) = ndarray_glue::network_weights(model) {
            let slices: Vec<_> = weights.iter().filter_map(ndarray_glue::weight_in_place).collect();
            return packed_cpu::with_packed(&slices, f);
        }
    }
    f()
}

/// Non-causal softmax attention with optional RoPE on q and k. `q`, `k`, `v` and the result
/// are [B, S, heads·head_dim], as the projections produce them (no head reshapes or
/// transposes on the fused path).
pub fn rope_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    num_heads: usize,
    rope: Option<&Rope<B>>,
) -> Tensor<B, 3> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::rope_attention(&q, &k, &v, num_heads, rope) {
        return out;
    }
    rope_attention_reference(q, k, v, num_heads, rope)
}

/// [`rope_attention`] as a composition of Burn ops: split heads to [B, heads, S, head_dim],
/// [`Rope::apply`], Burn's `attention`, heads merged back.
pub fn rope_attention_reference<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    num_heads: usize,
    rope: Option<&Rope<B>>,
) -> Tensor<B, 3> {
    let [b, s, width] = q.dims();
    let heads = |x: Tensor<B, 3>| x.reshape([b, s, num_heads, width / num_heads]).swap_dims(1, 2);
    let (mut q, mut k, v) = (heads(q), heads(k), heads(v));
    if let Some(rope) = rope {
        q = rope.apply(q);
        k = rope.apply(k);
    }
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
    burn::tensor::module::attention(q, k, v, None, None, options).swap_dims(1, 2).reshape([b, s, width])
}

/// Softmax attention of queries `q` [B, heads, Sq, hd] over the first `window` positions of
/// keys and values `k`, `v` [B, heads, capacity, hd], with no mask and scale 1/sqrt(hd):
/// AR-TRM decoding, where the new position attends to the whole cache window. Fused
/// (forward only) on `NdArray<f32>`, reading the window in place from the full buffers; the
/// reference composition elsewhere, including under autodiff.
pub fn cached_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, window: usize) -> Tensor<B, 4> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::cached_attention(&q, &k, &v, window) {
        return out;
    }
    cached_attention_reference(q, k, v, window)
}

/// [`cached_attention`] as Burn ops: the window narrowed out, then softmax(q kᵀ · scale) v.
pub fn cached_attention_reference<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    window: usize,
) -> Tensor<B, 4> {
    let (k, v) = (k.narrow(2, 0, window), v.narrow(2, 0, window));
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    burn::tensor::activation::softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3).matmul(v)
}

/// The linear maps `x·w_i` (no biases) of one input `x` [B, S, D]: inside an inference
/// scope with packed weights on the CPU backend ([`with_packed_weights`]) in one parallel
/// section, the same bits as separate [`linear`] calls; elsewhere [`linear`] each.
pub fn linear_many<B: Backend, const N: usize>(x: Tensor<B, 3>, ws: [Tensor<B, 2>; N]) -> [Tensor<B, 3>; N] {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::packed_linears(&x, ws.each_ref()) {
        return out;
    }
    ws.map(|w| linear(x.clone(), w, None))
}

/// The linear map `x·w (+ b)` over the last dimension of `x`; `w` is [d_in, d_out].
pub fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::linear(&x, &w, b.as_ref()) {
        return out;
    }
    burn::tensor::module::linear(x, w, b)
}

/// `x` laid out in row-major order; values and gradients are those of `x`. On the CPU
/// backend a strided view (as `swap_dims` makes) is copied here once, so the kernels after
/// it read contiguous data instead of each gathering the view again (the mlp_t mixer's
/// gate and up projections, the residual add, and the saved input of each backward). On
/// other backends, and when `x` already is contiguous, it is `x` itself.
pub fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::contiguous(&x) {
        return out;
    }
    x
}

/// Parameter-free RMSNorm over the last dimension: x / sqrt(mean(x²) + eps).
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::rms_norm(&x, None, eps) {
        return out;
    }
    rms_norm_reference(x, eps)
}

/// `rms_norm(x + residual, eps)`, the post-norm residual step. On the CPU backend the sum
/// is formed inside the norm's pass (no separate add, same bits) and both inputs get the
/// norm's input gradient.
pub fn add_rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, residual: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::rms_norm(&x, Some(&residual), eps) {
        return out;
    }
    // Other backends, or shapes that broadcast.
    rms_norm(x + residual, eps)
}

/// [`rms_norm`] as Burn ops.
pub fn rms_norm_reference<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let inv = x.clone().powi_scalar(2).mean_dim(D - 1).add_scalar(eps).sqrt().recip();
    x * inv
}

/// The channel half of a post-norm block, `add_rms_norm(h, down(silu_mul(h·W_gate,
/// h·W_up)))`, for SwiGLU without biases. On the CPU backend without autodiff (inference,
/// the no-grad cycles) one kernel runs it with one split of the rows across threads instead
/// of a hand-off per piece; elsewhere it is that composition of the kernels above.
pub fn swiglu_add_rms_norm<B: Backend, const D: usize>(
    h: Tensor<B, D>,
    [gate, up, down]: [Tensor<B, 2>; 3],
    eps: f64,
) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::swiglu_add_rms_norm(&h, [&gate, &up, &down], eps) {
        return out;
    }
    let a = silu_mul(linear(h.clone(), gate, None), linear(h.clone(), up, None));
    add_rms_norm(h, linear(a, down, None), eps)
}

/// The SwiGLU activation `silu(g)·u` (elementwise, any shape).
pub fn silu_mul<B: Backend, const D: usize>(g: Tensor<B, D>, u: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cpu-kernels")]
    if let Some(out) = ndarray_glue::silu_mul(&g, &u) {
        return out;
    }
    silu_mul_reference(g, u)
}

/// [`silu_mul`] as Burn ops ([`fast_silu`] then a product).
pub fn silu_mul_reference<B: Backend, const D: usize>(g: Tensor<B, D>, u: Tensor<B, D>) -> Tensor<B, D> {
    fast_silu(g) * u
}

#[cfg(all(test, feature = "cpu-kernels"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Distribution, TensorData};

    type Nd = NdArray<f32>;
    type Ad = Autodiff<Nd>;

    /// Deterministic values in [-1, 1).
    fn deterministic<Bk: Backend, const D: usize>(shape: [usize; D], seed: u32, device: &Bk::Device) -> Tensor<Bk, D> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    fn max_rel(a: Vec<f32>, b: Vec<f32>) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
    }

    fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    /// Gradients of Σ weights·f(inputs) with respect to each input, on `Ad`.
    fn grads<const D: usize, const N: usize>(
        inputs: [Tensor<Ad, D>; N],
        f: impl Fn(&[Tensor<Ad, D>; N]) -> Tensor<Ad, 3>,
        weights: &Tensor<Ad, 3>,
    ) -> [Vec<f32>; N] {
        let inputs = inputs.map(|t| t.require_grad());
        let g = (f(&inputs) * weights.clone()).sum().backward();
        inputs.map(|t| values(t.grad(&g).expect("tracked input")))
    }

    fn assert_all_close<const N: usize>(fused: [Vec<f32>; N], reference: [Vec<f32>; N], tol: f32) {
        for (i, (f, r)) in fused.into_iter().zip(reference).enumerate() {
            let err = max_rel(f, r);
            assert!(err < tol, "input {i}: max relative difference {err}");
        }
    }

    #[test]
    fn the_loops_run_at_the_widest_simd_the_cpu_reports() {
        // Checked against the kernel's flag list, not pulp's detection: a build of pulp
        // without its `x86-v3` feature ran every loop at the baseline on AVX2 CPUs.
        let want = if !cfg!(target_arch = "x86_64") {
            "baseline"
        } else {
            let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
                eprintln!("skipped: no /proc/cpuinfo to read the CPU's flags from");
                return;
            };
            let line = info.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
            let flags: Vec<&str> = line.split(':').nth(1).unwrap_or_default().split_whitespace().collect();
            let has = |names: &[&str]| names.iter().all(|n| flags.contains(n));
            if has(&["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma"]) {
                "AVX-512"
            } else if has(&["avx2", "fma", "bmi1", "bmi2"]) {
                "AVX2+FMA"
            } else {
                "baseline"
            }
        };
        assert_eq!(cpu_simd_level(), Some(want));
    }

    #[test]
    fn fused_path_is_taken_only_on_float32_ndarray() {
        assert!(ndarray_glue::supported::<Nd>());
        assert!(ndarray_glue::supported::<Ad>());
        assert!(!ndarray_glue::supported::<NdArray<f64>>());
        assert!(!ndarray_glue::supported::<
            Autodiff<Nd, burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing>,
        >());
    }

    #[test]
    fn contiguous_copies_strided_views_and_passes_gradients_through() {
        let device = Default::default();
        let x = deterministic::<Ad, 3>([2, 5, 3], 4, &device).require_grad();
        let swapped = x.clone().swap_dims(1, 2);
        let copied = contiguous(swapped.clone());
        let is_row_major = |t: &Tensor<Ad, 3>| {
            let inner = t.clone().into_primitive().tensor().primitive;
            let burn_ndarray::NdArrayTensor::F32(storage) = inner else { panic!("float32") };
            storage.view().is_standard_layout()
        };
        assert!(!is_row_major(&swapped) && is_row_major(&copied));
        assert_eq!(values(copied.clone()), values(swapped));
        // d/dx Σ w·contiguous(xᵀ) = wᵀ, the same as without the copy.
        let w = deterministic::<Ad, 3>([2, 3, 5], 8, &device);
        let g = (copied * w.clone()).sum().backward();
        assert_eq!(values(x.grad(&g).unwrap()), values(w.inner().swap_dims(1, 2)));
        // A contiguous input comes back as it is, and the inner backend copies too.
        let plain = deterministic::<Nd, 3>([2, 5, 3], 1, &device);
        assert_eq!(values(contiguous(plain.clone())), values(plain.clone()));
        assert_eq!(values(contiguous(plain.clone().swap_dims(0, 2))), values(plain.swap_dims(0, 2)));
    }

    #[test]
    fn fused_cached_attention_matches_the_burn_composition_on_cache_windows() {
        let device = Default::default();
        // Caches of capacity 12 read through a window of the first 9 positions, with one
        // query (decoding) and with four.
        let (k_cache, v_cache) =
            (deterministic::<Nd, 4>([2, 3, 12, 8], 5, &device), deterministic::<Nd, 4>([2, 3, 12, 8], 9, &device));
        for sq in [1, 4] {
            let q = deterministic::<Nd, 4>([2, 3, sq, 8], 2, &device);
            let fused = ndarray_glue::cached_attention(&q, &k_cache, &v_cache, 9).expect("fused on ndarray");
            assert_eq!(fused.dims(), [2, 3, sq, 8]);
            let reference = cached_attention_reference(q, k_cache.clone(), v_cache.clone(), 9);
            let err = max_rel(values(fused), values(reference));
            assert!(err < 1e-5, "max relative difference {err}");
        }
        // A window past the capacity is not the kernel's to read.
        let q = deterministic::<Nd, 4>([2, 3, 1, 8], 2, &device);
        assert!(ndarray_glue::cached_attention(&q, &k_cache, &v_cache, 13).is_none());
        // Forward only: under autodiff the reference runs (and records its graph).
        let qa = deterministic::<Ad, 4>([1, 2, 1, 4], 1, &device);
        let ka = deterministic::<Ad, 4>([1, 2, 5, 4], 3, &device);
        assert!(ndarray_glue::cached_attention(&qa, &ka, &ka, 3).is_none());
        assert_eq!(cached_attention(qa, ka.clone(), ka, 3).dims(), [1, 2, 1, 4]);
    }

    #[test]
    fn fused_attention_matches_the_burn_composition() {
        let device = Default::default();
        let (shape, heads) = ([3, 11, 32], 4);
        let rope = Rope::<Nd>::new(8, 16, 10000.0, &device);
        for rope in [None, Some(&rope)] {
            let (q, k, v) = (
                deterministic::<Nd, 3>(shape, 1, &device),
                deterministic(shape, 7, &device),
                deterministic(shape, 3, &device),
            );
            let fused = ndarray_glue::rope_attention(&q, &k, &v, heads, rope).expect("fused on ndarray");
            assert_eq!(fused.dims(), shape);
            let err = max_rel(values(fused), values(rope_attention_reference(q, k, v, heads, rope)));
            assert!(err < 1e-5, "max relative difference {err}");
        }
    }

    #[test]
    fn fused_attention_gradients_match_the_burn_composition() {
        let device = Default::default();
        let (shape, heads) = ([2, 9, 16], 2);
        let rope = Rope::<Ad>::new(8, 9, 10000.0, &device);
        let weights = Tensor::<Ad, 3>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        for rope in [None, Some(&rope)] {
            let inputs = || [11, 5, 2].map(|seed| deterministic::<Ad, 3>(shape, seed, &device));
            let fused = grads(
                inputs(),
                |[q, k, v]| ndarray_glue::rope_attention(q, k, v, heads, rope).expect("fused on autodiff ndarray"),
                &weights,
            );
            let reference = grads(
                inputs(),
                |[q, k, v]| rope_attention_reference(q.clone(), k.clone(), v.clone(), heads, rope),
                &weights,
            );
            assert_all_close(fused, reference, 1e-5);
        }
    }

    #[test]
    fn fused_linear_matches_burn_with_and_without_bias_and_autodiff() {
        let device = Default::default();
        let (x_shape, d_out) = ([3, 7, 12], 5);
        let (x, w, b) = (
            deterministic::<Nd, 3>(x_shape, 1, &device),
            deterministic::<Nd, 2>([12, d_out], 2, &device),
            deterministic::<Nd, 1>([d_out], 3, &device),
        );
        for bias in [None, Some(b)] {
            let fused = ndarray_glue::linear(&x, &w, bias.as_ref()).expect("fused on ndarray");
            assert_eq!(fused.dims(), [3, 7, d_out]);
            let err = max_rel(values(fused), values(burn::tensor::module::linear(x.clone(), w.clone(), bias)));
            assert!(err < 1e-6, "forward: {err}");
        }
        let weights = Tensor::<Ad, 3>::random([3, 7, d_out], Distribution::Uniform(-1.0, 1.0), &device);
        let w = deterministic::<Ad, 2>([12, d_out], 2, &device).require_grad();
        let b = deterministic::<Ad, 1>([d_out], 3, &device).require_grad();
        for with_bias in [false, true] {
            let run = |fused: bool| {
                let x = deterministic::<Ad, 3>(x_shape, 1, &device).require_grad();
                let bias = with_bias.then(|| b.clone());
                let out = if fused {
                    ndarray_glue::linear(&x, &w, bias.as_ref()).expect("fused on autodiff ndarray")
                } else {
                    burn::tensor::module::linear(x.clone(), w.clone(), bias)
                };
                let g = (out * weights.clone()).sum().backward();
                let mut got = vec![values(x.grad(&g).expect("x tracked")), values(w.grad(&g).expect("w tracked"))];
                if with_bias {
                    got.push(values(b.grad(&g).expect("b tracked")));
                }
                got
            };
            for (i, (f, r)) in run(true).into_iter().zip(run(false)).enumerate() {
                let err = max_rel(f, r);
                assert!(err < 1e-5, "bias {with_bias}, gradient {i}: {err}");
            }
        }
    }

    #[test]
    fn fused_kernels_take_transposed_inputs() {
        // The mlp_t mixer feeds swap_dims views; the kernels copy them in logical order.
        let device = Default::default();
        let x = deterministic::<Nd, 3>([3, 12, 7], 1, &device).swap_dims(1, 2);
        let w = deterministic::<Nd, 2>([12, 5], 2, &device);
        let fused = ndarray_glue::linear(&x, &w, None).expect("fused on ndarray");
        let err = max_rel(values(fused), values(burn::tensor::module::linear(x.clone(), w, None)));
        assert!(err < 1e-6, "linear: {err}");
        let fused = ndarray_glue::rms_norm(&x, None, 1e-5).expect("fused on ndarray");
        let err = max_rel(values(fused), values(rms_norm_reference(x.clone(), 1e-5)));
        assert!(err < 1e-6, "rms_norm: {err}");
        let x4 = deterministic::<Nd, 4>([2, 3, 4, 5], 3, &device).swap_dims(1, 3);
        let fused = ndarray_glue::silu_mul(&x4, &x4).expect("fused on ndarray");
        let err = max_rel(values(fused), values(silu_mul_reference(x4.clone(), x4)));
        assert!(err < 1e-6, "silu_mul: {err}");
    }

    #[test]
    fn fused_silu_mul_matches_the_burn_composition_with_and_without_autodiff() {
        let device = Default::default();
        let shape = [2, 5, 7];
        let (g, u) = (deterministic::<Nd, 3>(shape, 4, &device).mul_scalar(6.0), deterministic(shape, 9, &device));
        let fused = ndarray_glue::silu_mul(&g, &u).expect("fused on ndarray");
        let err = max_rel(values(fused), values(silu_mul_reference(g, u)));
        assert!(err < 1e-6, "forward: {err}");

        let weights = Tensor::<Ad, 3>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let inputs = || [deterministic::<Ad, 3>(shape, 4, &device).mul_scalar(6.0), deterministic(shape, 9, &device)];
        let fused =
            grads(inputs(), |[g, u]| ndarray_glue::silu_mul(g, u).expect("fused on autodiff ndarray"), &weights);
        let reference = grads(inputs(), |[g, u]| silu_mul_reference(g.clone(), u.clone()), &weights);
        assert_all_close(fused, reference, 1e-5);
    }

    #[test]
    fn fused_rms_norm_matches_the_burn_composition_with_and_without_autodiff() {
        let device = Default::default();
        let shape = [3, 5, 16];
        let x = deterministic::<Nd, 3>(shape, 4, &device).mul_scalar(3.0);
        let fused = ndarray_glue::rms_norm(&x, None, 1e-5).expect("fused on ndarray");
        let err = max_rel(values(fused), values(rms_norm_reference(x, 1e-5)));
        assert!(err < 1e-6, "forward: {err}");

        let weights = Tensor::<Ad, 3>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let inputs = || [deterministic::<Ad, 3>(shape, 4, &device).mul_scalar(3.0)];
        let fused =
            grads(inputs(), |[x]| ndarray_glue::rms_norm(x, None, 1e-5).expect("fused on autodiff ndarray"), &weights);
        let reference = grads(inputs(), |[x]| rms_norm_reference(x.clone(), 1e-5), &weights);
        assert_all_close(fused, reference, 1e-5);
    }

    #[test]
    fn fused_add_rms_norm_matches_add_then_norm_with_and_without_autodiff() {
        let device = Default::default();
        let shape = [3, 5, 16];
        let [x, r] = [5, 6].map(|seed| deterministic::<Nd, 3>(shape, seed, &device).mul_scalar(2.0));
        let fused = values(ndarray_glue::rms_norm(&x, Some(&r), 1e-5).expect("fused on ndarray"));
        let sum = x.clone() + r.clone();
        let separate = ndarray_glue::rms_norm(&sum, None, 1e-5).expect("fused on ndarray");
        assert_eq!(fused, values(separate), "same bits as the add then the fused norm");
        assert!(max_rel(fused, values(rms_norm_reference(sum, 1e-5))) < 1e-6);

        let weights = Tensor::<Ad, 3>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let inputs = || [5, 6].map(|seed| deterministic::<Ad, 3>(shape, seed, &device).mul_scalar(2.0));
        let fused = grads(
            inputs(),
            |[x, r]| ndarray_glue::rms_norm(x, Some(r), 1e-5).expect("fused on autodiff ndarray"),
            &weights,
        );
        let reference = grads(inputs(), |[x, r]| rms_norm_reference(x.clone() + r.clone(), 1e-5), &weights);
        assert_all_close(fused, reference, 1e-5);
        // The same tensor on both sides: its gradient is the sum of the two (Burn's rule).
        let fused = grads([inputs()[0].clone()], |[x]| add_rms_norm(x.clone(), x.clone(), 1e-5), &weights);
        let reference = grads([inputs()[0].clone()], |[x]| rms_norm_reference(x.clone() * 2.0, 1e-5), &weights);
        assert_all_close(fused, reference, 1e-5);
        // Shapes that differ (broadcasting) take the reference path.
        let row = deterministic::<Nd, 3>([1, 5, 16], 7, &device);
        assert!(ndarray_glue::rms_norm(&deterministic::<Nd, 3>(shape, 5, &device), Some(&row), 1e-5).is_none());
    }

    #[test]
    fn fused_swiglu_block_tail_matches_its_composition() {
        let device = Default::default();
        let (d, width) = (24, 40);
        let w = |shape: [usize; 2], seed| deterministic::<Nd, 2>(shape, seed, &device).mul_scalar(0.4);
        let weights = [w([d, width], 11), w([d, width], 12), w([width, d], 13)];
        // On two threads (the fused path needs more than 4 rows per thread): one row (the
        // composition), 97 rows (an uneven split), 900, and 14000 (over 1 MiB of activations
        // per thread: two tasks per thread).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (batch, seq) in [(1, 1), (1, 97), (3, 300), (2, 7000)] {
            let h = deterministic::<Nd, 3>([batch, seq, d], 14, &device).mul_scalar(2.0);
            let fused =
                pool.install(|| ndarray_glue::swiglu_add_rms_norm(&h, [&weights[0], &weights[1], &weights[2]], 1e-5));
            assert_eq!(fused.is_some(), seq > 1, "fused path taken for {seq} rows");
            let [g, u, dw] = weights.clone();
            let composed = add_rms_norm(
                h.clone(),
                linear(silu_mul(linear(h.clone(), g, None), linear(h.clone(), u, None)), dw, None),
                1e-5,
            );
            let got = values(pool.install(|| swiglu_add_rms_norm(h, weights.clone(), 1e-5)));
            let err = max_rel(got, values(composed));
            assert!(err < 1e-6, "{batch}x{seq}: {err}");
        }
        // Under autodiff the composition runs (it has a backward).
        let h = deterministic::<Ad, 3>([1, 97, d], 14, &device);
        let ad = weights.clone().map(|t| Tensor::<Ad, 2>::from_data(t.into_data(), &device));
        assert!(ndarray_glue::swiglu_add_rms_norm(&h, [&ad[0], &ad[1], &ad[2]], 1e-5).is_none());
    }

    #[test]
    fn untracked_inputs_under_autodiff_give_the_same_output() {
        let device = Default::default();
        let shape = [1, 5, 8];
        let [q, k, v] = [1, 2, 3].map(|seed| deterministic::<Ad, 3>(shape, seed, &device));
        let fused = ndarray_glue::rope_attention(&q, &k, &v, 2, None).expect("fused");
        assert!(max_rel(values(fused), values(rope_attention_reference(q, k, v, 2, None))) < 1e-5);
    }
}
