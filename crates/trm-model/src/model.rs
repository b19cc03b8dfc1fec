//! The Tiny Recursive Model: input embedding, the recursion over (y, z), and the heads.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::DType;
use burn::tensor::{Bool, Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::attention::Rope;
use crate::block::ReasoningModule;
use crate::config::{PosEncoding, TrmConfig};
use crate::layers::{float_tensor, param_from, trunc_normal, Linear};

/// The official code scales learned positions by this literal, not by an exact 1/sqrt(2).
#[allow(clippy::approx_constant, clippy::excessive_precision)]
pub(crate) const LEARNED_POS_SCALE: f64 = 0.707106781;

/// The recursive state carried between supervision steps: answer y and latent z,
/// each [B, P+L, D] (official names z_H and z_L).
#[derive(Debug, Clone)]
pub struct Carry<B: Backend> {
    /// Answer state y (z_H).
    pub y: Tensor<B, 3>,
    /// Latent state z (z_L).
    pub z: Tensor<B, 3>,
}

impl<B: Backend> Carry<B> {
    /// Keeps the rows `index` (for batch compaction).
    pub fn select(self, index: Tensor<B, 1, Int>) -> Self {
        Self { y: self.y.select(0, index.clone()), z: self.z.select(0, index) }
    }

    /// The samples `rows`, in order (a view where the backend has them).
    pub fn narrow(&self, rows: std::ops::Range<usize>) -> Self {
        Self {
            y: self.y.clone().narrow(0, rows.start, rows.len()),
            z: self.z.clone().narrow(0, rows.start, rows.len()),
        }
    }

    /// The carries of consecutive groups of samples as one, in order.
    pub fn cat(parts: Vec<Self>) -> Self {
        let (y, z) = parts.into_iter().map(|c| (c.y, c.z)).unzip();
        Self { y: Tensor::cat(y, 0), z: Tensor::cat(z, 0) }
    }
}

/// What the heads read off y after a supervision step.
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// Token logits with the puzzle prefix dropped, [B, L, V].
    pub logits: Tensor<B, 3>,
    /// Halt logit from prefix position 0, `[B]`.
    pub q_halt: Tensor<B, 1>,
    /// Continue logit, `[B]` (used only when `no_act_continue` is false).
    pub q_continue: Tensor<B, 1>,
}

/// Outputs of one supervision step.
#[derive(Debug, Clone)]
pub struct StepOutput<B: Backend, C: Backend = B> {
    /// The heads' outputs (with gradients in training).
    pub heads: HeadOutput<B>,
    /// The new carry, detached (on the inner backend in training).
    pub carry: Carry<C>,
}

/// A Tiny Recursive Model. Build one with [`TrmConfig::init`].
#[derive(Module, Debug)]
pub struct Trm<B: Backend> {
    /// Token embedding [V, D] (scaled by sqrt(D) at use).
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// Learned position table [P+L, D] when `pos_encodings = learned`.
    pub embed_pos: Option<Param<Tensor<B, 2>>>,
    /// The network.
    pub net: ReasoningModule<B>,
    /// Output head [D, V].
    pub lm_head: Linear<B>,
    /// Q head [D, 2] with bias: (halt, continue).
    pub q_head: Linear<B>,
    /// Puzzle-embedding table [num_puzzle_identifiers, puzzle_emb_ndim]. A buffer, not a
    /// parameter: the trainer updates it with its own sign-SGD on the rows a batch touches.
    pub puzzle_emb: Option<Tensor<B, 2>>,
    /// Initial y (H_init), `[D]`; fixed, never trained.
    pub h_init: Tensor<B, 1>,
    /// Initial z (L_init), `[D]`; fixed, never trained.
    pub l_init: Tensor<B, 1>,
    rope: Option<Rope<B>>,
    #[module(skip)]
    config: TrmConfig,
}

impl TrmConfig {
    /// Builds a model with the official initialisation, seed 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Trm<B> {
        self.init_seeded(device, 0)
    }

    /// Builds a model with the official initialisation from `seed`: LeCun truncated normal
    /// for every matrix, token embedding std 1/sqrt(D), zero puzzle embeddings, H_init and
    /// L_init truncated normal with std 1, Q head weight 0 and bias -5.
    ///
    /// Panics if the config is invalid; call [`TrmConfig::validate`] first for an error.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> Trm<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = self.hidden_size;
        let embed_std = 1.0 / (d as f64).sqrt();
        let embed_tokens =
            param_from(trunc_normal(&mut rng, self.vocab_size * d, embed_std), [self.vocab_size, d], device);
        let embed_pos = (self.pos_encodings == PosEncoding::Learned).then(|| {
            let n = self.full_seq_len();
            param_from(trunc_normal(&mut rng, n * d, embed_std), [n, d], device)
        });
        let net = ReasoningModule::new(self, &mut rng, device);
        let lm_head = Linear::lecun(d, self.vocab_size, false, &mut rng, device);
        let q_head = Linear {
            weight: param_from(vec![0.0; d * 2], [d, 2], device),
            bias: Some(param_from(vec![-5.0; 2], [2], device)),
        };
        let puzzle_emb = (self.puzzle_emb_ndim > 0)
            .then(|| Tensor::zeros([self.num_puzzle_identifiers, self.puzzle_emb_ndim], device));
        let vec1 = |v: Vec<f32>| float_tensor::<B, 1>(burn::tensor::TensorData::new(v, [d]), device);
        let h_init = vec1(trunc_normal(&mut rng, d, 1.0));
        let l_init = vec1(trunc_normal(&mut rng, d, 1.0));
        let rope = (self.pos_encodings == PosEncoding::Rope)
            .then(|| Rope::new(self.head_dim(), self.full_seq_len(), self.rope_theta, device));
        Trm { embed_tokens, embed_pos, net, lm_head, q_head, puzzle_emb, h_init, l_init, rope, config: self.clone() }
    }
}

impl<B: Backend> Trm<B> {
    /// The architecture this model was built with.
    pub fn config(&self) -> &TrmConfig {
        &self.config
    }

    /// The same model computing in `dtype` (for example float64, to measure how far float32
    /// rounding moves the outputs). Trainable parameters stay leaves that require gradients.
    pub fn cast(self, dtype: DType) -> Self {
        struct Cast(DType);
        impl<B: Backend> ModuleMapper<B> for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, tensor, mapper) = param.consume();
                let grad = tensor.is_require_grad();
                let cast = tensor.cast(self.0).detach();
                Param::from_mapped_value(id, if grad { cast.require_grad() } else { cast }, mapper)
            }
        }
        let mut m = self.map(&mut Cast(dtype));
        m.puzzle_emb = m.puzzle_emb.map(|t| t.cast(dtype));
        m.h_init = m.h_init.cast(dtype);
        m.l_init = m.l_init.cast(dtype);
        m.rope = m.rope.map(|r| r.cast(dtype));
        m
    }

    /// Dense trainable parameters (the puzzle-embedding table and H_init/L_init excluded, as
    /// the official `num_params`).
    pub fn num_dense_params(&self) -> usize {
        self.num_params()
    }

    /// Puzzle-embedding rows for `puzzle_ids` `[B]` -> `[B, ndim]`; `None` without puzzle embeddings.
    pub fn puzzle_rows(&self, puzzle_ids: Tensor<B, 1, Int>) -> Option<Tensor<B, 2>> {
        self.puzzle_emb.as_ref().map(|table| table.clone().select(0, puzzle_ids))
    }

    /// Input embedding x [B, P+L, D]: scaled token embeddings behind the puzzle prefix (its
    /// rows zero-padded to P*D), plus learned positions when configured.
    ///
    /// `puzzle_rows` are the rows of the puzzle-embedding table for this batch (see
    /// [`Trm::puzzle_rows`]); the trainer passes its own leaf tensor to get their gradient.
    pub fn input_embeddings(&self, inputs: Tensor<B, 2, Int>, puzzle_rows: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let cfg = self.config();
        let (d, p) = (cfg.hidden_size, cfg.prefix_len());
        let mut x = burn::tensor::module::embedding(self.embed_tokens.val(), inputs);
        let [b, _, _] = x.dims();
        if cfg.puzzle_emb_ndim > 0 {
            let rows = puzzle_rows.expect("this model has puzzle embeddings: pass the batch's puzzle rows");
            let pad = p * d - cfg.puzzle_emb_ndim;
            let rows = if pad > 0 {
                Tensor::cat(vec![rows.clone(), Tensor::zeros([b, pad], (&rows.device(), rows.dtype()))], 1)
            } else {
                rows
            };
            x = Tensor::cat(vec![rows.reshape([b, p, d]), x], 1);
        }
        if let Some(pos) = &self.embed_pos {
            x = (x + pos.val().unsqueeze::<3>()).mul_scalar(LEARNED_POS_SCALE);
        }
        x.mul_scalar((d as f64).sqrt())
    }

    /// The initial carry for `batch` samples: H_init and L_init at every position.
    pub fn initial_carry(&self, batch: usize) -> Carry<B> {
        let cfg = self.config();
        let shape = [batch, cfg.full_seq_len(), cfg.hidden_size];
        Carry {
            y: self.h_init.clone().reshape([1, 1, cfg.hidden_size]).expand(shape),
            z: self.l_init.clone().reshape([1, 1, cfg.hidden_size]).expand(shape),
        }
    }

    /// Resets the samples where `reset` `[B]` is true to the initial carry.
    pub fn reset_carry(&self, reset: Tensor<B, 1, Bool>, carry: Carry<B>) -> Carry<B> {
        let [b, s, d] = carry.y.dims();
        let init = self.initial_carry(b);
        let mask = reset.reshape([b, 1, 1]).expand([b, s, d]);
        Carry { y: carry.y.mask_where(mask.clone(), init.y), z: carry.z.mask_where(mask, init.z) }
    }

    /// The RoPE tables, when the model uses rotary positions (pass them to `net.forward`).
    pub fn rope(&self) -> Option<&Rope<B>> {
        self.rope.as_ref()
    }

    /// One latent cycle: n times `z = net(z, y + x)`, then `y = net(y, z)`.
    pub fn latent_recursion(&self, x: &Tensor<B, 3>, y: Tensor<B, 3>, z: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let rope = self.rope.as_ref();
        let mut z = z;
        // y + x is the same for all n latent updates (the official code re-adds it each time).
        let injection = y.clone() + x.clone();
        for _ in 0..self.config().n_cycles {
            z = self.net.forward(z, injection.clone(), rope);
        }
        let y = self.net.forward(y, z.clone(), rope);
        (y, z)
    }

    /// `cycles` latent cycles on this backend. On the CPU backend without autodiff
    /// (inference, the no-grad cycles of training) the batch is split across the threads,
    /// each running whole network calls on its samples; the results are the same bits.
    pub fn deep_recursion(&self, x: &Tensor<B, 3>, carry: Carry<B>, cycles: usize) -> Carry<B> {
        #[cfg(feature = "cpu-kernels")]
        if let Some(out) = crate::kernels::split_deep_recursion(self, x, &carry, cycles) {
            return out;
        }
        self.deep_recursion_whole(x, carry, cycles)
    }

    /// [`Trm::deep_recursion`] on the whole batch at once.
    pub(crate) fn deep_recursion_whole(&self, x: &Tensor<B, 3>, carry: Carry<B>, cycles: usize) -> Carry<B> {
        let (mut y, mut z) = (carry.y, carry.z);
        for _ in 0..cycles {
            (y, z) = self.latent_recursion(x, y, z);
        }
        Carry { y, z }
    }

    /// The heads on y: logits over the sequence (prefix dropped) and Q logits at position 0.
    pub fn heads(&self, y: Tensor<B, 3>) -> HeadOutput<B> {
        let cfg = self.config();
        let [b, _, d] = y.dims();
        let logits = self.lm_head.forward(y.clone().narrow(1, cfg.prefix_len(), cfg.seq_len));
        let q = self.q_head.forward(y.narrow(1, 0, 1).reshape([b, d]));
        HeadOutput {
            q_halt: q.clone().narrow(1, 0, 1).reshape([b]),
            q_continue: q.narrow(1, 1, 1).reshape([b]),
            logits,
        }
    }

    /// One supervision step without gradients: T cycles from `carry`, then the heads.
    /// Run this on a non-autodiff backend (inference, evaluation, `model.valid()`).
    pub fn supervision_step(&self, x: &Tensor<B, 3>, carry: Carry<B>) -> StepOutput<B> {
        let carry = self.deep_recursion(x, carry, self.config().t_cycles);
        StepOutput { heads: self.heads(carry.y.clone()), carry }
    }
}

/// One supervision step for training: the first T-1 cycles run on the inner backend (no
/// graph is built, so memory does not grow with T), the last cycle with autodiff.
/// `x` is the input embedding with its graph; the carry comes and goes detached.
///
/// Pass `inner = model.valid()`, made once per optimizer step.
pub fn supervision_step_train<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    x: Tensor<B, 3>,
    carry: Carry<B::InnerBackend>,
) -> StepOutput<B, B::InnerBackend> {
    let t = model.config().t_cycles;
    let carry = inner.deep_recursion(&x.clone().inner(), carry, t - 1);
    let (y, z) = model.latent_recursion(&x, Tensor::from_inner(carry.y), Tensor::from_inner(carry.z));
    let new_carry = Carry { y: y.clone().inner(), z: z.inner() };
    StepOutput { heads: model.heads(y), carry: new_carry }
}

/// HRM's 1-step gradient (for the ablation): everything but the last z update and the y
/// update runs without gradients.
pub fn one_step_train<B: AutodiffBackend>(
    model: &Trm<B>,
    inner: &Trm<B::InnerBackend>,
    x: Tensor<B, 3>,
    carry: Carry<B::InnerBackend>,
) -> StepOutput<B, B::InnerBackend> {
    let cfg = model.config();
    let x_inner = x.clone().inner();
    let c = inner.deep_recursion(&x_inner, carry, cfg.t_cycles - 1);
    let (y, mut z) = (c.y, c.z);
    // y does not change while z is updated: y + x formed once, as in `latent_recursion`.
    let y_plus_x = y.clone() + x_inner;
    for _ in 1..cfg.n_cycles {
        z = inner.net.forward(z, y_plus_x.clone(), inner.rope());
    }
    let y = Tensor::<B, 3>::from_inner(y);
    let z = model.net.forward(Tensor::from_inner(z), y.clone() + x, model.rope());
    let y = model.net.forward(y, z.clone(), model.rope());
    StepOutput { heads: model.heads(y.clone()), carry: Carry { y: y.inner(), z: z.inner() } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn paper_parameter_counts() {
        let device = Default::default();
        // Reference §1.9.
        assert_eq!(TrmConfig::sudoku_att().init::<B>(&device).num_dense_params(), 6_828_034);
        assert_eq!(TrmConfig::sudoku_mlp().init::<B>(&device).num_dense_params(), 5_028_866);
        let mut maze = TrmConfig::sudoku_att();
        maze.vocab_size = 6;
        maze.seq_len = 900;
        assert_eq!(maze.init::<B>(&device).num_dense_params(), 6_822_914);
    }

    #[test]
    fn init_follows_the_official_rules() {
        let device = Default::default();
        let mut cfg = TrmConfig::sudoku_att();
        cfg.hidden_size = 64;
        cfg.num_heads = 4;
        cfg.puzzle_emb_ndim = 64;
        let m = cfg.init::<B>(&device);
        let q_w = m.q_head.weight.val().into_data().to_vec::<f32>().unwrap();
        let q_b = m.q_head.bias.as_ref().unwrap().val().into_data().to_vec::<f32>().unwrap();
        assert!(q_w.iter().all(|&v| v == 0.0));
        assert_eq!(q_b, vec![-5.0, -5.0]);
        assert!(m.puzzle_emb.as_ref().unwrap().clone().abs().max().into_scalar() == 0.0);
        // Same seed, same weights; different seed, different weights.
        let a = cfg.init_seeded::<B>(&device, 1).lm_head.weight.val().into_data();
        let b = cfg.init_seeded::<B>(&device, 1).lm_head.weight.val().into_data();
        let c = cfg.init_seeded::<B>(&device, 2).lm_head.weight.val().into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn input_embedding_prefix_padding_and_learned_positions() {
        let device = Default::default();
        let mut cfg = TrmConfig::sudoku_att();
        cfg.hidden_size = 4;
        cfg.num_heads = 2;
        cfg.seq_len = 3;
        cfg.vocab_size = 5;
        cfg.puzzle_emb_ndim = 6; // not a multiple of D: ceil(6/4) = 2 prefix positions
        cfg.puzzle_emb_len = 0;
        cfg.num_puzzle_identifiers = 2;
        cfg.pos_encodings = PosEncoding::Learned;
        let mut m = cfg.init::<B>(&device);
        let table: Vec<f32> = (0..12).map(|i| i as f32 / 10.0).collect();
        m.puzzle_emb = Some(Tensor::from_data(burn::tensor::TensorData::new(table.clone(), [2, 6]), &device));
        let inputs = Tensor::<B, 2, Int>::from_data(burn::tensor::TensorData::new(vec![1i64, 4, 0], [1, 3]), &device);
        let ids = Tensor::<B, 1, Int>::from_data(burn::tensor::TensorData::new(vec![1i64], [1]), &device);
        let x = m.input_embeddings(inputs, m.puzzle_rows(ids));
        assert_eq!(x.dims(), [1, 5, 4]);
        let x = x.into_data().to_vec::<f32>().unwrap();
        let pos = m.embed_pos.as_ref().unwrap().val().into_data().to_vec::<f32>().unwrap();
        let tok = m.embed_tokens.val().into_data().to_vec::<f32>().unwrap();
        // Prefix: row 1 of the table (6 values) then 2 zeros, as 2 positions of width 4.
        let mut prefix = table[6..12].to_vec();
        prefix.extend([0.0, 0.0]);
        for i in 0..8 {
            let want = LEARNED_POS_SCALE as f32 * (prefix[i] + pos[i]) * 2.0;
            assert!((x[i] - want).abs() < 1e-6, "prefix {i}: {} vs {want}", x[i]);
        }
        // Token 4 at sequence position 1 = full position 3.
        for c in 0..4 {
            let want = LEARNED_POS_SCALE as f32 * (tok[4 * 4 + c] + pos[3 * 4 + c]) * 2.0;
            assert!((x[3 * 4 + c] - want).abs() < 1e-6);
        }
    }

    #[test]
    fn reset_carry_resets_only_flagged_samples() {
        let device = Default::default();
        let mut cfg = TrmConfig::sudoku_mlp();
        cfg.hidden_size = 8;
        cfg.seq_len = 2;
        cfg.puzzle_emb_ndim = 8;
        let m = cfg.init::<B>(&device);
        let shape = [2, cfg.full_seq_len(), 8];
        let carry = Carry { y: Tensor::<B, 3>::ones(shape, &device), z: Tensor::<B, 3>::ones(shape, &device) };
        let reset = Tensor::<B, 1, Bool>::from_data(burn::tensor::TensorData::new(vec![false, true], [2]), &device);
        let out = m.reset_carry(reset, carry);
        let y = out.y.into_data().to_vec::<f32>().unwrap();
        let h = m.h_init.clone().into_data().to_vec::<f32>().unwrap();
        let per = cfg.full_seq_len() * 8;
        assert!(y[..per].iter().all(|&v| v == 1.0));
        for (i, v) in y[per..].iter().enumerate() {
            assert_eq!(*v, h[i % 8]);
        }
    }
}
