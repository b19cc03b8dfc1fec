//! Tests of the packed-weight products.
use super::*;
use crate::kernels::gemm_cpu::matmul_new;
use crate::kernels::linear_cpu::view;

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 37 + seed * 101) % 211) as f32 / 105.0 - 1.0).collect()
}

/// `gemm`'s bits on the model's shapes and odd ones (a last panel of every width, fewer
/// columns than a vector, rows not a multiple of the tile), on pools of 1-3 threads.
#[test]
fn products_are_the_bits_of_gemm() {
    if !packs(1, 1) {
        eprintln!("skipped: this CPU has no FMA (AVX2 or AVX-512), so nothing is packed here");
        return;
    }
    let shapes = [
        (97, 128, 128),
        (97, 128, 512),
        (97, 512, 128),
        (128, 97, 512),
        (256, 512, 1536),
        (49, 96, 256),
        (7, 33, 70),
        (13, 512, 17),
        (6, 20, 100),
        (1, 5, 3),
    ];
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for &(rows, k, n) in &shapes {
            let (x, w) = (values(rows * k, 1), values(k * n, 2));
            let want = matmul_new(&view(&x, rows, k), &view(&w, k, n), Threads::One);
            let packed = Packed::new(&w, k, n);
            let got = pool.install(|| matmul(&x, &packed, Threads::Pool));
            assert!(got == want, "[{rows},{k}]·[{k},{n}] on {threads} threads");
            assert!(matmul(&x, &packed, Threads::One) == want, "[{rows},{k}]·[{k},{n}] on one thread");
        }
        // Several products of one x in one section: each the bits of its own.
        let (rows, k) = (97, 32);
        let x = values(rows * k, 5);
        let ws: Vec<Vec<f32>> = [32, 70, 128].iter().map(|&n| values(k * n, n)).collect();
        let packed: Vec<Packed> = ws.iter().zip([32, 70, 128]).map(|(w, n)| Packed::new(w, k, n)).collect();
        let got = pool.install(|| matmul_many(&x, &packed.iter().collect::<Vec<_>>(), Threads::Pool));
        for ((got, w), n) in got.iter().zip(&ws).zip([32, 70, 128]) {
            assert!(*got == matmul_new(&view(&x, rows, k), &view(w, k, n), Threads::One), "n {n}, {threads} threads");
        }
    }
}

/// A weight is found only inside a scope that registered it, for products of at most
/// `MAX_ROWS` rows with its own shape; nested scopes keep it until the last one ends, and a
/// panic ends a scope.
#[test]
fn packed_copies_live_exactly_as_long_as_their_scopes() {
    if !packs(1, 1) {
        eprintln!("skipped: this CPU has no FMA (AVX2 or AVX-512), so nothing is packed here");
        return;
    }
    let (w, long_k) = (values(8 * 16, 3), values(600 * 4, 4));
    assert!(lookup(&w, 10, 8, 16).is_none(), "no scope open");
    with_packed(&[(&w, 8, 16), (&long_k, 600, 4)], || {
        assert!(lookup(&w, 10, 8, 16).is_some());
        assert!(lookup(&w, MAX_ROWS + 1, 8, 16).is_none(), "too many rows");
        assert!(lookup(&w, 10, 16, 8).is_none(), "another shape at the same address");
        assert!(lookup(&w[16..], 10, 7, 16).is_none(), "another address");
        assert!(lookup(&long_k, 10, 600, 4).is_none(), "k past one gemm block is not packed");
        with_packed(&[(&w, 8, 16)], || assert!(lookup(&w, 10, 8, 16).is_some()));
        assert!(lookup(&w, 10, 8, 16).is_some(), "the outer scope still holds it");
    });
    assert!(lookup(&w, 10, 8, 16).is_none(), "removed with its last scope");
    let caught = std::panic::catch_unwind(|| with_packed(&[(&w, 8, 16)], || panic!("inside")));
    assert!(caught.is_err());
    assert!(lookup(&w, 10, 8, 16).is_none(), "a panic ends the scope");
}

/// A supervision step at batch 1 inside the inference scope (every network product on the
/// packed weights) gives the bits of the same step outside it, for both mixers.
#[test]
fn a_step_on_packed_weights_gives_the_same_bits() {
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tensor};

    use crate::config::TrmConfig;
    use crate::kernels::{ndarray_glue, with_packed_weights};

    if !packs(1, 1) {
        eprintln!("skipped: this CPU has no FMA (AVX2 or AVX-512), so nothing is packed here");
        return;
    }
    let device = Default::default();
    for mlp_t in [false, true] {
        let mut cfg = if mlp_t { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
        (cfg.hidden_size, cfg.num_heads, cfg.seq_len, cfg.puzzle_emb_ndim, cfg.n_cycles) = (32, 4, 25, 32, 2);
        let model = cfg.init_seeded::<NdArray<f32>>(&device, 7);
        let s = cfg.full_seq_len();
        let x = Tensor::<NdArray<f32>, 3>::random([1, s, 32], Distribution::Normal(0.0, 1.0), &device);
        let step = || {
            let out = model.supervision_step(&x, model.initial_carry(1));
            (out.carry.y.into_data(), out.carry.z.into_data(), out.heads.logits.into_data())
        };
        let want = step();
        let weights = ndarray_glue::network_weights(&model).expect("an NdArray model");
        let got = with_packed_weights(&model, s, || {
            // Every weight of the network is registered while the scope is open.
            for w in &weights {
                let (data, k, n) = ndarray_glue::weight_in_place(w).expect("weights lie in place");
                assert!(lookup(data, s, k, n).is_some(), "mlp_t {mlp_t}: a [{k}, {n}] weight not packed");
            }
            step()
        });
        assert!(got == want, "mlp_t {mlp_t}");
    }
}
