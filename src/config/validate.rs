//! Validation: raw values checked one by one into a [`Plan`], each error naming the file,
//! the dotted key and the reason. Defaults live here and only here (`[[steps]]` in
//! [`steps`], beside it); the allowed ranges live in [`super::bounds`], and every one is
//! checked by [`Validator::within`].

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use super::bounds::{self, Durations, Limits};
use super::raw::*;
use super::*;
use crate::judge::{MetricCriterion, Mode, NoData, OnShared};

mod steps;

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

/// Builds every error of validation; holds the one range check.
pub(super) struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    pub(super) fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            key: key.into(),
            line: None,
            reason: reason.into(),
        }
    }

    /// The plan's one range check: `value` (as the plan wrote it, `written`) inside `limits`
    /// (a [`bounds::Range`], or a duration's [`Durations`]), or an error naming the key, the
    /// value and the allowed range: `"1ns" is below the minimum 1s (allowed 1s–10m)`.
    pub(super) fn within<T: Copy>(
        &self,
        key: &str,
        value: T,
        written: impl Display,
        limits: &impl Limits<T>,
    ) -> Result<T, PlanError> {
        match limits.check(&written.to_string(), value) {
            None => Ok(value),
            Some(why) => Err(self.err(key, why)),
        }
    }

    /// A duration key: the value or its default, parsed, then [`Self::within`] its bounds.
    pub(super) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Option<&str>,
        bounds: &Durations,
    ) -> Result<Duration, PlanError> {
        let Some(s) = value.or(default) else {
            return Err(self.err(key, "missing: a duration such as \"30s\" or \"5m\" is required"));
        };
        let d = humantime::parse_duration(s).map_err(|e| {
            self.err(
                key,
                format!("{s:?} is not a duration ({e}); write e.g. \"30s\", \"5m\""),
            )
        })?;
        self.within(key, d, format_args!("{s:?}"), bounds)
    }

    pub(super) fn argv(&self, key: &str, argv: Vec<String>) -> Result<Vec<String>, PlanError> {
        if argv.first().is_none_or(|a| a.is_empty()) {
            return Err(self.err(key, "must be a non-empty list: the program, then its arguments"));
        }
        Ok(argv)
    }

    pub(super) fn forbid(&self, key: String, present: bool, action: &str) -> Result<(), PlanError> {
        if present {
            return Err(self.err(key, format!("not a key of a {action} step")));
        }
        Ok(())
    }
}

/// Checks every value of a raw plan and builds the [`Plan`].
pub(super) fn plan(path: &Path, raw: RawPlan) -> Result<Plan, PlanError> {
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
        min_healthy_targets: {
            let n = a.min_healthy_targets.unwrap_or(1);
            v.within("alb.min_healthy_targets", n, n, &bounds::MIN_HEALTHY_TARGETS)? as u32
        },
        verify_timeout: v.duration(
            "alb.verify_timeout",
            a.verify_timeout.as_deref(),
            Some("30s"),
            &bounds::VERIFY_TIMEOUT,
        )?,
    };

    // Metrics.
    let m = raw.metrics;
    let period = v.duration("metrics.period", m.period.as_deref(), Some("60s"), &bounds::PERIOD)?;
    let secs = period.as_secs();
    if !(matches!(secs, 1 | 5 | 10 | 20 | 30) || secs.is_multiple_of(60)) {
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
        settle: v.duration("metrics.settle", m.settle.as_deref(), Some("120s"), &bounds::SETTLE)?,
        poll_interval: v.duration(
            "metrics.poll_interval",
            m.poll_interval.as_deref(),
            Some("15s"),
            &bounds::POLL_INTERVAL,
        )?,
        latency_statistic,
    };

    // Rollback criteria.
    let r = raw.rollback;
    let max_error_rate = r.max_error_rate;
    v.within(
        "rollback.max_error_rate",
        max_error_rate,
        max_error_rate,
        &bounds::MAX_ERROR_RATE,
    )?;
    let max_latency = match r.max_latency.as_deref() {
        Some(s) => Some(v.duration("rollback.max_latency", Some(s), None, &bounds::MAX_LATENCY)?),
        None => None,
    };
    let failures_to_rollback = r.failures_to_rollback.unwrap_or(2);
    v.within(
        "rollback.failures_to_rollback",
        failures_to_rollback,
        failures_to_rollback,
        &bounds::FAILURES_TO_ROLLBACK,
    )?;
    let min_requests = r.min_requests.unwrap_or(100);
    v.within(
        "rollback.min_requests",
        min_requests,
        min_requests,
        &bounds::MIN_REQUESTS,
    )?;
    if let Some(i) = r.alarms.iter().position(|n| n.trim().is_empty()) {
        return Err(v.err(format!("rollback.alarms[{i}]"), "an alarm name must not be empty"));
    }
    let confidence = r.confidence.unwrap_or(0.99);
    v.within("rollback.confidence", confidence, confidence, &bounds::CONFIDENCE)?;
    let max_error_rate_increase = r.max_error_rate_increase.unwrap_or(0.005);
    v.within(
        "rollback.max_error_rate_increase",
        max_error_rate_increase,
        max_error_rate_increase,
        &bounds::MAX_ERROR_RATE_INCREASE,
    )?;
    if let Some(x) = r.max_latency_ratio {
        v.within("rollback.max_latency_ratio", x, x, &bounds::MAX_LATENCY_RATIO)?;
    }
    if let Some(x) = r.critical_error_rate {
        v.within("rollback.critical_error_rate", x, x, &bounds::CRITICAL_ERROR_RATE)?;
        if x <= max_error_rate {
            return Err(v.err(
                "rollback.critical_error_rate",
                format!("{x} is not above max_error_rate {max_error_rate}: the fast path is for error rates far above it (0.5 is a good value)"),
            ));
        }
    }
    let critical_min_requests = r.critical_min_requests.unwrap_or(10.min(min_requests));
    v.within(
        "rollback.critical_min_requests",
        critical_min_requests,
        critical_min_requests,
        &bounds::critical_min_requests(min_requests),
    )?;
    let stall_timeout = stall_timeout(&v, r.stall_timeout.as_deref(), &metrics)?;
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
            max_error_rate,
            max_latency: max_latency.map(|d| d.as_secs_f64()),
            // In range (checked above), so these fit.
            min_requests: min_requests as u64,
            failures_to_rollback: failures_to_rollback as u32,
            on_no_data: r.on_no_data.unwrap_or(NoData::Hold),
            confidence,
            max_error_rate_increase,
            max_latency_ratio: r.max_latency_ratio,
            on_shared_failure: r.on_shared_failure.unwrap_or(OnShared::Hold),
            critical_error_rate: r.critical_error_rate,
            critical_min_requests: critical_min_requests as u64,
            metrics: metric_criteria,
            mode: r.mode.unwrap_or(Mode::Auto),
        },
        alarms: r.alarms,
        metrics: custom_metrics,
        stall_timeout,
        on_orphan: r.on_orphan.unwrap_or_default(),
        gradual: gradual(&v, r.gradual)?,
        gradual_pause: v.duration(
            "rollback.gradual_pause",
            r.gradual_pause.as_deref(),
            Some("30s"),
            &bounds::GRADUAL_PAUSE,
        )?,
    };
    let environment = environment(&v, raw.environment)?;
    let notify = super::notify::entries(&v, raw.notify, path.parent().unwrap_or(Path::new(".")))?;

    let steps = steps::steps(&v, raw.steps)?;
    let hooks = steps::hooks(&v, raw.hooks)?;
    let deadline = match raw.deadline.as_deref() {
        Some(d) => Some(v.duration("deadline", Some(d), None, &bounds::DEADLINE)?),
        None => None,
    };

    Ok(Plan {
        path: path.to_path_buf(),
        service,
        alb,
        metrics,
        rollback,
        steps,
        environment,
        hooks,
        deadline,
        notify,
        source: String::new(),
    })
}

/// `rollback.gradual`: the new colour's share on the way back, decreasing, ending at 0, each in
/// steps of 0.1 below 100. In tenths of a percent. Absent or `[]`: all at once.
fn gradual(v: &Validator, raw: Option<Vec<f64>>) -> Result<Vec<u32>, PlanError> {
    let steps = raw.unwrap_or_default();
    if steps.is_empty() {
        return Ok(vec![]);
    }
    let mut out: Vec<u32> = vec![];
    for (i, w) in steps.iter().enumerate() {
        let key = format!("rollback.gradual[{i}]");
        v.within(&key, *w, *w, &bounds::GRADUAL_STEP)?;
        let permille = (w * 10.0).round();
        if (permille - w * 10.0).abs() > 1e-6 {
            return Err(v.err(
                key,
                format!("{w} has more precision than ALB weights allow: use a multiple of 0.1"),
            ));
        }
        let permille = permille as u32;
        if out.last().is_some_and(|&prev| permille >= prev) {
            return Err(v.err(
                key,
                format!("{w} does not decrease on the step before it: a gradual rollback only goes down"),
            ));
        }
        out.push(permille);
    }
    if out.last() != Some(&0) {
        return Err(v.err("rollback.gradual", "must end at 0: all traffic back on the live colour"));
    }
    Ok(out)
}

/// `rollback.stall_timeout`: "off", a duration within its bounds and longer than the first
/// verdict of a bake can take, or by default 10m (longer when the periods are: see
/// [`bounds::stall_floor`]), so that a plan with long periods never stalls by default.
fn stall_timeout(v: &Validator, value: Option<&str>, m: &MetricsConfig) -> Result<Option<Duration>, PlanError> {
    const KEY: &str = "rollback.stall_timeout";
    let floor = bounds::stall_floor(m.period, m.settle, m.poll_interval);
    let Some(s) = value else {
        return Ok(Some(bounds::STALL_TIMEOUT_DEFAULT.max(floor)));
    };
    if s == "off" {
        return Ok(None);
    }
    if humantime::parse_duration(s).is_err() {
        return Err(v.err(KEY, format!("{s:?} is neither a duration (e.g. \"10m\") nor \"off\"")));
    }
    let d = v.duration(KEY, Some(s), None, &bounds::STALL_TIMEOUT)?;
    if d < floor {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        return Err(v.err(
            KEY,
            format!(
                "{s:?} is shorter than a healthy bake can take to judge its first period \
                 (2 × metrics.period {} + metrics.settle {} + metrics.poll_interval {} = {}): \
                 use at least that, or \"off\"",
                show(m.period),
                show(m.settle),
                show(m.poll_interval),
                show(floor)
            ),
        ));
    }
    Ok(Some(d))
}

/// `[environment]`: `pass` only with `clean = true`, and only names of variables that a
/// command would not get anyway.
fn environment(v: &Validator, e: RawEnvironment) -> Result<Environment, PlanError> {
    let pass = match e.pass {
        None => Vec::new(),
        Some(_) if !e.clean => {
            return Err(v.err(
                "environment.pass",
                "needs clean = true: without it commands inherit all of cutover's environment, so pass would mean nothing",
            ));
        }
        Some(pass) => pass,
    };
    for (i, name) in pass.iter().enumerate() {
        let key = format!("environment.pass[{i}]");
        let mut chars = name.chars();
        let is_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            return Err(v.err(
                key,
                format!("{name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if name == "CUTOVER_TOKEN" {
            return Err(v.err(
                key,
                "CUTOVER_TOKEN is never passed: the daemon's API token is removed from every command's environment",
            ));
        }
        if name.starts_with("CUTOVER_") {
            return Err(v.err(
                key,
                format!("{name}: the CUTOVER_* variables are always set, list only others"),
            ));
        }
    }
    Ok(Environment { clean: e.clean, pass })
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
    // Any finite number: a metric's unit is the user's, so no range fits them all.
    if !m.threshold.is_finite() {
        return Err(v.err(k("threshold"), format!("{} is not a finite number", m.threshold)));
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
        v.within(&k("max_ratio"), x, x, &bounds::MAX_RATIO)?;
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
