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
//!
//! * [`event`]: the journal's vocabulary ([`Event`] and what it carries);
//! * `mod.rs` (this file): the state ([`Saga`]), the one transition function, and [`Saga::next`].

mod event;
#[cfg(test)]
mod tests;

pub use event::{Event, Level, Outcome, Start, StepInfo, Trigger};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::color::{Color, Split};
use crate::judge::{Baseline, Criteria, Judge};

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        /// Who asked (`RollbackRequested`), or `cutover` when a step failed.
        by: String,
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

/// A bake's progress, folded from its `BakeStarted` and `Verdict` events: what a resumed
/// engine needs to go on where the bake was, without reading the journal again. (The judge's
/// evidence is not the bake's: it is the whole cutover's, in [`Saga::judge`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bake {
    /// The first period judged (Unix seconds).
    pub from: u64,
    pub duration_secs: u64,
    /// Judged time so far: the `baked_secs` of the latest counted verdict.
    pub baked_secs: u64,
    /// The end of the newest judged window: the next poll judges from there.
    pub judged_to: u64,
    /// The failure streak as of the latest verdict (the judge's, which runs across bakes).
    pub failures: u32,
    /// Whether the latest verdict left the judge's recent window still gathering.
    pub evidence_pending: bool,
}

/// An approval step's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approval {
    /// Whether the request is journaled (a person may answer).
    pub requested: bool,
    /// The answers, in order: (approved, by, reason). The engine acts on the first one it
    /// accepts (an answer from someone the plan does not allow is ignored, and said so).
    pub answers: Vec<(bool, String, String)>,
}

/// What is known of a step's `run` command, from its `HookStarted` and `Hook` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Started, and no result journaled: it may have done anything (killed mid-command).
    Started,
    /// Exited 0.
    Succeeded,
    /// Failed, with its result known (a non-zero exit, a timeout that killed it).
    Failed,
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
    /// The forward action as last read back (or found at the start): what a restore writes from.
    pub action: Option<crate::traffic::ActionSnapshot>,
    /// The step whose weights were verified last.
    pub verified_step: Option<usize>,
    /// The weights to re-apply once an operator resumes, after a drift (someone else changed
    /// them); cleared when weights are verified again.
    pub drifted: Option<Split>,
    /// Whether any weight write was ever intended (then a rollback always writes).
    pub wrote_weights: bool,
    /// Why the bake clock is held, while it is.
    pub paused: Option<String>,
    /// A step whose bake an operator ended.
    pub promoted: Option<usize>,
    /// Each step's bake, as far as it went.
    pub bakes: BTreeMap<usize, Bake>,
    /// Each approval step's request and answer.
    pub approvals: BTreeMap<usize, Approval>,
    /// Who started the cutover.
    pub started_by: Option<String>,
    /// The lifecycle hook points that ran (`LifecycleHook` records), so none runs twice.
    pub hooks_ran: std::collections::BTreeSet<String>,
    /// What is known of each step's `run` command.
    pub runs: BTreeMap<usize, RunState>,
    /// Steps whose undo command succeeded in the current undo attempt (`Hook` ok, no `UndoDone`
    /// yet: the process died between the two): not run again.
    pub undo_succeeded: std::collections::BTreeSet<usize>,
    pub vars: BTreeMap<String, String>,
    /// The live colour's baseline, once verify journaled it.
    pub baseline: Option<Baseline>,
    /// With [`Saga::judging`]: the one judge of the whole cutover, given the journaled baseline
    /// and fed every journaled window (of every bake, and of judging held before a shift), so that
    /// a resumed cutover goes on with the judge's evidence exactly as it was.
    pub judge: Option<Judge>,
    criteria: Option<Criteria>,
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
            action: None,
            verified_step: None,
            drifted: None,
            wrote_weights: false,
            paused: None,
            promoted: None,
            bakes: BTreeMap::new(),
            runs: BTreeMap::new(),
            undo_succeeded: Default::default(),
            approvals: BTreeMap::new(),
            started_by: None,
            hooks_ran: Default::default(),
            vars: BTreeMap::new(),
            baseline: None,
            judge: None,
            criteria: None,
        }
    }
}

impl Saga {
    /// A saga that also rebuilds the judge's state from the journaled windows (the engine's:
    /// readers that only show a cutover need no criteria).
    pub fn judging(criteria: Criteria) -> Saga {
        Saga {
            criteria: Some(criteria),
            ..Saga::default()
        }
    }

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
                    action,
                    started_by,
                    ..
                },
            ) => {
                self.action = action.clone();
                self.started_by = started_by.clone();
                self.id = id.clone();
                self.vars = vars.clone();
                self.live_color = Some(*live_color);
                self.steps = steps.clone();
                self.status = vec![StepStatus::Pending; steps.len()];
                self.verified = Some(*initial);
                self.phase = Phase::Forward;
                self.judge = self.criteria.clone().map(|c| Judge::new(c).named(*live_color));
            }
            (Phase::New, _) | (_, Event::Started { .. }) => return Err(illegal(self)),

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
            (
                _,
                Event::WeightVerified {
                    step, split, action, ..
                },
            ) if step_ok(self, *step) => {
                self.verified = Some(*split);
                self.drifted = None;
                if action.is_some() {
                    self.action = action.clone();
                }
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
                self.bakes.insert(
                    *step,
                    Bake {
                        from: *from,
                        duration_secs: *duration_secs,
                        judged_to: *from,
                        ..Bake::default()
                    },
                );
                // The judge is not reset: its evidence is the whole cutover's.
            }
            (_, Event::Baseline { step, baseline }) if step_ok(self, *step) => {
                if self.baseline.is_none() {
                    self.baseline = Some(baseline.clone());
                }
                if let Some(judge) = &mut self.judge {
                    judge.set_baseline(baseline.clone());
                }
            }
            (
                _,
                Event::Verdict {
                    step,
                    verdict,
                    baked_secs,
                    ..
                },
            ) if step_ok(self, *step) => {
                // A verdict outside a bake (judging while held before a shift) advances no bake.
                if let Some(bake) = self.bakes.get_mut(step) {
                    bake.baked_secs = bake.baked_secs.max(*baked_secs);
                    bake.judged_to = bake.judged_to.max(verdict.window.end);
                    bake.failures = verdict.failures;
                    bake.evidence_pending = verdict.evidence_pending;
                }
                if let Some(judge) = &mut self.judge {
                    judge.judge(&verdict.window);
                }
            }
            (_, Event::HookStarted { step, phase, .. }) if step_ok(self, *step) => match phase.as_str() {
                "run" => {
                    self.runs.insert(*step, RunState::Started);
                }
                "undo" => {
                    self.undo_succeeded.remove(step);
                }
                _ => {}
            },
            (_, Event::Hook { step, phase, ok, .. }) if step_ok(self, *step) => match phase.as_str() {
                "run" => {
                    let state = if *ok { RunState::Succeeded } else { RunState::Failed };
                    self.runs.insert(*step, state);
                }
                "undo" if *ok && self.status[*step] == StepStatus::Undoing => {
                    self.undo_succeeded.insert(*step);
                }
                _ => {}
            },
            (_, Event::Drift { step, expected, .. }) if step_ok(self, *step) => self.drifted = Some(*expected),
            (_, Event::Note { step, .. }) if step.is_none_or(|i| step_ok(self, i)) => {}
            (_, Event::Adopted { .. }) => {}
            (_, Event::LifecycleHook { point, .. }) => {
                self.hooks_ran.insert(point.clone());
            }
            (_, Event::ApprovalRequested { step, .. }) if step_ok(self, *step) => {
                self.approvals.entry(*step).or_default().requested = true;
            }
            (_, Event::Approved { step, by, reason }) if step_ok(self, *step) => {
                let answer = (true, by.clone(), reason.clone());
                self.approvals.entry(*step).or_default().answers.push(answer);
            }
            (_, Event::Rejected { step, by, reason }) if step_ok(self, *step) => {
                let answer = (false, by.clone(), reason.clone());
                self.approvals.entry(*step).or_default().answers.push(answer);
            }
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
                        by: "cutover".into(),
                        traffic_restored: false,
                    };
                }
            }
            (Phase::Forward, Event::RollbackRequested { trigger, reason, by }) => {
                self.phase = Phase::RollingBack {
                    trigger: *trigger,
                    reason: reason.clone(),
                    by: by.clone(),
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
                Event::RollbackRequested { trigger, reason, by },
            ) => {
                self.phase = Phase::RollingBack {
                    trigger: *trigger,
                    reason: reason.clone(),
                    by: by.clone(),
                    traffic_restored: false,
                };
            }
            (Phase::Finished { .. }, Event::RollbackRequested { .. }) => {}
            (Phase::RollingBack { .. }, Event::TrafficRestored { split }) => {
                self.verified = Some(*split);
                if let Phase::RollingBack { traffic_restored, .. } = &mut self.phase {
                    *traffic_restored = true;
                }
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
                // A step the process was running when the cutover ended (a crash, an unsafe
                // restore) did not complete: it is not shown as running for ever.
                for s in self.status.iter_mut().filter(|s| **s == StepStatus::Running) {
                    *s = StepStatus::Failed;
                }
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
            .find(|&i| self.steps[i].has_undo && self.needs_undo(i))
    }

    /// Whether step `i` must be undone when rolling back: it completed; or its `run` command
    /// succeeded before the step failed (a deploy whose targets never turned healthy); or its
    /// `run` started and its result is unknown (the process died, or the command was killed,
    /// mid-command: undos are idempotent by contract). A `run` known to have failed is not
    /// undone (it must clean up after itself), and neither is one that never started.
    pub fn needs_undo(&self, i: usize) -> bool {
        match self.status[i] {
            StepStatus::Done | StepStatus::Undoing => true,
            StepStatus::Running | StepStatus::Failed => {
                matches!(self.runs.get(&i), Some(RunState::Started | RunState::Succeeded))
            }
            StepStatus::Pending | StepStatus::Undone | StepStatus::UndoFailed => false,
        }
    }

    /// The outcome a rollback started by `trigger` ends in: an operator's (or an interrupt's)
    /// is `rolled_back_by_operator`; a failed step before any step with effects began changed
    /// nothing (`not_started`); anything else is `rolled_back`. (Notifications name a rollback
    /// by it as soon as it starts.)
    pub fn rollback_outcome(&self, trigger: Trigger) -> Outcome {
        let changed = self
            .status
            .iter()
            .zip(&self.steps)
            .any(|(s, info)| info.has_effects && *s != StepStatus::Pending);
        match trigger {
            Trigger::Operator | Trigger::Interrupt => Outcome::RolledBackByOperator,
            Trigger::Step if !changed => Outcome::NotStarted,
            Trigger::Judge | Trigger::Step | Trigger::Stalled | Trigger::Orphaned | Trigger::Deadline => {
                Outcome::RolledBack
            }
        }
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
                ..
            } => {
                if let Some(i) = self.next_undo() {
                    return Next::Undo(i);
                }
                let outcome = self.rollback_outcome(*trigger);
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

    /// The step that is running, if one is.
    pub fn running_step(&self) -> Option<usize> {
        self.status.iter().position(|s| *s == StepStatus::Running)
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<(Outcome, &str)> {
        match &self.phase {
            Phase::Finished { outcome, reason } => Some((*outcome, reason)),
            _ => None,
        }
    }
}
