//! The live log at 3 a.m. (issue 14.2): a rollback read on an 80-column terminal.

use super::verdict::tests::{error_rate, verdict};
use super::*;
use crate::color::Split;
use crate::judge::{Outcome as Verdicts, Status};
use crate::saga::{Outcome, Trigger};

fn started() -> Event {
    Event::Started {
        id: "20261122T023000Z-3fa2c9d1".into(),
        service: "checkout".into(),
        plan: "plan.toml".into(),
        target_arn: "arn:listener".into(),
        live_color: Color::Blue,
        new_color: Color::Green,
        initial: Split::all_on(Color::Blue),
        action: None,
        steps: vec![StepInfo {
            label: "shift 50%".into(),
            has_effects: true,
            has_undo: false,
        }],
        pid: 1,
        started_by: None,
        vars: Default::default(),
    }
}

/// Regression (issue 14.2): a judge's rollback repeated its 200-character reason on four lines
/// (the verdict, the failed step, the rollback, the outcome); the decisive part came last.
#[test]
fn a_rollback_says_its_reason_once_and_leads_with_the_verdict() {
    let mut r = Renderer::new().with_streak_limit(2);
    r.render(&started());
    r.render(&Event::StepStarted { step: 0 });
    r.render(&Event::BakeStarted {
        step: 0,
        from: 0,
        duration_secs: 5,
    });
    let first = verdict(Verdicts::Fail, 1, false, vec![error_rate(Status::Fail)]);
    let second = verdict(Verdicts::Fail, 2, true, vec![error_rate(Status::Fail)]);
    let reason = format!("green {}", second.reason);
    let lines: Vec<Line> = [
        Event::Verdict {
            step: 0,
            verdict: first,
            counted: true,
            baked_secs: 1,
        },
        Event::Verdict {
            step: 0,
            verdict: second.clone(),
            counted: true,
            baked_secs: 2,
        },
        Event::StepFailed {
            step: 0,
            trigger: Trigger::Judge,
            reason: reason.clone(),
        },
        Event::TrafficRestored {
            split: Split::all_on(Color::Blue),
        },
        Event::Finished {
            outcome: Outcome::RolledBack,
            reason: reason.clone(),
            final_split: Some(Split::all_on(Color::Blue)),
        },
    ]
    .iter()
    .map(|e| r.render(e))
    .collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "green FAIL 1/2: 5xx 30% (30/100) > 5% · bake 1s/5s",
            "green FAIL 2/2 → ROLLBACK: 5xx 30% (30/100) > 5% · bake 2s/5s",
            "ROLLING BACK from shift 50% (judge): the verdict above",
            "traffic restored to blue: blue 100% green 0% (weights 999/0)",
            "ROLLED BACK: traffic on blue (blue 100% green 0% (weights 999/0))",
        ]
    );
    // The whole reason is nowhere in the human lines, and everywhere it matters in the fields.
    assert!(messages.iter().all(|m| !m.contains("exact binomial")), "{messages:#?}");
    assert_eq!(lines[1].fields.reason.as_deref(), Some(second.reason.as_str()));
    assert_eq!(lines[2].fields.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(lines[4].fields.outcome, Some("rolled_back"));
    // Every line fits 80 columns with `HH:MM:SS LEVEL ` in front.
    for m in &messages {
        assert!(m.chars().count() + 15 <= 80, "{m}");
    }
    // The human form highlights the turn and the end.
    let marks: Vec<Option<Mark>> = lines.iter().map(|l| l.mark).collect();
    assert_eq!(
        marks,
        [
            None,
            Some(Mark::Rollback),
            Some(Mark::Rollback),
            None,
            Some(Mark::Rollback)
        ]
    );
    assert_eq!(lines[0].step.as_deref(), Some("shift 50%"));
    assert_eq!(lines[4].step, None);
    assert_eq!(lines.iter().map(|l| l.kind).collect::<Vec<_>>()[4], "finished");
}

/// A reason the log has not shown yet (an operator's) is shown where the rollback begins.
#[test]
fn an_operators_reason_is_shown_once() {
    let mut r = Renderer::new();
    r.render(&started());
    let asked = r.render(&Event::RollbackRequested {
        trigger: Trigger::Operator,
        reason: "checkout 5xx page".into(),
        by: "alice".into(),
    });
    assert_eq!(
        asked.message,
        "ROLLBACK requested (operator) by alice: checkout 5xx page"
    );
    r.render(&Event::StepStarted { step: 0 });
    // Regression: the step an interrupt or an operator stops referred to "the verdict above".
    let stopped = r.render(&Event::StepFailed {
        step: 0,
        trigger: Trigger::Operator,
        reason: "checkout 5xx page".into(),
    });
    assert_eq!(
        stopped.message,
        "ROLLING BACK from shift 50% (operator): the reason above"
    );
    let done = r.render(&Event::Finished {
        outcome: Outcome::RolledBackByOperator,
        reason: "checkout 5xx page".into(),
        final_split: Some(Split::all_on(Color::Blue)),
    });
    assert_eq!(
        done.message,
        "ROLLED BACK by an operator: traffic on blue (blue 100% green 0% (weights 999/0))"
    );
}
