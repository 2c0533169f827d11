//! What the judge reads and writes: samples and windows in, verdicts with their findings out.
//! These are journaled (`verdict` events), so their serde shapes are part of the journal format.

use serde::{Deserialize, Serialize};

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

/// The periods a verdict was reached on, summed: everything the cutover has judged so far (its
/// first judged period to this one, across its bakes).
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
    /// `error_rate`, `error_rate_vs_live`, `error_rate_vs_baseline`, `critical_error_rate`, `latency`,
    /// `latency_vs_live`, or `metric:NAME`.
    pub check: String,
    pub status: Status,
    /// The new colour's value: for the sequential checks over everything judged so far (for
    /// `error_rate_vs_live` the difference, for `latency_vs_live` the typical ratio).
    pub value: f64,
    pub threshold: f64,
    /// The live colour's value, when compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<f64>,
    /// One-sided p-value of the test behind the check; for a sequential test the anytime-valid
    /// one (the smallest α at which it would have rejected so far, however often it was looked at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// A ratio: the new colour's error rate over the live one's, its latency over the live one's,
    /// a custom metric's over the live one's. (Journals before issue 10: the two-proportion z.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// The test behind the check: `sequential` (a mixture SPRT over the whole cutover, with an
    /// onset detector), `sign` (the sequential sign test of latency), `line` (a threshold the
    /// plan draws, judged per window) or `fast_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// ln of the test's e-value now (the plain one or the onset detector's, whichever is nearer
    /// its threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_e_value: Option<f64>,
    /// ln of the e-value that rejects: ln(1/α), or ln(T/α) for the onset detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_threshold: Option<f64>,
    /// The anytime-valid lower confidence bound of `value` (rates and differences), when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
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
    /// The window the per-window checks (`max_latency`, the fast path) are gathering is still short
    /// of `min_requests`: a bake should not end on this verdict.
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
