//! Unit tests of the saga: data-driven `check(events, next)` cases.

use super::*;

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
        service: "svc".into(),
        plan: "plan.toml".into(),
        target_arn: "arn".into(),
        live_color: Color::Blue,
        new_color: Color::Green,
        initial: Split {
            blue: 999,
            green: 0,
            others: 0,
        },
        action: None,
        steps: vec![
            info("verify", false, false),
            info("deploy", true, true),
            info("migrate", true, true),
            info("shift 50%", true, false),
            info("shift 100%", true, false),
        ],
        pid: 1,
        started_by: None,
        vars: Default::default(),
    }
}

/// Replays `events` after `Started` and compares `next()` with `expected`.
fn check(events: &[Event], expected: Next) {
    let mut all = vec![started()];
    all.extend_from_slice(events);
    let saga = Saga::replay(&all).unwrap();
    assert_eq!(saga.next(), expected);
}

use Event::*;

#[test]
fn forward_runs_steps_in_order_then_promotes() {
    check(&[], Next::Run(0));
    check(
        &[StepStarted { step: 0 }, StepDone { step: 0, elapsed_ms: 0 }],
        Next::Run(1),
    );
    let all_done: Vec<Event> = (0..5)
        .flat_map(|step| [StepStarted { step }, StepDone { step, elapsed_ms: 0 }])
        .collect();
    check(
        &all_done,
        Next::Finish {
            outcome: Outcome::Promoted,
            reason: "every step passed".into(),
        },
    );
}

#[test]
fn a_failed_step_restores_traffic_then_undoes_in_reverse() {
    let mut ev: Vec<Event> = (0..3)
        .flat_map(|step| [StepStarted { step }, StepDone { step, elapsed_ms: 0 }])
        .collect();
    ev.push(StepStarted { step: 3 });
    ev.push(StepFailed {
        step: 3,
        trigger: Trigger::Judge,
        reason: "5xx".into(),
    });
    check(&ev, Next::RestoreTraffic);
    ev.push(TrafficRestored {
        split: Split {
            blue: 999,
            green: 0,
            others: 0,
        },
    });
    check(&ev, Next::Undo(2));
    ev.extend([UndoStarted { step: 2 }, UndoDone { step: 2 }]);
    check(&ev, Next::Undo(1));
    ev.extend([UndoStarted { step: 1 }, UndoDone { step: 1 }]);
    check(
        &ev,
        Next::Finish {
            outcome: Outcome::RolledBack,
            reason: "5xx".into(),
        },
    );
}

#[test]
fn a_failed_first_verify_is_not_started() {
    let ev = [
        StepStarted { step: 0 },
        StepFailed {
            step: 0,
            trigger: Trigger::Step,
            reason: "check".into(),
        },
        TrafficRestored {
            split: Split {
                blue: 999,
                green: 0,
                others: 0,
            },
        },
    ];
    check(
        &ev,
        Next::Finish {
            outcome: Outcome::NotStarted,
            reason: "check".into(),
        },
    );
}

#[test]
fn operator_rollback_during_a_step() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        RollbackRequested {
            trigger: Trigger::Operator,
            reason: "pager".into(),
            by: "me".into(),
        },
        // The deploy finished while the rollback was being requested: it is undone.
        StepDone { step: 1, elapsed_ms: 0 },
        TrafficRestored {
            split: Split {
                blue: 999,
                green: 0,
                others: 0,
            },
        },
    ];
    check(&ev, Next::Undo(1));
    let mut ev = ev.to_vec();
    ev.extend([
        UndoStarted { step: 1 },
        UndoFailed {
            step: 1,
            reason: "exit 1".into(),
        },
    ]);
    check(
        &ev,
        Next::Finish {
            outcome: Outcome::RolledBackByOperator,
            reason: "pager; undo failed for: deploy".into(),
        },
    );
}

#[test]
fn a_crash_during_an_undo_runs_it_again() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 0 },
        RollbackRequested {
            trigger: Trigger::Interrupt,
            reason: "SIGINT".into(),
            by: "me".into(),
        },
        TrafficRestored {
            split: Split {
                blue: 999,
                green: 0,
                others: 0,
            },
        },
        UndoStarted { step: 1 },
    ];
    check(&ev, Next::Undo(1));
}

#[test]
fn a_promoted_cutover_can_be_rolled_back() {
    let mut ev: Vec<Event> = (0..5)
        .flat_map(|step| [StepStarted { step }, StepDone { step, elapsed_ms: 0 }])
        .collect();
    ev.push(Finished {
        outcome: Outcome::Promoted,
        reason: "ok".into(),
        final_split: None,
    });
    check(&ev, Next::Done);
    ev.push(RollbackRequested {
        trigger: Trigger::Operator,
        reason: "late bug".into(),
        by: "me".into(),
    });
    check(&ev, Next::RestoreTraffic);
}

#[test]
fn a_step_left_running_by_a_crash_is_run_again() {
    check(&[StepStarted { step: 0 }], Next::Run(0));
    check(
        &[
            StepStarted { step: 0 },
            StepDone { step: 0, elapsed_ms: 0 },
            StepStarted { step: 1 },
        ],
        Next::Run(1),
    );
}

/// Regression (review): a weight write that raced an operator's rollback landed after the
/// rollback's read-back; the saga must restore traffic again before undoing anything.
#[test]
fn a_write_after_a_restore_requires_another_restore() {
    let split = Split {
        blue: 0,
        green: 999,
        others: 0,
    };
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 0 },
        StepStarted { step: 2 },
        StepDone { step: 2, elapsed_ms: 0 },
        StepStarted { step: 3 },
        WeightIntent { step: 3, split },
        RollbackRequested {
            trigger: Trigger::Operator,
            reason: "pager".into(),
            by: "me".into(),
        },
        TrafficRestored {
            split: Split {
                blue: 999,
                green: 0,
                others: 0,
            },
        },
        WeightVerified {
            step: 3,
            split,
            elapsed_ms: 0,
            action: None,
        },
        StepFailed {
            step: 3,
            trigger: Trigger::Operator,
            reason: "rolled back".into(),
        },
    ];
    check(&ev, Next::RestoreTraffic);
}

/// Regression (review): a late `Finished(promoted)` must not swallow an operator's rollback.
#[test]
fn a_late_promotion_does_not_swallow_a_rollback() {
    let mut ev: Vec<Event> = (0..5)
        .flat_map(|step| [StepStarted { step }, StepDone { step, elapsed_ms: 0 }])
        .collect();
    ev.push(RollbackRequested {
        trigger: Trigger::Operator,
        reason: "pager".into(),
        by: "me".into(),
    });
    ev.push(Finished {
        outcome: Outcome::Promoted,
        reason: "every step passed".into(),
        final_split: None,
    });
    check(&ev, Next::RestoreTraffic);
}

/// Regression (review): a step started just after another process journaled a rollback
/// used to make the journal unreplayable.
#[test]
fn a_step_started_after_a_rollback_request_is_legal() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        RollbackRequested {
            trigger: Trigger::Operator,
            reason: "pager".into(),
            by: "me".into(),
        },
        StepStarted { step: 1 },
        StepFailed {
            step: 1,
            trigger: Trigger::Operator,
            reason: "rolled back".into(),
        },
    ];
    check(&ev, Next::RestoreTraffic);
}

#[test]
fn operator_controls_are_state() {
    let mut all = vec![started()];
    all.push(Paused {
        by: "me".into(),
        reason: "look".into(),
    });
    all.push(PromoteRequested {
        step: 3,
        by: "me".into(),
        reason: "ok".into(),
    });
    let saga = Saga::replay(&all).unwrap();
    assert_eq!(saga.paused.as_deref(), Some("look"));
    assert_eq!(saga.promoted, Some(3));
    all.push(Resumed {
        by: "me".into(),
        reason: "done".into(),
    });
    assert_eq!(Saga::replay(&all).unwrap().paused, None);
}

#[test]
fn illegal_transitions_are_rejected() {
    let bad: &[&[Event]] = &[
        &[StepStarted { step: 1 }],
        &[StepDone { step: 0, elapsed_ms: 0 }],
        &[StepStarted { step: 0 }, StepStarted { step: 0 }],
        &[UndoStarted { step: 1 }],
        &[StepStarted { step: 9 }],
        &[started()],
    ];
    for events in bad {
        let mut all = vec![started()];
        all.extend_from_slice(events);
        assert!(Saga::replay(&all).is_err(), "{events:?} should be illegal");
    }
    assert!(
        Saga::replay(&[StepStarted { step: 0 }]).is_err(),
        "events before Started"
    );
}

fn hook_started(step: usize, phase: &str) -> Event {
    HookStarted {
        step,
        phase: phase.into(),
        what: "cmd".into(),
    }
}

fn hook(step: usize, phase: &str, ok: bool) -> Event {
    Hook {
        step,
        phase: phase.into(),
        what: "cmd".into(),
        ok,
        detail: String::new(),
        elapsed_ms: 0,
    }
}

fn operator_rollback() -> Event {
    RollbackRequested {
        trigger: Trigger::Operator,
        reason: "pager".into(),
        by: "me".into(),
    }
}

fn restored() -> Event {
    TrafficRestored {
        split: Split::all_on(Color::Blue),
    }
}

/// Regression (issue 8): a forward command killed after its successful `hook` record and before
/// `step_done` was never undone: the schema stayed migrated with traffic back on blue.
#[test]
fn a_step_whose_run_succeeded_is_undone_though_it_never_completed() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        hook_started(1, "run"),
        hook(1, "run", true),
        // The process died here; on-call rolls back.
        operator_rollback(),
        restored(),
    ];
    check(&ev, Next::Undo(1));
}

/// A deploy whose command succeeded but whose targets never turned healthy is undone too.
#[test]
fn a_step_that_failed_after_its_run_succeeded_is_undone() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        hook_started(1, "run"),
        hook(1, "run", true),
        StepFailed {
            step: 1,
            trigger: Trigger::Step,
            reason: "green has 0 healthy targets".into(),
        },
        restored(),
    ];
    check(&ev, Next::Undo(1));
}

/// Killed mid-command: the result is unknown, so the step is undone (undos are idempotent).
#[test]
fn a_step_killed_mid_command_is_undone() {
    let ev = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 0 },
        StepStarted { step: 2 },
        hook_started(2, "run"),
        operator_rollback(),
        restored(),
    ];
    check(&ev, Next::Undo(2));
}

/// A run that failed with a known result, or never started, is not undone (steno semantics).
#[test]
fn a_run_that_failed_or_never_started_is_not_undone() {
    let failed = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        hook_started(1, "run"),
        hook(1, "run", false),
        StepFailed {
            step: 1,
            trigger: Trigger::Step,
            reason: "exit 1".into(),
        },
        restored(),
    ];
    check(
        &failed,
        Next::Finish {
            outcome: Outcome::RolledBack,
            reason: "exit 1".into(),
        },
    );
    let never = [
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        operator_rollback(),
        restored(),
    ];
    check(
        &never,
        Next::Finish {
            outcome: Outcome::RolledBackByOperator,
            reason: "pager".into(),
        },
    );
}

/// Regression (issue 8): an undo killed after its successful `hook` record and before
/// `undo_done` ran again on the next rollback. The saga now knows it succeeded.
#[test]
fn a_journaled_successful_undo_is_known() {
    let mut all = vec![started()];
    all.extend([
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 0 },
        operator_rollback(),
        restored(),
        UndoStarted { step: 1 },
        hook_started(1, "undo"),
        hook(1, "undo", true),
    ]);
    let saga = Saga::replay(&all).unwrap();
    assert_eq!(saga.next(), Next::Undo(1), "UndoDone is still to be journaled");
    assert!(saga.undo_succeeded.contains(&1));
    // A new attempt (the undo started again) forgets the old success.
    all.push(hook_started(1, "undo"));
    assert!(!Saga::replay(&all).unwrap().undo_succeeded.contains(&1));
}

/// Regression (issue 8): the summary showed a finished cutover with a step still `running`.
#[test]
fn a_finished_cutover_has_no_step_running() {
    let mut all = vec![started()];
    all.extend([
        StepStarted { step: 0 },
        StepDone { step: 0, elapsed_ms: 0 },
        StepStarted { step: 1 },
        StepDone { step: 1, elapsed_ms: 0 },
        StepStarted { step: 2 },
        StepDone { step: 2, elapsed_ms: 0 },
        StepStarted { step: 3 },
        operator_rollback(),
        Finished {
            outcome: Outcome::Unsafe,
            reason: "UNSAFE".into(),
            final_split: None,
        },
    ]);
    let saga = Saga::replay(&all).unwrap();
    assert_eq!(saga.status[3], StepStatus::Failed);
}

/// Regression (issue 11): a `LifecycleHook` event with a field named `at` wrote journal lines
/// with two `at` keys (the record's and the event's), which no reader could parse. One sample
/// of every event goes through a journal line and back.
#[test]
fn every_event_round_trips_through_a_journal_line() {
    let split = Split::all_on(Color::Blue);
    let samples = vec![
        started(),
        StepStarted { step: 0 },
        WeightIntent { step: 0, split },
        WeightVerified {
            step: 0,
            split,
            elapsed_ms: 1,
            action: None,
        },
        BakeStarted {
            step: 0,
            from: 1,
            duration_secs: 2,
        },
        Event::Baseline {
            step: 0,
            baseline: crate::judge::Baseline {
                start: 1,
                end: 2,
                periods: 1,
                requests: 3.0,
                errors: 1.0,
                latency: Some(0.2),
                upper: 0.5,
                metrics: vec![Some(1.0), None],
            },
        },
        Drift {
            step: 0,
            expected: split,
            found: split,
        },
        hook_started(0, "run"),
        hook(0, "run", true),
        Note {
            step: None,
            level: Level::Info,
            message: "m".into(),
        },
        StepDone { step: 0, elapsed_ms: 0 },
        StepFailed {
            step: 0,
            trigger: Trigger::Deadline,
            reason: "r".into(),
        },
        operator_rollback(),
        Paused {
            by: "b".into(),
            reason: "r".into(),
        },
        Resumed {
            by: "b".into(),
            reason: "r".into(),
        },
        PromoteRequested {
            step: 0,
            by: "b".into(),
            reason: "r".into(),
        },
        restored(),
        UndoStarted { step: 0 },
        UndoDone { step: 0 },
        UndoFailed {
            step: 0,
            reason: "r".into(),
        },
        ApprovalRequested {
            step: 0,
            approvers: vec!["a".into()],
            timeout_secs: 60,
        },
        Approved {
            step: 0,
            by: "a".into(),
            reason: "r".into(),
        },
        Rejected {
            step: 0,
            by: "a".into(),
            reason: "r".into(),
        },
        LifecycleHook {
            point: "before_shift".into(),
            what: "w".into(),
            ok: true,
            detail: "d".into(),
            elapsed_ms: 0,
        },
        Adopted {
            by: "serve x".into(),
            previous_owner: Some("run y".into()),
            action: "rollback".into(),
        },
        Finished {
            outcome: Outcome::Promoted,
            reason: "r".into(),
            final_split: Some(split),
        },
    ];
    for event in samples {
        let record = crate::journal::Record {
            at: "2026-12-01T00:00:00.000Z".into(),
            event,
        };
        let line = serde_json::to_string(&record).unwrap();
        let back: crate::journal::Record =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line} does not read back: {e}"));
        assert_eq!(back, record, "{line}");
    }
}

/// Issue 10: the saga's judge is the cutover's one judge. It takes the journaled baseline, is
/// not reset at a `BakeStarted`, and replaying the journal rebuilds it exactly: a resumed cutover
/// judges its next window as the process that died would have.
#[test]
fn the_judge_is_one_for_the_whole_cutover_and_rebuilt_from_the_journal() {
    use crate::judge::{Criteria, Judge, Mode, NoData, OnShared, Sample, Window};
    let criteria = Criteria {
        max_error_rate: 0.05,
        max_latency: None,
        min_requests: 20,
        failures_to_rollback: 2,
        on_no_data: NoData::Hold,
        confidence: 0.99,
        max_error_rate_increase: 0.005,
        max_latency_ratio: None,
        on_shared_failure: OnShared::Hold,
        critical_error_rate: None,
        critical_min_requests: 10,
        metrics: vec![],
        mode: Mode::Auto,
    };
    let window = |i: u64, new: (f64, f64), live: (f64, f64)| Window {
        start: i,
        end: i + 1,
        new: Sample {
            requests: new.0,
            errors: new.1,
            latency: None,
        },
        live: Sample {
            requests: live.0,
            errors: live.1,
            latency: None,
        },
        metrics: vec![],
    };
    let history: Vec<Window> = (0..15).map(|i| window(i, (0.0, 0.0), (200.0, 0.0))).collect();
    let baseline = crate::judge::Baseline::from_windows(&history, &criteria).unwrap();
    // Two errors a second of a hundred at 50 %, then at 100 %: a regression no single second
    // proves, which the evidence of both bakes together does.
    let mut live_judge = Judge::new(criteria.clone())
        .named(Color::Blue)
        .with_baseline(baseline.clone());
    let mut events = vec![
        StepStarted { step: 0 },
        Event::Baseline {
            step: 0,
            baseline: baseline.clone(),
        },
        StepDone { step: 0, elapsed_ms: 0 },
    ];
    for step in [1, 2] {
        events.extend([StepStarted { step }, StepDone { step, elapsed_ms: 0 }]);
    }
    let mut t = 100;
    for (step, live) in [(3, 100.0), (4, 0.0)] {
        events.push(StepStarted { step });
        events.push(BakeStarted {
            step,
            from: t,
            duration_secs: 5,
        });
        for _ in 0..5 {
            let v = live_judge.judge(&window(t, (100.0, 2.0), (live, 0.0)));
            events.push(Verdict {
                step,
                verdict: v,
                counted: true,
                baked_secs: 0,
            });
            t += 1;
        }
        events.push(StepDone { step, elapsed_ms: 0 });
    }
    let mut saga = Saga::judging(criteria);
    saga.apply(&started()).unwrap();
    for e in &events {
        saga.apply(e).unwrap();
    }
    assert_eq!(saga.baseline.as_ref(), Some(&baseline));
    let mut replayed = saga.judge.clone().expect("a judging saga has a judge");
    assert_eq!(replayed.baseline(), Some(&baseline));
    let next = window(t, (100.0, 2.0), (0.0, 0.0));
    let (a, b) = (live_judge.judge(&next), replayed.judge(&next));
    assert_eq!(a, b);
    // Ten seconds of both bakes: the evidence started at the first bake, not the second.
    assert_eq!(a.evidence.unwrap().windows, 11);
    assert_eq!(saga.bakes[&4].from, 105);
}
