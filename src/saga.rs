//! The saga: a cutover's state, rebuilt from its journal, and what to do next.
//!
//! **Architecture Invariant:** this module does no IO. The journal is an intent
//! log of [`Event`]s; [`Saga::apply`] folds one event into the state through a
//! single `match` that rejects illegal transitions, and [`Saga::next`] says what
//! the engine must do next. The engine journals the intent, acts, journals the
//! result, and asks again: a process that dies anywhere can be resumed by
//! replaying the journal (steno's saga log).
//!
//! Lifecycle of a cutover:
//!
//! 1. `Started` names the live and new colours and the steps.
//! 2. Forward: each step is `StepStarted`, then `StepDone` or `StepFailed`.
//! 3. A failed step (the judge's verdict is a failure of the bake) or a
//!    `RollbackRequested` (operator, interrupt) turns the saga to rolling back.
//! 4. Rolling back: traffic goes back to the live colour first
//!    (`TrafficRestored`), then the undo of every completed step runs in reverse
//!    order (`UndoStarted`, then `UndoDone` or `UndoFailed`), each once.
//! 5. `Finished` records the outcome.
//!
//! A step that failed or was interrupted does not run its own undo: only
//! completed steps are undone (its `run` command must clean up after itself).

use serde::{Deserialize, Serialize};

use crate::config::Color;
use crate::judge::Verdict;
use crate::traffic::Split;

/// What a step of the journal is, as far as the saga cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    /// The plan's label, e.g. `shift 50%`.
    pub label: String,
    /// Whether completing it changes something (traffic, code, schema).
    pub has_effects: bool,
    /// Whether it has an undo command.
    pub has_undo: bool,
}

/// Who or what started a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The judge failed the new colour (metrics or an alarm).
    Judge,
    /// A step failed.
    Step,
    /// `cutover rollback`.
    Operator,
    /// SIGINT or SIGTERM on `cutover run`.
    Interrupt,
}

/// How a cutover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    RolledBackByOperator,
    NotStarted,
    Unsafe,
    Error,
}

impl Outcome {
    /// The documented exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Promoted => 0,
            Outcome::RolledBack => 3,
            Outcome::RolledBackByOperator => 4,
            Outcome::NotStarted => 5,
            Outcome::Unsafe => 6,
            Outcome::Error => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled_back",
            Outcome::RolledBackByOperator => "rolled_back_by_operator",
            Outcome::NotStarted => "not_started",
            Outcome::Unsafe => "unsafe",
            Outcome::Error => "error",
        }
    }
}

/// One journal record. Every state change is one of these, written before it is acted on
/// (the `*Started`, `*Intent` and `*Requested` events) or after (the results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        id: String,
        service: String,
        plan: String,
        /// The ARN whose forward action is shifted (listener or rule).
        target_arn: String,
        live_color: Color,
        new_color: Color,
        initial: Split,
        steps: Vec<StepInfo>,
        pid: u32,
    },
    StepStarted {
        step: usize,
    },
    /// About to write these weights.
    WeightIntent {
        step: usize,
        split: Split,
    },
    /// The weights read back as written; the bake clock may start.
    WeightVerified {
        step: usize,
        split: Split,
    },
    /// A judged window (informational: it changes no state).
    Verdict {
        step: usize,
        verdict: Verdict,
    },
    StepDone {
        step: usize,
    },
    StepFailed {
        step: usize,
        trigger: Trigger,
        reason: String,
    },
    RollbackRequested {
        trigger: Trigger,
        reason: String,
        by: String,
    },
    /// Traffic verified back on the live colour.
    TrafficRestored {
        split: Split,
    },
    UndoStarted {
        step: usize,
    },
    UndoDone {
        step: usize,
    },
    UndoFailed {
        step: usize,
        reason: String,
    },
    Finished {
        outcome: Outcome,
        reason: String,
        final_split: Option<Split>,
    },
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Failed,
    Undoing,
    Undone,
    UndoFailed,
}

/// Where the cutover as a whole stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Not yet `Started`.
    New,
    Forward,
    RollingBack {
        trigger: Trigger,
        reason: String,
        traffic_restored: bool,
    },
    Finished {
        outcome: Outcome,
        reason: String,
    },
}

/// What the engine must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run(usize),
    RestoreTraffic,
    Undo(usize),
    Finish {
        outcome: Outcome,
        reason: String,
    },
    /// The saga has finished; nothing to do.
    Done,
}

/// An event that does not fit the state: the journal is corrupt or two writers disagree.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("illegal transition: {event} while {state}")]
pub struct IllegalTransition {
    pub event: String,
    pub state: String,
}

/// The state of one cutover.
#[derive(Debug, Clone)]
pub struct Saga {
    pub id: String,
    pub live_color: Option<Color>,
    pub steps: Vec<StepInfo>,
    pub status: Vec<StepStatus>,
    pub phase: Phase,
    /// The weights last verified by read-back (or found at the start).
    pub verified: Option<Split>,
}

impl Default for Saga {
    fn default() -> Self {
        Saga {
            id: String::new(),
            live_color: None,
            steps: vec![],
            status: vec![],
            phase: Phase::New,
            verified: None,
        }
    }
}

impl Saga {
    /// Replays a whole journal.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Saga, IllegalTransition> {
        let mut saga = Saga::default();
        for e in events {
            saga.apply(e)?;
        }
        Ok(saga)
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &Event) -> Result<(), IllegalTransition> {
        let illegal = |s: &Saga| IllegalTransition {
            event: format!("{event:?}"),
            state: format!("{:?}", s.phase),
        };
        let step_ok = |s: &Saga, i: usize| i < s.status.len();
        match (&self.phase, event) {
            (
                Phase::New,
                Event::Started {
                    id,
                    live_color,
                    steps,
                    initial,
                    ..
                },
            ) => {
                self.id = id.clone();
                self.live_color = Some(*live_color);
                self.steps = steps.clone();
                self.status = vec![StepStatus::Pending; steps.len()];
                self.verified = Some(*initial);
                self.phase = Phase::Forward;
            }
            (Phase::New, _) | (_, Event::Started { .. }) => return Err(illegal(self)),

            // Forward: steps start strictly in order.
            (Phase::Forward, Event::StepStarted { step }) => {
                if self.status.iter().position(|s| *s == StepStatus::Pending) != Some(*step)
                    || self.status.contains(&StepStatus::Running)
                {
                    return Err(illegal(self));
                }
                self.status[*step] = StepStatus::Running;
            }
            (_, Event::WeightIntent { step, .. }) if step_ok(self, *step) => {}
            (_, Event::WeightVerified { step, split }) if step_ok(self, *step) => self.verified = Some(*split),
            (_, Event::Verdict { step, .. }) if step_ok(self, *step) => {}
            // A step may finish after a rollback was requested (the operator's rollback raced
            // its end); it is then done, and its undo runs like any other.
            (Phase::Forward | Phase::RollingBack { .. }, Event::StepDone { step })
                if step_ok(self, *step) && self.status[*step] == StepStatus::Running =>
            {
                self.status[*step] = StepStatus::Done;
            }
            (Phase::Forward | Phase::RollingBack { .. }, Event::StepFailed { step, trigger, reason })
                if step_ok(self, *step) && self.status[*step] == StepStatus::Running =>
            {
                self.status[*step] = StepStatus::Failed;
                if self.phase == Phase::Forward {
                    self.phase = Phase::RollingBack {
                        trigger: *trigger,
                        reason: reason.clone(),
                        traffic_restored: false,
                    };
                }
            }
            (Phase::Forward, Event::RollbackRequested { trigger, reason, .. }) => {
                self.phase = Phase::RollingBack {
                    trigger: *trigger,
                    reason: reason.clone(),
                    traffic_restored: false,
                };
            }
            // A second request while rolling back changes nothing: the first one's reason stands.
            (Phase::RollingBack { .. }, Event::RollbackRequested { .. }) => {}
            // An operator may roll back a cutover that finished as promoted (or errored):
            // traffic goes back and the completed steps are undone.
            (
                Phase::Finished {
                    outcome: Outcome::Promoted | Outcome::Error | Outcome::Unsafe,
                    ..
                },
                Event::RollbackRequested { trigger, reason, .. },
            ) => {
                self.phase = Phase::RollingBack {
                    trigger: *trigger,
                    reason: reason.clone(),
                    traffic_restored: false,
                };
            }
            (Phase::Finished { .. }, Event::RollbackRequested { .. }) => {}
            (Phase::RollingBack { trigger, reason, .. }, Event::TrafficRestored { split }) => {
                self.verified = Some(*split);
                self.phase = Phase::RollingBack {
                    trigger: *trigger,
                    reason: reason.clone(),
                    traffic_restored: true,
                };
            }
            // Restoring traffic is idempotent: a late second confirmation is harmless.
            (Phase::Finished { .. }, Event::TrafficRestored { split }) => self.verified = Some(*split),
            (
                Phase::RollingBack {
                    traffic_restored: true, ..
                },
                Event::UndoStarted { step },
            ) if self.next_undo() == Some(*step) => {
                self.status[*step] = StepStatus::Undoing;
            }
            (Phase::RollingBack { .. }, Event::UndoDone { step })
                if step_ok(self, *step) && self.status[*step] == StepStatus::Undoing =>
            {
                self.status[*step] = StepStatus::Undone;
            }
            (Phase::RollingBack { .. }, Event::UndoFailed { step, .. })
                if step_ok(self, *step) && self.status[*step] == StepStatus::Undoing =>
            {
                self.status[*step] = StepStatus::UndoFailed;
            }
            (_, Event::Finished { outcome, reason, .. }) => {
                self.phase = Phase::Finished {
                    outcome: *outcome,
                    reason: reason.clone(),
                };
            }
            _ => return Err(illegal(self)),
        }
        Ok(())
    }

    /// The step whose undo runs next: the latest completed step that has an undo.
    /// A step left `Undoing` by a crash is undone again (undos are idempotent).
    fn next_undo(&self) -> Option<usize> {
        (0..self.status.len())
            .rev()
            .find(|&i| self.steps[i].has_undo && matches!(self.status[i], StepStatus::Done | StepStatus::Undoing))
    }

    /// What the engine must do next.
    pub fn next(&self) -> Next {
        match &self.phase {
            Phase::New => Next::Done,
            Phase::Finished { .. } => Next::Done,
            Phase::Forward => match self.status.iter().position(|s| *s == StepStatus::Pending) {
                Some(i) => Next::Run(i),
                None => Next::Finish {
                    outcome: Outcome::Promoted,
                    reason: "every step passed".into(),
                },
            },
            Phase::RollingBack {
                traffic_restored: false,
                ..
            } => Next::RestoreTraffic,
            Phase::RollingBack {
                trigger,
                reason,
                traffic_restored: true,
            } => {
                if let Some(i) = self.next_undo() {
                    return Next::Undo(i);
                }
                // Nothing was changed when no step with effects ever began.
                let changed = self
                    .status
                    .iter()
                    .zip(&self.steps)
                    .any(|(s, info)| info.has_effects && *s != StepStatus::Pending);
                let outcome = match trigger {
                    Trigger::Operator | Trigger::Interrupt => Outcome::RolledBackByOperator,
                    Trigger::Step if !changed => Outcome::NotStarted,
                    Trigger::Judge | Trigger::Step => Outcome::RolledBack,
                };
                let failed_undos: Vec<&str> = self
                    .status
                    .iter()
                    .zip(&self.steps)
                    .filter(|(s, _)| **s == StepStatus::UndoFailed)
                    .map(|(_, info)| info.label.as_str())
                    .collect();
                let reason = if failed_undos.is_empty() {
                    reason.clone()
                } else {
                    format!("{reason}; undo failed for: {}", failed_undos.join(", "))
                };
                Next::Finish { outcome, reason }
            }
        }
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<(Outcome, &str)> {
        match &self.phase {
            Phase::Finished { outcome, reason } => Some((*outcome, reason)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
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
            steps: vec![
                info("verify", false, false),
                info("deploy", true, true),
                info("migrate", true, true),
                info("shift 50%", true, false),
                info("shift 100%", true, false),
            ],
            pid: 1,
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
        check(&[StepStarted { step: 0 }, StepDone { step: 0 }], Next::Run(1));
        let all_done: Vec<Event> = (0..5)
            .flat_map(|step| [StepStarted { step }, StepDone { step }])
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
            .flat_map(|step| [StepStarted { step }, StepDone { step }])
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
            StepDone { step: 0 },
            StepStarted { step: 1 },
            RollbackRequested {
                trigger: Trigger::Operator,
                reason: "pager".into(),
                by: "me".into(),
            },
            // The deploy finished while the rollback was being requested: it is undone.
            StepDone { step: 1 },
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
            StepDone { step: 0 },
            StepStarted { step: 1 },
            StepDone { step: 1 },
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
            .flat_map(|step| [StepStarted { step }, StepDone { step }])
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
    fn illegal_transitions_are_rejected() {
        let bad: &[&[Event]] = &[
            &[StepStarted { step: 1 }],
            &[StepDone { step: 0 }],
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
}
