//! The AR-TRM model: embedding, the shared causal network, the per-token (y, z) recursion,
//! the LM head and the per-token halting head.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::attention::{strict_causal_mask, ArBlock, LayerContext, LayerKv};
use super::cache::KvCache;
use super::{ArTrmConfig, KvSource};
use crate::attention::Rope;
use crate::layers::{float_tensor, param_from, trunc_normal, Linear};

/// The per-token recursive state: answer y and latent z, [B, S, D].
#[derive(Debug, Clone)]
pub struct ArState<B: Backend> {
    /// Answer state y.
    pub y: Tensor<B, 3>,
    /// Latent state z.
    pub z: Tensor<B, 3>,
}

impl<B: Backend> ArState<B> {
    /// The same state without autodiff history.
    pub fn detach(self) -> Self {
        Self { y: self.y.detach(), z: self.z.detach() }
    }
}

/// What the heads read off y after a refinement step.
#[derive(Debug, Clone)]
pub struct ArStepOutput<B: Backend> {
    /// Next-token logits, [B, S, V].
    pub logits: Tensor<B, 3>,
    /// Halt logits, [B, S] (halt when > 0).
    pub halt: Tensor<B, 2>,
}

/// Where the network's attention finds the prefix: the decoding caches (one per layer) or,
/// for teacher forcing, every position's committed K/V per layer and the strict-causal mask.
pub enum NetContext<'a, B: Backend> {
    /// Decoding one position per sequence.
    Cache(&'a mut [KvCache<B>]),
    /// All positions in parallel.
    Parallel(&'a [LayerKv<B>], &'a Tensor<B, 4, Bool>),
}

/// An autoregressive Tiny Recursive Model. Build one with [`ArTrmConfig::init`].
#[derive(Module, Debug)]
pub struct ArTrm<B: Backend> {
    /// Token embedding [V, D] (scaled by sqrt(D) at use).
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// The shared network's blocks.
    pub blocks: Vec<ArBlock<B>>,
    /// Output head [D, V].
    pub lm_head: Linear<B>,
    /// Halting head [D, 1] with bias (weight 0, bias -5 at init, as TRM's Q head).
    pub halt_head: Linear<B>,
    /// Initial y of every token, `[D]`; fixed, never trained.
    pub y_init: Tensor<B, 1>,
    /// Initial z of every token, `[D]`; fixed, never trained.
    pub z_init: Tensor<B, 1>,
    rope: Rope<B>,
    #[module(skip)]
    config: ArTrmConfig,
}

/// The sizes of the parts AR-TRM and the baselines share.
pub(crate) struct DecoderShape {
    pub hidden: usize,
    pub heads: usize,
    pub expansion: f64,
    pub eps: f64,
    pub layers: usize,
    pub vocab: usize,
}

/// Token embedding (std 1/sqrt(D)), the blocks and the LM head, drawn from `rng` in this
/// order with TRM's initialisation (the order fixes which weights a seed gives).
pub(crate) fn decoder_parts<B: Backend>(
    s: DecoderShape,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> (Param<Tensor<B, 2>>, Vec<ArBlock<B>>, Linear<B>) {
    let d = s.hidden;
    let embed = trunc_normal(rng, s.vocab * d, 1.0 / (d as f64).sqrt());
    let embed_tokens = param_from(embed, [s.vocab, d], device);
    let blocks = (0..s.layers).map(|_| ArBlock::new(d, s.heads, s.expansion, s.eps, rng, device)).collect();
    let lm_head = Linear::lecun(d, s.vocab, false, rng, device);
    (embed_tokens, blocks, lm_head)
}

impl ArTrmConfig {
    /// Builds a model with TRM's initialisation, seed 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ArTrm<B> {
        self.init_seeded(device, 0)
    }

    /// Builds a model from `seed`: LeCun truncated normal for every matrix, embedding std
    /// 1/sqrt(D), y/z init truncated normal std 1, halting head weight 0 and bias -5.
    /// Panics on an invalid config; call [`ArTrmConfig::validate`] first for an error.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> ArTrm<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = self.hidden_size;
        let shape = DecoderShape {
            hidden: d,
            heads: self.num_heads,
            expansion: self.expansion,
            eps: self.rms_norm_eps,
            layers: self.layers,
            vocab: self.vocab_size,
        };
        let (embed_tokens, blocks, lm_head) = decoder_parts(shape, &mut rng, device);
        let halt_head = Linear {
            weight: param_from(vec![0.0; d], [d, 1], device),
            bias: Some(param_from(vec![-5.0], [1], device)),
        };
        let vec1 = |v: Vec<f32>| float_tensor::<B, 1>(TensorData::new(v, [d]), device);
        let y_init = vec1(trunc_normal(&mut rng, d, 1.0));
        let z_init = vec1(trunc_normal(&mut rng, d, 1.0));
        let rope = Rope::new(self.head_dim(), self.max_len, self.rope_theta, device);
        ArTrm { embed_tokens, blocks, lm_head, halt_head, y_init, z_init, rope, config: self.clone() }
    }
}

impl<B: Backend> ArTrm<B> {
    /// The architecture.
    pub fn config(&self) -> &ArTrmConfig {
        &self.config
    }

    /// The RoPE tables.
    pub fn rope(&self) -> &Rope<B> {
        &self.rope
    }

    /// The device of the parameters.
    pub fn device(&self) -> B::Device {
        self.embed_tokens.val().device()
    }

    /// Input embedding x [B, S, D] of `tokens` [B, S]: the embedding row scaled by sqrt(D).
    pub fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let d = self.config.hidden_size as f64;
        burn::tensor::module::embedding(self.embed_tokens.val(), tokens).mul_scalar(d.sqrt())
    }

    /// y_init and z_init at each of `len` positions of `batch` sequences.
    pub fn initial_state(&self, batch: usize, len: usize) -> ArState<B> {
        let d = self.config.hidden_size;
        let shape = [batch, len, d];
        ArState {
            y: self.y_init.clone().reshape([1, 1, d]).expand(shape),
            z: self.z_init.clone().reshape([1, 1, d]).expand(shape),
        }
    }

    /// Empty caches, one per layer, for `batch` sequences of up to `max_len` tokens.
    pub fn new_caches(&self, batch: usize) -> Vec<KvCache<B>> {
        let c = &self.config;
        let device = self.device();
        (0..c.layers).map(|_| KvCache::new(batch, c.num_heads, c.max_len, c.head_dim(), &device)).collect()
    }

    /// The network: blocks(h + injection), attending through `ctx`.
    pub fn net(&self, h: Tensor<B, 3>, injection: Tensor<B, 3>, ctx: &mut NetContext<'_, B>) -> Tensor<B, 3> {
        let mut h = h + injection;
        for (l, block) in self.blocks.iter().enumerate() {
            let layer = match ctx {
                NetContext::Cache(caches) => LayerContext::Cache(&mut caches[l]),
                NetContext::Parallel(kv, mask) => LayerContext::Parallel(&kv[l], mask),
            };
            h = block.forward(h, &self.rope, layer);
        }
        h
    }

    /// `cycles` cycles of n times `z = net(z, y + x)` then `y = net(y, z)`.
    pub fn refine(
        &self,
        x: &Tensor<B, 3>,
        state: ArState<B>,
        cycles: usize,
        ctx: &mut NetContext<'_, B>,
    ) -> ArState<B> {
        let ArState { mut y, mut z } = state;
        for _ in 0..cycles {
            let injection = y.clone() + x.clone();
            for _ in 0..self.config.n_cycles {
                z = self.net(z, injection.clone(), ctx);
            }
            y = self.net(y, z.clone(), ctx);
        }
        ArState { y, z }
    }

    /// The heads on y [B, S, D].
    pub fn heads(&self, y: Tensor<B, 3>) -> ArStepOutput<B> {
        let [b, s, _] = y.dims();
        ArStepOutput { logits: self.lm_head.forward(y.clone()), halt: self.halt_head.forward(y).reshape([b, s]) }
    }

    /// Per-layer K/V that the memory `m` [B, S, D] at positions start..start+S exposes.
    pub fn memory_kv(&self, m: Tensor<B, 3>, start: usize) -> Vec<LayerKv<B>> {
        self.blocks.iter().map(|b| b.attention.kv(m.clone(), &self.rope, start)).collect()
    }

    /// The memory a committed token exposes: its final y, or its embedding x (per `kv_source`).
    pub fn commit_source(&self, x: Tensor<B, 3>, y: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.config.kv_source {
            KvSource::RefinedY => y,
            KvSource::Embedding => x,
        }
    }

    /// Commits the current token (embedding `x` [B, 1, D], final `y` [B, 1, D]): writes its
    /// K/V into every layer's scratch slot and advances the caches.
    pub fn commit(&self, caches: &mut [KvCache<B>], x: Tensor<B, 3>, y: Tensor<B, 3>) {
        let pos = caches[0].len();
        for (cache, kv) in caches.iter_mut().zip(self.memory_kv(self.commit_source(x, y), pos)) {
            cache.commit(kv.k, kv.v);
        }
    }

    /// One refinement step (T cycles) of the tokens at the caches' current position, x [B, 1, D].
    pub fn decode_step(&self, x: &Tensor<B, 3>, state: ArState<B>, caches: &mut [KvCache<B>]) -> ArState<B> {
        self.refine(x, state, self.config.t_cycles, &mut NetContext::Cache(caches))
    }

    /// Teacher-forced parallel refinement of all L positions of `x` [B, L, D], given the
    /// `memory` [B, L, D] each position commits (its final y as decoding produced it, see
    /// [`super::commit_states`], or x itself for [`KvSource::Embedding`]): `steps`
    /// refinement steps from the initial state, the heads after each. Position t attends to
    /// the committed K/V of positions before t and to itself, exactly as in decoding.
    pub fn teacher_forced(&self, x: &Tensor<B, 3>, memory: Tensor<B, 3>, steps: usize) -> Vec<ArStepOutput<B>> {
        let [b, len, _] = x.dims();
        let kv = self.memory_kv(memory, 0);
        let mask = strict_causal_mask::<B>(b, self.config.num_heads, len, &x.device());
        let mut state = self.initial_state(b, len);
        let mut outs = Vec::with_capacity(steps);
        for _ in 0..steps {
            state = self.refine(x, state, self.config.t_cycles, &mut NetContext::Parallel(&kv, &mask));
            outs.push(self.heads(state.y.clone()));
        }
        outs
    }
}
