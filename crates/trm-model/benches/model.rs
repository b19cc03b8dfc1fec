//! Criterion micro-benchmarks of the model's parts on burn-ndarray (`cargo bench -p trm-model`).
//! Names are `<backend>/<what>`. Shapes: sudoku-att / sudoku-mlp at hidden 128, batch 8
//! (small, so the whole suite runs in about a minute on 2 cores).

use std::time::Duration;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trm_model::attention::{Attention, Rope};
use trm_model::bench::{bench_train_step, BenchSpec};
use trm_model::block::Block;
use trm_model::kernels;
use trm_model::layers::SwiGlu;
use trm_model::TrmConfig;

type Cpu = NdArray<f32>;
type Ad = Autodiff<Cpu>;
const BACKEND: &str = "ndarray";
const BATCH: usize = 8;

fn config(mlp: bool) -> TrmConfig {
    let mut cfg = if mlp { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
    cfg.hidden_size = 128;
    cfg.puzzle_emb_ndim = 128;
    cfg
}

fn input<B: Backend>(cfg: &TrmConfig, device: &B::Device) -> Tensor<B, 3> {
    Tensor::random([BATCH, cfg.full_seq_len(), cfg.hidden_size], Distribution::Normal(0.0, 1.0), device)
}

fn benches(c: &mut Criterion) {
    let device = Default::default();
    let att = config(false);
    let mlp = config(true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let rope = Rope::<Ad>::new(att.head_dim(), att.full_seq_len(), att.rope_theta, &device);

    let block = Block::<Ad>::new(&att, &mut rng, &device);
    let x = input::<Ad>(&att, &device);
    c.bench_function(&format!("{BACKEND}/block_fwd_bwd"), |b| {
        b.iter(|| {
            let h = x.clone().require_grad();
            let grads = block.forward(h, Some(&rope)).powi_scalar(2).mean().backward();
            std::hint::black_box(grads);
        })
    });
    let block_mlp = Block::<Ad>::new(&mlp, &mut rng, &device);
    let xm = input::<Ad>(&mlp, &device);
    c.bench_function(&format!("{BACKEND}/block_mlp_t_fwd_bwd"), |b| {
        b.iter(|| {
            let grads = block_mlp.forward(xm.clone().require_grad(), None).powi_scalar(2).mean().backward();
            std::hint::black_box(grads);
        })
    });

    let inner_rope = rope.valid();
    let attention = Attention::<Cpu>::new(att.hidden_size, att.num_heads, &mut rng, &device);
    let xi = input::<Cpu>(&att, &device);
    c.bench_function(&format!("{BACKEND}/attention_fwd"), |b| {
        b.iter(|| std::hint::black_box(attention.forward(xi.clone(), Some(&inner_rope))))
    });
    let swiglu = SwiGlu::<Cpu>::new(att.hidden_size, att.expansion, &mut rng, &device);
    c.bench_function(&format!("{BACKEND}/swiglu_fwd"), |b| b.iter(|| std::hint::black_box(swiglu.forward(xi.clone()))));
    let mixer = SwiGlu::<Cpu>::new(mlp.full_seq_len(), mlp.expansion, &mut rng, &device);
    let xt = input::<Cpu>(&mlp, &device).swap_dims(1, 2);
    c.bench_function(&format!("{BACKEND}/mlp_t_mixer_fwd"), |b| {
        b.iter(|| std::hint::black_box(mixer.forward(xt.clone())))
    });

    // Each fused CPU kernel against the Burn composition it replaces, forward and backward on
    // Autodiff<NdArray> at the block's shapes (D=128, batch 8): same run, so the ratio holds.
    let (s, d, heads) = (att.full_seq_len(), att.hidden_size, att.num_heads);
    let qkv = [0, 1, 2].map(|_| Tensor::<Ad, 3>::random([BATCH, s, d], Distribution::Normal(0.0, 1.0), &device));
    let gu = [0, 1].map(|_| Tensor::<Ad, 3>::random([BATCH, s, 512], Distribution::Normal(0.0, 2.0), &device));
    let w = Tensor::<Ad, 2>::random([d, 512], Distribution::Normal(0.0, 0.1), &device).require_grad();
    for (variant, fused) in [("fused", true), ("reference", false)] {
        fwd_bwd(c, &format!("{BACKEND}/attention_core_fwd_bwd/{variant}"), &qkv, |[q, k, v]| {
            if fused {
                kernels::rope_attention(q, k, v, heads, Some(&rope))
            } else {
                kernels::rope_attention_reference(q, k, v, heads, Some(&rope))
            }
        });
        fwd_bwd(c, &format!("{BACKEND}/linear_fwd_bwd/{variant}"), &[qkv[0].clone()], |[x]| {
            if fused {
                kernels::linear(x, w.clone(), None)
            } else {
                burn::tensor::module::linear(x, w.clone(), None)
            }
        });
        fwd_bwd(c, &format!("{BACKEND}/rms_norm_fwd_bwd/{variant}"), &[qkv[0].clone()], |[x]| {
            if fused {
                kernels::rms_norm(x, 1e-5)
            } else {
                kernels::rms_norm_reference(x, 1e-5)
            }
        });
        fwd_bwd(c, &format!("{BACKEND}/silu_mul_fwd_bwd/{variant}"), &gu, |[g, u]| {
            if fused {
                kernels::silu_mul(g, u)
            } else {
                kernels::silu_mul_reference(g, u)
            }
        });
    }

    // The full training step (loss, backward, AdamW) with the model built outside the timing.
    c.bench_function(&format!("{BACKEND}/supervision_step"), |b| {
        b.iter_custom(|iters| {
            let spec = BenchSpec {
                name: "att".into(),
                config: att.clone(),
                backend: BACKEND.into(),
                warmup: 0,
                iters: iters as usize,
                device_memory: None,
            };
            let r = bench_train_step::<Ad>(&spec, BATCH, &device);
            Duration::from_secs_f64(r.median_s * iters as f64)
        })
    });
}

/// Times f on fresh leaves made from `inputs`, then the backward of the mean square.
fn fwd_bwd<const N: usize>(
    c: &mut Criterion,
    name: &str,
    inputs: &[Tensor<Ad, 3>; N],
    f: impl Fn([Tensor<Ad, 3>; N]) -> Tensor<Ad, 3>,
) {
    c.bench_function(name, |b| {
        b.iter(|| {
            let leaves = inputs.clone().map(|t| t.require_grad());
            std::hint::black_box(f(leaves).powi_scalar(2).mean().backward())
        })
    });
}

criterion_group! {
    name = model;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(model);
