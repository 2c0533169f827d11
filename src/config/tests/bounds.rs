//! Both ends of every numeric and duration key's range, one row per value: the value just
//! inside each end is accepted, the value just outside is refused with its exact message.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::parse;

/// A plan with every bounded key set, as `(table, [(key, value)])`; a table whose path ends
/// in `[n]` is an array of tables (`[[steps.checks]]`). The periods are short, so that any
/// `stall_timeout` in its range is longer than the first verdict can take, and stalling is
/// off, so that a long period is not refused for the stall timeout's sake.
const BASE: &[(&str, &[(&str, &str)])] = &[
    ("service", &[("name", r#""checkout""#)]),
    (
        "alb",
        &[
            (
                "listener_arn",
                r#""arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2""#,
            ),
            (
                "blue_target_group_arn",
                r#""arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-blue/73e2d6bc24d8a067""#,
            ),
            (
                "green_target_group_arn",
                r#""arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-green/2453ed029918f21f""#,
            ),
            ("min_healthy_targets", "1"),
            ("verify_timeout", r#""30s""#),
        ],
    ),
    (
        "metrics",
        &[
            ("period", r#""1s""#),
            ("settle", r#""1s""#),
            ("poll_interval", r#""1s""#),
        ],
    ),
    (
        "rollback",
        &[
            ("max_error_rate", "0.001"),
            ("max_error_rate_increase", "0.005"),
            ("confidence", "0.99"),
            ("max_latency", r#""200ms""#),
            ("max_latency_ratio", "1.5"),
            ("min_requests", "100"),
            ("failures_to_rollback", "2"),
            ("stall_timeout", r#""off""#),
        ],
    ),
    (
        "rollback.metrics[0]",
        &[
            ("namespace", r#""App""#),
            ("name", r#""QueueAge""#),
            ("dimensions", r#"{ TargetGroup = "{target_group}" }"#),
            ("threshold", "30"),
            ("direction", r#""above""#),
            ("compare_with_live", "true"),
            ("max_ratio", "2"),
        ],
    ),
    ("steps[0]", &[("action", r#""verify""#)]),
    (
        "steps[0].checks[0]",
        &[
            ("http", r#""http://127.0.0.1:8080/health""#),
            ("expect_status", "200"),
            ("timeout", r#""10s""#),
        ],
    ),
    (
        "steps[0].checks[1]",
        &[("command", r#"["./smoke.sh"]"#), ("timeout", r#""60s""#)],
    ),
    (
        "steps[1]",
        &[
            ("action", r#""deploy""#),
            ("run", r#"["./deploy.sh"]"#),
            ("timeout", r#""15m""#),
            ("healthy_timeout", r#""5m""#),
        ],
    ),
    (
        "steps[2]",
        &[
            ("action", r#""migrate""#),
            ("run", r#"["./migrate.sh"]"#),
            ("timeout", r#""10m""#),
        ],
    ),
    (
        "steps[3]",
        &[("action", r#""shift""#), ("weight", "50"), ("bake", r#""10m""#)],
    ),
    (
        "steps[4]",
        &[("action", r#""shift""#), ("weight", "100"), ("bake", r#""5m""#)],
    ),
    ("steps[5]", &[("action", r#""observe""#), ("duration", r#""30m""#)]),
];

/// The base plan with `key` (a dotted path, `steps[1].timeout`) set to `value`.
fn plan_with(key: &str, value: &str) -> String {
    let (table, name) = key.rsplit_once('.').expect("a key in a table");
    assert!(
        BASE.iter().any(|(t, _)| *t == table),
        "test bug: no table {table} in the base plan"
    );
    let mut text = String::new();
    for (path, keys) in BASE {
        let header: String = path
            .split('.')
            .map(|p| p.split('[').next().unwrap())
            .collect::<Vec<_>>()
            .join(".");
        if path.ends_with(']') {
            text.push_str(&format!("[[{header}]]\n"));
        } else {
            text.push_str(&format!("[{header}]\n"));
        }
        let mut set = false;
        for (k, v) in *keys {
            let v = if *path == table && *k == name {
                set = true;
                value
            } else {
                v
            };
            text.push_str(&format!("{k} = {v}\n"));
        }
        if *path == table && !set {
            text.push_str(&format!("{name} = {value}\n"));
        }
        text.push('\n');
    }
    text
}

/// `(key, value, reason)`: the plan with `key = value` is accepted when `reason` is empty,
/// and otherwise refused with exactly `plan.toml: KEY: REASON`.
const ROWS: &[(&str, &str, &str)] = &[
    // [alb]
    ("alb.min_healthy_targets", "1", ""),
    ("alb.min_healthy_targets", "1000", ""),
    (
        "alb.min_healthy_targets",
        "0",
        "0 is below the minimum 1 (allowed 1–1000)",
    ),
    (
        "alb.min_healthy_targets",
        "-1",
        "-1 is below the minimum 1 (allowed 1–1000)",
    ),
    (
        "alb.min_healthy_targets",
        "1001",
        "1001 is above the maximum 1000 (allowed 1–1000)",
    ),
    ("alb.verify_timeout", r#""1s""#, ""),
    ("alb.verify_timeout", r#""10m""#, ""),
    (
        "alb.verify_timeout",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–10m)"#,
    ),
    (
        "alb.verify_timeout",
        r#""10m 1ms""#,
        r#""10m 1ms" is above the maximum 10m (allowed 1s–10m)"#,
    ),
    (
        "alb.verify_timeout",
        r#""1s 500us""#,
        r#""1s 500us" is not a whole number of milliseconds (allowed 1s–10m in whole milliseconds)"#,
    ),
    // [metrics]
    ("metrics.period", r#""1s""#, ""),
    ("metrics.period", r#""24h""#, ""),
    (
        "metrics.period",
        r#""500ms""#,
        r#""500ms" is below the minimum 1s (allowed 1s–24h)"#,
    ),
    (
        "metrics.period",
        r#""25h""#,
        r#""25h" is above the maximum 24h (allowed 1s–24h)"#,
    ),
    (
        "metrics.period",
        r#""1500ms""#,
        r#""1500ms" is not a whole number of seconds (allowed 1s–24h in whole seconds)"#,
    ),
    ("metrics.settle", r#""1s""#, ""),
    ("metrics.settle", r#""1h""#, ""),
    (
        "metrics.settle",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–1h)"#,
    ),
    (
        "metrics.settle",
        r#""1h 1s""#,
        r#""1h 1s" is above the maximum 1h (allowed 1s–1h)"#,
    ),
    (
        "metrics.settle",
        r#""1500ms""#,
        r#""1500ms" is not a whole number of seconds (allowed 1s–1h in whole seconds)"#,
    ),
    ("metrics.poll_interval", r#""1s""#, ""),
    ("metrics.poll_interval", r#""10m""#, ""),
    (
        "metrics.poll_interval",
        r#""1ns""#,
        r#""1ns" is below the minimum 1s (allowed 1s–10m)"#,
    ),
    (
        "metrics.poll_interval",
        r#""601s""#,
        r#""601s" is above the maximum 10m (allowed 1s–10m)"#,
    ),
    (
        "metrics.poll_interval",
        r#""1500ms""#,
        r#""1500ms" is not a whole number of seconds (allowed 1s–10m in whole seconds)"#,
    ),
    // [rollback]
    ("rollback.max_error_rate", "0", ""),
    ("rollback.max_error_rate", "1", ""),
    (
        "rollback.max_error_rate",
        "-0.1",
        "-0.1 is below the minimum 0 (allowed 0–1): a fraction, 0.001 means 0.1 %",
    ),
    (
        "rollback.max_error_rate",
        "1.1",
        "1.1 is above the maximum 1 (allowed 0–1): a fraction, 0.001 means 0.1 %",
    ),
    (
        "rollback.max_error_rate",
        "nan",
        "NaN is not a number (allowed 0–1): a fraction, 0.001 means 0.1 %",
    ),
    ("rollback.max_error_rate_increase", "0", ""),
    ("rollback.max_error_rate_increase", "1", ""),
    (
        "rollback.max_error_rate_increase",
        "-0.01",
        "-0.01 is below the minimum 0 (allowed 0–1): a fraction, 0.005 means +0.5 percentage points",
    ),
    (
        "rollback.max_error_rate_increase",
        "1.5",
        "1.5 is above the maximum 1 (allowed 0–1): a fraction, 0.005 means +0.5 percentage points",
    ),
    ("rollback.confidence", "0.5", ""),
    ("rollback.confidence", "0.9999", ""),
    (
        "rollback.confidence",
        "0.49",
        "0.49 is below the minimum 0.5 (allowed 0.5–0.9999): a fraction, 0.99 means 99 %",
    ),
    (
        "rollback.confidence",
        "0.99995",
        "0.99995 is above the maximum 0.9999 (allowed 0.5–0.9999): a fraction, 0.99 means 99 %",
    ),
    ("rollback.max_latency", r#""1ms""#, ""),
    ("rollback.max_latency", r#""10m""#, ""),
    (
        "rollback.max_latency",
        r#""999us""#,
        r#""999us" is below the minimum 1ms (allowed 1ms–10m)"#,
    ),
    (
        "rollback.max_latency",
        r#""10m 1ms""#,
        r#""10m 1ms" is above the maximum 10m (allowed 1ms–10m)"#,
    ),
    (
        "rollback.max_latency",
        r#""1ms 500us""#,
        r#""1ms 500us" is not a whole number of milliseconds (allowed 1ms–10m in whole milliseconds)"#,
    ),
    ("rollback.max_latency_ratio", "1", ""),
    ("rollback.max_latency_ratio", "100", ""),
    (
        "rollback.max_latency_ratio",
        "0.99",
        "0.99 is below the minimum 1 (allowed 1–100): 1.5 fails latency 50 % above the live colour's",
    ),
    (
        "rollback.max_latency_ratio",
        "100.5",
        "100.5 is above the maximum 100 (allowed 1–100): 1.5 fails latency 50 % above the live colour's",
    ),
    ("rollback.min_requests", "1", ""),
    ("rollback.min_requests", "1000000", ""),
    (
        "rollback.min_requests",
        "0",
        "0 is below the minimum 1 (allowed 1–1000000)",
    ),
    (
        "rollback.min_requests",
        "1000001",
        "1000001 is above the maximum 1000000 (allowed 1–1000000)",
    ),
    (
        "rollback.min_requests",
        "9223372036854775807",
        "9223372036854775807 is above the maximum 1000000 (allowed 1–1000000)",
    ),
    ("rollback.failures_to_rollback", "1", ""),
    ("rollback.failures_to_rollback", "100", ""),
    (
        "rollback.failures_to_rollback",
        "0",
        "0 is below the minimum 1 (allowed 1–100)",
    ),
    (
        "rollback.failures_to_rollback",
        "101",
        "101 is above the maximum 100 (allowed 1–100)",
    ),
    (
        "rollback.failures_to_rollback",
        "4294967295",
        "4294967295 is above the maximum 100 (allowed 1–100)",
    ),
    // Above max_error_rate (0.001 in the base plan), and at most 1.
    ("rollback.critical_error_rate", "0.0011", ""),
    ("rollback.critical_error_rate", "1", ""),
    (
        "rollback.critical_error_rate",
        "0.001",
        "0.001 is not above max_error_rate 0.001: the fast path is for error rates far above it (0.5 is a good value)",
    ),
    (
        "rollback.critical_error_rate",
        "-0.5",
        "-0.5 is below the minimum 0 (allowed 0–1): a fraction, 0.5 means 50 %",
    ),
    (
        "rollback.critical_error_rate",
        "1.01",
        "1.01 is above the maximum 1 (allowed 0–1): a fraction, 0.5 means 50 %",
    ),
    // At most min_requests (100 in the base plan).
    ("rollback.critical_min_requests", "1", ""),
    ("rollback.critical_min_requests", "100", ""),
    (
        "rollback.critical_min_requests",
        "0",
        "0 is below the minimum 1 (allowed 1–100): at most rollback.min_requests",
    ),
    (
        "rollback.critical_min_requests",
        "101",
        "101 is above the maximum 100 (allowed 1–100): at most rollback.min_requests",
    ),
    ("rollback.stall_timeout", r#""1m""#, ""),
    ("rollback.stall_timeout", r#""24h""#, ""),
    ("rollback.stall_timeout", r#""off""#, ""),
    (
        "rollback.stall_timeout",
        r#""59s""#,
        r#""59s" is below the minimum 1m (allowed 1m–24h)"#,
    ),
    (
        "rollback.stall_timeout",
        r#""24h 1s""#,
        r#""24h 1s" is above the maximum 24h (allowed 1m–24h)"#,
    ),
    (
        "rollback.stall_timeout",
        r#""90500ms""#,
        r#""90500ms" is not a whole number of seconds (allowed 1m–24h in whole seconds)"#,
    ),
    ("rollback.metrics[0].max_ratio", "1", ""),
    ("rollback.metrics[0].max_ratio", "1000", ""),
    (
        "rollback.metrics[0].max_ratio",
        "0.5",
        "0.5 is below the minimum 1 (allowed 1–1000)",
    ),
    (
        "rollback.metrics[0].max_ratio",
        "1000.5",
        "1000.5 is above the maximum 1000 (allowed 1–1000)",
    ),
    // Any finite number: the metric's unit is the user's.
    ("rollback.metrics[0].threshold", "-1e300", ""),
    ("rollback.metrics[0].threshold", "1e300", ""),
    ("rollback.metrics[0].threshold", "-inf", "-inf is not a finite number"),
    ("rollback.metrics[0].threshold", "inf", "inf is not a finite number"),
    ("rollback.metrics[0].threshold", "nan", "NaN is not a finite number"),
    // [[steps]]: verify checks.
    ("steps[0].checks[0].timeout", r#""1s""#, ""),
    ("steps[0].checks[0].timeout", r#""1h""#, ""),
    (
        "steps[0].checks[0].timeout",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–1h)"#,
    ),
    (
        "steps[0].checks[0].timeout",
        r#""1h 1ms""#,
        r#""1h 1ms" is above the maximum 1h (allowed 1s–1h)"#,
    ),
    (
        "steps[0].checks[0].timeout",
        r#""1s 1us""#,
        r#""1s 1us" is not a whole number of milliseconds (allowed 1s–1h in whole milliseconds)"#,
    ),
    ("steps[0].checks[0].expect_status", "100", ""),
    ("steps[0].checks[0].expect_status", "599", ""),
    (
        "steps[0].checks[0].expect_status",
        "99",
        "99 is below the minimum 100 (allowed 100–599): an HTTP status",
    ),
    (
        "steps[0].checks[0].expect_status",
        "600",
        "600 is above the maximum 599 (allowed 100–599): an HTTP status",
    ),
    ("steps[0].checks[1].timeout", r#""1s""#, ""),
    ("steps[0].checks[1].timeout", r#""1h""#, ""),
    (
        "steps[0].checks[1].timeout",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–1h)"#,
    ),
    (
        "steps[0].checks[1].timeout",
        r#""61m""#,
        r#""61m" is above the maximum 1h (allowed 1s–1h)"#,
    ),
    // deploy and migrate.
    ("steps[1].timeout", r#""1s""#, ""),
    ("steps[1].timeout", r#""24h""#, ""),
    (
        "steps[1].timeout",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–24h)"#,
    ),
    (
        "steps[1].timeout",
        r#""24h 1ms""#,
        r#""24h 1ms" is above the maximum 24h (allowed 1s–24h)"#,
    ),
    (
        "steps[1].timeout",
        r#""1s 1ns""#,
        r#""1s 1ns" is not a whole number of milliseconds (allowed 1s–24h in whole milliseconds)"#,
    ),
    ("steps[1].healthy_timeout", r#""1s""#, ""),
    ("steps[1].healthy_timeout", r#""24h""#, ""),
    (
        "steps[1].healthy_timeout",
        r#""0s""#,
        r#""0s" is below the minimum 1s (allowed 1s–24h)"#,
    ),
    (
        "steps[1].healthy_timeout",
        r#""2d""#,
        r#""2d" is above the maximum 24h (allowed 1s–24h)"#,
    ),
    ("steps[2].timeout", r#""1s""#, ""),
    ("steps[2].timeout", r#""24h""#, ""),
    (
        "steps[2].timeout",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–24h)"#,
    ),
    (
        "steps[2].timeout",
        r#""25h""#,
        r#""25h" is above the maximum 24h (allowed 1s–24h)"#,
    ),
    // shift and observe. The first shift's weight is below the second's (100).
    ("steps[3].weight", "0.1", ""),
    (
        "steps[3].weight",
        "0.05",
        "0.05 is below the minimum 0.1 (allowed 0.1–100): percent of traffic on the new colour",
    ),
    ("steps[4].weight", "100", ""),
    (
        "steps[4].weight",
        "100.1",
        "100.1 is above the maximum 100 (allowed 0.1–100): percent of traffic on the new colour",
    ),
    ("steps[3].bake", r#""1s""#, ""),
    ("steps[3].bake", r#""7d""#, ""),
    (
        "steps[3].bake",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–7d)"#,
    ),
    (
        "steps[3].bake",
        r#""7d 1s""#,
        r#""7d 1s" is above the maximum 7d (allowed 1s–7d)"#,
    ),
    (
        "steps[3].bake",
        r#""100y""#,
        r#""100y" is above the maximum 7d (allowed 1s–7d)"#,
    ),
    (
        "steps[3].bake",
        r#""1500ms""#,
        r#""1500ms" is not a whole number of seconds (allowed 1s–7d in whole seconds)"#,
    ),
    ("steps[5].duration", r#""1s""#, ""),
    ("steps[5].duration", r#""7d""#, ""),
    (
        "steps[5].duration",
        r#""999ms""#,
        r#""999ms" is below the minimum 1s (allowed 1s–7d)"#,
    ),
    (
        "steps[5].duration",
        r#""8d""#,
        r#""8d" is above the maximum 7d (allowed 1s–7d)"#,
    ),
];

#[test]
fn every_bound_is_checked_at_both_ends_with_a_named_error() {
    parse(Path::new("plan.toml"), &plan_with("service.name", r#""checkout""#)).expect("the base plan is valid");
    let mut failures = Vec::new();
    for (key, value, reason) in ROWS {
        let text = plan_with(key, value);
        let got = match parse(Path::new("plan.toml"), &text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let want = if reason.is_empty() {
            String::new()
        } else {
            format!("plan.toml: {key}: {reason}")
        };
        if got != want {
            failures.push(format!("{key} = {value}\n  want: {want:?}\n   got: {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The table above tests each range at both ends: a value accepted at each end, and refused
/// below the minimum and above the maximum (every key of a range, that is, not `threshold`).
#[test]
fn the_bounds_table_covers_both_ends_of_every_range() {
    let keys: BTreeSet<&str> = ROWS.iter().map(|(k, _, _)| *k).collect();
    for key in keys {
        let rows: Vec<_> = ROWS.iter().filter(|(k, _, _)| *k == key).collect();
        let has = |words: &str| rows.iter().any(|(_, _, r)| r.contains(words));
        let accepted = rows.iter().filter(|(_, _, r)| r.is_empty()).count();
        if key.ends_with(".threshold") {
            assert!(has("not a finite number") && accepted >= 2, "{key}");
            continue;
        }
        // A weight's two ends are on two steps (shifts must increase).
        let both_ends = if key.ends_with(".weight") {
            let weights: Vec<_> = ROWS.iter().filter(|(k, _, _)| k.ends_with(".weight")).collect();
            weights.iter().any(|(_, _, r)| r.contains("is below the minimum"))
                && weights.iter().any(|(_, _, r)| r.contains("is above the maximum"))
        } else {
            has("is below the minimum") && has("is above the maximum") && accepted >= 2
        };
        assert!(
            both_ends,
            "{key}: needs a value accepted at each end, one below and one above"
        );
    }
}
