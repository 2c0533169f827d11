//! The plan file as it is written: `Raw*` structs that mirror the TOML, with
//! `deny_unknown_fields` everywhere so that a misspelt key is an error, not a silent default.
//!
//! Integers are read as `i64` (any TOML integer) and checked against their range in
//! [`super::validate`], so `min_requests = -1` gets the same error as `min_requests = 0`
//! (the key, the value and the allowed range) instead of serde's "expected u64".

use serde::Deserialize;

use crate::judge::{Direction, Mode, NoData, OnShared};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub(super) service: RawService,
    pub(super) alb: RawAlb,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    pub(super) rollback: RawRollback,
    pub(super) steps: Option<Vec<RawStep>>,
    #[serde(default)]
    pub(super) environment: RawEnvironment,
    /// `[[hooks]]`.
    #[serde(default)]
    pub(super) hooks: Vec<RawHook>,
    /// The whole cutover's deadline, a duration.
    pub(super) deadline: Option<String>,
    /// `[[notify]]`.
    #[serde(default)]
    pub(super) notify: Vec<super::notify::RawNotify>,
}

/// A `[[hooks]]` entry: a check (`command` or `http`) and where it runs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub(super) at: super::HookPoint,
    pub(super) http: Option<String>,
    pub(super) expect_status: Option<i64>,
    pub(super) command: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    #[serde(default)]
    pub(super) clean: bool,
    pub(super) pass: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlb {
    pub(super) listener_arn: String,
    pub(super) rule_arn: Option<String>,
    pub(super) blue_target_group_arn: String,
    pub(super) green_target_group_arn: String,
    pub(super) min_healthy_targets: Option<i64>,
    pub(super) verify_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) namespace: Option<String>,
    pub(super) period: Option<String>,
    pub(super) settle: Option<String>,
    pub(super) poll_interval: Option<String>,
    pub(super) latency_statistic: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollback {
    pub(super) max_error_rate: f64,
    pub(super) max_latency: Option<String>,
    pub(super) min_requests: Option<i64>,
    pub(super) failures_to_rollback: Option<i64>,
    pub(super) on_no_data: Option<NoData>,
    #[serde(default)]
    pub(super) alarms: Vec<String>,
    pub(super) confidence: Option<f64>,
    pub(super) max_error_rate_increase: Option<f64>,
    pub(super) max_latency_ratio: Option<f64>,
    pub(super) on_shared_failure: Option<OnShared>,
    pub(super) critical_error_rate: Option<f64>,
    pub(super) critical_min_requests: Option<i64>,
    pub(super) mode: Option<Mode>,
    /// A duration, or "off".
    pub(super) stall_timeout: Option<String>,
    pub(super) on_orphan: Option<super::OnOrphan>,
    /// Percent of traffic on the new colour at each step of a gradual rollback.
    pub(super) gradual: Option<Vec<f64>>,
    pub(super) gradual_pause: Option<String>,
    #[serde(default)]
    pub(super) metrics: Vec<RawMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub(super) namespace: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) dimensions: std::collections::BTreeMap<String, String>,
    pub(super) statistic: Option<String>,
    pub(super) unit: Option<String>,
    pub(super) threshold: f64,
    pub(super) direction: Direction,
    #[serde(default)]
    pub(super) compare_with_live: bool,
    pub(super) max_ratio: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) action: String,
    pub(super) checks: Option<Vec<RawCheck>>,
    pub(super) run: Option<Vec<String>>,
    pub(super) undo: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
    pub(super) healthy_timeout: Option<String>,
    pub(super) weight: Option<f64>,
    pub(super) bake: Option<String>,
    pub(super) duration: Option<String>,
    pub(super) on_timeout: Option<super::OnTimeout>,
    pub(super) approvers: Option<Vec<String>>,
    pub(super) require_other: Option<bool>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) http: Option<String>,
    pub(super) expect_status: Option<i64>,
    pub(super) command: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
}
