//! A faithful re-implementation of the decision rule of cutover's judge **before issue 10**
//! (`src/judge/` at commit 9fb63ed), for the side-by-side benchmark. Only what the simulated plan
//! uses is kept: no custom metrics, no critical fast path (the plan has no `critical_error_rate`),
//! `on_no_data = hold`, `on_shared_failure = hold`, `mode = auto`; no wording.
//!
//! * Periods are summed into a growing window until it has `min_requests` new requests; then the
//!   window is judged as one sample and starts afresh. A period without new requests is "no data"
//!   (not added, holds the bake clock).
//! * Error rate vs `max_error_rate`: one-sided exact binomial test at `confidence`, only when the
//!   observed rate is above the limit.
//! * Vs live (when the live colour has ≥ `min_requests` in the window): fail when the difference
//!   is above `max_error_rate_increase` **and** a one-sided two-proportion test (pooled z, or
//!   Fisher's exact test when an expected count is below 5) has p < 1 − confidence.
//! * Latency: the request-weighted mean of the periods' statistics over the window, vs
//!   `max_latency` and vs `max_latency_ratio` × the live colour's (when it has ≥ `min_requests`).
//! * A threshold crossed by both colours alike is a shared failure (holds the bake clock and the
//!   streak).
//! * `failures_to_rollback` consecutive failed verdicts roll back; a pass resets the streak.
//!
//! The engine's bake rules of that commit (re-implemented in `main.rs`): the judge is new at each
//! bake; a bake ends once it has counted its duration, its streak is 0, and no window is still
//! gathering (gathering may extend a bake to twice its length).

use cutover::judge::{Sample, Window};

/// The criteria the current judge uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criteria {
    pub max_error_rate: f64,
    pub max_latency: Option<f64>,
    pub min_requests: u64,
    pub failures_to_rollback: u32,
    pub confidence: f64,
    pub max_error_rate_increase: f64,
    pub max_latency_ratio: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
    NoData,
    SharedFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub failures: u32,
    pub rollback: bool,
    pub counts_toward_bake: bool,
    pub evidence_pending: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    requests: f64,
    errors: f64,
    latency_weighted: f64,
    latency_weight: f64,
}

impl Sum {
    fn add(&mut self, s: &Sample) {
        self.requests += s.requests;
        self.errors += s.errors;
        if let Some(l) = s.latency {
            let w = s.requests.max(1.0);
            self.latency_weighted += l * w;
            self.latency_weight += w;
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            requests: self.requests,
            errors: self.errors,
            latency: (self.latency_weight > 0.0).then(|| self.latency_weighted / self.latency_weight),
        }
    }
}

#[derive(Default)]
struct Assessment {
    fail: bool,
    shared: bool,
}

impl Assessment {
    fn record(&mut self, status: Status) {
        match status {
            Status::Fail => self.fail = true,
            Status::Shared => self.shared = true,
            Status::Ok => {}
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Fail,
    Shared,
}

/// The current judge's state: the failure streak and the growing window.
#[derive(Debug, Clone)]
pub struct CurrentJudge {
    c: Criteria,
    failures: u32,
    gathering: Option<(Sum, Sum)>,
}

impl CurrentJudge {
    pub fn new(c: Criteria) -> CurrentJudge {
        CurrentJudge {
            c,
            failures: 0,
            gathering: None,
        }
    }

    pub fn judge(&mut self, w: &Window) -> Verdict {
        let c = self.c;
        let (new, live) = (w.new, w.live);
        let mut a = Assessment::default();
        enum Alb {
            NoData,
            Gathering,
            Judged,
        }
        let alb = if new.requests <= 0.0 {
            Alb::NoData
        } else {
            let g = self.gathering.get_or_insert_with(Default::default);
            g.0.add(&new);
            g.1.add(&live);
            let (n, l) = (g.0.sample(), g.1.sample());
            if n.requests >= c.min_requests as f64 {
                assess_errors(&c, &n, &l, &mut a);
                assess_latency(&c, &n, &l, &mut a);
                self.gathering = None;
                Alb::Judged
            } else {
                Alb::Gathering
            }
        };
        let outcome = if a.fail {
            Outcome::Fail
        } else if a.shared {
            Outcome::SharedFailure
        } else {
            match alb {
                Alb::Judged => Outcome::Pass,
                Alb::Gathering => Outcome::Inconclusive,
                Alb::NoData => Outcome::NoData,
            }
        };
        match outcome {
            Outcome::Pass => self.failures = 0,
            Outcome::Fail => self.failures += 1,
            _ => {}
        }
        let rollback = outcome == Outcome::Fail && self.failures >= c.failures_to_rollback;
        Verdict {
            outcome,
            failures: self.failures,
            rollback,
            counts_toward_bake: !matches!(outcome, Outcome::NoData | Outcome::SharedFailure),
            evidence_pending: self.gathering.is_some(),
        }
    }
}

fn assess_errors(c: &Criteria, n: &Sample, l: &Sample, a: &mut Assessment) {
    let rate = n.errors / n.requests;
    let alpha = 1.0 - c.confidence;
    let comparable = l.requests >= c.min_requests as f64;
    let p_abs = (rate > c.max_error_rate)
        .then(|| stats::binomial_sf(n.errors.round() as u64, n.requests.round() as u64, c.max_error_rate));
    let over = p_abs.is_some_and(|p| p < alpha);
    let rel_fail = comparable && {
        let diff = n.errors / n.requests - l.errors / l.requests.max(1.0);
        let (p, _) = stats::two_proportion(
            n.errors.round() as u64,
            n.requests.round() as u64,
            l.errors.round() as u64,
            l.requests.round() as u64,
        );
        diff > c.max_error_rate_increase && p < alpha
    };
    let live_over = comparable && l.errors / l.requests > c.max_error_rate;
    a.record(match (over, live_over && !rel_fail) {
        (false, _) => Status::Ok,
        (true, true) => Status::Shared,
        (true, false) => Status::Fail,
    });
    if rel_fail {
        a.record(Status::Fail);
    }
}

fn assess_latency(c: &Criteria, n: &Sample, l: &Sample, a: &mut Assessment) {
    let Some(lat) = n.latency else {
        return;
    };
    let live_lat = l.latency.filter(|&x| x > 0.0 && l.requests >= c.min_requests as f64);
    let ratio = live_lat.map(|ll| lat / ll);
    let ratio_fail = matches!((ratio, c.max_latency_ratio), (Some(r), Some(max)) if r > max);
    if let Some(max) = c.max_latency {
        let over = lat > max;
        let shared = over && !ratio_fail && live_lat.is_some_and(|ll| ll > max);
        a.record(match (over, shared) {
            (false, _) => Status::Ok,
            (true, true) => Status::Shared,
            (true, false) => Status::Fail,
        });
    }
    if ratio.is_some() && c.max_latency_ratio.is_some() && ratio_fail {
        a.record(Status::Fail);
    }
}

/// The current judge's statistics: its binomial tail is the product's (`judge::stats`), its
/// normal approximation and Fisher's exact test are its own.
pub mod stats {
    pub use cutover::judge::stats::binomial_sf;
    use cutover::judge::stats::{ln_choose, tail};
    use std::f64::consts::SQRT_2;

    /// P(Z ≥ z) for a standard normal Z.
    pub fn normal_sf(z: f64) -> f64 {
        0.5 * erfc(z / SQRT_2)
    }

    /// Numerical Recipes' `erfcc` (fractional error < 1.2e-7), as the current judge uses.
    fn erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let r = t * poly.exp();
        if x >= 0.0 { r } else { 2.0 - r }
    }

    /// Fisher's exact test, one-sided: P(X ≥ e1), X hypergeometric given the margins.
    pub fn fisher_sf(e1: u64, n1: u64, e2: u64, n2: u64) -> f64 {
        let (n, k) = ((n1 + n2) as f64, (e1 + e2) as f64);
        let n1f = n1 as f64;
        let lo = (n1 + e1 + e2).saturating_sub(n1 + n2);
        let hi = n1.min(e1 + e2);
        if e1 <= lo {
            return 1.0;
        }
        if e1 > hi {
            return 0.0;
        }
        let ln_pmf = |x: f64| ln_choose(k, x) + ln_choose(n - k, n1f - x) - ln_choose(n, n1f);
        if e1 as f64 > n1f * k / n {
            tail(ln_pmf(e1 as f64).exp(), e1, hi, true, |x| {
                (k - x) * (n1f - x) / ((x + 1.0) * (n - k - n1f + x + 1.0))
            })
        } else {
            let below = tail(ln_pmf((e1 - 1) as f64).exp(), e1 - 1, lo, false, |x| {
                x * (n - k - n1f + x) / ((k - x + 1.0) * (n1f - x + 1.0))
            });
            (1.0 - below).clamp(0.0, 1.0)
        }
    }

    /// Pooled z test when every expected count is ≥ 5, Fisher's exact test otherwise.
    pub fn two_proportion(e1: u64, n1: u64, e2: u64, n2: u64) -> (f64, Option<f64>) {
        if n1 == 0 || n2 == 0 {
            return (1.0, None);
        }
        let (e1f, n1f, e2f, n2f) = (e1 as f64, n1 as f64, e2 as f64, n2 as f64);
        let pooled = (e1f + e2f) / (n1f + n2f);
        let expected = [n1f * pooled, n2f * pooled, n1f * (1.0 - pooled), n2f * (1.0 - pooled)];
        if expected.iter().any(|&x| x < 5.0) {
            return (fisher_sf(e1, n1, e2, n2), None);
        }
        let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
        let z = (e1f / n1f - e2f / n2f) / se;
        (normal_sf(z), Some(z))
    }
}
