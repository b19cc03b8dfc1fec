//! Times the pieces of one network call on the CPU backend (no autodiff) at a given shape,
//! to see where a supervision step spends its time. Used for docs/benchmarks.md.
//!
//! `cargo run --release -p trm-model --example op_profile -- [batch] [hidden] [heads] [seq]`

use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trm_model::attention::{Attention, Rope};
use trm_model::layers::{fast_silu, rms_norm, Linear, SwiGlu};

type B = NdArray<f32>;

fn time<T>(name: &str, flop: f64, mut f: impl FnMut() -> T) {
    for _ in 0..2 {
        std::hint::black_box(f());
    }
    let iters = 10;
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    let s = t.elapsed().as_secs_f64() / iters as f64;
    let rate = if flop > 0.0 { format!("{:8.1} GFLOP/s", flop / s / 1e9) } else { String::new() };
    println!("{name:<28} {:9.3} ms {rate}", s * 1e3);
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("integer arguments")).collect();
    let (b, d, heads, s) = (
        *args.first().unwrap_or(&32),
        *args.get(1).unwrap_or(&128),
        *args.get(2).unwrap_or(&8),
        *args.get(3).unwrap_or(&97),
    );
    let hd = d / heads;
    let dev = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tokens = (b * s) as f64;
    println!("batch {b} hidden {d} heads {heads} seq {s}");
    let x = Tensor::<B, 3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &dev);
    let lin = Linear::<B>::lecun(d, d, false, &mut rng, &dev);
    time("linear D->D", 2.0 * tokens * (d * d) as f64, || lin.forward(x.clone()));
    let mlp = SwiGlu::<B>::new(d, 4.0, &mut rng, &dev);
    let inner = mlp.inner();
    let xi = Tensor::<B, 3>::random([b, s, inner], Distribution::Normal(0.0, 1.0), &dev);
    time("linear D->inner", 2.0 * tokens * (d * inner) as f64, || mlp.gate.forward(x.clone()));
    time("linear inner->D", 2.0 * tokens * (d * inner) as f64, || mlp.down.forward(xi.clone()));
    time("silu [B,S,inner]", 0.0, || fast_silu(xi.clone()));
    time("mul [B,S,inner]", 0.0, || xi.clone() * xi.clone());
    time("fused silu_mul [B,S,inner]", 0.0, || trm_model::kernels::silu_mul(xi.clone(), xi.clone()));
    time("reference silu_mul", 0.0, || trm_model::kernels::silu_mul_reference(xi.clone(), xi.clone()));
    time("swiglu", 6.0 * tokens * (d * inner) as f64, || mlp.forward(x.clone()));
    time("rms_norm [B,S,D]", 0.0, || rms_norm(x.clone(), 1e-5));
    time("add [B,S,D]", 0.0, || x.clone() + x.clone());
    let att = Attention::<B>::new(d, heads, &mut rng, &dev);
    let rope = Rope::<B>::new(hd, s, 10000.0, &dev);
    let q = Tensor::<B, 4>::random([b, heads, s, hd], Distribution::Normal(0.0, 1.0), &dev);
    time("rope apply q", 0.0, || rope.apply(q.clone()));
    time("heads reshape+swap", 0.0, || x.clone().reshape([b, s, heads, hd]).swap_dims(1, 2) * 1.0);
    let att_flop = 4.0 * (b * heads * s * s * hd) as f64;
    time("attention op", att_flop, || {
        let o = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        burn::tensor::module::attention(q.clone(), q.clone(), q.clone(), None, None, o)
    });
    time("attention manual", att_flop, || {
        let scores = q.clone().matmul(q.clone().swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt());
        burn::tensor::activation::softmax(scores, 3).matmul(q.clone())
    });
    let kt = q.clone().swap_dims(2, 3);
    let scores = q.clone().matmul(kt.clone());
    time("  q k^T", att_flop / 2.0, || q.clone().matmul(kt.clone()));
    time("  softmax", 0.0, || burn::tensor::activation::softmax(scores.clone(), 3));
    time("  exp scores", 0.0, || scores.clone().exp());
    time("  max_dim scores", 0.0, || scores.clone().max_dim(3));
    time("  sum_dim scores", 0.0, || scores.clone().sum_dim(3));
    time("  p v", att_flop / 2.0, || scores.clone().matmul(q.clone()));
    let q3 = q.clone().reshape([b * heads, s, hd]);
    let k3 = q3.clone().swap_dims(1, 2);
    time("  q k^T 3d", att_flop / 2.0, || q3.clone().matmul(k3.clone()));
    time("attention module", 8.0 * tokens * (d * d) as f64 + att_flop, || att.forward(x.clone(), Some(&rope)));
    time("fused rope_attention", att_flop, || {
        trm_model::kernels::rope_attention(x.clone(), x.clone(), x.clone(), heads, Some(&rope))
    });
    time("reference rope_attention", att_flop, || {
        trm_model::kernels::rope_attention_reference(x.clone(), x.clone(), x.clone(), heads, Some(&rope))
    });
    let config =
        trm_model::config::TrmConfig { hidden_size: d, num_heads: heads, ..trm_model::config::TrmConfig::sudoku_att() };
    let block = trm_model::block::Block::<B>::new(&config, &mut rng, &dev);
    let block_flop = 8.0 * tokens * (d * d) as f64 + att_flop + 6.0 * tokens * (d * inner) as f64;
    time("block (attention + SwiGLU)", block_flop, || block.forward(x.clone(), Some(&rope)));
}
