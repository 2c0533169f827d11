//! The live colour's recent history, read by verify before anything changes: the **baseline**.
//!
//! 1. Verify reads the last [`Baseline::periods_for`] periods (a quarter hour, and at least 15
//!    periods) with exactly the queries every bake sends, in one GetMetricData call.
//! 2. [`Baseline::from_windows`] sums the live colour's counts and takes the median of its
//!    latency (and of each compared `[[rollback.metrics]]` value) over the periods it served.
//! 3. [`Baseline::failing`] says whether the live colour already fails the plan's thresholds; if it
//!    does, the cutover does not start (exit 5, nothing changed): a judge comparing the new colour
//!    with a failing live one would blame the release for an outage it did not cause, or pass a
//!    broken release because the old one is broken too.
//! 4. Otherwise the baseline is journaled (`baseline` event, shown in the live log) and the judge
//!    uses it at 100 %, where the live colour has no traffic left to compare with (see
//!    [`super::sequential::baseline`]).
//!
//! Why a quarter hour: the baseline's bound is as wide as its sample is small. Fifteen one-second
//! periods at 1 request a second are 30 requests, and 0 errors in 30 only bound the live rate by
//! about 20 %: useless. A quarter hour of that service is about 1,800 requests (a bound near
//! 0.4 % at 0 errors), and it is still the same time of day, the same traffic mix, as the
//! cutover that follows. With minute-long periods it is the same 15 periods as before.

use serde::{Deserialize, Serialize};

use super::sequential::Budget;
use super::stats::{binomial_sf, clopper_pearson_upper};
use super::words::{count, fmt_p, ms, num, pct};
use super::{Criteria, Direction, Window};

/// The live colour before the cutover: journaled (`baseline` events), so part of the journal format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Start of the first period read, Unix seconds.
    pub start: u64,
    /// End of the last one.
    pub end: u64,
    /// Periods in which the live colour served requests.
    pub periods: u32,
    pub requests: f64,
    /// Target 5xx responses.
    pub errors: f64,
    /// The median of the periods' latency statistics, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    /// The upper confidence bound of the live error rate the judge tests the new colour against
    /// at 100 % (before `max_error_rate_increase` is added), for people; the judge recomputes it.
    #[serde(default)]
    pub upper: f64,
    /// The median of each compared `[[rollback.metrics]]` value, in the plan's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Option<f64>>,
}

/// The shortest baseline, in periods (what verify read before the baseline existed).
const MIN_PERIODS: u64 = 15;
/// The baseline's length in seconds, when periods are short.
const SPAN_SECS: u64 = 900;

impl Baseline {
    /// How many periods of `period_secs` verify reads: a quarter hour, at least 15 periods.
    pub fn periods_for(period_secs: u64) -> u64 {
        (SPAN_SECS / period_secs.max(1)).max(MIN_PERIODS)
    }

    /// The live colour's baseline over `windows`, `None` when it served no request in them.
    pub fn from_windows(windows: &[Window], criteria: &Criteria) -> Option<Baseline> {
        let served: Vec<&Window> = windows.iter().filter(|w| w.live.requests > 0.0).collect();
        if served.is_empty() {
            return None;
        }
        let requests: f64 = served.iter().map(|w| w.live.requests.round()).sum();
        let errors: f64 = served
            .iter()
            .map(|w| w.live.errors.round().min(w.live.requests.round()))
            .sum();
        let latency = median(served.iter().filter_map(|w| w.live.latency).collect());
        let metrics = (0..criteria.metrics.len())
            .map(|i| {
                median(
                    served
                        .iter()
                        .filter_map(|w| w.metrics.get(i).and_then(|m| m.live))
                        .collect(),
                )
            })
            .collect::<Vec<_>>();
        let upper = clopper_pearson_upper(errors as u64, requests as u64, bound_alpha(criteria));
        Some(Baseline {
            start: windows.first().map_or(0, |w| w.start),
            end: windows.last().map_or(0, |w| w.end),
            periods: served.len() as u32,
            requests,
            errors,
            latency,
            upper,
            metrics: if metrics.iter().any(Option::is_some) {
                metrics
            } else {
                vec![]
            },
        })
    }

    pub fn error_rate(&self) -> f64 {
        self.errors / self.requests.max(1.0)
    }

    /// Why the live colour already fails the plan's thresholds, one reason per threshold (empty
    /// when it does not). The error rate must be above `max_error_rate` beyond doubt (a one-sided
    /// exact binomial test at `confidence`: a baseline is one fixed sample, tested once);
    /// latency and custom metrics by their median period.
    pub fn failing(&self, c: &Criteria, live_name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let (e, n) = (self.errors as u64, self.requests as u64);
        let rate = self.error_rate();
        if rate > c.max_error_rate {
            let p = binomial_sf(e, n, c.max_error_rate);
            if p < 1.0 - c.confidence {
                out.push(format!(
                    "{live_name}'s error rate {} ({}/{}) > max_error_rate {} ({})",
                    pct(rate),
                    count(self.errors),
                    count(self.requests),
                    pct(c.max_error_rate),
                    fmt_p(p)
                ));
            }
        }
        if let (Some(l), Some(max)) = (self.latency, c.max_latency)
            && l > max
        {
            out.push(format!(
                "{live_name}'s latency {} (median of {} periods) > max_latency {}",
                ms(l),
                self.periods,
                ms(max)
            ));
        }
        for (m, v) in c.metrics.iter().zip(&self.metrics) {
            let Some(v) = *v else { continue };
            let crossed = match m.direction {
                Direction::Above => v > m.threshold,
                Direction::Below => v < m.threshold,
            };
            if crossed {
                let cmp = if m.direction == Direction::Above { ">" } else { "<" };
                out.push(format!(
                    "{live_name}'s {} {} (median) {cmp} {}",
                    m.name,
                    num(v),
                    num(m.threshold)
                ));
            }
        }
        out
    }
}

/// α of the baseline's upper bound in the plan's error budget.
pub(super) fn bound_alpha(c: &Criteria) -> f64 {
    budget(c, true).baseline_bound
}

/// The plan's error budget, with or without a baseline.
pub(super) fn budget(c: &Criteria, baseline: bool) -> Budget {
    Budget::split(
        1.0 - c.confidence,
        super::sequential::Enabled {
            baseline,
            latency_vs_live: c.max_latency_ratio.is_some(),
        },
    )
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let k = v.len();
    Some(if k % 2 == 1 {
        v[k / 2]
    } else {
        0.5 * (v[k / 2 - 1] + v[k / 2])
    })
}
