//! The judge: metric windows and criteria in, a verdict with its numbers out.
//!
//! **Architecture Invariant:** this module is pure. It does no IO and reads no
//! clock; windows carry their own times. That keeps every decision reproducible
//! from the journal and testable from a table.
//!
//! A window is one closed CloudWatch period of the new colour (and, for the log,
//! of the live colour). Its verdict is:
//!
//! * **no data**: no requests reached the new colour. What happens is the plan's
//!   `on_no_data`: `hold` stops the bake clock and decides nothing, `pass` counts
//!   the window as passed, `rollback` counts it as failed.
//! * **inconclusive**: fewer than `min_requests` requests. Never pass, never fail;
//!   the failure streak is left as it was.
//! * **fail**: error rate above `max_error_rate`, or latency above `max_latency`.
//! * **pass**: otherwise.
//!
//! `failures_to_rollback` consecutive failed windows roll back; a pass resets the
//! streak. An alarm in ALARM rolls back at once ([`Judge::alarms`]).

use serde::{Deserialize, Serialize};

/// What to do with a window in which the new colour served no requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// Decide nothing and stop the bake clock until data comes.
    Hold,
    /// Count the window as failed.
    Rollback,
    /// Count the window as passed.
    Pass,
}

/// The thresholds a window is judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// A fraction: 0.001 is 0.1 %.
    pub max_error_rate: f64,
    /// Seconds.
    pub max_latency: Option<f64>,
    pub min_requests: u64,
    pub failures_to_rollback: u32,
    pub on_no_data: NoData,
}

/// One colour's numbers in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub requests: f64,
    /// Target 5xx responses.
    pub errors: f64,
    /// Seconds, in the plan's latency statistic; `None` when CloudWatch has no datapoint.
    pub latency: Option<f64>,
}

impl Sample {
    /// Errors over requests, when there were requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }
}

/// One closed period: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: u64,
    pub end: u64,
    pub new: Sample,
    pub live: Sample,
}

/// The verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NoData => "no_data",
        }
    }
}

/// A window's verdict and everything behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub window: Window,
    /// Consecutive failed windows, this one included.
    pub failures: u32,
    /// Whether this window advances the bake clock.
    pub counts_toward_bake: bool,
    /// Whether the streak reached `failures_to_rollback`.
    pub rollback: bool,
    /// The reason in words, with the numbers and thresholds.
    pub reason: String,
}

/// The verdict on the plan's alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmVerdict {
    /// Whether to roll back now.
    pub rollback: bool,
    pub reason: String,
}

/// Judges windows in order, remembering the failure streak.
#[derive(Debug, Clone)]
pub struct Judge {
    criteria: Criteria,
    failures: u32,
}

impl Judge {
    pub fn new(criteria: Criteria) -> Judge {
        Judge { criteria, failures: 0 }
    }

    /// Judges the next window. Windows must be passed in time order, each once.
    pub fn judge(&mut self, window: &Window) -> Verdict {
        let c = &self.criteria;
        let n = &window.new;
        let (outcome, mut reason) = if n.requests <= 0.0 {
            match c.on_no_data {
                NoData::Hold => (
                    Outcome::NoData,
                    "no requests reached the new colour; holding the bake clock".to_string(),
                ),
                NoData::Pass => (
                    Outcome::Pass,
                    "no requests reached the new colour; on_no_data = pass".to_string(),
                ),
                NoData::Rollback => (
                    Outcome::Fail,
                    "no requests reached the new colour; on_no_data = rollback".to_string(),
                ),
            }
        } else if (n.requests as u64) < c.min_requests {
            (
                Outcome::Inconclusive,
                format!(
                    "{} requests < min_requests {}; {}",
                    n.requests,
                    c.min_requests,
                    describe(n, c)
                ),
            )
        } else {
            let rate = n.errors / n.requests;
            let mut failed = Vec::new();
            if rate > c.max_error_rate {
                failed.push("error rate");
            }
            if let (Some(lat), Some(max)) = (n.latency, c.max_latency)
                && lat > max
            {
                failed.push("latency");
            }
            if failed.is_empty() {
                (Outcome::Pass, describe(n, c))
            } else {
                (
                    Outcome::Fail,
                    format!("{} too high: {}", failed.join(" and "), describe(n, c)),
                )
            }
        };
        match outcome {
            Outcome::Pass => self.failures = 0,
            Outcome::Fail => self.failures += 1,
            Outcome::Inconclusive | Outcome::NoData => {}
        }
        let rollback = outcome == Outcome::Fail && self.failures >= c.failures_to_rollback;
        if outcome == Outcome::Fail {
            reason.push_str(&format!(
                " — fail {}/{}{}",
                self.failures,
                c.failures_to_rollback,
                if rollback { " → rollback" } else { "" }
            ));
        }
        Verdict {
            outcome,
            window: *window,
            failures: self.failures,
            counts_toward_bake: outcome != Outcome::NoData,
            rollback,
            reason,
        }
    }

    /// What the plan's alarms in ALARM mean, if any is: a rollback at once.
    pub fn alarms(&self, in_alarm: &[String]) -> Option<AlarmVerdict> {
        (!in_alarm.is_empty()).then(|| AlarmVerdict {
            rollback: true,
            reason: format!("alarm in ALARM: {}", in_alarm.join(", ")),
        })
    }
}

/// `5xx 2.10% (63/3000) ≤ 5.00%, latency 120ms ≤ 250ms`
fn describe(n: &Sample, c: &Criteria) -> String {
    let rate = n.errors / n.requests.max(1.0);
    let cmp = |bad: bool| if bad { ">" } else { "≤" };
    let mut s = format!(
        "5xx {:.2}% ({}/{}) {} {:.2}%",
        rate * 100.0,
        n.errors,
        n.requests,
        cmp(rate > c.max_error_rate),
        c.max_error_rate * 100.0
    );
    match (n.latency, c.max_latency) {
        (Some(l), Some(max)) => s.push_str(&format!(", latency {} {} {}", ms(l), cmp(l > max), ms(max))),
        (Some(l), None) => s.push_str(&format!(", latency {}", ms(l))),
        (None, Some(_)) => s.push_str(", latency no data"),
        (None, None) => {}
    }
    s
}

fn ms(secs: f64) -> String {
    format!("{:.0}ms", secs * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria() -> Criteria {
        Criteria {
            max_error_rate: 0.01,
            max_latency: Some(0.2),
            min_requests: 100,
            failures_to_rollback: 2,
            on_no_data: NoData::Hold,
        }
    }

    /// `(requests, errors, latency)` of the new colour per window.
    type W = (f64, f64, Option<f64>);

    /// Judges `windows` in order and compares each verdict's outcome, streak,
    /// bake flag and rollback flag with `expected` (`"pass 0 bake"`, `"fail 2 bake rollback"`, …).
    fn check(criteria: Criteria, windows: &[W], expected: &[&str]) {
        let mut judge = Judge::new(criteria);
        let got: Vec<String> = windows
            .iter()
            .enumerate()
            .map(|(i, &(requests, errors, latency))| {
                let w = Window {
                    start: i as u64 * 60,
                    end: i as u64 * 60 + 60,
                    new: Sample {
                        requests,
                        errors,
                        latency,
                    },
                    live: Sample::default(),
                };
                let v = judge.judge(&w);
                let mut s = format!("{} {}", v.outcome.as_str(), v.failures);
                if v.counts_toward_bake {
                    s.push_str(" bake");
                }
                if v.rollback {
                    s.push_str(" rollback");
                }
                s
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn healthy_traffic_passes() {
        check(
            criteria(),
            &[(1000.0, 2.0, Some(0.05)), (1000.0, 10.0, Some(0.2))],
            &["pass 0 bake", "pass 0 bake"],
        );
    }

    #[test]
    fn low_traffic_is_inconclusive_never_fail() {
        // 1 error in 3 requests is 33 %, but 3 requests prove nothing.
        check(
            criteria(),
            &[(3.0, 1.0, Some(0.05)), (99.0, 99.0, Some(5.0))],
            &["inconclusive 0 bake", "inconclusive 0 bake"],
        );
    }

    #[test]
    fn no_data_holds_by_default() {
        check(criteria(), &[(0.0, 0.0, None)], &["no_data 0"]);
    }

    #[test]
    fn no_data_pass_and_rollback_follow_the_plan() {
        let c = |on_no_data| Criteria {
            on_no_data,
            ..criteria()
        };
        check(c(NoData::Pass), &[(0.0, 0.0, None)], &["pass 0 bake"]);
        check(
            c(NoData::Rollback),
            &[(0.0, 0.0, None), (0.0, 0.0, None)],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
    }

    #[test]
    fn consecutive_failures_roll_back() {
        check(
            criteria(),
            &[(1000.0, 300.0, None), (1000.0, 300.0, None)],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
    }

    #[test]
    fn a_pass_resets_the_streak() {
        check(
            criteria(),
            &[(1000.0, 300.0, None), (1000.0, 0.0, None), (1000.0, 300.0, None)],
            &["fail 1 bake", "pass 0 bake", "fail 1 bake"],
        );
    }

    #[test]
    fn gaps_and_partial_windows_keep_the_streak() {
        // A window without data or with too little traffic between two failures neither resets nor extends the streak.
        check(
            criteria(),
            &[
                (1000.0, 300.0, None),
                (0.0, 0.0, None),
                (20.0, 10.0, None),
                (1000.0, 300.0, None),
            ],
            &[
                "fail 1 bake",
                "no_data 1",
                "inconclusive 1 bake",
                "fail 2 bake rollback",
            ],
        );
    }

    #[test]
    fn latency_alone_fails() {
        check(
            criteria(),
            &[(1000.0, 0.0, Some(0.5)), (1000.0, 0.0, Some(0.21))],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
    }

    #[test]
    fn missing_latency_judges_errors_only() {
        check(criteria(), &[(1000.0, 1.0, None)], &["pass 0 bake"]);
    }

    #[test]
    fn error_rate_exactly_at_threshold_passes() {
        check(criteria(), &[(1000.0, 10.0, Some(0.2))], &["pass 0 bake"]);
    }

    #[test]
    fn one_failure_is_enough_when_configured() {
        check(
            Criteria {
                failures_to_rollback: 1,
                ..criteria()
            },
            &[(500.0, 100.0, None)],
            &["fail 1 bake rollback"],
        );
    }

    #[test]
    fn alarms_roll_back_at_once() {
        let judge = Judge::new(criteria());
        assert_eq!(judge.alarms(&[]), None);
        let v = judge.alarms(&["checkout-5xx".into()]).unwrap();
        assert!(v.rollback);
        assert_eq!(v.reason, "alarm in ALARM: checkout-5xx");
    }

    #[test]
    fn the_reason_shows_the_numbers() {
        let mut judge = Judge::new(criteria());
        let w = Window {
            start: 0,
            end: 60,
            new: Sample {
                requests: 3000.0,
                errors: 63.0,
                latency: Some(0.12),
            },
            live: Sample::default(),
        };
        let v = judge.judge(&w);
        assert_eq!(
            v.reason,
            "error rate too high: 5xx 2.10% (63/3000) > 1.00%, latency 120ms ≤ 200ms — fail 1/2"
        );
    }
}
