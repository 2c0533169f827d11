//! The error-rate **ratio** of the new colour to the live colour, by the conditional binomial
//! mixture (two Poisson counting processes, conditioned on their total): H0 "in every period the
//! new colour's error rate is at most the live colour's". It is *reported* ("×3.2, anytime
//! ≥ ×1.9"): the decision with a minimum effect δ is the difference test's
//! ([`super::difference`]), which tests the δ-shifted null itself. It spends no α.
//!
//! # The test
//!
//! Period t: nₜ new requests with eₜ errors, mₜ live requests with fₜ errors; kₜ = eₜ + fₜ and
//! πₜ = nₜ/(nₜ + mₜ). For independent Poisson counts with means nₜ aₜ and mₜ bₜ,
//!
//! ```text
//! eₜ | kₜ ~ Binomial(kₜ, θₜ),   θₜ = λₜπₜ / (λₜπₜ + 1 − πₜ),   λₜ = aₜ/bₜ
//! ```
//!
//! whatever the live rate bₜ and however the shares move. Grid point j is a ratio λ_j = e^{u_j}:
//!
//! ```text
//! ln LR_j = u_j E − Σ_t kₜ ln(1 + πₜ(λ_j − 1))          (E = Σ eₜ)
//! ```
//!
//! A period's factor is increasing in eₜ with mean exactly 1 at θ = π, and Binomial(k, θ) is
//! stochastically increasing in θ, so for every λₜ ≤ 1 each LR_j (and the mixture) is a
//! nonnegative supermartingale. For binomial counts with equal rates eₜ | kₜ is hypergeometric;
//! the factor is convex in e, and Hoeffding's theorem (sampling without replacement is dominated
//! in convex order) keeps its mean at most 1.
//!
//! The reported bound is the largest grid ratio c such that H0(c') is rejected for every grid
//! c' ≤ c, each by the mixture over the grid points above it: an anytime-valid lower bound.

use super::mixture::{GRID, Grid, log_sum_exp, ratio_grid};

/// Sequential test of the error-rate ratio new/live against 1 (reported, see the module docs).
#[derive(Debug, Clone)]
pub struct RatioTest {
    alpha: f64,
    grid: Grid,
    /// Σ_t kₜ ln(1 + πₜ(λ_j − 1)).
    spent: [f64; GRID],
    /// λ_j − 1.
    lambda_m1: [f64; GRID],
    e: u64,
    n: u64,
    f: u64,
    m: u64,
}

impl RatioTest {
    /// `alpha` is the level of the reported bound (the ratio test decides nothing).
    pub fn new(alpha: f64) -> RatioTest {
        RatioTest::with_grid(alpha, ratio_grid())
    }

    pub fn with_grid(alpha: f64, grid: Grid) -> RatioTest {
        let mut lambda_m1 = [0.0; GRID];
        for (l, u) in lambda_m1.iter_mut().zip(grid.tilts()) {
            *l = u.exp_m1();
        }
        RatioTest {
            alpha,
            grid,
            spent: [0.0; GRID],
            lambda_m1,
            e: 0,
            n: 0,
            f: 0,
            m: 0,
        }
    }

    /// Adds one period (skipped unless both colours served requests).
    pub fn update(&mut self, n: u64, e: u64, m: u64, f: u64) {
        let (e, f) = (e.min(n), f.min(m));
        if n == 0 || m == 0 {
            return;
        }
        self.n += n;
        self.m += m;
        self.e += e;
        self.f += f;
        let k = (e + f) as f64;
        if k > 0.0 {
            let pi = n as f64 / (n + m) as f64;
            for (s, l) in self.spent.iter_mut().zip(&self.lambda_m1) {
                *s += k * (pi * l).ln_1p();
            }
        }
    }

    fn ell(&self) -> impl Iterator<Item = f64> + Clone + '_ {
        let e = self.e as f64;
        self.grid
            .tilts()
            .iter()
            .zip(&self.spent[..self.grid.len()])
            .map(move |(u, s)| u * e - s)
    }

    /// ln of the mixture e-value against a ratio ≤ 1.
    pub fn log_e_value(&self) -> f64 {
        self.grid.log_mix(self.ell())
    }

    /// (E/N)/(F/M) over the periods both colours served (∞ with new errors and no live ones).
    pub fn estimate(&self) -> Option<f64> {
        if self.n == 0 || self.m == 0 {
            return None;
        }
        let new = self.e as f64 / self.n as f64;
        let live = self.f as f64 / self.m as f64;
        Some(if live > 0.0 {
            new / live
        } else if new > 0.0 {
            f64::INFINITY
        } else {
            1.0
        })
    }

    /// The anytime-valid lower bound on the ratio, on the grid: `None` while "ratio ≤ 1" is not
    /// rejected at the test's α.
    pub fn lower_bound(&self) -> Option<f64> {
        let thr = -self.alpha.ln();
        if self.log_e_value() < thr {
            return None;
        }
        let mut ell = [0.0; GRID];
        for (x, v) in ell.iter_mut().zip(self.ell()) {
            *x = v;
        }
        let (u, ln_w) = (self.grid.tilts(), self.grid.ln_weights());
        let mut bound = 1.0;
        for i in 0..u.len().saturating_sub(1) {
            let ln_wsum = log_sum_exp(ln_w[i + 1..].iter().copied());
            let ln_e = log_sum_exp(ln_w[i + 1..].iter().zip(&ell[i + 1..]).map(|(w, x)| w + x - ell[i])) - ln_wsum;
            if ln_e < thr {
                break;
            }
            bound = u[i].exp();
        }
        Some(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-12), "{a} vs {b}");
    }

    #[test]
    fn the_conditional_likelihood_with_changing_shares_by_hand() {
        // λ = 2. Period 1: n = m = 10 (π = ½), e = 1, f = 0: θ = 2/3, LR = (2/3)/(1/2) = 4/3.
        // Period 2: n = 30, m = 10 (π = ¾), e = f = 1: θ = 6/7, LR = 8/7 · 4/7 = 32/49.
        // Together 128/147 = λ^E Π(1 + π(λ − 1))^(−k) = 4/(1.5 · 1.75²).
        let mut t = RatioTest::with_grid(0.05, Grid::single(2f64.ln()));
        t.update(10, 1, 10, 0);
        close(t.log_e_value().exp(), 4.0 / 3.0, 1e-12);
        t.update(30, 1, 10, 1);
        close(t.log_e_value().exp(), 128.0 / 147.0, 1e-12);
    }

    #[test]
    fn the_bound_grows_with_a_large_ratio() {
        let mut t = RatioTest::new(0.01);
        assert_eq!(t.lower_bound(), None);
        for _ in 0..100 {
            t.update(1000, 10, 1000, 1);
        }
        let lb = t.lower_bound().expect("rejected");
        assert!(lb > 3.0 && lb < 10.0, "{lb}");
        close(t.estimate().unwrap(), 10.0, 1e-12);
    }
}
