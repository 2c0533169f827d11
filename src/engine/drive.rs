//! The drive loop: ask the saga what is next, journal the intent, act, journal the result.
//!
//! 1. `Run(i)`: journal `StepStarted` (or note that a step left running by a dead process
//!    is resumed), then run the step raced against an interrupt and against a rollback
//!    requested through the journal; whichever comes first ends it (dropping a step's future
//!    kills its hook process group).
//! 2. `RestoreTraffic`: put all traffic on the live colour and read it back, or finish as
//!    `unsafe` when that cannot be confirmed.
//! 3. `Undo(i)`: run the undo of a completed step, once, uninterruptibly.
//! 4. `Finish`: journal the outcome, checking that a promotion really left the new colour
//!    with all traffic.

use tokio::sync::watch;
use tracing::Instrument;

use super::{Engine, EngineError, Failure, millis};
use crate::color::Split;
use crate::config::HookPoint;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::saga::{Event, Level, Next, Outcome, Phase, RunState, Saga, StepStatus, Trigger};
use crate::traffic::Traffic;

/// What a turn of the loop needs of the saga: not the saga itself, whose copy would be kept in
/// the cutover's future across every wait of the turn (the saga carries the judge, about 7 KB,
/// and a daemon keeps a future for each of its cutovers).
struct Turn {
    next: Next,
    /// The step to run was left running by a process before this one.
    resumed: bool,
    rolling_back: bool,
    after_promote_ran: bool,
    verified: Option<Split>,
    outcome: Option<Outcome>,
}

impl Turn {
    fn of(saga: &Saga) -> Turn {
        let next = saga.next();
        Turn {
            resumed: matches!(next, Next::Run(i) if saga.status[i] == StepStatus::Running),
            next,
            rolling_back: matches!(saga.phase, Phase::RollingBack { .. }),
            after_promote_ran: saga.hooks_ran.contains(HookPoint::AfterPromote.as_str()),
            verified: saga.verified,
            outcome: saga.outcome().map(|(outcome, _)| outcome),
        }
    }
}

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// Drives the saga to its end. `interrupt` turns `Some(reason)` on SIGINT/SIGTERM:
    /// the cutover then rolls back (and cannot be interrupted any more).
    ///
    /// The same loop resumes a cutover from its journal: a step left running is run again
    /// (a shift that was verified continues its bake with the time already judged).
    pub async fn drive(&mut self, interrupt: watch::Receiver<Option<String>>) -> Result<Outcome, EngineError> {
        let span =
            tracing::info_span!("cutover", cutover.id = %self.journal.id(), cutover.service = %self.plan.service);
        self.drive_loop(interrupt).instrument(span).await
    }

    async fn drive_loop(&mut self, mut interrupt: watch::Receiver<Option<String>>) -> Result<Outcome, EngineError> {
        // Whether this process has itself verified traffic on the live colour during this rollback.
        let mut restored_here = false;
        loop {
            // Rolling back, the journal read before the restore is part of the rollback: in the
            // urgent lane, never behind the polls of other cutovers (on a shared store it is a
            // store call like theirs).
            if matches!(self.saga().phase, Phase::RollingBack { .. }) {
                crate::budget::urgently(self.sync()).await?;
            } else {
                self.sync().await?;
            }
            self.ensure_owner()?;
            let turn = self.saga_with(Turn::of);
            match turn.next {
                Next::Run(i) => {
                    let step = self.plan.steps[i].clone();
                    if turn.resumed {
                        self.note(
                            Some(i),
                            Level::Warn,
                            format!("resuming step {} after a restart", step.label()),
                        )
                        .await?;
                    } else {
                        self.emit(Event::StepStarted { step: i }).await?;
                    }
                    // A rollback journaled by another process just before this step started wins.
                    self.sync().await?;
                    if matches!(self.saga().phase, Phase::RollingBack { .. }) {
                        self.emit(Event::StepFailed {
                            step: i,
                            trigger: Trigger::Operator,
                            reason: "not run: a rollback was requested".into(),
                        })
                        .await?;
                        continue;
                    }
                    let started = tokio::time::Instant::now();
                    let result = tokio::select! {
                        r = self.do_step(i, &step) => r,
                        reason = wait_interrupt(&mut interrupt) => {
                            self.emit(Event::RollbackRequested {
                                trigger: Trigger::Interrupt,
                                reason: reason.clone(),
                                by: self.who.clone(),
                            })
                            .await?;
                            Err(Failure::Step { trigger: Trigger::Interrupt, reason })
                        }
                        f = self.rollback_requested() => Err(f),
                        f = self.deadline_passed() => Err(f),
                    };
                    match result {
                        Ok(()) => {
                            self.emit(Event::StepDone {
                                step: i,
                                elapsed_ms: millis(started.elapsed()),
                            })
                            .await?
                        }
                        Err(Failure::Step { trigger, reason }) => {
                            self.emit(Event::StepFailed {
                                step: i,
                                trigger,
                                reason,
                            })
                            .await?
                        }
                        Err(Failure::Journal(e)) => return Err(e.into()),
                    }
                }
                Next::RestoreTraffic => self.restore_or_unsafe(&mut restored_here).await?,
                // Whoever drives the undo chain checks the traffic itself first: another process's
                // "restored" may predate a write of this one that was still in flight.
                Next::Undo(_) | Next::Finish { .. } if !restored_here && turn.rolling_back => {
                    self.restore_or_unsafe(&mut restored_here).await?
                }
                Next::Undo(i) => self.undo(i).await?,
                Next::Finish {
                    outcome: Outcome::Promoted,
                    ..
                } if self.plan.hooks.iter().any(|h| h.at == HookPoint::AfterPromote) && !turn.after_promote_ran => {
                    // The plan's last word before a promotion: a failure rolls back.
                    if let Err(Failure::Step { reason, .. }) = self.lifecycle(HookPoint::AfterPromote).await {
                        self.emit(Event::RollbackRequested {
                            trigger: Trigger::Step,
                            reason,
                            by: self.who.clone(),
                        })
                        .await?;
                        continue;
                    }
                    self.finish(Outcome::Promoted, "every step passed".into(), turn.verified)
                        .await?;
                }
                Next::Finish { outcome, reason } => {
                    self.finish(outcome, reason, turn.verified).await?;
                    // An operator's rollback that raced the end of a promotion wins (the saga
                    // ignores a promotion journaled while rolling back): the loop goes on.
                }
                Next::Done => return Ok(turn.outcome.expect("done means finished")),
            }
        }
    }

    /// Runs the undo of step `i`, once: an undo whose success is already journaled (the process
    /// died before `UndoDone`) is not run again.
    async fn undo(&self, i: usize) -> Result<(), EngineError> {
        let command = self.plan.steps[i]
            .undo()
            .cloned()
            .expect("saga undoes only steps with an undo");
        let undo = command.undo.expect("undo present");
        let (done_before, status, run) =
            self.saga_with(|s| (s.undo_succeeded.contains(&i), s.status[i], s.runs.get(&i).copied()));
        let label = self.plan.steps[i].label();
        if done_before {
            self.note(
                Some(i),
                Level::Info,
                format!("the undo of {label} already succeeded (journaled before a restart): not running it again"),
            )
            .await?;
            self.emit(Event::UndoDone { step: i }).await?;
            return Ok(());
        }
        // Say why a step that did not complete is undone.
        let why = match (status, run) {
            (StepStatus::Done | StepStatus::Undoing, _) => None,
            (_, Some(RunState::Succeeded)) => Some("its run succeeded before the step failed"),
            (_, _) => Some("its run was started and its result is unknown (killed mid-command); undos are idempotent"),
        };
        if let Some(why) = why {
            self.note(
                Some(i),
                Level::Warn,
                format!("undoing {label} although it did not complete: {why}"),
            )
            .await?;
        }
        self.emit(Event::UndoStarted { step: i }).await?;
        self.emit(Event::HookStarted {
            step: i,
            phase: "undo".into(),
            what: undo.join(" "),
        })
        .await?;
        // Undos are not interruptible: a signal now would strand a half-undone step.
        let result = self
            .hooks
            .command(&undo, &self.env(self.plan.steps[i].action(), "undo"), command.timeout)
            .await;
        self.hook_event(i, "undo", &undo.join(" "), &result).await?;
        match result {
            Ok(_) => self.emit(Event::UndoDone { step: i }).await?,
            Err(e) => {
                self.emit(Event::UndoFailed {
                    step: i,
                    reason: e.to_string(),
                })
                .await?
            }
        }
        Ok(())
    }

    async fn finish(
        &self,
        outcome: Outcome,
        reason: String,
        verified: Option<crate::color::Split>,
    ) -> Result<(), EngineError> {
        let final_split = self.read_weights().await.ok().or(verified);
        // Promoted means the new colour holds all traffic, as read back now.
        let (outcome, reason) = match (outcome, final_split.and_then(|s| s.holder())) {
            (Outcome::Promoted, Some(holder)) if holder == self.new => (outcome, reason),
            (Outcome::Promoted, _) => (
                Outcome::Error,
                format!(
                    "every step passed, but {} does not hold all traffic: {}",
                    self.new,
                    final_split
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "weights unreadable".into())
                ),
            ),
            _ => (outcome, reason),
        };
        self.emit(Event::Finished {
            outcome,
            reason,
            final_split,
        })
        .await?;
        Ok(())
    }

    async fn restore_or_unsafe(&self, restored_here: &mut bool) -> Result<(), EngineError> {
        match self.restore().await {
            Ok(split) => {
                *restored_here = true;
                self.emit(Event::TrafficRestored { split }).await?;
                // Debug capture once traffic is safe, before the undo chain removes what it would
                // look at; its failure changes nothing.
                if !self.saga().hooks_ran.contains(HookPoint::OnRollback.as_str()) {
                    let _ = self.lifecycle(HookPoint::OnRollback).await;
                }
            }
            Err(super::weights::RestoreError::NotOwner(e)) => return Err(e.into()),
            Err(super::weights::RestoreError::Traffic(e)) => {
                let reason = format!("UNSAFE: could not confirm traffic back on {}: {e}", self.live);
                self.emit(Event::Finished {
                    outcome: Outcome::Unsafe,
                    reason,
                    final_split: None,
                })
                .await?;
            }
        }
        Ok(())
    }
}

async fn wait_interrupt(rx: &mut watch::Receiver<Option<String>>) -> String {
    let reason = rx
        .wait_for(|v| v.is_some())
        .await
        .map(|v| v.clone().unwrap_or_default());
    match reason {
        Ok(reason) => reason,
        // The sender is gone: nobody can interrupt any more.
        Err(_) => std::future::pending().await,
    }
}
