//! The baselines AR-TRM is measured against: a standard causal transformer (untied layers)
//! and the same blocks looped (tied weights, the input re-injected before every loop).
//!
//! Both are ordinary causal self-attention decoders: every layer of every loop exposes its
//! own K/V for every position, so a token attends to the prefix's hidden states at the same
//! layer and loop. One module covers both: `layers` distinct blocks applied `loops` times
//! (`loops = 1` is the standard transformer). Block evaluations per token are
//! `layers x loops`; an AR-TRM with fixed K steps costs `K x T(n+1) x layers`.
//!
//! The teacher-forced parallel forward is exactly what greedy decoding computes (causal
//! attention, no per-token state), so exact accuracy under teacher forcing equals exact
//! accuracy of greedy generation: with every earlier answer token right, decoding sees the
//! teacher-forced prefix.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::attention::{strict_causal_mask, ArBlock, LayerContext};
use super::model::{decoder_parts, DecoderShape};
use crate::attention::Rope;
use crate::error::ModelError;
use crate::layers::Linear;

/// The architecture of a baseline decoder. Build one with [`ArBaselineConfig::init_seeded`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArBaselineConfig {
    /// Hidden width D.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// SwiGLU expansion (inner width rounded up to 256 as in TRM).
    pub expansion: f64,
    /// Distinct blocks.
    pub layers: usize,
    /// Times the stack of blocks is applied (1: a standard transformer; more: looped, tied).
    pub loops: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence (RoPE table size).
    pub max_len: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
}

impl ArBaselineConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        super::check_heads(self.hidden_size, self.num_heads)?;
        for (name, v) in
            [("layers", self.layers), ("loops", self.loops), ("vocab_size", self.vocab_size), ("max_len", self.max_len)]
        {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        Ok(())
    }

    /// Block evaluations per token: layers x loops.
    pub fn block_evals_per_token(&self) -> usize {
        self.layers * self.loops
    }

    /// Bytes one token occupies in a KV cache at 4-byte floats: K and V of every layer of every loop.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.layers * self.loops * self.hidden_size * 4
    }

    /// Builds a model from `seed` with the TRM initialisation (as [`super::ArTrmConfig`]).
    /// Panics on an invalid config; call [`ArBaselineConfig::validate`] first for an error.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> ArBaseline<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = self.hidden_size;
        let (embed_tokens, blocks, lm_head) = decoder_parts(
            DecoderShape {
                hidden: d,
                heads: self.num_heads,
                expansion: self.expansion,
                eps: self.rms_norm_eps,
                layers: self.layers,
                vocab: self.vocab_size,
            },
            &mut rng,
            device,
        );
        let rope = Rope::new(d / self.num_heads, self.max_len, self.rope_theta, device);
        ArBaseline { embed_tokens, blocks, lm_head, rope, config: self.clone() }
    }
}

/// A causal decoder of `layers` blocks applied `loops` times.
#[derive(Module, Debug)]
pub struct ArBaseline<B: Backend> {
    /// Token embedding [V, D] (scaled by sqrt(D) at use).
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// The blocks.
    pub blocks: Vec<ArBlock<B>>,
    /// Output head [D, V].
    pub lm_head: Linear<B>,
    rope: Rope<B>,
    #[module(skip)]
    config: ArBaselineConfig,
}

impl<B: Backend> ArBaseline<B> {
    /// The architecture.
    pub fn config(&self) -> &ArBaselineConfig {
        &self.config
    }

    /// Next-token logits [B, L, V] for `tokens` [B, L]: h = x, then per loop
    /// h = blocks(h + x) (no injection before the first loop), causal self-attention.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, len] = tokens.dims();
        let d = self.config.hidden_size as f64;
        let x = burn::tensor::module::embedding(self.embed_tokens.val(), tokens).mul_scalar(d.sqrt());
        // Strict-causal prefix plus the position's own K/V (which the block computes) is
        // exactly causal self-attention when the prefix K/V come from the same h.
        let mask = strict_causal_mask::<B>(b, self.config.num_heads, len, &x.device());
        let mut h = x.clone();
        for r in 0..self.config.loops {
            if r > 0 {
                h = h + x.clone();
            }
            for block in &self.blocks {
                let kv = block.attention.kv(h.clone(), &self.rope, 0);
                h = block.forward(h, &self.rope, LayerContext::Parallel(&kv, &mask));
            }
        }
        self.lm_head.forward(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    fn cfg(layers: usize, loops: usize) -> ArBaselineConfig {
        ArBaselineConfig {
            hidden_size: 16,
            num_heads: 2,
            expansion: 2.0,
            layers,
            loops,
            vocab_size: 7,
            max_len: 8,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
        }
    }

    fn logits(model: &ArBaseline<B>, tokens: &[i64]) -> Vec<f32> {
        let t =
            Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.to_vec(), [1, tokens.len()]), &Default::default());
        model.forward(t).into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_later_token_never_changes_earlier_logits() {
        for (layers, loops) in [(2, 1), (1, 3)] {
            let model = cfg(layers, loops).init_seeded::<B>(&Default::default(), 1);
            let a = logits(&model, &[1, 2, 3, 4, 5]);
            let b = logits(&model, &[1, 2, 3, 6, 0]);
            let v = 7;
            assert_eq!(a[..3 * v], b[..3 * v], "layers {layers} loops {loops}");
            assert_ne!(a[3 * v..4 * v], b[3 * v..4 * v]);
        }
    }

    #[test]
    fn looping_ties_weights_and_changes_the_function() {
        let once = cfg(2, 1).init_seeded::<B>(&Default::default(), 3);
        let thrice = cfg(2, 3).init_seeded::<B>(&Default::default(), 3);
        assert_eq!(once.num_params(), thrice.num_params());
        assert!(cfg(6, 1).init_seeded::<B>(&Default::default(), 3).num_params() > 2 * once.num_params());
        assert_ne!(logits(&once, &[1, 2, 3]), logits(&thrice, &[1, 2, 3]));
        assert_eq!(cfg(2, 3).block_evals_per_token(), 6);
        assert_eq!(cfg(2, 3).kv_bytes_per_token(), 2 * 6 * 16 * 4);
    }

    /// A 1-layer, 1-head baseline at one token: attention over itself alone returns its own
    /// V, so the block is rms(h + o(v(h))) then the MLP; checked against the block pieces.
    #[test]
    fn the_first_position_attends_only_to_itself() {
        let model = cfg(1, 1).init_seeded::<B>(&Default::default(), 4);
        let got = logits(&model, &[3]);
        let device = Default::default();
        let x = burn::tensor::module::embedding(
            model.embed_tokens.val(),
            Tensor::<B, 2, Int>::from_data(TensorData::new(vec![3i64], [1, 1]), &device),
        )
        .mul_scalar(4.0);
        let block = &model.blocks[0];
        let att = block.attention.o.forward(block.attention.v.forward(x.clone()));
        let h = crate::layers::rms_norm(x + att, 1e-5);
        let h = crate::layers::rms_norm(h.clone() + block.mlp.forward(h), 1e-5);
        let want = model.lm_head.forward(h).into_data().to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }
}
