//! A bit-exact re-implementation of NumPy's legacy global generator (`np.random.seed`,
//! `np.random.randint`, `rand`, `permutation`, `shuffle`, `choice(replace=False)`).
//!
//! Why: the official builders draw every random choice (ARC augmentations and
//! translations, Sudoku subsampling and `shuffle_sudoku`) from this generator. Drawing the
//! same numbers in the same order makes our ARC build byte-identical to
//! `build_arc_dataset.py --seed 42`, so puzzle identifiers (and therefore puzzle-embedding
//! rows of official checkpoints) line up, and lets tests compare against the Python
//! builders directly. The algorithms are restated from NumPy's documented behaviour:
//! MT19937 seeded with `init_genrand`, masked rejection sampling for bounded integers,
//! Fisher-Yates from the end for shuffles, and 53-bit doubles from two 32-bit draws.

const N: usize = 624;
const M: usize = 397;

/// NumPy's `RandomState` (MT19937), legacy seeding from a 32-bit integer.
#[derive(Clone)]
pub struct NumpyRng {
    key: Box<[u32; N]>,
    pos: usize,
}

impl std::fmt::Debug for NumpyRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumpyRng").field("pos", &self.pos).finish()
    }
}

impl NumpyRng {
    /// Same as `np.random.seed(seed)` for an integer seed.
    pub fn new(seed: u32) -> Self {
        let mut key = Box::new([0u32; N]);
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253u32.wrapping_mul(s ^ (s >> 30)).wrapping_add(i as u32 + 1);
        }
        NumpyRng { key, pos: N }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % N] & LOWER);
            let mut v = self.key[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= MATRIX_A;
            }
            self.key[i] = v;
        }
        self.pos = 0;
    }

    /// One raw 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `np.random.rand()`: a double in [0, 1) from 53 random bits.
    pub fn rand(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// Uniform integer in [0, max] by masked rejection (NumPy's `random_interval` and the
    /// masked bounded-integer path share this loop). `max == 0` draws nothing.
    fn masked(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.randint(low, high)` (high exclusive). Requires `low < high` and a range
    /// below 2^32, which is all the builders need.
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low < high && high - low <= u32::MAX as i64);
        low + self.masked((high - low - 1) as u32) as i64
    }

    /// `np.random.shuffle(x)` for a list or 1-D array.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.masked(i as u32) as usize;
            x.swap(i, j);
        }
    }

    /// `np.random.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }

    /// `np.random.choice(n, size, replace=False)`, which NumPy implements as
    /// `permutation(n)[:size]`.
    pub fn choice_without_replacement(&mut self, n: usize, size: usize) -> Vec<usize> {
        let mut p = self.permutation(n);
        p.truncate(size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by NumPy 2.4.6:
    //   np.random.seed(42); [np.random.randint(0,8) for _ in range(5)]
    //   np.random.permutation(np.arange(1,10,dtype=np.uint8)); np.random.rand()
    //   np.random.randint(0,1), np.random.randint(0,1000); np.random.permutation(10)
    //   np.random.choice(20,5,replace=False); l=list(range(7)); np.random.shuffle(l)
    #[test]
    fn matches_numpy_legacy_stream() {
        let mut r = NumpyRng::new(42);
        let ints: Vec<i64> = (0..5).map(|_| r.randint(0, 8)).collect();
        assert_eq!(ints, vec![6, 3, 4, 6, 2]);
        let mut digits: Vec<u8> = (1..10).collect();
        r.shuffle(&mut digits);
        assert_eq!(digits, vec![6, 1, 4, 7, 3, 2, 9, 5, 8]);
        assert_eq!(r.rand(), 0.8661761457749352);
        assert_eq!(r.randint(0, 1), 0);
        assert_eq!(r.randint(0, 1000), 99);
        assert_eq!(r.permutation(10), vec![0, 8, 6, 3, 1, 4, 5, 2, 9, 7]);
        assert_eq!(r.choice_without_replacement(20, 5), vec![19, 16, 15, 5, 4]);
        let mut l: Vec<usize> = (0..7).collect();
        r.shuffle(&mut l);
        assert_eq!(l, vec![4, 2, 5, 6, 3, 1, 0]);
    }

    // np.random.seed(0); np.random.randint(0, 2**31) == 209652396
    #[test]
    fn seed_zero_first_draw() {
        let mut r = NumpyRng::new(0);
        assert_eq!(r.randint(0, 1 << 31), 209_652_396);
    }
}
