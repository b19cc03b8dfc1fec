//! Autoregressive TRM (AR-TRM): a causal decoder that refines each next token recursively.
//!
//! For the token at position t, the prefix 0..t is fixed and exposes one committed K/V
//! entry per layer. The current token's answer y and latent z are refined with the TRM
//! recursion — n times `z = net(z + y + x)`, then `y = net(y + z)`, T cycles per refinement
//! step, up to `k_max` steps — where every attention inside `net` attends to the committed
//! prefix plus the current token itself (its scratch slot). After each step the LM head
//! reads the logits off y and the halting head a halt logit; when the token halts (or at
//! `k_max`) it is emitted and its K/V are committed. See docs/ar-trm.md for the design.
//!
//! | piece | where |
//! |---|---|
//! | config, KV source choice | [`ArTrmConfig`], [`KvSource`] |
//! | preallocated cache with a scratch slot | [`KvCache`] |
//! | causal attention and blocks | [`attention`] |
//! | model, decoding steps, teacher-forced parallel forward | [`ArTrm`] |
//! | greedy decoding with halting | [`generate`] |
//! | training forward (deep supervision, no-grad early cycles) | [`ar_train_losses`] |
//! | baselines: causal transformer, looped (tied) blocks | [`ArBaseline`] |

pub mod attention;
pub mod baseline;
pub mod bench;
mod bench_fit;
pub mod cache;
pub mod decode;
pub mod model;
pub mod train;

pub use attention::{ArBlock, CausalAttention, LayerKv};
pub use baseline::{ArBaseline, ArBaselineConfig};
pub use cache::KvCache;
pub use decode::{commit_states, decode_position, generate, generate_until, CommitPass, Generation, StepPolicy};
pub use model::{ArState, ArStepOutput, ArTrm, NetContext};
pub use train::{ar_step_loss, ar_train_losses, scored_lm_loss, ArStepLoss, ScoredLm};

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Which K/V a committed token exposes to the tokens after it (one entry per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KvSource {
    /// Each layer's K/V projections of the token's final refined answer y (with RoPE at the
    /// token's position). Later tokens see the result of this token's reasoning, as in the
    /// Universal Transformer's state copying and the Feedback Transformer's memory. The
    /// committed K/V depend on the prefix, so teacher forcing must first run the
    /// refinement position by position ([`commit_states`]).
    #[default]
    RefinedY,
    /// Each layer's K/V projections of the token embedding x only. Later tokens see only the
    /// tokens, never their refinement, so every token re-derives what it needs from the raw
    /// prefix (as TRM re-reads x). The committed K/V do not depend on the prefix: teacher
    /// forcing is fully parallel.
    Embedding,
}

/// The architecture of an AR-TRM model. Build one with [`ArTrmConfig::init`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArTrmConfig {
    /// Hidden width D.
    pub hidden_size: usize,
    /// Attention heads (D must be a multiple; head_dim must be even for RoPE).
    pub num_heads: usize,
    /// SwiGLU expansion (inner width rounded up to 256 as in TRM).
    pub expansion: f64,
    /// Blocks in the shared network.
    pub layers: usize,
    /// T: cycles per refinement step.
    pub t_cycles: usize,
    /// n: latent updates per cycle.
    pub n_cycles: usize,
    /// K_max: the most refinement steps per token.
    pub k_max: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence (prompt plus generated tokens): the KV cache and RoPE table size.
    pub max_len: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Which K/V a committed token exposes.
    #[serde(default)]
    pub kv_source: KvSource,
}

impl Default for ArTrmConfig {
    /// A small default: D 128, 4 heads, 2 layers, T 3, n 6, K_max 8.
    fn default() -> Self {
        Self {
            hidden_size: 128,
            num_heads: 4,
            expansion: 4.0,
            layers: 2,
            t_cycles: 3,
            n_cycles: 6,
            k_max: 8,
            vocab_size: 16,
            max_len: 64,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            kv_source: KvSource::RefinedY,
        }
    }
}

/// D must be a positive multiple of the heads, and the head width even (RoPE rotates pairs).
pub(crate) fn check_heads(hidden_size: usize, num_heads: usize) -> Result<(), ModelError> {
    if hidden_size == 0 || num_heads == 0 || !hidden_size.is_multiple_of(num_heads) {
        return Err(ModelError::Config(format!(
            "hidden_size {hidden_size} must be a positive multiple of num_heads {num_heads}"
        )));
    }
    if !(hidden_size / num_heads).is_multiple_of(2) {
        return Err(ModelError::Config(format!("head_dim {} must be even for RoPE", hidden_size / num_heads)));
    }
    Ok(())
}

impl ArTrmConfig {
    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        check_heads(self.hidden_size, self.num_heads)?;
        for (name, v) in [
            ("layers", self.layers),
            ("t_cycles", self.t_cycles),
            ("n_cycles", self.n_cycles),
            ("k_max", self.k_max),
            ("vocab_size", self.vocab_size),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        Ok(())
    }

    /// Network evaluations per refinement step: T (n + 1).
    pub fn net_calls_per_step(&self) -> usize {
        self.t_cycles * (self.n_cycles + 1)
    }

    /// Bytes one committed token occupies in the KV cache at 4-byte floats: K and V, D wide, per layer.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.layers * self.hidden_size * 4
    }
}
