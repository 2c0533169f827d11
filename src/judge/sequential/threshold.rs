//! The one-sample test of a rate against a fixed limit: H0 "the rate is at most p₀ in every
//! period".
//!
//! Used four times: the new colour's error rate against `max_error_rate`; the live colour's
//! against the same limit (only to recognise a shared failure, so it spends no α); the new
//! colour's against the baseline's bound ([`super::baseline`]); and, with p₀ = ½ and one trial per
//! vote, as the sign test behind the latency check ([`super::sign`]).
//!
//! # The test
//!
//! Period t brings sₜ successes (errors) in nₜ trials (requests). Grid point j is the odds ratio
//! ψ_j = e^{u_j} > 1, the alternative rate p_j = ψ_j p₀ / (1 − p₀ + ψ_j p₀). Its likelihood ratio
//! against p₀ after S = Σ sₜ successes in N = Σ nₜ trials is
//!
//! ```text
//! LR_j = (p_j/p₀)^S ((1−p_j)/(1−p₀))^(N−S) = ψ_j^S · (1 + p₀(ψ_j − 1))^(−N)
//! ln LR_j = u_j S − N ln(1 + p₀(ψ_j − 1))
//! ```
//!
//! so the state is just (S, N). The e-value is E = Σ_j w_j LR_j; the test rejects the first time
//! E ≥ 1/α.
//!
//! # Why it is anytime-valid
//!
//! Let the rate in period t be pₜ ≤ p₀ (it may change from period to period and depend on the
//! past) and sₜ | past, nₜ ~ Binomial(nₜ, pₜ). For ψ ≥ 1
//!
//! ```text
//! E[ψ^sₜ | past, nₜ] = (1 + pₜ(ψ − 1))^nₜ ≤ (1 + p₀(ψ − 1))^nₜ
//! ```
//!
//! so every period's factor ψ^sₜ (1 + p₀(ψ−1))^(−nₜ) has conditional mean ≤ 1: each LR_j, and the
//! fixed-weight mixture E, is a nonnegative supermartingale with E₀ = 1, and Ville's inequality
//! gives P(∃t: Eₜ ≥ 1/α) ≤ α. The test may be looked at after every period, for ever.
//!
//! Binomial errors are the model (each request fails or not). For Poisson counts the factor's
//! mean is exp(n p (ψ−1)) (1 + p(ψ−1))^(−n) ≈ exp(n p² (ψ−1)²/2): above 1, but negligibly so at
//! small rates. Errors that come in bursts (one bad host failing many requests at once) break the
//! model and make the test anti-conservative.
//!
//! # Confidence bound
//!
//! Eₜ(p), the e-value against a limit p instead of p₀, decreases in p. The p where Eₜ(p) = 1/α is
//! an anytime-valid lower confidence bound on a constant rate: it exceeds the true rate p only if
//! Eₜ(p) ≥ 1/α, which has probability at most α.

use super::Score;
use super::detector::Detector;
use super::mixture::{GRID, Grid, bisect_decreasing, rate_grid};

/// Sequential test of H0: rate ≤ p₀ (see the module docs).
#[derive(Debug, Clone)]
pub struct ThresholdTest {
    p0: f64,
    /// The whole test's α.
    alpha: f64,
    /// The plain e-value's share: α, or α/2 with a detector.
    plain_alpha: f64,
    detector: Option<Detector>,
    grid: Grid,
    /// ln(1 + p₀(ψ_j − 1)): what each trial costs grid point j.
    ln_cost: [f64; GRID],
    successes: u64,
    trials: u64,
    /// The largest ln E so far.
    best: f64,
    rejected: bool,
}

impl ThresholdTest {
    /// A test of H0: rate ≤ `p0` at level `alpha` with the default grid of odds ratios.
    pub fn new(p0: f64, alpha: f64) -> ThresholdTest {
        ThresholdTest::with_grid(p0, alpha, rate_grid())
    }

    pub fn with_grid(p0: f64, alpha: f64, grid: Grid) -> ThresholdTest {
        assert!((0.0..=1.0).contains(&p0), "p0 is a rate in [0, 1]");
        assert!(alpha > 0.0 && alpha < 1.0, "alpha is in (0, 1)");
        let mut ln_cost = [0.0; GRID];
        for (c, u) in ln_cost.iter_mut().zip(grid.tilts()) {
            *c = cost(p0, *u);
        }
        ThresholdTest {
            p0,
            alpha,
            plain_alpha: alpha,
            detector: None,
            grid,
            ln_cost,
            successes: 0,
            trials: 0,
            best: 0.0,
            rejected: false,
        }
    }

    /// Adds an onset detector valid for `horizon` updates; the test's α is split in halves between
    /// the plain e-value and the detector. Before any update.
    pub fn with_onset_detection(mut self, horizon: u64) -> ThresholdTest {
        assert_eq!(self.trials, 0, "add the detector before any update");
        self.plain_alpha = self.alpha / 2.0;
        self.detector = Some(Detector::new(horizon, self.alpha / 2.0));
        self
    }

    /// Adds one period: `successes` of `trials`. Returns whether the test has rejected (now or
    /// before: a rejection is final). The plain e-value can only rise with a success, so without
    /// one this costs O(1) (plus the detector's O(grid) additions).
    pub fn update(&mut self, successes: u64, trials: u64) -> bool {
        let successes = successes.min(trials);
        self.successes += successes;
        self.trials += trials;
        if trials > 0
            && let Some(d) = &mut self.detector
        {
            let (s, n) = (successes as f64, trials as f64);
            let inc = self.grid.tilts().iter().zip(&self.ln_cost).map(|(u, c)| u * s - n * c);
            if d.update(&self.grid, inc) {
                self.rejected = true;
            }
        }
        if successes > 0 {
            // ln E ≤ max_j ℓ_j: skip the exponentials when the mixture cannot have risen to a high.
            let top = self.ell().fold(f64::NEG_INFINITY, f64::max);
            if top > self.best {
                let now = self.log_e_value();
                self.best = self.best.max(now);
                if now >= -self.plain_alpha.ln() {
                    self.rejected = true;
                }
            }
        }
        self.rejected
    }

    fn ell(&self) -> impl Iterator<Item = f64> + Clone + '_ {
        let (s, n) = (self.successes as f64, self.trials as f64);
        self.grid
            .tilts()
            .iter()
            .zip(&self.ln_cost)
            .map(move |(u, c)| u * s - n * c)
    }

    /// ln of the plain e-value against p₀ now.
    pub fn log_e_value(&self) -> f64 {
        self.grid.log_mix(self.ell())
    }

    /// ln of the e-value against another limit `p` (same grid of odds ratios).
    pub fn log_e_value_at(&self, p: f64) -> f64 {
        let (s, n) = (self.successes as f64, self.trials as f64);
        self.grid
            .log_mix(self.grid.tilts().iter().map(move |&u| u * s - n * cost(p, u)))
    }

    /// The e-values, their thresholds, the anytime p-value and the decision.
    pub fn score(&self) -> Score {
        Score::of(
            self.log_e_value(),
            self.best,
            self.plain_alpha,
            self.detector.as_ref().map(|d| d.log_e_value(&self.grid)),
            self.detector.as_ref(),
            self.rejected,
        )
    }

    pub fn rejected(&self) -> bool {
        self.rejected
    }

    /// Whether the onset detector is over its threshold *now*: the recent stretch proves the rate
    /// over p₀. Unlike [`rejected`](Self::rejected), which is final, this falls back once the
    /// rate does (the detector's CUSUM forgets a past outage).
    pub fn over_now(&self) -> bool {
        self.detector
            .as_ref()
            .is_some_and(|d| d.log_e_value(&self.grid) >= d.log_threshold())
    }

    /// The whole test's α (plain e-value and detector together).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn p0(&self) -> f64 {
        self.p0
    }

    pub fn successes(&self) -> u64 {
        self.successes
    }

    pub fn trials(&self) -> u64 {
        self.trials
    }

    /// S / N, once there were trials.
    pub fn estimate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// The anytime-valid lower confidence bound on the rate, from the plain e-value (level
    /// 1 − α, or 1 − α/2 with a detector); 0 without evidence. A bisection: call it for a log
    /// line that needs it, not for every period.
    pub fn lower_bound(&self) -> f64 {
        let thr = -self.plain_alpha.ln();
        let f = |p: f64| self.log_e_value_at(p) - thr;
        if f(0.0) < 0.0 {
            return 0.0;
        }
        bisect_decreasing(0.0, 1.0, f)
    }
}

/// ln(1 + p(e^u − 1)), stably.
fn cost(p: f64, u: f64) -> f64 {
    (p * u.exp_m1()).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-12), "{a} vs {b}");
    }

    #[test]
    fn one_point_likelihood_ratio_by_hand() {
        // p₀ = 0.1, ψ = 3 → p₁ = 0.3/1.2 = 0.25. After 2 successes in 5 trials:
        // LR = (0.25/0.1)² (0.75/0.9)³ = 6.25 · 0.578703… = 3.616898…
        let mut t = ThresholdTest::with_grid(0.1, 0.05, Grid::single(3f64.ln()));
        t.update(1, 2);
        t.update(1, 3);
        close(t.log_e_value().exp(), 6.25 * (0.75f64 / 0.9).powi(3), 1e-12);
        close(t.log_e_value(), 1.285_616, 1e-6);
        assert!(!t.rejected());
        // The anytime p-value is 1/(the largest e-value so far), here the current one.
        close(t.score().p_value, 1.0 / 3.616_898, 1e-5);
    }

    #[test]
    fn the_mixture_is_the_weighted_average_of_its_points() {
        let g = Grid::weighted(&[(2f64.ln(), 1.0), (4f64.ln(), 1.0)]);
        let mut t = ThresholdTest::with_grid(0.5, 0.05, g);
        t.update(3, 4);
        // ψ = 2 (p₁ = 2/3): (4/3)³ (2/3) = 1.185185…; ψ = 4 (p₁ = 0.8): 1.6³ · 0.4 = 1.6384.
        let want = 0.5 * ((4.0f64 / 3.0).powi(3) * (2.0 / 3.0)) + 0.5 * (1.6f64.powi(3) * 0.4);
        close(t.log_e_value().exp(), want, 1e-12);
    }

    /// Wald's SPRT boundary for the sign test, worked by hand.
    #[test]
    fn sign_test_rejection_boundary_table() {
        // p₀ = ½, ψ = 3 (q = ¾), α = 0.05: each success multiplies by 1.5, each failure by 0.5.
        // Reject at n trials once 1.5^s 0.5^(n−s) ≥ 20, i.e. s ≥ (ln 20 + n ln 2)/ln 3.
        for (n, s_min) in [(8u64, 8u64), (10, 10), (12, 11), (20, 16), (40, 28)] {
            let lr = |s: u64| 1.5f64.powi(s as i32) * 0.5f64.powi((n - s) as i32);
            assert!(lr(s_min) >= 20.0 && lr(s_min - 1) < 20.0, "n = {n}");
            let mut t = ThresholdTest::with_grid(0.5, 0.05, Grid::single(3f64.ln()));
            t.update(s_min - 1, n);
            assert!(!t.rejected(), "n = {n}, s = {}", s_min - 1);
            let mut t = ThresholdTest::with_grid(0.5, 0.05, Grid::single(3f64.ln()));
            t.update(s_min, n);
            assert!(t.rejected(), "n = {n}, s = {s_min}");
        }
        // All successes, one at a time: the first rejection is at the 8th (1.5⁷ = 17.1 < 20 ≤ 25.6).
        let mut t = ThresholdTest::with_grid(0.5, 0.05, Grid::single(3f64.ln()));
        assert_eq!((1..=20).find(|_| t.update(1, 1)), Some(8));
    }

    #[test]
    fn the_lower_bound_of_one_point_is_in_closed_form() {
        // u S − N ln(1 + p(ψ−1)) = ln(1/α) ⇒ p = (exp((uS − ln(1/α))/N) − 1)/(ψ − 1).
        let (u, s, n, alpha) = (2f64.ln(), 40u64, 100u64, 0.01f64);
        let mut t = ThresholdTest::with_grid(0.1, alpha, Grid::single(u));
        t.update(s, n);
        let want = (((u * s as f64 + alpha.ln()) / n as f64).exp() - 1.0) / (u.exp() - 1.0);
        close(t.lower_bound(), want, 1e-6);
        assert_eq!(ThresholdTest::new(0.1, alpha).lower_bound(), 0.0);
    }

    #[test]
    fn small_samples_are_weighed_as_what_they_are() {
        // Against 1 % at α = 0.25 % (1/α = 400) with the default grid: 1 error in 3 requests
        // gives 3.6, 2 in 3 give 183, 3 in 3 reject.
        let e = |s: u64, n: u64| {
            let mut t = ThresholdTest::new(0.01, 0.0025);
            (t.update(s, n), t.log_e_value().exp())
        };
        let (r1, e1) = e(1, 3);
        assert!(!r1 && (3.0..4.0).contains(&e1), "{e1}");
        let (r2, e2) = e(2, 3);
        assert!(!r2 && (150.0..200.0).contains(&e2), "{e2}");
        let (r3, e3) = e(3, 3);
        assert!(r3 && e3 > 400.0, "{e3}");
    }

    #[test]
    fn the_onset_detector_catches_a_late_jump_the_plain_e_value_misses() {
        // 600 healthy periods (0.1 % against a 1 % limit) of 1000 requests, then 3 %.
        let mut plain = ThresholdTest::new(0.01, 0.01);
        let mut both = ThresholdTest::new(0.01, 0.01).with_onset_detection(2400);
        for i in 0..600u64 {
            let e = u64::from(i % 1000 == 0);
            plain.update(e, 1000);
            both.update(e, 1000);
        }
        let first = |t: &mut ThresholdTest| (1..=300).find(|_| t.update(30, 1000));
        let (p, b) = (first(&mut plain), first(&mut both));
        assert!(b.is_some_and(|b| b <= 10), "{b:?}");
        assert!(p.is_none_or(|p| p > 60), "{p:?}");
        let s = both.score();
        assert!(s.rejected && s.p_value <= 0.01);
        let (_, onset_thr) = s.onset.unwrap();
        close(onset_thr, (2400.0f64 / 0.005).ln(), 1e-12);
        close(s.log_threshold, 200f64.ln(), 1e-12);
    }

    #[test]
    fn failures_alone_never_reject_and_a_rejection_is_final() {
        let mut t = ThresholdTest::new(0.01, 0.01);
        for _ in 0..1000 {
            assert!(!t.update(0, 1000));
        }
        let mut t = ThresholdTest::new(0.01, 0.01);
        assert!(t.update(50, 100));
        assert!(t.update(0, 1_000_000), "a rejection is final");
        assert!(t.log_e_value() < 0.0, "though the evidence has fallen since");
    }

    #[test]
    fn limits_of_one_and_zero() {
        let mut t = ThresholdTest::new(1.0, 0.01);
        assert!(!t.update(100, 100));
        let mut t = ThresholdTest::new(0.0, 0.01);
        assert!(!t.update(0, 100));
        assert!(t.update(2, 100));
    }
}
