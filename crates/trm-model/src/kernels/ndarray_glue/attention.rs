//! Glue of the attention kernels: the fused RoPE attention with its backward node, and the
//! decoding attention over a KV cache.

use std::any::{Any, TypeId};
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use burn_ndarray::NdArrayTensor;
use ndarray::{s, ArrayView4, Ix4};

use super::{as_autodiff, f32_data, from_any, inner, nd_tensor, primitive, supported, AdPrimitive, Nd};
use crate::attention::Rope;
use crate::kernels::attention_cpu::{self, Dims, RopeTables, Saved};
use crate::kernels::cached_attention_cpu;

fn attention_tensor(data: Vec<f32>, dims: Dims) -> NdArrayTensor {
    nd_tensor(data, &[dims.b, dims.s, dims.h * dims.d])
}

/// The first `s` rows of the RoPE tables as owned float32 (they are small: s·d each).
fn rope_tables<B: Backend>(rope: &Rope<B>, dims: Dims) -> Option<(Vec<f32>, Vec<f32>)> {
    let take = |t: &Tensor<B, 2>| -> Option<Vec<f32>> {
        let p = primitive(t);
        let (shape, data) = f32_data(inner(&p)?)?;
        (shape.len() == 2 && shape[0] >= dims.s && shape[1] == dims.d).then(|| data[..dims.s * dims.d].to_vec())
    };
    Some((take(rope.cos())?, take(rope.sin())?))
}

/// Fused [`crate::kernels::rope_attention`] when `B` has a kernel; `None` otherwise.
pub(in crate::kernels) fn rope_attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    num_heads: usize,
    rope: Option<&Rope<B>>,
) -> Option<Tensor<B, 3>> {
    let [b, s, width] = q.dims();
    if !supported::<B>() || k.dims() != q.dims() || v.dims() != q.dims() || num_heads == 0 || width % num_heads != 0 {
        return None;
    }
    let dims = Dims { b, s, h: num_heads, d: width / num_heads };
    if rope.is_some() && !dims.d.is_multiple_of(2) {
        return None;
    }
    let tables = match rope {
        Some(rope) => Some(rope_tables(rope, dims)?),
        None => None,
    };
    let (q, k, v) = (primitive(q), primitive(k), primitive(v));
    let out: Box<dyn Any> = if TypeId::of::<B>() == TypeId::of::<Nd>() {
        let (q, k, v) = (f32_data(inner(&q)?)?.1, f32_data(inner(&k)?)?.1, f32_data(inner(&v)?)?.1);
        let rope = tables.as_ref().map(|(cos, sin)| RopeTables { cos, sin });
        Box::new(attention_tensor(attention_cpu::forward(&q, &k, &v, dims, rope, false).0, dims))
    } else {
        Box::new(autodiff_attention(as_autodiff::<B>(&q)?, as_autodiff::<B>(&k)?, as_autodiff::<B>(&v)?, dims, tables)?)
    };
    from_any(out)
}

/// Forward on `Autodiff<NdArray>`: registers [`AttentionBackward`] when an input is tracked.
fn autodiff_attention(
    q: AdPrimitive,
    k: AdPrimitive,
    v: AdPrimitive,
    dims: Dims,
    tables: Option<(Vec<f32>, Vec<f32>)>,
) -> Option<AdPrimitive> {
    let (qd, kd, vd) = (f32_data(&q.primitive)?.1, f32_data(&k.primitive)?.1, f32_data(&v.primitive)?.1);
    let rope = tables.as_ref().map(|(cos, sin)| RopeTables { cos, sin });
    let prep = AttentionBackward.prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()]);
    Some(match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, saved) = attention_cpu::forward(&qd, &kd, &vd, dims, rope, true);
            let saved = Arc::new(saved?);
            // v is kept by reference count, not copied.
            let state = AttentionState { saved, v: v.primitive.clone(), rope: tables.map(Arc::new), dims };
            prep.finish(state, attention_tensor(out, dims))
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(attention_tensor(attention_cpu::forward(&qd, &kd, &vd, dims, rope, false).0, dims))
        }
    })
}

/// Backward node of the fused attention: gradients of q, k and v from the output gradient.
#[derive(Debug)]
struct AttentionBackward;

#[derive(Clone, Debug)]
struct AttentionState {
    saved: Arc<Saved>,
    v: NdArrayTensor,
    rope: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    dims: Dims,
}

impl Backward<Nd, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Nd>(&ops.node);
        let AttentionState { saved, v, rope, dims } = ops.state;
        // The output is float32, so its gradient is too.
        let (_, dout) = f32_data(&grad).expect("the gradient of a float32 output is float32");
        let rope = rope.as_deref().map(|(cos, sin)| RopeTables { cos, sin });
        let (_, v) = f32_data(&v).expect("saved float32 input");
        let (dq, dk, dv) = attention_cpu::backward(&saved, &v, &dout, dims, rope);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<Nd>(node.id, attention_tensor(g, dims));
            }
        }
    }
}

/// A 4-D float32 view of an ndarray tensor, strides as they are (no copy).
fn view4(t: &NdArrayTensor) -> Option<ArrayView4<'_, f32>> {
    let NdArrayTensor::F32(storage) = t else { return None };
    storage.view().into_dimensionality::<Ix4>().ok()
}

/// Fused [`crate::kernels::cached_attention`] on `NdArray<f32>` (forward only, so not under
/// autodiff); `None` otherwise.
pub(in crate::kernels) fn cached_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    window: usize,
) -> Option<Tensor<B, 4>> {
    let ([b, h, sq, d], [kb, kh, capacity, kd]) = (q.dims(), k.dims());
    let shapes_fit = [kb, kh, kd] == [b, h, d] && v.dims() == k.dims() && (1..=capacity).contains(&window);
    if TypeId::of::<B>() != TypeId::of::<Nd>() || !shapes_fit {
        return None;
    }
    let (qp, kp, vp) = (primitive(q), primitive(k), primitive(v));
    let kw = view4(inner(&kp)?)?.slice_move(s![.., .., ..window, ..]);
    let vw = view4(inner(&vp)?)?.slice_move(s![.., .., ..window, ..]);
    let out = cached_attention_cpu::forward(view4(inner(&qp)?)?, kw, vw);
    from_any(Box::new(nd_tensor(out, &[b, h, sq, d])))
}
