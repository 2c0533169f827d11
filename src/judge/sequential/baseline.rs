//! The relative error check when there is no live traffic left to compare with (at 100 %): the
//! new colour against the live colour's **baseline**, read by verify before anything changed
//! (b errors in B requests over the quarter hour before the start). H0: "the new colour's rate is
//! at most the baseline rate p_b plus δ".
//!
//! # The test
//!
//! The baseline is one finite sample, read once, so its uncertainty is handled once, by a
//! fixed-sample bound: the exact one-sided Clopper–Pearson upper bound U_b with
//! P(p_b ≤ U_b) ≥ 1 − α_b. The new colour is then tested sequentially against the fixed limit
//! p₀' = min(1, U_b + δ) with the one-sample test of [`super::threshold`] at α_s, fed only the
//! periods without live traffic:
//!
//! ```text
//! P(reject | H0) ≤ P(U_b < p_b) + P(the sequential test rejects | p_new ≤ p_b + δ ≤ U_b + δ)
//!                ≤ α_b + α_s
//! ```
//!
//! # What is rigorous and what is not
//!
//! * Rigorous: the baseline's sampling error (through U_b) and the sequential test of the new
//!   colour (anytime-valid), given the binomial model of each.
//! * Not testable: that the baseline rate is still the live colour's rate now. It was measured
//!   minutes earlier under other traffic; a shared outage during the 100 % step (a database down)
//!   looks like a regression of the new colour, and nothing at 100 % can tell them apart. This is
//!   an assumption of stationarity, not a theorem.
//! * The bound is as wide as the baseline is small: with 0 errors in 30 requests U_b ≈ 20 %, and
//!   the check catches only gross regressions. Hence a quarter hour of history rather than a few
//!   periods (see `Baseline` in `judge::baseline`).

use super::Score;
use super::threshold::ThresholdTest;
use crate::judge::stats::clopper_pearson_upper;

/// Sequential test of the new colour against a baseline bound plus δ (see the module docs).
#[derive(Debug, Clone)]
pub struct BaselineTest {
    errors: u64,
    requests: u64,
    upper: f64,
    alpha_bound: f64,
    test: ThresholdTest,
}

impl BaselineTest {
    /// `alpha_bound` for the baseline's upper bound, `alpha_test` for the sequential test (with an
    /// onset detector valid for `horizon` periods, when given).
    pub fn new(
        errors: u64,
        requests: u64,
        delta: f64,
        alpha_bound: f64,
        alpha_test: f64,
        horizon: Option<u64>,
    ) -> BaselineTest {
        let errors = errors.min(requests);
        let upper = clopper_pearson_upper(errors, requests, alpha_bound);
        let mut test = ThresholdTest::new((upper + delta.max(0.0)).min(1.0), alpha_test);
        if let Some(h) = horizon {
            test = test.with_onset_detection(h);
        }
        BaselineTest {
            errors,
            requests,
            upper,
            alpha_bound,
            test,
        }
    }

    /// Adds one period of the new colour without live traffic: `e` errors of `n` requests.
    pub fn update(&mut self, e: u64, n: u64) -> bool {
        self.test.update(e, n)
    }

    /// The baseline's errors and requests.
    pub fn baseline(&self) -> (u64, u64) {
        (self.errors, self.requests)
    }

    /// U_b: the (1 − α_b) upper bound on the baseline rate.
    pub fn upper(&self) -> f64 {
        self.upper
    }

    /// The limit the new colour is tested against: min(1, U_b + δ).
    pub fn limit(&self) -> f64 {
        self.test.p0()
    }

    /// α_b + α_s.
    pub fn alpha(&self) -> f64 {
        self.alpha_bound + self.test.alpha()
    }

    /// The sequential part.
    pub fn test(&self) -> &ThresholdTest {
        &self.test
    }

    pub fn score(&self) -> Score {
        self.test.score()
    }

    pub fn rejected(&self) -> bool {
        self.test.rejected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_baseline_bound_plus_delta() {
        // 0 of 30 at α_b = 0.05: U_b = 1 − 0.05^(1/30) = 0.095034.
        let t = BaselineTest::new(0, 30, 0.005, 0.05, 0.05, None);
        assert!((t.upper() - 0.095_034).abs() < 1e-5);
        assert!((t.limit() - 0.100_034).abs() < 1e-5);
        assert!((t.alpha() - 0.1).abs() < 1e-15);
        // No baseline at all: the limit is 1 and nothing is ever rejected.
        let mut t = BaselineTest::new(0, 0, 0.005, 0.05, 0.05, None);
        assert_eq!(t.limit(), 1.0);
        assert!(!t.update(100, 100));
    }

    #[test]
    fn a_large_baseline_catches_a_regression_above_delta_only() {
        let mut above = BaselineTest::new(30, 30_000, 0.005, 0.00125, 0.00125, None); // 1 %
        let mut below = BaselineTest::new(30, 30_000, 0.005, 0.00125, 0.00125, None); // 0.5 %
        assert!(above.limit() > 0.0063 && above.limit() < 0.0068, "{}", above.limit());
        let mut at = None;
        for t in 1..=300 {
            if above.update(20, 2000) && at.is_none() {
                at = Some(t);
            }
            below.update(10, 2000);
        }
        assert!(at.is_some_and(|t| t < 60), "{at:?}");
        assert!(!below.rejected());
    }
}
