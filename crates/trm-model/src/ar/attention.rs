//! Causal attention over [committed prefix K/V + the current token], and the post-norm block.
//!
//! Two ways to evaluate the same function:
//! - decoding ([`LayerContext::Cache`]): one position per sequence, its K/V written into the
//!   cache's scratch slot, attention over the cache window [0, len];
//! - teacher forcing ([`LayerContext::Parallel`]): all L positions at once; position t
//!   attends to the committed K/V of positions s < t (a strict-causal mask) and to its own
//!   current K/V, in one softmax.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use super::cache::KvCache;
use crate::attention::Rope;
use crate::kernels::add_rms_norm;
use crate::layers::{Linear, SwiGlu};

/// K and V of one layer over L positions, [B, heads, L, head_dim] (K already rotated).
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// Keys.
    pub k: Tensor<B, 4>,
    /// Values.
    pub v: Tensor<B, 4>,
}

/// Where one layer's attention finds the keys of the prefix.
pub enum LayerContext<'a, B: Backend> {
    /// Decoding: the layer's cache; the current position is `cache.len()`.
    Cache(&'a mut KvCache<B>),
    /// Teacher forcing: committed K/V of every position and the mask [B, heads, L, L]
    /// that is true where key s is not before query t (s >= t).
    Parallel(&'a LayerKv<B>, &'a Tensor<B, 4, Bool>),
}

/// Rotates `x` [B, heads, S, head_dim] as positions start..start+S.
pub fn rope_at<B: Backend>(rope: &Rope<B>, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
    let [_, _, s, d] = x.dims();
    let cos = rope.cos().clone().narrow(0, start, s).reshape([1, 1, s, d]);
    let sin = rope.sin().clone().narrow(0, start, s).reshape([1, 1, s, d]);
    let half = d / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

/// The strict-causal mask [B, heads, L, L]: true (hidden) where s >= t.
pub fn strict_causal_mask<B: Backend>(
    batch: usize,
    heads: usize,
    len: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let data: Vec<bool> = (0..len * len).map(|i| i % len >= i / len).collect();
    Tensor::<B, 2, Bool>::from_data(TensorData::new(data, [len, len]), device)
        .reshape([1, 1, len, len])
        .expand([batch, heads, len, len])
}

/// Multi-head attention (bias-free q, k, v, o with the TRM init) used causally.
#[derive(Module, Debug)]
pub struct CausalAttention<B: Backend> {
    /// [D, D].
    pub q: Linear<B>,
    /// [D, D].
    pub k: Linear<B>,
    /// [D, D].
    pub v: Linear<B>,
    /// [D, D].
    pub o: Linear<B>,
    num_heads: usize,
}

impl<B: Backend> CausalAttention<B> {
    /// LeCun truncated-normal init, as TRM's attention.
    pub fn new(hidden: usize, num_heads: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        Self {
            q: Linear::lecun(hidden, hidden, false, rng, device),
            k: Linear::lecun(hidden, hidden, false, rng, device),
            v: Linear::lecun(hidden, hidden, false, rng, device),
            o: Linear::lecun(hidden, hidden, false, rng, device),
            num_heads,
        }
    }

    fn split(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, s, d] = x.dims();
        x.reshape([b, s, self.num_heads, d / self.num_heads]).swap_dims(1, 2)
    }

    fn merge(&self, x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, h, s, hd] = x.dims();
        self.o.forward(x.swap_dims(1, 2).reshape([b, s, h * hd]))
    }

    fn scale(&self, q: &Tensor<B, 4>) -> f64 {
        1.0 / (q.dims()[3] as f64).sqrt()
    }

    /// K/V that the memory `m` [B, S, D] (positions start..start+S) exposes.
    pub fn kv(&self, m: Tensor<B, 3>, rope: &Rope<B>, start: usize) -> LayerKv<B> {
        let k = rope_at(rope, self.split(self.k.forward(m.clone())), start);
        LayerKv { k, v: self.split(self.v.forward(m)) }
    }

    /// Attention for `h` [B, S, D] in `ctx` (S = 1 when decoding).
    pub fn forward(&self, h: Tensor<B, 3>, rope: &Rope<B>, ctx: LayerContext<'_, B>) -> Tensor<B, 3> {
        match ctx {
            LayerContext::Cache(cache) => {
                let pos = cache.len();
                let q = rope_at(rope, self.split(self.q.forward(h.clone())), pos);
                let own = self.kv(h, rope, pos);
                cache.write_scratch(own.k, own.v);
                let (k, v, window) = cache.buffers();
                self.merge(crate::kernels::cached_attention(q, k, v, window))
            }
            LayerContext::Parallel(committed, mask) => {
                let len = h.dims()[1];
                let q = rope_at(rope, self.split(self.q.forward(h.clone())), 0);
                let own = self.kv(h, rope, 0);
                let scale = self.scale(&q);
                let prefix = q.clone().matmul(committed.k.clone().swap_dims(2, 3)).mul_scalar(scale);
                let prefix = prefix.mask_fill(mask.clone(), f32::NEG_INFINITY);
                let own_score = (q * own.k).sum_dim(3).mul_scalar(scale);
                let p = softmax(Tensor::cat(vec![prefix, own_score], 3), 3);
                let out = p.clone().narrow(3, 0, len).matmul(committed.v.clone()) + p.narrow(3, len, 1) * own.v;
                self.merge(out)
            }
        }
    }
}

/// One post-norm block: causal attention then SwiGLU, each with a residual and RMSNorm.
#[derive(Module, Debug)]
pub struct ArBlock<B: Backend> {
    /// The attention.
    pub attention: CausalAttention<B>,
    /// The channel MLP.
    pub mlp: SwiGlu<B>,
    eps: f64,
}

impl<B: Backend> ArBlock<B> {
    /// A block with the TRM init.
    pub fn new(
        hidden: usize,
        heads: usize,
        expansion: f64,
        eps: f64,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Self {
        let attention = CausalAttention::new(hidden, heads, rng, device);
        Self { attention, mlp: SwiGlu::new(hidden, expansion, rng, device), eps }
    }

    /// h [B, S, D].
    pub fn forward(&self, h: Tensor<B, 3>, rope: &Rope<B>, ctx: LayerContext<'_, B>) -> Tensor<B, 3> {
        let h = add_rms_norm(h.clone(), self.attention.forward(h, rope, ctx), self.eps);
        add_rms_norm(h.clone(), self.mlp.forward(h), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::SeedableRng;

    type B = NdArray<f32>;

    #[test]
    fn the_mask_hides_the_diagonal_and_the_future() {
        let m = strict_causal_mask::<B>(1, 1, 3, &Default::default()).into_data().to_vec::<bool>().unwrap();
        assert_eq!(m, vec![true, true, true, false, true, true, false, false, true]);
    }

    #[test]
    fn rope_at_an_offset_equals_the_matching_rows_of_the_full_rotation() {
        let device = Default::default();
        let rope = Rope::<B>::new(4, 6, 10000.0, &device);
        let x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let full = rope.apply(Tensor::from_data(TensorData::new(x.clone(), [1, 1, 6, 4]), &device));
        let part = rope_at(&rope, Tensor::from_data(TensorData::new(x[12..20].to_vec(), [1, 1, 2, 4]), &device), 3);
        let full = full.narrow(2, 3, 2).into_data().to_vec::<f32>().unwrap();
        assert_eq!(full, part.into_data().to_vec::<f32>().unwrap());
    }

    /// A hand-rolled float64 check of the parallel path at one position: softmax over the
    /// committed keys before t plus the token's own key.
    #[test]
    fn parallel_attention_matches_a_direct_computation() {
        let device = Default::default();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (len, d) = (3, 4);
        let att = CausalAttention::<B>::new(d, 1, &mut rng, &device);
        let rope = Rope::<B>::new(d, len, 10000.0, &device);
        let h: Vec<f32> = (0..len * d).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let m: Vec<f32> = (0..len * d).map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0).collect();
        let ht = Tensor::<B, 3>::from_data(TensorData::new(h.clone(), [1, len, d]), &device);
        let committed = att.kv(Tensor::from_data(TensorData::new(m, [1, len, d]), &device), &rope, 0);
        let mask = strict_causal_mask::<B>(1, 1, len, &device);
        let got = att.forward(ht.clone(), &rope, LayerContext::Parallel(&committed, &mask));
        let got = got.into_data().to_vec::<f32>().unwrap();
        let own = att.kv(ht.clone(), &rope, 0);
        let q = rope.apply(att.split(att.q.forward(ht)));
        let f = |t: Tensor<B, 4>| t.into_data().to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect::<Vec<_>>();
        let (q, ck, cv, ok, ov) = (f(q), f(committed.k.clone()), f(committed.v.clone()), f(own.k), f(own.v));
        let wo: Vec<f64> = att.o.weight.val().into_data().to_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (d as f64).sqrt();
        for t in 0..len {
            let qt = &q[t * d..(t + 1) * d];
            let mut scores: Vec<f64> = (0..t).map(|s| dot(qt, &ck[s * d..(s + 1) * d])).collect();
            scores.push(dot(qt, &ok[t * d..(t + 1) * d]));
            let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            let ctx: Vec<f64> = (0..d)
                .map(|i| (0..t).map(|s| e[s] / z * cv[s * d + i]).sum::<f64>() + e[t] / z * ov[t * d + i])
                .collect();
            for o in 0..d {
                let want: f64 = (0..d).map(|i| ctx[i] * wo[i * d + o]).sum();
                assert!((got[t * d + o] as f64 - want).abs() < 1e-5, "t{t} o{o}: {} vs {want}", got[t * d + o]);
            }
        }
    }
}
