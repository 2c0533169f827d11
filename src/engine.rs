//! The engine: drives one cutover's saga through the adapters.
//!
//! The loop is always the same: read the journal (which may hold an operator's
//! rollback written by another process), ask the saga what is next, journal the
//! intent, act through [`Traffic`], [`Metrics`] and [`Hooks`], journal the
//! result. Because the state lives in the journal, the same loop finishes a
//! cutover that another process started (`cutover rollback` on a dead run).
//!
//! **Architecture Invariants:**
//! * every state change is journaled before it is acted on;
//! * a bake clock starts only after the weights read back as written, and
//!   counts only closed, settled CloudWatch periods that began after that;
//! * a rollback restores traffic to the live colour before any undo runs;
//! * once rolling back, nothing interrupts it: signals are logged and ignored.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::color::{Color, Split};
use crate::config::{Check, Plan, Step, fmt_permille};
use crate::hooks::{HookError, HookOk, Hooks};
use crate::journal::{self, Journal, JournalError, Reader, Record};
use crate::judge::Judge;
use crate::live_log::Renderer;
use crate::metrics::{self, Metrics};
use crate::saga::{Event, Level, Next, Outcome, Phase, Saga, StepInfo, StepStatus, Trigger};
use crate::traffic::{self, Traffic};

/// How often, at most, the journal is checked for an operator's rollback while a step runs.
const JOURNAL_POLL: Duration = Duration::from_secs(1);
/// How often target health is polled while waiting for a deploy's targets.
const HEALTH_POLL: Duration = Duration::from_secs(2);
/// A difference between the weights read and those last verified must persist over this many
/// further reads, this far apart, to count as drift.
const DRIFT_CONFIRMATIONS: u32 = 3;
const DRIFT_CONFIRM_DELAY: Duration = Duration::from_millis(500);
/// The most periods judged in one poll; more are caught up on the following loop turns.
const CATCH_UP_PERIODS: u64 = 100;
/// How many times restoring traffic is attempted (each bounded by `alb.verify_timeout`) before giving up as unsafe.
const RESTORE_ATTEMPTS: u32 = 3;

/// Wall-clock time driven by tokio's clock, so that tests with a paused clock
/// move CloudWatch windows forward too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: SystemTime,
    mono: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: tokio::time::Instant::now(),
        }
    }
    /// Starts at a given wall time (tests).
    pub fn at(wall: SystemTime) -> Clock {
        Clock {
            wall,
            mono: tokio::time::Instant::now(),
        }
    }
    pub fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }
}

/// Why a step did not complete.
#[derive(Debug, Clone)]
struct Failure {
    trigger: Trigger,
    reason: String,
}

impl Failure {
    fn step(reason: impl Into<String>) -> Failure {
        Failure {
            trigger: Trigger::Step,
            reason: reason.into(),
        }
    }
}

/// An engine that cannot go on: the journal failed or disagrees with itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal holds an event that does not fit the saga's state.
    #[error("journal {path}: {source}")]
    Saga {
        path: String,
        source: crate::saga::IllegalTransition,
    },
    /// Traffic could not be put back on the live colour, or not confirmed.
    #[error("could not confirm traffic back on the live colour: {0}")]
    Traffic(traffic::TrafficError),
}

/// Drives one cutover.
pub struct Engine<T, M, H> {
    pub plan: Plan,
    pub traffic: T,
    pub metrics: M,
    pub hooks: H,
    journal: Journal,
    /// The saga and the journal reader move together: `sync` reads what was appended
    /// (by anyone) and folds it in. Behind mutexes so that a running step can sync too.
    state: Mutex<(Reader, Saga)>,
    live: Color,
    new: Color,
    clock: Clock,
    /// Who is driving, for operator events: `user@host pid N`.
    who: String,
    /// Rendering of events for the live log.
    renderer: Mutex<Renderer>,
}

/// The `Started` event of a new cutover.
pub fn started_event(id: &str, plan: &Plan, live: Color, initial: Split, vars: BTreeMap<String, String>) -> Event {
    Event::Started {
        id: id.to_string(),
        service: plan.service.clone(),
        plan: plan.path.display().to_string(),
        target_arn: plan.alb.target_arn().to_string(),
        live_color: live,
        new_color: live.other(),
        initial,
        steps: plan
            .steps
            .iter()
            .map(|s| StepInfo {
                label: s.label(),
                has_effects: s.has_effects(),
                has_undo: s.undo().is_some(),
            })
            .collect(),
        pid: std::process::id(),
        vars,
    }
}

/// The plan a cutover started with: its saved copy (or, for journals without one, the file),
/// parsed with the original path so that commands still run in the plan's directory. Refuses a
/// plan whose steps differ from the journal's: driving one saga with another plan's steps could
/// run the wrong command at the wrong step.
pub fn journaled_plan(state: &journal::StateDir, id: &str, records: &[Record]) -> Result<Plan, String> {
    let plan = started_plan(state, id, records)?;
    let steps = journal::start_of(records).map(|s| s.steps).unwrap_or_default();
    let labels: Vec<String> = plan.steps.iter().map(|s| s.label()).collect();
    let journaled: Vec<&str> = steps.iter().map(|s| s.label.as_str()).collect();
    if labels != journaled {
        return Err(format!(
            "the plan of {id} no longer matches its journal (steps {} vs {})",
            labels.join(", "),
            journaled.join(", ")
        ));
    }
    Ok(plan)
}

/// The plan a cutover started with, without checking its steps against the journal: enough
/// to find the traffic (its `[alb]`), not to drive the saga.
pub fn started_plan(state: &journal::StateDir, id: &str, records: &[Record]) -> Result<Plan, String> {
    let start = journal::start_of(records).ok_or_else(|| format!("the journal of {id} has no start"))?;
    let path = std::path::PathBuf::from(start.plan);
    let text = match state.saved_plan(id) {
        Some(text) => text,
        None => std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    crate::config::parse(&path, &text).map_err(|e| e.to_string())
}

/// `user@host pid N`: who an operator event came from.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host} pid {}", std::process::id())
}

/// An operator's rollback, from any process: journal the request (a run that is alive sees it
/// within one poll), put all traffic on the live colour and read it back, journal that.
/// Returns the verified weights; the undo chain is left to whoever drives the saga.
pub async fn operator_rollback<T: Traffic>(
    journal: &Journal,
    traffic: &T,
    live: Color,
    verify_timeout: Duration,
    reason: &str,
    by: &str,
) -> Result<Split, EngineError> {
    journal.append(&Event::RollbackRequested {
        trigger: Trigger::Operator,
        reason: reason.to_string(),
        by: by.to_string(),
    })?;
    let split = traffic::set_and_verify(traffic, Split::all_on(live), verify_timeout)
        .await
        .map_err(EngineError::Traffic)?;
    journal.append(&Event::TrafficRestored { split })?;
    Ok(split)
}

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// An engine over an existing journal (new, or left by another process); replays it.
    pub fn open(
        plan: Plan,
        traffic: T,
        metrics: M,
        hooks: H,
        journal: Journal,
        clock: Clock,
    ) -> Result<Self, EngineError> {
        let reader = Reader::new(journal.path());
        let engine = Engine {
            plan,
            traffic,
            metrics,
            hooks,
            journal,
            state: Mutex::new((reader, Saga::default())),
            live: Color::Blue,
            new: Color::Green,
            clock,
            who: whoami(),
            renderer: Mutex::new(Renderer::new()),
        };
        let records = engine.sync()?;
        // Render what is already there so the live log's context (colours, labels) is known.
        {
            let mut r = engine.renderer.lock().unwrap();
            for rec in &records {
                r.render(&rec.event);
            }
        }
        let live = engine.saga().live_color;
        let mut engine = engine;
        if let Some(live) = live {
            engine.live = live;
            engine.new = live.other();
        }
        Ok(engine)
    }

    /// A copy of the saga as of the last sync.
    pub fn saga(&self) -> Saga {
        self.state.lock().unwrap().1.clone()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Reads what was appended to the journal (by anyone) and folds it into the saga.
    fn sync(&self) -> Result<Vec<Record>, EngineError> {
        let mut guard = self.state.lock().unwrap();
        let (reader, saga) = &mut *guard;
        let records = reader.read_new()?;
        for r in &records {
            saga.apply(&r.event).map_err(|source| EngineError::Saga {
                path: self.journal.path().display().to_string(),
                source,
            })?;
        }
        Ok(records)
    }

    /// Journals an event, then shows it in the live log.
    fn emit(&self, event: Event) -> Result<(), JournalError> {
        self.journal.append(&event)?;
        let line = self.renderer.lock().unwrap().render(&event);
        let step = line.step.unwrap_or_default();
        match line.level {
            Level::Info => info!(step = %step, "{}", line.message),
            Level::Warn => warn!(step = %step, "{}", line.message),
            Level::Error => error!(step = %step, "{}", line.message),
        }
        Ok(())
    }

    fn note(&self, step: Option<usize>, level: Level, message: String) -> Result<(), Failure> {
        self.emit(Event::Note { step, level, message })
            .map_err(|e| Failure::step(e.to_string()))
    }

    fn env(&self, step: &str, phase: &str) -> Vec<(String, String)> {
        let Saga { id, vars, .. } = self.saga();
        [
            ("CUTOVER_ID", id),
            ("CUTOVER_SERVICE", self.plan.service.clone()),
            ("CUTOVER_STEP", step.to_string()),
            ("CUTOVER_PHASE", phase.to_string()),
            ("CUTOVER_LIVE_COLOR", self.live.to_string()),
            ("CUTOVER_NEW_COLOR", self.new.to_string()),
            (
                "CUTOVER_NEW_TARGET_GROUP_ARN",
                self.plan.alb.target_group(self.new).to_string(),
            ),
            (
                "CUTOVER_LIVE_TARGET_GROUP_ARN",
                self.plan.alb.target_group(self.live).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(vars.into_iter().map(|(k, v)| (format!("CUTOVER_VAR_{k}"), v)))
        .collect()
    }

    /// Drives the saga to its end. `interrupt` turns `Some(reason)` on SIGINT/SIGTERM:
    /// the cutover then rolls back (and cannot be interrupted any more).
    ///
    /// The same loop resumes a cutover from its journal: a step left running is run again
    /// (a shift that was verified continues its bake with the time already judged).
    pub async fn drive(&mut self, mut interrupt: watch::Receiver<Option<String>>) -> Result<Outcome, EngineError> {
        // Whether this process has itself verified traffic on the live colour during this rollback.
        let mut restored_here = false;
        loop {
            self.sync()?;
            let saga = self.saga();
            match saga.next() {
                Next::Run(i) => {
                    let step = self.plan.steps[i].clone();
                    let resuming = saga.status[i] == StepStatus::Running;
                    if resuming {
                        self.emit(Event::Note {
                            step: Some(i),
                            level: Level::Warn,
                            message: format!("resuming step {} after a restart", step.label()),
                        })?;
                    } else {
                        self.emit(Event::StepStarted { step: i })?;
                    }
                    // A rollback journaled by another process just before this step started wins.
                    self.sync()?;
                    if matches!(self.saga().phase, Phase::RollingBack { .. }) {
                        let reason = "not run: a rollback was requested".to_string();
                        self.emit(Event::StepFailed {
                            step: i,
                            trigger: Trigger::Operator,
                            reason,
                        })?;
                        continue;
                    }
                    let started = tokio::time::Instant::now();
                    let result = tokio::select! {
                        r = self.do_step(i, &step) => r,
                        reason = wait_interrupt(&mut interrupt) => {
                            self.emit(Event::RollbackRequested { trigger: Trigger::Interrupt, reason: reason.clone(), by: self.who.clone() })?;
                            Err(Failure { trigger: Trigger::Interrupt, reason })
                        }
                        reason = wait_operator(self.reader()) => Err(Failure { trigger: Trigger::Operator, reason }),
                    };
                    match result {
                        Ok(()) => self.emit(Event::StepDone {
                            step: i,
                            elapsed_ms: millis(started.elapsed()),
                        })?,
                        Err(f) => self.emit(Event::StepFailed {
                            step: i,
                            trigger: f.trigger,
                            reason: f.reason,
                        })?,
                    }
                }
                Next::RestoreTraffic => self.restore_or_unsafe(&mut restored_here).await?,
                // Whoever drives the undo chain checks the traffic itself first: another process's
                // "restored" may predate a write of this one that was still in flight.
                Next::Undo(_) | Next::Finish { .. }
                    if !restored_here && matches!(saga.phase, Phase::RollingBack { .. }) =>
                {
                    self.restore_or_unsafe(&mut restored_here).await?
                }
                Next::Undo(i) => {
                    let command = self.plan.steps[i]
                        .undo()
                        .cloned()
                        .expect("saga undoes only steps with an undo");
                    let undo = command.undo.expect("undo present");
                    self.emit(Event::UndoStarted { step: i })?;
                    // Undos are not interruptible: a signal now would strand a half-undone step.
                    let result = self
                        .hooks
                        .command(&undo, &self.env(self.plan.steps[i].action(), "undo"), command.timeout)
                        .await;
                    self.hook_event(i, "undo", &undo.join(" "), &result)?;
                    match result {
                        Ok(_) => self.emit(Event::UndoDone { step: i })?,
                        Err(e) => self.emit(Event::UndoFailed {
                            step: i,
                            reason: e.to_string(),
                        })?,
                    }
                }
                Next::Finish { outcome, reason } => {
                    let final_split = self.traffic.read().await.ok().or(saga.verified);
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
                    })?;
                    // An operator's rollback that raced the end of a promotion wins (the saga
                    // ignores a promotion journaled while rolling back): the loop goes on.
                }
                Next::Done => {
                    let (outcome, _) = saga.outcome().expect("done means finished");
                    return Ok(outcome);
                }
            }
        }
    }

    async fn restore_or_unsafe(&self, restored_here: &mut bool) -> Result<(), EngineError> {
        match self.restore().await {
            Ok(split) => {
                *restored_here = true;
                self.emit(Event::TrafficRestored { split })?;
            }
            Err(e) => {
                let reason = format!("UNSAFE: could not confirm traffic back on {}: {e}", self.live);
                self.emit(Event::Finished {
                    outcome: Outcome::Unsafe,
                    reason,
                    final_split: None,
                })?;
            }
        }
        Ok(())
    }

    /// A reader positioned where the engine has read up to.
    fn reader(&self) -> Reader {
        self.state.lock().unwrap().0.clone()
    }

    fn hook_event(
        &self,
        step: usize,
        phase: &str,
        what: &str,
        r: &Result<HookOk, HookError>,
    ) -> Result<(), JournalError> {
        let (ok, detail, elapsed) = match r {
            Ok(ok) => (true, ok.detail.clone(), ok.elapsed),
            Err(e) => (false, e.to_string(), Duration::ZERO),
        };
        self.emit(Event::Hook {
            step,
            phase: phase.into(),
            what: what.into(),
            ok,
            detail,
            elapsed_ms: millis(elapsed),
        })
    }

    /// Puts all traffic back on the live colour: one write, then read-back.
    async fn restore(&self) -> Result<Split, traffic::TrafficError> {
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
        let mut last = None;
        for attempt in 1..=RESTORE_ATTEMPTS {
            match traffic::set_and_verify(&self.traffic, target, self.plan.alb.verify_timeout).await {
                Ok(split) => return Ok(split),
                Err(e) => {
                    error!("restoring traffic, attempt {attempt}/{RESTORE_ATTEMPTS}: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn do_step(&self, i: usize, step: &Step) -> Result<(), Failure> {
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
                let saga = self.saga();
                // Resumed after a restart with the weights already verified: continue the bake
                // (bake() checks the weights are still the verified ones).
                if saga.verified_step != Some(i) {
                    let current = saga.verified.unwrap_or(Split::all_on(self.live));
                    if target.weight(self.new) > current.weight(self.new) {
                        self.require_healthy(i).await?;
                    }
                    // Weights someone else set are never overwritten: drift pauses for an operator.
                    // (Already at the target is no drift: a write that landed before a crash.)
                    self.check_drift(i, Some(target)).await?;
                    self.set_weights(i, target).await?;
                }
                self.bake(i, *bake).await
            }
            Step::Observe { duration } => self.bake(i, *duration).await,
        }
    }

    /// Journals the intent, writes, reads back, journals the verification.
    async fn set_weights(&self, i: usize, target: Split) -> Result<(), Failure> {
        self.emit(Event::WeightIntent { step: i, split: target })
            .map_err(|e| Failure::step(e.to_string()))?;
        let started = tokio::time::Instant::now();
        let split = traffic::set_and_verify(&self.traffic, target, self.plan.alb.verify_timeout)
            .await
            .map_err(|e| Failure::step(format!("setting weights: {e}")))?;
        self.emit(Event::WeightVerified {
            step: i,
            split,
            elapsed_ms: millis(started.elapsed()),
        })
        .map_err(|e| Failure::step(e.to_string()))
    }

    async fn hook_command(&self, i: usize, action: &str, argv: &[String], timeout: Duration) -> Result<(), Failure> {
        self.note(Some(i), Level::Info, format!("running {}", argv.join(" ")))?;
        let result = self.hooks.command(argv, &self.env(action, "run"), timeout).await;
        self.hook_event(i, "run", &argv[0], &result)
            .map_err(|e| Failure::step(e.to_string()))?;
        result.map(|_| ()).map_err(|e| Failure::step(e.to_string()))
    }

    async fn verify(&self, i: usize, checks: &[Check]) -> Result<(), Failure> {
        // Built in: the weights are what was last verified (nobody moved them under us) …
        let split = self
            .traffic
            .read()
            .await
            .map_err(|e| Failure::step(format!("reading weights: {e}")))?;
        let expected = self.saga().verified.unwrap_or(Split::all_on(self.live));
        if (split.blue, split.green, split.others) != (expected.blue, expected.green, expected.others) {
            return Err(Failure::step(format!(
                "weights changed outside cutover: expected {expected}, found {split}"
            )));
        }
        self.note(Some(i), Level::Info, format!("weights as expected: {split}"))?;
        // … the new colour can take traffic …
        self.require_healthy(i).await?;
        // … and no alarm is firing (or misspelt: a missing alarm never fires).
        let alarms = self
            .metrics
            .alarms()
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
            )?;
        }
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
            self.hook_event(i, "check", &what, &result)
                .map_err(|e| Failure::step(e.to_string()))?;
            if let Err(e) = result {
                return Err(Failure::step(format!("check {what}: {e}")));
            }
        }
        Ok(())
    }

    async fn require_healthy(&self, i: usize) -> Result<(), Failure> {
        let min = self.plan.alb.min_healthy_targets;
        let healthy = self
            .traffic
            .healthy_targets(self.new)
            .await
            .map_err(|e| Failure::step(format!("reading target health: {e}")))?;
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
    }

    async fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.require_healthy(i).await {
                Ok(()) => return Ok(()),
                Err(f) if tokio::time::Instant::now() + HEALTH_POLL > deadline => {
                    return Err(Failure::step(format!(
                        "{} after waiting {}",
                        f.reason,
                        humantime::format_duration(timeout)
                    )));
                }
                Err(f) => self.note(
                    Some(i),
                    Level::Info,
                    format!("waiting for healthy targets: {}", f.reason),
                )?,
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Waits, checking the journal each second, until an operator resumes (or rolls back,
    /// which the caller's select notices).
    async fn wait_while_paused(&self) -> Result<(), Failure> {
        loop {
            self.sync().map_err(|e| Failure::step(e.to_string()))?;
            if self.saga().paused.is_none() {
                return Ok(());
            }
            tokio::time::sleep(JOURNAL_POLL).await;
        }
    }

    /// Compares the live weights with the last verified ones (or `also`, a split that is not
    /// drift either). On a difference, records the drift, pauses for an operator, and once
    /// resumed re-applies the verified weights.
    async fn check_drift(&self, i: usize, also: Option<Split>) -> Result<(), Failure> {
        let Some(expected) = self.saga().verified else {
            return Ok(());
        };
        let known = |s: Split| {
            [Some(expected), also]
                .into_iter()
                .flatten()
                .any(|k| (k.blue, k.green) == (s.blue, s.green))
        };
        // ELBv2 reads are eventually consistent: a difference is drift only if it persists
        // over DRIFT_CONFIRMATIONS more reads.
        let mut found = expected;
        for attempt in 0..=DRIFT_CONFIRMATIONS {
            if attempt > 0 {
                tokio::time::sleep(DRIFT_CONFIRM_DELAY).await;
            }
            found = match self.traffic.read().await {
                Ok(f) => f,
                Err(e) if attempt == 0 => {
                    return self.note(Some(i), Level::Warn, format!("reading weights failed: {e}"));
                }
                Err(_) => return Ok(()),
            };
            if known(found) {
                return Ok(());
            }
        }
        // An operator's rollback changes the weights right after journaling its request: that is not drift.
        self.sync().map_err(|e| Failure::step(e.to_string()))?;
        if matches!(self.saga().phase, Phase::RollingBack { .. }) {
            return Err(Failure {
                trigger: Trigger::Operator,
                reason: "rolled back by an operator".into(),
            });
        }
        let err = |e: JournalError| Failure::step(e.to_string());
        self.emit(Event::Drift {
            step: i,
            expected,
            found,
        })
        .map_err(err)?;
        self.emit(Event::Paused {
            by: "cutover".into(),
            reason: format!(
                "weights changed outside cutover (expected {expected}, found {found}); \
                 resume re-applies {expected}, rollback rolls back"
            ),
        })
        .map_err(err)?;
        self.wait_while_paused().await?;
        self.set_weights(i, expected).await
    }

    /// Judges every settled period from the bake's start until `duration` of judged time has
    /// passed. Periods without data hold the clock (unless `on_no_data` says otherwise), and
    /// so does an operator's pause; an operator's promote ends the bake. Progress lives in the
    /// journal (`BakeStarted`, counted `Verdict`s), so a restarted engine continues where it was.
    async fn bake(&self, i: usize, duration: Duration) -> Result<(), Failure> {
        let m = &self.plan.metrics;
        let period = m.period.as_secs().max(1);
        let err = |e: JournalError| Failure::step(e.to_string());
        let mut judge = Judge::new(self.plan.rollback.criteria.clone()).named(self.live);
        // Advisory mode never rolls back, so a failing streak must not hold the bake forever.
        let advisory = self.plan.rollback.criteria.mode == crate::judge::Mode::Advise;
        // A growing window still gathering evidence is judged before the bake may end.
        let mut pending = false;
        let mut streak = 0;
        let (mut from, mut baked) = match self.saga().bakes.get(&i) {
            Some(&(from, _)) => {
                // Resumed: replay this bake's verdicts through a fresh judge to rebuild its state.
                let mut last_end = from;
                let mut baked = 0;
                for r in journal::read_all(self.journal.path()).map_err(|e| Failure::step(e.to_string()))? {
                    if let Event::Verdict {
                        step, verdict, counted, ..
                    } = r.event
                        && step == i
                    {
                        let v = judge.judge(&verdict.window);
                        streak = v.failures;
                        pending = v.evidence_pending;
                        last_end = last_end.max(verdict.window.end);
                        if counted {
                            baked += period;
                        }
                    }
                }
                self.check_drift(i, None).await?;
                (last_end, baked)
            }
            None => {
                let from = metrics::next_boundary(self.clock.now(), m.period);
                self.emit(Event::BakeStarted {
                    step: i,
                    from,
                    duration_secs: duration.as_secs(),
                })
                .map_err(err)?;
                (from, 0)
            }
        };
        let mut next_poll = tokio::time::Instant::now();
        loop {
            self.sync().map_err(|e| Failure::step(e.to_string()))?;
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
                                return Err(Failure {
                                    trigger: Trigger::Judge,
                                    reason: v.reason,
                                });
                            }
                            Some(v) => self.note(Some(i), Level::Warn, v.reason)?,
                            None => {}
                        }
                        true
                    }
                    Err(e) => {
                        self.note(
                            Some(i),
                            Level::Warn,
                            format!("reading alarms failed, holding the bake clock: {e}"),
                        )?;
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
                                .map_err(err)?;
                                if rollback {
                                    return Err(Failure {
                                        trigger: Trigger::Judge,
                                        reason: format!("{} {reason}", self.new),
                                    });
                                }
                            }
                            from = end;
                        }
                        Err(e) => self.note(
                            Some(i),
                            Level::Warn,
                            format!("reading metrics failed, holding the bake clock: {e}"),
                        )?,
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

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
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

/// Resolves when another process journals a rollback of this cutover.
async fn wait_operator(mut reader: Reader) -> String {
    loop {
        tokio::time::sleep(JOURNAL_POLL).await;
        match reader.read_new() {
            Ok(records) => {
                for r in records {
                    if let Event::RollbackRequested {
                        reason,
                        by,
                        trigger: Trigger::Operator,
                    } = r.event
                    {
                        return format!("rolled back by {by}: {reason}");
                    }
                }
            }
            Err(e) => warn!("reading the journal for operator actions: {e}"),
        }
    }
}

/// The JSON summary of a cutover (`--output json`), built from its journal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub id: String,
    pub service: String,
    pub outcome: Option<&'static str>,
    pub reason: Option<String>,
    pub live_color: Option<Color>,
    pub new_color: Option<Color>,
    pub final_weights: Option<serde_json::Value>,
    pub steps: Vec<StepSummary>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepSummary {
    pub action: String,
    pub label: String,
    pub status: crate::saga::StepStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// Builds the summary of a cutover from its journal records.
pub fn summarize(records: &[Record]) -> Summary {
    let mut s = Summary {
        id: String::new(),
        service: String::new(),
        outcome: None,
        reason: None,
        live_color: None,
        new_color: None,
        final_weights: None,
        steps: vec![],
        started_at: None,
        finished_at: None,
    };
    let mut saga = Saga::default();
    for r in records {
        // A summary is best effort: an event the saga rejects is still shown up to there.
        if saga.apply(&r.event).is_err() {
            break;
        }
        match &r.event {
            Event::Started {
                id,
                service,
                live_color,
                new_color,
                steps,
                initial,
                ..
            } => {
                s.id = id.clone();
                s.service = service.clone();
                s.live_color = Some(*live_color);
                s.new_color = Some(*new_color);
                s.started_at = Some(r.at.clone());
                s.final_weights = Some(initial.percents());
                s.steps = steps
                    .iter()
                    .map(|st| StepSummary {
                        action: st.label.split(' ').next().unwrap_or_default().to_string(),
                        label: st.label.clone(),
                        status: crate::saga::StepStatus::Pending,
                        started_at: None,
                        finished_at: None,
                    })
                    .collect();
            }
            Event::StepStarted { step } => s.steps[*step].started_at = Some(r.at.clone()),
            Event::StepDone { step, .. } | Event::StepFailed { step, .. } => {
                s.steps[*step].finished_at = Some(r.at.clone())
            }
            Event::WeightVerified { split, .. } | Event::TrafficRestored { split } => {
                s.final_weights = Some(split.percents())
            }
            Event::Finished {
                outcome,
                reason,
                final_split,
            } => {
                s.outcome = Some(outcome.as_str());
                s.reason = Some(reason.clone());
                s.finished_at = Some(r.at.clone());
                if let Some(split) = final_split {
                    s.final_weights = Some(split.percents());
                }
            }
            _ => {}
        }
    }
    for (st, status) in s.steps.iter_mut().zip(&saga.status) {
        st.status = *status;
    }
    s
}

/// A one-line description of a plan's step list, for the start of the live log.
pub fn describe_steps(plan: &Plan) -> String {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::Shift { permille, bake } => format!(
                "shift {}% (bake {})",
                fmt_permille(*permille),
                humantime::format_duration(*bake)
            ),
            Step::Observe { duration } => {
                format!("observe {}", humantime::format_duration(*duration))
            }
            other => other.label(),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::fakes::{FakeHooks, FakeMetrics, FakeTraffic};
    use crate::journal::{StateDir, read_all};
    use crate::judge::Sample;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    const PLAN: &str = r#"
[service]
name = "svc"
[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/1"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/g/2"
[metrics]
period = "10s"
settle = "10s"
poll_interval = "5s"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.01
min_requests = 10
failures_to_rollback = 2
[[steps]]
action = "verify"
checks = [{ command = ["check"] }]
[[steps]]
action = "deploy"
run = ["deploy"]
undo = ["undeploy"]
[[steps]]
action = "migrate"
run = ["migrate", "up"]
undo = ["migrate", "down"]
[[steps]]
action = "shift"
weight = 50
bake = "30s"
[[steps]]
action = "shift"
weight = 100
bake = "30s"
[[steps]]
action = "observe"
duration = "30s"
"#;

    struct Harness {
        _dir: tempfile::TempDir,
        state: StateDir,
        engine: Engine<FakeTraffic, FakeMetrics, FakeHooks>,
        id: String,
    }

    fn harness(hooks: FakeHooks, metrics: FakeMetrics) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let plan = config::parse(Path::new("plan.toml"), PLAN).unwrap();
        let initial = Split::all_on(Color::Blue);
        let id = "c1".to_string();
        let journal = state.create(&id).unwrap();
        journal
            .append(&started_event(&id, &plan, Color::Blue, initial, Default::default()))
            .unwrap();
        let clock = Clock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let engine = Engine::open(plan, FakeTraffic::new(initial), metrics, hooks, journal, clock).unwrap();
        Harness {
            _dir: dir,
            state,
            engine,
            id,
        }
    }

    fn no_interrupt() -> (watch::Sender<Option<String>>, watch::Receiver<Option<String>>) {
        watch::channel(None)
    }

    fn undos(calls: &[String]) -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.as_str() == "undeploy" || c.as_str() == "migrate down")
            .cloned()
            .collect()
    }

    /// Regression (review): resuming with a plan edited since the start ran the wrong step.
    #[test]
    fn the_journaled_plan_is_used_and_an_edited_plan_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, PLAN).unwrap();
        let plan = config::load(&path).unwrap();
        let (id, journal) = state.create_new().unwrap();
        state.save_plan(&id, &plan.source).unwrap();
        journal
            .append(&started_event(
                &id,
                &plan,
                Color::Blue,
                Split::all_on(Color::Blue),
                Default::default(),
            ))
            .unwrap();
        // Someone edits the file: the cutover still follows the copy it started with.
        std::fs::write(
            &path,
            PLAN.replace(
                "[[steps]]\naction = \"verify\"",
                "[[steps]]\naction = \"verify\"\n[[steps]]\naction = \"verify\"",
            ),
        )
        .unwrap();
        let records = read_all(journal.path()).unwrap();
        let resumed = journaled_plan(&state, &id, &records).unwrap();
        assert_eq!(resumed.steps.len(), plan.steps.len());
        assert_eq!(resumed.path, plan.path, "commands still run in the plan's directory");
        // Without the copy (an older journal), the edited file is refused.
        std::fs::remove_file(dir.path().join("cutovers").join(&id).join("plan.toml")).unwrap();
        let e = journaled_plan(&state, &id, &records).unwrap_err();
        assert!(e.contains("no longer matches its journal"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_cutover_is_promoted() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        let (_tx, rx) = no_interrupt();
        assert_eq!(h.engine.drive(rx).await.unwrap(), Outcome::Promoted);
        assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Green));
        assert_eq!(h.engine.hooks.calls(), ["check", "deploy", "migrate up"]);
        // Every write was read back before its bake: the journal has the intent, then the verification.
        let events: Vec<Event> = read_all(h.engine.journal.path())
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        let verified = events
            .iter()
            .filter(|e| matches!(e, Event::WeightVerified { .. }))
            .count();
        assert_eq!(verified, 2);
        let summary = summarize(&read_all(h.engine.journal.path()).unwrap());
        assert_eq!(summary.outcome, Some("promoted"));
        assert_eq!(
            summary.final_weights,
            Some(serde_json::json!({"blue": 0.0, "green": 100.0}))
        );
        assert_eq!(summary.id, h.id);
    }

    #[tokio::test(start_paused = true)]
    async fn every_step_succeeds_when_run_twice() {
        let h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        for (i, step) in h.engine.plan.steps.iter().enumerate() {
            for attempt in 0..2 {
                let r = h.engine.do_step(i, step).await;
                assert!(r.is_ok(), "step {i} attempt {attempt}: {r:?}");
            }
        }
    }

    /// The steno test: a failure injected at every step in turn unwinds to traffic on the
    /// live colour, with the undo of each completed step run exactly once, in reverse.
    #[tokio::test(start_paused = true)]
    async fn a_failure_at_every_step_unwinds_to_a_clean_slate() {
        let failing_sample = Sample {
            requests: 1000.0,
            errors: 500.0,
            latency: None,
        };
        // (what fails, expected outcome, expected undos)
        let cases: &[(&str, Outcome, &[&str])] = &[
            ("check", Outcome::NotStarted, &[]),
            ("deploy", Outcome::RolledBack, &[]),
            ("migrate up", Outcome::RolledBack, &["undeploy"]),
            ("shift 50%", Outcome::RolledBack, &["migrate down", "undeploy"]),
            ("shift 100%", Outcome::RolledBack, &["migrate down", "undeploy"]),
            ("observe", Outcome::RolledBack, &["migrate down", "undeploy"]),
        ];
        for (fail_at, expected, expected_undos) in cases {
            let hooks = FakeHooks::default();
            if !fail_at.starts_with("shift") && *fail_at != "observe" {
                hooks.failing.lock().unwrap().insert(fail_at.to_string());
            }
            let mut h = harness(hooks, FakeMetrics::healthy(10));
            let metrics = h.engine.metrics.clone();
            let (_tx, rx) = no_interrupt();
            // Metrics turn bad when the step under test starts.
            let step_index = h.engine.plan.steps.iter().position(|s| s.label() == *fail_at);
            let outcome = if let Some(i) = step_index.filter(|_| fail_at.starts_with("shift") || *fail_at == "observe")
            {
                let drive = h.engine.drive(rx);
                tokio::pin!(drive);
                let journal_path = h.state.root().join("cutovers/c1/journal.jsonl");
                loop {
                    tokio::select! {
                        o = &mut drive => break o.unwrap(),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {
                            let started = read_all(&journal_path).unwrap().iter().any(|r| r.event == Event::StepStarted { step: i });
                            if started {
                                metrics.set(failing_sample);
                            }
                        }
                    }
                }
            } else {
                h.engine.drive(rx).await.unwrap()
            };
            assert_eq!(outcome, *expected, "failure at {fail_at}");
            assert_eq!(
                h.engine.traffic.current().holder(),
                Some(Color::Blue),
                "failure at {fail_at}: traffic not on blue"
            );
            assert_eq!(undos(&h.engine.hooks.calls()), *expected_undos, "failure at {fail_at}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_while_baking_rolls_back() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        let (tx, rx) = no_interrupt();
        let interrupt = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            tx.send(Some("interrupted by SIGINT".into())).unwrap();
        };
        let (outcome, ()) = tokio::join!(h.engine.drive(rx), interrupt);
        assert_eq!(outcome.unwrap(), Outcome::RolledBackByOperator);
        assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
        assert_eq!(undos(&h.engine.hooks.calls()), ["migrate down", "undeploy"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_rollback_from_another_process_is_noticed() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        let (_tx, rx) = no_interrupt();
        let other = h.state.open_journal(&h.id).unwrap();
        let operator = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            other
                .append(&Event::RollbackRequested {
                    trigger: Trigger::Operator,
                    reason: "pager".into(),
                    by: "oncall".into(),
                })
                .unwrap();
        };
        let (outcome, ()) = tokio::join!(h.engine.drive(rx), operator);
        assert_eq!(outcome.unwrap(), Outcome::RolledBackByOperator);
        assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
        // Each undo ran exactly once.
        assert_eq!(undos(&h.engine.hooks.calls()), ["migrate down", "undeploy"]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_holds_the_bake_clock() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        h.engine.metrics.set(Sample::default());
        let (_tx, rx) = no_interrupt();
        let drive = h.engine.drive(rx);
        // Ten minutes without traffic: still baking the first shift, nothing decided.
        let r = tokio::time::timeout(Duration::from_secs(600), drive).await;
        assert!(r.is_err(), "the cutover ended without any data");
        let split = *h.engine.traffic.split.lock().unwrap();
        assert_eq!(split, Split::with_new(Color::Green, 500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_rolls_back_at_once() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        let metrics = h.engine.metrics.clone();
        let (_tx, rx) = no_interrupt();
        let alarm = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            metrics.alarms.lock().unwrap().in_alarm.push("svc-5xx".into());
        };
        let (outcome, ()) = tokio::join!(h.engine.drive(rx), alarm);
        assert_eq!(outcome.unwrap(), Outcome::RolledBack);
        let records = read_all(h.engine.journal.path()).unwrap();
        let summary = summarize(&records);
        assert!(summary.reason.unwrap().contains("alarm in ALARM: svc-5xx"));
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_healthy_targets_at_verify_change_nothing() {
        let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10));
        *h.engine.traffic.healthy.lock().unwrap() = (2, 0);
        let (_tx, rx) = no_interrupt();
        assert_eq!(h.engine.drive(rx).await.unwrap(), Outcome::NotStarted);
        assert!(
            h.engine.traffic.writes.lock().unwrap().is_empty(),
            "nothing may be written"
        );
    }

    /// Targets that turn unhealthy after verify and deploy stop the shift before any write.
    #[tokio::test(start_paused = true)]
    async fn too_few_healthy_targets_block_the_shift() {
        let hooks = FakeHooks {
            delay: Duration::from_secs(10),
            ..Default::default()
        };
        let mut h = harness(hooks, FakeMetrics::healthy(10));
        let traffic = h.engine.traffic.clone();
        let (_tx, rx) = no_interrupt();
        // check (10 s), deploy (10 s, then health is checked), migrate (10 s), then the shift:
        // green's targets go unhealthy during the migrate.
        let flap = async {
            tokio::time::sleep(Duration::from_secs(25)).await;
            *traffic.healthy.lock().unwrap() = (2, 0);
        };
        let (outcome, ()) = tokio::join!(h.engine.drive(rx), flap);
        assert_eq!(outcome.unwrap(), Outcome::RolledBack);
        assert!(traffic.writes.lock().unwrap().is_empty(), "no weight may be written");
        let summary = summarize(&read_all(h.engine.journal.path()).unwrap());
        assert!(
            summary
                .reason
                .clone()
                .unwrap()
                .contains("green has 0 healthy targets, needs 1"),
            "{summary:?}"
        );
        assert_eq!(summary.steps[3].status, crate::saga::StepStatus::Failed);
    }
}
