//! The bake: judge every settled period from the bake's start until enough judged time
//! has passed.
//!
//! 1. A new bake journals `BakeStarted { from }`, `from` being the first period boundary
//!    after the weights read back; a resumed one takes its progress (judged time, how far
//!    it judged, the judge's state) from the saga, which folded it from the journal.
//! 2. Every `poll_interval`: alarms first (ALARM rolls back at once), then every settled
//!    period since the last one judged, each journaled as a `Verdict` (counted toward the
//!    bake clock unless paused, held, or the alarms could not be read), then a drift check.
//! 3. Between polls, once a second: the journal (pause, resume, promote, rollback).
//! 4. The bake ends after `duration` of judged time, never on a failing streak, and not
//!    while a growing window is still gathering evidence (up to twice its length).

use std::time::Duration;

use super::{Engine, Failure, JOURNAL_POLL};
use crate::hooks::Hooks;
use crate::judge::{Judge, Mode};
use crate::metrics::{self, Metrics};
use crate::saga::{Event, Level, Trigger};
use crate::traffic::Traffic;

/// The most periods judged in one poll; more are caught up on the following loop turns.
const CATCH_UP_PERIODS: u64 = 100;

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// Judges every settled period from the bake's start until `duration` of judged time has
    /// passed. Periods without data hold the clock (unless `on_no_data` says otherwise), and
    /// so does an operator's pause; an operator's promote ends the bake.
    pub(super) async fn bake(&self, i: usize, duration: Duration) -> Result<(), Failure> {
        let m = &self.plan.metrics;
        let period = m.period.as_secs().max(1);
        let criteria = &self.plan.rollback.criteria;
        // Advisory mode never rolls back, so a failing streak must not hold the bake forever.
        let advisory = criteria.mode == Mode::Advise;
        let saga = self.saga();
        let fresh = || Judge::new(criteria.clone()).named(self.live);
        let (mut judge, mut from, mut baked, mut streak, mut pending) = match saga.bakes.get(&i) {
            // Resumed: the saga folded this bake's verdicts, and its judge has seen their windows.
            Some(b) => {
                self.check_drift(i, None).await?;
                let judge = saga.judge.clone().unwrap_or_else(fresh);
                (judge, b.judged_to, b.baked_secs, b.failures, b.evidence_pending)
            }
            None => {
                let from = metrics::next_boundary(self.clock.now(), m.period);
                self.emit(Event::BakeStarted {
                    step: i,
                    from,
                    duration_secs: duration.as_secs(),
                })
                .await?;
                (fresh(), from, 0, 0, false)
            }
        };
        let mut next_poll = tokio::time::Instant::now();
        loop {
            self.sync_forward().await?;
            let saga = self.saga();
            if saga.promoted == Some(i) {
                return Ok(());
            }
            let paused = saga.paused.is_some();
            if tokio::time::Instant::now() >= next_poll {
                // From now, not from the last deadline: a long pause must not be followed by a burst of polls.
                next_poll = tokio::time::Instant::now() + m.poll_interval;
                // A poll whose alarms could not be read judges its windows but does not count them:
                // a bake must not complete without its alarms having been checked.
                let alarms_read = match self.metrics.alarms().await {
                    Ok(a) => {
                        match judge.alarms(&a.in_alarm) {
                            Some(v) if v.rollback => {
                                return Err(Failure::Step {
                                    trigger: Trigger::Judge,
                                    reason: v.reason,
                                });
                            }
                            Some(v) => self.note(Some(i), Level::Warn, v.reason).await?,
                            None => {}
                        }
                        true
                    }
                    Err(e) => {
                        self.note(
                            Some(i),
                            Level::Warn,
                            format!("reading alarms failed, holding the bake clock: {e}"),
                        )
                        .await?;
                        false
                    }
                };
                let settled = metrics::settled_end(self.clock.now(), m.settle, m.period);
                // After a long gap (CloudWatch unreachable, a pause), catch up in bounded chunks,
                // one per loop turn, rather than asking for more than one call may return.
                let end = settled.min(from + CATCH_UP_PERIODS * period);
                if end < settled {
                    next_poll = tokio::time::Instant::now();
                }
                if end > from {
                    match self.metrics.windows(from, end).await {
                        Ok(windows) => {
                            for w in windows {
                                let v = judge.judge(&w);
                                let counted = v.counts_toward_bake && !paused && alarms_read;
                                if counted {
                                    baked += period;
                                }
                                let (rollback, reason) = (v.rollback, v.reason.clone());
                                streak = v.failures;
                                pending = v.evidence_pending;
                                self.emit(Event::Verdict {
                                    step: i,
                                    verdict: v,
                                    counted,
                                    baked_secs: baked,
                                })
                                .await?;
                                if rollback {
                                    return Err(Failure::Step {
                                        trigger: Trigger::Judge,
                                        reason: format!("{} {reason}", self.new),
                                    });
                                }
                            }
                            from = end;
                        }
                        Err(e) => {
                            self.note(
                                Some(i),
                                Level::Warn,
                                format!("reading metrics failed, holding the bake clock: {e}"),
                            )
                            .await?
                        }
                    }
                }
                self.check_drift(i, None).await?;
            }
            // A bake never ends on a failing streak (it waits for a pass, or the rollback), nor with
            // evidence still gathering in a growing window.
            // Gathering evidence may extend a bake up to twice its length; past that the bake
            // ends on what was judged (a service too quiet to ever reach min_requests).
            let gathering = pending && Duration::from_secs(baked) < duration * 2;
            if !paused && Duration::from_secs(baked) >= duration && (advisory || (streak == 0 && !gathering)) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            tokio::time::sleep(JOURNAL_POLL.min(next_poll.saturating_duration_since(now))).await;
        }
    }
}
