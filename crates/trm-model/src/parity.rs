//! Parity against tensors recorded from the official PyTorch code (see
//! `shared/fixtures/parity/README.md` for the format): evaluation steps from the initial
//! carry, and one training step with its loss and gradients.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::checkpoint::{official_gradients, read_tensors, write_safetensors};
use crate::config::TrmConfig;
use crate::error::ModelError;
use crate::loss::{act_loss, LossType};
use crate::model::{supervision_step_train, Trm};

/// Relative-error tolerance for forward tensors (logits, states, q values).
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// Relative-error tolerance for losses and gradients.
pub const GRADIENT_TOLERANCE: f64 = 1e-3;
/// A tensor may differ from the reference by this many times its own float32 rounding
/// error: the reference carries a rounding error of the same size, and the two add up.
pub const FLOOR_FACTOR: f64 = 4.0;

/// One compared tensor.
#[derive(Debug, Clone)]
pub struct ParityRow {
    /// Tensor name in the fixture.
    pub name: String,
    /// ||ours - ref|| / ||ref|| (absolute ||ours - ref|| when ref is zero).
    pub rel_err: f64,
    /// The tolerance it is held to.
    pub tolerance: f64,
    /// Whether it is within tolerance (and of the same shape).
    pub ok: bool,
    /// Float32 rounding error of our own computation, measured against float64 (when the
    /// backend has float64).
    pub floor: Option<f64>,
    /// Why it failed, if it did for another reason than the error size.
    pub note: Option<String>,
}

/// Result of a parity run.
#[derive(Debug, Clone)]
pub struct ParityReport {
    /// Every tensor compared.
    pub rows: Vec<ParityRow>,
    /// Tensors in the fixture that parity does not reproduce (with why).
    pub skipped: Vec<(String, String)>,
    /// What we computed, under the fixture's names.
    pub computed: BTreeMap<String, TensorData>,
    /// Whether float32 rounding floors were measured (the backend has float64).
    pub floors_measured: bool,
}

impl ParityReport {
    /// Whether every compared tensor is within tolerance.
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.ok)
    }

    /// The largest relative error.
    pub fn max_rel_err(&self) -> f64 {
        self.rows.iter().map(|r| r.rel_err).fold(0.0, f64::max)
    }

    /// Writes the computed tensors to a safetensors file.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        write_safetensors(path, &self.computed, HashMap::new())
    }
}

fn as_f64(d: &TensorData) -> Vec<f64> {
    d.clone().convert::<f64>().to_vec::<f64>().unwrap_or_default()
}

fn compare(name: &str, ours: &TensorData, reference: &TensorData, tolerance: f64) -> ParityRow {
    if ours.shape != reference.shape {
        return ParityRow {
            name: name.into(),
            rel_err: f64::INFINITY,
            tolerance,
            ok: false,
            floor: None,
            note: Some(format!("shape {:?}, expected {:?}", ours.shape.as_slice(), reference.shape.as_slice())),
        };
    }
    let (a, b) = (as_f64(ours), as_f64(reference));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let norm = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    let rel_err = if norm > 0.0 { diff / norm } else { diff };
    ParityRow { name: name.into(), rel_err, tolerance, ok: rel_err <= tolerance, floor: None, note: None }
}

fn tensor_of<B: burn::tensor::backend::Backend, const D: usize>(
    io: &HashMap<String, TensorData>,
    name: &str,
    device: &B::Device,
) -> Result<Tensor<B, D, Int>, ModelError> {
    let data = io.get(name).ok_or_else(|| ModelError::Input(format!("io.safetensors has no `{name}`")))?;
    if data.shape.num_dims() != D {
        return Err(ModelError::Input(format!("`{name}` has {} dims, expected {D}", data.shape.num_dims())));
    }
    Ok(crate::layers::int_tensor(data.clone(), device))
}

/// Runs parity on a fixture folder holding `config.json`, `checkpoint.pt` (or
/// `weights.safetensors`) and `io.safetensors`.
pub fn run_parity<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<ParityReport, ModelError> {
    let config = TrmConfig::from_file(&dir.join("config.json"))?;
    let checkpoint =
        ["checkpoint.pt", "weights.safetensors"].iter().map(|f| dir.join(f)).find(|p| p.exists()).ok_or_else(|| {
            ModelError::Input(format!("{}: neither checkpoint.pt nor weights.safetensors", dir.display()))
        })?;
    let model: Trm<B> = config.init::<B>(device).load_checkpoint(&checkpoint)?;
    let io = read_tensors(&dir.join("io.safetensors"))?;
    run_parity_with(&model, &io, device)
}

/// Everything parity computes from `model` and the fixture's inputs, under the fixture's names.
pub fn compute_fixture_tensors<B: AutodiffBackend>(
    model: &Trm<B>,
    io: &HashMap<String, TensorData>,
    device: &B::Device,
) -> Result<BTreeMap<String, TensorData>, ModelError> {
    let cfg = model.config().clone();
    let inputs: Tensor<B::InnerBackend, 2, Int> = tensor_of::<B::InnerBackend, 2>(io, "inputs", device)?;
    let ids = tensor_of::<B::InnerBackend, 1>(io, "puzzle_identifiers", device)?;
    let labels = tensor_of::<B, 2>(io, "labels", device)?;
    let [batch, seq_len] = inputs.dims();
    if seq_len != cfg.seq_len {
        return Err(ModelError::Input(format!("inputs have {seq_len} tokens, config seq_len is {}", cfg.seq_len)));
    }
    let mut computed = BTreeMap::new();

    // Evaluation: every sample starts halted, so step 0 starts from H_init/L_init; in eval
    // mode a sample halts only at N_sup.
    let inner = model.valid();
    let mut carry = inner.initial_carry(batch);
    let x = inner.input_embeddings(inputs.clone(), inner.puzzle_rows(ids.clone()));
    for k in 0..cfg.n_sup {
        let step = inner.supervision_step(&x, carry);
        carry = step.carry;
        let p = format!("eval.step{k}");
        computed.insert(format!("{p}.logits"), step.heads.logits.into_data());
        computed.insert(format!("{p}.q_halt_logits"), step.heads.q_halt.into_data());
        computed.insert(format!("{p}.q_continue_logits"), step.heads.q_continue.into_data());
        computed.insert(format!("{p}.y"), carry.y.clone().into_data());
        computed.insert(format!("{p}.z"), carry.z.clone().into_data());
        computed.insert(format!("{p}.halted"), TensorData::new(vec![(k + 1 >= cfg.n_sup) as i32; batch], [batch]));
    }

    // Training: one supervision step from the initial carry; the puzzle rows are a leaf so
    // their gradient is what reaches each sample's row (the official `local_weights`).
    let rows = inner.puzzle_rows(ids).map(|r| Tensor::<B, 2>::from_inner(r).require_grad());
    let x = model.input_embeddings(Tensor::from_inner(inputs), rows.clone());
    let step = supervision_step_train(model, &inner, x, inner.initial_carry(batch));
    let loss = act_loss(&step.heads, labels, LossType::StablemaxCrossEntropy, None);
    let grads = loss.total.backward();
    computed.insert("train.loss".into(), loss.total.inner().into_data());
    computed.insert("train.lm_loss".into(), loss.lm_loss.inner().into_data());
    computed.insert("train.q_halt_loss".into(), loss.q_halt_loss.inner().into_data());
    for (name, g) in official_gradients(model, &grads) {
        computed.insert(format!("grad.{name}"), g);
    }
    if let Some(g) = rows.and_then(|r| r.grad(&grads)) {
        computed.insert("grad.inner.puzzle_emb.local_weights".into(), g.into_data());
    }
    Ok(computed)
}

/// Parity of `model` against the recorded `io` tensors.
///
/// Tolerances: [`FORWARD_TOLERANCE`] and [`GRADIENT_TOLERANCE`], widened where float32
/// rounding itself moves a tensor further: when the backend has float64, the same
/// computation runs in float64 and each tensor's float32 error (its "floor") is measured;
/// the tolerance becomes max(base, [`FLOOR_FACTOR`] x floor). A deep recursion can amplify
/// rounding by 10x per supervision step, so two correct float32 implementations drift apart
/// by that much; a wrong one differs from the reference while agreeing with its own float64 run.
pub fn run_parity_with<B: AutodiffBackend>(
    model: &Trm<B>,
    io: &HashMap<String, TensorData>,
    device: &B::Device,
) -> Result<ParityReport, ModelError> {
    let computed = compute_fixture_tensors(model, io, device)?;
    let floors = if B::supports_dtype(device, DType::F64) {
        Some(float32_floors(&computed, &compute_fixture_tensors(&model.clone().cast(DType::F64), io, device)?))
    } else {
        None
    };
    Ok(compare_with_reference(computed, io, floors.as_ref()))
}

/// Float32 rounding error of each tensor: rel. distance between a float32 and a float64 run
/// of the same computation. It measures how strongly the recursion amplifies rounding,
/// which is a property of the weights and inputs, so floors measured on one backend (the
/// CPU) can serve the comparison on another (a GPU without float64).
pub fn float32_floors(
    f32_run: &BTreeMap<String, TensorData>,
    f64_run: &BTreeMap<String, TensorData>,
) -> BTreeMap<String, f64> {
    f32_run.iter().filter_map(|(k, v)| f64_run.get(k).map(|e| (k.clone(), compare(k, v, e, 0.0).rel_err))).collect()
}

/// Compares computed tensors with the fixture's `io`, each within
/// max(base tolerance, FLOOR_FACTOR x its float32 floor when `floors` are given).
pub fn compare_with_reference(
    computed: BTreeMap<String, TensorData>,
    io: &HashMap<String, TensorData>,
    floors: Option<&BTreeMap<String, f64>>,
) -> ParityReport {
    let mut rows_out = Vec::new();
    let mut skipped = Vec::new();
    let mut names: Vec<&String> = io.keys().collect();
    names.sort();
    for name in names {
        let reference = &io[name];
        if matches!(name.as_str(), "inputs" | "labels" | "puzzle_identifiers") {
            continue;
        }
        if name.starts_with("train.metric.") {
            skipped.push((name.clone(), "depends on the random exploration draw of the training halting rule".into()));
            continue;
        }
        let base = if name.starts_with("grad.") || name.starts_with("train.") {
            GRADIENT_TOLERANCE
        } else {
            FORWARD_TOLERANCE
        };
        let floor = floors.and_then(|f| f.get(name)).copied();
        let tolerance = base.max(FLOOR_FACTOR * floor.unwrap_or(0.0));
        let mut row = match computed.get(name) {
            Some(ours) if name.ends_with(".halted") => {
                let same = as_f64(ours) == as_f64(reference);
                ParityRow {
                    name: name.clone(),
                    rel_err: if same { 0.0 } else { 1.0 },
                    tolerance: 0.0,
                    ok: same,
                    floor: None,
                    note: None,
                }
            }
            Some(ours) => compare(name, ours, reference, tolerance),
            None => ParityRow {
                name: name.clone(),
                rel_err: f64::INFINITY,
                tolerance,
                ok: false,
                floor: None,
                note: Some("not computed by trm (unknown tensor or parameter)".into()),
            },
        };
        if !name.ends_with(".halted") {
            row.floor = floor;
        }
        rows_out.push(row);
    }
    ParityReport { rows: rows_out, skipped, computed, floors_measured: floors.is_some() }
}
