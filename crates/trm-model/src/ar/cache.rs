//! A preallocated per-layer KV cache with a scratch slot for the token being refined.
//!
//! Burn's `MhaCache` concatenates on every call, which would append one entry per
//! refinement pass. Here K and V are allocated once as [B, heads, max_len, head_dim]; the
//! committed prefix occupies positions [0, len); the token being refined writes its K/V at
//! position `len` (the scratch slot), overwriting it on every pass; `commit` writes the
//! token's committed K/V there and only then advances `len`. Memory is fixed by `max_len`
//! and never grows with the number of refinement steps.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// K and V of one layer for a batch of sequences decoded in lockstep.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `batch` sequences of at most `max_len` tokens.
    pub fn new(batch: usize, heads: usize, max_len: usize, head_dim: usize, device: &B::Device) -> Self {
        let shape = [batch, heads, max_len, head_dim];
        Self { k: Tensor::zeros(shape, device), v: Tensor::zeros(shape, device), len: 0 }
    }

    /// Committed tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No token committed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tokens the cache holds (committed plus the scratch slot).
    pub fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Bytes allocated for K and V (fixed at construction).
    pub fn allocated_bytes(&self) -> usize {
        2 * self.k.shape().num_elements() * self.k.dtype().size()
    }

    /// Bytes holding committed entries.
    pub fn committed_bytes(&self) -> usize {
        let [b, h, _, d] = self.k.dims();
        2 * b * h * self.len * d * self.k.dtype().size()
    }

    fn write(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        let [b, h, s, d] = k.dims();
        assert_eq!(s, 1, "one position at a time");
        assert!(self.len < self.capacity(), "KV cache full ({} positions)", self.capacity());
        let range = [0..b, 0..h, self.len..self.len + 1, 0..d];
        // Take the buffers out (leaving empty tensors) so that `slice_assign` holds the only
        // reference and can write in place; a clone would copy the whole cache on every pass.
        let device = self.k.device();
        let empty = || Tensor::<B, 4>::empty([0, 0, 0, 0], &device);
        let (old_k, old_v) = (std::mem::replace(&mut self.k, empty()), std::mem::replace(&mut self.v, empty()));
        self.k = old_k.slice_assign(range.clone(), k);
        self.v = old_v.slice_assign(range, v);
    }

    /// Overwrites the scratch slot (position `len`) with the current token's K/V [B, heads, 1, head_dim].
    pub fn write_scratch(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        self.write(k, v);
    }

    /// K and V over the committed prefix plus the scratch slot, [B, heads, len + 1, head_dim].
    pub fn window(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (self.k.clone().narrow(2, 0, self.len + 1), self.v.clone().narrow(2, 0, self.len + 1))
    }

    /// The whole K and V buffers [B, heads, max_len, head_dim] (shared, not copied) and the
    /// window length `len + 1`: for kernels that read the window in place, since burn-ndarray's
    /// `narrow` (as in [`KvCache::window`]) copies it.
    pub fn buffers(&self) -> (Tensor<B, 4>, Tensor<B, 4>, usize) {
        (self.k.clone(), self.v.clone(), self.len + 1)
    }

    /// K and V of the committed prefix, [B, heads, len, head_dim].
    pub fn committed(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (self.k.clone().narrow(2, 0, self.len), self.v.clone().narrow(2, 0, self.len))
    }

    /// Writes the token's committed K/V into the scratch slot and advances `len`.
    pub fn commit(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) {
        self.write(k, v);
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn vals(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn scratch_is_overwritten_and_only_commit_advances() {
        let device = Default::default();
        let mut c = KvCache::<B>::new(1, 1, 3, 2, &device);
        let e = |a: f32| Tensor::<B, 4>::from_floats([[[[a, a + 0.5]]]], &device);
        assert_eq!(c.allocated_bytes(), 2 * 3 * 2 * 4);
        c.write_scratch(e(1.0), e(10.0));
        c.write_scratch(e(2.0), e(20.0));
        assert_eq!(c.len(), 0);
        let (k, v) = c.window();
        assert_eq!(vals(k), vec![2.0, 2.5]);
        assert_eq!(vals(v), vec![20.0, 20.5]);
        c.commit(e(3.0), e(30.0));
        assert_eq!((c.len(), c.committed_bytes()), (1, 2 * 2 * 4));
        c.write_scratch(e(4.0), e(40.0));
        let (k, v) = c.window();
        assert_eq!(vals(k), vec![3.0, 3.5, 4.0, 4.5]);
        assert_eq!(vals(v), vec![30.0, 30.5, 40.0, 40.5]);
        let (k, _) = c.committed();
        assert_eq!(vals(k), vec![3.0, 3.5]);
        // The whole buffers (the unused third position still zero) and the window length.
        let (k, v, window) = c.buffers();
        assert_eq!((vals(k), window), (vec![3.0, 3.5, 4.0, 4.5, 0.0, 0.0], 2));
        assert_eq!(vals(v)[..4], [30.0, 30.5, 40.0, 40.5]);
        // Writing after `buffers` (its tensors dropped) still lands in the cache.
        c.write_scratch(e(5.0), e(50.0));
        assert_eq!(vals(c.window().0), vec![3.0, 3.5, 5.0, 5.5]);
        assert_eq!(c.allocated_bytes(), 2 * 3 * 2 * 4, "allocation never grows");
    }

    #[test]
    #[should_panic(expected = "KV cache full")]
    fn writing_past_capacity_panics() {
        let device = Default::default();
        let mut c = KvCache::<B>::new(1, 1, 1, 2, &device);
        let e = Tensor::<B, 4>::zeros([1, 1, 1, 2], &device);
        c.commit(e.clone(), e.clone());
        c.write_scratch(e.clone(), e);
    }
}
