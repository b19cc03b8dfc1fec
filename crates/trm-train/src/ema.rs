//! Exponential moving average of the dense weights (official `models/ema.py`): after every
//! optimizer step, shadow ← μ·shadow + (1 − μ)·θ over the trainable parameters. The puzzle
//! table and H_init/L_init are not averaged (they are buffers, not parameters).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

struct Collect<'a>(&'a mut GradientsParams);

impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.register::<B, D>(param.id, param.val());
    }
}

struct Blend<'a> {
    live: &'a mut GradientsParams,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(live) = self.live.remove::<B, D>(param.id) else { return param };
        let decay = self.decay;
        param.map(|shadow| shadow.mul_scalar(decay) + live.mul_scalar(1.0 - decay))
    }
}

/// One EMA update: `shadow ← decay·shadow + (1 − decay)·live`, matched by parameter id.
/// Pass `live = model.valid()` (never autodiff tensors: they would leak graphs).
pub fn ema_update<B: Backend, M: Module<B>>(shadow: M, live: &M, decay: f64) -> M {
    let mut params = GradientsParams::new();
    live.visit(&mut Collect(&mut params));
    shadow.map(&mut Blend { live: &mut params, decay })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use trm_model::TrmConfig;

    type B = NdArray<f32>;

    #[test]
    fn ema_is_the_weighted_mean_per_parameter() {
        let mut cfg = TrmConfig::sudoku_mlp();
        cfg.hidden_size = 8;
        cfg.seq_len = 4;
        cfg.vocab_size = 5;
        cfg.puzzle_emb_ndim = 0;
        cfg.puzzle_emb_len = 0;
        let device = Default::default();
        let shadow = cfg.init_seeded::<B>(&device, 1);
        // Same ids, different values: the shadow's parameters mapped to a constant.
        struct Fill(f32);
        impl<B: Backend> ModuleMapper<B> for Fill {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let v = self.0;
                p.map(|t| t.zeros_like().add_scalar(v))
            }
        }
        let live = shadow.clone().map(&mut Fill(3.0));
        let shadow = shadow.map(&mut Fill(1.0));
        let out = ema_update(shadow, &live, 0.9);
        // 0.9 * 1 + 0.1 * 3 = 1.2 everywhere.
        let w: Vec<f32> = out.lm_head.weight.val().into_data().to_vec().unwrap();
        assert!(w.iter().all(|v| (v - 1.2).abs() < 1e-6), "{w:?}");
        let b: Vec<f32> = out.q_head.bias.as_ref().unwrap().val().into_data().to_vec().unwrap();
        assert!(b.iter().all(|v| (v - 1.2).abs() < 1e-6));
    }
}
