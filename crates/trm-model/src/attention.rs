//! Non-causal multi-head self-attention with the official fused-qkv weights (kept as three
//! matrices) and rotary position embedding in the `rotate_half` form.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use crate::layers::{float_tensor, Linear};

/// Precomputed RoPE tables over all P + L positions, [positions, head_dim].
///
/// Pairs dimension i with i + head_dim/2 (the official `rotate_half`), not Burn's adjacent
/// pairs, so official checkpoints give the same numbers.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Tables for `positions` positions of a `head_dim`-wide head.
    pub fn new(head_dim: usize, positions: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        // The official code builds the tables in float32: inv_freq = 1 / theta^(2i/d) in f32,
        // t * inv_freq in f32, then cos/sin. Do the same rounding for bit-level agreement.
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        for p in 0..positions {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        Self {
            cos: float_tensor(TensorData::new(cos, [positions, head_dim]), device),
            sin: float_tensor(TensorData::new(sin, [positions, head_dim]), device),
        }
    }

    /// The tables in `dtype`.
    pub fn cast(self, dtype: burn::tensor::DType) -> Self {
        Self { cos: self.cos.cast(dtype), sin: self.sin.cast(dtype) }
    }

    /// The cosine table, [positions, head_dim].
    pub fn cos(&self) -> &Tensor<B, 2> {
        &self.cos
    }

    /// The sine table, [positions, head_dim].
    pub fn sin(&self) -> &Tensor<B, 2> {
        &self.sin
    }

    /// Rotates `x` of shape [B, heads, S, head_dim].
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, s, d] = x.dims();
        let cos = self.cos.clone().narrow(0, 0, s).reshape([1, 1, s, d]);
        let sin = self.sin.clone().narrow(0, 0, s).reshape([1, 1, s, d]);
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}

/// Self-attention: qkv projection, RoPE, softmax(q k^T / sqrt(d)) v over all positions, output projection.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// [D, heads * head_dim].
    pub q: Linear<B>,
    /// [D, heads * head_dim].
    pub k: Linear<B>,
    /// [D, heads * head_dim].
    pub v: Linear<B>,
    /// [heads * head_dim, D].
    pub o: Linear<B>,
    num_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Official init: the fused qkv matrix has d_in = D, so q, k and v all get std 1/sqrt(D).
    pub fn new(hidden: usize, num_heads: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let head_dim = hidden / num_heads;
        let width = num_heads * head_dim;
        Self {
            q: Linear::lecun(hidden, width, false, rng, device),
            k: Linear::lecun(hidden, width, false, rng, device),
            v: Linear::lecun(hidden, width, false, rng, device),
            o: Linear::lecun(width, hidden, false, rng, device),
            num_heads,
            head_dim,
        }
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Attends over the whole sequence (non-causal, no mask: PAD positions are attended to, as
    /// in the official code). `h`: [B, S, D]. The core runs in [`crate::kernels::rope_attention`]
    /// (fused on the CPU backend).
    pub fn forward(&self, h: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let projections = [&self.q, &self.k, &self.v];
        let [q, k, v] = if projections.iter().all(|p| p.bias.is_none()) {
            // One parallel section for the three products where the kernels can.
            crate::kernels::linear_many(h, projections.map(|p| p.weight.val()))
        } else {
            projections.map(|p| p.forward(h.clone()))
        };
        self.o.forward(crate::kernels::rope_attention(q, k, v, self.num_heads, rope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::SeedableRng;

    type B = NdArray<f32>;

    fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn rope_rotates_pairs_i_and_i_plus_half() {
        let device = Default::default();
        let (d, s) = (4, 3);
        let rope = Rope::<B>::new(d, s, 10000.0, &device);
        let x: Vec<f32> = (0..s * d).map(|i| (i as f32 + 1.0) / 7.0).collect();
        let got = to_vec(rope.apply(Tensor::from_data(TensorData::new(x.clone(), [1, 1, s, d]), &device)));
        for p in 0..s {
            for i in 0..d / 2 {
                // theta_i = p / 10000^(2i/d); (x_i, x_{i+d/2}) rotated by theta_i.
                let th = p as f64 / 10000f64.powf((2 * i) as f64 / d as f64);
                let (a, b) = (x[p * d + i] as f64, x[p * d + i + d / 2] as f64);
                let want_a = a * th.cos() - b * th.sin();
                let want_b = b * th.cos() + a * th.sin();
                assert!((got[p * d + i] as f64 - want_a).abs() < 1e-5);
                assert!((got[p * d + i + d / 2] as f64 - want_b).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn attention_matches_a_naive_computation() {
        let device = Default::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (b, s, dm, h) = (2, 5, 8, 2);
        let hd = dm / h;
        let att = Attention::<B>::new(dm, h, &mut rng, &device);
        let rope = Rope::<B>::new(hd, s, 10000.0, &device);
        let x: Vec<f32> = (0..b * s * dm).map(|i| ((i * 37 % 19) as f32 - 9.0) / 9.0).collect();
        let got = to_vec(att.forward(Tensor::from_data(TensorData::new(x.clone(), [b, s, dm]), &device), Some(&rope)));

        let w = |l: &Linear<B>| to_vec(l.weight.val());
        let (wq, wk, wv, wo) = (w(&att.q), w(&att.k), w(&att.v), w(&att.o));
        let proj =
            |xr: &[f32], wt: &[f32], i: usize| -> f64 { (0..dm).map(|j| xr[j] as f64 * wt[j * dm + i] as f64).sum() };
        let rot = |v: &mut Vec<f64>, p: usize| {
            for head in 0..h {
                let base = head * hd;
                let old = v.clone();
                for i in 0..hd / 2 {
                    let th = p as f64 / 10000f64.powf((2 * i) as f64 / hd as f64);
                    let (a, bb) = (old[base + i], old[base + i + hd / 2]);
                    v[base + i] = a * th.cos() - bb * th.sin();
                    v[base + i + hd / 2] = bb * th.cos() + a * th.sin();
                }
            }
        };
        for bi in 0..b {
            let rows: Vec<&[f32]> = (0..s).map(|p| &x[(bi * s + p) * dm..(bi * s + p + 1) * dm]).collect();
            let mut q: Vec<Vec<f64>> = (0..s).map(|p| (0..dm).map(|i| proj(rows[p], &wq, i)).collect()).collect();
            let mut k: Vec<Vec<f64>> = (0..s).map(|p| (0..dm).map(|i| proj(rows[p], &wk, i)).collect()).collect();
            let v: Vec<Vec<f64>> = (0..s).map(|p| (0..dm).map(|i| proj(rows[p], &wv, i)).collect()).collect();
            for p in 0..s {
                rot(&mut q[p], p);
                rot(&mut k[p], p);
            }
            for p in 0..s {
                let mut ctx = vec![0.0f64; dm];
                for head in 0..h {
                    let r = head * hd..(head + 1) * hd;
                    let scores: Vec<f64> = (0..s)
                        .map(|t| r.clone().map(|i| q[p][i] * k[t][i]).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for i in r {
                        ctx[i] = (0..s).map(|t| e[t] / z * v[t][i]).sum();
                    }
                }
                for o in 0..dm {
                    let want: f64 = (0..dm).map(|i| ctx[i] * wo[i * dm + o] as f64).sum();
                    let g = got[(bi * s + p) * dm + o] as f64;
                    assert!((g - want).abs() < 1e-5, "b{bi} p{p} o{o}: {g} vs {want}");
                }
            }
        }
    }
}
