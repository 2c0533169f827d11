//! The error budget: how α = 1 − `confidence` is split between the checks that can roll back.
//!
//! The promise: a healthy release rolls back by these checks with probability at most α over the
//! **whole cutover**, however many polls look. Each check is anytime-valid at its own αᵢ over the
//! whole cutover (one state from the first judged period to the end of the observation, never
//! restarted per step), so by the union (Bonferroni) bound
//!
//! ```text
//! P(any check ever rejects | healthy) ≤ Σᵢ αᵢ = α
//! ```
//!
//! with no assumption about how the checks depend on each other. The weights, renormalised over
//! the checks a plan has:
//!
//! | check | weight | at confidence 0.99, every check on |
//! | --- | --- | --- |
//! | error rate vs `max_error_rate` | 2 | 0.286 % |
//! | error rate vs live, minimum effect δ | 2 | 0.286 % |
//! | baseline: its upper bound | 1 | 0.143 % |
//! | baseline: the sequential test at 100 % | 1 | 0.143 % |
//! | latency vs live (sign test) | 1 | 0.143 % (nominal: a heuristic) |
//!
//! The error checks get more because they are rigorous. The split is not sensitive: halving an
//! αᵢ costs ln 2 ≈ 0.7 nats of evidence against the 7–10 a rejection needs. Each check with an
//! onset detector splits its share once more, in halves between its plain e-value and its
//! detector.
//!
//! Spending nothing: the live colour's own test against `max_error_rate`, which can only *stop* a
//! rollback (a shared failure); the ratio of the error rates, which is reported and decides
//! nothing. Outside the budget, because they are rules the plan states rather than tests:
//! `max_latency`, `critical_error_rate`, `[[rollback.metrics]]`, alarms and `on_no_data`.

/// Which optional checks a plan has (the two error-rate checks always run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    pub baseline: bool,
    pub latency_vs_live: bool,
}

/// The α of each check; they sum to the total α.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub error_rate: f64,
    pub error_rate_vs_live: f64,
    pub baseline_bound: f64,
    pub error_rate_vs_baseline: f64,
    pub latency_vs_live: f64,
}

impl Budget {
    /// The split of `alpha` (see the module docs).
    pub fn split(alpha: f64, enabled: Enabled) -> Budget {
        assert!(alpha > 0.0 && alpha < 1.0, "alpha is in (0, 1)");
        let on = |b: bool, w: f64| if b { w } else { 0.0 };
        let w = [
            2.0,
            2.0,
            on(enabled.baseline, 1.0),
            on(enabled.baseline, 1.0),
            on(enabled.latency_vs_live, 1.0),
        ];
        let total: f64 = w.iter().sum();
        let a = |i: usize| alpha * w[i] / total;
        Budget {
            error_rate: a(0),
            error_rate_vs_live: a(1),
            baseline_bound: a(2),
            error_rate_vs_baseline: a(3),
            latency_vs_live: a(4),
        }
    }

    /// Σ αᵢ.
    pub fn total(&self) -> f64 {
        self.error_rate
            + self.error_rate_vs_live
            + self.baseline_bound
            + self.error_rate_vs_baseline
            + self.latency_vs_live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_at_99_percent_with_every_check() {
        let b = Budget::split(
            0.01,
            Enabled {
                baseline: true,
                latency_vs_live: true,
            },
        );
        assert!((b.error_rate - 0.02 / 7.0).abs() < 1e-15);
        assert!((b.error_rate_vs_live - 0.02 / 7.0).abs() < 1e-15);
        assert!((b.baseline_bound - 0.01 / 7.0).abs() < 1e-15);
        assert!((b.error_rate_vs_baseline - 0.01 / 7.0).abs() < 1e-15);
        assert!((b.latency_vs_live - 0.01 / 7.0).abs() < 1e-15);
        assert!((b.total() - 0.01).abs() < 1e-15);
    }

    #[test]
    fn checks_a_plan_does_not_have_give_their_share_to_the_others() {
        let b = Budget::split(
            0.01,
            Enabled {
                baseline: false,
                latency_vs_live: false,
            },
        );
        assert!((b.error_rate - 0.005).abs() < 1e-15);
        assert!((b.error_rate_vs_live - 0.005).abs() < 1e-15);
        assert_eq!((b.baseline_bound, b.latency_vs_live), (0.0, 0.0));
        assert!((b.total() - 0.01).abs() < 1e-15);
    }
}
