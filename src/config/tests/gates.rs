//! Approval steps, `[[hooks]]`, `deadline` and `rollback.gradual`: defaults and every error.

use std::path::Path;
use std::time::Duration;

use crate::config::tests::GOOD;
use crate::config::{Check, HookPoint, OnTimeout, Plan, PlanError, Step, parse};

fn with(edit: impl Fn(&str) -> String) -> Result<Plan, PlanError> {
    parse(Path::new("plan.toml"), &edit(GOOD))
}

fn error(edit: impl Fn(&str) -> String) -> String {
    with(edit).expect_err("plan should be rejected").to_string()
}

/// The plan with an approval step (with `keys`) before the shift to 100.
fn gate(keys: &str) -> impl Fn(&str) -> String + '_ {
    move |g: &str| {
        g.replacen(
            "[[steps]]\naction = \"shift\"\nweight = 100",
            &format!("[[steps]]\naction = \"approve\"\n{keys}\n\n[[steps]]\naction = \"shift\"\nweight = 100"),
            1,
        )
    }
}

#[test]
fn an_approval_step_has_defaults_and_its_keys() {
    let p = with(gate("")).unwrap();
    assert_eq!(
        p.steps[1],
        Step::Approve {
            timeout: Duration::from_secs(1800),
            on_timeout: OnTimeout::Rollback,
            approvers: vec![],
            require_other: false,
        }
    );
    assert!(!p.steps[1].has_effects() && p.steps[1].undo().is_none());
    assert_eq!(p.steps[1].label(), "approve");
    let p = with(gate(
        "timeout = \"2h\"\non_timeout = \"proceed\"\napprovers = [\"alice\", \"bob\"]\nrequire_other = true",
    ))
    .unwrap();
    assert_eq!(
        p.steps[1],
        Step::Approve {
            timeout: Duration::from_secs(7200),
            on_timeout: OnTimeout::Proceed,
            approvers: vec!["alice".into(), "bob".into()],
            require_other: true,
        }
    );
}

#[test]
fn approval_step_errors_name_the_key() {
    let e = error(gate("on_timeout = \"wait\""));
    assert!(
        e.contains("steps[1].on_timeout") && e.contains("unknown variant"),
        "{e}"
    );
    let e = error(gate("timeout = \"10s\""));
    assert!(
        e.contains("steps[1].timeout") && e.contains("below the minimum 1m"),
        "{e}"
    );
    let e = error(gate("approvers = [\"alice smith\"]"));
    assert!(
        e.contains("steps[1].approvers[0]") && e.contains("without spaces"),
        "{e}"
    );
    // Keys of an approval step are not keys of a shift, and the other way round.
    let e = error(|g: &str| g.replacen("bake = \"10m\"", "bake = \"10m\"\nrequire_other = true", 1));
    assert!(
        e.contains("steps[0].require_other") && e.contains("not a key of a shift step"),
        "{e}"
    );
    let e = error(gate("bake = \"1m\""));
    assert!(
        e.contains("steps[1].bake") && e.contains("not a key of a approve step"),
        "{e}"
    );
}

#[test]
fn hooks_run_a_command_or_an_http_call_at_a_named_point() {
    let p = with(|g: &str| {
        format!(
            "{g}\n[[hooks]]\nat = \"before_shift\"\ncommand = [\"./smoke.sh\"]\n\n\
             [[hooks]]\nat = \"on_rollback\"\nhttp = \"http://127.0.0.1:9/debug\"\nexpect_status = 204\ntimeout = \"5s\"\n"
        )
    })
    .unwrap();
    assert_eq!(p.hooks.len(), 2);
    assert_eq!(p.hooks[0].at, HookPoint::BeforeShift);
    assert!(
        matches!(&p.hooks[0].check, Check::Command { argv, timeout } if argv == &["./smoke.sh"] && *timeout == Duration::from_secs(60))
    );
    assert_eq!(p.hooks[1].at, HookPoint::OnRollback);
    assert!(
        matches!(&p.hooks[1].check, Check::Http { expect_status: 204, timeout, .. } if *timeout == Duration::from_secs(5))
    );
    let e = error(|g: &str| format!("{g}\n[[hooks]]\nat = \"before_lunch\"\ncommand = [\"x\"]\n"));
    assert!(e.contains("hooks[0].at") && e.contains("unknown variant"), "{e}");
    let e = error(|g: &str| format!("{g}\n[[hooks]]\nat = \"after_shift\"\n"));
    assert!(e.contains("hooks[0]") && e.contains("a check needs http"), "{e}");
}

#[test]
fn a_deadline_bounds_the_whole_cutover() {
    assert_eq!(with(|g: &str| g.to_string()).unwrap().deadline, None);
    let p = with(|g: &str| format!("deadline = \"2h\"\n{g}")).unwrap();
    assert_eq!(p.deadline, Some(Duration::from_secs(7200)));
    let e = error(|g: &str| format!("deadline = \"30s\"\n{g}"));
    assert!(e.contains("deadline") && e.contains("below the minimum 1m"), "{e}");
}

#[test]
fn a_gradual_rollback_goes_down_to_zero() {
    let p = with(|g: &str| g.to_string()).unwrap();
    assert!(p.rollback.gradual.is_empty(), "all at once by default");
    // Regression: an explicit `gradual = []` (the default, as config/example.toml writes it)
    // was refused as not ending at 0.
    let p = with(|g: &str| g.replacen("max_error_rate = 0.001", "max_error_rate = 0.001\ngradual = []", 1)).unwrap();
    assert!(p.rollback.gradual.is_empty());
    assert_eq!(p.rollback.gradual_pause, Duration::from_secs(30));
    let p = with(|g: &str| {
        g.replacen(
            "max_error_rate = 0.001",
            "max_error_rate = 0.001\ngradual = [50, 10.5, 0]\ngradual_pause = \"1m\"",
            1,
        )
    })
    .unwrap();
    assert_eq!(p.rollback.gradual, vec![500, 105, 0]);
    assert_eq!(p.rollback.gradual_pause, Duration::from_secs(60));
    for (value, key, words) in [
        ("[50, 60, 0]", "rollback.gradual[1]", "does not decrease"),
        ("[50, 10]", "rollback.gradual", "must end at 0"),
        ("[100, 0]", "rollback.gradual[0]", "above the maximum 99.9"),
        ("[50.05, 0]", "rollback.gradual[0]", "more precision"),
    ] {
        let e = error(|g: &str| {
            g.replacen(
                "max_error_rate = 0.001",
                &format!("max_error_rate = 0.001\ngradual = {value}"),
                1,
            )
        });
        assert!(e.contains(key) && e.contains(words), "{value}: {e}");
    }
}
