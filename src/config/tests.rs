//! Unit tests of plan validation: one case per error, each naming its key.
//! `bounds.rs` checks both ends of every range, `positions.rs` the line and key of errors
//! toml finds in the text, `environment.rs` the `[environment]` table and `stall_timeout`.

mod bounds;
mod environment;
mod gates;
mod positions;

use super::*;
use crate::judge::{Direction, Mode, OnShared};

pub(super) const GOOD: &str = r#"
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
        "1.5 is above the maximum 1 (allowed 0–1)",
    );
    check_err(
        "max_error_rate = 0.001",
        "max_error_rate = -0.1",
        "rollback.max_error_rate",
        "-0.1 is below the minimum 0 (allowed 0–1)",
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
    check_err(
        "weight = 50",
        "weight = 0",
        "steps[0].weight",
        "0 is below the minimum 0.1 (allowed 0.1–100)",
    );
    check_err(
        "weight = 50",
        "weight = 150",
        "steps[0].weight",
        "150 is above the maximum 100 (allowed 0.1–100)",
    );
    check_err("weight = 50", "weight = 12.34", "steps[0].weight", "multiple of 0.1");
    check_err(
        "weight = 50",
        "weight = 50\nwieght = 3",
        "steps[0].wieght",
        "unknown field `wieght`",
    );
    check_err(
        "bake = \"10m\"",
        "bake = \"0s\"",
        "steps[0].bake",
        "\"0s\" is below the minimum 1s (allowed 1s–7d)",
    );
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
        "\"0s\" is below the minimum 1s (allowed 1s–1h)",
    );
    check_err(
        "max_error_rate = 0.001",
        "max_error_rate = 0.001\nfailures_to_rollback = 0",
        "rollback.failures_to_rollback",
        "0 is below the minimum 1 (allowed 1–100)",
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
    // The unclosed header names its table now, and the line (positions.rs checks the message).
    check_err("[service]", "[service", "service", "unclosed table");
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
        (
            "confidence = 0.3".into(),
            "rollback.confidence",
            "0.3 is below the minimum 0.5 (allowed 0.5–0.9999)",
        ),
        (
            "confidence = 1.0".into(),
            "rollback.confidence",
            "1 is above the maximum 0.9999 (allowed 0.5–0.9999)",
        ),
        (
            "max_error_rate_increase = 2".into(),
            "rollback.max_error_rate_increase",
            "2 is above the maximum 1 (allowed 0–1)",
        ),
        (
            "max_latency_ratio = 0.5".into(),
            "rollback.max_latency_ratio",
            "0.5 is below the minimum 1 (allowed 1–100)",
        ),
        (
            "critical_error_rate = 0.0005".into(),
            "rollback.critical_error_rate",
            "above max_error_rate",
        ),
        (
            "critical_min_requests = 500".into(),
            "rollback.critical_min_requests",
            "500 is above the maximum 100 (allowed 1–100): at most rollback.min_requests",
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
            "999 is above the maximum 599 (allowed 100–599): an HTTP status",
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

/// `config/example.toml` says it shows every key with its default: the keys it sets mean
/// the same as leaving them out (`config/minimal.toml` leaves them out).
#[test]
fn the_example_plan_shows_the_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let example = load(&dir.join("example.toml")).unwrap();
    let minimal = load(&dir.join("minimal.toml")).unwrap();
    let (a, b) = (&example.alb, &minimal.alb);
    assert_eq!(
        (a.min_healthy_targets, a.verify_timeout),
        (b.min_healthy_targets, b.verify_timeout)
    );
    let (a, b) = (&example.metrics, &minimal.metrics);
    assert_eq!(
        (&a.namespace, a.period, a.settle, a.poll_interval, &a.latency_statistic),
        (&b.namespace, b.period, b.settle, b.poll_interval, &b.latency_statistic)
    );
    let (a, b) = (&example.rollback, &minimal.rollback);
    assert_eq!(a.stall_timeout, b.stall_timeout);
    assert_eq!(a.alarms, b.alarms);
    assert_eq!(
        (&a.gradual, a.gradual_pause, a.on_orphan),
        (&b.gradual, b.gradual_pause, b.on_orphan)
    );
    assert_eq!((&example.hooks, example.deadline), (&minimal.hooks, minimal.deadline));
    let (a, b) = (&a.criteria, &b.criteria);
    assert_eq!(
        (
            a.max_error_rate_increase,
            a.confidence,
            a.min_requests,
            a.failures_to_rollback,
            a.critical_min_requests
        ),
        (
            b.max_error_rate_increase,
            b.confidence,
            b.min_requests,
            b.failures_to_rollback,
            b.critical_min_requests
        )
    );
    assert_eq!(
        (
            a.on_no_data,
            a.on_shared_failure,
            a.mode,
            a.critical_error_rate,
            a.max_latency_ratio
        ),
        (
            b.on_no_data,
            b.on_shared_failure,
            b.mode,
            b.critical_error_rate,
            b.max_latency_ratio
        )
    );
    assert_eq!(example.environment, minimal.environment);
    assert_eq!(example.environment, Environment::default());
}

/// Issue 11: `config/runbook.toml` is the seed runbook as a plan (verify, deploy, migrate with
/// its backward script, Go/No-Go, 50 %, 100 %, observe, Go/No-Go), with people told and hooks.
#[test]
fn the_runbook_plan_is_the_release_runbook() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let p = load(&dir.join("runbook.toml")).unwrap_or_else(|e| panic!("{e}"));
    let labels: Vec<_> = p.steps.iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "verify",
            "deploy",
            "migrate",
            "approve",
            "shift 50%",
            "shift 100%",
            "observe",
            "approve"
        ]
    );
    assert!(p.steps[2].undo().is_some(), "the migration has its backward script");
    assert!(
        matches!(&p.steps[3], Step::Approve { require_other: true, approvers, .. } if !approvers.is_empty()),
        "the gate before the switch names its decision authority"
    );
    assert_eq!(p.notify.len(), 3, "Slack, PagerDuty and a webhook");
    assert!(p.deadline.is_some() && !p.hooks.is_empty() && !p.rollback.gradual.is_empty());
    // Every command it runs exists and is executable, so it can be tried as it is.
    let commands = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Deploy { command, .. } | Step::Migrate { command } => Some(command.clone()),
            _ => None,
        })
        .flat_map(|c| [Some(c.run), c.undo].into_iter().flatten());
    for argv in commands {
        let path = dir.join(&argv[0]);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert!(mode & 0o111 != 0, "{} is not executable", path.display());
    }
}
