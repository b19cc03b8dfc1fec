//! Optimizers: AdamATan2 (the official dense optimizer) as a Burn [`SimpleOptimizer`],
//! Burn's AdamW as an option, sign-SGD for the puzzle-embedding rows, and the learning-rate
//! schedule (linear warmup, then cosine to `lr_min_ratio`).

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use trm_model::checkpoint::fnv1a;
use trm_model::Trm;

use crate::config::{OptimConfig, OptimizerKind};
use crate::error::TrainError;

/// AdamATan2 (pip `adam-atan2` 0.0.3, the official optimizer), per element at step t:
/// θ ← θ(1 − lr·wd); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
/// θ ← θ − lr/(1 − β1ᵗ) · atan2(m, √v / √(1 − β2ᵗ)). No epsilon: atan2 is bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamAtan2 {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f64,
}

/// Per-tensor AdamATan2 state.
#[derive(burn::record::Record, Clone)]
pub struct AdamAtan2State<B: Backend, const D: usize> {
    /// Steps taken.
    pub step: usize,
    /// First moment.
    pub m: Tensor<B, D>,
    /// Second moment.
    pub v: Tensor<B, D>,
}

impl<B: Backend> SimpleOptimizer<B> for AdamAtan2 {
    type State<const D: usize> = AdamAtan2State<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (step, m, v) = match state {
            Some(s) => (s.step + 1, s.m, s.v),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let m = m.mul_scalar(self.beta1) + grad.clone().mul_scalar(1.0 - self.beta1);
        let v = v.mul_scalar(self.beta2) + grad.square().mul_scalar(1.0 - self.beta2);
        let bc1 = 1.0 - self.beta1.powi(step as i32);
        let bc2_sqrt = (1.0 - self.beta2.powi(step as i32)).sqrt();
        let decayed = if self.weight_decay == 0.0 { tensor } else { tensor.mul_scalar(1.0 - lr * self.weight_decay) };
        let update = m.clone().atan2(v.clone().sqrt().div_scalar(bc2_sqrt));
        let new = decayed - update.mul_scalar(lr / bc1);
        (new, Some(AdamAtan2State { step, m, v }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AdamAtan2State { step: state.step, m: state.m.to_device(device), v: state.v.to_device(device) }
    }
}

/// The dense-weight optimizer of a run (state kept per parameter id).
pub enum DenseOptimizer<B: AutodiffBackend> {
    /// AdamATan2.
    AdamAtan2(OptimizerAdaptor<AdamAtan2, Trm<B>, B>),
    /// AdamW.
    AdamW(OptimizerAdaptor<AdamW, Trm<B>, B>),
}

type Rec = BinBytesRecorder<FullPrecisionSettings>;

fn bytes_of<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>, TrainError> {
    Recorder::<B>::record(&Rec::default(), record, ())
        .map_err(|e| TrainError::checkpoint("optimizer state", e.to_string()))
}

fn from_bytes<B: Backend, R: Record<B>>(bytes: &[u8], device: &B::Device) -> Result<R, TrainError> {
    // Burn 0.21's BinBytesRecorder unwraps its decoder's error, so bytes that do not decode
    // (a checkpoint from before records were sealed, cut short; a record of another model)
    // panic inside it: that panic becomes this error, its message kept off stderr.
    let load = || Recorder::<B>::load(&Rec::default(), bytes.to_vec(), device);
    match catch_quietly(std::panic::AssertUnwindSafe(load)) {
        Ok(loaded) => loaded.map_err(|e| TrainError::checkpoint("saved state", e.to_string())),
        Err(why) => Err(TrainError::checkpoint("saved state", format!("truncated or corrupt ({why})"))),
    }
}

/// Runs `f`, turning a panic into the first line of its message; while it runs, panics print
/// nothing (the hook is process-wide: used only while a checkpoint loads).
fn catch_quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(f);
    std::panic::set_hook(previous);
    out.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Burn's message is `called `Result::unwrap()` on an `Err` value: OtherString("<the
        // decoder's error>\n<a note on formats before 0.14>")`: keep the decoder's error.
        let message = message.trim_start_matches("called `Result::unwrap()` on an `Err` value: ");
        let message = message.trim_start_matches("OtherString(\"");
        message.split("\\n").next().unwrap_or_default().lines().next().unwrap_or_default().to_string()
    })
}

impl<B: AutodiffBackend> DenseOptimizer<B> {
    /// The optimizer the config asks for.
    pub fn new(cfg: &OptimConfig) -> Self {
        match cfg.optimizer {
            OptimizerKind::AdamAtan2 => DenseOptimizer::AdamAtan2(OptimizerAdaptor::from(AdamAtan2 {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                weight_decay: cfg.weight_decay,
            })),
            OptimizerKind::AdamW => DenseOptimizer::AdamW(
                AdamWConfig::new()
                    .with_beta_1(cfg.beta1 as f32)
                    .with_beta_2(cfg.beta2 as f32)
                    .with_epsilon(1e-8)
                    .with_weight_decay(cfg.weight_decay as f32)
                    .init::<B, Trm<B>>(),
            ),
        }
    }

    /// One step on the parameters that have a gradient in `grads`.
    pub fn step(&mut self, lr: f64, model: Trm<B>, grads: GradientsParams) -> Trm<B> {
        match self {
            DenseOptimizer::AdamAtan2(o) => o.step(lr, model, grads),
            DenseOptimizer::AdamW(o) => o.step(lr, model, grads),
        }
    }

    /// The state as bytes (keyed by parameter id; restore the model's ids with it).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        match self {
            DenseOptimizer::AdamAtan2(o) => bytes_of::<B, _>(o.to_record()),
            DenseOptimizer::AdamW(o) => bytes_of::<B, _>(o.to_record()),
        }
    }

    /// Restores the state saved by [`DenseOptimizer::to_bytes`].
    pub fn load_bytes(self, bytes: &[u8], device: &B::Device) -> Result<Self, TrainError> {
        Ok(match self {
            DenseOptimizer::AdamAtan2(o) => {
                DenseOptimizer::AdamAtan2(o.load_record(from_bytes::<B, _>(bytes, device)?))
            }
            DenseOptimizer::AdamW(o) => DenseOptimizer::AdamW(o.load_record(from_bytes::<B, _>(bytes, device)?)),
        })
    }
}

/// Model weights (parameter ids included) as bytes, for exact resume.
pub fn module_to_bytes<B: Backend, M: burn::module::Module<B>>(module: M) -> Result<Vec<u8>, TrainError> {
    bytes_of::<B, _>(module.into_record())
}

/// Loads weights saved by [`module_to_bytes`] into `module` (ids restored too).
///
/// Weights of another architecture are an error: Burn loads a tensor of another shape
/// silently and panics on another number of layers, so the load runs under
/// `catch_quietly` and every parameter's shape is compared with `module`'s afterwards.
pub fn module_from_bytes<B: Backend, M: burn::module::Module<B>>(
    module: M,
    bytes: &[u8],
    device: &B::Device,
) -> Result<M, TrainError> {
    let record = from_bytes::<B, M::Record>(bytes, device)?;
    let expected = param_shapes(&module);
    let mismatch = |why: String| {
        TrainError::checkpoint("saved state", format!("the weights are not of this model's architecture ({why})"))
    };
    let loaded = catch_quietly(std::panic::AssertUnwindSafe(|| module.load_record(record))).map_err(mismatch)?;
    let got = param_shapes(&loaded);
    if got.len() != expected.len() {
        return Err(mismatch(format!("{} parameter tensors, the model has {}", got.len(), expected.len())));
    }
    if let Some((i, (g, e))) = got.iter().zip(&expected).enumerate().find(|(_, (g, e))| g != e) {
        return Err(mismatch(format!("parameter tensor {i} has shape {g:?}, the model needs {e:?}")));
    }
    Ok(loaded)
}

/// The shape of every float parameter of `module`, in visiting order.
fn param_shapes<B: Backend, M: burn::module::Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut v = Shapes(Vec::new());
    module.visit(&mut v);
    v.0
}

/// A record file: `magic`, the payload's length and FNV-1a hash (little-endian u64s), then
/// the payload (a Burn record). Burn's recorder panics on a truncated record and loads a
/// damaged one silently, so [`unseal`] checks length and hash first.
pub(crate) fn seal(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend((payload.len() as u64).to_le_bytes());
    out.extend(fnv1a(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a file [`seal`] wrote; `Ok(None)` when `bytes` does not begin with `magic`.
pub(crate) fn unseal<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Result<Option<&'a [u8]>, String> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Ok(None);
    }
    if bytes.len() < 24 {
        return Err(format!("truncated: {} bytes, the header alone takes 24", bytes.len()));
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let payload = &bytes[24..];
    if word(8) != payload.len() as u64 {
        return Err(format!("truncated or padded: {} payload bytes, the header says {}", payload.len(), word(8)));
    }
    if word(16) != fnv1a(payload) {
        return Err("corrupt: the payload hash does not match the header".into());
    }
    Ok(Some(payload))
}

/// The official `cosine_schedule_with_warmup` factor for optimizer step `step` (1-based,
/// as the official loop increments before computing it): `step / warmup` during warmup,
/// then `min_ratio + (1 − min_ratio) · ½(1 + cos(π · progress))`.
pub fn lr_factor(step: u64, warmup: u64, total: u64, min_ratio: f64) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    min_ratio + (1.0 - min_ratio) * cos.max(0.0)
}

/// Sign-SGD with decoupled decay on the rows a batch touched (official
/// `CastedSparseEmbeddingSignSGD`): the row gradients [B, d] are summed per unique id, then
/// for those rows only `w ← w(1 − lr·wd) − lr · sign(Σg)`. Other rows are untouched.
pub fn sign_sgd_rows<B: Backend>(
    table: Tensor<B, 2>,
    ids: &[i32],
    row_grads: Tensor<B, 2>,
    lr: f64,
    wd: f64,
) -> Tensor<B, 2> {
    let device = table.device();
    let mut unique: Vec<i32> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let inverse: Vec<i64> = ids.iter().map(|id| unique.binary_search(id).expect("id is in the list") as i64).collect();
    let [_, d] = row_grads.dims();
    let n = unique.len();
    let inverse = Tensor::<B, 1, Int>::from_data(TensorData::new(inverse, [ids.len()]), &device);
    let unique_t = Tensor::<B, 1, Int>::from_data(
        TensorData::new(unique.iter().map(|&u| u as i64).collect::<Vec<_>>(), [n]),
        &device,
    );
    let summed = Tensor::<B, 2>::zeros([n, d], &device).select_assign(0, inverse, row_grads, IndexingUpdateOp::Add);
    let rows = table.clone().select(0, unique_t.clone());
    let delta = rows.clone().mul_scalar(-lr * wd) - summed.sign().mul_scalar(lr);
    table.select_assign(0, unique_t, delta, IndexingUpdateOp::Add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn weights_of_another_architecture_are_an_error_not_a_panic() {
        let device = Default::default();
        let config = |edit: &dyn Fn(&mut trm_model::TrmConfig)| {
            let mut c = trm_model::TrmConfig::sudoku_att();
            (c.hidden_size, c.num_heads, c.vocab_size, c.seq_len, c.num_puzzle_identifiers) = (16, 2, 6, 16, 1);
            (c.puzzle_emb_ndim, c.puzzle_emb_len) = (0, 0);
            edit(&mut c);
            c
        };
        let saved = module_to_bytes::<B, _>(config(&|_| {}).init_seeded::<B>(&device, 1)).unwrap();
        let same = config(&|_| {}).init_seeded::<B>(&device, 2);
        assert!(module_from_bytes::<B, _>(same, &saved, &device).is_ok());
        // Another width loaded silently (and failed later, in a matmul); another depth
        // panicked inside Burn's record loader.
        for (edit, expected) in [
            (&|c: &mut trm_model::TrmConfig| c.hidden_size = 32, "has shape"),
            (&|c: &mut trm_model::TrmConfig| c.layers = 3, "not of this model's architecture"),
            (&|c: &mut trm_model::TrmConfig| c.vocab_size = 8, "has shape"),
        ] as [(&dyn Fn(&mut trm_model::TrmConfig), &str); 3]
        {
            let other = config(edit).init_seeded::<B>(&device, 2);
            let Err(err) = module_from_bytes::<B, _>(other, &saved, &device) else { panic!("{expected}: loaded") };
            let err = err.to_string();
            assert!(err.contains(expected) && err.contains("architecture"), "{err}");
        }
    }

    fn t1(v: Vec<f32>) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(v.clone(), [v.len()]), &Default::default())
    }

    fn vec1(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    /// Scalar reference of the kernel, written from the formula.
    fn reference(theta: f64, grads: &[f64], lr: f64, wd: f64, b1: f64, b2: f64) -> f64 {
        let (mut th, mut m, mut v) = (theta, 0.0, 0.0);
        for (i, g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            th *= 1.0 - lr * wd;
            m += (g - m) * (1.0 - b1);
            v += (g * g - v) * (1.0 - b2);
            th -= lr / (1.0 - b1.powi(t)) * m.atan2(v.sqrt() / (1.0 - b2.powi(t)).sqrt());
        }
        th
    }

    #[test]
    fn adam_atan2_matches_the_formula_over_three_steps() {
        let opt = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.1 };
        let theta = vec![0.5f32, -1.0, 2.0, 0.0];
        let grads = [[0.3f32, -0.2, 0.0, 1e-3], [-0.1, 0.4, 0.5, -2.0], [0.2, 0.2, -0.3, 0.7]];
        let (lr, wd) = (0.01, 0.1);
        let mut w = t1(theta.clone());
        let mut state = None;
        for g in &grads {
            let (nw, ns) = SimpleOptimizer::<B>::step(&opt, lr, w, t1(g.to_vec()), state);
            w = nw;
            state = ns;
        }
        let got = vec1(w);
        for i in 0..4 {
            let gs: Vec<f64> = grads.iter().map(|g| g[i] as f64).collect();
            let want = reference(theta[i] as f64, &gs, lr, wd, 0.9, 0.95);
            assert!((got[i] as f64 - want).abs() < 1e-6, "element {i}: {} vs {want}", got[i]);
        }
        // First step by hand for g = 0.3: m = 0.03, v = 0.0045, √v/√(1-β2) = 0.3, so
        // θ = 0.5(1 - lr·wd) - lr/(1-β1) · atan2(0.03, 0.3) = 0.4995 - 0.1 · atan(0.1).
        let first = SimpleOptimizer::<B>::step(&opt, lr, t1(vec![0.5]), t1(vec![0.3]), None).0;
        let want = 0.5 * (1.0 - lr * wd) - lr / 0.1 * 0.1f64.atan();
        assert!((vec1(first)[0] as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn schedule_warms_up_then_follows_the_cosine() {
        assert_eq!(lr_factor(0, 10, 100, 0.1), 0.0);
        assert!((lr_factor(5, 10, 100, 0.1) - 0.5).abs() < 1e-12);
        assert!((lr_factor(10, 10, 100, 0.1) - 1.0).abs() < 1e-12);
        // Halfway through the cosine: 0.1 + 0.9 * 0.5.
        assert!((lr_factor(55, 10, 100, 0.1) - 0.55).abs() < 1e-12);
        assert!((lr_factor(100, 10, 100, 0.1) - 0.1).abs() < 1e-12);
        // min_ratio 1.0: constant after warmup (the official setting).
        assert_eq!(lr_factor(70, 10, 100, 1.0), 1.0);
    }

    #[test]
    fn sign_sgd_touches_only_the_batch_rows_and_sums_duplicates() {
        let device = Default::default();
        let table = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 1.0, 2.0, -2.0, 3.0, 0.5], [3, 2]), &device);
        // Rows for ids [2, 0, 2]: id 2 gets (0.5 - 1.0, -0.1 + 0.3) = (-0.5, 0.2); id 0 gets (0, -1).
        let grads =
            Tensor::<B, 2>::from_data(TensorData::new(vec![0.5f32, -0.1, 0.0, -1.0, -1.0, 0.3], [3, 2]), &device);
        let (lr, wd) = (0.1, 0.5);
        let out: Vec<f32> = sign_sgd_rows(table, &[2, 0, 2], grads, lr, wd).into_data().to_vec().unwrap();
        let decay = 1.0 - lr * wd;
        let want = [1.0 * decay, 1.0 * decay + lr, 2.0, -2.0, 3.0 * decay + lr, 0.5 * decay - lr];
        for (g, w) in out.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
