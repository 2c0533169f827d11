//! The judge: metric windows and criteria in, a verdict with its numbers out.
//!
//! **Architecture Invariant:** this module is pure. It does no IO and reads no clock; windows
//! carry their own times. That keeps every decision reproducible from the journal (replaying the
//! journaled baseline and windows through a fresh [`Judge`] rebuilds its state) and testable
//! from a table.
//!
//! **One judge for the whole cutover.** Its evidence is everything the cutover has judged, across
//! its bakes: the sequential tests of [`sequential`] never start again. What happens to a window
//! (one closed CloudWatch period of both colours):
//!
//! 1. **No data**: no requests reached the new colour. The plan's `on_no_data` decides: `hold`
//!    stops the bake clock, `pass` lets it run on, `rollback` counts the window as failed.
//! 2. **Evidence**: the period's counts feed every sequential test (error rate against
//!    `max_error_rate`, against the live colour with the minimum effect `max_error_rate_increase`,
//!    against the baseline at 100 %, and the latency sign test against `max_latency_ratio`), and
//!    the *recent window*, consecutive periods summed until the new colour has `min_requests`
//!    requests, for the per-window checks below.
//! 3. **Until the cutover has `min_requests` requests of the new colour** the verdict is
//!    **inconclusive** (never pass, and no sequential test fails it): a few requests are not
//!    evidence of anything, and at very small counts the model (independent requests) is least
//!    believable.
//! 4. **Fast path**: once the recent window has `critical_min_requests` requests and an error rate
//!    at or above `critical_error_rate`, the verdict fails and rolls back at once.
//! 5. **Judgement**: a sequential test that has rejected (its e-value reached 1/αᵢ) fails the
//!    verdict, and keeps failing it: a rejection is final. `max_latency` is a line the plan draws
//!    (an SLO, not a hypothesis): a complete recent window over it fails. Each
//!    `[[rollback.metrics]]` criterion is judged per period, on a period with `min_requests`
//!    requests of its own.
//! 6. A threshold crossed by **both** colours alike is a *shared failure*: an outage of something
//!    they share. It holds the bake clock and the streak, unless `on_shared_failure = "rollback"`;
//!    once the absolute error test has been caught on a shared failure it stands down for the rest
//!    of the cutover (its evidence is the outage's), and the tests against the live colour and
//!    the baseline, which a shared outage cannot fool, go on guarding.
//! 7. `failures_to_rollback` consecutive failed verdicts roll back (a sequential rejection fails
//!    every verdict from then on, so it rolls back after that many periods); a pass resets the
//!    streak; inconclusive, no-data and shared verdicts leave it as it was. In `mode = "advise"`
//!    nothing rolls back: the verdict records `would_rollback` instead.
//!
//! Alarms in ALARM roll back at once ([`Judge::alarms`]).
//!
//! * `sequential/`: the tests, one module each, with their formulas and proofs;
//! * `baseline.rs`: the live colour before the start ([`Baseline`]);
//! * `checks.rs`: each check's finding and clause; `words.rs`: numbers in words;
//! * `criteria.rs`, `verdict.rs`: what a plan judges against, and what comes out (journaled).

mod baseline;
mod checks;
mod criteria;
pub mod sequential;
pub mod stats;
#[cfg(test)]
mod tests;
mod verdict;
mod words;

pub use baseline::Baseline;
pub use criteria::{Criteria, Direction, MetricCriterion, Mode, NoData, OnShared};
pub use verdict::{AlarmVerdict, Evidence, Finding, MetricSample, Outcome, Sample, Status, Verdict, Window};

use checks::{Ctx, assess_errors, assess_latency, assess_metrics, fast_path};
use sequential::{Period, Tests};
use words::{count, merge_vs_live, span};

/// Judges windows in order, for a whole cutover.
#[derive(Debug, Clone)]
pub struct Judge {
    criteria: Criteria,
    live_name: String,
    baseline: Option<Baseline>,
    /// Built at the first window, which tells the period (for the onset horizon and latency votes).
    tests: Option<Tests>,
    /// Everything judged so far.
    total: Option<Gathering>,
    /// The recent window of the per-window checks.
    recent: Option<Gathering>,
    failures: u32,
    /// Since when the absolute error test stands down after a shared failure (a window's start).
    stood_down: Option<u64>,
}

/// Consecutive periods summed.
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
    fn starting(w: &Window) -> Gathering {
        Gathering {
            start: w.start,
            end: w.end,
            windows: 0,
            new: Sum::default(),
            live: Sum::default(),
        }
    }

    fn add(&mut self, w: &Window) {
        self.end = w.end;
        self.windows += 1;
        self.new.add(&w.new);
        self.live.add(&w.live);
    }

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

/// The onset detectors' horizon: a day of periods, and at least 1440 (a day of minutes).
fn horizon(period_secs: u64) -> u64 {
    (86_400 / period_secs.max(1)).max(1440)
}

/// Latency votes by the majority of 3 periods shorter than a minute, one by one otherwise (see
/// [`sequential::sign`]).
fn latency_block(period_secs: u64) -> u32 {
    if period_secs < 60 { 3 } else { 1 }
}

/// A CloudWatch sum as a count.
fn whole(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 { x.round() as u64 } else { 0 }
}

impl Judge {
    pub fn new(criteria: Criteria) -> Judge {
        Judge {
            criteria,
            live_name: "live".into(),
            baseline: None,
            tests: None,
            total: None,
            recent: None,
            failures: 0,
            stood_down: None,
        }
    }

    /// Names the live colour in reasons ("vs blue 0.09 %") instead of "vs live".
    pub fn named(mut self, live: impl std::fmt::Display) -> Judge {
        self.live_name = live.to_string();
        self
    }

    /// Gives the judge the live colour's baseline, read before the cutover started. Only the first
    /// one, and only before the first window, counts: the error budget is split once, and a
    /// baseline read after the cutover began would be the cutover's own traffic.
    pub fn with_baseline(mut self, baseline: Baseline) -> Judge {
        self.set_baseline(baseline);
        self
    }

    /// See [`Judge::with_baseline`].
    pub fn set_baseline(&mut self, baseline: Baseline) {
        if self.baseline.is_none() && self.tests.is_none() {
            self.baseline = Some(baseline);
        }
    }

    pub fn baseline(&self) -> Option<&Baseline> {
        self.baseline.as_ref()
    }

    pub fn criteria(&self) -> &Criteria {
        &self.criteria
    }

    /// Consecutive failed verdicts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the recent window is still gathering toward `min_requests`.
    pub fn evidence_pending(&self) -> bool {
        self.recent.is_some()
    }

    /// Judges the next window. Windows must be passed in time order, each once, for the whole
    /// cutover.
    pub fn judge(&mut self, window: &Window) -> Verdict {
        let c = &self.criteria;
        let period_secs = window.end.saturating_sub(window.start).max(1);
        let baseline = self.baseline.as_ref().map(|b| (whole(b.errors), whole(b.requests)));
        let tests = self
            .tests
            .get_or_insert_with(|| Tests::new(c, baseline, horizon(period_secs), latency_block(period_secs)));
        let (n, m) = (whole(window.new.requests), whole(window.live.requests));
        tests.update(&Period {
            n,
            e: whole(window.new.errors).min(n),
            m,
            f: whole(window.live.errors).min(m),
            new_latency: window.new.latency,
            live_latency: window.live.latency,
        });

        let mut a = Assessment::default();
        let has_data = n > 0;
        if has_data {
            self.total
                .get_or_insert_with(|| Gathering::starting(window))
                .add(window);
            self.recent
                .get_or_insert_with(|| Gathering::starting(window))
                .add(window);
        }
        let total = self.total.map(|g| g.evidence());
        let recent = self.recent.map(|g| g.evidence());
        let enough = total.is_some_and(|t| t.new.requests >= c.min_requests as f64);
        let mut recent_done = false;
        // A period without requests of the new colour adds nothing: nothing is judged on it.
        if let (true, Some(total), Some(recent)) = (has_data, &total, &recent) {
            let ctx = Ctx {
                c,
                live: &self.live_name,
                tests,
                total,
                recent,
                enough,
                stood_down: self.stood_down,
                baseline: self.baseline.as_ref(),
            };
            let complete = recent.new.requests >= c.min_requests as f64;
            let fired = fast_path(&ctx, &mut a);
            if let Some(since) = assess_errors(&ctx, &mut a) {
                self.stood_down.get_or_insert(since);
            }
            assess_latency(&ctx, complete, &mut a);
            recent_done = complete || fired;
        }
        if recent_done {
            self.recent = None;
        }
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
        } else if !has_data {
            match c.on_no_data {
                NoData::Rollback => Outcome::Fail,
                NoData::Hold | NoData::Pass => Outcome::NoData,
            }
        } else if !enough {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        };

        let clauses = a.clauses.join("; ");
        let mut reason = match outcome {
            Outcome::Fail if !a.fails.is_empty() || shared_blamed => {
                let mut heads = merge_vs_live(&a.fails);
                if shared_blamed {
                    heads.push(format!(
                        "shared failure ({}) counted against the new colour (on_shared_failure = rollback)",
                        a.shared.join(", ")
                    ));
                }
                format!("{}: {clauses}", heads.join(" and "))
            }
            Outcome::SharedFailure => format!(
                "shared failure, not blamed on the new colour ({} on both colours): {clauses} — holding the bake clock",
                a.shared.join(", ")
            ),
            _ if !has_data => {
                let mut s = match c.on_no_data {
                    NoData::Hold => "no requests reached the new colour; holding the bake clock".to_string(),
                    NoData::Pass => {
                        "no requests reached the new colour; on_no_data = pass: the bake clock runs on".to_string()
                    }
                    NoData::Rollback => "no requests reached the new colour; on_no_data = rollback".to_string(),
                };
                if let Some(t) = &total {
                    s.push_str(&format!(
                        "; evidence so far {} requests in {} window{}",
                        count(t.new.requests),
                        t.windows,
                        if t.windows == 1 { "" } else { "s" }
                    ));
                }
                s
            }
            Outcome::Inconclusive => format!(
                "{} requests < min_requests {} so far, gathering evidence: {clauses}",
                total.map_or(0.0, |t| t.new.requests),
                c.min_requests
            ),
            _ => clauses,
        };
        let evidence = if has_data { total } else { None };
        if let Some(ev) = &evidence {
            reason.push_str(&format!(" [evidence {}]", span(ev)));
        }

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
            evidence_pending: self.recent.is_some(),
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
