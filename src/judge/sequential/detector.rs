//! Onset detection: a mixture of CUSUM e-detectors, for regressions that start late.
//!
//! A test's e-value Eₜ = Π_{i≤t} Fᵢ keeps everything since the first period. While the release is
//! healthy the factors are mostly below 1 and the evidence *against* a regression piles up; one
//! that starts after minutes must first pay it back (at 1000 requests a second, a jump to 2 %
//! after 300 healthy seconds: about two minutes instead of two seconds). The detector forgets the
//! past once it stops helping: per grid point j
//!
//! ```text
//! C_j,ₜ = max(C_j,ₜ₋₁, 1) · F_j,ₜ  =  max_{s ≤ t} Π_{i=s..t} F_j,ᵢ        (CUSUM, C_j,₀ = 0)
//! ```
//!
//! and alarms when Σ_j w_j C_j,ₜ ≥ T/α, for a horizon of at most T updates.
//!
//! # Proof (Shiryaev–Roberts bound)
//!
//! Let R_j,ₜ = Σ_{s≤t} Π_{i=s..t} F_j,ᵢ = (R_j,ₜ₋₁ + 1) F_j,ₜ and Rₜ = Σ_j w_j R_j,ₜ. Under the null
//! E[F_j,ₜ | past] ≤ 1, so E[Rₜ | past] ≤ Rₜ₋₁ + 1, and Mₜ = Rₜ + T − t is, for t ≤ T, a
//! nonnegative supermartingale with M₀ = T. By Ville's inequality P(∃t ≤ T: Mₜ ≥ T/α) ≤ α. A
//! maximum is at most a sum, so Σ_j w_j C_j,ₜ ≤ Rₜ ≤ Mₜ: the detector alarms with probability at
//! most α within its horizon. After T updates it stops (an alarm it raised stands). Forgetting
//! costs ln T nats of evidence.
//!
//! A test with a detector splits its α in halves between its plain e-value and the detector, and
//! rejects when either does: a regression present from the start costs ln 2 nats more; a late
//! one is caught in about the time it would take from a fresh start.

use super::mixture::{GRID, Grid};

/// A mixture of CUSUM e-detectors over a test's grid (see the module docs).
#[derive(Debug, Clone)]
pub struct Detector {
    log_c: [f64; GRID],
    horizon: u64,
    updates: u64,
    alpha: f64,
    /// The largest ln Σ w_j C_j seen (−∞ before any update).
    best: f64,
    rejected: bool,
}

impl Detector {
    /// A detector valid for `horizon` updates at level `alpha`.
    pub fn new(horizon: u64, alpha: f64) -> Detector {
        assert!(horizon > 0, "the horizon is at least one update");
        assert!(alpha > 0.0 && alpha < 1.0, "alpha is in (0, 1)");
        Detector {
            log_c: [f64::NEG_INFINITY; GRID],
            horizon,
            updates: 0,
            alpha,
            best: f64::NEG_INFINITY,
            rejected: false,
        }
    }

    /// Adds one update's log-factors ln F_j (one per grid point). Returns whether the detector has
    /// alarmed (final). Inert after `horizon` updates.
    pub fn update(&mut self, grid: &Grid, log_factors: impl Iterator<Item = f64>) -> bool {
        if self.updates >= self.horizon {
            return self.rejected;
        }
        self.updates += 1;
        let mut max = f64::NEG_INFINITY;
        for (c, d) in self.log_c[..grid.len()].iter_mut().zip(log_factors) {
            *c = c.max(0.0) + d;
            max = max.max(*c);
        }
        // ln Σ w_j C_j ≤ max_j ln C_j (the weights sum to 1): skip the exponentials when the
        // mixture cannot have reached a new high.
        if max > self.best {
            let now = self.log_e_value(grid);
            self.best = self.best.max(now);
            if now >= self.log_threshold() {
                self.rejected = true;
            }
        }
        self.rejected
    }

    /// ln Σ_j w_j C_j now.
    pub fn log_e_value(&self, grid: &Grid) -> f64 {
        grid.log_mix(self.log_c[..grid.len()].iter().copied())
    }

    /// The largest ln Σ_j w_j C_j so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// ln(T/α): the evidence an alarm needs.
    pub fn log_threshold(&self) -> f64 {
        (self.horizon as f64 / self.alpha).ln()
    }

    pub fn rejected(&self) -> bool {
        self.rejected
    }

    pub fn horizon(&self) -> u64 {
        self.horizon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cusum_forgets_bad_evidence_and_alarms_at_t_over_alpha() {
        let g = Grid::single(1.0);
        // T = 10, α = 0.1: the threshold is ln 100 = 4.605. Three factors of e^-5, then e^1 each:
        // the CUSUM restarts at 1 (the max with 1), so it alarms at the 5th good update (e^5 ≥ 100).
        let mut d = Detector::new(10, 0.1);
        for _ in 0..3 {
            assert!(!d.update(&g, [-5.0].into_iter()));
        }
        let first = (1..=7).find(|_| d.update(&g, [1.0].into_iter()));
        assert_eq!(first, Some(5));
        assert!((d.log_e_value(&g) - 5.0).abs() < 1e-12);
        assert!((d.best() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn it_is_inert_after_its_horizon() {
        let g = Grid::single(1.0);
        let mut d = Detector::new(3, 0.1);
        for _ in 0..3 {
            d.update(&g, [0.0].into_iter());
        }
        assert!(!d.update(&g, [100.0].into_iter()), "past the horizon nothing counts");
    }
}
