//! Unit tests of the saga: data-driven `check(events, next)` cases.

use super::*;

mod journal;

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
