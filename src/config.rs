//! Plan files: raw TOML → a validated [`Plan`], before any AWS call.
//!
//! Parsing happens in two stages, in one place (ripgrep's `LowArgs` → `HiArgs`):
//! serde turns the text into `Raw*` structs that mirror the file (unknown keys are
//! rejected there), then [`validate`] checks every value and builds the [`Plan`]
//! the rest of the program uses. Every error names the file, the key and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::color::Color;
use crate::judge::{Criteria, Direction, MetricCriterion, Mode, NoData, OnShared};

/// A plan that could not be loaded: the file, the dotted key and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {reason}", file.display())]
pub struct PlanError {
    /// The plan file.
    pub file: PathBuf,
    /// The dotted path of the offending key, e.g. `steps[3].weight`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
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

/// CloudWatch's units (`StandardUnit`).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

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
        !matches!(self, Step::Verify { .. } | Step::Observe { .. })
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

// ---------------------------------------------------------------------------
// Raw file shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    service: RawService,
    alb: RawAlb,
    #[serde(default)]
    metrics: RawMetrics,
    rollback: RawRollback,
    steps: Option<Vec<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlb {
    listener_arn: String,
    rule_arn: Option<String>,
    blue_target_group_arn: String,
    green_target_group_arn: String,
    min_healthy_targets: Option<u32>,
    verify_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    namespace: Option<String>,
    period: Option<String>,
    settle: Option<String>,
    poll_interval: Option<String>,
    latency_statistic: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    max_error_rate: f64,
    max_latency: Option<String>,
    min_requests: Option<u64>,
    failures_to_rollback: Option<u32>,
    on_no_data: Option<NoData>,
    #[serde(default)]
    alarms: Vec<String>,
    confidence: Option<f64>,
    max_error_rate_increase: Option<f64>,
    max_latency_ratio: Option<f64>,
    on_shared_failure: Option<OnShared>,
    critical_error_rate: Option<f64>,
    critical_min_requests: Option<u64>,
    mode: Option<Mode>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    namespace: String,
    name: String,
    #[serde(default)]
    dimensions: std::collections::BTreeMap<String, String>,
    statistic: Option<String>,
    unit: Option<String>,
    threshold: f64,
    direction: Direction,
    #[serde(default)]
    compare_with_live: bool,
    max_ratio: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: String,
    checks: Option<Vec<RawCheck>>,
    run: Option<Vec<String>>,
    undo: Option<Vec<String>>,
    timeout: Option<String>,
    healthy_timeout: Option<String>,
    weight: Option<f64>,
    bake: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    http: Option<String>,
    expect_status: Option<u16>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
}

/// Reads and validates a plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: path.to_path_buf(),
        key: "(file)".into(),
        reason: format!("cannot read: {e}"),
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&abs, &text)
}

/// Parses and validates plan text; `path` is only used in errors and for the command directory.
pub fn parse(path: &Path, text: &str) -> Result<Plan, PlanError> {
    let err = |key: String, reason: String| PlanError {
        file: path.to_path_buf(),
        key,
        reason,
    };
    let de = toml::Deserializer::parse(text).map_err(|e| err(position(text, &e), e.message().to_string()))?;
    let raw: RawPlan = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." { position(text, &inner) } else { key };
        err(key, inner.message().to_string())
    })?;
    validate(path, raw).map(|plan| Plan {
        source: text.to_string(),
        ..plan
    })
}

/// `line N` of a syntax error, for errors that have no key.
fn position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("line {}", text[..span.start.min(text.len())].lines().count().max(1)),
        None => "(document)".into(),
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn duration(&self, key: &str, value: Option<&str>, default: Option<&str>) -> Result<Duration, PlanError> {
        let Some(s) = value.or(default) else {
            return Err(self.err(key, "missing: a duration such as \"30s\" or \"5m\" is required"));
        };
        let d = humantime::parse_duration(s).map_err(|e| {
            self.err(
                key,
                format!("{s:?} is not a duration ({e}); write e.g. \"30s\", \"5m\""),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }

    fn argv(&self, key: &str, argv: Vec<String>) -> Result<Vec<String>, PlanError> {
        if argv.first().is_none_or(|a| a.is_empty()) {
            return Err(self.err(key, "must be a non-empty list: the program, then its arguments"));
        }
        Ok(argv)
    }

    fn forbid(&self, key: String, present: bool, action: &str) -> Result<(), PlanError> {
        if present {
            return Err(self.err(key, format!("not a key of a {action} step")));
        }
        Ok(())
    }
}

fn validate(path: &Path, raw: RawPlan) -> Result<Plan, PlanError> {
    let v = Validator { file: path };

    let service = raw.service.name.trim().to_string();
    if service.is_empty() {
        return Err(v.err("service.name", "must not be empty"));
    }

    // ALB.
    let a = raw.alb;
    if !is_listener_arn(&a.listener_arn) {
        return Err(v.err(
            "alb.listener_arn",
            format!(
                "{:?} is not an ALB listener ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID)",
                a.listener_arn
            ),
        ));
    }
    if let Some(rule) = &a.rule_arn {
        let listener_part = a.listener_arn.split_once(":listener/").map(|(_, r)| r).unwrap_or("");
        let rule_part = rule.split_once(":listener-rule/").map(|(_, r)| r);
        match rule_part {
            Some(r) if r.starts_with(&format!("{listener_part}/")) => {}
            Some(_) => {
                return Err(v.err("alb.rule_arn", "the rule does not belong to alb.listener_arn"));
            }
            None => {
                return Err(v.err("alb.rule_arn", format!("{rule:?} is not an ALB listener rule ARN")));
            }
        }
    }
    for (key, arn) in [
        ("alb.blue_target_group_arn", &a.blue_target_group_arn),
        ("alb.green_target_group_arn", &a.green_target_group_arn),
    ] {
        if !arn.starts_with("arn:") || !arn.contains(":targetgroup/") {
            return Err(v.err(key, format!("{arn:?} is not a target group ARN")));
        }
    }
    if a.blue_target_group_arn == a.green_target_group_arn {
        return Err(v.err(
            "alb.green_target_group_arn",
            "must differ from alb.blue_target_group_arn",
        ));
    }
    let alb = Alb {
        listener_arn: a.listener_arn,
        rule_arn: a.rule_arn,
        blue_target_group_arn: a.blue_target_group_arn,
        green_target_group_arn: a.green_target_group_arn,
        min_healthy_targets: a.min_healthy_targets.unwrap_or(1),
        verify_timeout: v.duration("alb.verify_timeout", a.verify_timeout.as_deref(), Some("30s"))?,
    };

    // Metrics.
    let m = raw.metrics;
    let period = v.duration("metrics.period", m.period.as_deref(), Some("60s"))?;
    let secs = period.as_secs();
    if period.subsec_nanos() != 0 || !(matches!(secs, 1 | 5 | 10 | 20 | 30) || secs.is_multiple_of(60)) {
        return Err(v.err(
            "metrics.period",
            "CloudWatch periods are 1s, 5s, 10s, 20s, 30s or a multiple of 60s",
        ));
    }
    let latency_statistic = m.latency_statistic.unwrap_or_else(|| "p99".into());
    if !is_statistic(&latency_statistic) {
        return Err(v.err(
            "metrics.latency_statistic",
            format!("{latency_statistic:?} is not a statistic: use Average, Minimum, Maximum, or a percentile such as p99 or p99.9"),
        ));
    }
    let namespace = m.namespace.unwrap_or_else(|| "AWS/ApplicationELB".into());
    if namespace.trim().is_empty() {
        return Err(v.err("metrics.namespace", "must not be empty"));
    }
    let metrics = MetricsConfig {
        namespace,
        period,
        settle: v.duration("metrics.settle", m.settle.as_deref(), Some("120s"))?,
        poll_interval: v.duration("metrics.poll_interval", m.poll_interval.as_deref(), Some("15s"))?,
        latency_statistic,
    };

    // Rollback criteria.
    let r = raw.rollback;
    if !(0.0..=1.0).contains(&r.max_error_rate) {
        return Err(v.err(
            "rollback.max_error_rate",
            format!(
                "{} is outside [0, 1]: it is a fraction, 0.001 means 0.1 %",
                r.max_error_rate
            ),
        ));
    }
    let max_latency = match r.max_latency.as_deref() {
        Some(s) => Some(v.duration("rollback.max_latency", Some(s), None)?),
        None => None,
    };
    let failures_to_rollback = r.failures_to_rollback.unwrap_or(2);
    if failures_to_rollback == 0 {
        return Err(v.err("rollback.failures_to_rollback", "must be at least 1"));
    }
    let min_requests = r.min_requests.unwrap_or(100);
    if min_requests == 0 {
        return Err(v.err("rollback.min_requests", "must be at least 1"));
    }
    if let Some(i) = r.alarms.iter().position(|n| n.trim().is_empty()) {
        return Err(v.err(format!("rollback.alarms[{i}]"), "an alarm name must not be empty"));
    }
    let confidence = r.confidence.unwrap_or(0.99);
    if !(0.5..1.0).contains(&confidence) {
        return Err(v.err(
            "rollback.confidence",
            format!("{confidence} is outside [0.5, 1): it is a fraction, 0.99 means 99 %"),
        ));
    }
    let max_error_rate_increase = r.max_error_rate_increase.unwrap_or(0.005);
    if !(0.0..=1.0).contains(&max_error_rate_increase) {
        return Err(v.err(
            "rollback.max_error_rate_increase",
            format!(
                "{max_error_rate_increase} is outside [0, 1]: it is a fraction, 0.005 means +0.5 percentage points"
            ),
        ));
    }
    if let Some(x) = r.max_latency_ratio
        && !(x >= 1.0 && x.is_finite())
    {
        return Err(v.err(
            "rollback.max_latency_ratio",
            format!("{x} must be at least 1: 1.5 fails latency 50 % above the live colour's"),
        ));
    }
    if let Some(x) = r.critical_error_rate
        && !(x > r.max_error_rate && x <= 1.0)
    {
        return Err(v.err(
            "rollback.critical_error_rate",
            format!(
                "{x} must be above max_error_rate ({}) and at most 1: it is a fraction, 0.5 means 50 %",
                r.max_error_rate
            ),
        ));
    }
    let critical_min_requests = r.critical_min_requests.unwrap_or(10.min(min_requests));
    if critical_min_requests == 0 || critical_min_requests > min_requests {
        return Err(v.err(
            "rollback.critical_min_requests",
            format!("{critical_min_requests} must be between 1 and min_requests ({min_requests})"),
        ));
    }
    if r.metrics.len() > MAX_CUSTOM_METRICS {
        return Err(v.err(
            "rollback.metrics",
            format!("{} metrics: at most {MAX_CUSTOM_METRICS}", r.metrics.len()),
        ));
    }
    let mut custom_metrics = Vec::new();
    let mut metric_criteria = Vec::new();
    for (i, m) in r.metrics.into_iter().enumerate() {
        let (query, criterion) = validate_metric(&v, i, m)?;
        custom_metrics.push(query);
        metric_criteria.push(criterion);
    }
    let rollback = Rollback {
        criteria: Criteria {
            max_error_rate: r.max_error_rate,
            max_latency: max_latency.map(|d| d.as_secs_f64()),
            min_requests,
            failures_to_rollback,
            on_no_data: r.on_no_data.unwrap_or(NoData::Hold),
            confidence,
            max_error_rate_increase,
            max_latency_ratio: r.max_latency_ratio,
            on_shared_failure: r.on_shared_failure.unwrap_or(OnShared::Hold),
            critical_error_rate: r.critical_error_rate,
            critical_min_requests,
            metrics: metric_criteria,
            mode: r.mode.unwrap_or(Mode::Auto),
        },
        alarms: r.alarms,
        metrics: custom_metrics,
    };

    // Steps.
    let steps = match raw.steps {
        Some(steps) => steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| validate_step(&v, i, s))
            .collect::<Result<Vec<_>, _>>()?,
        None => default_steps(),
    };
    let mut last_shift: Option<u32> = None;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Shift { permille, .. } => {
                if let Some(prev) = last_shift
                    && *permille <= prev
                {
                    return Err(v.err(
                        format!("steps[{i}].weight"),
                        format!(
                            "{}% does not increase on the previous shift ({}%)",
                            fmt_permille(*permille),
                            fmt_permille(prev)
                        ),
                    ));
                }
                last_shift = Some(*permille);
            }
            Step::Observe { .. } if last_shift != Some(1000) => {
                return Err(v.err(format!("steps[{i}].action"), "observe must come after the shift to 100"));
            }
            _ => {}
        }
    }
    match last_shift {
        None => {
            return Err(v.err("steps", "the plan has no shift step: the last shift must be to 100"));
        }
        Some(p) if p != 1000 => {
            return Err(v.err(
                "steps",
                format!("the last shift is to {}%: it must be to 100", fmt_permille(p)),
            ));
        }
        _ => {}
    }

    Ok(Plan {
        path: path.to_path_buf(),
        service,
        alb,
        metrics,
        rollback,
        steps,
        source: String::new(),
    })
}

fn validate_metric(v: &Validator, i: usize, m: RawMetric) -> Result<(CustomMetric, MetricCriterion), PlanError> {
    let k = |name: &str| format!("rollback.metrics[{i}].{name}");
    if m.namespace.trim().is_empty() {
        return Err(v.err(k("namespace"), "must not be empty"));
    }
    if m.name.trim().is_empty() {
        return Err(v.err(k("name"), "must not be empty: the CloudWatch metric name"));
    }
    if m.dimensions.len() > 30 {
        return Err(v.err(k("dimensions"), "CloudWatch allows at most 30 dimensions"));
    }
    for (name, value) in &m.dimensions {
        if name.is_empty() || value.is_empty() {
            return Err(v.err(k("dimensions"), "dimension names and values must not be empty"));
        }
        let rest = value.replace(TARGET_GROUP, "").replace(LOAD_BALANCER, "");
        if rest.contains('{') {
            return Err(v.err(
                format!("{}.{name}", k("dimensions")),
                format!("{value:?}: the only placeholders are {TARGET_GROUP} and {LOAD_BALANCER}"),
            ));
        }
    }
    let statistic = m.statistic.unwrap_or_else(|| "Average".into());
    if !is_statistic(&statistic) {
        return Err(v.err(
            k("statistic"),
            format!("{statistic:?} is not a statistic: use Average, Sum, Minimum, Maximum, SampleCount or a percentile such as p99"),
        ));
    }
    if let Some(u) = &m.unit
        && !UNITS.contains(&u.as_str())
    {
        return Err(v.err(
            k("unit"),
            format!("{u:?} is not a CloudWatch unit (Seconds, Milliseconds, Count, Percent, …)"),
        ));
    }
    if !m.threshold.is_finite() {
        return Err(v.err(k("threshold"), "must be a finite number"));
    }
    if m.compare_with_live && !m.dimensions.values().any(|d| d.contains(TARGET_GROUP)) {
        return Err(v.err(
            k("compare_with_live"),
            format!("needs a dimension whose value holds {TARGET_GROUP}, e.g. TargetGroup = \"{TARGET_GROUP}\", to substitute the live colour's"),
        ));
    }
    if let Some(x) = m.max_ratio {
        if !m.compare_with_live {
            return Err(v.err(k("max_ratio"), "needs compare_with_live = true"));
        }
        if !(x >= 1.0 && x.is_finite()) {
            return Err(v.err(k("max_ratio"), format!("{x} must be at least 1")));
        }
    }
    Ok((
        CustomMetric {
            namespace: m.namespace,
            name: m.name.clone(),
            dimensions: m.dimensions.into_iter().collect(),
            statistic,
            unit: m.unit,
            compare_with_live: m.compare_with_live,
        },
        MetricCriterion {
            name: m.name,
            threshold: m.threshold,
            direction: m.direction,
            compare_with_live: m.compare_with_live,
            max_ratio: m.max_ratio,
        },
    ))
}

fn validate_step(v: &Validator, i: usize, s: RawStep) -> Result<Step, PlanError> {
    let k = |name: &str| format!("steps[{i}].{name}");
    let action = s.action.as_str();
    let command_step = |s: &RawStep, default_timeout: &str| -> Result<CommandStep, PlanError> {
        let run = s
            .run
            .clone()
            .ok_or_else(|| v.err(k("run"), format!("missing: a {action} step needs a command to run")))?;
        Ok(CommandStep {
            run: v.argv(&k("run"), run)?,
            undo: s.undo.clone().map(|u| v.argv(&k("undo"), u)).transpose()?,
            timeout: v.duration(&k("timeout"), s.timeout.as_deref(), Some(default_timeout))?,
        })
    };
    let step = match action {
        "verify" => {
            for (key, present) in [
                ("run", s.run.is_some()),
                ("undo", s.undo.is_some()),
                ("timeout", s.timeout.is_some()),
            ] {
                v.forbid(k(key), present, action)?;
            }
            let checks = s
                .checks
                .clone()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(j, c)| validate_check(v, &format!("steps[{i}].checks[{j}]"), c))
                .collect::<Result<_, _>>()?;
            Step::Verify { checks }
        }
        "deploy" => Step::Deploy {
            command: command_step(&s, "15m")?,
            healthy_timeout: v.duration(&k("healthy_timeout"), s.healthy_timeout.as_deref(), Some("5m"))?,
        },
        "migrate" => Step::Migrate {
            command: command_step(&s, "10m")?,
        },
        "shift" => {
            let w = s
                .weight
                .ok_or_else(|| v.err(k("weight"), "missing: the new colour's share in percent, (0, 100]"))?;
            if !(w > 0.0 && w <= 100.0) {
                return Err(v.err(k("weight"), format!("{w} is outside (0, 100]")));
            }
            let permille = (w * 10.0).round();
            if (permille - w * 10.0).abs() > 1e-6 {
                return Err(v.err(
                    k("weight"),
                    format!("{w} has more precision than ALB weights allow: use a multiple of 0.1"),
                ));
            }
            Step::Shift {
                permille: permille as u32,
                bake: v.duration(&k("bake"), s.bake.as_deref(), None)?,
            }
        }
        "observe" => Step::Observe {
            duration: v.duration(&k("duration"), s.duration.as_deref(), None)?,
        },
        other => {
            return Err(v.err(
                k("action"),
                format!("unknown action {other:?}: expected verify, deploy, migrate, shift or observe"),
            ));
        }
    };
    // Keys that exist in the file format but not for this action are errors, not silently ignored.
    let foreign: &[(&str, bool)] = &[
        ("checks", s.checks.is_some() && action != "verify"),
        ("run", s.run.is_some() && !matches!(action, "deploy" | "migrate")),
        ("undo", s.undo.is_some() && !matches!(action, "deploy" | "migrate")),
        (
            "timeout",
            s.timeout.is_some() && !matches!(action, "deploy" | "migrate"),
        ),
        ("healthy_timeout", s.healthy_timeout.is_some() && action != "deploy"),
        ("weight", s.weight.is_some() && action != "shift"),
        ("bake", s.bake.is_some() && action != "shift"),
        ("duration", s.duration.is_some() && action != "observe"),
    ];
    for (key, present) in foreign {
        v.forbid(k(key), *present, action)?;
    }
    Ok(step)
}

fn validate_check(v: &Validator, key: &str, c: RawCheck) -> Result<Check, PlanError> {
    let timeout = |default| v.duration(&format!("{key}.timeout"), c.timeout.as_deref(), Some(default));
    match (c.http, c.command) {
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(&url).is_err() {
                return Err(v.err(
                    format!("{key}.http"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
            let expect_status = c.expect_status.unwrap_or(200);
            if !(100..=599).contains(&expect_status) {
                return Err(v.err(
                    format!("{key}.expect_status"),
                    format!("{expect_status} is not an HTTP status"),
                ));
            }
            Ok(Check::Http {
                url,
                expect_status,
                timeout: timeout("10s")?,
            })
        }
        (None, Some(argv)) => {
            if c.expect_status.is_some() {
                return Err(v.err(format!("{key}.expect_status"), "only for http checks"));
            }
            Ok(Check::Command {
                argv: v.argv(&format!("{key}.command"), argv)?,
                timeout: timeout("60s")?,
            })
        }
        (Some(_), Some(_)) => Err(v.err(key, "a check is either http or command, not both")),
        (None, None) => Err(v.err(key, "a check needs http = \"URL\" or command = [\"PROGRAM\", …]")),
    }
}

/// The runbook's plan, used when the file has no `[[steps]]`.
fn default_steps() -> Vec<Step> {
    vec![
        Step::Verify { checks: vec![] },
        Step::Shift {
            permille: 500,
            bake: Duration::from_secs(600),
        },
        Step::Shift {
            permille: 1000,
            bake: Duration::from_secs(300),
        },
        Step::Observe {
            duration: Duration::from_secs(1800),
        },
    ]
}

fn is_listener_arn(arn: &str) -> bool {
    let Some((head, rest)) = arn.split_once(":listener/") else {
        return false;
    };
    head.starts_with("arn:")
        && head.contains(":elasticloadbalancing:")
        && rest.starts_with("app/")
        && rest.split('/').count() == 4
}

fn is_statistic(s: &str) -> bool {
    if matches!(s, "Average" | "Minimum" | "Maximum" | "Sum" | "SampleCount") {
        return true;
    }
    s.strip_prefix('p')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0 && n < 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[service]
name = "checkout"

[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-blue/73e2d6bc24d8a067"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-green/2453ed029918f21f"

[rollback]
max_error_rate = 0.001

[[steps]]
action = "shift"
weight = 50
bake = "10m"

[[steps]]
action = "shift"
weight = 100
bake = "5m"
"#;

    /// Replaces `from` with `to` in the good plan and expects an error at `key` whose reason contains `reason`.
    fn check_err(from: &str, to: &str, key: &str, reason: &str) {
        assert!(GOOD.contains(from), "test bug: {from:?} not in the plan");
        let text = GOOD.replacen(from, to, 1);
        let e = parse(Path::new("plan.toml"), &text).expect_err("plan should be rejected");
        assert_eq!(e.key, key, "wrong key for {to:?}: {e}");
        assert!(e.reason.contains(reason), "reason {:?} lacks {reason:?}", e.reason);
        assert!(e.to_string().starts_with("plan.toml: "), "{e}");
    }

    #[test]
    fn good_plan_parses_with_defaults() {
        let p = parse(Path::new("plan.toml"), GOOD).unwrap();
        assert_eq!(p.service, "checkout");
        assert_eq!(p.metrics.period, Duration::from_secs(60));
        assert_eq!(p.metrics.settle, Duration::from_secs(120));
        assert_eq!(p.metrics.latency_statistic, "p99");
        assert_eq!(p.rollback.criteria.failures_to_rollback, 2);
        assert_eq!(p.alb.load_balancer_dimension(), "app/prod/50dc6c495c0c9188");
        assert_eq!(
            target_group_dimension(&p.alb.blue_target_group_arn),
            "targetgroup/checkout-blue/73e2d6bc24d8a067"
        );
        assert_eq!(
            p.steps[0],
            Step::Shift {
                permille: 500,
                bake: Duration::from_secs(600)
            }
        );
    }

    #[test]
    fn plan_errors_name_the_key() {
        check_err(
            "name = \"checkout\"",
            "name = \"checkout\"\ncolour = 1",
            "service.colour",
            "unknown field `colour`",
        );
        check_err(
            "max_error_rate = 0.001",
            "max_error_rate = 1.5",
            "rollback.max_error_rate",
            "outside [0, 1]",
        );
        check_err(
            "max_error_rate = 0.001",
            "max_error_rate = -0.1",
            "rollback.max_error_rate",
            "outside [0, 1]",
        );
        check_err(
            "max_error_rate = 0.001",
            "max_error_rate = \"lots\"",
            "rollback.max_error_rate",
            "invalid type",
        );
        check_err(
            "max_error_rate = 0.001",
            "",
            "rollback",
            "missing field `max_error_rate`",
        );
        check_err("weight = 50", "weight = 0", "steps[0].weight", "outside (0, 100]");
        check_err("weight = 50", "weight = 150", "steps[0].weight", "outside (0, 100]");
        check_err("weight = 50", "weight = 12.34", "steps[0].weight", "multiple of 0.1");
        check_err(
            "weight = 50",
            "weight = 50\nwieght = 3",
            "steps[0].wieght",
            "unknown field `wieght`",
        );
        check_err("bake = \"10m\"", "bake = \"0s\"", "steps[0].bake", "greater than zero");
        check_err(
            "bake = \"10m\"",
            "bake = \"ten minutes\"",
            "steps[0].bake",
            "not a duration",
        );
        check_err("bake = \"10m\"", "", "steps[0].bake", "missing");
        check_err("weight = 100", "weight = 90", "steps", "must be to 100");
        check_err("weight = 100", "weight = 40", "steps[1].weight", "does not increase");
        check_err(
            "action = \"shift\"\nweight = 50",
            "action = \"shfit\"\nweight = 50",
            "steps[0].action",
            "unknown action",
        );
        check_err(
            "action = \"shift\"\nweight = 50\nbake = \"10m\"",
            "action = \"observe\"\nduration = \"1m\"",
            "steps[0].action",
            "after the shift to 100",
        );
        check_err(
            "listener/app/prod",
            "listener/net/prod",
            "alb.listener_arn",
            "not an ALB listener ARN",
        );
        check_err(
            "checkout-green/2453ed029918f21f",
            "checkout-blue/73e2d6bc24d8a067",
            "alb.green_target_group_arn",
            "must differ",
        );
        check_err(
            "[rollback]",
            "[metrics]\nperiod = \"45s\"\n\n[rollback]",
            "metrics.period",
            "multiple of 60s",
        );
        check_err(
            "[rollback]",
            "[metrics]\nlatency_statistic = \"median\"\n\n[rollback]",
            "metrics.latency_statistic",
            "not a statistic",
        );
        check_err(
            "[rollback]",
            "[metrics]\nsettle = \"0s\"\n\n[rollback]",
            "metrics.settle",
            "greater than zero",
        );
        check_err(
            "max_error_rate = 0.001",
            "max_error_rate = 0.001\nfailures_to_rollback = 0",
            "rollback.failures_to_rollback",
            "at least 1",
        );
        check_err(
            "max_error_rate = 0.001",
            "max_error_rate = 0.001\non_no_data = \"panic\"",
            "rollback.on_no_data",
            "unknown variant",
        );
        check_err(
            "[alb]",
            "[alb]\nrule_arn = \"arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/other/1/2/3\"",
            "alb.rule_arn",
            "does not belong",
        );
        check_err("[service]", "[service", "line 2", "");
    }

    #[test]
    fn rollback_errors_name_the_key() {
        let r = |extra: &str| ("max_error_rate = 0.001", format!("max_error_rate = 0.001\n{extra}"));
        let metric = |extra: &str| {
            format!(
                "[[rollback.metrics]]\nnamespace = \"App\"\nname = \"QueueAge\"\nthreshold = 30\ndirection = \"above\"\n{extra}"
            )
        };
        let cases: Vec<(String, &str, &str)> = vec![
            ("confidence = 0.3".into(), "rollback.confidence", "outside [0.5, 1)"),
            ("confidence = 1.0".into(), "rollback.confidence", "outside [0.5, 1)"),
            (
                "max_error_rate_increase = 2".into(),
                "rollback.max_error_rate_increase",
                "outside [0, 1]",
            ),
            (
                "max_latency_ratio = 0.5".into(),
                "rollback.max_latency_ratio",
                "at least 1",
            ),
            (
                "critical_error_rate = 0.0005".into(),
                "rollback.critical_error_rate",
                "above max_error_rate",
            ),
            (
                "critical_min_requests = 500".into(),
                "rollback.critical_min_requests",
                "between 1 and min_requests",
            ),
            (
                "on_shared_failure = \"ignore\"".into(),
                "rollback.on_shared_failure",
                "unknown variant",
            ),
            ("mode = \"dry-run\"".into(), "rollback.mode", "unknown variant"),
            (
                metric("direction2 = 1"),
                "rollback.metrics[0].direction2",
                "unknown field",
            ),
            (
                metric("statistic = \"median\""),
                "rollback.metrics[0].statistic",
                "not a statistic",
            ),
            (
                metric("unit = \"Parsecs\""),
                "rollback.metrics[0].unit",
                "not a CloudWatch unit",
            ),
            (
                metric("compare_with_live = true"),
                "rollback.metrics[0].compare_with_live",
                "{target_group}",
            ),
            (
                metric("max_ratio = 2"),
                "rollback.metrics[0].max_ratio",
                "needs compare_with_live",
            ),
            (
                metric("dimensions = { TargetGroup = \"{tg}\" }"),
                "rollback.metrics[0].dimensions.TargetGroup",
                "the only placeholders",
            ),
        ];
        for (extra, key, reason) in &cases {
            let (from, to) = r(extra);
            check_err(from, &to, key, reason);
        }
        let missing = GOOD.replacen(
            "max_error_rate = 0.001",
            "max_error_rate = 0.001\n[[rollback.metrics]]\nnamespace = \"App\"\nname = \"X\"\nthreshold = 1",
            1,
        );
        let e = parse(Path::new("plan.toml"), &missing).unwrap_err();
        assert!(e.reason.contains("missing field `direction`"), "{e}");
    }

    #[test]
    fn the_rollback_section_with_every_key() {
        let text = GOOD.replacen(
            "max_error_rate = 0.001",
            r#"max_error_rate = 0.001
confidence = 0.995
max_error_rate_increase = 0.002
max_latency_ratio = 1.5
on_shared_failure = "rollback"
critical_error_rate = 0.5
critical_min_requests = 20
mode = "advise"

[[rollback.metrics]]
namespace = "Checkout"
name = "QueueAge"
dimensions = { TargetGroup = "{target_group}", LoadBalancer = "{load_balancer}", Stage = "prod" }
statistic = "Maximum"
unit = "Seconds"
threshold = 30
direction = "above"
compare_with_live = true
max_ratio = 2"#,
            1,
        );
        let p = parse(Path::new("plan.toml"), &text).unwrap();
        let c = &p.rollback.criteria;
        assert_eq!(
            (
                c.confidence,
                c.max_error_rate_increase,
                c.max_latency_ratio,
                c.critical_min_requests
            ),
            (0.995, 0.002, Some(1.5), 20)
        );
        assert_eq!(
            (c.on_shared_failure, c.critical_error_rate, c.mode),
            (OnShared::Rollback, Some(0.5), Mode::Advise)
        );
        assert_eq!(c.metrics[0].direction, Direction::Above);
        let m = &p.rollback.metrics[0];
        assert_eq!(
            m.dimensions_for("app/lb/1", "targetgroup/g/2"),
            [
                ("LoadBalancer".to_string(), "app/lb/1".to_string()),
                ("Stage".into(), "prod".into()),
                ("TargetGroup".into(), "targetgroup/g/2".into())
            ]
        );
        // The defaults.
        let d = parse(Path::new("plan.toml"), GOOD).unwrap().rollback.criteria;
        assert_eq!(
            (
                d.confidence,
                d.max_error_rate_increase,
                d.max_latency_ratio,
                d.critical_error_rate
            ),
            (0.99, 0.005, None, None)
        );
        assert_eq!(
            (d.critical_min_requests, d.on_shared_failure, d.mode),
            (10, OnShared::Hold, Mode::Auto)
        );
    }

    #[test]
    fn step_errors_name_the_key() {
        let with_step = |step: &str| GOOD.replacen("[[steps]]", &format!("{step}\n\n[[steps]]"), 1);
        let cases: &[(&str, &str, &str)] = &[
            ("[[steps]]\naction = \"deploy\"", "steps[0].run", "missing"),
            ("[[steps]]\naction = \"deploy\"\nrun = []", "steps[0].run", "non-empty"),
            (
                "[[steps]]\naction = \"migrate\"\nrun = [\"m\"]\ntimeout = \"never\"",
                "steps[0].timeout",
                "not a duration",
            ),
            (
                "[[steps]]\naction = \"verify\"\nchecks = [{ http = \"ftp://x\" }]",
                "steps[0].checks[0].http",
                "not an http",
            ),
            (
                "[[steps]]\naction = \"verify\"\nchecks = [{ }]",
                "steps[0].checks[0]",
                "needs http",
            ),
            (
                "[[steps]]\naction = \"verify\"\nchecks = [{ http = \"http://x\", expect_status = 999 }]",
                "steps[0].checks[0].expect_status",
                "not an HTTP status",
            ),
            (
                "[[steps]]\naction = \"verify\"\nweight = 3",
                "steps[0].weight",
                "not a key of a verify step",
            ),
            (
                "[[steps]]\naction = \"deploy\"\nrun = [\"d\"]\nbake = \"1m\"",
                "steps[0].bake",
                "not a key of a deploy step",
            ),
        ];
        for (step, key, reason) in cases {
            let e = parse(Path::new("plan.toml"), &with_step(step)).expect_err(step);
            assert_eq!(&e.key, key, "{step}: {e}");
            assert!(e.reason.contains(reason), "{step}: {e}");
        }
    }

    #[test]
    fn no_steps_means_the_runbook_plan() {
        let text = GOOD.split("[[steps]]").next().unwrap();
        let p = parse(Path::new("plan.toml"), text).unwrap();
        let labels: Vec<_> = p.steps.iter().map(Step::label).collect();
        assert_eq!(labels, ["verify", "shift 50%", "shift 100%", "observe"]);
    }

    #[test]
    fn every_example_plan_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected example plans in {}", dir.display());
    }
}
