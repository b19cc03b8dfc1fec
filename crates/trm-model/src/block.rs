//! The post-norm block and the reasoning module ("the network" of the paper).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

use crate::attention::{Attention, Rope};
use crate::config::TrmConfig;
use crate::kernels::{add_rms_norm, contiguous};
use crate::layers::SwiGlu;

/// One post-norm block: a sequence mixer (attention, or the token-mixing MLP of TRM-MLP)
/// then a channel SwiGLU, each followed by a residual add and parameter-free RMSNorm.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Attention mixer (when `mlp_t` is false).
    pub attention: Option<Attention<B>>,
    /// Token-mixing SwiGLU over the sequence axis (when `mlp_t` is true).
    pub mlp_t: Option<SwiGlu<B>>,
    /// Channel SwiGLU over D.
    pub mlp: SwiGlu<B>,
    eps: f64,
}

impl<B: Backend> Block<B> {
    /// A block with the official init.
    pub fn new(config: &TrmConfig, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let (attention, mlp_t) = if config.mlp_t {
            (None, Some(SwiGlu::new(config.full_seq_len(), config.expansion, rng, device)))
        } else {
            (Some(Attention::new(config.hidden_size, config.num_heads, rng, device)), None)
        };
        let mlp = SwiGlu::new(config.hidden_size, config.expansion, rng, device);
        Self { attention, mlp_t, mlp, eps: config.rms_norm_eps }
    }

    /// h: [B, P+L, D].
    pub fn forward(&self, h: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let h = if let Some(mlp_t) = &self.mlp_t {
            // Mix along the sequence: the norm here runs over the sequence axis, per channel.
            // `contiguous` lays each swapped view out once (a no-op off the CPU backend).
            let t = contiguous(h.swap_dims(1, 2));
            let t = mlp_t.forward_add_rms_norm(t, self.eps);
            contiguous(t.swap_dims(1, 2))
        } else {
            let attention = self.attention.as_ref().expect("a block has attention or mlp_t");
            add_rms_norm(h.clone(), attention.forward(h, rope), self.eps)
        };
        self.mlp.forward_add_rms_norm(h, self.eps)
    }
}

/// The single network of TRM: `net(h, injection) = blocks(h + injection)`.
///
/// Called as `net(z, y + x)` for a latent update and `net(y, z)` for an answer update; the
/// same weights do both (the official `L_level`).
#[derive(Module, Debug)]
pub struct ReasoningModule<B: Backend> {
    /// The blocks, applied in order.
    pub blocks: Vec<Block<B>>,
}

impl<B: Backend> ReasoningModule<B> {
    /// `config.layers` blocks with the official init.
    pub fn new(config: &TrmConfig, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        Self { blocks: (0..config.layers).map(|_| Block::new(config, rng, device)).collect() }
    }

    /// blocks(h + injection).
    pub fn forward(&self, h: Tensor<B, 3>, injection: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let mut h = h + injection;
        for block in &self.blocks {
            h = block.forward(h, rope);
        }
        h
    }
}
