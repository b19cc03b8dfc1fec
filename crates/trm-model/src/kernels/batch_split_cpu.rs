//! The recursion without gradients with the batch split across rayon's threads, on the
//! CPU backend: each thread runs whole network calls on its share of the samples, with
//! every kernel inside kept on that thread ([`pool::serially`]).
//!
//! Samples never mix inside the network (attention and the mlp_t mixer work within one
//! sample; the linear maps, SwiGLU and RMSNorm work on rows), and no kernel's result for a
//! row depends on how many rows come with it, so the split gives the same bits as the
//! whole batch. What it saves is the fork-join of each product and elementwise pass (~26
//! per network call) and the operands each product leaves split between two cores' caches.

use std::any::{Any, TypeId};
use std::ops::Range;

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::pool;
use crate::model::{Carry, Trm};

type Nd = NdArray<f32>;

/// Samples per thread below which the batch is not split unless it divides evenly: with
/// fewer, the thread with the smaller share would wait for a large fraction of the call.
const MIN_SAMPLES_PER_THREAD: usize = 4;

/// How `batch` samples are split over `threads`: one contiguous range per thread, sizes
/// differing by at most one; `None` when the batch is better left whole (one thread, fewer
/// samples than threads, or uneven shares of fewer than [`MIN_SAMPLES_PER_THREAD`]).
pub(super) fn shares(batch: usize, threads: usize) -> Option<Vec<Range<usize>>> {
    let even = batch.is_multiple_of(threads);
    if threads < 2 || batch < threads || (!even && batch < MIN_SAMPLES_PER_THREAD * threads) {
        return None;
    }
    Some((0..threads).map(|t| t * batch / threads..(t + 1) * batch / threads).collect())
}

/// [`Trm::deep_recursion`] with the batch split across the threads, when `B` is the CPU
/// backend without autodiff and the batch splits well ([`shares`]); `None` otherwise, and
/// inside a share already.
pub(crate) fn deep_recursion<B: Backend>(
    model: &Trm<B>,
    x: &Tensor<B, 3>,
    carry: &Carry<B>,
    cycles: usize,
) -> Option<Carry<B>> {
    if TypeId::of::<B>() != TypeId::of::<Nd>() || pool::is_serial() || cycles == 0 {
        return None;
    }
    let shares = shares(x.dims()[0], rayon::current_num_threads())?;
    let model = (model as &dyn Any).downcast_ref::<Trm<Nd>>()?;
    let x = (x as &dyn Any).downcast_ref::<Tensor<Nd, 3>>()?;
    let carry = (carry as &dyn Any).downcast_ref::<Carry<Nd>>()?;
    let parts: Vec<Carry<Nd>> = shares
        .into_par_iter()
        .map(|r| {
            let x = x.clone().narrow(0, r.start, r.len());
            pool::serially(|| model.deep_recursion_whole(&x, carry.narrow(r), cycles))
        })
        .collect();
    (Box::new(Carry::cat(parts)) as Box<dyn Any>).downcast::<Carry<B>>().ok().map(|c| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrmConfig;
    use burn::tensor::Distribution;

    #[test]
    fn shares_cover_the_batch_in_order_or_leave_it_whole() {
        assert_eq!(shares(32, 2), Some(vec![0..16, 16..32]));
        assert_eq!(shares(6, 4), None, "uneven and under 4 per thread");
        assert_eq!(shares(4, 4), Some(vec![0..1, 1..2, 2..3, 3..4]));
        assert_eq!(shares(1, 2), None);
        assert_eq!(shares(9, 1), None);
        assert_eq!(shares(3, 2), None);
        let s = shares(19, 4).expect("19 over 4");
        assert_eq!(s.first().map(|r| r.start), Some(0));
        assert_eq!(s.last().map(|r| r.end), Some(19));
        assert!(s.windows(2).all(|w| w[0].end == w[1].start));
        assert!(s.iter().all(|r| r.len() == 4 || r.len() == 5));
    }

    /// The split recursion gives the whole batch's bits, for both mixers, on pools of 1-3
    /// threads, with batches that split evenly, unevenly and not at all.
    #[test]
    fn split_recursion_gives_the_bits_of_the_whole_batch() {
        let device = Default::default();
        for mlp_t in [false, true] {
            let mut cfg = if mlp_t { TrmConfig::sudoku_mlp() } else { TrmConfig::sudoku_att() };
            (cfg.hidden_size, cfg.num_heads, cfg.seq_len, cfg.puzzle_emb_ndim, cfg.n_cycles) = (32, 4, 9, 32, 2);
            let model = cfg.init_seeded::<Nd>(&device, 3);
            for batch in [1, 3, 8, 9] {
                let s = cfg.full_seq_len();
                let x = Tensor::<Nd, 3>::random([batch, s, 32], Distribution::Normal(0.0, 1.0), &device);
                let carry = model.initial_carry(batch);
                let whole = model.deep_recursion_whole(&x, carry.clone(), 2);
                let want = (whole.y.into_data(), whole.z.into_data());
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let split = pool.install(|| {
                        let split = shares(batch, threads).is_some();
                        let c = deep_recursion(&model, &x, &carry, 2);
                        assert_eq!(c.is_some(), split, "mlp_t {mlp_t} batch {batch} threads {threads}");
                        c.unwrap_or_else(|| model.deep_recursion(&x, carry.clone(), 2))
                    });
                    assert_eq!(
                        (split.y.into_data(), split.z.into_data()),
                        want,
                        "mlp_t {mlp_t} batch {batch} threads {threads}"
                    );
                }
            }
        }
    }
}
