//! The saga and the journal's lines: every event reads back as written, and the judge the saga
//! folds from the journal is the cutover's one judge.

use super::*;

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
