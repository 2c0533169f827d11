//! The record of one cutover: one typed value, built once from its journal ([`build()`](super::build())),
//! that the three formats render (`json` is this type serialised as it is).
//!
//! Its serde shape is what `cutover report --format json` prints and what an audit trail keeps:
//! change it only additively, and bump [`REPORT_VERSION`] when a field changes meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::color::{Color, Percents};
use crate::judge::Outcome as VerdictOutcome;
use crate::saga::{Outcome, StepStatus, Trigger};

/// The version of the record's shape.
pub const REPORT_VERSION: u32 = 1;

/// The record of one cutover, and the timeline it was drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The version of this shape ([`REPORT_VERSION`]).
    pub report_version: u32,
    pub service: String,
    /// The cutover id.
    pub id: String,
    /// The listener or rule whose traffic it shifted.
    pub target_arn: Option<String>,
    /// The plan file's path when the cutover started.
    pub plan: Option<String>,
    /// Who started it, as far as the journal says: the user or token named at the start, the
    /// process (`pid N`), and the owner that adopted it where one did.
    pub started_by: Option<String>,
    /// The live colour before the start, as verify read it (its periods, 5xx and latency): what
    /// the judge compared the new colour with at 100 %. Absent for journals before issue 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Plan variables (daemon starts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// RFC 3339, UTC, as journaled.
    pub started_at: Option<String>,
    /// When the cutover finished (its last `finished` record); `None` while it runs.
    pub finished_at: Option<String>,
    /// From the start to the end (or to the last record, while it runs).
    pub duration_secs: Option<f64>,
    pub live_color: Option<Color>,
    pub new_color: Option<Color>,
    /// `None` while the cutover has not finished.
    pub outcome: Option<Outcome>,
    /// The state in a word: the outcome, or `running`, `rolling_back`, `new`.
    pub state: String,
    /// The outcome's reason.
    pub reason: Option<String>,
    /// The weights found at the start.
    pub initial_weights: Option<Percents>,
    /// The weights last verified (at the end, for a finished cutover).
    pub final_weights: Option<Percents>,
    /// What the new colour was judged against.
    pub thresholds: Thresholds,
    /// The new and the live colour's numbers at each judged step (each shift and the observe).
    pub shifts: Vec<ShiftRecord>,
    /// The rollback, if there was one.
    pub rollback: Option<RollbackRecord>,
    /// Every operator action, in order: rollback requests, pause, resume, promote, adoptions.
    pub operator_actions: Vec<OperatorAction>,
    /// Each step with its start, end and result.
    pub steps: Vec<StepRecord>,
    /// What was undone, in the order it ran: traffic first, then each step's undo.
    pub undo_chain: Vec<UndoRecord>,
    pub timeline: Timeline,
    /// Journal records the report was built from.
    pub records: u64,
}

/// The thresholds of the plan: from the verdicts' findings where a verdict judged them, else
/// from the plan copy the cutover started with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A fraction: 0.001 is 0.1 %.
    pub max_error_rate: Option<f64>,
    /// Seconds, of `latency_statistic`.
    pub max_latency_secs: Option<f64>,
    /// `p99`, `p95`, `Average`…: the statistic every latency in this record is.
    pub latency_statistic: Option<String>,
    pub min_requests: Option<u64>,
    pub failures_to_rollback: Option<u32>,
    /// CloudWatch alarms whose ALARM rolls back at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// One colour's numbers over a step's judged periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Numbers {
    pub requests: f64,
    /// Target 5xx responses.
    pub errors: f64,
    /// `errors / requests`, when there were requests.
    pub error_rate: Option<f64>,
    /// Seconds: the request-weighted mean of the periods' latency statistic.
    pub latency_secs: Option<f64>,
    /// Seconds: the highest period's latency statistic.
    pub max_latency_secs: Option<f64>,
}

/// A judged step (a shift, or the observe after the last one) and what its verdicts saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftRecord {
    /// Index in the plan's steps.
    pub step: usize,
    pub label: String,
    /// The new colour's share while it was judged, in percent (as verified by read-back).
    pub new_percent: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub status: StepStatus,
    /// Judged periods (one verdict each).
    pub periods: u32,
    /// Verdicts by outcome: `pass`, `fail`, `inconclusive`, `no_data`, `shared_failure`.
    pub verdicts: BTreeMap<String, u32>,
    /// The new colour over the step's judged periods.
    pub new: Numbers,
    /// The live colour over the same periods.
    pub live: Numbers,
    /// The reason of the step's last verdict.
    pub last_verdict: Option<String>,
}

/// The rollback: what turned the cutover back, who, and when traffic was back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub trigger: Trigger,
    pub reason: String,
    /// Who asked: `cutover` when it rolled back by itself (a verdict, an alarm, a failed step),
    /// else the operator's name (`user@host pid N`, `alice (API, 127.0.0.1:5123)`).
    pub initiated_by: String,
    /// When the rollback started (the request, or the failed step).
    pub started_at: String,
    /// The step running when it started.
    pub at_step: Option<String>,
    /// When traffic was verified back on the live colour.
    pub traffic_restored_at: Option<String>,
    pub restored_weights: Option<Percents>,
    /// Seconds from the start of the rollback to the verified restore.
    pub time_to_restore_secs: Option<f64>,
    /// When the rollback completed (the cutover finished).
    pub completed_at: Option<String>,
}

/// An operator's action, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorAction {
    pub at: String,
    /// `rollback`, `pause`, `resume`, `promote`, `adopt`.
    pub action: String,
    pub by: String,
    pub reason: String,
    /// The step it acted on, or the step running.
    pub step: Option<String>,
}

/// A step of the plan with its start, end and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub label: String,
    pub status: StepStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_secs: Option<f64>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// The commands and checks it ran: `run ./deploy.sh: exited 0 in 120ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
}

/// One link of the undo chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoRecord {
    /// The step undone; `None` for the traffic restore, which comes first.
    pub step: Option<usize>,
    /// `traffic` or the step's label.
    pub label: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `done`, `failed` or `running` (no result journaled).
    pub result: String,
    /// The restored weights, the undo command's result, or why it failed.
    pub detail: Option<String>,
}

/// What the chart draws: times in seconds since the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The start, in Unix seconds (the `started` record).
    pub start: Option<f64>,
    /// Seconds from the start to the end of the chart (the last record, or the last period).
    pub span_secs: f64,
    /// The new colour's share as a step line: one point per change, in time order.
    pub weights: Vec<WeightPoint>,
    /// Every judged period, with its verdict.
    pub periods: Vec<Period>,
    /// Everything else worth a mark: steps, alarms, operator actions, drift, the rollback.
    pub marks: Vec<Mark>,
}

/// The new colour's share from `t` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightPoint {
    pub t: f64,
    pub at: String,
    pub new_percent: f64,
    /// `start`, `verified`, `restored` or `drift` (found changed by someone else).
    pub source: String,
}

/// One judged period and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub step: usize,
    /// The period `[t_start, t_end)`, seconds since the start.
    pub t_start: f64,
    pub t_end: f64,
    pub outcome: VerdictOutcome,
    /// Whether it advanced the bake clock.
    pub counted: bool,
    pub new_requests: f64,
    pub new_error_rate: Option<f64>,
    pub new_latency_secs: Option<f64>,
    pub live_requests: f64,
    pub live_error_rate: Option<f64>,
    pub live_latency_secs: Option<f64>,
    /// The verdict's reason; only kept for verdicts that were not a pass (the rest say the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a timeline mark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    Started,
    StepStarted,
    StepDone,
    StepFailed,
    Alarm,
    Operator,
    Adopted,
    Drift,
    Rollback,
    TrafficRestored,
    Undo,
    Hook,
    Note,
    Finished,
    /// An event this version of the report does not draw specially.
    Other,
}

/// A mark on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub t: f64,
    pub at: String,
    pub kind: MarkKind,
    /// The journal event's name (`paused`, `step_failed`, …).
    pub event: String,
    pub step: Option<String>,
    /// Who, for operator actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The line the live log shows for it.
    pub text: String,
}
