//! The record from hand-made journals: a promotion, a rollback by the judge (with its undo
//! chain), and an operator's rollback after a pause and a resume. Their renderings are tested in
//! `renderings.rs`, from the same journals.

mod renderings;

use std::time::{Duration, UNIX_EPOCH};

use super::record::*;
use super::*;
use crate::color::{Color, Percents, Split};
use crate::journal::Record;
use crate::judge::{Finding, Outcome as V, Sample, Status, Verdict, Window};
use crate::saga::{Event, Level, Outcome, StepInfo, StepStatus, Trigger};

/// The start of every hand-made journal, in Unix seconds: 2026-12-01T10:00:00Z.
const T0: u64 = 1_796_119_200;

fn rec(secs: f64, event: Event) -> Record {
    let at = UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs);
    Record {
        at: humantime::format_rfc3339_millis(at).to_string(),
        event,
    }
}

fn step(label: &str, has_effects: bool, has_undo: bool) -> StepInfo {
    StepInfo {
        label: label.into(),
        has_effects,
        has_undo,
    }
}

fn started() -> Event {
    Event::Started {
        id: "20261201T100000Z-abcd".into(),
        service: "checkout".into(),
        plan: "/plans/checkout.toml".into(),
        target_arn: "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/prod/1/2".into(),
        live_color: Color::Blue,
        new_color: Color::Green,
        initial: Split::all_on(Color::Blue),
        action: None,
        steps: vec![
            step("deploy", true, true),
            step("shift 50%", true, false),
            step("shift 100%", true, false),
        ],
        pid: 4242,
        vars: Default::default(),
        started_by: None,
    }
}

/// A verdict on the period `[at, at + 1)` (seconds after the start): `errors` of 100 new requests.
fn verdict(step: usize, at: u64, outcome: V, errors: f64, latency: f64, failures: u32) -> Event {
    let sample = |errors: f64, latency: f64| Sample {
        requests: 100.0,
        errors,
        latency: Some(latency),
    };
    let finding = |check: &str, value: f64, threshold: f64| Finding {
        check: check.into(),
        status: if value > threshold { Status::Fail } else { Status::Ok },
        value,
        threshold,
        live: None,
        p_value: None,
        statistic: None,
        test: None,
        log_e_value: None,
        log_threshold: None,
        bound: None,
    };
    Event::Verdict {
        step,
        verdict: Verdict {
            outcome,
            window: Window {
                start: T0 + at,
                end: T0 + at + 1,
                new: sample(errors, latency),
                live: sample(0.0, 0.05),
                metrics: vec![],
            },
            failures,
            counts_toward_bake: outcome == V::Pass,
            rollback: failures >= 2,
            would_rollback: failures >= 2,
            critical: false,
            evidence: None,
            evidence_pending: false,
            findings: vec![
                finding("error_rate", errors / 100.0, 0.05),
                finding("latency", latency, 0.25),
            ],
            reason: format!("5xx {errors}/100 <b>"),
        },
        counted: outcome == V::Pass,
        baked_secs: 0,
    }
}

/// Deploy, then shift 50 % (two passes at 20 % and 30 % later), up to `t` = 12.
fn forward() -> Vec<Record> {
    vec![
        rec(0.0, started()),
        rec(0.1, Event::StepStarted { step: 0 }),
        rec(
            0.5,
            Event::Hook {
                step: 0,
                phase: "run".into(),
                what: "./deploy.sh".into(),
                ok: true,
                detail: "exited 0".into(),
                elapsed_ms: 400,
            },
        ),
        rec(
            0.6,
            Event::StepDone {
                step: 0,
                elapsed_ms: 500,
            },
        ),
        rec(1.0, Event::StepStarted { step: 1 }),
        rec(
            1.1,
            Event::WeightIntent {
                step: 1,
                split: Split::with_new(Color::Green, 500),
            },
        ),
        rec(
            1.2,
            Event::WeightVerified {
                step: 1,
                split: Split::with_new(Color::Green, 500),
                elapsed_ms: 100,
                action: None,
            },
        ),
        rec(
            1.3,
            Event::BakeStarted {
                step: 1,
                from: T0 + 2,
                duration_secs: 5,
            },
        ),
        rec(4.0, verdict(1, 2, V::Pass, 0.0, 0.05, 0)),
        rec(5.0, verdict(1, 3, V::Pass, 2.0, 0.07, 0)),
    ]
}

fn promoted() -> Vec<Record> {
    let mut r = forward();
    r.extend([
        rec(
            8.0,
            Event::StepDone {
                step: 1,
                elapsed_ms: 7000,
            },
        ),
        rec(8.1, Event::StepStarted { step: 2 }),
        rec(
            8.2,
            Event::WeightVerified {
                step: 2,
                split: Split::with_new(Color::Green, 1000),
                elapsed_ms: 90,
                action: None,
            },
        ),
        rec(11.0, verdict(2, 9, V::Pass, 1.0, 0.06, 0)),
        rec(
            14.0,
            Event::StepDone {
                step: 2,
                elapsed_ms: 5900,
            },
        ),
        rec(
            14.1,
            Event::Finished {
                outcome: Outcome::Promoted,
                reason: "every step passed".into(),
                final_split: Some(Split::with_new(Color::Green, 1000)),
            },
        ),
    ]);
    r
}

/// Rolled back by the judge at 50 %: two failures, traffic back, the deploy undone.
fn rolled_back() -> Vec<Record> {
    let mut r = forward();
    r.extend([
        rec(6.0, verdict(1, 4, V::Fail, 30.0, 0.05, 1)),
        rec(7.0, verdict(1, 5, V::Fail, 40.0, 0.05, 2)),
        rec(
            7.1,
            Event::StepFailed {
                step: 1,
                trigger: Trigger::Judge,
                reason: "green error rate too high".into(),
            },
        ),
        rec(
            7.4,
            Event::TrafficRestored {
                split: Split::all_on(Color::Blue),
            },
        ),
        rec(7.5, Event::UndoStarted { step: 0 }),
        rec(
            7.6,
            Event::Hook {
                step: 0,
                phase: "undo".into(),
                what: "./undeploy.sh".into(),
                ok: true,
                detail: "exited 0".into(),
                elapsed_ms: 80,
            },
        ),
        rec(7.7, Event::UndoDone { step: 0 }),
        rec(
            7.8,
            Event::Finished {
                outcome: Outcome::RolledBack,
                reason: "green error rate too high".into(),
                final_split: Some(Split::all_on(Color::Blue)),
            },
        ),
    ]);
    r
}

/// Paused and resumed by alice, then rolled back by bob while baking at 50 %.
fn operator_rolled_back() -> Vec<Record> {
    let mut r = forward();
    let bob = "bob@ops pid 77";
    r.extend([
        rec(
            5.5,
            Event::Paused {
                by: "alice (API, 127.0.0.1:5000)".into(),
                reason: "checking dashboards".into(),
            },
        ),
        rec(
            6.0,
            Event::Resumed {
                by: "alice (API, 127.0.0.1:5000)".into(),
                reason: "resumed by an operator".into(),
            },
        ),
        rec(
            6.5,
            Event::Note {
                step: Some(1),
                level: Level::Warn,
                message: "advisory: would roll back: alarm in ALARM: checkout-5xx".into(),
            },
        ),
        rec(
            9.0,
            Event::RollbackRequested {
                trigger: Trigger::Operator,
                reason: "pager fired".into(),
                by: bob.into(),
            },
        ),
        rec(
            9.2,
            Event::TrafficRestored {
                split: Split::all_on(Color::Blue),
            },
        ),
        rec(
            9.5,
            Event::StepFailed {
                step: 1,
                trigger: Trigger::Operator,
                reason: "rollback requested".into(),
            },
        ),
        rec(9.6, Event::UndoStarted { step: 0 }),
        rec(9.7, Event::UndoDone { step: 0 }),
        rec(
            9.9,
            Event::Finished {
                outcome: Outcome::RolledBackByOperator,
                reason: "pager fired".into(),
                final_split: Some(Split::all_on(Color::Blue)),
            },
        ),
    ]);
    r
}

#[test]
fn a_promoted_cutover_has_its_times_numbers_and_no_rollback() {
    let r = build(&promoted(), None);
    assert_eq!(
        (r.service.as_str(), r.id.as_str()),
        ("checkout", "20261201T100000Z-abcd")
    );
    assert_eq!(r.outcome, Some(Outcome::Promoted));
    assert_eq!(r.started_at.as_deref(), Some("2026-12-01T10:00:00.000Z"));
    assert_eq!(r.finished_at.as_deref(), Some("2026-12-01T10:00:14.100Z"));
    assert!((r.duration_secs.unwrap() - 14.1).abs() < 1e-6);
    assert_eq!((r.live_color, r.new_color), (Some(Color::Blue), Some(Color::Green)));
    assert_eq!(r.started_by.as_deref(), Some("pid 4242"));
    assert_eq!(
        r.final_weights,
        Some(Percents {
            blue: 0.0,
            green: 100.0
        })
    );
    assert_eq!(r.rollback, None);
    assert!(r.undo_chain.is_empty() && r.operator_actions.is_empty());
    // The thresholds come from the verdicts' findings.
    assert_eq!(r.thresholds.max_error_rate, Some(0.05));
    assert_eq!(r.thresholds.max_latency_secs, Some(0.25));
    // At 50 %: 2 errors in 200 requests, latency weighted by requests.
    let at50 = &r.shifts[0];
    assert_eq!(
        (at50.label.as_str(), at50.new_percent, at50.periods),
        ("shift 50%", Some(50.0), 2)
    );
    assert_eq!(at50.new.error_rate, Some(0.01));
    assert!((at50.new.latency_secs.unwrap() - 0.06).abs() < 1e-9);
    assert_eq!(at50.new.max_latency_secs, Some(0.07));
    assert_eq!(at50.live.error_rate, Some(0.0));
    assert_eq!(at50.verdicts.get("pass"), Some(&2));
    assert_eq!(r.shifts[1].new_percent, Some(100.0));
    // The weights as a step line: 0 → 50 → 100.
    let levels: Vec<f64> = r.timeline.weights.iter().map(|w| w.new_percent).collect();
    assert_eq!(levels, [0.0, 50.0, 100.0]);
    assert_eq!(r.steps[0].hooks, ["run ./deploy.sh: exited 0"]);
    assert!(r.steps.iter().all(|s| s.status == StepStatus::Done));
}

#[test]
fn a_rollback_by_the_judge_names_its_reason_restore_and_undo_chain() {
    let r = build(&rolled_back(), None);
    assert_eq!(r.outcome, Some(Outcome::RolledBack));
    let rb = r.rollback.as_ref().expect("a rollback");
    assert_eq!(rb.trigger, Trigger::Judge);
    assert_eq!(rb.reason, "green error rate too high");
    assert_eq!(rb.initiated_by, "cutover");
    assert_eq!(rb.started_at, "2026-12-01T10:00:07.100Z");
    assert_eq!(rb.at_step.as_deref(), Some("shift 50%"));
    assert_eq!(rb.traffic_restored_at.as_deref(), Some("2026-12-01T10:00:07.400Z"));
    assert!((rb.time_to_restore_secs.unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(rb.completed_at.as_deref(), Some("2026-12-01T10:00:07.800Z"));
    // Traffic first, then the deploy's undo with its command's result.
    let chain: Vec<(&str, &str)> = r
        .undo_chain
        .iter()
        .map(|u| (u.label.as_str(), u.result.as_str()))
        .collect();
    assert_eq!(chain, [("traffic", "done"), ("deploy", "done")]);
    assert_eq!(r.undo_chain[1].detail.as_deref(), Some("undo ./undeploy.sh: exited 0"));
    // 72 errors in 400 requests at 50 %, two of four verdicts failed.
    let at50 = &r.shifts[0];
    assert_eq!(at50.new.error_rate, Some(72.0 / 400.0));
    assert_eq!(
        (at50.verdicts.get("fail"), at50.verdicts.get("pass")),
        (Some(&2), Some(&2))
    );
    assert_eq!(r.steps[1].status, StepStatus::Failed);
    assert_eq!(
        r.steps[1].failure.as_deref(),
        Some("failed (judge): green error rate too high")
    );
    assert_eq!(r.steps[0].status, StepStatus::Undone);
    let levels: Vec<f64> = r.timeline.weights.iter().map(|w| w.new_percent).collect();
    assert_eq!(levels, [0.0, 50.0, 0.0]);
    let kinds: Vec<MarkKind> = r.timeline.marks.iter().map(|m| m.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == MarkKind::Rollback).count(), 1);
}

#[test]
fn an_operator_rollback_names_who_and_why_and_every_operator_action() {
    let r = build(&operator_rolled_back(), None);
    assert_eq!(r.outcome, Some(Outcome::RolledBackByOperator));
    let rb = r.rollback.as_ref().unwrap();
    assert_eq!(
        (rb.trigger, rb.reason.as_str(), rb.initiated_by.as_str()),
        (Trigger::Operator, "pager fired", "bob@ops pid 77")
    );
    assert_eq!(rb.started_at, "2026-12-01T10:00:09.000Z");
    let actions: Vec<(&str, &str, &str)> = r
        .operator_actions
        .iter()
        .map(|a| (a.action.as_str(), a.by.as_str(), a.reason.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("pause", "alice (API, 127.0.0.1:5000)", "checking dashboards"),
            ("resume", "alice (API, 127.0.0.1:5000)", "resumed by an operator"),
            ("rollback", "bob@ops pid 77", "pager fired"),
        ]
    );
    assert!(
        r.operator_actions
            .iter()
            .all(|a| a.step.as_deref() == Some("shift 50%"))
    );
    // An advisory alarm note is an alarm mark; a note is never an error.
    assert!(
        r.timeline
            .marks
            .iter()
            .any(|m| m.kind == MarkKind::Alarm && m.event == "note")
    );
}

#[test]
fn the_starting_process_is_named_by_its_own_events() {
    let mut records = promoted();
    records.truncate(7);
    records.push(rec(
        7.0,
        Event::RollbackRequested {
            trigger: Trigger::Interrupt,
            reason: "interrupted by SIGINT".into(),
            by: "carol@ci-7 pid 4242".into(),
        },
    ));
    let r = build(&records, None);
    assert_eq!(r.started_by.as_deref(), Some("carol@ci-7 pid 4242"));
    assert_eq!(r.state, "rolling_back");
    assert_eq!(r.rollback.as_ref().unwrap().completed_at, None);
}

#[test]
fn the_starter_named_at_the_start_is_named_with_its_process() {
    let mut records = promoted();
    if let Event::Started { started_by, .. } = &mut records[0].event {
        *started_by = Some("deploy-bot".into());
    }
    let r = build(&records, None);
    assert_eq!(r.started_by.as_deref(), Some("deploy-bot (pid 4242)"));
}

/// Issue 10's baseline (the live colour before the start) is a row of the record, not a mystery
/// mark on the chart (the report drew it as an unlabelled grey square).
#[test]
fn the_baseline_read_before_the_start_is_in_the_record() {
    let mut records = promoted();
    records.insert(
        2,
        rec(
            0.2,
            Event::Baseline {
                step: 0,
                baseline: crate::judge::Baseline {
                    start: T0 - 900,
                    end: T0,
                    periods: 15,
                    requests: 1500.0,
                    errors: 3.0,
                    latency: Some(0.05),
                    upper: 0.006,
                    metrics: vec![],
                },
            },
        ),
    );
    let r = build(&records, None);
    let baseline = r.baseline.as_deref().expect("a baseline in the record");
    assert!(
        baseline.contains("15 periods") && baseline.contains("(3/1500)"),
        "{baseline}"
    );
    assert!(markdown::document(&r).contains("| Live before the start |"));
    let html = html::page(&r);
    assert!(
        !html.contains(r#"data-kind="other""#),
        "the baseline drawn as a generic mark"
    );
}

#[test]
fn thresholds_nobody_judged_come_from_the_plan_copy() {
    let plan = r#"
[service]
name = "checkout"
[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/73e2d6bc24d8a067"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/g/2453ed029918f21f"
[metrics]
latency_statistic = "p95"
[rollback]
max_error_rate = 0.002
max_latency = "300ms"
alarms = ["checkout-5xx"]
"#;
    let records = &promoted()[..4];
    let r = build(records, Some(plan));
    let t = &r.thresholds;
    assert_eq!((t.max_error_rate, t.max_latency_secs), (Some(0.002), Some(0.3)));
    assert_eq!(t.latency_statistic.as_deref(), Some("p95"));
    assert_eq!(t.alarms, ["checkout-5xx"]);
    assert_eq!(r.outcome, None);
    assert_eq!(r.state, "running");
}

#[test]
fn a_journal_without_a_start_is_a_report_of_a_cutover_that_never_began() {
    let r = build(&[], None);
    assert_eq!((r.state.as_str(), r.outcome, r.records), ("new", None, 0));
    assert!(render(&r, Format::Html).contains("Nothing was undone."));
    assert!(render(&r, Format::Markdown).contains("No step was judged."));
}
