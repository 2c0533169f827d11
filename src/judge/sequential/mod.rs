//! The statistics of the judge: **anytime-valid sequential tests** over everything the cutover has
//! seen, from its first judged period to the end of the observation, across its bakes.
//!
//! Each test keeps an *e-value* Eₜ: a number that starts at 1, that a healthy release cannot be
//! expected to grow (a nonnegative supermartingale under the test's null hypothesis), and that a
//! regression makes grow exponentially. A test rejects the first time its e-value reaches 1/αᵢ. By
//! **Ville's inequality**, for a nonnegative supermartingale starting at 1,
//!
//! ```text
//! P(∃t: Eₜ ≥ 1/αᵢ) ≤ αᵢ
//! ```
//!
//! so a healthy release trips test i with probability at most αᵢ **however often the judge looks
//! and however long the cutover runs**. The αᵢ add up to α = 1 − `confidence` ([`budget`]).
//! Every e-value here is a **mixture likelihood ratio** (Robbins' mixture SPRT): a likelihood
//! ratio of one alternative is a nonnegative martingale under the null, a fixed-weight average
//! over a grid of alternatives ([`mixture`]) is one too, and it is within a few nats of the best of
//! them whatever the true effect.
//!
//! Notation for period t: nₜ new requests with eₜ errors, mₜ live requests with fₜ errors.
//! CloudWatch's sums are rounded to whole counts.
//!
//! | test | module | null hypothesis | decides |
//! | --- | --- | --- | --- |
//! | error rate vs `max_error_rate` p₀ | [`threshold`] | new rate ≤ p₀ | yes |
//! | error rate vs live, minimum effect δ | [`difference`] | new rate ≤ live rate + δ, any live rate | yes |
//! | error rate vs the baseline, at 100 % | [`baseline`] | new rate ≤ baseline rate + δ | yes |
//! | error ratio vs live | [`ratio`] | new rate ≤ live rate | no: reported |
//! | latency vs live | [`sign`] | median latency ratio ≤ `max_latency_ratio` | yes (a heuristic) |
//! | late onsets | [`detector`] | as its test, for T periods | with its test |
//!
//! * **The minimum effect.** A statistically real but tiny increase must not roll back. The
//!   difference test tests the δ-shifted null itself, at one α: a regression below δ rolls back
//!   with probability at most αᵢ, one just above δ takes long to prove (in proportion to
//!   1/(a − b − δ)²), δ = 0 is an ordinary test of "no worse".
//! * **Late onsets.** Each deciding test also runs a mixture of CUSUM e-detectors valid for T
//!   periods (a day of periods, at least 1440), with half its α: a regression that starts after a
//!   healthy stretch is caught about as fast as one present from the start.
//! * **Small samples** are weighed as what they are: against 1 % at αᵢ = 0.25 %, 1 error in the
//!   first 3 requests is an e-value of 3.6, 2 in 3 are 183, 3 in 3 reject.
//!
//! What is rigorous: the error-rate tests, given that requests fail independently (binomial
//! counts; bursts of correlated failures make every count-based test anti-conservative), and, for
//! the baseline, that the live rate has not changed since it was read. A heuristic: the latency
//! test, because latency statistics of consecutive periods are correlated ([`sign`]).
//!
//! This module is pure and allocation-free per period: each test's state is a few fixed arrays.

pub mod baseline;
pub mod budget;
pub mod detector;
pub mod difference;
pub mod mixture;
pub mod ratio;
pub mod sign;
#[cfg(test)]
mod tests;
pub mod threshold;

pub use budget::{Budget, Enabled};

use self::baseline::BaselineTest;
use self::detector::Detector;
use self::difference::DifferenceTest;
use self::ratio::RatioTest;
use self::sign::SignTest;
use self::threshold::ThresholdTest;
use super::Criteria;

/// The baseline test judges the periods in which the live colour served at most 1 in this many of
/// the new colour's requests (under 5 % of the traffic).
const LIVE_TRICKLE: u64 = 20;

/// One test's standing: its e-values against their thresholds, and the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// ln of the plain e-value now.
    pub log_e: f64,
    /// ln(1/α) the plain e-value needs (its half of the test's α with a detector).
    pub log_threshold: f64,
    /// The onset detector's ln e-value now and the ln(T/α) it needs.
    pub onset: Option<(f64, f64)>,
    /// The anytime-valid p-value: the smallest α at which the test would have rejected so far.
    pub p_value: f64,
    pub rejected: bool,
}

impl Score {
    fn of(
        log_e: f64,
        best: f64,
        plain_alpha: f64,
        onset_now: Option<f64>,
        detector: Option<&Detector>,
        rejected: bool,
    ) -> Score {
        let p_plain = (-best).exp();
        let (onset, p) = match (detector, onset_now) {
            (Some(d), Some(now)) => {
                let p_onset = d.horizon() as f64 * (-d.best()).exp();
                (Some((now, d.log_threshold())), 2.0 * p_plain.min(p_onset))
            }
            _ => (None, p_plain),
        };
        Score {
            log_e,
            log_threshold: -plain_alpha.ln(),
            onset,
            p_value: p.min(1.0),
            rejected,
        }
    }

    /// The e-value closest to its threshold, as (ln e, ln threshold): what a log line shows.
    pub fn nearest(&self) -> (f64, f64) {
        match self.onset {
            Some((e, t)) if e - t > self.log_e - self.log_threshold => (e, t),
            _ => (self.log_e, self.log_threshold),
        }
    }
}

/// One period's counts, rounded, and its latency statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Period {
    pub n: u64,
    pub e: u64,
    pub m: u64,
    pub f: u64,
    pub new_latency: Option<f64>,
    pub live_latency: Option<f64>,
}

/// Every sequential test of a plan, over the whole cutover.
#[derive(Debug, Clone)]
pub struct Tests {
    pub budget: Budget,
    pub error_rate: ThresholdTest,
    /// The live colour against the same limit: only to recognise a shared failure (no α).
    pub live_error_rate: ThresholdTest,
    pub vs_live: DifferenceTest,
    pub ratio: RatioTest,
    pub vs_baseline: Option<BaselineTest>,
    pub latency_vs_live: Option<SignTest>,
}

impl Tests {
    /// The tests of `c`, with the baseline's (errors, requests) when there is one; onset detectors
    /// valid for `horizon` periods; latency votes by the majority of `block` periods.
    pub fn new(c: &Criteria, baseline: Option<(u64, u64)>, horizon: u64, block: u32) -> Tests {
        let baseline = baseline.filter(|b| b.1 > 0);
        let budget = super::baseline::budget(c, baseline.is_some());
        let delta = c.max_error_rate_increase;
        Tests {
            budget,
            error_rate: ThresholdTest::new(c.max_error_rate, budget.error_rate).with_onset_detection(horizon),
            live_error_rate: ThresholdTest::new(c.max_error_rate, budget.error_rate).with_onset_detection(horizon),
            vs_live: DifferenceTest::new(delta, budget.error_rate_vs_live).with_onset_detection(horizon),
            ratio: RatioTest::new(budget.error_rate_vs_live),
            vs_baseline: baseline.map(|(e, n)| {
                BaselineTest::new(
                    e,
                    n,
                    delta,
                    budget.baseline_bound,
                    budget.error_rate_vs_baseline,
                    Some(horizon),
                )
            }),
            latency_vs_live: c
                .max_latency_ratio
                .map(|r| SignTest::new(r, budget.latency_vs_live, block, Some(horizon))),
        }
    }

    /// Adds the next period (in time order, each once). O(grid) work, no allocation.
    pub fn update(&mut self, p: &Period) {
        let (n, m) = (p.n, p.m);
        let (e, f) = (p.e.min(n), p.f.min(m));
        self.error_rate.update(e, n);
        self.live_error_rate.update(f, m);
        self.vs_live.update(n, e, m, f);
        self.ratio.update(n, e, m, f);
        // Where the live colour has (almost) no traffic left to compare with: at 100 %, and at
        // "100 %" with a trickle that target-group stickiness keeps on it (the comparison with it
        // is nearly powerless there). Valid at any split: the test needs the new colour only.
        if n > 0
            && m.saturating_mul(LIVE_TRICKLE) <= n
            && let Some(b) = &mut self.vs_baseline
        {
            b.update(e, n);
        }
        if let (Some(t), Some(a), Some(b)) = (&mut self.latency_vs_live, p.new_latency, p.live_latency)
            && n > 0
            && m > 0
            && a > 0.0
            && b > 0.0
        {
            t.update(a / b);
        }
    }
}
