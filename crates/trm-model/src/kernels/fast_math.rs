//! `exp` for the CPU kernels: Cephes' single-precision polynomial with a Cody–Waite range
//! reduction, branch-free so the loops that call it vectorise (libm's `expf` is a scalar call
//! per element, ~10 % of a training step before). Within 2 float32 ulp of the true value on
//! the whole range, like libm.

/// Runs `f` compiled for the widest SIMD this CPU has (pulp's run-time dispatch: AVX-512,
/// AVX2+FMA, else the baseline the crate is built for). For the compute-bound loops (the
/// `exp` polynomial over scores and SwiGLU activations); pass an `#[inline(always)]`
/// closure that calls only `#[inline(always)]` functions, so its whole body is compiled for
/// the chosen width. Rust does not contract `a·b + c` into an FMA, so every width computes
/// the same bits.
#[inline(always)]
pub(crate) fn widest_simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// The width [`widest_simd`] runs at on this CPU, from the same detection: `AVX-512` (pulp's
/// x86-64-v4), `AVX2+FMA` (v3), else `baseline` (what the crate is built for).
pub(crate) fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    #[allow(unreachable_patterns)] // `Arch` is non-exhaustive
    match pulp::Arch::new() {
        pulp::Arch::V4(_) => "AVX-512",
        pulp::Arch::V3(_) => "AVX2+FMA",
        _ => "baseline",
    }
    #[cfg(not(target_arch = "x86_64"))]
    "baseline"
}

/// Below this e^x is under float32's smallest normal and the result is 0.
const MIN_ARG: f32 = -87.336_55;
/// Above this the result is clamped to e^88 (finite) instead of overflowing to infinity.
const MAX_ARG: f32 = 88.0;

/// e^x in float32.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` kept the loops that call this scalar (see below)
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·ln2 is exact in the reduction (Cephes C1, C2).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5·2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    // Comparisons rather than `clamp`, and the exponent bits taken from a float (below)
    // rather than an `as i32` cast: both keep the loop vectorised (measured 2.5 vs 4.2 ns per
    // element for silu·u; libm 5.0). A NaN passes through and comes out NaN.
    let clamped = if x < MIN_ARG {
        MIN_ARG
    } else if x > MAX_ARG {
        MAX_ARG
    } else {
        x
    };
    let n = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n: n + 127 + 2^23 is exact, and its low mantissa bits are n + 127, which the shift
    // moves into the exponent field (n is in [-126, 127] after the clamp).
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    if x < MIN_ARG {
        0.0
    } else {
        y * scale
    }
}

/// Lanes of the reductions below: independent accumulators the compiler can keep in vector
/// registers (a single running sum is one dependent add per element, ~4 cycles each).
const LANES: usize = 8;

/// Σ f(x_i) over a slice, accumulated in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let full = n / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (lane, a) in acc.iter_mut().enumerate() {
            *a += f(base + lane);
        }
    }
    let tail: f32 = (full..n).map(&f).sum();
    acc.iter().sum::<f32>() + tail
}

/// Σ x_i·y_i over the shorter length.
#[inline(always)]
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    lane_sum(n, |i| x[i] * y[i])
}

/// Accumulators of [`exp_sum_in_place`]: one AVX-512 vector, so the sum rides along in
/// the loop that makes the exps.
const EXP_LANES: usize = 16;

/// x_i ← e^(x_i − shift) for every element; returns Σ e^(x_i − shift), accumulated in
/// [`EXP_LANES`] interleaved partial sums. One pass where an exp pass and a sum pass were
/// two: ~20 % less time for a softmax row of 97 scores.
#[inline(always)]
pub(crate) fn exp_sum_in_place(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; EXP_LANES];
    let mut chunks = x.chunks_exact_mut(EXP_LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *x = exp(*x - shift);
            *a += *x;
        }
    }
    let mut tail = 0.0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        tail += *x;
    }
    acc.iter().sum::<f32>() + tail
}

/// max x_i (−∞ for an empty slice; NaNs are skipped, and propagate through the exp and sum
/// of a softmax instead).
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let lanes = acc.iter().copied().fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
    chunks.remainder().iter().copied().fold(lanes, |m, v| if v > m { v } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_plain_loops_on_every_tail_length() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 4.5).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.25).collect();
            let d: f64 = x.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
            assert!((dot(&x, &y) as f64 - d).abs() < 1e-4, "dot n={n}");
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&x), m, "max n={n}");
        }
        assert_eq!(max(&[1.0, f32::NAN, 3.0]), 3.0);
        for n in [0, 1, 15, 16, 17, 97] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 4.5).collect();
            let mut e = x.clone();
            let total = exp_sum_in_place(&mut e, 2.0);
            let want: f64 = x.iter().map(|&v| (v as f64 - 2.0).exp()).sum();
            assert!((total as f64 - want).abs() <= 1e-6 * want.max(1.0), "exp sum n={n}");
            assert!(e.iter().zip(&x).all(|(&e, &x)| e.to_bits() == exp(x - 2.0).to_bits()), "exps n={n}");
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_true_value() {
        let mut worst = 0.0f64;
        let steps = 2_000_000;
        for i in 0..=steps {
            let x = MIN_ARG + (MAX_ARG - MIN_ARG) * i as f32 / steps as f32;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            // One ulp of the true value in float32.
            let ulp = f32::EPSILON as f64 * 2f64.powi(want.log2().floor() as i32);
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_handles_the_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0).is_finite() && exp(1000.0) >= exp(MAX_ARG));
        assert!((exp(1.0) - std::f32::consts::E).abs() <= f32::EPSILON * 4.0);
    }
}
