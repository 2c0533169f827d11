//! Weights: every write journaled as an intent and read back before anything goes on;
//! drift (someone else changed the weights) noticed and paused on; and the restore of
//! the live colour that every rollback begins with.

use std::time::Duration;

use tracing::error;

use super::{Engine, Failure, millis};
use crate::color::Split;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::saga::{Event, Level, Phase, Trigger};
use crate::traffic::{self, Traffic, TrafficError, Writing};

/// ELBv2 reads are eventually consistent: a difference between the weights read and those
/// last verified counts as drift only if it persists over `DRIFT_CONFIRMATIONS` more reads,
/// `DRIFT_CONFIRM_DELAY` apart (1.5 s in all: longer than a write takes to show).
const DRIFT_CONFIRMATIONS: u32 = 3;
const DRIFT_CONFIRM_DELAY: Duration = Duration::from_millis(500);

/// How a rollback puts traffic back: up to `attempts` rounds of write-then-read-back, each
/// bounded by the plan's `alb.verify_timeout` and backing off inside with the read-back
/// policy ([`traffic::READ_BACK`]), so a round already rides out throttling for as long as
/// the plan allows a write to take. Past the last round the outcome is `unsafe` (exit 6),
/// never a silent success.
pub struct RestorePolicy {
    pub attempts: u32,
}

/// The restore policy every rollback uses: three rounds (90 s with the default 30 s bound).
pub const RESTORE: RestorePolicy = RestorePolicy { attempts: 3 };

/// Why a restore did not confirm traffic on the live colour.
#[derive(Debug, thiserror::Error)]
pub(super) enum RestoreError {
    /// The writes or their read-back failed: the split is unknown (unsafe).
    #[error(transparent)]
    Traffic(TrafficError),
    /// This process lost its lease: it must not write, the new owner restores.
    #[error(transparent)]
    NotOwner(crate::journal::JournalError),
}

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// Journals the intent, writes, reads back, journals the verification.
    pub(super) async fn set_weights(&self, i: usize, target: Split) -> Result<(), Failure> {
        self.emit(Event::WeightIntent { step: i, split: target }).await?;
        self.ensure_owner()?;
        let started = tokio::time::Instant::now();
        let may = || self.journal.may_act();
        let split = traffic::set_and_verify(
            &self.traffic,
            target,
            self.plan.alb.verify_timeout,
            Writing::AfterRead,
            &may,
        )
        .await
        .map_err(|e| Failure::step(format!("setting weights: {e}")))?;
        self.emit(Event::WeightVerified {
            step: i,
            split,
            elapsed_ms: millis(started.elapsed()),
            action: self.traffic.snapshot(),
        })
        .await?;
        Ok(())
    }

    /// Puts all traffic back on the live colour: one write from the action as last known (no
    /// read first: a throttled Describe must not hold traffic on the new colour), then a
    /// read-back of the whole action ([`RESTORE`]). Every call in the budget's urgent lane:
    /// a restore never waits behind another cutover's poll.
    pub(super) async fn restore(&self) -> Result<Split, RestoreError> {
        crate::budget::urgently(self.restore_now()).await
    }

    async fn restore_now(&self) -> Result<Split, RestoreError> {
        let target = Split::all_on(self.live);
        // Nothing was ever written and it reads as all on live: change nothing (a failed first
        // verify must not touch the listener). Once a write was intended, always write and read
        // back: a write that was accepted but not yet visible could still land after a read.
        if !self.saga().wrote_weights
            && let Ok(split) = self.traffic.read().await
            && split.holder() == Some(self.live)
        {
            return Ok(split);
        }
        let known = self.saga().action;
        self.gradually(known.as_ref()).await;
        let mut last = None;
        for attempt in 1..=RESTORE.attempts {
            self.ensure_owner().map_err(RestoreError::NotOwner)?;
            let writing = Writing::FromKnown(known.as_ref());
            let may = || self.journal.may_act();
            match traffic::set_and_verify(&self.traffic, target, self.plan.alb.verify_timeout, writing, &may).await {
                Ok(split) => return Ok(split),
                Err(e) => {
                    error!("restoring traffic, attempt {attempt}/{}: {e}", RESTORE.attempts);
                    last = Some(e);
                }
            }
        }
        Err(RestoreError::Traffic(last.expect("at least one attempt")))
    }

    /// An automatic rollback with `rollback.gradual`: the new colour's share goes down step by
    /// step (`[50, 0]`), `gradual_pause` apart, for a live colour whose capacity went cold. Each
    /// step is written and read back; the first that fails ends the walk, and the caller puts
    /// everything back at once. An operator's rollback is never gradual (the emergency brake),
    /// and neither is one whose weights are not known.
    async fn gradually(&self, known: Option<&crate::traffic::ActionSnapshot>) {
        let (automatic, current) = self.saga_with(|s| {
            let automatic = matches!(
                s.phase,
                Phase::RollingBack { trigger, .. } if !matches!(trigger, Trigger::Operator | Trigger::Interrupt)
            );
            (automatic, s.verified.map(|v| v.weight(self.new)))
        });
        let Some(current) = current else {
            return;
        };
        if !automatic || self.plan.rollback.gradual.is_empty() {
            return;
        }
        // The steps below where the new colour is now; the last (0) is the caller's full restore.
        let steps: Vec<u32> = self
            .plan
            .rollback
            .gradual
            .iter()
            .copied()
            .filter(|&p| (p as i32) < current && p > 0)
            .collect();
        for permille in steps {
            let split = Split::with_new(self.new, permille);
            if self.ensure_owner().is_err() {
                return;
            }
            let writing = Writing::FromKnown(known);
            let may = || self.journal.may_act();
            match traffic::set_and_verify(&self.traffic, split, self.plan.alb.verify_timeout, writing, &may).await {
                Ok(read) => {
                    let _ = self
                        .note(
                            None,
                            Level::Warn,
                            format!(
                                "gradual rollback: {read}; next step in {}",
                                humantime::format_duration(self.plan.rollback.gradual_pause)
                            ),
                        )
                        .await;
                    tokio::time::sleep(self.plan.rollback.gradual_pause).await;
                }
                Err(e) => {
                    error!("gradual rollback: {e}; putting all traffic back at once");
                    return;
                }
            }
        }
    }

    /// Compares the live weights with the last verified ones (or `also`, a split that is not
    /// drift either): `Some((expected, found))` when a difference persists over
    /// `DRIFT_CONFIRMATIONS` more reads. A read that fails is no evidence of drift.
    pub(super) async fn detect_drift(&self, i: usize, also: Option<Split>) -> Result<Option<(Split, Split)>, Failure> {
        let Some(expected) = self.saga().verified else {
            return Ok(None);
        };
        // The whole action: another target group given weight is drift too.
        let known = |s: Split| {
            [Some(expected), also]
                .into_iter()
                .flatten()
                .any(|k| (k.blue, k.green, k.others) == (s.blue, s.green, s.others))
        };
        let mut found = expected;
        for attempt in 0..=DRIFT_CONFIRMATIONS {
            if attempt > 0 {
                tokio::time::sleep(DRIFT_CONFIRM_DELAY).await;
            }
            found = match self.traffic.read().await {
                Ok(f) => f,
                Err(e) if attempt == 0 => {
                    self.note(Some(i), Level::Warn, format!("reading weights failed: {e}"))
                        .await?;
                    return Ok(None);
                }
                Err(_) => return Ok(None),
            };
            if known(found) {
                return Ok(None);
            }
        }
        // An operator's rollback changes the weights right after journaling its request: that is
        // not drift, and the sync says so.
        self.sync_forward().await?;
        Ok(Some((expected, found)))
    }
}
