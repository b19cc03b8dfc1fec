//! Building blocks: bias-free linear maps with the official truncated-normal init,
//! parameter-free RMSNorm and SwiGLU with the official inner-size rounding.

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::swiglu_inner;

/// Samples `n` values of a normal distribution truncated at +-2 sigma whose std is really
/// `std` (the official JAX-style `trunc_normal_init_`: the scale is corrected for the cut).
pub fn trunc_normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    if std == 0.0 {
        return vec![0.0; n];
    }
    let comp_std = std / truncated_unit_std(-2.0, 2.0);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // Box-Muller, then rejection outside [-2, 2]: the same law as uniform -> erfinv.
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        for v in [r * (std::f64::consts::TAU * u2).cos(), r * (std::f64::consts::TAU * u2).sin()] {
            if (-2.0..=2.0).contains(&v) && out.len() < n {
                out.push((v * comp_std) as f32);
            }
        }
    }
    out
}

/// Std of a standard normal truncated to [lower, upper].
fn truncated_unit_std(lower: f64, upper: f64) -> f64 {
    let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let z = 0.5 * (erf(upper / std::f64::consts::SQRT_2) - erf(lower / std::f64::consts::SQRT_2));
    let var = 1.0 - (upper * pdf(upper) - lower * pdf(lower)) / z - ((pdf(upper) - pdf(lower)) / z).powi(2);
    var.sqrt()
}

/// erf to ~1e-15 (series for small x, continued fraction for large x).
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x < 3.0 {
        // Maclaurin series: erf x = 2/sqrt(pi) sum (-1)^k x^(2k+1) / (k! (2k+1)).
        let mut sum = 0.0f64;
        let mut term = x;
        let mut k = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || k < 5.0 {
            sum += term / (2.0 * k + 1.0);
            k += 1.0;
            term *= -x * x / k;
            if k > 200.0 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // erfc x = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
        let mut f = x;
        for k in (1..60).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        1.0 - (-x * x).exp() / std::f64::consts::PI.sqrt() / f
    }
}

/// A float tensor in the backend's float type (TensorData keeps its own dtype otherwise).
pub fn float_tensor<B: Backend, const D: usize>(data: TensorData, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(data.convert::<B::FloatElem>(), device)
}

/// An int tensor in the backend's int type.
pub fn int_tensor<B: Backend, const D: usize>(data: TensorData, device: &B::Device) -> Tensor<B, D, burn::tensor::Int> {
    Tensor::from_data(data.convert::<B::IntElem>(), device)
}

/// Makes a parameter of `shape` from host values.
pub(crate) fn param_from<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(float_tensor(TensorData::new(values, shape), device))
}

/// A linear map `x W (+ b)`, W stored as [in, out]. Only the Q head has a bias.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// [d_in, d_out].
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// LeCun truncated normal (std 1/sqrt(d_in)); a zero bias when asked for.
    pub fn lecun(d_in: usize, d_out: usize, bias: bool, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let w = trunc_normal(rng, d_in * d_out, 1.0 / (d_in as f64).sqrt());
        Self {
            weight: param_from(w, [d_in, d_out], device),
            bias: bias.then(|| param_from(vec![0.0; d_out], [d_out], device)),
        }
    }

    /// Applies the map over the last dimension ([`crate::kernels::linear`]: one GEMM over the
    /// flattened leading dimensions on the CPU backend).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        crate::kernels::linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// Parameter-free RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps).
///
/// Fused on the CPU backend ([`crate::kernels::rms_norm`]).
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    crate::kernels::rms_norm(x, eps)
}

/// SiLU `x·sigmoid(x)`. Without autodiff it is computed as `x / (1 + exp(-x))`: 4 passes
/// and one `exp`, in place where the buffer is not shared, instead of burn's default
/// `sigmoid` (exp, neg, log, add, exp, neg: 3 transcendental passes) then a product. With
/// autodiff burn's `silu` stays: its sigmoid is one graph node with a cheap backward.
pub fn fast_silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if B::ad_enabled(&x.device()) {
        return silu(x);
    }
    let denom = x.clone().neg().exp().add_scalar(1.0);
    x / denom
}

/// SwiGLU: down(silu(gate(x)) * up(x)). The official fused `gate_up_proj` is kept as two
/// matrices (first half = gate, second = up) so no last-dimension split is needed.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// [h, inner].
    pub gate: Linear<B>,
    /// [h, inner].
    pub up: Linear<B>,
    /// [inner, h].
    pub down: Linear<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// A SwiGLU over width `hidden`, with the official init (the fused gate_up matrix has
    /// d_in = hidden, so both halves get std 1/sqrt(hidden)).
    pub fn new(hidden: usize, expansion: f64, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let inner = swiglu_inner(hidden, expansion);
        Self {
            gate: Linear::lecun(hidden, inner, false, rng, device),
            up: Linear::lecun(hidden, inner, false, rng, device),
            down: Linear::lecun(inner, hidden, false, rng, device),
        }
    }

    /// Inner width.
    pub fn inner(&self) -> usize {
        self.gate.weight.dims()[1]
    }

    /// Applies the MLP over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let gate = self.gate.forward(x.clone());
        self.down.forward(crate::kernels::silu_mul(gate, self.up.forward(x)))
    }

    /// `rms_norm(x + self.forward(x), eps)`, the post-norm residual step around this MLP
    /// ([`crate::kernels::swiglu_add_rms_norm`] when it has no biases, as the official one).
    pub fn forward_add_rms_norm<const D: usize>(&self, x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
        let [gate, up, down] = [&self.gate, &self.up, &self.down];
        if gate.bias.is_some() || up.bias.is_some() || down.bias.is_some() {
            return crate::kernels::add_rms_norm(x.clone(), self.forward(x), eps);
        }
        crate::kernels::swiglu_add_rms_norm(x, [gate.weight.val(), up.weight.val(), down.weight.val()], eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::SeedableRng;

    type B = NdArray<f32>;

    #[test]
    fn erf_matches_known_values() {
        // Abramowitz & Stegun table values.
        for (x, want) in [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
        ] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn truncated_normal_has_the_requested_std_and_bounds() {
        // The official correction: comp_std = std / 0.8796256610342398 for a +-2 cut.
        assert!((truncated_unit_std(-2.0, 2.0) - 0.879_625_661_034_239_8).abs() < 1e-12);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = trunc_normal(&mut rng, 200_000, 0.5);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((std - 0.5).abs() < 0.005, "std {std}");
        let bound = 2.0 * 0.5 / 0.879_625_661_034_239_8;
        assert!(v.iter().all(|&x| (x as f64).abs() <= bound + 1e-6));
        assert!(trunc_normal(&mut rng, 3, 0.0).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn fast_silu_matches_burn_silu_with_and_without_autodiff() {
        let device = Default::default();
        let x: Vec<f32> = vec![-100.0, -20.0, -3.5, -1.0, -1e-3, 0.0, 1e-3, 0.7, 2.0, 15.0, 90.0];
        let n = x.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(x.clone(), [n]), &device);
        let want = silu(t.clone()).into_data().to_vec::<f32>().unwrap();
        let got = fast_silu(t).into_data().to_vec::<f32>().unwrap();
        for i in 0..n {
            let exact = x[i] as f64 / (1.0 + (-(x[i] as f64)).exp());
            assert!((got[i] as f64 - exact).abs() <= 1e-6 * exact.abs().max(1.0), "{}: {} vs {exact}", x[i], got[i]);
            assert!((got[i] - want[i]).abs() <= 1e-5 * want[i].abs().max(1.0));
        }
        type Ad = burn::backend::Autodiff<B>;
        let t = Tensor::<Ad, 1>::from_data(TensorData::new(x, [n]), &device).require_grad();
        let g = fast_silu(t.clone()).sum().backward();
        assert!(t.grad(&g).is_some());
    }

    #[test]
    fn rms_norm_matches_a_direct_computation() {
        let device = Default::default();
        let x = [1.0f32, -2.0, 3.0, 0.5, 4.0, -1.0];
        let t = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [2, 3]), &device);
        let got = rms_norm(t, 1e-5).into_data().to_vec::<f32>().unwrap();
        for row in 0..2 {
            let r = &x[row * 3..row * 3 + 3];
            let ms = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 3.0;
            for c in 0..3 {
                let want = r[c] as f64 / (ms + 1e-5).sqrt();
                assert!((got[row * 3 + c] as f64 - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn swiglu_matches_a_direct_computation() {
        let device = Default::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mlp = SwiGlu::<B>::new(4, 4.0, &mut rng, &device);
        assert_eq!(mlp.inner(), 256);
        let x: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 2.0).collect();
        let got = mlp.forward(Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [2, 4]), &device));
        let got = got.into_data().to_vec::<f32>().unwrap();
        let w = |l: &Linear<B>| l.weight.val().into_data().to_vec::<f32>().unwrap();
        let (g, u, d) = (w(&mlp.gate), w(&mlp.up), w(&mlp.down));
        let inner = 256;
        for row in 0..2 {
            let xr = &x[row * 4..row * 4 + 4];
            let mut h = vec![0.0f64; inner];
            for (j, hj) in h.iter_mut().enumerate() {
                let a: f64 = (0..4).map(|i| xr[i] as f64 * g[i * inner + j] as f64).sum();
                let b: f64 = (0..4).map(|i| xr[i] as f64 * u[i * inner + j] as f64).sum();
                *hj = a / (1.0 + (-a).exp()) * b;
            }
            for o in 0..4 {
                let want: f64 = (0..inner).map(|j| h[j] * d[j * 4 + o] as f64).sum();
                assert!((got[row * 4 + o] as f64 - want).abs() < 1e-5, "{} vs {want}", got[row * 4 + o]);
            }
        }
    }
}
