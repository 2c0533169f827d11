//! The mixing grid every sequential test shares: a fixed set of *tilts* u₁ < … < u_J (log odds
//! ratios, log rate ratios or exponential tilts, depending on the test) with fixed weights w_j
//! summing to 1.
//!
//! A mixture Σ_j w_j · L_j of nonnegative supermartingales with weights fixed before any data is
//! again a nonnegative supermartingale, so each test's e-value is
//!
//! ```text
//! E = Σ_j w_j exp(ℓ_j)          ℓ_j = the log likelihood ratio (or log e-process) of grid point j
//! ```
//!
//! Not knowing the effect size costs at most ln(1/w_j) nats of evidence (ln 24 ≈ 3.2 for 24 equal
//! weights) plus the discretisation loss between grid points (about 1 % of the evidence for a
//! geometric grid with ratio 1.25). Choosing the grid from the data would break the guarantee:
//! it is a constant of the code.

/// The most grid points a test keeps (its state is a few fixed-size arrays of this length).
pub const GRID: usize = 24;

/// A fixed mixing grid: tilts and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    u: [f64; GRID],
    ln_w: [f64; GRID],
    len: usize,
}

impl Grid {
    /// `len` tilts spaced geometrically from `lo` to `hi` (0 < lo ≤ hi), with equal weights.
    pub fn geometric(lo: f64, hi: f64, len: usize) -> Grid {
        Grid::geometric_tilted(lo, hi, len, 0.0)
    }

    /// Like [`Grid::geometric`], with weights proportional to u^`power` (a positive power favours
    /// large effects: blatant regressions are decided sooner, subtle ones a little later).
    pub fn geometric_tilted(lo: f64, hi: f64, len: usize, power: f64) -> Grid {
        assert!(lo > 0.0 && hi >= lo && hi.is_finite(), "bad grid range");
        assert!((1..=GRID).contains(&len), "a grid has 1 to {GRID} points");
        let mut points = [(0.0, 0.0); GRID];
        for (j, p) in points.iter_mut().take(len).enumerate() {
            let u = if len == 1 {
                lo
            } else {
                lo * (hi / lo).powf(j as f64 / (len - 1) as f64)
            };
            *p = (u, u.powf(power));
        }
        Grid::weighted(&points[..len])
    }

    /// Explicit `(tilt, weight)` points, tilts > 0 and increasing; weights are normalised.
    pub fn weighted(points: &[(f64, f64)]) -> Grid {
        assert!((1..=GRID).contains(&points.len()), "a grid has 1 to {GRID} points");
        assert!(points.iter().all(|p| p.1 > 0.0), "weights must be > 0");
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "tilts must increase");
        assert!(points[0].0 > 0.0, "tilts must be > 0");
        let total: f64 = points.iter().map(|p| p.1).sum();
        let mut g = Grid {
            u: [0.0; GRID],
            ln_w: [0.0; GRID],
            len: points.len(),
        };
        for (j, &(u, w)) in points.iter().enumerate() {
            g.u[j] = u;
            g.ln_w[j] = (w / total).ln();
        }
        g
    }

    /// One point: the plain SPRT (for hand-worked tests).
    pub fn single(u: f64) -> Grid {
        Grid::weighted(&[(u, 1.0)])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: a grid has at least one point.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tilts u_j.
    pub fn tilts(&self) -> &[f64] {
        &self.u[..self.len]
    }

    /// ln w_j.
    pub fn ln_weights(&self) -> &[f64] {
        &self.ln_w[..self.len]
    }

    /// ln Σ_j w_j exp(ℓ_j): the log of the mixture e-value, given each point's log evidence.
    pub fn log_mix(&self, ell: impl Iterator<Item = f64> + Clone) -> f64 {
        log_sum_exp(self.ln_weights().iter().zip(ell).map(|(w, l)| w + l))
    }
}

/// ln Σ exp(xᵢ), without overflow; −∞ for an empty sum. Terms more than 40 nats below the
/// largest (each under 4e−18 of it) are left out: they cannot change the sum of at most
/// [`GRID`] terms in the 16th digit, and most of a healthy test's points are far below.
pub fn log_sum_exp(x: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = x.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + x.filter(|v| *v > max - 40.0).map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The root of a decreasing `f` on `[lo, hi]` (f(lo) ≥ 0 ≥ f(hi)), by bisection.
pub fn bisect_decreasing(mut lo: f64, mut hi: f64, f: impl Fn(f64) -> f64) -> f64 {
    // To a millionth of a percentage point: what a log line shows, in about 30 steps.
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if f(mid) >= 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-8 * (1.0 + lo.abs()) {
            break;
        }
    }
    lo
}

/// Odds ratios e^u from 1.05 to about 3000: the one-sample rate tests (error rate against a limit).
pub fn rate_grid() -> Grid {
    Grid::geometric(0.05, 8.0, GRID)
}

/// Rate ratios e^u from 1.1 to 1000: the ratio of the two colours' error rates (reported).
pub fn ratio_grid() -> Grid {
    Grid::geometric(1.1f64.ln(), 1000f64.ln(), GRID)
}

/// Exponential tilts from 0.02 to 3 (capped per period): the difference of the error rates.
pub fn difference_grid() -> Grid {
    Grid::geometric(0.02, 3.0, GRID)
}

/// Odds ratios of the sign tests: the chance that a period is over its line, q = e^u/(1 + e^u),
/// from 0.55 to 0.99, weighted toward the top: a regression makes nearly every period slower, and
/// one that does is then decided in about 11 votes instead of 14.
pub fn sign_grid() -> Grid {
    Grid::geometric_tilted(0.2, 4.6, 12, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_grid_spans_its_range_with_equal_weights() {
        let g = Grid::geometric(0.1, 10.0, 3);
        assert_eq!(g.len(), 3);
        assert!((g.tilts()[0] - 0.1).abs() < 1e-15);
        assert!((g.tilts()[1] - 1.0).abs() < 1e-12);
        assert!((g.tilts()[2] - 10.0).abs() < 1e-12);
        let total: f64 = g.ln_weights().iter().map(|w| w.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn tilted_weights_are_proportional_to_the_tilt() {
        // Tilts 1, 2, 4 with power 1: weights 1/7, 2/7, 4/7.
        let g = Grid::geometric_tilted(1.0, 4.0, 3, 1.0);
        let w: Vec<f64> = g.ln_weights().iter().map(|w| w.exp() * 7.0).collect();
        for (got, want) in w.iter().zip([1.0, 2.0, 4.0]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
    }

    #[test]
    fn the_mixture_is_the_weighted_average() {
        let g = Grid::weighted(&[(1.0, 1.0), (2.0, 3.0)]);
        // 0.25·e^0 + 0.75·e^(ln 5) = 0.25 + 3.75 = 4.
        assert!((g.log_mix([0.0, 5f64.ln()].into_iter()) - 4f64.ln()).abs() < 1e-12);
        // Without overflow far out.
        assert!((log_sum_exp([1000.0, 1000.0].into_iter()) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(log_sum_exp(std::iter::empty()), f64::NEG_INFINITY);
    }

    #[test]
    #[should_panic(expected = "tilts must increase")]
    fn tilts_must_increase() {
        Grid::weighted(&[(2.0, 1.0), (1.0, 1.0)]);
    }
}
