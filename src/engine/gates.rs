//! Gates where people and the plan's own checks decide: approval steps (a person's Go or
//! No-Go), lifecycle hooks at named points (`[[hooks]]`), and the cutover's deadline.
//!
//! An approval step, in order:
//!
//! 1. journal `ApprovalRequested` (once: a resumed engine finds it in the saga);
//! 2. wait for an answer (`Approved`/`Rejected`, appended by `cutover approve|reject` or the
//!    API) — judging meanwhile when the new colour has traffic, so a failure still rolls back;
//! 3. an answer from someone the plan does not allow (not in `approvers`, or the person who
//!    started the cutover with `require_other`) is said so and ignored;
//! 4. Go ends the step; No-Go fails it (an operator's rollback); no answer within `timeout`
//!    does what `on_timeout` says.

use std::time::{Duration, SystemTime};

use super::bake::Judging;
use super::{Engine, Failure, millis};
use crate::config::{Check, HookPoint, OnTimeout, Step};
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::saga::{Event, Level, Trigger};
use crate::traffic::Traffic;

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// Runs approval step `i` (see the module doc).
    pub(super) async fn approve(&self, i: usize, timeout: Duration) -> Result<(), Failure> {
        let Step::Approve { approvers, .. } = &self.plan.steps[i] else {
            unreachable!("approve runs approval steps");
        };
        let (requested, traffic_on_new) = self.saga_with(|s| {
            (
                s.approvals.get(&i).is_some_and(|a| a.requested),
                s.verified.is_some_and(|v| v.weight(self.new) > 0),
            )
        });
        if !requested {
            self.emit(Event::ApprovalRequested {
                step: i,
                approvers: approvers.clone(),
                timeout_secs: timeout.as_secs(),
            })
            .await?;
        }
        // The timeout runs from the request, across restarts.
        let asked = self.requested_at(i).await.unwrap_or_else(SystemTime::now);
        let waited = SystemTime::now().duration_since(asked).unwrap_or_default();
        let until = tokio::time::Instant::now() + timeout.saturating_sub(waited);
        if traffic_on_new {
            return self.judge_while(i, Judging::UntilDecided { until }).await;
        }
        let mut seen = 0;
        loop {
            self.sync_forward_if_due().await?;
            if let Some(done) = self.decided(i, until, &mut seen).await? {
                return done;
            }
            tokio::time::sleep(super::JOURNAL_POLL).await;
        }
    }

    /// When approval step `i` was requested (the wall time of its journal record).
    async fn requested_at(&self, i: usize) -> Option<SystemTime> {
        let records = self.journal.read_all().await.ok()?;
        records.iter().find_map(|r| match r.event {
            Event::ApprovalRequested { step, .. } if step == i => humantime::parse_rfc3339(&r.at).ok(),
            _ => None,
        })
    }

    /// The outcome of approval step `i`, once there is one: `Some(Ok)` for Go (or a timeout
    /// that proceeds), `Some(Err)` for No-Go (or a timeout that rolls back). Answers the plan
    /// does not allow are noted and skipped; `seen` counts the answers already looked at. The
    /// answers are the saga's as of the last sync.
    pub(super) async fn decided(
        &self,
        i: usize,
        until: tokio::time::Instant,
        seen: &mut usize,
    ) -> Result<Option<Result<(), Failure>>, Failure> {
        let Step::Approve {
            timeout,
            on_timeout,
            approvers,
            require_other,
        } = &self.plan.steps[i]
        else {
            return Ok(None);
        };
        let (answers, started_by) = self.saga_with(|s| {
            let answers = s.approvals.get(&i).map(|a| a.answers.clone()).unwrap_or_default();
            (answers, s.started_by.clone())
        });
        for (approved, by, reason) in answers.iter().skip(*seen) {
            *seen += 1;
            let refused = if !approvers.is_empty() && !approvers.contains(by) {
                Some(format!("{by} is not one of the approvers ({})", approvers.join(", ")))
            } else if *require_other && started_by.as_deref() == Some(by.as_str()) {
                Some(format!("{by} started this cutover, and the plan requires someone else"))
            } else {
                None
            };
            if let Some(why) = refused {
                let word = if *approved { "approval" } else { "rejection" };
                self.note(Some(i), Level::Warn, format!("{word} ignored: {why}"))
                    .await?;
                continue;
            }
            return Ok(Some(if *approved {
                Ok(())
            } else {
                Err(Failure::Step {
                    trigger: Trigger::Operator,
                    reason: format!("rejected by {by}: {reason}"),
                })
            }));
        }
        if tokio::time::Instant::now() < until {
            return Ok(None);
        }
        let waited = humantime::format_duration(*timeout);
        Ok(Some(match on_timeout {
            OnTimeout::Rollback => Err(Failure::step(format!(
                "no approval within {waited} (on_timeout = rollback)"
            ))),
            OnTimeout::Proceed => {
                self.note(
                    Some(i),
                    Level::Warn,
                    format!("no approval within {waited}: going on (on_timeout = proceed)"),
                )
                .await?;
                Ok(())
            }
        }))
    }

    /// Runs the plan's lifecycle hooks at `at`, in order, journaling each result; the first
    /// failure is returned (before and after hooks fail their step; `on_rollback`'s caller
    /// ignores it).
    pub(super) async fn lifecycle(&self, at: HookPoint) -> Result<(), Failure> {
        for hook in self.plan.hooks.iter().filter(|h| h.at == at) {
            let (what, result) = match &hook.check {
                Check::Http {
                    url,
                    expect_status,
                    timeout,
                } => (
                    format!("GET {url}"),
                    self.hooks.http(url, *expect_status, *timeout).await,
                ),
                Check::Command { argv, timeout } => (
                    argv.join(" "),
                    self.hooks.command(argv, &self.env(at.as_str(), "hook"), *timeout).await,
                ),
            };
            let (ok, detail, elapsed) = match &result {
                Ok(ok) => (true, ok.detail.clone(), ok.elapsed),
                Err(e) => (false, e.to_string(), Duration::ZERO),
            };
            self.emit(Event::LifecycleHook {
                point: at.as_str().into(),
                what: what.clone(),
                ok,
                detail: detail.clone(),
                elapsed_ms: millis(elapsed),
            })
            .await?;
            if !ok {
                return Err(Failure::step(format!("{} hook {what}: {detail}", at.as_str())));
            }
        }
        Ok(())
    }

    /// Resolves when the cutover's deadline passes (never, without one).
    pub(super) async fn deadline_passed(&self) -> Failure {
        match (self.deadline, self.plan.deadline) {
            (Some(at), Some(deadline)) => {
                tokio::time::sleep_until(at).await;
                Failure::Step {
                    trigger: Trigger::Deadline,
                    reason: format!(
                        "the cutover's deadline of {} passed",
                        humantime::format_duration(deadline)
                    ),
                }
            }
            _ => std::future::pending().await,
        }
    }
}
