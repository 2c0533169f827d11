//! The allowed range of every numeric and duration key of a plan, and why it is there.
//!
//! A plan that validates should be one a production cutover can run. Without bounds,
//! `poll_interval = "1ns"` validated and then spent the account's whole ELBv2 Describe
//! budget (50 calls a second, shared with every other tool), `bake = "100y"` held a listener
//! split for a century, and `failures_to_rollback = 4294967295` switched judging off while
//! looking like a plan that judges. Each bound below says why its ends are where they are.
//!
//! Every range is inclusive at both ends and is checked by one helper
//! (`Validator::within` in [`super::validate`]), so every error reads the same way:
//! `metrics.poll_interval: "1ns" is below the minimum 1s (allowed 1s–10m)`.
//! The README's plan reference lists the same ranges; `tests/bounds.rs` checks both ends of each.

use std::time::Duration;

/// An inclusive range of allowed values, and words that explain the unit (empty for none).
#[derive(Debug, Clone, Copy)]
pub(super) struct Range<T> {
    pub(super) min: T,
    pub(super) max: T,
    /// Appended to an out-of-range error, e.g. `: a fraction, 0.001 means 0.1 %`.
    pub(super) note: &'static str,
}

impl<T: Copy> Range<T> {
    pub(super) const fn new(min: T, max: T) -> Range<T> {
        Range { min, max, note: "" }
    }

    pub(super) const fn note(self, note: &'static str) -> Range<T> {
        Range { note, ..self }
    }
}

/// A value a range can hold, and how a bound is written in an error.
pub(super) trait Bound: PartialOrd + Copy {
    fn show(self) -> String;
    /// False for NaN, which is neither below nor above anything.
    fn is_number(self) -> bool {
        true
    }
}

impl Bound for i64 {
    fn show(self) -> String {
        self.to_string()
    }
}

impl Bound for f64 {
    fn show(self) -> String {
        self.to_string()
    }
    fn is_number(self) -> bool {
        !self.is_nan()
    }
}

impl Bound for Duration {
    fn show(self) -> String {
        short(self)
    }
}

/// What a key's value is checked against: a [`Range`], or a duration key's [`Durations`].
pub(super) trait Limits<T> {
    /// `None` when `value` is allowed; else why not, with `written` the value as the plan wrote it.
    fn check(&self, written: &str, value: T) -> Option<String>;
}

impl<T: Bound> Limits<T> for Range<T> {
    fn check(&self, written: &str, value: T) -> Option<String> {
        let (min, max) = (self.min.show(), self.max.show());
        let why = if !value.is_number() {
            format!("{written} is not a number")
        } else if value < self.min {
            format!("{written} is below the minimum {min}")
        } else if value > self.max {
            format!("{written} is above the maximum {max}")
        } else {
            return None;
        };
        Some(format!("{why} (allowed {min}–{max}){}", self.note))
    }
}

/// The finest precision a duration key means anything at: finer is an error, not rounded away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precision {
    /// Whole milliseconds: deadlines and thresholds on cutover's own clock.
    Millis,
    /// Whole seconds: keys measured in CloudWatch time, whose timestamps and periods are whole seconds.
    Seconds,
}

/// The bounds of a duration key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Durations {
    pub(super) range: Range<Duration>,
    pub(super) precision: Precision,
}

impl Durations {
    const fn new(min: Duration, max: Duration, precision: Precision) -> Durations {
        Durations {
            range: Range::new(min, max),
            precision,
        }
    }
}

/// The range first, then the precision.
impl Limits<Duration> for Durations {
    fn check(&self, written: &str, value: Duration) -> Option<String> {
        if let Some(why) = self.range.check(written, value) {
            return Some(why);
        }
        let (nanos, unit) = match self.precision {
            Precision::Millis => (1_000_000, "milliseconds"),
            Precision::Seconds => (1_000_000_000, "seconds"),
        };
        if !value.subsec_nanos().is_multiple_of(nanos) {
            return Some(format!(
                "{written} is not a whole number of {unit} (allowed {}–{} in whole {unit})",
                self.range.min.show(),
                self.range.max.show()
            ));
        }
        None
    }
}

/// A bound as people write it: `1s`, `10m`, `24h`, `7d`, `1ms` (humantime reads them all back).
fn short(d: Duration) -> String {
    let ms = d.as_millis();
    // 24h reads better than 1d; a week is 7d.
    for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= n && ms.is_multiple_of(n) && !(unit == "d" && ms < 2 * n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

// `[alb]`.

/// `alb.min_healthy_targets`, 1–1000. Zero would let weight go to a target group with no
/// healthy target, which fails open or answers 503: never. An ALB routes to at most 1000
/// targets (AWS quota), so a larger minimum could never be met.
pub(super) const MIN_HEALTHY_TARGETS: Range<i64> = Range::new(1, 1000);

/// `alb.verify_timeout`, 1s–10m in whole milliseconds. A weight change usually reads back
/// within a second, but the data plane can take seconds, and the read-back backs off to 1 s
/// steps: below a second healthy writes would fail. Above ten minutes a write that never shows
/// leaves the listener in an unknown split for too long before cutover acts on it.
pub(super) const VERIFY_TIMEOUT: Durations = Durations::new(SECOND, Duration::from_secs(600), Precision::Millis);

// `[metrics]`.

/// `metrics.period`, 1s–24h in whole seconds, and also one of CloudWatch's periods (1, 5, 10,
/// 20, 30 s or a multiple of 60 s; checked beside). One judged window longer than a day would
/// mean one verdict a day: no cutover bakes that long.
pub(super) const PERIOD: Durations = Durations::new(SECOND, DAY, Precision::Seconds);

/// `metrics.settle`, 1s–1h in whole seconds. CloudWatch timestamps are whole seconds, and a
/// period is never complete the instant it ends. ALB's newest minute completes within 1–2
/// minutes and late custom metrics within minutes; waiting over an hour would mean detecting a
/// bad release an hour after it went bad.
pub(super) const SETTLE: Durations = Durations::new(SECOND, HOUR, Precision::Seconds);

/// `metrics.poll_interval`, 1s–10m in whole seconds. Every poll reads CloudWatch and the
/// listener's weights (a Describe call, from the account's 50/s budget shared with every
/// other tool): polling faster than CloudWatch's finest period (1 s) reads nothing new and
/// spends that budget; "1ns" sent 165 DescribeListeners a second. Slower than ten minutes
/// leaves a failing release on traffic for ten minutes between looks.
pub(super) const POLL_INTERVAL: Durations = Durations::new(SECOND, Duration::from_secs(600), Precision::Seconds);

// `[rollback]`.

/// `rollback.max_error_rate`, 0–1: a fraction, so nothing else means anything.
pub(super) const MAX_ERROR_RATE: Range<f64> = Range::new(0.0, 1.0).note(": a fraction, 0.001 means 0.1 %");

/// `rollback.max_error_rate_increase`, 0–1: a difference of two fractions.
pub(super) const MAX_ERROR_RATE_INCREASE: Range<f64> =
    Range::new(0.0, 1.0).note(": a fraction, 0.005 means +0.5 percentage points");

/// `rollback.critical_error_rate`, 0–1 (a fraction), and above `max_error_rate` (checked beside).
pub(super) const CRITICAL_ERROR_RATE: Range<f64> = Range::new(0.0, 1.0).note(": a fraction, 0.5 means 50 %");

/// `rollback.confidence`, 0.5–0.9999. Below 0.5 a test flags noise more often than not.
/// Above 0.9999 a p-value must be under 1/10,000, which needs so much evidence that a real
/// regression bakes through unjudged; 1 would mean nothing is ever significant: judging off.
pub(super) const CONFIDENCE: Range<f64> = Range::new(0.5, 0.9999).note(": a fraction, 0.99 means 99 %");

/// `rollback.max_latency`, 1ms–10m in whole milliseconds. Requests through an ALB do not
/// answer faster than a millisecond, so a finer threshold fails every window; a threshold over
/// ten minutes never fails (ALB's idle timeout defaults to 60 s).
pub(super) const MAX_LATENCY: Durations = Durations::new(MS, Duration::from_secs(600), Precision::Millis);

/// `rollback.max_latency_ratio`, 1–100. Below 1 a new colour as fast as the live one fails;
/// above 100 (a 10 ms service at a whole second) it never fails in practice, but looks on.
pub(super) const MAX_LATENCY_RATIO: Range<f64> =
    Range::new(1.0, 100.0).note(": 1.5 fails latency 50 % above the live colour's");

/// `rollback.min_requests`, 1–1,000,000. Zero would judge windows without requests. A million
/// requests is a quarter hour of a 1000-request-a-second service in one verdict: more, and
/// most services never gather a verdict in a bake, which silently switches judging off.
pub(super) const MIN_REQUESTS: Range<i64> = Range::new(1, 1_000_000);

/// `rollback.failures_to_rollback`, 1–100. A hundred consecutive failed verdicts is over an
/// hour and a half of a failing release at one verdict a minute; more switches rollback off.
pub(super) const FAILURES_TO_ROLLBACK: Range<i64> = Range::new(1, 100);

/// `rollback.critical_min_requests`, 1–`min_requests`: the fast path acts on less evidence
/// than a verdict, never more (the upper end is the plan's `min_requests`).
pub(super) const fn critical_min_requests(min_requests: i64) -> Range<i64> {
    Range::new(1, min_requests).note(": at most rollback.min_requests")
}

/// `rollback.stall_timeout`, 1m–24h in whole seconds, or "off". ALB publishes a minute at a
/// time and only while requests flow, so a bake can judge nothing for a minute and be healthy;
/// a bake that has judged nothing for a day is stuck, not patient. It must also be longer than
/// the first verdict can take (`stall_floor`), or every bake would stall.
pub(super) const STALL_TIMEOUT: Durations = Durations::new(MINUTE, DAY, Precision::Seconds);

/// `rollback.stall_timeout` when the plan does not set it.
pub(super) const STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);

/// The longest a healthy bake can take to judge its first period: up to one period until the
/// first whole period after the read-back starts, one for it to end, `settle` for it to be
/// judged, and one poll to notice. A shorter stall timeout would roll back every bake.
pub(super) fn stall_floor(period: Duration, settle: Duration, poll_interval: Duration) -> Duration {
    2 * period + settle + poll_interval
}

/// `rollback.metrics[].max_ratio`, 1–1000. Below 1 a new colour as good as the live one fails;
/// custom metrics (queue ages, counts) vary more than latency, hence the wider top.
pub(super) const MAX_RATIO: Range<f64> = Range::new(1.0, 1000.0);

// `[[steps]]`.

/// `steps[].weight`, 0.1–100 percent, in steps of 0.1 (checked beside): ALB weights are whole
/// numbers and cutover writes the new colour's share on a 0–1000 scale.
pub(super) const WEIGHT: Range<f64> = Range::new(0.1, 100.0).note(": percent of traffic on the new colour");

/// `timeout` of deploy and migrate steps and `healthy_timeout` of deploy, 1s–24h in whole
/// milliseconds. Below a second no real deploy or health check finishes; above a day a hung
/// command holds the listener's lock (and a release) hostage past any working day.
pub(super) const STEP_TIMEOUT: Durations = Durations::new(SECOND, DAY, Precision::Millis);

/// `bake` of shift steps and `duration` of observe, 1s–7d in whole seconds: judged time is
/// made of CloudWatch periods (whole seconds). A week is as long as a listener should stay
/// half-shifted, blocking every other release of the service; "100y" is a typo.
pub(super) const BAKE: Durations = Durations::new(SECOND, Duration::from_secs(7 * 86_400), Precision::Seconds);

/// `timeout` of a verify check (HTTP or command), 1s–1h in whole milliseconds. A check is a
/// smoke test run before anything changes (and again after a migration): an hour is plenty,
/// and below a second a healthy check over a network fails.
pub(super) const CHECK_TIMEOUT: Durations = Durations::new(SECOND, HOUR, Precision::Millis);

/// `expect_status` of an HTTP check, 100–599: the HTTP status codes.
pub(super) const EXPECT_STATUS: Range<i64> = Range::new(100, 599).note(": an HTTP status");

/// An approval step's `timeout`: a person must be able to answer (a minute), and a cutover
/// must not wait on a gate for more than a week.
pub(super) const APPROVAL_TIMEOUT: Durations =
    Durations::new(MINUTE, Duration::from_secs(7 * 86_400), Precision::Seconds);

/// The plan's `deadline` for the whole cutover: at least a minute (one verify and a shift),
/// at most a week (the longest bake).
pub(super) const DEADLINE: Durations = Durations::new(MINUTE, Duration::from_secs(7 * 86_400), Precision::Seconds);

/// `rollback.gradual_pause` between the steps of a gradual rollback: long enough for the live
/// colour's capacity to warm up (a second at least), short enough that a rollback of a bad
/// release still ends in minutes (10 m at most per step).
pub(super) const GRADUAL_PAUSE: Durations = Durations::new(SECOND, Duration::from_secs(600), Precision::Seconds);

/// `rollback.gradual` steps: the new colour's share in percent on the way back, below 100.
pub(super) const GRADUAL_STEP: Range<f64> = Range::new(0.0, 99.9).note(": percent of traffic left on the new colour");
