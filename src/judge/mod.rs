//! The judge: metric windows and criteria in, a verdict with its numbers out.
//!
//! **Architecture Invariant:** this module is pure. It does no IO and reads no
//! clock; windows carry their own times. That keeps every decision reproducible
//! from the journal (replaying the journaled windows through a fresh [`Judge`]
//! rebuilds its state) and testable from a table.
//!
//! A window is one closed CloudWatch period of both colours. What happens to it:
//!
//! 1. **No data**: no requests reached the new colour. The plan's `on_no_data`
//!    decides: `hold` stops the bake clock, `pass` lets it run on, `rollback`
//!    counts the window as failed. Nothing is judged either way.
//! 2. **Evidence**: the window's counts are added to the *evidence*, a growing
//!    window of consecutive periods. While the evidence has fewer than
//!    `min_requests` requests of the new colour the verdict is **inconclusive**
//!    (never pass, never fail), except for the fast path below. Once it has
//!    enough, the evidence is judged as one sample and starts afresh. So a
//!    low-traffic service is judged on a few windows together instead of being
//!    inconclusive forever, and one error in three requests proves nothing.
//! 3. **Fast path**: as soon as the evidence has `critical_min_requests`
//!    requests and an error rate at or above `critical_error_rate`, the verdict
//!    is a failure that rolls back at once.
//! 4. **Judgement** of the evidence, against the thresholds and against the live
//!    colour (which serves the same clients over the same minutes):
//!    * error rate above `max_error_rate`, by a one-sided exact binomial test
//!      at `confidence` (so a handful of errors at low traffic is not enough);
//!    * error rate above the live colour's by more than `max_error_rate_increase`,
//!      and significantly so by a one-sided two-proportion test (a z test, or
//!      Fisher's exact test when an expected count is below 5);
//!    * latency above `max_latency`, or above `max_latency_ratio` × the live
//!      colour's;
//!    * each `[[rollback.metrics]]` criterion, per window, above or below its
//!      threshold (and, optionally, its ratio to the live colour's value).
//!
//!    A threshold crossed by **both** colours alike is a *shared failure*: an
//!    outage of something they share, not the new version's fault. It holds the
//!    bake clock and the failure streak, unless `on_shared_failure = "rollback"`.
//! 5. `failures_to_rollback` consecutive failed verdicts roll back; a pass resets
//!    the streak; inconclusive, no-data and shared verdicts leave it as it was.
//!    In `mode = "advise"` nothing ever rolls back: the verdict records
//!    `would_rollback` instead.
//!
//! Alarms in ALARM roll back at once ([`Judge::alarms`]).

mod checks;
mod criteria;
mod stats;
#[cfg(test)]
mod tests;
mod verdict;
mod words;

pub use criteria::{Criteria, Direction, MetricCriterion, Mode, NoData, OnShared};
pub use verdict::{AlarmVerdict, Evidence, Finding, MetricSample, Outcome, Sample, Status, Verdict, Window};

use checks::{assess_errors, assess_latency, assess_metrics, fast_path};
use words::{brief, count, merge_vs_live, span};

/// Judges windows in order, remembering the failure streak and the growing window.
#[derive(Debug, Clone)]
pub struct Judge {
    criteria: Criteria,
    failures: u32,
    gathering: Option<Gathering>,
    live_name: String,
}

/// The growing window: consecutive periods not yet judged.
#[derive(Debug, Clone, Copy)]
struct Gathering {
    start: u64,
    end: u64,
    windows: u32,
    new: Sum,
    live: Sum,
}

/// Running sums of one colour.
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
            // Percentiles do not add up; the request-weighted mean of the periods' statistics is
            // exact for Average and a fair summary for a percentile over similar periods.
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

impl Gathering {
    fn evidence(&self) -> Evidence {
        Evidence {
            start: self.start,
            end: self.end,
            windows: self.windows,
            new: self.new.sample(),
            live: self.live.sample(),
        }
    }
}

/// What the checks found, as it is being assembled.
#[derive(Default)]
struct Assessment {
    /// Headlines of failed checks: "error rate too high", …
    fails: Vec<String>,
    /// Headlines of checks both colours fail.
    shared: Vec<String>,
    /// One clause per check family, with the numbers.
    clauses: Vec<String>,
    findings: Vec<Finding>,
    critical: bool,
}

impl Assessment {
    fn record(&mut self, headline: &str, finding: Finding) {
        match finding.status {
            Status::Fail => self.fails.push(headline.to_string()),
            Status::Shared => self.shared.push(headline.to_string()),
            Status::Ok => {}
        }
        self.findings.push(finding);
    }
}

/// What became of the window's ALB counts.
enum Alb {
    NoData,
    Gathering(Evidence),
    Judged(Evidence),
}

impl Judge {
    pub fn new(criteria: Criteria) -> Judge {
        Judge {
            criteria,
            failures: 0,
            gathering: None,
            live_name: "live".into(),
        }
    }

    /// Names the live colour in reasons ("vs blue 0.09 %") instead of "vs live".
    pub fn named(mut self, live: impl std::fmt::Display) -> Judge {
        self.live_name = live.to_string();
        self
    }

    pub fn criteria(&self) -> &Criteria {
        &self.criteria
    }

    /// Judges the next window. Windows must be passed in time order, each once.
    pub fn judge(&mut self, window: &Window) -> Verdict {
        let c = &self.criteria;
        let mut a = Assessment::default();

        let alb = if window.new.requests <= 0.0 {
            Alb::NoData
        } else {
            let g = self.gathering.get_or_insert(Gathering {
                start: window.start,
                end: window.end,
                windows: 0,
                new: Sum::default(),
                live: Sum::default(),
            });
            g.end = window.end;
            g.windows += 1;
            g.new.add(&window.new);
            g.live.add(&window.live);
            let ev = g.evidence();
            if ev.new.requests >= c.min_requests as f64 {
                assess_errors(c, &self.live_name, &ev, &mut a);
                assess_latency(c, &self.live_name, &ev, &mut a);
                self.gathering = None;
                Alb::Judged(ev)
            } else if fast_path(c, &self.live_name, &ev, &mut a) {
                self.gathering = None;
                Alb::Judged(ev)
            } else {
                Alb::Gathering(ev)
            }
        };
        // Custom metrics are judged only on a period with enough traffic of its own: a quiet
        // period (orders per minute at a 10 % shift, say) is never failed.
        if window.new.requests >= c.min_requests as f64 {
            assess_metrics(c, &self.live_name, window, &mut a);
        }

        let shared_blamed = c.on_shared_failure == OnShared::Rollback && !a.shared.is_empty();
        let outcome = if !a.fails.is_empty() || shared_blamed {
            Outcome::Fail
        } else if !a.shared.is_empty() {
            Outcome::SharedFailure
        } else {
            match (&alb, c.on_no_data) {
                (Alb::Judged(_), _) => Outcome::Pass,
                (Alb::Gathering(_), _) => Outcome::Inconclusive,
                (Alb::NoData, NoData::Rollback) => Outcome::Fail,
                (Alb::NoData, NoData::Hold | NoData::Pass) => Outcome::NoData,
            }
        };

        let clauses = a.clauses.join("; ");
        let mut reason = match (&alb, outcome) {
            (_, Outcome::Fail) if !a.fails.is_empty() || shared_blamed => {
                let mut heads = merge_vs_live(&a.fails);
                if shared_blamed {
                    heads.push(format!(
                        "shared failure ({}) counted against the new colour (on_shared_failure = rollback)",
                        a.shared.join(", ")
                    ));
                }
                format!("{}: {clauses}", heads.join(" and "))
            }
            (_, Outcome::SharedFailure) => format!(
                "shared failure, not blamed on the new colour ({} on both colours): {clauses} — holding the bake clock",
                a.shared.join(", ")
            ),
            (Alb::Gathering(ev), _) => {
                let mut s = format!(
                    "{} requests < min_requests {} so far, growing the window: {}",
                    count(ev.new.requests),
                    c.min_requests,
                    brief("5xx", &ev.new)
                );
                if ev.live.requests > 0.0 {
                    s.push_str(&format!(", {}", brief(&self.live_name, &ev.live)));
                }
                if !clauses.is_empty() {
                    s.push_str(&format!("; {clauses}"));
                }
                s
            }
            (Alb::NoData, _) => {
                let mut s = match c.on_no_data {
                    NoData::Hold => "no requests reached the new colour; holding the bake clock".to_string(),
                    NoData::Pass => {
                        "no requests reached the new colour; on_no_data = pass: the bake clock runs on".to_string()
                    }
                    NoData::Rollback => "no requests reached the new colour; on_no_data = rollback".to_string(),
                };
                if let Some(g) = &self.gathering {
                    s.push_str(&format!(
                        "; evidence so far {}/{} requests",
                        count(g.new.requests),
                        c.min_requests
                    ));
                }
                if !clauses.is_empty() {
                    s.push_str(&format!("; {clauses}"));
                }
                s
            }
            _ => clauses,
        };
        let evidence = match alb {
            Alb::Judged(ev) | Alb::Gathering(ev) => {
                reason.push_str(&format!(" [evidence {}]", span(&ev)));
                Some(ev)
            }
            Alb::NoData => None,
        };

        match outcome {
            Outcome::Pass => self.failures = 0,
            Outcome::Fail => self.failures += 1,
            Outcome::Inconclusive | Outcome::NoData | Outcome::SharedFailure => {}
        }
        let would_rollback = outcome == Outcome::Fail && (a.critical || self.failures >= c.failures_to_rollback);
        let rollback = would_rollback && c.mode == Mode::Auto;
        if outcome == Outcome::Fail {
            let verdict = match (would_rollback, c.mode) {
                (false, _) => String::new(),
                (true, Mode::Auto) => " → rollback".into(),
                (true, Mode::Advise) => " → would roll back (advisory mode: not rolling back)".into(),
            };
            if a.critical {
                reason.push_str(&format!(" — critical, fast path{verdict}"));
            } else {
                reason.push_str(&format!(
                    " — fail {}/{}{verdict}",
                    self.failures, c.failures_to_rollback
                ));
            }
        }
        let counts_toward_bake = match outcome {
            Outcome::NoData => c.on_no_data == NoData::Pass,
            Outcome::SharedFailure => false,
            _ => true,
        };
        Verdict {
            outcome,
            window: window.clone(),
            failures: self.failures,
            counts_toward_bake,
            rollback,
            would_rollback,
            critical: a.critical,
            evidence,
            evidence_pending: self.gathering.is_some(),
            findings: a.findings,
            reason,
        }
    }

    /// What the plan's alarms in ALARM mean, if any is: a rollback at once (advice in advisory mode).
    pub fn alarms(&self, in_alarm: &[String]) -> Option<AlarmVerdict> {
        if in_alarm.is_empty() {
            return None;
        }
        let what = format!("alarm in ALARM: {}", in_alarm.join(", "));
        Some(match self.criteria.mode {
            Mode::Auto => AlarmVerdict {
                rollback: true,
                reason: what,
            },
            Mode::Advise => AlarmVerdict {
                rollback: false,
                reason: format!("advisory: would roll back: {what}"),
            },
        })
    }
}
