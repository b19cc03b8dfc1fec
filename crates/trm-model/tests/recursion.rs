//! Properties of the recursion that do not need fixtures.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::{Int, Tensor, TensorData};
use trm_model::checkpoint::official_gradients;
use trm_model::{act_loss, supervision_step_train, Carry, LossType, TrmConfig};

type B = Autodiff<NdArray<f32>>;

fn config(t: usize) -> TrmConfig {
    let mut c = TrmConfig::sudoku_att();
    c.hidden_size = 32;
    c.num_heads = 4;
    c.t_cycles = t;
    c.n_cycles = 2;
    c.seq_len = 6;
    c.vocab_size = 5;
    c.puzzle_emb_ndim = 32;
    c.puzzle_emb_len = 2;
    c.num_puzzle_identifiers = 3;
    c
}

/// The T-1 no-grad cycles build no graph: the gradients of a T=3 step equal those of a T=1
/// step started from the carry the two no-grad cycles produce.
#[test]
fn no_grad_cycles_contribute_no_gradient() {
    let device = Default::default();
    let m3 = config(3).init_seeded::<B>(&device, 11);
    // Same weights, T = 1.
    let m1 = config(1)
        .init_seeded::<B>(&device, 11)
        .load_official_tensors(m3.to_official_tensors().into_iter().collect())
        .unwrap();
    let inputs =
        Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 0, 1, 2, 2, 3, 3, 4, 4], [2, 6]), &device);
    let labels = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![1i64, 2, -100, 4, 0, 1, 2, 2, 3, 3, 4, -100], [2, 6]),
        &device,
    );
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);

    let inner3 = m3.valid();
    let x3 = m3.input_embeddings(inputs.clone(), m3.puzzle_rows(ids.clone()));
    let step3 = supervision_step_train(&m3, &inner3, x3, inner3.initial_carry(2));
    let g3 = official_gradients(
        &m3,
        &act_loss(&step3.heads, labels.clone(), LossType::StablemaxCrossEntropy, None).total.backward(),
    );

    // The carry after two no-grad cycles, computed separately.
    let inner1 = m1.valid();
    let xi = inner1.input_embeddings(inputs.clone().inner(), inner1.puzzle_rows(ids.clone().inner()));
    let start: Carry<_> = inner1.deep_recursion(&xi, inner1.initial_carry(2), 2);
    let x1 = m1.input_embeddings(inputs, m1.puzzle_rows(ids));
    let step1 = supervision_step_train(&m1, &inner1, x1, start);
    let g1 = official_gradients(
        &m1,
        &act_loss(&step1.heads, labels, LossType::StablemaxCrossEntropy, None).total.backward(),
    );

    assert_eq!(g1.keys().collect::<Vec<_>>(), g3.keys().collect::<Vec<_>>());
    assert!(g1.len() >= 10);
    for (name, a) in &g3 {
        let a = a.to_vec::<f32>().unwrap();
        let b = g1[name].to_vec::<f32>().unwrap();
        let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let scale: f32 = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(diff <= 1e-5 * scale.max(1e-6), "{name}: max diff {diff} (scale {scale})");
    }
    // And the step outputs agree.
    let (y3, y1) =
        (step3.carry.y.into_data().to_vec::<f32>().unwrap(), step1.carry.y.into_data().to_vec::<f32>().unwrap());
    assert!(y3.iter().zip(&y1).all(|(a, b)| (a - b).abs() < 1e-5));
}

/// Halted samples leave the batch: results do not depend on which other samples share it.
#[test]
fn inference_compaction_gives_per_sample_results() {
    use trm_model::{trm_inference, InferenceOptions};
    let device = Default::default();
    type I = NdArray<f32>;
    let mut model = config(2).init_seeded::<I>(&device, 3);
    // Make the Q head halt sample-dependently.
    let q_data: Vec<f32> = (0..64).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
    model.q_head.weight =
        burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(q_data, [32, 2]), &device));
    let inputs: Vec<i64> = (0..24).map(|i| (i * 5 % 5) as i64).collect();
    let all = trm_inference(
        &model,
        Tensor::<I, 2, Int>::from_data(TensorData::new(inputs.clone(), [4, 6]), &device),
        Tensor::<I, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), &device),
        InferenceOptions { max_steps: 6, halt: true },
    );
    for i in 0..4 {
        let one = trm_inference(
            &model,
            Tensor::<I, 2, Int>::from_data(TensorData::new(inputs[i * 6..i * 6 + 6].to_vec(), [1, 6]), &device),
            Tensor::<I, 1, Int>::from_data(TensorData::new(vec![[0i64, 1, 2, 1][i]], [1]), &device),
            InferenceOptions { max_steps: 6, halt: true },
        );
        assert_eq!(one.steps[0], all.steps[i], "sample {i}");
        assert_eq!(one.prediction(0), all.prediction(i), "sample {i}");
        assert!((one.q_halt[0] - all.q_halt[i]).abs() < 1e-4);
        assert!(all.steps[i] == 6 || all.q_halt[i] > 0.0);
    }
}
