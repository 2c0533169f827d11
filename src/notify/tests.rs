//! Unit tests of notifications: which entry is sent what for hand-made journals (data-driven
//! `check`), the payload builders against the vendors' schemas, the signature, the retry
//! classification, and a notifier over the in-memory store against a local receiver.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::fold::{Change, Facts, Fold, Rollback, heading, names};
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
fn approvals_are_matched_by_their_journal_tag() {
    // Not yet journal events of this branch (another change adds them): matched as JSON.
    let record = |v: Value| names(&v, None, None);
    assert_eq!(
        record(
            json!({"at": AT, "event": "approval_requested", "step": 2, "approvers": ["alice"], "timeout_secs": 3600})
        ),
        [EventName::ApprovalNeeded]
    );
    assert_eq!(
        record(json!({"at": AT, "event": "approved", "step": 2, "by": "alice", "reason": "looks good"})),
        [EventName::Approved]
    );
    assert_eq!(
        record(json!({"at": AT, "event": "rejected", "step": 2, "by": "bob", "reason": "p99 is up"})),
        [EventName::Rejected]
    );
    assert!(record(json!({"at": AT, "event": "verdict"})).is_empty());
    assert_eq!(
        names(&json!({"event": "step_failed"}), Some(Trigger::Stalled), None),
        [EventName::Stalled]
    );
    assert_eq!(
        names(&json!({"event": "finished"}), None, Some(Outcome::RolledBackByOperator)),
        [EventName::RolledBackByOperator]
    );
}

#[test]
fn the_heading_of_a_rollback_is_the_saga_s_outcome() {
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
        let predicted = heading(&saga, *trigger);
        saga.apply(&restored()).unwrap();
        // Nothing to undo in these journals: the next thing is the end.
        let Next::Finish { outcome, .. } = saga.next() else {
            panic!("{trigger:?}: {:?}", saga.next())
        };
        assert_eq!(predicted, outcome, "{trigger:?} after {events:?}");
    }
}

/// The change a judge's rollback ends with, for the payload tests.
fn rolled_back() -> Change {
    let mut fold = Fold::default();
    let mut events = vec![started()];
    events.extend(to_failing_bake());
    events.extend([
        Event::StepFailed {
            step: 2,
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
        },
        restored(),
    ]);
    for (seq, e) in events.into_iter().enumerate() {
        fold.push(seq as u64, &rec(e));
    }
    fold.push(10, &rec(finished(Outcome::RolledBack, JUDGE_REASON)))
}

#[test]
fn the_fold_keeps_the_facts_a_message_needs() {
    let c = rolled_back();
    assert_eq!(c.finished, Some((Outcome::RolledBack, JUDGE_REASON.to_string())));
    assert_eq!(c.names, [EventName::RolledBack]);
    assert_eq!(c.tag(), "finished");
    assert_eq!(c.at(), AT);
    let f = &c.facts;
    assert_eq!((f.id.as_str(), f.service.as_str()), ("c1", "checkout"));
    assert_eq!((f.live, f.new), (Some(Color::Blue), Some(Color::Green)));
    assert_eq!(f.weights, Some(Split::all_on(Color::Blue)));
    assert_eq!(f.verdict.as_ref().map(|v| v.failures), Some(2));
    assert_eq!(
        f.rollback,
        Some(Rollback {
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
            by: "cutover".into(),
            heading: Outcome::RolledBack,
            step: Some("shift 50%".into()),
        })
    );
    // The step a rollback began at is the step of the messages that follow it.
    assert_eq!(f.step.as_deref(), Some("shift 50%"));
}

/// Block Kit's rules for what these messages use (header, section, context; text objects).
fn assert_block_kit(m: &Value) {
    let obj = m.as_object().unwrap();
    assert!(obj.keys().all(|k| k == "text" || k == "blocks"), "{m}");
    assert!(!m["text"].as_str().unwrap().is_empty());
    let blocks = m["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    let text_object = |t: &Value, max: usize| {
        assert!(matches!(t["type"].as_str(), Some("plain_text" | "mrkdwn")), "{t}");
        let s = t["text"].as_str().unwrap();
        assert!(!s.is_empty() && s.chars().count() <= max, "{t}");
    };
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                text_object(&b["text"], 150);
            }
            "section" => {
                assert!(b.get("text").is_some() || b.get("fields").is_some(), "{b}");
                if let Some(t) = b.get("text") {
                    text_object(t, 3000);
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().unwrap();
                    assert!(!f.is_empty() && f.len() <= 10, "{b}");
                    f.iter().for_each(|t| text_object(t, 2000));
                }
            }
            "context" => {
                let e = b["elements"].as_array().unwrap();
                assert!(!e.is_empty() && e.len() <= 10);
                e.iter().for_each(|t| text_object(t, 3000));
            }
            other => panic!("unexpected block {other}"),
        }
    }
}

#[test]
fn slack_says_the_outcome_with_the_reason_s_numbers_the_weights_and_a_link() {
    let c = rolled_back();
    let m = slack::message(EventName::RolledBack, &c, Some("https://ci.example.com/cutovers/{id}"));
    assert_block_kit(&m);
    let all = m.to_string();
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: checkout: rolled back: traffic back on blue"
    );
    // The reason with its numbers, escaped for mrkdwn.
    assert!(all.contains("5xx 30.00% (30/100) &gt; 5.00%"), "{all}");
    assert!(all.contains("*Weights*\\nblue 100% green 0% (weights 999/0)"), "{all}");
    assert!(
        all.contains("*Error rate*\\ngreen 30.00% (30/100) · blue 0.00% (0/100)"),
        "{all}"
    );
    assert!(all.contains("*Trigger*\\njudge"), "{all}");
    // The judge rolled back, not a person: no "By".
    assert!(!all.contains("*By*"), "{all}");
    assert!(all.contains("<https://ci.example.com/cutovers/c1|report>"), "{all}");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("checkout: rolled back: traffic back on blue — green error rate")
    );
}

#[test]
fn slack_names_who_rolled_back_and_who_must_approve() {
    let mut c = rolled_back();
    c.finished = Some((Outcome::RolledBackByOperator, "pager fired".into()));
    c.facts.rollback = Some(Rollback {
        trigger: Trigger::Operator,
        reason: "pager fired".into(),
        by: "alice@laptop".into(),
        heading: Outcome::RolledBackByOperator,
        step: None,
    });
    let m = slack::message(EventName::RolledBackByOperator, &c, None);
    assert_block_kit(&m);
    assert!(m.to_string().contains("*By*\\nalice@laptop"), "{m}");
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: checkout: rolled back by alice@laptop: traffic back on blue"
    );

    let approval = Change {
        seq: 7,
        record: json!({"at": AT, "event": "approval_requested", "step": 2, "approvers": ["alice", "bob"], "timeout_secs": 3600}),
        names: vec![EventName::ApprovalNeeded],
        rollback_started: false,
        traffic_restored: false,
        finished: None,
        facts: Facts {
            id: "c1".into(),
            service: "checkout".into(),
            step: Some("shift 100%".into()),
            ..Facts::default()
        },
    };
    let m = slack::message(EventName::ApprovalNeeded, &approval, None);
    assert_block_kit(&m);
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":raised_hand: checkout: approval needed for shift 100%"
    );
    assert_eq!(
        m["blocks"][1]["text"]["text"],
        "waiting for alice, bob; times out in 1h: `cutover approve` or `cutover reject`"
    );
    let mut approved = approval.clone();
    approved.record = json!({"at": AT, "event": "approved", "step": 2, "by": "carol", "reason": "p99 fine"});
    let m = slack::message(EventName::Approved, &approved, None);
    assert!(m.to_string().contains("*By*\\ncarol"), "{m}");
    assert_eq!(m["blocks"][0]["text"]["text"], "checkout: shift 100% approved by carol");
}

#[test]
fn slack_escapes_its_control_characters() {
    assert_eq!(slack::escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
}

fn place() -> pagerduty::Place {
    pagerduty::Place {
        load_balancer: "app/prod/50dc6c495c0c9188".into(),
        blue: "checkout-blue".into(),
        green: "checkout-green".into(),
    }
}

/// PagerDuty Events API v2: the fields of a trigger and their types and enums.
fn assert_pagerduty_trigger(e: &Value) {
    let top: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = [
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "images",
        "links",
        "client",
        "client_url",
    ]
    .into();
    assert!(top.is_subset(&allowed), "{top:?}");
    assert_eq!(e["event_action"], "trigger");
    assert!(e["routing_key"].is_string() && e["dedup_key"].as_str().unwrap().len() <= 255);
    let p = &e["payload"];
    let fields: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = [
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    ]
    .into();
    assert!(fields.is_subset(&allowed), "{fields:?}");
    let summary = p["summary"].as_str().unwrap();
    assert!(!summary.is_empty() && summary.chars().count() <= pagerduty::SUMMARY_MAX);
    assert!(!p["source"].as_str().unwrap().is_empty());
    assert!(matches!(
        p["severity"].as_str(),
        Some("critical" | "error" | "warning" | "info")
    ));
    assert!(humantime::parse_rfc3339(p["timestamp"].as_str().unwrap()).is_ok());
    assert!(p["custom_details"].is_object());
}

#[test]
fn pagerduty_triggers_with_the_v2_schema_and_resolves_with_the_same_key() {
    let mut c = rolled_back();
    // The trigger goes out when the rollback begins.
    c.finished = None;
    c.rollback_started = true;
    let e = pagerduty::trigger(
        EventName::RolledBack,
        &c,
        "R0UT1NGKEY0123456789ABCDEFGHIJKL",
        &place(),
        Some("https://ci/{id}"),
    );
    assert_pagerduty_trigger(&e);
    assert_eq!(e["dedup_key"], "cutover-c1");
    let p = &e["payload"];
    assert_eq!(p["summary"], format!("checkout: rolling back: {JUDGE_REASON}"));
    assert_eq!(p["source"], "checkout");
    assert_eq!(p["severity"], "error");
    assert_eq!(p["timestamp"], AT);
    assert_eq!(p["component"], "checkout-green");
    assert_eq!(p["group"], "app/prod/50dc6c495c0c9188");
    assert_eq!(p["class"], "rolled_back");
    let d = &p["custom_details"];
    assert_eq!(d["trigger"], "judge");
    assert_eq!(d["error_rate"], 0.3);
    assert_eq!(
        (d["errors"].as_f64(), d["requests"].as_f64()),
        (Some(30.0), Some(100.0))
    );
    assert_eq!(d["live_error_rate"], 0.0);
    assert_eq!(d["weights"], json!({"blue": 100.0, "green": 0.0}));
    assert_eq!(d["step"], "shift 50%");
    assert_eq!(e["client_url"], "https://ci/c1");
    assert_eq!(e["links"][0]["href"], "https://ci/c1");

    let r = pagerduty::resolve(&c, "R0UT1NGKEY0123456789ABCDEFGHIJKL");
    assert_eq!(
        r,
        json!({"routing_key": "R0UT1NGKEY0123456789ABCDEFGHIJKL", "event_action": "resolve", "dedup_key": "cutover-c1"})
    );
}

#[test]
fn pagerduty_severity_follows_the_outcome_and_the_summary_is_cut_at_1024() {
    use pagerduty::Severity;
    assert_eq!(Severity::of(EventName::Unsafe), Severity::Critical);
    assert_eq!(Severity::of(EventName::RolledBack), Severity::Error);
    assert_eq!(Severity::of(EventName::Stalled), Severity::Error);
    assert_eq!(Severity::of(EventName::RolledBackByOperator), Severity::Warning);
    assert_eq!(Severity::of(EventName::Promoted), Severity::Info);
    let mut c = rolled_back();
    c.finished = Some((Outcome::Unsafe, "x".repeat(5000)));
    let e = pagerduty::trigger(EventName::Unsafe, &c, "k", &place(), None);
    assert_pagerduty_trigger(&e);
    assert_eq!(e["payload"]["severity"], "critical");
    let summary = e["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    assert!(e.get("links").is_none());
}

#[test]
fn the_webhook_body_is_the_journal_record_with_the_cutover_and_service() {
    let c = rolled_back();
    let body = webhook::body(&c);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["at"], AT);
    assert_eq!(v["event"], "finished");
    assert_eq!(v["outcome"], "rolled_back");
    assert_eq!(v["reason"], JUDGE_REASON);
    assert_eq!(v["final_split"], json!({"blue": 999, "green": 0, "others": 0}));
    assert_eq!(v["cutover_id"], "c1");
    assert_eq!(v["service"], "checkout");
    assert_eq!(webhook::delivery_id("c1", 10, 2), "c1.10.2");
}

#[test]
fn the_signature_is_hmac_sha256_of_the_body() {
    // RFC 4231, test case 2.
    assert_eq!(
        webhook::signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn only_errors_that_may_pass_are_retried() {
    use deliver::DeliveryError;
    let status = |status| DeliveryError::Status {
        status,
        body: String::new(),
        retry_after: None,
    };
    for (code, retry) in [
        (500, true),
        (502, true),
        (503, true),
        (408, true),
        (429, true),
        (400, false),
        (401, false),
        (403, false),
        (404, false),
        (410, false),
        (302, false),
    ] {
        assert_eq!(status(code).retryable(), retry, "{code}");
    }
    assert!(DeliveryError::Transport("connection refused".into()).retryable());
}

#[test]
fn the_daemon_starts_at_its_own_part_of_a_journal() {
    let rb = |trigger| {
        rec(Event::RollbackRequested {
            trigger,
            reason: "r".into(),
            by: "b".into(),
        })
    };
    let adopted = || {
        rec(Event::Adopted {
            by: "serve a".into(),
            previous_owner: None,
            action: "resume".into(),
        })
    };
    let step = || rec(Event::StepStarted { step: 0 });
    assert_eq!(Since::daemon(&[rec(started())]), Since::Beginning);
    assert_eq!(Since::daemon(&[rec(started()), step(), adopted()]), Since::Seq(2));
    assert_eq!(
        Since::daemon(&[rec(started()), step(), adopted(), rb(Trigger::Orphaned)]),
        Since::Seq(2)
    );
    // An API rollback of an orphan: the operator's records are the owner's past.
    assert_eq!(
        Since::daemon(&[rec(started()), step(), adopted(), step(), rb(Trigger::Operator)]),
        Since::Seq(5)
    );
}

/// A receiver on 127.0.0.1:0 that answers each request with the next of `statuses` (the last
/// one repeats) and records `(path, headers, body)`.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(vec![]));
    let seen = got.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![];
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let (head, body_start, len) = loop {
                let k = sock.read(&mut chunk).await.unwrap();
                if k == 0 {
                    break (String::new(), 0, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    break (head, i + 4, len);
                }
            };
            while buf.len() < body_start + len {
                let k = sock.read(&mut chunk).await.unwrap();
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            seen.lock()
                .unwrap()
                .push((path, head.to_ascii_lowercase(), buf[body_start..].to_vec()));
            let status = statuses[n.min(statuses.len() - 1)];
            n += 1;
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 7\r\nconnection: close\r\n\r\nno_team");
            let _ = sock.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), got)
}

fn outgoing() -> deliver::Outgoing {
    deliver::Outgoing {
        seq: 3,
        what: "promoted",
        body: b"{}".to_vec(),
        headers: vec![("x-cutover-event", "promoted".into())],
    }
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_says_what_the_receiver_said() {
    let (url, got) = receiver(vec![404]).await;
    let url = reqwest::Url::parse(&format!("{url}/services/T0/B0/SECRET")).unwrap();
    let err = deliver::deliver(&deliver::client().unwrap(), &url, &outgoing())
        .await
        .unwrap_err();
    assert_eq!(err.1, 1, "one attempt");
    assert_eq!(err.0.to_string(), "HTTP 404: no_team");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].1.contains("x-cutover-event: promoted"), "{}", got[0].1);
}

#[tokio::test]
async fn a_transport_error_does_not_name_the_url() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/services/T0/B0/SECRET")).unwrap();
    let err = deliver::attempt(&deliver::client().unwrap(), &url, &outgoing())
        .await
        .unwrap_err();
    assert!(err.retryable());
    let text = err.to_string();
    assert!(!text.contains("SECRET") && !text.contains(&port.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notifier_sends_in_order_once_per_process_and_skips_an_entry_without_its_url() {
    let (url, got) = receiver(vec![200]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook-url"), format!("{url}/hook\n")).unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let text = format!(
        "{}\n[[notify]]\nkind = \"webhook\"\nurl_file = \"hook-url\"\nsecret_file = \"secret\"\n\n[[notify]]\nkind = \"slack\"\nurl_file = \"missing\"\nevents = [\"started\"]\n",
        PLAN
    );
    let plan = crate::config::parse(&dir.path().join("plan.toml"), &text).unwrap();
    let store = crate::journal::memory::MemoryStore::default();
    let id = format!("notify-unit-{}", std::process::id());
    store.create_with_id(&id);
    let store: Arc<dyn crate::journal::Store> = Arc::new(store);
    let lease = Arc::new(store.try_lock("arn", "run test").await.unwrap().unwrap());
    let journal = Journal::owned(store.clone(), &id, lease.clone());
    for e in [
        started(),
        Event::StepStarted { step: 0 },
        Event::StepDone { step: 0, elapsed_ms: 2 },
    ] {
        journal.append(&e).await.unwrap();
    }
    let before = deliver::counts::snapshot();
    let notifier = Notifier::start(&plan, &journal, Since::Beginning, Duration::from_secs(5));
    tokio::time::sleep(POLL * 2).await;
    // Regression: the notifier read through the owner's journal handle, so it held the target's
    // lease for as long as it drained after the engine task had ended. The owner lets go: the
    // lease is free at once, though the notifier goes on.
    drop((journal, lease));
    let journal = Journal::new(store.clone(), &id);
    assert!(
        store.try_lock("arn", "next").await.unwrap().is_some(),
        "the notifier keeps the lease"
    );
    journal.append(&Event::StepStarted { step: 1 }).await.unwrap();
    journal
        .append(&Event::StepDone { step: 1, elapsed_ms: 3 })
        .await
        .unwrap();
    notifier.finish().await;
    // A second notifier of the same cutover in the same process sends nothing again.
    Notifier::start(&plan, &journal, Since::Beginning, Duration::from_secs(5))
        .finish()
        .await;

    let got = got.lock().unwrap();
    let events: Vec<(String, String)> = got
        .iter()
        .map(|(path, head, body)| {
            let v: Value = serde_json::from_slice(body).unwrap();
            let event = head
                .lines()
                .find_map(|l| l.strip_prefix("x-cutover-event: "))
                .unwrap()
                .to_string();
            // Signed over the exact bytes received.
            let sig = head
                .lines()
                .find_map(|l| l.strip_prefix("x-cutover-signature: "))
                .unwrap();
            assert_eq!(sig, webhook::signature(b"s3cret", body));
            assert_eq!(v["cutover_id"], "c1");
            assert_eq!(path, "/hook");
            (event, v["event"].as_str().unwrap().to_string())
        })
        .collect();
    let want = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        events,
        [
            want("started", "started"),
            want("step_done", "step_done"),
            want("step_done", "step_done")
        ]
    );
    let after = deliver::counts::snapshot();
    let delta = |k: (&'static str, &'static str)| after[&k] - before[&k];
    assert!(delta(("webhook", "delivered")) >= 3);
    // The Slack entry's URL file is missing: its `started` is skipped, and counted so.
    assert!(delta(("slack", "skipped")) >= 1);
}
