//! Unit tests of notifications: which entry is sent what for hand-made journals (data-driven
//! `check`, here), the payload builders against the vendors' schemas and the signature
//! (`payloads.rs`), and delivery: the retry classification, where the daemon starts, and a
//! notifier over the in-memory store against a local receiver (`runtime.rs`).

mod payloads;
mod runtime;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::fold::{Change, Facts, Fold, Rollback, names};
use super::route::{Action, Route};
use super::*;
use crate::color::{Color, Split};
use crate::config::notify::{EventName, Notify, NotifyKind, Secret, Source};
use crate::judge::{Evidence, Outcome as Verdicts, Sample, Verdict, Window};
use crate::saga::{Event, Outcome, Saga, StepInfo, Trigger};

const AT: &str = "2026-12-01T10:00:00.000Z";

const PLAN: &str = r#"
[service]
name = "checkout"

[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-blue/73e2d6bc24d8a067"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-green/2453ed029918f21f"

[rollback]
max_error_rate = 0.001
"#;

fn rec(event: Event) -> Record {
    Record { at: AT.into(), event }
}

fn info(label: &str, has_effects: bool, has_undo: bool) -> StepInfo {
    StepInfo {
        label: label.into(),
        has_effects,
        has_undo,
    }
}

fn started() -> Event {
    Event::Started {
        id: "c1".into(),
        service: "checkout".into(),
        plan: "plan.toml".into(),
        target_arn: "arn".into(),
        live_color: Color::Blue,
        new_color: Color::Green,
        initial: Split::all_on(Color::Blue),
        action: None,
        steps: vec![
            info("verify", false, false),
            info("deploy", true, true),
            info("shift 50%", true, false),
        ],
        pid: 1,
        vars: Default::default(),
        started_by: None,
    }
}

fn sample(requests: f64, errors: f64, latency: f64) -> Sample {
    Sample {
        requests,
        errors,
        latency: Some(latency),
    }
}

/// A failing verdict: 30/100 errors on green against 0/100 on blue.
fn fail(failures: u32) -> Event {
    let (new, live) = (sample(100.0, 30.0, 0.05), sample(100.0, 0.0, 0.05));
    Event::Verdict {
        step: 2,
        verdict: Verdict {
            outcome: Verdicts::Fail,
            window: Window {
                start: 1000,
                end: 1001,
                new,
                live,
                metrics: vec![],
            },
            failures,
            counts_toward_bake: false,
            rollback: failures >= 2,
            would_rollback: failures >= 2,
            critical: false,
            evidence: Some(Evidence {
                start: 1000,
                end: 1001,
                windows: 1,
                new,
                live,
            }),
            evidence_pending: false,
            findings: vec![],
            reason: format!("error rate too high: 5xx 30.00% (30/100) > 5.00% — fail {failures}/2"),
        },
        counted: false,
        baked_secs: 0,
    }
}

const JUDGE_REASON: &str = "green error rate too high: 5xx 30.00% (30/100) > 5.00% — fail 2/2 → rollback";

/// verify and deploy done, then the shift to 50 % verified and judged twice as failing.
fn to_failing_bake() -> Vec<Event> {
    use Event::*;
    vec![
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 5 },
        StepStarted { step: 1 },
        StepDone {
            step: 1,
            elapsed_ms: 900,
        },
        StepStarted { step: 2 },
        WeightVerified {
            step: 2,
            split: Split::with_new(Color::Green, 500),
            elapsed_ms: 20,
            action: None,
        },
        fail(1),
        fail(2),
    ]
}

fn restored() -> Event {
    Event::TrafficRestored {
        split: Split::all_on(Color::Blue),
    }
}

fn finished(outcome: Outcome, reason: &str) -> Event {
    Event::Finished {
        outcome,
        reason: reason.into(),
        final_split: Some(Split::all_on(Color::Blue)),
    }
}

fn entry(kind: NotifyKind, events: Option<&[EventName]>) -> Notify {
    Notify {
        kind,
        credential: Secret {
            key: "notify[0].url_env".into(),
            source: Source::Env("X".into()),
        },
        endpoint: None,
        signing: None,
        events: events
            .map(|e| e.iter().copied().collect())
            .unwrap_or_else(|| EventName::defaults(kind)),
        report_url: None,
        resolve: true,
    }
}

fn defaults() -> Vec<Notify> {
    NotifyKind::ALL.iter().map(|k| entry(*k, None)).collect()
}

/// Folds `started` and `events`, routes every change through `entries`, and compares what is
/// sent (`SEQ KIND ACTION`) with `expected`.
fn check(events: &[Event], entries: &[Notify], expected: &[&str]) {
    let mut fold = Fold::default();
    let mut routes: Vec<Route> = entries.iter().map(Route::new).collect();
    let mut got = vec![];
    for (seq, event) in std::iter::once(started()).chain(events.iter().cloned()).enumerate() {
        let change = fold.push(seq as u64, &rec(event));
        for (route, n) in routes.iter_mut().zip(entries) {
            let action = match route.decide(&change) {
                Some(Action::Send(e)) => e.to_string(),
                Some(Action::Trigger(e)) => format!("trigger {e}"),
                Some(Action::Resolve) => "resolve".into(),
                None => continue,
            };
            got.push(format!("{seq} {} {action}", n.kind.as_str()));
        }
    }
    assert_eq!(got, expected, "for {events:?}");
}

#[test]
fn a_judge_s_rollback_pages_then_resolves_and_the_others_get_the_outcome() {
    let mut events = to_failing_bake();
    events.extend([
        Event::StepFailed {
            step: 2,
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
        },
        restored(),
        Event::UndoStarted { step: 1 },
        Event::UndoDone { step: 1 },
        finished(Outcome::RolledBack, JUDGE_REASON),
    ]);
    check(
        &events,
        &defaults(),
        &[
            "0 webhook started",
            "2 webhook step_done",
            "4 webhook step_done",
            "9 pagerduty trigger rolled_back",
            "10 pagerduty resolve",
            "13 slack rolled_back",
            "13 webhook rolled_back",
        ],
    );
}

#[test]
fn an_operator_s_rollback_pages_as_such_and_a_promotion_it_races_is_not_notified() {
    use Event::*;
    let events = [
        StepStarted { step: 0 },
        RollbackRequested {
            trigger: Trigger::Operator,
            reason: "pager fired".into(),
            by: "alice".into(),
        },
        // The run's promotion raced the operator's rollback: the saga ignores it, so do we.
        finished(Outcome::Promoted, "every step passed"),
        restored(),
        finished(Outcome::RolledBackByOperator, "pager fired"),
    ];
    check(
        &events,
        &defaults(),
        &[
            "0 webhook started",
            "2 pagerduty trigger rolled_back_by_operator",
            "4 pagerduty resolve",
            "5 slack rolled_back_by_operator",
            "5 webhook rolled_back_by_operator",
        ],
    );
}

#[test]
fn a_stall_pages_as_stalled_and_the_webhook_hears_of_it() {
    let mut events = to_failing_bake();
    events.truncate(6);
    events.extend([
        Event::StepFailed {
            step: 2,
            trigger: Trigger::Stalled,
            reason: "judged nothing for 10m: GetMetricData: Throttling".into(),
        },
        restored(),
        finished(Outcome::RolledBack, "judged nothing for 10m"),
    ]);
    check(
        &events,
        &defaults(),
        &[
            "0 webhook started",
            "2 webhook step_done",
            "4 webhook step_done",
            "7 pagerduty trigger stalled",
            "7 webhook stalled",
            "8 pagerduty resolve",
            "9 slack rolled_back",
            "9 webhook rolled_back",
        ],
    );
    // An entry that wants rollbacks but not stalls is still paged: a stall is a rollback.
    check(
        &events,
        &[entry(NotifyKind::PagerDuty, Some(&[EventName::RolledBack]))],
        &["7 pagerduty trigger rolled_back", "8 pagerduty resolve"],
    );
}

#[test]
fn a_failed_first_verify_pages_nobody() {
    use Event::*;
    let events = [
        StepStarted { step: 0 },
        StepFailed {
            step: 0,
            trigger: Trigger::Step,
            reason: "check false: exit 1".into(),
        },
        restored(),
        finished(Outcome::NotStarted, "check false: exit 1"),
    ];
    check(
        &events,
        &defaults(),
        &["0 webhook started", "4 slack not_started", "4 webhook not_started"],
    );
}

#[test]
fn unsafe_pages_critical_and_is_never_resolved() {
    let mut events = to_failing_bake();
    events.extend([
        Event::StepFailed {
            step: 2,
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
        },
        Event::Finished {
            outcome: Outcome::Unsafe,
            reason: "UNSAFE: could not confirm traffic back on blue: Throttling".into(),
            final_split: None,
        },
    ]);
    let pd = [entry(NotifyKind::PagerDuty, None)];
    check(
        &events,
        &pd,
        &["9 pagerduty trigger rolled_back", "10 pagerduty trigger unsafe"],
    );
}

#[test]
fn resolve_false_leaves_the_alert_open_and_a_second_rollback_pages_again() {
    use Event::*;
    let mut events: Vec<Event> = (0..3)
        .flat_map(|step| [StepStarted { step }, StepDone { step, elapsed_ms: 1 }])
        .collect();
    events.extend([
        finished(Outcome::Promoted, "every step passed"),
        // An operator rolls the promoted cutover back.
        RollbackRequested {
            trigger: Trigger::Operator,
            reason: "regression found later".into(),
            by: "bob".into(),
        },
        restored(),
        finished(Outcome::RolledBackByOperator, "regression found later"),
    ]);
    let mut quiet = entry(NotifyKind::PagerDuty, None);
    quiet.resolve = false;
    check(&events, &[quiet], &["8 pagerduty trigger rolled_back_by_operator"]);
    check(
        &events,
        &[entry(NotifyKind::Slack, None)],
        &["7 slack promoted", "10 slack rolled_back_by_operator"],
    );
}

#[test]
fn drift_and_adoption_are_events_and_pagerduty_resolves_a_rollback_it_saw_only_end() {
    use Event::*;
    let events = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 1 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 1 },
        StepStarted { step: 2 },
        Drift {
            step: 2,
            expected: Split::with_new(Color::Green, 500),
            found: Split::with_new(Color::Green, 300),
        },
        Adopted {
            by: "serve ops-1".into(),
            previous_owner: Some("run alice@ci pid 7".into()),
            action: "rollback".into(),
        },
        RollbackRequested {
            trigger: Trigger::Orphaned,
            reason: "its owner stopped driving it".into(),
            by: "serve ops-1".into(),
        },
        finished(Outcome::RolledBack, "its owner stopped driving it"),
    ];
    let all = [entry(
        NotifyKind::Webhook,
        Some(&[EventName::Drift, EventName::Adopted]),
    )];
    check(&events, &all, &["6 webhook drift", "7 webhook adopted"]);
    // An orphan's rollback is automatic: `rolled_back`, severity error. Without a journaled
    // restore (another process restored traffic), the finished rollback resolves.
    check(
        &events,
        &[entry(NotifyKind::PagerDuty, None)],
        &["8 pagerduty trigger rolled_back", "9 pagerduty resolve"],
    );
}

#[test]
fn approvals_drift_and_stalls_have_their_names() {
    let of = |e: Event| names(&e, None, None);
    assert_eq!(
        of(Event::ApprovalRequested {
            step: 2,
            approvers: vec!["alice".into()],
            timeout_secs: 3600
        }),
        [EventName::ApprovalNeeded]
    );
    assert_eq!(
        of(Event::Approved {
            step: 2,
            by: "alice".into(),
            reason: "looks good".into()
        }),
        [EventName::Approved]
    );
    assert_eq!(
        of(Event::Rejected {
            step: 2,
            by: "bob".into(),
            reason: "p99 is up".into()
        }),
        [EventName::Rejected]
    );
    assert!(of(Event::StepStarted { step: 1 }).is_empty());
    let failed = Event::StepFailed {
        step: 1,
        trigger: Trigger::Stalled,
        reason: "stalled".into(),
    };
    assert_eq!(names(&failed, Some(Trigger::Stalled), None), [EventName::Stalled]);
    assert_eq!(
        names(&failed, None, Some(Outcome::RolledBackByOperator)),
        [EventName::RolledBackByOperator]
    );
}

#[test]
fn the_heading_named_when_a_rollback_starts_is_its_outcome() {
    use crate::saga::Next;
    // (events after Started, the rollback's trigger)
    let forward: &[(&[Event], Trigger)] = &[
        (&[Event::StepStarted { step: 0 }], Trigger::Step),
        (&[Event::StepStarted { step: 0 }], Trigger::Operator),
        (&[Event::StepStarted { step: 0 }], Trigger::Interrupt),
        (
            &[
                Event::StepStarted { step: 0 },
                Event::StepDone { step: 0, elapsed_ms: 0 },
                Event::StepStarted { step: 1 },
            ],
            Trigger::Step,
        ),
        (&[Event::StepStarted { step: 0 }], Trigger::Judge),
        (&[Event::StepStarted { step: 0 }], Trigger::Stalled),
        (&[Event::StepStarted { step: 0 }], Trigger::Orphaned),
    ];
    for (events, trigger) in forward {
        let mut saga = Saga::replay(std::iter::once(&started()).chain(events.iter())).unwrap();
        saga.apply(&Event::RollbackRequested {
            trigger: *trigger,
            reason: "r".into(),
            by: "b".into(),
        })
        .unwrap();
        let predicted = saga.rollback_outcome(*trigger);
        saga.apply(&restored()).unwrap();
        // Nothing to undo in these journals: the next thing is the end.
        let Next::Finish { outcome, .. } = saga.next() else {
            panic!("{trigger:?}: {:?}", saga.next())
        };
        assert_eq!(predicted, outcome, "{trigger:?} after {events:?}");
    }
}
