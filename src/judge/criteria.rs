//! What a plan judges against: thresholds, tests and their policies. Defaults live in `config`.

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
    /// `[[rollback.metrics]]`, in the order of [`Window::metrics`](super::Window::metrics).
    pub metrics: Vec<MetricCriterion>,
    pub mode: Mode,
}
