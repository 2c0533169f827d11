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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::color::{Color, Split};
use crate::judge::Verdict;

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
/// (the `*Started`, `*Intent` and `*Requested` events) or after (the results). Some events
/// only inform (`Note`, `Hook`, `Verdict`, `Drift`): they are what the live log shows.
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
        /// Plan variables (daemon): reach hooks as `CUTOVER_VAR_<KEY>`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        vars: BTreeMap<String, String>,
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
        #[serde(default)]
        elapsed_ms: u64,
    },
    /// A bake (or observe) judges periods from `from` (Unix seconds) on, for `duration_secs` of judged time.
    BakeStarted {
        step: usize,
        from: u64,
        duration_secs: u64,
    },
    /// A judged window. `counted` says whether it advanced the bake clock (not while paused);
    /// `baked_secs` is the judged time so far.
    Verdict {
        step: usize,
        verdict: Verdict,
        #[serde(default)]
        counted: bool,
        #[serde(default)]
        baked_secs: u64,
    },
    /// The weights differ from what cutover last verified: someone else changed them.
    Drift {
        step: usize,
        expected: Split,
        found: Split,
    },
    /// A hook (command or HTTP check) finished.
    Hook {
        step: usize,
        /// `run`, `undo` or `check`.
        phase: String,
        what: String,
        ok: bool,
        detail: String,
        elapsed_ms: u64,
    },
    /// Anything else the live log should say.
    Note {
        step: Option<usize>,
        level: Level,
        message: String,
    },
    StepDone {
        step: usize,
        #[serde(default)]
        elapsed_ms: u64,
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
    /// The bake clock holds (polling and automatic rollback go on).
    Paused {
        by: String,
        reason: String,
    },
    Resumed {
        by: String,
        reason: String,
    },
    /// End the current bake of `step` now.
    PromoteRequested {
        step: usize,
        by: String,
        reason: String,
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

/// The fields of a `Started` event, borrowed: what every reader of a journal asks first.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    pub id: &'a str,
    pub service: &'a str,
    /// The plan file's path when the cutover started.
    pub plan: &'a str,
    pub target_arn: &'a str,
    pub live_color: Color,
    pub new_color: Color,
    pub steps: &'a [StepInfo],
    pub pid: u32,
}

impl Event {
    /// This event's fields if it is `Started`.
    pub fn start(&self) -> Option<Start<'_>> {
        match self {
            Event::Started {
                id,
                service,
                plan,
                target_arn,
                live_color,
                new_color,
                steps,
                pid,
                ..
            } => Some(Start {
                id,
                service,
                plan,
                target_arn,
                live_color: *live_color,
                new_color: *new_color,
                steps,
                pid: *pid,
            }),
            _ => None,
        }
    }
}

/// The level of a `Note`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
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
    /// The step whose weights were verified last.
    pub verified_step: Option<usize>,
    /// Whether any weight write was ever intended (then a rollback always writes).
    pub wrote_weights: bool,
    /// Why the bake clock is held, while it is.
    pub paused: Option<String>,
    /// A step whose bake an operator ended.
    pub promoted: Option<usize>,
    /// Where each step's bake began and how long it is (`BakeStarted`).
    pub bakes: BTreeMap<usize, (u64, u64)>,
    pub vars: BTreeMap<String, String>,
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
            verified_step: None,
            wrote_weights: false,
            paused: None,
            promoted: None,
            bakes: BTreeMap::new(),
            vars: BTreeMap::new(),
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
                    vars,
                    ..
                },
            ) => {
                self.id = id.clone();
                self.vars = vars.clone();
                self.live_color = Some(*live_color);
                self.steps = steps.clone();
                self.status = vec![StepStatus::Pending; steps.len()];
                self.verified = Some(*initial);
                self.phase = Phase::Forward;
            }
            (Phase::New, _) | (_, Event::Started { .. }) => return Err(illegal(self)),

            // Forward: steps start strictly in order.
            // Forward: steps start strictly in order. A step may also start just after another
            // process journaled a rollback (the run had not read it yet); it then fails at once.
            (Phase::Forward | Phase::RollingBack { .. }, Event::StepStarted { step }) => {
                if self.status.iter().position(|s| *s == StepStatus::Pending) != Some(*step)
                    || self.status.contains(&StepStatus::Running)
                {
                    return Err(illegal(self));
                }
                self.status[*step] = StepStatus::Running;
            }
            // A weight write while rolling back (a write that raced an operator's rollback) means
            // traffic is no longer known to be restored: it must be restored (again) before any undo.
            (_, Event::WeightIntent { step, .. }) if step_ok(self, *step) => {
                self.wrote_weights = true;
                self.unrestore();
            }
            (_, Event::WeightVerified { step, split, .. }) if step_ok(self, *step) => {
                self.verified = Some(*split);
                self.verified_step = Some(*step);
                self.unrestore();
            }
            (
                _,
                Event::BakeStarted {
                    step,
                    from,
                    duration_secs,
                },
            ) if step_ok(self, *step) => {
                self.bakes.insert(*step, (*from, *duration_secs));
            }
            (_, Event::Verdict { step, .. } | Event::Drift { step, .. } | Event::Hook { step, .. })
                if step_ok(self, *step) => {}
            (_, Event::Note { step, .. }) if step.is_none_or(|i| step_ok(self, i)) => {}
            (_, Event::Paused { reason, .. }) => self.paused = Some(reason.clone()),
            (_, Event::Resumed { .. }) => self.paused = None,
            (_, Event::PromoteRequested { step, .. }) if step_ok(self, *step) => self.promoted = Some(*step),
            // A step may finish after a rollback was requested (the operator's rollback raced
            // its end); it is then done, and its undo runs like any other.
            (Phase::Forward | Phase::RollingBack { .. }, Event::StepDone { step, .. })
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
            // A run that finished as promoted just as an operator's rollback came in: the
            // rollback wins, and the saga goes on rolling back.
            (
                Phase::RollingBack { .. },
                Event::Finished {
                    outcome: Outcome::Promoted,
                    ..
                },
            ) => {}
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

    fn unrestore(&mut self) {
        if let Phase::RollingBack { traffic_restored, .. } = &mut self.phase {
            *traffic_restored = false;
        }
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
            // A step left running (its process died) is run again: resumed from the journal.
            Phase::Forward => match self
                .status
                .iter()
                .position(|s| *s == StepStatus::Running)
                .or_else(|| self.status.iter().position(|s| *s == StepStatus::Pending))
            {
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
}
