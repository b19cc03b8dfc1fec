//! Least-squares fits over the sweeps of `trm bench --ar` ([`super::bench`]): the
//! linearity claims are checked by fits with R², not by eye.

use serde::Serialize;

use super::bench::{ArDecodeResult, CacheCapacity};

/// A least-squares line y = slope · x + intercept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LineFit {
    /// Slope.
    pub slope: f64,
    /// Intercept.
    pub intercept: f64,
    /// Coefficient of determination (1 when every point is on the line).
    pub r2: f64,
    /// Largest |residual| over the fitted value, over the points.
    pub max_rel_residual: f64,
}

/// Least-squares fit of `ys` on `xs`. None for fewer than two points or constant `xs`.
pub fn fit_line(xs: &[f64], ys: &[f64]) -> Option<LineFit> {
    let n = xs.len();
    if n < 2 || ys.len() != n {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(xs), mean(ys));
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let fitted = |x: f64| slope * x + intercept;
    let ss_res: f64 = xs.iter().zip(ys).map(|(&x, y)| (y - fitted(x)).powi(2)).sum();
    let ss_tot: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    // All ys equal and on the line: a perfect (flat) fit.
    let r2 = if ss_tot == 0.0 { 1.0 } else { 1.0 - ss_res / ss_tot };
    let max_rel_residual = xs.iter().zip(ys).map(|(&x, y)| ((y - fitted(x)) / fitted(x)).abs()).fold(0.0, f64::max);
    Some(LineFit { slope, intercept, r2, max_rel_residual })
}

/// A fit of latency over one sweep: a JSON line of `trm bench --ar` (`kind` = `ar_fit`).
#[derive(Debug, Clone, Serialize)]
pub struct ArFit {
    /// Always `ar_fit`.
    pub kind: String,
    /// Cache sizing of the cells.
    pub capacity: CacheCapacity,
    /// `prefix` (ms per token against P at fixed K) or `steps` (against K at fixed P).
    pub sweep: String,
    /// The fixed K (prefix sweep) or P (steps sweep).
    pub fixed: usize,
    /// The swept values.
    pub xs: Vec<usize>,
    /// The fit of the median ms per token.
    pub fit: LineFit,
    /// The fit of the fastest ms per token (less sensitive to load from other processes).
    pub fit_min: Option<LineFit>,
    /// The slope per refinement step: ms per step per prefix token (prefix sweep), ms per
    /// step (steps sweep).
    pub slope_per_step_ms: f64,
    /// Largest latency over the smallest in the sweep.
    pub span: f64,
}

/// Fits ms per token against P for every (capacity, K) with three or more prefixes, and
/// against K for every (capacity, P) with three or more step counts.
pub fn ar_fits(results: &[ArDecodeResult]) -> Vec<ArFit> {
    let mut fits = Vec::new();
    for capacity in [CacheCapacity::Shared, CacheCapacity::Tight] {
        let cells: Vec<&ArDecodeResult> = results.iter().filter(|r| r.capacity == capacity).collect();
        for sweep in ["prefix", "steps"] {
            // (the fixed value, the swept value) of a cell in this sweep.
            let at = |r: &ArDecodeResult| if sweep == "prefix" { (r.steps, r.prefix) } else { (r.prefix, r.steps) };
            let fixed_of = |r: &ArDecodeResult| at(r).0;
            let x_of = |r: &ArDecodeResult| at(r).1;
            let mut fixed: Vec<usize> = cells.iter().map(|r| fixed_of(r)).collect();
            fixed.sort_unstable();
            fixed.dedup();
            for f in fixed {
                let mut line: Vec<&&ArDecodeResult> = cells.iter().filter(|r| fixed_of(r) == f).collect();
                line.sort_by_key(|r| x_of(r));
                let xs: Vec<f64> = line.iter().map(|r| x_of(r) as f64).collect();
                let ys: Vec<f64> = line.iter().map(|r| r.ms_per_token).collect();
                // Two points always lie on a line (R² = 1): no evidence of linearity.
                if xs.len() < 3 {
                    continue;
                }
                let Some(fit) = fit_line(&xs, &ys) else { continue };
                let mins: Vec<f64> = line.iter().map(|r| r.min_ms).collect();
                let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ys.iter().copied().fold(0.0, f64::max);
                fits.push(ArFit {
                    kind: "ar_fit".into(),
                    capacity,
                    sweep: sweep.into(),
                    fixed: f,
                    xs: line.iter().map(|r| x_of(r)).collect(),
                    fit,
                    fit_min: fit_line(&xs, &mins),
                    slope_per_step_ms: if sweep == "prefix" { fit.slope / f as f64 } else { fit.slope },
                    span: if lo > 0.0 { hi / lo } else { 0.0 },
                });
            }
        }
    }
    fits
}

/// Sets `rel_to_ref` of every result: its latency over that of the cell with the smallest
/// P, then smallest K, of the same capacity.
pub fn set_reference_ratios(results: &mut [ArDecodeResult]) {
    for capacity in [CacheCapacity::Shared, CacheCapacity::Tight] {
        let reference = results
            .iter()
            .filter(|r| r.capacity == capacity)
            .min_by_key(|r| (r.prefix, r.steps))
            .map(|r| r.ms_per_token);
        for r in results.iter_mut().filter(|r| r.capacity == capacity) {
            r.rel_to_ref = reference.filter(|&m| m > 0.0).map(|m| r.ms_per_token / m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_line_recovers_a_known_line_and_scores_noise() {
        let xs = [16.0, 64.0, 256.0, 1024.0];
        let ys: Vec<f64> = xs.iter().map(|x| 0.5 * x + 3.0).collect();
        let f = fit_line(&xs, &ys).unwrap();
        assert!((f.slope - 0.5).abs() < 1e-12 && (f.intercept - 3.0).abs() < 1e-9);
        assert!((f.r2 - 1.0).abs() < 1e-12 && f.max_rel_residual < 1e-12);
        // y = x² on 0..4, by hand: slope 40/10 = 4, intercept 6 - 8 = -2, residuals 2, -1, -2,
        // -1, 2, so R² = 1 - 14/174.
        let f = fit_line(&[0.0, 1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 4.0, 9.0, 16.0]).unwrap();
        assert!((f.slope - 4.0).abs() < 1e-12 && (f.intercept + 2.0).abs() < 1e-12);
        assert!((f.r2 - (1.0 - 14.0 / 174.0)).abs() < 1e-12, "{}", f.r2);
        assert!(fit_line(&[1.0], &[2.0]).is_none());
        assert!(fit_line(&[2.0, 2.0], &[1.0, 3.0]).is_none());
    }
}
