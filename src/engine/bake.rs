//! Judging: every settled period, until a bake's judged time has passed (or, held before a
//! shift, until an operator resumes).
//!
//! 1. A new bake journals `BakeStarted { from }`, `from` being the first period boundary
//!    after the weights read back; a resumed one takes its progress (judged time, how far
//!    it judged) from the saga, which folded it from the journal. Every bake takes the judge
//!    from the saga: one judge for the whole cutover, whose evidence (the baseline, every
//!    window of every bake) the saga folded from the journal too.
//! 2. Every `poll_interval`, on ticks aligned on the wall clock (see `pace.rs`, so that the
//!    cutovers of a daemon poll together and share their reads): alarms first (ALARM rolls
//!    back at once), then every settled
//!    period since the last one judged, each journaled as a `Verdict` (counted toward the
//!    bake clock unless paused, held, or the alarms could not be read), then a drift check.
//! 3. Drift (someone else changed the weights) pauses the bake clock, and only the clock:
//!    metrics and alarms are judged on, and a failing verdict still rolls back. When an
//!    operator resumes, the verified weights are written again and the bake goes on.
//! 4. Between polls, once a second: the journal (pause, resume, promote, rollback).
//! 5. Judging nothing for `rollback.stall_timeout` (metrics unreadable, or no data at all,
//!    outside an operator's pause) rolls back with trigger `stalled`, saying what could not be
//!    read; an error that retrying cannot fix (access denied, a refused statistic) does so at once.
//! 6. A bake ends after `duration` of judged time, never on a failing streak, not while the
//!    judge's recent window is still gathering toward `min_requests` (up to twice its length),
//!    and not while paused for drift. Ending a bake loses no evidence: the next bake's judge
//!    goes on with it.

use std::time::Duration;

use super::{Engine, Failure, JOURNAL_POLL};
use crate::config::target_group_dimension;
use crate::hooks::Hooks;
use crate::judge::{Judge, Mode, Outcome as VerdictOutcome};
use crate::metrics::{self, Metrics};
use crate::saga::{Event, Level, Trigger};
use crate::traffic::Traffic;

/// The most periods judged in one poll; more are caught up on the following loop turns.
const CATCH_UP_PERIODS: u64 = 100;

/// What a judging loop is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Judging {
    /// A bake of this much judged time (a shift's bake, or an observe step).
    Bake(Duration),
    /// Weights changed outside cutover before a shift: judge until an operator resumes (and the
    /// verified weights are back) or rolls back.
    UntilResumed,
    /// An approval step at a partial weight: judge until a person answers, or `until`.
    UntilDecided { until: tokio::time::Instant },
}

/// Marks a bake's poll under way (see `Engine::polling`) until dropped, however the poll ends.
struct Polling<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Polling<'a> {
    fn start(flag: &'a std::sync::atomic::AtomicBool) -> Polling<'a> {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        Polling(flag)
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// Judges every settled period from the bake's start until `duration` of judged time has
    /// passed. Periods without data hold the clock (unless `on_no_data` says otherwise), and
    /// so does a pause; an operator's promote ends the bake.
    pub(super) async fn bake(&self, i: usize, duration: Duration) -> Result<(), Failure> {
        self.judge_while(i, Judging::Bake(duration)).await
    }

    /// Records a drift found at step `i` and pauses for an operator, unless the journal already
    /// has it (a restart during the pause).
    pub(super) async fn pause_for_drift(
        &self,
        i: usize,
        expected: crate::color::Split,
        found: crate::color::Split,
    ) -> Result<(), Failure> {
        if self.saga().drifted.is_some() {
            return Ok(());
        }
        self.emit(Event::Drift {
            step: i,
            expected,
            found,
        })
        .await?;
        self.emit(Event::Paused {
            by: "cutover".into(),
            reason: format!(
                "weights changed outside cutover (expected {expected}, found {found}); \
                 judging goes on; resume re-applies {expected}, rollback rolls back"
            ),
        })
        .await?;
        Ok(())
    }

    pub(super) async fn judge_while(&self, i: usize, judging: Judging) -> Result<(), Failure> {
        let m = &self.plan.metrics;
        let period = m.period.as_secs().max(1);
        let criteria = &self.plan.rollback.criteria;
        // Advisory mode never rolls back, so a failing streak must not hold the bake forever.
        let advisory = criteria.mode == Mode::Advise;
        // The saga must have folded every verdict journaled so far (the previous bake's last
        // poll, judging held before this shift): its judge is the cutover's one judge.
        self.sync_forward().await?;
        // One judge for the whole cutover: the saga's, which has the journaled baseline and every
        // journaled window, in this process or the one before a restart. (A fresh one only for a
        // saga that does not judge, which the engine never builds.) What the bake needs of the
        // saga, not the saga: a copy would be kept in the bake's future for as long as it lasts.
        // `drifted`: the weights to re-apply when an operator resumes after a drift.
        let (mut judge, resumed, mut drifted) = self.saga_with(|saga| {
            let judge = saga.judge.clone().unwrap_or_else(|| {
                let judge = Judge::new(criteria.clone()).named(self.live);
                match saga.baseline.clone() {
                    Some(b) => judge.with_baseline(b),
                    None => judge,
                }
            });
            (judge, saga.bakes.get(&i).cloned(), saga.drifted)
        });
        let (mut from, mut baked, mut streak, mut pending) = match (judging, resumed) {
            // Resumed: the saga folded this bake's verdicts.
            (Judging::Bake(_), Some(b)) => (b.judged_to, b.baked_secs, b.failures, b.evidence_pending),
            (Judging::Bake(duration), None) => {
                let from = metrics::next_boundary(self.clock.now(), m.period);
                self.emit(Event::BakeStarted {
                    step: i,
                    from,
                    duration_secs: duration.as_secs(),
                })
                .await?;
                (from, 0, judge.failures(), judge.evidence_pending())
            }
            // Held before a shift or at a gate: the judge goes on from where the last bake left it.
            (Judging::UntilResumed | Judging::UntilDecided { .. }, _) => (
                metrics::next_boundary(self.clock.now(), m.period),
                0,
                judge.failures(),
                judge.evidence_pending(),
            ),
        };
        // When judging last made progress (a verdict with data), and why it did not since.
        let mut progress = tokio::time::Instant::now();
        let mut unreadable: Option<String> = None;
        let mut next_poll = tokio::time::Instant::now();
        let mut answers_seen = 0;
        loop {
            self.sync_forward_if_due().await?;
            let (promoted, paused) = self.saga_with(|s| (s.promoted == Some(i), s.paused.is_some()));
            if matches!(judging, Judging::Bake(_)) && promoted {
                return Ok(());
            }
            if let Judging::UntilDecided { until } = judging {
                if let Some(done) = self.decided(i, until, &mut answers_seen).await? {
                    return done;
                }
                // Waiting for a person is not a stall.
                progress = tokio::time::Instant::now();
            }
            if paused {
                // An operator (or a drift) holds the cutover: it is in someone's hands, not stalled.
                progress = tokio::time::Instant::now();
            }
            if let Some(expected) = drifted
                && !paused
            {
                self.set_weights(i, expected).await?;
                drifted = None;
                if judging == Judging::UntilResumed {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= next_poll {
                let _polling = Polling::start(&self.polling);
                let due = next_poll;
                // The next tick after now, not after the last deadline: a long pause must not be
                // followed by a burst of polls.
                next_poll = super::pace::next_tick(&self.clock, m.poll_interval);
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
                    Err(e) if !e.retryable() => return Err(self.cannot_read("alarms", &e)),
                    Err(e) => {
                        self.note(
                            Some(i),
                            Level::Warn,
                            format!("reading alarms failed, holding the bake clock: {e}"),
                        )
                        .await?;
                        unreadable = Some(format!("alarms: {e}"));
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
                            // The poll's verdicts are journaled together (one fsync on the
                            // state directory), up to the first that rolls back, before it is
                            // acted on.
                            let mut verdicts = Vec::with_capacity(windows.len());
                            let mut failed = None;
                            for w in windows {
                                let v = judge.judge(&w);
                                let counted = v.counts_toward_bake && !paused && alarms_read;
                                if counted {
                                    baked += period;
                                }
                                if v.outcome != VerdictOutcome::NoData {
                                    progress = tokio::time::Instant::now();
                                    unreadable = None;
                                }
                                let (rollback, reason) = (v.rollback, v.reason.clone());
                                streak = v.failures;
                                pending = v.evidence_pending;
                                verdicts.push(Event::Verdict {
                                    step: i,
                                    verdict: v,
                                    counted,
                                    baked_secs: baked,
                                });
                                if rollback {
                                    failed = Some(reason);
                                    break;
                                }
                            }
                            self.emit_all(verdicts).await?;
                            if let Some(reason) = failed {
                                return Err(Failure::Step {
                                    trigger: Trigger::Judge,
                                    reason: format!("{} {reason}", self.new),
                                });
                            }
                            from = end;
                        }
                        Err(e) if !e.retryable() => return Err(self.cannot_read("metrics", &e)),
                        Err(e) => {
                            self.note(
                                Some(i),
                                Level::Warn,
                                format!("reading metrics failed, holding the bake clock: {e}"),
                            )
                            .await?;
                            unreadable = Some(format!("metrics: {e}"));
                        }
                    }
                }
                if drifted.is_none()
                    && let Some((expected, found)) = self.detect_drift(i, None).await?
                {
                    self.pause_for_drift(i, expected, found).await?;
                    drifted = Some(expected);
                }
                super::pace::record(due.elapsed(), m.poll_interval);
                if let Some(limit) = self.stall_timeout()
                    && progress.elapsed() >= limit
                {
                    return Err(self.stalled(limit, unreadable.as_deref()));
                }
            }
            if let Judging::Bake(duration) = judging {
                // A bake never ends on a failing streak (it waits for a pass, or the rollback), nor with
                // the judge's recent window still gathering toward min_requests, nor paused for drift.
                // Gathering may extend a bake up to twice its length; past that the bake ends on what
                // was judged (a service too quiet to fill a window), and the next bake's judge goes on
                // with the same evidence.
                let gathering = pending && Duration::from_secs(baked) < duration * 2;
                if !paused
                    && drifted.is_none()
                    && Duration::from_secs(baked) >= duration
                    && (advisory || (streak == 0 && !gathering))
                {
                    return Ok(());
                }
            }
            let now = tokio::time::Instant::now();
            tokio::time::sleep(JOURNAL_POLL.min(next_poll.saturating_duration_since(now))).await;
        }
    }

    /// A read that retrying cannot fix: judging is blind, so the cutover rolls back now.
    fn cannot_read(&self, what: &str, e: &crate::metrics::MetricsError) -> Failure {
        Failure::Step {
            trigger: Trigger::Stalled,
            reason: format!("cannot read {what}, and retrying cannot fix it: {e}"),
        }
    }

    /// Judging made no progress for `limit`: roll back, saying what could not be read.
    fn stalled(&self, limit: Duration, unreadable: Option<&str>) -> Failure {
        let limit = humantime::format_duration(limit);
        let m = &self.plan.metrics;
        let reason = match unreadable {
            Some(what) => format!("judged nothing for {limit}: could not read {what}"),
            None => format!(
                "judged nothing for {limit}: no requests of {} in {} (LoadBalancer={}, TargetGroup={}); \
                 check metrics.namespace and the dimensions",
                self.new,
                m.namespace,
                self.plan.alb.load_balancer_dimension(),
                target_group_dimension(self.plan.alb.target_group(self.new)),
            ),
        };
        Failure::Step {
            trigger: Trigger::Stalled,
            reason,
        }
    }
}
