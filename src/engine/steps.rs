//! The steps: what each action of a plan does (its undo is in the drive loop).

use std::time::Duration;

use super::bake::Judging;
use super::{Engine, Failure};
use crate::color::Split;
use crate::config::{Check, HookPoint, Step};
use crate::hooks::Hooks;
use crate::judge::Baseline;
use crate::metrics::{Metrics, MetricsError};
use crate::saga::{Event, Level};
use crate::traffic::Traffic;

/// How often target health is polled while waiting for a deploy's targets.
const HEALTH_POLL: Duration = Duration::from_secs(2);

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    pub(super) async fn do_step(&self, i: usize, step: &Step) -> Result<(), Failure> {
        match step {
            Step::Verify { checks } => self.verify(i, checks).await,
            Step::Deploy {
                command,
                healthy_timeout,
            } => {
                self.hook_command(i, "deploy", &command.run, command.timeout).await?;
                self.wait_healthy(i, *healthy_timeout).await
            }
            Step::Migrate { command } => self.hook_command(i, "migrate", &command.run, command.timeout).await,
            Step::Shift { permille, bake } => {
                let target = Split::with_new(self.new, *permille);
                let (verified_step, verified, drifted_before) =
                    self.saga_with(|s| (s.verified_step, s.verified, s.drifted.is_some()));
                // Resumed after a restart with the weights already verified: continue the bake
                // (bake() checks the weights are still the verified ones).
                if verified_step != Some(i) {
                    let current = verified.unwrap_or(Split::all_on(self.live));
                    if target.weight(self.new) > current.weight(self.new) {
                        self.require_healthy(i).await?;
                    }
                    // Weights someone else set are never overwritten: drift pauses for an operator,
                    // and judging goes on meanwhile. (Already at the target is no drift: a write
                    // that landed before a crash.)
                    // (A restart during that pause finds the drift in the saga.)
                    let drifted = drifted_before
                        || match self.detect_drift(i, Some(target)).await? {
                            Some((expected, found)) => {
                                self.pause_for_drift(i, expected, found).await?;
                                true
                            }
                            None => false,
                        };
                    if drifted {
                        self.judge_while(i, Judging::UntilResumed).await?;
                    }
                    self.lifecycle(HookPoint::BeforeShift).await?;
                    if *permille == 1000 {
                        self.lifecycle(HookPoint::BeforePromote).await?;
                    }
                    self.set_weights(i, target).await?;
                    self.lifecycle(HookPoint::AfterShift).await?;
                }
                self.bake(i, *bake).await
            }
            Step::Observe { duration } => self.bake(i, *duration).await,
            Step::Approve { timeout, .. } => self.approve(i, *timeout).await,
        }
    }

    async fn hook_command(&self, i: usize, action: &str, argv: &[String], timeout: Duration) -> Result<(), Failure> {
        self.emit(Event::HookStarted {
            step: i,
            phase: "run".into(),
            what: argv.join(" "),
        })
        .await?;
        let result = self.hooks.command(argv, &self.env(action, "run"), timeout).await;
        self.hook_event(i, "run", &argv[0], &result).await?;
        result.map(|_| ()).map_err(|e| Failure::step(e.to_string()))
    }

    async fn verify(&self, i: usize, checks: &[Check]) -> Result<(), Failure> {
        // Built in: the weights are what was last verified (nobody moved them under us) …
        let split = self
            .read_weights()
            .await
            .map_err(|e| Failure::step(format!("reading weights: {e}")))?;
        let expected = self.saga().verified.unwrap_or(Split::all_on(self.live));
        if (split.blue, split.green, split.others) != (expected.blue, expected.green, expected.others) {
            return Err(Failure::step(format!(
                "weights changed outside cutover: expected {expected}, found {split}"
            )));
        }
        self.note(Some(i), Level::Info, format!("weights as expected: {split}"))
            .await?;
        // … the new colour can take traffic …
        self.require_healthy(i).await?;
        // … and no alarm is firing (or misspelt: a missing alarm never fires).
        let alarms = super::retrying("reading alarms", MetricsError::retryable, || self.metrics.alarms())
            .await
            .map_err(|e| Failure::step(format!("reading alarms: {e}")))?;
        if !alarms.missing.is_empty() {
            return Err(Failure::step(format!(
                "alarms not found in CloudWatch: {}",
                alarms.missing.join(", ")
            )));
        }
        if !alarms.in_alarm.is_empty() {
            return Err(Failure::step(format!(
                "alarms in ALARM: {}",
                alarms.in_alarm.join(", ")
            )));
        }
        if !self.plan.rollback.alarms.is_empty() {
            self.note(
                Some(i),
                Level::Info,
                format!("alarms OK: {}", self.plan.rollback.alarms.join(", ")),
            )
            .await?;
        }
        // … and the judged metrics can be read: exactly the queries every bake sends, over the
        // live colour's recent history. A query CloudWatch refuses (access, a statistic, a
        // dimension) would leave every bake blind: better not to start.
        self.preflight_metrics(i).await?;
        for check in checks {
            let (what, result) = match check {
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
                    self.hooks.command(argv, &self.env("verify", "run"), *timeout).await,
                ),
            };
            self.hook_event(i, "check", &what, &result).await?;
            if let Err(e) = result {
                return Err(Failure::step(format!("check {what}: {e}")));
            }
        }
        Ok(())
    }

    /// Reads the judged metrics over the live colour's recent history (a quarter hour, at least 15
    /// periods: [`Baseline::periods_for`]), in one read with exactly the queries every bake sends.
    /// Before any weight was written, that history is the live colour's **baseline**: it is
    /// journaled for the judge (which compares the new colour with it at 100 %), and a live colour
    /// already failing the plan's thresholds stops the cutover before anything changes.
    async fn preflight_metrics(&self, i: usize) -> Result<(), Failure> {
        let m = &self.plan.metrics;
        let period = m.period.as_secs().max(1);
        let periods = Baseline::periods_for(period);
        let end = crate::metrics::settled_end(self.clock.now(), m.settle, m.period);
        let from = end.saturating_sub(periods * period);
        let windows = super::retrying("reading metrics", MetricsError::retryable, || {
            self.metrics.windows(from, end)
        })
        .await
        .map_err(|e| Failure::step(format!("cannot read the judged metrics: {e}")))?;
        let criteria = &self.plan.rollback.criteria;
        let Some(baseline) = Baseline::from_windows(&windows, criteria) else {
            self.note(
                Some(i),
                Level::Warn,
                format!(
                    "{} serves all traffic, but {} has no request count for it in the last {periods} periods \
                     (LoadBalancer={}, TargetGroup={}): check metrics.namespace and the dimensions, or the judge \
                     will see no traffic",
                    self.live,
                    m.namespace,
                    self.plan.alb.load_balancer_dimension(),
                    crate::config::target_group_dimension(self.plan.alb.target_group(self.live)),
                ),
            )
            .await?;
            return Ok(());
        };
        // Once weights were written the live colour's history is the cutover's own traffic: no
        // baseline, and no judging of it here (the bakes judge it).
        let (wrote_weights, has_baseline) = self.saga_with(|s| (s.wrote_weights, s.baseline.is_some()));
        if wrote_weights {
            return Ok(());
        }
        if !has_baseline {
            self.emit(Event::Baseline {
                step: i,
                baseline: baseline.clone(),
            })
            .await?;
        }
        let failing = baseline.failing(criteria, &self.live.to_string());
        if !failing.is_empty() {
            return Err(Failure::step(format!(
                "{} already fails the plan's thresholds, before anything changed: {}",
                self.live,
                failing.join("; ")
            )));
        }
        Ok(())
    }

    pub(super) async fn require_healthy(&self, i: usize) -> Result<(), Failure> {
        let min = self.plan.alb.min_healthy_targets;
        // An unreadable health check is no evidence against the release: it is retried under
        // READ_RETRY, and only a read that still fails after that fails the step, saying so.
        let healthy = self.read_health().await.map_err(|e| {
            Failure::step(format!(
                "could not read the target health of {} (AWS, after retrying for a minute): {e}",
                self.new
            ))
        })?;
        if healthy < min {
            return Err(Failure::step(format!(
                "{} has {healthy} healthy targets, needs {min}",
                self.new
            )));
        }
        self.note(
            Some(i),
            Level::Info,
            format!("{} has {healthy} healthy targets (min {min})", self.new),
        )
        .await?;
        Ok(())
    }

    async fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.require_healthy(i).await {
                Ok(()) => return Ok(()),
                Err(Failure::Step { reason, .. }) if tokio::time::Instant::now() + HEALTH_POLL > deadline => {
                    return Err(Failure::step(format!(
                        "{reason} after waiting {}",
                        humantime::format_duration(timeout)
                    )));
                }
                Err(Failure::Step { reason, .. }) => {
                    self.note(Some(i), Level::Info, format!("waiting for healthy targets: {reason}"))
                        .await?
                }
                Err(f) => return Err(f),
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }
}
