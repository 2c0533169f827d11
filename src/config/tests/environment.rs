//! `[environment]` (what commands inherit) and `rollback.stall_timeout`: the keys the engine
//! reads from the validated plan, with their defaults and every error.

use std::path::Path;
use std::time::Duration;

use crate::config::tests::GOOD;
use crate::config::{Environment, Plan, PlanError, parse};

fn with(extra: &str) -> Result<Plan, PlanError> {
    parse(Path::new("plan.toml"), &format!("{GOOD}\n{extra}\n"))
}

fn error(extra: &str) -> String {
    with(extra).expect_err("plan should be rejected").to_string()
}

#[test]
fn commands_inherit_the_environment_by_default() {
    let p = parse(Path::new("plan.toml"), GOOD).unwrap();
    assert_eq!(p.environment, Environment::default());
    assert_eq!(
        p.environment,
        Environment {
            clean: false,
            pass: vec![]
        }
    );
    let p = with("[environment]\nclean = false").unwrap();
    assert_eq!(p.environment, Environment::default());
}

#[test]
fn a_clean_environment_passes_the_named_variables() {
    let p = with("[environment]\nclean = true\npass = [\"AWS_PROFILE\", \"AWS_REGION\", \"_x9\"]").unwrap();
    assert_eq!(
        p.environment,
        Environment {
            clean: true,
            pass: vec!["AWS_PROFILE".into(), "AWS_REGION".into(), "_x9".into()]
        }
    );
    let p = with("[environment]\nclean = true").unwrap();
    assert_eq!(
        p.environment,
        Environment {
            clean: true,
            pass: vec![]
        }
    );
}

#[test]
fn pass_without_a_clean_environment_is_refused() {
    let want = "plan.toml: environment.pass: needs clean = true: without it commands inherit all of cutover's environment, so pass would mean nothing";
    assert_eq!(error("[environment]\npass = [\"AWS_PROFILE\"]"), want);
    assert_eq!(error("[environment]\nclean = false\npass = []"), want);
}

#[test]
fn pass_names_only_environment_variables_cutover_does_not_set() {
    let cases = [
        (
            r#"["AWS_PROFILE", "AWS-PROFILE"]"#,
            r#"environment.pass[1]: "AWS-PROFILE" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"#,
        ),
        (
            r#"["1PASSWORD"]"#,
            r#"environment.pass[0]: "1PASSWORD" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"#,
        ),
        (
            r#"[""]"#,
            r#"environment.pass[0]: "" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"#,
        ),
        (
            r#"["A=B"]"#,
            r#"environment.pass[0]: "A=B" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"#,
        ),
        (
            r#"["CUTOVER_TOKEN"]"#,
            "environment.pass[0]: CUTOVER_TOKEN is never passed: the daemon's API token is removed from every command's environment",
        ),
        (
            r#"["HOME", "CUTOVER_ID"]"#,
            "environment.pass[1]: CUTOVER_ID: the CUTOVER_* variables are always set, list only others",
        ),
    ];
    for (pass, want) in cases {
        assert_eq!(
            error(&format!("[environment]\nclean = true\npass = {pass}")),
            format!("plan.toml: {want}")
        );
    }
}

#[test]
fn an_unknown_environment_key_names_its_line() {
    // GOOD's lines, an empty line, `[environment]`, then the unknown key.
    let line = GOOD.lines().count() + 3;
    assert_eq!(
        error("[environment]\ninherit = true"),
        format!("plan.toml: environment.inherit (line {line}): unknown field `inherit`, expected `clean` or `pass`")
    );
}

#[test]
fn a_bake_stalls_after_ten_minutes_by_default() {
    let p = parse(Path::new("plan.toml"), GOOD).unwrap();
    assert_eq!(p.rollback.stall_timeout, Some(Duration::from_secs(600)));
}

#[test]
fn stall_timeout_is_a_duration_or_off() {
    let set = |v: &str| {
        parse(
            Path::new("plan.toml"),
            &GOOD.replacen(
                "max_error_rate = 0.001",
                &format!("max_error_rate = 0.001\nstall_timeout = {v}"),
                1,
            ),
        )
    };
    assert_eq!(set("\"off\"").unwrap().rollback.stall_timeout, None);
    assert_eq!(
        set("\"30m\"").unwrap().rollback.stall_timeout,
        Some(Duration::from_secs(1800))
    );
    assert_eq!(
        set("\"never\"").unwrap_err().to_string(),
        r#"plan.toml: rollback.stall_timeout: "never" is neither a duration (e.g. "10m") nor "off""#
    );
    assert_eq!(
        set("\"Off\"").unwrap_err().to_string(),
        r#"plan.toml: rollback.stall_timeout: "Off" is neither a duration (e.g. "10m") nor "off""#
    );
    assert_eq!(
        set("600").unwrap_err().to_string(),
        format!(
            "plan.toml: rollback.stall_timeout (line {}): invalid type: integer `600`, expected a string",
            GOOD.lines().position(|l| l == "max_error_rate = 0.001").unwrap() + 2
        )
    );
}

/// With the default metrics (period 60s, settle 120s, poll_interval 15s), a healthy bake may
/// take 2 × 60s + 120s + 15s = 4m15s to judge its first period: a shorter stall timeout
/// would roll back every bake.
#[test]
fn a_stall_timeout_shorter_than_the_first_verdict_can_take_is_refused() {
    let set = |v: &str| {
        GOOD.replacen(
            "max_error_rate = 0.001",
            &format!("max_error_rate = 0.001\nstall_timeout = {v}"),
            1,
        )
    };
    let e = parse(Path::new("plan.toml"), &set("\"4m\"")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plan.toml: rollback.stall_timeout: \"4m\" is shorter than a healthy bake can take to judge its first period \
         (2 × metrics.period 1m + metrics.settle 2m + metrics.poll_interval 15s = 4m 15s): use at least that, or \"off\""
    );
    let p = parse(Path::new("plan.toml"), &set("\"255s\"")).unwrap();
    assert_eq!(p.rollback.stall_timeout, Some(Duration::from_secs(255)));
}

/// A plan with long periods, valid before stall_timeout existed, does not stall by default:
/// the default grows to the first verdict's worst case.
#[test]
fn the_default_stall_timeout_outlasts_long_periods() {
    let text = GOOD.replacen("[rollback]", "[metrics]\nperiod = \"5m\"\n\n[rollback]", 1);
    let p = parse(Path::new("plan.toml"), &text).unwrap();
    // 2 × 5m + 2m + 15s.
    assert_eq!(p.rollback.stall_timeout, Some(Duration::from_secs(735)));
}
