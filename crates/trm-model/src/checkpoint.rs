//! Checkpoints: official PyTorch state dicts (`checkpoint.pt`, via burn-store's reader),
//! safetensors with the official keys, and the project's own format (safetensors with the
//! official layout plus the config in the metadata, so the official code can read it too).
//!
//! The model keeps the official fused matrices split (q/k/v, gate/up) and stores linear
//! weights as [in, out]; this module is the one place that maps between the two layouts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::config::TrmConfig;
use crate::error::ModelError;
use crate::layers::{float_tensor, Linear};
use crate::model::Trm;

/// Metadata key holding the config JSON in the project's own format.
const CONFIG_KEY: &str = "trm.config";
/// Metadata key naming the format.
const FORMAT_KEY: &str = "format";
const FORMAT_VALUE: &str = "trm-v1";

/// One entry of the official state dict and where it lives in our model.
enum Slot<'a, B: Backend> {
    /// Linear weight(s): official [out, in], the parts concatenated along `out`.
    Linear(Vec<&'a mut Param<Tensor<B, 2>>>),
    /// A bias or other trained vector.
    Vector(&'a mut Param<Tensor<B, 1>>),
    /// An embedding table, same layout in both.
    Table(&'a mut Param<Tensor<B, 2>>),
    /// A non-trained table (puzzle embeddings).
    Buffer2(&'a mut Tensor<B, 2>),
    /// A non-trained vector (H_init, L_init).
    Buffer1(&'a mut Tensor<B, 1>),
}

/// The official name of every tensor of `model` (without the `_orig_mod.model.` prefix).
fn slots<B: Backend>(model: &mut Trm<B>) -> Vec<(String, Slot<'_, B>)> {
    let mut out: Vec<(String, Slot<'_, B>)> = Vec::new();
    out.push(("inner.H_init".into(), Slot::Buffer1(&mut model.h_init)));
    out.push(("inner.L_init".into(), Slot::Buffer1(&mut model.l_init)));
    out.push(("inner.embed_tokens.embedding_weight".into(), Slot::Table(&mut model.embed_tokens)));
    if let Some(pos) = model.embed_pos.as_mut() {
        out.push(("inner.embed_pos.embedding_weight".into(), Slot::Table(pos)));
    }
    out.push(("inner.lm_head.weight".into(), Slot::Linear(vec![&mut model.lm_head.weight])));
    let Linear { weight, bias } = &mut model.q_head;
    out.push(("inner.q_head.weight".into(), Slot::Linear(vec![weight])));
    if let Some(bias) = bias.as_mut() {
        out.push(("inner.q_head.bias".into(), Slot::Vector(bias)));
    }
    if let Some(table) = model.puzzle_emb.as_mut() {
        out.push(("inner.puzzle_emb.weights".into(), Slot::Buffer2(table)));
    }
    for (i, block) in model.net.blocks.iter_mut().enumerate() {
        let p = format!("inner.L_level.layers.{i}");
        if let Some(att) = block.attention.as_mut() {
            out.push((
                format!("{p}.self_attn.qkv_proj.weight"),
                Slot::Linear(vec![&mut att.q.weight, &mut att.k.weight, &mut att.v.weight]),
            ));
            out.push((format!("{p}.self_attn.o_proj.weight"), Slot::Linear(vec![&mut att.o.weight])));
        }
        if let Some(mlp_t) = block.mlp_t.as_mut() {
            out.push((
                format!("{p}.mlp_t.gate_up_proj.weight"),
                Slot::Linear(vec![&mut mlp_t.gate.weight, &mut mlp_t.up.weight]),
            ));
            out.push((format!("{p}.mlp_t.down_proj.weight"), Slot::Linear(vec![&mut mlp_t.down.weight])));
        }
        out.push((
            format!("{p}.mlp.gate_up_proj.weight"),
            Slot::Linear(vec![&mut block.mlp.gate.weight, &mut block.mlp.up.weight]),
        ));
        out.push((format!("{p}.mlp.down_proj.weight"), Slot::Linear(vec![&mut block.mlp.down.weight])));
    }
    out
}

/// Strips the wrappers the official trainer adds to keys (`_orig_mod.` from torch.compile,
/// `model.` from the loss head).
pub fn normalize_key(key: &str) -> &str {
    let key = key.strip_prefix("_orig_mod.").unwrap_or(key);
    key.strip_prefix("model.").unwrap_or(key)
}

fn fused_official<B: Backend>(parts: Vec<Tensor<B, 2>>) -> Tensor<B, 2> {
    Tensor::cat(parts, 1).transpose()
}

impl<B: Backend> Trm<B> {
    /// Every tensor under its official name and in the official layout ([out, in] weights,
    /// fused qkv and gate_up), float32.
    pub fn to_official_tensors(&self) -> BTreeMap<String, TensorData> {
        let mut model = self.clone();
        slots(&mut model)
            .into_iter()
            .map(|(name, slot)| {
                let data = match slot {
                    Slot::Linear(parts) => fused_official(parts.into_iter().map(|p| p.val()).collect()).into_data(),
                    Slot::Vector(p) => p.val().into_data(),
                    Slot::Table(p) => p.val().into_data(),
                    Slot::Buffer2(t) => t.clone().into_data(),
                    Slot::Buffer1(t) => t.clone().into_data(),
                };
                (name, data.convert::<f32>())
            })
            .collect()
    }

    /// Loads tensors with official names (any `_orig_mod.model.` prefix is stripped). Every
    /// missing, unexpected or misshaped tensor is reported in one error.
    pub fn load_official_tensors(self, tensors: HashMap<String, TensorData>) -> Result<Self, ModelError> {
        let mut model = self;
        let device = model.h_init.device();
        let mut given: HashMap<String, TensorData> = HashMap::new();
        let mut problems = Vec::new();
        for (k, v) in tensors {
            let name = normalize_key(&k).to_string();
            if given.insert(name.clone(), v).is_some() {
                problems.push(format!("duplicate tensor `{name}`"));
            }
        }
        for (name, slot) in slots(&mut model) {
            let Some(data) = given.remove(&name) else {
                problems.push(format!("missing tensor `{name}`"));
                continue;
            };
            let expected: Vec<usize> = match &slot {
                Slot::Linear(parts) => {
                    let d_in = parts[0].dims()[0];
                    vec![parts.iter().map(|p| p.dims()[1]).sum(), d_in]
                }
                Slot::Vector(p) => p.dims().to_vec(),
                Slot::Table(p) => p.dims().to_vec(),
                Slot::Buffer2(t) => t.dims().to_vec(),
                Slot::Buffer1(t) => t.dims().to_vec(),
            };
            if data.shape.as_slice() != expected.as_slice() {
                problems.push(format!(
                    "tensor `{name}` has shape {:?}, the config needs {:?}",
                    data.shape.as_slice(),
                    expected
                ));
                continue;
            }
            let data = data.convert::<f32>();
            if let Some(pos) = data.as_slice::<f32>().ok().and_then(|s| s.iter().position(|v| !v.is_finite())) {
                problems.push(format!("tensor `{name}` has a non-finite value at flat index {pos}"));
                continue;
            }
            match slot {
                Slot::Linear(parts) => {
                    // official [out, in] -> ours [in, out], then split along out.
                    let full = float_tensor::<B, 2>(data, &device).transpose();
                    let mut start = 0;
                    for p in parts {
                        let w = p.dims()[1];
                        let part = full.clone().narrow(1, start, w);
                        start += w;
                        *p = p.clone().transform_for_load(part, p.id);
                    }
                }
                Slot::Vector(p) => *p = p.clone().transform_for_load(float_tensor(data, &device), p.id),
                Slot::Table(p) => *p = p.clone().transform_for_load(float_tensor(data, &device), p.id),
                Slot::Buffer2(t) => *t = float_tensor(data, &device),
                Slot::Buffer1(t) => *t = float_tensor(data, &device),
            }
        }
        let mut unexpected: Vec<_> = given.into_keys().collect();
        unexpected.sort();
        problems.extend(unexpected.into_iter().map(|k| format!("unexpected tensor `{k}`")));
        if problems.is_empty() {
            Ok(model)
        } else {
            Err(ModelError::CheckpointMismatch { problems })
        }
    }

    /// Loads an official checkpoint: a PyTorch `.pt`/`.pth` state dict, or `.safetensors`
    /// with the official keys (the project's own files are of this kind too).
    pub fn load_checkpoint(self, path: &Path) -> Result<Self, ModelError> {
        self.load_official_tensors(read_tensors(path)?)
    }

    /// Saves in the project's format: safetensors with the official keys and layout (the
    /// official code can load it after adding its `_orig_mod.model.` prefix) and the config
    /// in the metadata. Written to a temporary file, synced, then renamed: an existing
    /// file is never left half-written.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let config = serde_json::to_string(self.config()).expect("config serialises");
        let metadata =
            HashMap::from([(CONFIG_KEY.to_string(), config), (FORMAT_KEY.to_string(), FORMAT_VALUE.to_string())]);
        write_safetensors(path, &self.to_official_tensors(), metadata)
    }
}

/// Loads a model saved by [`Trm::save`], config included.
pub fn load_model<B: Backend>(path: &Path, device: &B::Device) -> Result<Trm<B>, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let config = config_from_bytes(path, &bytes)?;
    config.init::<B>(device).load_official_tensors(parse_safetensors(path, &bytes)?)
}

/// The config stored in a model file [`Trm::save`] wrote, without loading its tensors.
pub fn read_model_config(path: &Path) -> Result<TrmConfig, ModelError> {
    config_from_bytes(path, &std::fs::read(path).map_err(|e| ModelError::io(path, e))?)
}

fn config_from_bytes(path: &Path, bytes: &[u8]) -> Result<TrmConfig, ModelError> {
    let bad = |reason: String| ModelError::CheckpointFormat { path: path.to_path_buf(), reason };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let config = meta.metadata().as_ref().and_then(|m| m.get(CONFIG_KEY)).ok_or_else(|| {
        bad(format!("no `{CONFIG_KEY}` metadata: not a trm checkpoint (official checkpoints need their config.json)"))
    })?;
    TrmConfig::from_json_str(config)
}

/// Reads every tensor of a `.pt`/`.pth` or `.safetensors` file, as float32 or integer data.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, TensorData>, ModelError> {
    if !path.exists() {
        return Err(ModelError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let bad = |reason: String| ModelError::CheckpointFormat { path: path.to_path_buf(), reason };
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            parse_safetensors(path, &bytes)
        }
        Some("pt") | Some("pth") | Some("bin") | Some("ckpt") => {
            let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| bad(e.to_string()))?;
            let mut out = HashMap::new();
            for (name, snapshot) in reader.into_tensors() {
                let data = snapshot.to_data().map_err(|e| bad(format!("tensor `{name}`: {e:?}")))?;
                out.insert(name, data);
            }
            Ok(out)
        }
        _ => Err(bad("unknown checkpoint extension: expected .pt, .pth or .safetensors".into())),
    }
}

/// The whole of a tensor-less file that trm wrote before 2026-12-02 (safetensors 0.7's header
/// for no tensors and empty metadata; see [`write_safetensors`]): read as no tensors, so runs
/// checkpointed then still resume.
const EMPTY_WITH_BROKEN_HEADER: &[u8] = b"\x18\0\0\0\0\0\0\0{},\"__metadata__\":{}}   ";

fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<HashMap<String, TensorData>, ModelError> {
    use safetensors::Dtype;
    let bad = |reason: String| ModelError::CheckpointFormat { path: path.to_path_buf(), reason };
    if bytes == EMPTY_WITH_BROKEN_HEADER {
        return Ok(HashMap::new());
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    if let Some(written) = meta.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY)) {
        let mut views = st.tensors();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        let now = tensor_checksum(views.iter().map(|(k, v)| (k.as_str(), v.data())));
        if *written != now {
            return Err(bad(format!(
                "damaged: the tensor data does not match the checksum written with it ({written}, now {now})"
            )));
        }
    }
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => TensorData::new(
                raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(),
                shape,
            ),
            Dtype::F64 => TensorData::new(
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(),
                shape,
            ),
            Dtype::BF16 => TensorData::new(
                raw.chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect::<Vec<_>>(),
                shape,
            ),
            Dtype::I32 => TensorData::new(
                raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(),
                shape,
            ),
            Dtype::I64 => TensorData::new(
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(),
                shape,
            ),
            Dtype::BOOL | Dtype::U8 => TensorData::new(raw.iter().map(|&b| b as i32).collect::<Vec<_>>(), shape),
            other => return Err(bad(format!("tensor `{name}` has unsupported dtype {other:?}"))),
        };
        out.insert(name, data);
    }
    Ok(out)
}

/// Writes float32/float64/int32/int64 tensors to a safetensors file atomically (temp, fsync,
/// rename). Another element type is an error, not a file that reads back wrong.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
    metadata: HashMap<String, String>,
) -> Result<(), ModelError> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let format_error = |reason: String| ModelError::CheckpointFormat { path: path.to_path_buf(), reason };
    let views = tensors
        .iter()
        .map(|(k, d)| {
            let dtype = match d.dtype {
                burn::tensor::DType::F32 => Dtype::F32,
                burn::tensor::DType::F64 => Dtype::F64,
                burn::tensor::DType::I32 => Dtype::I32,
                burn::tensor::DType::I64 => Dtype::I64,
                other => return Err(format_error(format!("tensor `{k}`: cannot write element type {other:?}"))),
            };
            let view = TensorView::new(dtype, d.shape.to_vec(), d.as_bytes())
                .map_err(|e| format_error(format!("tensor `{k}`: {e}")))?;
            Ok((k.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A checksum of every tensor's bytes, so that a damaged file is an error, not other weights.
    // (It also keeps the map non-empty: safetensors 0.7 writes an invalid header,
    // `{},"__metadata__":{}}`, for no tensors and an empty metadata map.)
    let mut metadata = metadata;
    metadata.insert(CHECKSUM_KEY.to_string(), tensor_checksum(views.iter().map(|(k, v)| (k.as_str(), v.data()))));
    let metadata = Some(metadata);
    let bytes = safetensors::serialize(views, metadata).map_err(|e| format_error(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Metadata key of the checksum [`write_safetensors`] stores and the reader checks.
const CHECKSUM_KEY: &str = "trm.fnv1a64";

/// FNV-1a (64-bit, hex) over each tensor's name, a 0 byte and its bytes, in the given order
/// (name order: `write_safetensors` iterates a `BTreeMap`, the reader sorts).
fn tensor_checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let h = tensors.fold(FNV1A_OFFSET, |h, (name, bytes)| {
        let h = fnv1a_update(h, name.as_bytes());
        fnv1a_update(fnv1a_update(h, &[0]), bytes)
    });
    format!("{h:016x}")
}

const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a_update(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// FNV-1a (64-bit) of `bytes`: the checksum of trm's own files (the tensors of the
/// safetensors it writes here, the sealed Burn records of `trm-train`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_update(FNV1A_OFFSET, bytes)
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::io(path, e)
    })
}

/// Gradients of every dense parameter under its official name and layout. The puzzle
/// embedding and the fixed H_init/L_init have none.
pub fn official_gradients<B: AutodiffBackend>(model: &Trm<B>, grads: &B::Gradients) -> BTreeMap<String, TensorData> {
    let mut model = model.clone();
    let mut out = BTreeMap::new();
    for (name, slot) in slots(&mut model) {
        let data = match slot {
            Slot::Linear(parts) => {
                let gs: Option<Vec<_>> = parts.into_iter().map(|p| p.val().grad(grads)).collect();
                gs.map(|g| fused_official(g).into_data())
            }
            Slot::Vector(p) => p.val().grad(grads).map(|g| g.into_data()),
            Slot::Table(p) => p.val().grad(grads).map(|g| g.into_data()),
            Slot::Buffer2(_) | Slot::Buffer1(_) => None,
        };
        if let Some(d) = data {
            out.insert(name, d.convert::<f32>());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn small() -> TrmConfig {
        let mut c = TrmConfig::sudoku_att();
        c.hidden_size = 16;
        c.num_heads = 2;
        c.puzzle_emb_ndim = 16;
        c.num_puzzle_identifiers = 3;
        c.seq_len = 4;
        c.puzzle_emb_len = 0;
        c
    }

    #[test]
    fn safetensors_files_without_tensors_or_metadata_read_back() {
        let dir = std::env::temp_dir().join(format!("trm-empty-st-{}", std::process::id()));
        let path = dir.join("state.safetensors");
        for metadata in [HashMap::new(), HashMap::from([("k".to_string(), "v".to_string())])] {
            write_safetensors(&path, &BTreeMap::new(), metadata).unwrap();
            assert!(read_tensors(&path).unwrap().is_empty());
        }
        // What the writer produced for that case before: still read as no tensors.
        std::fs::write(&path, EMPTY_WITH_BROKEN_HEADER).unwrap();
        assert!(read_tensors(&path).unwrap().is_empty());
        // An element type the format cannot take here is an error naming the tensor.
        let flags = BTreeMap::from([("flags".to_string(), TensorData::new(vec![true, false], [2]))]);
        let err = write_safetensors(&path, &flags, HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("`flags`") && err.contains("Bool"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn damaged_tensor_data_is_an_error() {
        let device = Default::default();
        let m = small().init_seeded::<B>(&device, 5);
        let dir = std::env::temp_dir().join(format!("trm-ckpt-flip-{}", std::process::id()));
        let path = dir.join("m.safetensors");
        m.save(&path).unwrap();
        let whole = std::fs::read(&path).unwrap();
        // One bit flipped in the middle of the tensor data, and in the last byte: before, the
        // file loaded as other weights.
        for at in [whole.len() / 2, whole.len() - 1] {
            let mut bytes = whole.clone();
            bytes[at] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            let Err(err) = load_model::<B>(&path, &device) else { panic!("a damaged file loaded") };
            let err = err.to_string();
            assert!(err.contains("does not match the checksum"), "{err}");
            assert!(read_tensors(&path).unwrap_err().to_string().contains("checksum"));
        }
        // A file without the checksum (the official code's, or ours before it) still loads.
        let tensors = m.to_official_tensors();
        let views: Vec<_> = tensors
            .iter()
            .map(|(k, d)| {
                let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, d.shape.to_vec(), d.as_bytes());
                (k.clone(), v.unwrap())
            })
            .collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        assert_eq!(read_tensors(&path).unwrap().len(), tensors.len());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn save_and_load_round_trip() {
        let device = Default::default();
        let m = small().init_seeded::<B>(&device, 5);
        let dir = std::env::temp_dir().join(format!("trm-ckpt-{}", std::process::id()));
        let path = dir.join("m.safetensors");
        m.save(&path).unwrap();
        m.save(&path).unwrap(); // overwriting is fine
        let back: Trm<B> = load_model(&path, &device).unwrap();
        assert_eq!(back.config(), m.config());
        assert_eq!(back.to_official_tensors(), m.to_official_tensors());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn official_layout_is_fused_and_transposed() {
        let device = Default::default();
        let m = small().init::<B>(&device);
        let t = m.to_official_tensors();
        assert_eq!(t["inner.L_level.layers.0.self_attn.qkv_proj.weight"].shape.as_slice(), &[48, 16]);
        assert_eq!(t["inner.L_level.layers.1.mlp.gate_up_proj.weight"].shape.as_slice(), &[512, 16]);
        assert_eq!(t["inner.lm_head.weight"].shape.as_slice(), &[11, 16]);
        // Row 16 of qkv (the first k row) is column 0 of our k matrix.
        let qkv = t["inner.L_level.layers.0.self_attn.qkv_proj.weight"].as_slice::<f32>().unwrap().to_vec();
        let k = m.net.blocks[0].attention.as_ref().unwrap().k.weight.val().into_data().to_vec::<f32>().unwrap();
        for i in 0..16 {
            assert_eq!(qkv[16 * 16 + i], k[i * 16]);
        }
    }

    #[test]
    fn mismatches_are_all_reported() {
        let device = Default::default();
        let m = small().init::<B>(&device);
        let mut t: HashMap<String, TensorData> =
            m.to_official_tensors().into_iter().map(|(k, v)| (format!("_orig_mod.model.{k}"), v)).collect();
        t.remove("_orig_mod.model.inner.lm_head.weight");
        t.insert("_orig_mod.model.inner.q_head.bias".into(), TensorData::new(vec![0f32; 3], [3]));
        t.insert("_orig_mod.model.inner.extra".into(), TensorData::new(vec![0f32; 1], [1]));
        let err = small().init::<B>(&device).load_official_tensors(t).unwrap_err().to_string();
        assert!(err.contains("missing tensor `inner.lm_head.weight`"), "{err}");
        assert!(err.contains("`inner.q_head.bias` has shape [3]"), "{err}");
        assert!(err.contains("unexpected tensor `inner.extra`"), "{err}");
    }

    #[test]
    fn truncated_and_missing_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("trm-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let device = Default::default();
        let m = small().init::<B>(&device);
        let path = dir.join("m.safetensors");
        m.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_model::<B>(&path, &device).unwrap_err().to_string();
        assert!(err.contains("cannot read checkpoint"), "{err}");
        let pt = dir.join("x.pt");
        std::fs::write(&pt, b"not a zip file at all").unwrap();
        assert!(read_tensors(&pt).unwrap_err().to_string().contains("cannot read checkpoint"));
        assert!(read_tensors(&dir.join("none.pt")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
