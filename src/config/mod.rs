//! Plan files: raw TOML → a validated [`Plan`], before any AWS call.
//!
//! Parsing happens in two stages, in one place (ripgrep's `LowArgs` → `HiArgs`):
//! serde turns the text into `Raw*` structs that mirror the file (unknown keys are
//! rejected there), then [`validate`] checks every value and builds the [`Plan`]
//! the rest of the program uses. Every error names the file, the key and the reason,
//! and an error toml found in the text (syntax, a duplicate key, a wrong type) its line too.
//!
//! * `mod.rs` (this file): the validated types the rest of the program uses;
//! * [`raw`]: the file's shape, as serde reads it;
//! * [`validate`]: every value checked, defaults filled in (they live there and only there;
//!   `validate/steps.rs` for `[[steps]]`);
//! * [`bounds`]: the allowed range of every numeric and duration key, and why;
//! * [`position`]: the line and the dotted key of a byte offset in the text;
//! * [`notify`]: `[[notify]]`, where notifications go and where their secrets come from.

mod bounds;
pub mod notify;
mod position;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::color::Color;
use crate::judge::Criteria;

/// A plan that could not be loaded: the file, the dotted key, the line (when toml found the
/// error in the text) and why: `plan.toml: steps[2].weight (line 23): duplicate key`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{reason}", file.display(), Where(key, *line))]
pub struct PlanError {
    /// The plan file.
    pub file: PathBuf,
    /// The dotted path of the offending key, e.g. `steps[3].weight`; empty for an error at no
    /// key (a syntax error between tables, a missing top-level table).
    pub key: String,
    /// The 1-based line of the error, for errors toml found in the text: syntax errors,
    /// duplicate keys, unknown keys, wrong types. Validation errors name only the key.
    pub line: Option<usize>,
    /// What is wrong with it.
    pub reason: String,
}

/// `key (line N): `, `key: `, `line N: ` or nothing.
struct Where<'a>(&'a str, Option<usize>);

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            ("", None) => Ok(()),
            ("", Some(line)) => write!(f, "line {line}: "),
            (key, None) => write!(f, "{key}: "),
            (key, Some(line)) => write!(f, "{key} (line {line}): "),
        }
    }
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file, absolute; commands run in its directory.
    pub path: PathBuf,
    pub service: String,
    pub alb: Alb,
    pub metrics: MetricsConfig,
    pub rollback: Rollback,
    pub steps: Vec<Step>,
    /// The environment of every command the plan runs (`[environment]`).
    pub environment: Environment,
    /// Commands and HTTP calls at named points of every cutover (`[[hooks]]`).
    pub hooks: Vec<LifecycleHook>,
    /// The whole cutover's deadline, from its start: past it, it rolls back (`deadline`).
    pub deadline: Option<Duration>,
    /// Where notifications go (`[[notify]]`), in the plan's order.
    pub notify: Vec<notify::Notify>,
    /// The text it was parsed from (kept with each cutover's journal).
    pub source: String,
}

/// Where the traffic is and what it is split between.
#[derive(Debug, Clone)]
pub struct Alb {
    pub listener_arn: String,
    /// When set, this rule's forward action is shifted instead of the listener's default action.
    pub rule_arn: Option<String>,
    pub blue_target_group_arn: String,
    pub green_target_group_arn: String,
    pub min_healthy_targets: u32,
    /// How long a weight change may take to read back as written.
    pub verify_timeout: Duration,
}

impl Alb {
    /// The ARN whose forward action is shifted: the rule if there is one, else the listener.
    pub fn target_arn(&self) -> &str {
        self.rule_arn.as_deref().unwrap_or(&self.listener_arn)
    }

    /// The `LoadBalancer` CloudWatch dimension (`app/NAME/ID`), derived from the listener ARN.
    pub fn load_balancer_dimension(&self) -> String {
        // Validated: `…:listener/app/NAME/LBID/LISTENERID`.
        let rest = self.listener_arn.split_once(":listener/").map(|(_, r)| r).unwrap_or("");
        let parts: Vec<&str> = rest.split('/').collect();
        parts[..parts.len().saturating_sub(1)].join("/")
    }

    /// The target group ARN of a colour.
    pub fn target_group(&self, color: Color) -> &str {
        match color {
            Color::Blue => &self.blue_target_group_arn,
            Color::Green => &self.green_target_group_arn,
        }
    }
}

/// The `TargetGroup` CloudWatch dimension (`targetgroup/NAME/ID`) of a target group ARN.
pub fn target_group_dimension(arn: &str) -> String {
    arn.rsplit_once(':').map(|(_, r)| r.to_string()).unwrap_or_default()
}

/// How and where metrics are read.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub namespace: String,
    pub period: Duration,
    pub settle: Duration,
    pub poll_interval: Duration,
    /// A CloudWatch statistic: `Average`, `Maximum`, `p99`, …
    pub latency_statistic: String,
}

/// When to give up on the new colour.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub criteria: Criteria,
    pub alarms: Vec<String>,
    /// The query half of `[[rollback.metrics]]` (the thresholds are in `criteria.metrics`, same order).
    pub metrics: Vec<CustomMetric>,
    /// A bake that has judged nothing for this long (metrics unreadable, or no data at all)
    /// rolls back with trigger `stalled`; `None` when the plan says `stall_timeout = "off"`.
    pub stall_timeout: Option<Duration>,
    /// What a daemon that adopts this cutover, its owner gone, does with it.
    pub on_orphan: OnOrphan,
    /// An automatic rollback's way back, as the new colour's share in tenths of a percent
    /// (`[500, 0]`): empty (the default) puts all traffic back at once.
    pub gradual: Vec<u32>,
    /// The pause between the steps of a gradual rollback.
    pub gradual_pause: Duration,
}

/// When a lifecycle hook (`[[hooks]]`) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before each shift writes its weights (after the health check): a failure fails the shift.
    BeforeShift,
    /// After each shift's weights read back, before its bake: a failure fails the shift.
    AfterShift,
    /// Before the shift to 100 % (after `before_shift`): a failure fails it.
    BeforePromote,
    /// After traffic is back on the live colour in a rollback, before the undo chain: to
    /// capture debug data. Its failure is logged and changes nothing.
    OnRollback,
    /// After every step passed, before the cutover is recorded as promoted: a failure rolls back.
    AfterPromote,
}

impl HookPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::BeforeShift => "before_shift",
            HookPoint::AfterShift => "after_shift",
            HookPoint::BeforePromote => "before_promote",
            HookPoint::OnRollback => "on_rollback",
            HookPoint::AfterPromote => "after_promote",
        }
    }
}

/// A `[[hooks]]` entry: a command or an HTTP call at a named point of every cutover.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleHook {
    pub at: HookPoint,
    pub check: Check,
}

/// What an approval step does when nobody answered in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Roll back: no answer is a No-Go (the default).
    #[default]
    Rollback,
    /// Go on as if approved.
    Proceed,
}

/// What is done with a cutover whose owner vanished (its lease ran out), when a daemon adopts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOrphan {
    /// Traffic back on the live colour, then the undo chain: nobody was watching.
    #[default]
    Rollback,
    /// Go on from where the owner was.
    Resume,
}

impl OnOrphan {
    pub fn as_str(self) -> &'static str {
        match self {
            OnOrphan::Rollback => "rollback",
            OnOrphan::Resume => "resume",
        }
    }
}

/// The environment of every command the plan runs: deploy and migrate `run` and `undo`,
/// command checks, and later lifecycle hooks.
///
/// Whichever it is, commands also get the `CUTOVER_*` variables of their step, and never the
/// daemon's API token (`CUTOVER_TOKEN`), which is always removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `false` (the default): commands inherit cutover's environment (a CI job's AWS
    /// credentials reach the deploy hook). `true`: they get only `PATH`, `HOME`, `LANG`, `TZ`,
    /// `USER`, `LOGNAME`, the `CUTOVER_*` variables and the variables named in `pass`.
    pub clean: bool,
    /// With `clean`, the variables of cutover's environment passed through besides those;
    /// validated names (`[A-Za-z_][A-Za-z0-9_]*`), none `CUTOVER_*`. Empty unless `clean`.
    pub pass: Vec<String>,
}

/// A `[[rollback.metrics]]` CloudWatch metric, as it is queried.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetric {
    pub namespace: String,
    pub name: String,
    /// `(name, value)`; values may hold `{target_group}` and `{load_balancer}`, filled in per colour.
    pub dimensions: Vec<(String, String)>,
    pub statistic: String,
    pub unit: Option<String>,
    /// Also fetch the live colour's value, with `{target_group}` the live colour's.
    pub compare_with_live: bool,
}

impl CustomMetric {
    /// The dimensions with the placeholders filled in for one colour.
    pub fn dimensions_for(&self, load_balancer: &str, target_group: &str) -> Vec<(String, String)> {
        self.dimensions
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.replace(TARGET_GROUP, target_group)
                        .replace(LOAD_BALANCER, load_balancer),
                )
            })
            .collect()
    }
}

/// Dimension placeholder: the colour's `TargetGroup` dimension (`targetgroup/NAME/ID`).
pub const TARGET_GROUP: &str = "{target_group}";
/// Dimension placeholder: the `LoadBalancer` dimension (`app/NAME/ID`).
pub const LOAD_BALANCER: &str = "{load_balancer}";
/// At most this many `[[rollback.metrics]]`: GetMetricData takes 500 queries per call.
pub const MAX_CUSTOM_METRICS: usize = 50;

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Preconditions; changes nothing.
    Verify { checks: Vec<Check> },
    /// Runs the deploy command, then waits for the new colour's targets to be healthy.
    Deploy {
        command: CommandStep,
        healthy_timeout: Duration,
    },
    /// Runs the forward migration; its undo is the backward one.
    Migrate { command: CommandStep },
    /// Sets the new colour's share, in tenths of a percent (1–1000), then bakes.
    Shift { permille: u32, bake: Duration },
    /// Keeps judging at the current weights.
    Observe { duration: Duration },
    /// A Go/No-Go gate: waits for a person's approval (judging goes on meanwhile).
    Approve {
        timeout: Duration,
        on_timeout: OnTimeout,
        /// Who may approve or reject (token names, or local user names); empty: anyone.
        approvers: Vec<String>,
        /// Whether the person who started the cutover may not approve it.
        require_other: bool,
    },
}

impl Step {
    /// The `action` name, as in the plan file.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Verify { .. } => "verify",
            Step::Deploy { .. } => "deploy",
            Step::Migrate { .. } => "migrate",
            Step::Shift { .. } => "shift",
            Step::Observe { .. } => "observe",
            Step::Approve { .. } => "approve",
        }
    }

    /// A short human label: `shift 50%`, `deploy`, …
    pub fn label(&self) -> String {
        match self {
            Step::Shift { permille, .. } => format!("shift {}%", fmt_permille(*permille)),
            other => other.action().to_string(),
        }
    }

    /// The undo command, for steps that have one.
    pub fn undo(&self) -> Option<&CommandStep> {
        match self {
            Step::Deploy { command, .. } | Step::Migrate { command } if command.undo.is_some() => Some(command),
            _ => None,
        }
    }

    /// Whether completing this step changes something outside cutover (traffic, code, schema).
    pub fn has_effects(&self) -> bool {
        !matches!(self, Step::Verify { .. } | Step::Observe { .. } | Step::Approve { .. })
    }
}

/// `500` → `50`, `125` → `12.5`.
pub fn fmt_permille(p: u32) -> String {
    if p.is_multiple_of(10) {
        format!("{}", p / 10)
    } else {
        format!("{}.{}", p / 10, p % 10)
    }
}

/// A user command with its undo and a deadline for each.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStep {
    pub run: Vec<String>,
    pub undo: Option<Vec<String>>,
    pub timeout: Duration,
}

/// A user check of a verify step.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http {
        url: String,
        expect_status: u16,
        timeout: Duration,
    },
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
}

/// Reads and validates a plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: path.to_path_buf(),
        key: "(file)".into(),
        line: None,
        reason: format!("cannot read: {e}"),
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&abs, &text)
}

/// Parses and validates plan text; `path` is only used in errors and for the command directory.
pub fn parse(path: &Path, text: &str) -> Result<Plan, PlanError> {
    // An error toml found in the text has a span: name its line, and its key (serde's path
    // where there is one, else the key written at the span).
    let err = |key: Option<String>, e: &toml::de::Error| {
        let span = e.span();
        let key = key.or_else(|| span.clone().and_then(|s| position::key_at(text, s.start)));
        PlanError {
            file: path.to_path_buf(),
            key: key.unwrap_or_default(),
            line: span.map(|s| position::line(text, s.start)),
            reason: e.message().to_string(),
        }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| err(None, &e))?;
    let raw: raw::RawPlan = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        if key != "." {
            return err(Some(key), &inner);
        }
        // An error of the document as a whole (`missing field `rollback``) has an empty span
        // at 0, which is no line of the file.
        match inner.span() {
            Some(s) if !s.is_empty() => err(None, &inner),
            _ => PlanError {
                file: path.to_path_buf(),
                key: String::new(),
                line: None,
                reason: inner.message().to_string(),
            },
        }
    })?;
    validate::plan(path, raw).map(|plan| Plan {
        source: text.to_string(),
        ..plan
    })
}
