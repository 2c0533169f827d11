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

use serde::{Deserialize, Serialize};

/// What to do with a window in which the new colour served no requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// Decide nothing and stop the bake clock until data comes.
    Hold,
    /// Count the window as failed.
    Rollback,
    /// Decide nothing, but let the bake clock run on.
    Pass,
}

/// Whether verdicts act or only advise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Roll back when the criteria say so.
    Auto,
    /// Never roll back; record and log what would have been done.
    Advise,
}

/// What a failure that both colours share does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShared {
    /// Report it, and hold the bake clock and the failure streak.
    Hold,
    /// Count it as a failure of the new colour.
    Rollback,
}

/// Which side of a custom metric's threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Fail when the value is above the threshold (latency, queue depth, errors).
    Above,
    /// Fail when the value is below the threshold (orders per minute, cache hit rate).
    Below,
}

/// The judged half of a `[[rollback.metrics]]` entry (the query half lives in `metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCriterion {
    /// How it is named in verdicts: the metric name.
    pub name: String,
    pub threshold: f64,
    pub direction: Direction,
    /// Whether the live colour's value (the same metric with its TargetGroup) is fetched too:
    /// a threshold both colours cross is a shared failure.
    pub compare_with_live: bool,
    /// With `compare_with_live`: fail when the new colour's value is worse than the live
    /// colour's by more than this factor.
    pub max_ratio: Option<f64>,
}

/// The thresholds a window is judged against. Defaults live in `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// A fraction: 0.001 is 0.1 %.
    pub max_error_rate: f64,
    /// Seconds.
    pub max_latency: Option<f64>,
    pub min_requests: u64,
    pub failures_to_rollback: u32,
    pub on_no_data: NoData,
    /// Of the statistical tests, in (0, 1): 0.99 means a p-value below 0.01 is significant.
    pub confidence: f64,
    /// A fraction: 0.005 is +0.5 percentage points over the live colour's error rate.
    pub max_error_rate_increase: f64,
    /// New latency over live latency.
    pub max_latency_ratio: Option<f64>,
    pub on_shared_failure: OnShared,
    /// The fast path: an error rate at or above this rolls back at once.
    pub critical_error_rate: Option<f64>,
    /// The requests the fast path needs (at most `min_requests`).
    pub critical_min_requests: u64,
    /// `[[rollback.metrics]]`, in the order of [`Window::metrics`].
    pub metrics: Vec<MetricCriterion>,
    pub mode: Mode,
}

/// One colour's numbers in one period (or in a growing window of several).
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

/// One `[[rollback.metrics]]` value of both colours in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub new: Option<f64>,
    /// Only fetched with `compare_with_live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<f64>,
}

/// One closed period: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: u64,
    pub end: u64,
    pub new: Sample,
    pub live: Sample,
    /// The `[[rollback.metrics]]` values, in the plan's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSample>,
}

/// The verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
    NoData,
    /// Both colours fail alike: reported, not blamed on the new colour (`on_shared_failure = "hold"`).
    SharedFailure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NoData => "no_data",
            Outcome::SharedFailure => "shared_failure",
        }
    }
}

/// The consecutive periods a verdict was reached on, summed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Start of the first period, Unix seconds.
    pub start: u64,
    /// End of the last period.
    pub end: u64,
    /// Periods with requests of the new colour in it.
    pub windows: u32,
    /// Summed counts; latency is the request-weighted mean of the periods' statistics.
    pub new: Sample,
    pub live: Sample,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Fail,
    Shared,
}

/// One check behind a verdict, with its numbers (for machines; `reason` is for people).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `error_rate`, `error_rate_vs_live`, `critical_error_rate`, `latency`, `latency_vs_live`, or `metric:NAME`.
    pub check: String,
    pub status: Status,
    /// The new colour's value (for `*_vs_live`: the difference or ratio).
    pub value: f64,
    pub threshold: f64,
    /// The live colour's value, when compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<f64>,
    /// One-sided p-value of the test behind the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The test statistic: z of the two-proportion test, or a ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
}

/// A window's verdict and everything behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub window: Window,
    /// Consecutive failed verdicts, this one included.
    pub failures: u32,
    /// Whether this window advances the bake clock.
    pub counts_toward_bake: bool,
    /// Whether to roll back now (never in advisory mode).
    pub rollback: bool,
    /// Whether the criteria call for a rollback (also in advisory mode).
    #[serde(default)]
    pub would_rollback: bool,
    /// The fast path fired.
    #[serde(default)]
    pub critical: bool,
    /// The periods judged (or gathered so far, when inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The growing window is still short of `min_requests`: a bake should not end on this verdict.
    #[serde(default)]
    pub evidence_pending: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// The reason in words, with the numbers, thresholds, tests and evidence window.
    pub reason: String,
}

/// The verdict on the plan's alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmVerdict {
    /// Whether to roll back now (never in advisory mode).
    pub rollback: bool,
    pub reason: String,
}

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

/// The fast path on the evidence so far: true when it fired (and was recorded).
fn fast_path(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) -> bool {
    let Some(critical) = c.critical_error_rate else {
        return false;
    };
    let n = &ev.new;
    if n.requests < c.critical_min_requests as f64 || n.errors / n.requests < critical {
        return false;
    }
    let rate = n.errors / n.requests;
    let l = &ev.live;
    // Both colours at the critical rate, and the new one not significantly worse: an outage they share.
    let shared = l.requests >= c.critical_min_requests as f64
        && l.errors / l.requests >= critical
        && !relative_errors(c, n, l).fail;
    let status = if shared { Status::Shared } else { Status::Fail };
    a.critical = !shared;
    a.record(
        "critical error rate",
        Finding {
            check: "critical_error_rate".into(),
            status,
            value: rate,
            threshold: critical,
            live: l.error_rate(),
            p_value: None,
            statistic: None,
        },
    );
    a.clauses.push(format!(
        "5xx {} ({}/{}) ≥ critical {}, {}",
        pct(rate),
        count(n.errors),
        count(n.requests),
        pct(critical),
        live_rate(live_name, l)
    ));
    true
}

/// The relative error-rate test: new vs live.
struct Relative {
    diff: f64,
    p: f64,
    z: Option<f64>,
    fail: bool,
}

fn relative_errors(c: &Criteria, n: &Sample, l: &Sample) -> Relative {
    let (e1, n1, e2, n2) = (n.errors, n.requests, l.errors, l.requests);
    let diff = e1 / n1 - e2 / n2.max(1.0);
    let (p, z) = stats::two_proportion(
        e1.round() as u64,
        n1.round() as u64,
        e2.round() as u64,
        n2.round() as u64,
    );
    Relative {
        diff,
        p,
        z,
        fail: diff > c.max_error_rate_increase && p < 1.0 - c.confidence,
    }
}

fn assess_errors(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) {
    let (n, l) = (&ev.new, &ev.live);
    let rate = n.errors / n.requests;
    let alpha = 1.0 - c.confidence;
    let comparable = l.requests >= c.min_requests as f64;

    // Against the threshold: is the true rate above it, beyond reasonable doubt?
    let p_abs = (rate > c.max_error_rate)
        .then(|| stats::binomial_sf(n.errors.round() as u64, n.requests.round() as u64, c.max_error_rate));
    let over = p_abs.is_some_and(|p| p < alpha);
    let rel = comparable.then(|| relative_errors(c, n, l));
    let rel_fail = rel.as_ref().is_some_and(|r| r.fail);
    let live_over = comparable && l.errors / l.requests > c.max_error_rate;

    // Fast path, when configured, also on judged evidence.
    if let Some(critical) = c.critical_error_rate
        && rate >= critical
        && n.requests >= c.critical_min_requests as f64
    {
        let shared = comparable && l.errors / l.requests >= critical && !rel_fail;
        a.critical |= !shared;
        a.record(
            "critical error rate",
            Finding {
                check: "critical_error_rate".into(),
                status: if shared { Status::Shared } else { Status::Fail },
                value: rate,
                threshold: critical,
                live: l.error_rate(),
                p_value: None,
                statistic: None,
            },
        );
    }

    let abs_status = match (over, live_over && !rel_fail) {
        (false, _) => Status::Ok,
        (true, true) => Status::Shared,
        (true, false) => Status::Fail,
    };
    a.record(
        "error rate too high",
        Finding {
            check: "error_rate".into(),
            status: abs_status,
            value: rate,
            threshold: c.max_error_rate,
            live: comparable.then(|| l.errors / l.requests),
            p_value: p_abs,
            statistic: None,
        },
    );
    let mut clause = format!(
        "5xx {} ({}/{}) {} {}",
        pct(rate),
        count(n.errors),
        count(n.requests),
        if over { ">" } else { "≤" },
        pct(c.max_error_rate)
    );
    if let Some(p) = p_abs {
        clause.push_str(&format!(
            " ({}{})",
            fmt_p(p),
            if over { "" } else { ", not significant" }
        ));
    }
    match &rel {
        Some(r) => {
            a.record(
                "error rate too high vs live",
                Finding {
                    check: "error_rate_vs_live".into(),
                    status: if r.fail { Status::Fail } else { Status::Ok },
                    value: r.diff,
                    threshold: c.max_error_rate_increase,
                    live: Some(l.errors / l.requests),
                    p_value: Some(r.p),
                    statistic: r.z,
                },
            );
            let test = match r.z {
                Some(z) => format!("z = {z:.2}, {}", fmt_p(r.p)),
                None => format!("Fisher {}", fmt_p(r.p)),
            };
            clause.push_str(&format!(
                ", vs {live_name} {} ({}/{}): {:+.2} pp {} +{:.2} pp ({test})",
                pct(l.errors / l.requests),
                count(l.errors),
                count(l.requests),
                r.diff * 100.0,
                if r.fail { ">" } else { "≤" },
                c.max_error_rate_increase * 100.0,
            ));
            if !r.fail && r.diff > c.max_error_rate_increase {
                clause.push_str(&format!(" not significant at {}", pct0(c.confidence)));
            }
        }
        None => clause.push_str(&format!(", {}", live_rate(live_name, l))),
    }
    a.clauses.push(clause);
}

fn assess_latency(c: &Criteria, live_name: &str, ev: &Evidence, a: &mut Assessment) {
    let (n, l) = (&ev.new, &ev.live);
    let Some(lat) = n.latency else {
        if c.max_latency.is_some() || c.max_latency_ratio.is_some() {
            a.clauses.push("latency no data".into());
        }
        return;
    };
    let live_lat = l.latency.filter(|&x| x > 0.0 && l.requests >= c.min_requests as f64);
    let ratio = live_lat.map(|ll| lat / ll);
    let ratio_fail = matches!((ratio, c.max_latency_ratio), (Some(r), Some(max)) if r > max);
    let mut clause = format!("latency {}", ms(lat));
    if let Some(max) = c.max_latency {
        let over = lat > max;
        let shared = over && !ratio_fail && live_lat.is_some_and(|ll| ll > max);
        a.record(
            "latency too high",
            Finding {
                check: "latency".into(),
                status: match (over, shared) {
                    (false, _) => Status::Ok,
                    (true, true) => Status::Shared,
                    (true, false) => Status::Fail,
                },
                value: lat,
                threshold: max,
                live: live_lat,
                p_value: None,
                statistic: None,
            },
        );
        clause.push_str(&format!(" {} {}", if over { ">" } else { "≤" }, ms(max)));
    }
    match (live_lat, ratio) {
        (Some(ll), Some(r)) => {
            clause.push_str(&format!(", vs {live_name} {} ×{r:.2}", ms(ll)));
            if let Some(max) = c.max_latency_ratio {
                a.record(
                    "latency too high vs live",
                    Finding {
                        check: "latency_vs_live".into(),
                        status: if ratio_fail { Status::Fail } else { Status::Ok },
                        value: r,
                        threshold: max,
                        live: Some(ll),
                        p_value: None,
                        statistic: Some(r),
                    },
                );
                clause.push_str(&format!(" {} ×{max:.2}", if ratio_fail { ">" } else { "≤" }));
            }
        }
        _ if c.max_latency_ratio.is_some() => clause.push_str(&format!(", too little {live_name} traffic to compare")),
        _ => {}
    }
    a.clauses.push(clause);
}

/// `[[rollback.metrics]]`, judged per window (they are not counts that add up).
fn assess_metrics(c: &Criteria, live_name: &str, w: &Window, a: &mut Assessment) {
    for (i, m) in c.metrics.iter().enumerate() {
        let s = w.metrics.get(i).copied().unwrap_or_default();
        let Some(v) = s.new else {
            a.clauses.push(format!("{} no data", m.name));
            continue;
        };
        let crosses = |x: f64| match m.direction {
            Direction::Above => x > m.threshold,
            Direction::Below => x < m.threshold,
        };
        let live = s.live.filter(|_| m.compare_with_live);
        // How much worse the new colour is than the live one, as a factor ≥ 1 when worse.
        let ratio = live.map(|l| match m.direction {
            Direction::Above => ratio_of(v, l),
            Direction::Below => ratio_of(l, v),
        });
        let ratio_fail = matches!((ratio, m.max_ratio), (Some(r), Some(max)) if r > max);
        let crossed = crosses(v);
        let shared = crossed && !ratio_fail && live.is_some_and(crosses);
        let status = if ratio_fail || (crossed && !shared) {
            Status::Fail
        } else if shared {
            Status::Shared
        } else {
            Status::Ok
        };
        let word = match m.direction {
            Direction::Above => "too high",
            Direction::Below => "too low",
        };
        a.record(
            &format!("{} {word}", m.name),
            Finding {
                check: format!("metric:{}", m.name),
                status,
                value: v,
                threshold: m.threshold,
                live,
                p_value: None,
                statistic: ratio,
            },
        );
        let bad = match m.direction {
            Direction::Above => (">", "≤"),
            Direction::Below => ("<", "≥"),
        };
        let mut clause = format!(
            "{} {} {} {}",
            m.name,
            num(v),
            if crossed { bad.0 } else { bad.1 },
            num(m.threshold)
        );
        if let Some(l) = live {
            clause.push_str(&format!(", vs {live_name} {}", num(l)));
            if let (Some(r), Some(max)) = (ratio, m.max_ratio) {
                clause.push_str(&format!(" ×{r:.2} {} ×{max:.2}", if ratio_fail { ">" } else { "≤" }));
            }
        } else if m.compare_with_live {
            clause.push_str(&format!(", {live_name} no data"));
        }
        a.clauses.push(clause);
    }
}

/// `["error rate too high", "error rate too high vs live"]` → `["error rate too high, also vs live"]`.
fn merge_vs_live(heads: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in heads {
        if let Some(base) = h.strip_suffix(" vs live")
            && let Some(prev) = out.iter_mut().find(|p| p.as_str() == base)
        {
            prev.push_str(", also vs live");
        } else {
            out.push(h.clone());
        }
    }
    out
}

fn ratio_of(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// `5xx 2.50% (1/40) 52ms`
fn brief(label: &str, s: &Sample) -> String {
    let mut out = format!(
        "{label} {} ({}/{})",
        pct(s.errors / s.requests.max(1.0)),
        count(s.errors),
        count(s.requests)
    );
    if let Some(l) = s.latency {
        out.push_str(&format!(" {}", ms(l)));
    }
    out
}

/// `vs live 0.10% (1/1000)`, or why there is no comparison.
fn live_rate(live_name: &str, l: &Sample) -> String {
    if l.requests <= 0.0 {
        format!("no {live_name} traffic to compare")
    } else {
        format!(
            "{live_name} {} ({}/{}) too few to compare",
            pct(l.errors / l.requests),
            count(l.errors),
            count(l.requests)
        )
    }
}

/// `12:00:00–12:03:00, 3 windows` (UTC).
fn span(ev: &Evidence) -> String {
    format!(
        "{}–{}, {} window{}",
        hms(ev.start),
        hms(ev.end),
        ev.windows,
        if ev.windows == 1 { "" } else { "s" }
    )
}

fn hms(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60)
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn pct0(x: f64) -> String {
    format!("{}%", x * 100.0)
}

fn count(x: f64) -> String {
    format!("{x}")
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:.3}")
    }
}

fn ms(secs: f64) -> String {
    format!("{:.0}ms", secs * 1000.0)
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// The statistical tests, from first principles (no dependency): all one-sided, "is the new
/// colour worse?". Each is exact where counts are small, and costs microseconds.
mod stats {
    use std::f64::consts::{PI, SQRT_2};

    /// ln Γ(x) for x > 0: Lanczos (g = 7, 9 terms), about 15 significant digits.
    pub fn ln_gamma(x: f64) -> f64 {
        const C: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        if x < 0.5 {
            return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
        }
        let x = x - 1.0;
        let t = x + 7.5;
        let a = C[1..]
            .iter()
            .enumerate()
            .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
        0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }

    fn ln_choose(n: f64, k: f64) -> f64 {
        ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
    }

    /// P(Z ≥ z) for a standard normal Z.
    pub fn normal_sf(z: f64) -> f64 {
        0.5 * erfc(z / SQRT_2)
    }

    /// The complementary error function, fractional error below 1.2e-7 everywhere
    /// (the Chebyshev fit of Numerical Recipes' `erfcc`).
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

    /// Sums a tail of a discrete distribution from its first term `t0` with the term ratio
    /// `next(x) = t(x+1)/t(x)` (or t(x−1)/t(x) going down), stopping once the terms no longer matter.
    fn tail(t0: f64, from: u64, to: u64, up: bool, next: impl Fn(f64) -> f64) -> f64 {
        let (mut sum, mut t, mut x) = (0.0, t0, from as f64);
        let steps = from.abs_diff(to);
        for _ in 0..=steps {
            sum += t;
            if t <= sum * 1e-16 {
                break;
            }
            t *= next(x);
            x += if up { 1.0 } else { -1.0 };
        }
        sum
    }

    /// P(X ≥ k) for X ~ Binomial(n, p): is a rate of k/n evidence that the true rate exceeds p?
    pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
        if k == 0 || p >= 1.0 {
            return 1.0;
        }
        if k > n || p <= 0.0 {
            return 0.0;
        }
        let (nf, q) = (n as f64, 1.0 - p);
        let ln_pmf = |x: f64| ln_choose(nf, x) + x * p.ln() + (nf - x) * q.ln();
        if k as f64 > nf * p {
            // Above the mean the terms fall: sum upward from k.
            tail((ln_pmf(k as f64)).exp(), k, n, true, |x| (nf - x) / (x + 1.0) * p / q)
        } else {
            // At or below the mean: 1 − P(X ≤ k−1), summing downward from k−1.
            let below = tail((ln_pmf((k - 1) as f64)).exp(), k - 1, 0, false, |x| {
                x / (nf - x + 1.0) * q / p
            });
            (1.0 - below).clamp(0.0, 1.0)
        }
    }

    /// Fisher's exact test, one-sided: P(X ≥ e1) where X, the errors of the first group, is
    /// hypergeometric given both groups' totals.
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

    /// One-sided two-proportion test of "the first group's rate is higher": the pooled z test
    /// when every expected count is at least 5, Fisher's exact test otherwise.
    /// Returns the p-value and, for the z test, z.
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

    #[cfg(test)]
    mod tests {
        use super::*;

        fn close(a: f64, b: f64, tol: f64) {
            assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
        }

        #[test]
        fn ln_gamma_matches_factorials() {
            assert!(ln_gamma(1.0).abs() < 1e-13);
            close(ln_gamma(5.0), 24f64.ln(), 1e-13);
            close(ln_gamma(171.0), (1..171).map(|i| (i as f64).ln()).sum(), 1e-13);
            close(ln_gamma(0.5), PI.sqrt().ln(), 1e-13);
        }

        #[test]
        fn normal_tail_matches_tables() {
            close(normal_sf(0.0), 0.5, 1e-7);
            close(normal_sf(1.959_964), 0.025, 1e-5);
            close(normal_sf(2.326_348), 0.01, 1e-5);
            close(normal_sf(-1.644_854), 0.95, 1e-6);
        }

        #[test]
        fn binomial_tail_matches_direct_sums() {
            // P(X ≥ 2 | n = 120, p = 0.01) = 1 − 0.99^120 − 120·0.01·0.99^119
            let direct = 1.0 - 0.99f64.powi(120) - 120.0 * 0.01 * 0.99f64.powi(119);
            close(binomial_sf(2, 120, 0.01), direct, 1e-10);
            // P(X ≥ 1 | n = 100, p = 0.001) = 1 − 0.999^100
            close(binomial_sf(1, 100, 0.001), 1.0 - 0.999f64.powi(100), 1e-10);
            // All ten of ten at p = 0.5.
            close(binomial_sf(10, 10, 0.5), 0.5f64.powi(10), 1e-12);
            assert_eq!(binomial_sf(0, 10, 0.5), 1.0);
            assert!(binomial_sf(5000, 1_000_000, 0.001) < 1e-300);
        }

        #[test]
        fn fisher_matches_the_tea_tasting_lady() {
            // Fisher's own example: 3 of 4 right in each group of 4 → one-sided p = 17/70.
            close(fisher_sf(3, 4, 1, 4), 17.0 / 70.0, 1e-12);
            close(fisher_sf(4, 4, 0, 4), 1.0 / 70.0, 1e-12);
            assert_eq!(fisher_sf(0, 4, 4, 4), 1.0);
        }

        #[test]
        fn two_proportion_picks_its_test() {
            let (p, z) = two_proportion(63, 3000, 3, 3100);
            assert!(z.is_some() && p < 1e-6, "{p} {z:?}");
            let (p, z) = two_proportion(1, 30, 0, 30);
            assert!(z.is_none() && (p - 0.5).abs() < 1e-9, "{p} {z:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The criteria most cases start from: 1 % errors, 200 ms, 100 requests, 2 failures.
    fn base() -> Criteria {
        Criteria {
            max_error_rate: 0.01,
            max_latency: Some(0.2),
            min_requests: 100,
            failures_to_rollback: 2,
            on_no_data: NoData::Hold,
            confidence: 0.99,
            max_error_rate_increase: 0.005,
            max_latency_ratio: None,
            on_shared_failure: OnShared::Hold,
            critical_error_rate: None,
            critical_min_requests: 10,
            metrics: vec![],
            mode: Mode::Auto,
        }
    }

    /// `"300/6 120ms"` → 300 requests, 6 errors, latency 0.12 s; `"300/6"` without latency; `"-"` nothing.
    fn sample(s: &str) -> Sample {
        if s == "-" {
            return Sample::default();
        }
        let (counts, latency) = match s.split_once(' ') {
            Some((c, l)) => (c, Some(l.trim_end_matches("ms").parse::<f64>().unwrap() / 1000.0)),
            None => (s, None),
        };
        let (r, e) = counts.split_once('/').unwrap();
        Sample {
            requests: r.parse().unwrap(),
            errors: e.parse().unwrap(),
            latency,
        }
    }

    fn window(i: usize, new: &str, live: &str) -> Window {
        Window {
            start: i as u64 * 60,
            end: i as u64 * 60 + 60,
            new: sample(new),
            live: sample(live),
            metrics: vec![],
        }
    }

    /// `fail 2 bake rollback`: outcome, streak, and the flags that are set.
    fn summary(v: &Verdict) -> String {
        let mut s = format!("{} {}", v.outcome.as_str(), v.failures);
        for (on, word) in [
            (v.counts_toward_bake, "bake"),
            (v.evidence_pending, "pending"),
            (v.critical, "critical"),
            (v.rollback, "rollback"),
            (v.would_rollback && !v.rollback, "would"),
        ] {
            if on {
                s.push(' ');
                s.push_str(word);
            }
        }
        s
    }

    /// Judges `(new, live)` windows in order and compares each verdict's summary with `expected`.
    fn check(criteria: Criteria, windows: &[(&str, &str)], expected: &[&str]) {
        let mut judge = Judge::new(criteria);
        let got: Vec<String> = windows
            .iter()
            .enumerate()
            .map(|(i, (new, live))| {
                let v = judge.judge(&window(i, new, live));
                eprintln!("{}: {}", v.outcome.as_str(), v.reason);
                summary(&v)
            })
            .collect();
        assert_eq!(got, expected);
    }

    fn with(f: impl FnOnce(&mut Criteria)) -> Criteria {
        let mut c = base();
        f(&mut c);
        c
    }

    #[test]
    fn healthy_at_high_traffic_passes() {
        check(
            base(),
            &[("10000/12 50ms", "10000/10 48ms"), ("10000/9 52ms", "10000/11 50ms")],
            &["pass 0 bake", "pass 0 bake"],
        );
    }

    #[test]
    fn healthy_at_low_traffic_with_occasional_errors_passes() {
        // 30 requests a minute and a stray error now and then: 2/120 = 1.7 % is above 1 %,
        // but not significantly (p = 0.34), and no worse than the live colour beyond chance.
        check(
            base(),
            &[
                ("30/0 50ms", "30/0 50ms"),
                ("30/1 50ms", "30/0 50ms"),
                ("30/0 50ms", "30/1 50ms"),
                ("30/1 50ms", "30/0 50ms"),
            ],
            &[
                "inconclusive 0 bake pending",
                "inconclusive 0 bake pending",
                "inconclusive 0 bake pending",
                "pass 0 bake",
            ],
        );
        // One error in three requests is 33 %, and proves nothing.
        check(base(), &[("3/1", "3/0")], &["inconclusive 0 bake pending"]);
    }

    #[test]
    fn a_real_regression_at_low_traffic_fails_once_the_evidence_is_enough() {
        check(
            base(),
            &[("30/6", "30/0"); 8],
            &[
                "inconclusive 0 bake pending",
                "inconclusive 0 bake pending",
                "inconclusive 0 bake pending",
                "fail 1 bake",
                "inconclusive 1 bake pending",
                "inconclusive 1 bake pending",
                "inconclusive 1 bake pending",
                "fail 2 bake rollback",
            ],
        );
    }

    #[test]
    fn a_hard_failure_takes_the_fast_path() {
        let c = with(|c| c.critical_error_rate = Some(0.5));
        check(c.clone(), &[("20/15", "20/0")], &["fail 1 bake critical rollback"]);
        // Fewer than critical_min_requests: the growing window waits for a tenth request.
        check(
            c.clone(),
            &[("6/6", "6/0"), ("6/6", "6/0")],
            &["inconclusive 0 bake pending", "fail 1 bake critical rollback"],
        );
        // Below the critical rate it is an ordinary failure.
        check(c, &[("1000/300", "1000/0")], &["fail 1 bake"]);
    }

    #[test]
    fn a_slow_degradation_fails_against_the_live_colour_before_any_threshold() {
        // An absolute 5 % is far away; the comparison catches +0.9 pp.
        check(
            with(|c| c.max_error_rate = 0.05),
            &[
                ("10000/10", "10000/10"),
                ("10000/30", "10000/10"),
                ("10000/60", "10000/10"),
                ("10000/100", "10000/10"),
                ("10000/150", "10000/10"),
            ],
            &[
                "pass 0 bake",
                "pass 0 bake",
                "pass 0 bake",
                "fail 1 bake",
                "fail 2 bake rollback",
            ],
        );
    }

    #[test]
    fn a_latency_only_regression_fails() {
        // Well under max_latency, but three times the live colour's.
        check(
            with(|c| {
                c.max_latency = Some(1.0);
                c.max_latency_ratio = Some(1.5);
            }),
            &[("1000/0 300ms", "1000/0 100ms"), ("1000/0 290ms", "1000/0 100ms")],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
        // At 100 % there is no live traffic: the absolute threshold still applies.
        check(
            base(),
            &[("1000/0 500ms", "-"), ("1000/0 210ms", "-")],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
        // Within the ratio.
        check(
            with(|c| c.max_latency_ratio = Some(1.5)),
            &[("1000/0 140ms", "1000/0 100ms")],
            &["pass 0 bake"],
        );
    }

    #[test]
    fn a_shared_outage_holds_unless_the_plan_says_rollback() {
        let outage = [("1000/300 50ms", "1000/290 50ms"), ("1000/310 50ms", "1000/300 50ms")];
        check(base(), &outage, &["shared_failure 0", "shared_failure 0"]);
        check(
            with(|c| c.on_shared_failure = OnShared::Rollback),
            &outage,
            &["fail 1 bake", "fail 2 bake rollback"],
        );
        // Both slow alike.
        check(base(), &[("1000/0 900ms", "1000/0 850ms")], &["shared_failure 0"]);
        // Both failing, but the new colour much worse: its own fault.
        check(base(), &[("1000/600", "1000/290")], &["fail 1 bake"]);
        // The fast path does not fire on a shared outage either.
        check(
            with(|c| c.critical_error_rate = Some(0.5)),
            &[("1000/900", "1000/910")],
            &["shared_failure 0"],
        );
    }

    #[test]
    fn gaps_in_the_data_neither_reset_nor_extend_the_streak() {
        check(
            base(),
            &[("1000/300", "-"), ("-", "-"), ("20/10", "-"), ("1000/300", "-")],
            &[
                "fail 1 bake",
                "no_data 1",
                "inconclusive 1 bake pending",
                "fail 2 bake rollback",
            ],
        );
        // A gap inside a growing window: the evidence waits for the next requests.
        check(
            base(),
            &[("60/0", "60/0"), ("-", "-"), ("60/0", "60/0")],
            &["inconclusive 0 bake pending", "no_data 0 pending", "pass 0 bake"],
        );
    }

    #[test]
    fn no_data_follows_on_no_data() {
        check(base(), &[("-", "1000/0")], &["no_data 0"]);
        check(
            with(|c| c.on_no_data = NoData::Pass),
            &[("-", "-")],
            &["no_data 0 bake"],
        );
        check(
            with(|c| c.on_no_data = NoData::Rollback),
            &[("-", "-"), ("-", "-")],
            &["fail 1 bake", "fail 2 bake rollback"],
        );
    }

    #[test]
    fn a_pass_resets_the_streak() {
        check(
            base(),
            &[("1000/300", "-"), ("1000/0", "-"), ("1000/300", "-")],
            &["fail 1 bake", "pass 0 bake", "fail 1 bake"],
        );
    }

    #[test]
    fn the_absolute_threshold_needs_significance() {
        // 1.1 % of 1000 is not evidence of more than 1 %; 1.1 % of a million is.
        check(base(), &[("1000/11", "-")], &["pass 0 bake"]);
        check(base(), &[("1000000/11000", "-")], &["fail 1 bake"]);
        // Exactly at the threshold passes.
        check(base(), &[("1000/10 200ms", "-")], &["pass 0 bake"]);
    }

    #[test]
    fn advisory_mode_never_rolls_back() {
        let c = with(|c| {
            c.mode = Mode::Advise;
            c.critical_error_rate = Some(0.5);
        });
        check(
            c.clone(),
            &[("1000/300", "1000/0"), ("1000/300", "1000/0"), ("1000/900", "1000/0")],
            &["fail 1 bake", "fail 2 bake would", "fail 3 bake critical would"],
        );
        let v = Judge::new(c).judge(&window(0, "1000/900", "1000/0"));
        assert!(
            v.reason
                .ends_with("→ would roll back (advisory mode: not rolling back)"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn alarms_roll_back_at_once_or_advise() {
        let judge = Judge::new(base());
        assert_eq!(judge.alarms(&[]), None);
        let v = judge.alarms(&["checkout-5xx".into()]).unwrap();
        assert!(v.rollback);
        assert_eq!(v.reason, "alarm in ALARM: checkout-5xx");
        let v = Judge::new(with(|c| c.mode = Mode::Advise))
            .alarms(&["checkout-5xx".into()])
            .unwrap();
        assert!(!v.rollback);
        assert_eq!(v.reason, "advisory: would roll back: alarm in ALARM: checkout-5xx");
    }

    fn metric(
        name: &str,
        threshold: f64,
        direction: Direction,
        compare: bool,
        max_ratio: Option<f64>,
    ) -> MetricCriterion {
        MetricCriterion {
            name: name.into(),
            threshold,
            direction,
            compare_with_live: compare,
            max_ratio,
        }
    }

    /// Like [`check`], with healthy ALB numbers and the given custom metric values `(new, live)`.
    fn check_metrics(criteria: Criteria, values: &[&[(Option<f64>, Option<f64>)]], expected: &[&str]) {
        let mut judge = Judge::new(criteria);
        let got: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, vals)| {
                let mut w = window(i, "1000/0 50ms", "1000/0 50ms");
                w.metrics = vals.iter().map(|&(new, live)| MetricSample { new, live }).collect();
                let v = judge.judge(&w);
                eprintln!("{}: {}", v.outcome.as_str(), v.reason);
                summary(&v)
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn custom_metrics_fail_on_their_side_of_the_threshold() {
        let c = with(|c| {
            c.metrics = vec![
                metric("QueueAge", 30.0, Direction::Above, false, None),
                metric("Orders", 10.0, Direction::Below, false, None),
            ]
        });
        check_metrics(
            c,
            &[
                &[(Some(5.0), None), (Some(50.0), None)],
                &[(Some(45.0), None), (Some(50.0), None)],
                &[(Some(5.0), None), (Some(2.0), None)],
                &[(None, None), (None, None)],
            ],
            &["pass 0 bake", "fail 1 bake", "fail 2 bake rollback", "pass 0 bake"],
        );
    }

    /// Regression (review): a "below" metric failed quiet periods that had too few requests.
    #[test]
    fn custom_metrics_are_not_judged_on_quiet_periods() {
        let c = with(|c| c.metrics = vec![metric("Orders", 10.0, Direction::Below, false, None)]);
        let mut judge = Judge::new(c);
        let mut w = window(0, "20/0 50ms", "1000/0 50ms");
        w.metrics = vec![MetricSample {
            new: Some(1.0),
            live: None,
        }];
        let v = judge.judge(&w);
        assert_ne!(v.outcome, Outcome::Fail, "{}", v.reason);
    }

    #[test]
    fn custom_metrics_compared_with_the_live_colour() {
        let c = with(|c| c.metrics = vec![metric("p99", 0.5, Direction::Above, true, Some(2.0))]);
        check_metrics(
            c,
            &[
                // Both over the threshold alike: shared.
                &[(Some(0.8), Some(0.7))],
                // Under the threshold, but three times the live colour's.
                &[(Some(0.3), Some(0.1))],
                // Over it, live fine.
                &[(Some(0.6), Some(0.4))],
                &[(Some(0.2), Some(0.2))],
            ],
            &["shared_failure 0", "fail 1 bake", "fail 2 bake rollback", "pass 0 bake"],
        );
    }

    #[test]
    fn the_reason_shows_the_numbers_the_test_and_the_evidence() {
        let mut judge = Judge::new(with(|c| c.max_latency_ratio = Some(1.5))).named("blue");
        let v = judge.judge(&window(600, "3000/63 120ms", "3100/3 110ms"));
        assert_eq!(
            v.reason,
            "error rate too high, also vs live: 5xx 2.10% (63/3000) > 1.00% (p < 0.001), \
             vs blue 0.10% (3/3100): +2.00 pp > +0.50 pp (z = 7.56, p < 0.001); \
             latency 120ms ≤ 200ms, vs blue 110ms ×1.09 ≤ ×1.50 \
             [evidence 10:00:00–10:01:00, 1 window] — fail 1/2"
        );
        let checks: Vec<_> = v.findings.iter().map(|f| (f.check.as_str(), f.status)).collect();
        assert_eq!(
            checks,
            [
                ("error_rate", Status::Fail),
                ("error_rate_vs_live", Status::Fail),
                ("latency", Status::Ok),
                ("latency_vs_live", Status::Ok)
            ]
        );
        let gathering = Judge::new(base()).judge(&window(0, "40/1 52ms", "80/0 50ms"));
        assert_eq!(
            gathering.reason,
            "40 requests < min_requests 100 so far, growing the window: 5xx 2.50% (1/40) 52ms, \
             live 0.00% (0/80) 50ms [evidence 00:00:00–00:01:00, 1 window]"
        );
        let pass = Judge::new(base()).judge(&window(0, "100/0 50ms", "100/0 50ms"));
        assert_eq!(
            pass.reason,
            "5xx 0.00% (0/100) ≤ 1.00%, vs live 0.00% (0/100): +0.00 pp ≤ +0.50 pp (Fisher p = 1.000); \
             latency 50ms ≤ 200ms, vs live 50ms ×1.00 [evidence 00:00:00–00:01:00, 1 window]"
        );
    }

    #[test]
    fn verdicts_of_old_journals_still_read() {
        // A verdict journaled before issue 4 had none of the new fields.
        let old = r#"{"outcome":"pass","window":{"start":0,"end":60,"new":{"requests":1.0,"errors":0.0,"latency":null},
            "live":{"requests":0.0,"errors":0.0,"latency":null}},"failures":0,"counts_toward_bake":true,"rollback":false,"reason":"x"}"#;
        let v: Verdict = serde_json::from_str(old).unwrap();
        assert!(!v.would_rollback && v.findings.is_empty() && v.window.metrics.is_empty());
    }

    /// Regression guard for the newest datapoint: CloudWatch's value for a period keeps
    /// growing for a while after the period closes. Polling every 15 s with `settle` covering
    /// that delay, the judge only ever sees complete periods, so an early burst of errors in a
    /// still-filling datapoint (10 of its first 20 requests) never trips even the fast path.
    #[test]
    fn a_datapoint_that_keeps_growing_is_never_judged_before_it_is_complete() {
        use crate::metrics::settled_end;
        use std::time::{Duration, UNIX_EPOCH};
        let (period, settle, lag) = (60u64, 120u64, 90u64);
        // The value CloudWatch shows at `now` for the period starting at `t`: it fills up
        // until `t + period + lag`; the first requests of it carry all its errors.
        let visible = |t: u64, now: u64| {
            let f = ((now.saturating_sub(t)) as f64 / (period + lag) as f64).min(1.0);
            let requests = (1000.0 * f).floor();
            Sample {
                requests,
                errors: requests.min(10.0),
                latency: Some(0.05),
            }
        };
        let mut judge = Judge::new(with(|c| c.critical_error_rate = Some(0.4)));
        let start = 1_800_000_000u64;
        let mut from = start;
        let mut judged = 0;
        for poll in 0..60 {
            let now = start + poll * 15;
            let end = settled_end(
                UNIX_EPOCH + Duration::from_secs(now),
                Duration::from_secs(settle),
                Duration::from_secs(period),
            );
            let mut t = from;
            while t < end {
                let w = Window {
                    start: t,
                    end: t + period,
                    new: visible(t, now),
                    live: visible(t, now),
                    metrics: vec![],
                };
                assert_eq!(w.new.requests, 1000.0, "judged a partial datapoint at {now}");
                let v = judge.judge(&w);
                assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
                judged += 1;
                t += period;
            }
            from = from.max(end);
        }
        assert!(judged >= 10, "only {judged} periods judged");
        // Judged too early (no settle), the same datapoint is a fast-path rollback: the guard matters.
        let mut eager = Judge::new(with(|c| c.critical_error_rate = Some(0.4)));
        let partial = Window {
            start,
            end: start + period,
            new: visible(start, start + 3),
            live: Sample::default(),
            metrics: vec![],
        };
        assert_eq!(
            partial.new,
            Sample {
                requests: 20.0,
                errors: 10.0,
                latency: Some(0.05)
            }
        );
        assert!(eager.judge(&partial).critical);
    }

    fn criteria_strategy() -> impl Strategy<Value = Criteria> {
        (
            0.0..0.2f64,
            proptest::option::of(0.01..2.0f64),
            1u64..500,
            1u32..4,
            prop_oneof![Just(NoData::Hold), Just(NoData::Pass), Just(NoData::Rollback)],
            0.9..0.9999f64,
            0.0..0.05f64,
            proptest::option::of(1.0..3.0f64),
            proptest::option::of(0.0..1.0f64),
            prop_oneof![Just(Mode::Auto), Just(Mode::Advise)],
        )
            .prop_map(
                |(max, lat, min_requests, failures, no_data, confidence, inc, ratio, crit, mode)| Criteria {
                    max_error_rate: max,
                    max_latency: lat,
                    min_requests,
                    failures_to_rollback: failures,
                    on_no_data: no_data,
                    confidence,
                    max_error_rate_increase: inc,
                    max_latency_ratio: ratio,
                    on_shared_failure: OnShared::Hold,
                    critical_error_rate: crit.map(|f| max + (1.0 - max) * f).filter(|&x| x > max),
                    critical_min_requests: 10.min(min_requests),
                    metrics: vec![],
                    mode,
                },
            )
    }

    proptest! {
        /// A window whose new colour is no worse than the live colour — as many requests or
        /// fewer, an error rate and a latency no higher, beside a live colour with enough
        /// requests to compare with — is never failed.
        #[test]
        fn no_worse_than_live_never_fails_a_window(
            c in criteria_strategy(),
            live_requests in 0u64..100_000,
            live_error_fraction in 0.0..1.0f64,
            new_share in 0.0..1.0f64,
            new_error_share in 0.0..=1.0f64,
            live_latency in 0.001..5.0f64,
            new_latency_share in proptest::option::of(0.0..=1.0f64),
        ) {
            let live_requests = (live_requests + c.min_requests) as f64;
            let live_errors = (live_requests * live_error_fraction).floor();
            let new_requests = (live_requests * new_share).floor().max(1.0);
            let new_errors = (new_requests * (live_errors / live_requests) * new_error_share).floor();
            let w = Window {
                start: 0,
                end: 60,
                new: Sample { requests: new_requests, errors: new_errors, latency: new_latency_share.map(|s| live_latency * s) },
                live: Sample { requests: live_requests, errors: live_errors, latency: Some(live_latency) },
                metrics: vec![],
            };
            let v = Judge::new(c).judge(&w);
            prop_assert_ne!(v.outcome, Outcome::Fail, "{}", v.reason);
        }

        /// The same over a whole bake with the traffic split evenly (so that summing windows
        /// cannot turn "no worse in every window" into "worse in total").
        #[test]
        fn no_worse_than_live_never_fails_a_bake(
            c in criteria_strategy(),
            windows in proptest::collection::vec((0u64..400, 0.0..1.0f64, 0.0..=1.0f64, 0.001..5.0f64, 0.0..=1.0f64), 1..30),
        ) {
            let mut judge = Judge::new(c.clone());
            for (i, &(requests, live_error_fraction, new_error_share, live_latency, new_latency_share)) in windows.iter().enumerate() {
                let requests = requests as f64;
                let live_errors = (requests * live_error_fraction).floor();
                let new_errors = (live_errors * new_error_share).floor();
                let w = Window {
                    start: i as u64 * 60,
                    end: i as u64 * 60 + 60,
                    new: Sample { requests, errors: new_errors, latency: Some(live_latency * new_latency_share) },
                    live: Sample { requests, errors: live_errors, latency: Some(live_latency) },
                    metrics: vec![],
                };
                let v = judge.judge(&w);
                if requests > 0.0 || c.on_no_data != NoData::Rollback {
                    prop_assert_ne!(v.outcome, Outcome::Fail, "window {}: {}", i, v.reason);
                }
            }
        }

        /// Whatever came before, a window in which the new colour served nothing never passes.
        #[test]
        fn zero_requests_never_pass(
            c in criteria_strategy(),
            windows in proptest::collection::vec((0u64..2000, 0.0..1.0f64, 0u64..2000, 0.0..1.0f64), 1..30),
        ) {
            let mut judge = Judge::new(c);
            for (i, &(new_requests, new_rate, live_requests, live_rate)) in windows.iter().enumerate() {
                // Every third window has no requests of the new colour.
                let new_requests = if i % 3 == 2 { 0.0 } else { new_requests as f64 };
                let w = Window {
                    start: i as u64 * 60,
                    end: i as u64 * 60 + 60,
                    new: Sample { requests: new_requests, errors: (new_requests * new_rate).floor(), latency: None },
                    live: Sample { requests: live_requests as f64, errors: (live_requests as f64 * live_rate).floor(), latency: Some(0.1) },
                    metrics: vec![],
                };
                let v = judge.judge(&w);
                if new_requests == 0.0 {
                    prop_assert_ne!(v.outcome, Outcome::Pass, "{}", v.reason);
                }
            }
        }
    }
}
