//! Moves tensors of the generic code to the float32 slices of the CPU kernels and back, for
//! `NdArray<f32>` and `Autodiff<NdArray<f32>>` (the latter with a custom backward node).
//!
//! The backend is recognised by `TypeId` and its tensor primitives are reached through
//! `Any` downcasts, which are free and cannot fail once the type is known; every other case
//! (other backend, dtype, shape) answers `None` and the caller runs the Burn composition.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_ndarray::NdArrayTensor;
use ndarray::{ArcArray, IxDyn};

use super::gather_cpu::gather;
use super::linear_cpu;
use super::rms_norm_cpu;
use super::swiglu_cpu;

mod attention;
pub(super) use attention::{cached_attention, rope_attention};

type Nd = NdArray<f32>;
type Ad = Autodiff<Nd, NoCheckpointing>;
type AdPrimitive = FloatTensor<Ad>;

/// Whether `B` is one of the two backends with kernels.
pub(super) fn supported<B: Backend>() -> bool {
    let id = TypeId::of::<B>();
    id == TypeId::of::<Nd>() || id == TypeId::of::<Ad>()
}

fn primitive<B: Backend, const D: usize>(t: &Tensor<B, D>) -> FloatTensor<B> {
    t.clone().into_primitive().tensor()
}

/// The ndarray tensor inside a primitive of `Nd` or `Ad`.
fn inner<P: Any>(p: &P) -> Option<&NdArrayTensor> {
    let any: &dyn Any = p;
    any.downcast_ref::<NdArrayTensor>().or_else(|| any.downcast_ref::<AdPrimitive>().map(|t| &t.primitive))
}

/// Shape and float32 data in row-major order, borrowed when the layout already is.
fn f32_data(t: &NdArrayTensor) -> Option<(Vec<usize>, Cow<'_, [f32]>)> {
    let NdArrayTensor::F32(storage) = t else { return None };
    let view = storage.view();
    let shape = view.shape().to_vec();
    let data = match view.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        // A permuted view (the mlp_t mixer's swapped axes): gather it in logical order.
        None => Cow::Owned(match view.as_slice_memory_order() {
            Some(memory) if view.strides().iter().all(|&s| s >= 0) => {
                let strides: Vec<usize> = view.strides().iter().map(|&s| s as usize).collect();
                gather(memory, &shape, &strides)
            }
            _ => view.iter().copied().collect(),
        }),
    };
    Some((shape, data))
}

fn nd_tensor(data: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    let array = ArcArray::from_shape_vec(IxDyn(shape), data).expect("kernel outputs have the input's element count");
    NdArrayTensor::from(array)
}

/// The `Autodiff<NdArray>` primitive behind a primitive of `B` (`None` for any other `B`).
fn as_autodiff<B: Backend>(p: &FloatTensor<B>) -> Option<AdPrimitive> {
    (p as &dyn Any).downcast_ref::<AdPrimitive>().cloned()
}

/// A kernel result (an `NdArrayTensor` or an `Autodiff<NdArray>` primitive) as a tensor of `B`.
fn from_any<B: Backend, const D: usize>(out: Box<dyn Any>) -> Option<Tensor<B, D>> {
    let out = *out.downcast::<FloatTensor<B>>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// The weight tensors of every linear map of `model`'s network (attention or mlp_t mixer,
/// and the channel SwiGLU of each block) when `B` is `NdArray<f32>`; `None` otherwise.
pub(super) fn network_weights<B: Backend>(model: &crate::model::Trm<B>) -> Option<Vec<NdArrayTensor>> {
    let model = (model as &dyn Any).downcast_ref::<crate::model::Trm<Nd>>()?;
    let mut linears = Vec::new();
    for block in &model.net.blocks {
        if let Some(a) = &block.attention {
            linears.extend([&a.q, &a.k, &a.v, &a.o]);
        }
        for mlp in block.mlp_t.iter().chain([&block.mlp]) {
            linears.extend([&mlp.gate, &mlp.up, &mlp.down]);
        }
    }
    Some(linears.into_iter().map(|l| primitive(&l.weight.val())).collect())
}

/// [`super::linear_many`] on `NdArray<f32>` when every weight has a packed copy for this
/// many rows (an inference scope, `packed_cpu`); `None` otherwise.
pub(super) fn packed_linears<B: Backend, const N: usize>(
    x: &Tensor<B, 3>,
    ws: [&Tensor<B, 2>; N],
) -> Option<[Tensor<B, 3>; N]> {
    let [b, s, d] = x.dims();
    // Up to FEW_ROWS rows `linear` takes its row-streaming path, whose bits differ.
    if TypeId::of::<B>() != TypeId::of::<Nd>() || b * s <= linear_cpu::FEW_ROWS {
        return None;
    }
    let weights: Vec<FloatTensor<B>> = ws.iter().map(|w| primitive(*w)).collect();
    let mut packed = Vec::with_capacity(N);
    for (w, p) in ws.iter().zip(&weights) {
        let [k, n] = w.dims();
        let (_, data) = f32_data(inner(p)?)?;
        packed.push(super::packed_cpu::lookup(&data, b * s, k, n).filter(|_| k == d)?);
    }
    let xp = primitive(x);
    let xd = f32_data(inner(&xp)?)?.1;
    let refs: Vec<&super::packed_cpu::Packed> = packed.iter().map(|p| p.as_ref()).collect();
    let outs = super::packed_cpu::matmul_many(&xd, &refs, super::gemm_cpu::Threads::Pool);
    let tensors: Option<Vec<Tensor<B, 3>>> =
        outs.into_iter().zip(ws).map(|(o, w)| from_any(Box::new(nd_tensor(o, &[b, s, w.dims()[1]])))).collect();
    tensors?.try_into().ok()
}

/// A 2-D float32 tensor's data as `(slice, rows, cols)` when it is row-major in place (the
/// packed-weight registry finds weights by address, so a gathered copy would never match).
pub(super) fn weight_in_place(t: &NdArrayTensor) -> Option<(&[f32], usize, usize)> {
    match f32_data(t)? {
        (shape, Cow::Borrowed(data)) if shape.len() == 2 => Some((data, shape[0], shape[1])),
        _ => None,
    }
}

/// Fused [`super::silu_mul`] when `B` has a kernel; `None` otherwise.
pub(super) fn silu_mul<B: Backend, const D: usize>(g: &Tensor<B, D>, u: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if !supported::<B>() || g.dims() != u.dims() {
        return None;
    }
    let shape = g.dims();
    let (g, u) = (primitive(g), primitive(u));
    let out: Box<dyn Any> = if TypeId::of::<B>() == TypeId::of::<Nd>() {
        let (gd, ud) = (f32_data(inner(&g)?)?.1, f32_data(inner(&u)?)?.1);
        Box::new(nd_tensor(swiglu_cpu::forward(&gd, &ud), &shape))
    } else {
        let (g, u) = (as_autodiff::<B>(&g)?, as_autodiff::<B>(&u)?);
        let (gd, ud) = (f32_data(&g.primitive)?.1, f32_data(&u.primitive)?.1);
        let out = nd_tensor(swiglu_cpu::forward(&gd, &ud), &shape);
        Box::new(
            match SiluMulBackward
                .prepare::<NoCheckpointing>([g.node.clone(), u.node.clone()])
                .compute_bound()
                .stateful()
            {
                // The inputs' buffers are shared (reference counted), not copied.
                OpsKind::Tracked(prep) => prep.finish((g.primitive.clone(), u.primitive.clone()), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            },
        )
    };
    from_any(out)
}

/// Fused [`super::swiglu_add_rms_norm`] on the backend without autodiff (inference and
/// the no-grad cycles); `None` otherwise.
pub(super) fn swiglu_add_rms_norm<B: Backend, const D: usize>(
    h: &Tensor<B, D>,
    [gate, up, down]: [&Tensor<B, 2>; 3],
    eps: f64,
) -> Option<Tensor<B, D>> {
    let shape = h.dims();
    let d = *shape.last()?;
    let [d_in, width] = gate.dims();
    let rows = shape.iter().product::<usize>() / d.max(1);
    // When each thread's share is a handful of rows (AR decoding), the linear kernel's
    // row-streaming path beats the per-task GEMMs of the fused one.
    let few_rows = rows <= linear_cpu::FEW_ROWS * super::pool::threads();
    if TypeId::of::<B>() != TypeId::of::<Nd>()
        || d == 0
        || few_rows
        || d_in != d
        || up.dims() != [d, width]
        || down.dims() != [width, d]
    {
        return None;
    }
    let (hp, gp, up, dp) = (primitive(h), primitive(gate), primitive(up), primitive(down));
    let (hd, gd) = (f32_data(inner(&hp)?)?.1, f32_data(inner(&gp)?)?.1);
    let (ud, dd) = (f32_data(inner(&up)?)?.1, f32_data(inner(&dp)?)?.1);
    let out = swiglu_cpu::swiglu_add_rms_norm(&hd, [&gd, &ud, &dd], d, width, eps as f32);
    from_any(Box::new(nd_tensor(out, &shape)))
}

/// Backward node of the fused `silu(g)·u`; its state is (g, u).
#[derive(Debug)]
struct SiluMulBackward;

impl Backward<Nd, 2> for SiluMulBackward {
    type State = (NdArrayTensor, NdArrayTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_g, node_u] = ops.parents;
        let grad = grads.consume::<Nd>(&ops.node);
        let (g, u) = ops.state;
        let (shape, dout) = f32_data(&grad).expect("the gradient of a float32 output is float32");
        let (_, gd) = f32_data(&g).expect("saved float32 input");
        let (_, ud) = f32_data(&u).expect("saved float32 input");
        let (dg, du) = swiglu_cpu::backward(&gd, &ud, &dout);
        for (node, d) in [(node_g, dg), (node_u, du)] {
            if let Some(node) = node {
                grads.register::<Nd>(node.id, nd_tensor(d, &shape));
            }
        }
    }
}

/// Fused [`super::linear`] when `B` has a kernel; `None` otherwise.
pub(super) fn linear<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    w: &Tensor<B, 2>,
    b: Option<&Tensor<B, 1>>,
) -> Option<Tensor<B, D>> {
    let [d_in, d_out] = w.dims();
    let x_shape = x.dims();
    if !supported::<B>() || D == 0 || x_shape[D - 1] != d_in || b.is_some_and(|b| b.dims() != [d_out]) {
        return None;
    }
    let dims = linear_cpu::Dims { rows: x_shape[..D - 1].iter().product(), d_in, d_out };
    let mut out_shape = x_shape;
    out_shape[D - 1] = d_out;
    let (xp, wp, bp) = (primitive(x), primitive(w), b.map(primitive));
    let out: Box<dyn Any> = if TypeId::of::<B>() == TypeId::of::<Nd>() {
        let (xd, wd) = (f32_data(inner(&xp)?)?.1, f32_data(inner(&wp)?)?.1);
        let bd = match &bp {
            Some(p) => Some(f32_data(inner(p)?)?.1),
            None => None,
        };
        Box::new(nd_tensor(linear_cpu::forward(&xd, &wd, bd.as_deref(), dims), &out_shape))
    } else {
        let bias = match &bp {
            Some(p) => Some(as_autodiff::<B>(p)?),
            None => None,
        };
        Box::new(autodiff_linear(as_autodiff::<B>(&xp)?, as_autodiff::<B>(&wp)?, bias, dims, &out_shape)?)
    };
    from_any(out)
}

fn autodiff_linear(
    x: AdPrimitive,
    w: AdPrimitive,
    b: Option<AdPrimitive>,
    dims: linear_cpu::Dims,
    out_shape: &[usize],
) -> Option<AdPrimitive> {
    let out = {
        let (xd, wd) = (f32_data(&x.primitive)?.1, f32_data(&w.primitive)?.1);
        let bd = match &b {
            Some(b) => Some(f32_data(&b.primitive)?.1),
            None => None,
        };
        nd_tensor(linear_cpu::forward(&xd, &wd, bd.as_deref(), dims), out_shape)
    };
    // x and W are kept by reference count, not copied.
    let state = LinearState { x: x.primitive.clone(), w: w.primitive.clone(), dims };
    Some(match b {
        None => {
            match LinearBackward.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()]).compute_bound().stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
        Some(b) => match LinearBiasBackward
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    })
}

#[derive(Clone, Debug)]
struct LinearState {
    x: NdArrayTensor,
    w: NdArrayTensor,
    dims: linear_cpu::Dims,
}

/// Registers the gradients of the tracked inputs among x, W and b.
fn linear_backward(
    grads: &mut Gradients,
    state: &LinearState,
    dy: &NdArrayTensor,
    [x_id, w_id, b_id]: [Option<NodeId>; 3],
) {
    let dims = state.dims;
    let (mut shape, dy) = f32_data(dy).expect("the gradient of a float32 output is float32");
    if let Some(id) = x_id {
        let (_, w) = f32_data(&state.w).expect("saved float32 weight");
        if let Some(last) = shape.last_mut() {
            *last = dims.d_in;
        }
        grads.register::<Nd>(id, nd_tensor(linear_cpu::grad_x(&w, &dy, dims), &shape));
    }
    if let Some(id) = w_id {
        let (_, x) = f32_data(&state.x).expect("saved float32 input");
        grads.register::<Nd>(id, nd_tensor(linear_cpu::grad_w(&x, &dy, dims), &[dims.d_in, dims.d_out]));
    }
    if let Some(id) = b_id {
        grads.register::<Nd>(id, nd_tensor(linear_cpu::grad_b(&dy, dims), &[dims.d_out]));
    }
}

/// Backward node of the fused linear map without bias.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Nd, 2> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x, w] = ops.parents;
        let dy = grads.consume::<Nd>(&ops.node);
        linear_backward(grads, &ops.state, &dy, [x.map(|n| n.id), w.map(|n| n.id), None]);
    }
}

/// Backward node of the fused linear map with bias.
#[derive(Debug)]
struct LinearBiasBackward;

impl Backward<Nd, 3> for LinearBiasBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x, w, b] = ops.parents;
        let dy = grads.consume::<Nd>(&ops.node);
        linear_backward(grads, &ops.state, &dy, [x.map(|n| n.id), w.map(|n| n.id), b.map(|n| n.id)]);
    }
}

/// [`super::contiguous`] when `B` has kernels: the input when already row-major, else a
/// row-major copy (with an identity backward under autodiff); `None` on other backends.
pub(super) fn contiguous<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if !supported::<B>() {
        return None;
    }
    let xp = primitive(x);
    let out: Box<dyn Any> = if TypeId::of::<B>() == TypeId::of::<Nd>() {
        let (shape, Cow::Owned(data)) = f32_data(inner(&xp)?)? else { return Some(x.clone()) };
        Box::new(nd_tensor(data, &shape))
    } else {
        let x_ad = as_autodiff::<B>(&xp)?;
        let (shape, Cow::Owned(data)) = f32_data(&x_ad.primitive)? else { return Some(x.clone()) };
        Box::new(
            IdentityBackward
                .prepare::<NoCheckpointing>([x_ad.node.clone()])
                .compute_bound()
                .stateless(nd_tensor(data, &shape)),
        )
    };
    from_any(out)
}

/// Backward node of [`contiguous`]: the gradient passes through unchanged.
#[derive(Debug)]
struct IdentityBackward;

impl Backward<Nd, 1> for IdentityBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<Nd>(&ops.node);
        if let Some(node) = node {
            grads.register::<Nd>(node.id, grad);
        }
    }
}

/// Fused [`super::rms_norm`] of `x` (+ `residual`) when `B` has a kernel; `None` otherwise.
pub(super) fn rms_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    residual: Option<&Tensor<B, D>>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    let shape = x.dims();
    let d = *shape.last()?;
    if !supported::<B>() || d == 0 || residual.is_some_and(|r| r.dims() != shape) {
        return None;
    }
    let (xp, rp) = (primitive(x), residual.map(primitive));
    let out: Box<dyn Any> = if TypeId::of::<B>() == TypeId::of::<Nd>() {
        let rd = match &rp {
            Some(r) => Some(f32_data(inner(r)?)?.1),
            None => None,
        };
        let (y, _) = rms_norm_cpu::forward(&f32_data(inner(&xp)?)?.1, rd.as_deref(), d, eps as f32);
        Box::new(nd_tensor(y, &shape))
    } else {
        let x = as_autodiff::<B>(&xp)?;
        let r = match &rp {
            Some(r) => Some(as_autodiff::<B>(r)?),
            None => None,
        };
        let rd = match &r {
            Some(r) => Some(f32_data(&r.primitive)?.1),
            None => None,
        };
        let (y, inv) = rms_norm_cpu::forward(&f32_data(&x.primitive)?.1, rd.as_deref(), d, eps as f32);
        let (y, inv) = (nd_tensor(y, &shape), Arc::new(inv));
        Box::new(match r {
            None => match RmsNormBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((y.clone(), inv, d), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            },
            Some(r) => {
                match RmsNormBackward
                    .prepare::<NoCheckpointing>([x.node.clone(), r.node.clone()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish((y.clone(), inv, d), y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                }
            }
        })
    };
    from_any(out)
}

/// Backward node of the fused RMSNorm of one input or of the sum of two (which get the same
/// gradient); its state is the output, each row's 1/rms and d.
#[derive(Debug)]
struct RmsNormBackward;

impl<const N: usize> Backward<Nd, N> for RmsNormBackward {
    type State = (NdArrayTensor, Arc<Vec<f32>>, usize);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Nd>(&ops.node);
        if ops.parents.iter().all(Option::is_none) {
            return;
        }
        let (y, inv, d) = ops.state;
        let (shape, dy) = f32_data(&grad).expect("the gradient of a float32 output is float32");
        let (_, y) = f32_data(&y).expect("saved float32 output");
        // One buffer, shared (reference counted) by both inputs of a sum.
        let dx = nd_tensor(rms_norm_cpu::backward(&y, &inv, &dy, d), &shape);
        for node in ops.parents.into_iter().flatten() {
            grads.register::<Nd>(node.id, dx.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array, IxDyn};

    /// Every permutation of the axes of a [2, 3, 4, 5] array and a sliced view: the gathered
    /// data equals ndarray's logical-order iteration, and the fast path is the one taken.
    #[test]
    fn permuted_views_are_gathered_in_logical_order() {
        let base = Array::from_iter((0..120).map(|v| v as f32)).into_shape_with_order(IxDyn(&[2, 3, 4, 5])).unwrap();
        let mut perms = vec![];
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let mut seen = [false; 4];
                        [a, b, c, d].iter().for_each(|&i| seen[i] = true);
                        if seen.iter().all(|&x| x) {
                            perms.push([a, b, c, d]);
                        }
                    }
                }
            }
        }
        assert_eq!(perms.len(), 24);
        for perm in perms {
            let view = base.view().permuted_axes(IxDyn(&perm));
            let want: Vec<f32> = view.iter().copied().collect();
            let memory = view.as_slice_memory_order().expect("a permutation of a contiguous array");
            let strides: Vec<usize> = view.strides().iter().map(|&s| s as usize).collect();
            assert_eq!(gather(memory, view.shape(), &strides), want, "{perm:?}");
            let tensor = NdArrayTensor::from(base.to_shared().permuted_axes(IxDyn(&perm)));
            assert_eq!(f32_data(&tensor).unwrap().1.as_ref(), want.as_slice(), "{perm:?}");
        }
        // A sliced (not contiguous in any order) view takes the iterator and agrees too.
        let sliced = base.to_shared().slice_move(s![.., 1.., ..;2, ..]).into_dyn();
        assert!(sliced.as_slice_memory_order().is_none());
        let want: Vec<f32> = sliced.iter().copied().collect();
        assert_eq!(f32_data(&NdArrayTensor::from(sliced)).unwrap().1.as_ref(), want.as_slice());
        // Empty views.
        let empty = Array::<f32, _>::zeros(IxDyn(&[3, 0, 2]));
        assert!(gather(&[], empty.shape(), &[0, 2, 1]).is_empty());
    }
}
