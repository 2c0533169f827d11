//! Validation: raw values checked one by one into a [`Plan`], each error naming the file,
//! the dotted key and the reason. Defaults live here and only here.

use std::path::Path;
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::judge::{MetricCriterion, Mode, NoData, OnShared};

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

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            key: key.into(),
            line: None,
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
