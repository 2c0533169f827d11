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
//!
//! * `mod.rs` (this file): the [`Engine`], its errors, journaling and the live log;
//! * [`drive`](Engine::drive): the loop (`drive.rs`), undo and finish;
//! * `steps.rs`: verify, deploy, migrate, health;
//! * `bake.rs`: judging settled periods until a bake's judged time has passed;
//! * `weights.rs`: set and verify, drift, and restoring the live colour;
//! * [`pace`]: polls on wall-clock ticks, and how late they are;
//! * [`operator`]: operator actions from any process (rollback, pause, resume, promote);
//! * [`start`]: the clean start and the adapters, written once for `cutover run` and the daemon.

mod bake;
mod drive;
mod gates;
pub mod operator;
pub mod pace;
pub mod start;
mod steps;
#[cfg(test)]
mod tests;
mod weights;

pub use operator::operator_rollback;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::color::{Color, Split};
use crate::config::{Plan, Step, fmt_permille};
use crate::hooks::{HookError, HookOk, Hooks};
use crate::journal::{self, Journal, JournalError, Reader, Record};
use crate::live_log::Renderer;
use crate::metrics::Metrics;
use crate::saga::{Event, Level, Phase, Saga, StepInfo, Trigger};
use crate::traffic::{ActionSnapshot, Traffic, TrafficError};

/// How often, at most, the journal is read for operator actions while a step runs.
const JOURNAL_POLL: Duration = Duration::from_secs(1);

/// How often, at most, a remote store (DynamoDB) is read for other processes' appends while a
/// step runs, when nothing says there is something new: at most the plan's `poll_interval`,
/// so an owner reads its journal once a poll (see [`Engine::sync_forward_if_due`]).
const REMOTE_JOURNAL_POLL: Duration = Duration::from_secs(15);

/// The read policy: a read the engine acts on (the weights at verify and before a shift, target
/// health, alarms at verify, the drift check, the weights at the end) that fails with a
/// retryable error (throttling, 5xx, a reset, a timeout) is tried again after 250 ms, doubling
/// to 4 s, with jitter, for up to 60 s in all, on top of the SDK's own attempts. A throttled or
/// briefly unreachable API is not evidence against a release: with 30 % of calls throttled and
/// 10 % failing, the SDK alone loses one read in forty; with this policy, none in practice.
/// Errors that retrying cannot fix (access denied, validation) are not retried.
pub const READ_RETRY: backon::ExponentialBuilder = backon::ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(250))
    .with_max_delay(Duration::from_secs(4))
    .with_jitter()
    .with_total_delay(Some(Duration::from_secs(60)))
    .without_max_times();

/// Runs `read` under [`READ_RETRY`], retrying the errors `retryable` says may pass.
async fn retrying<T, E, Fut>(what: &str, retryable: impl Fn(&E) -> bool, read: impl FnMut() -> Fut) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    use backon::Retryable;
    read.retry(READ_RETRY)
        .sleep(tokio::time::sleep)
        .when(|e| retryable(e))
        .notify(|e, after| warn!("{what}: {e}; trying again in {}ms", after.as_millis()))
        .await
}

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
#[derive(Debug)]
enum Failure {
    /// The step failed, or was stopped by a rollback: the saga turns to rolling back.
    Step { trigger: Trigger, reason: String },
    /// The journal failed: the engine cannot go on (and cannot record a step failure either).
    Journal(JournalError),
}

impl Failure {
    /// A failure of the step itself.
    fn step(reason: impl Into<String>) -> Failure {
        Failure::Step {
            trigger: Trigger::Step,
            reason: reason.into(),
        }
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Failure {
        Failure::Journal(e)
    }
}

/// An engine that cannot go on: the journal failed or disagrees with itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal holds an event that does not fit the saga's state.
    #[error("journal of {id}: {cause}")]
    Saga {
        id: String,
        cause: crate::saga::IllegalTransition,
    },
    /// Traffic could not be put back on the live colour, or not confirmed.
    #[error("could not confirm traffic back on the live colour: {0}")]
    Traffic(TrafficError),
}

impl EngineError {
    /// Whether the engine stopped because its lease was lost: another process owns the cutover
    /// now, and this one must not touch its traffic.
    pub fn lease_lost(&self) -> bool {
        matches!(self, EngineError::Journal(JournalError::Fenced { .. }))
    }
}

/// Drives one cutover.
pub struct Engine<T, M, H> {
    pub plan: Plan,
    pub traffic: T,
    pub metrics: M,
    pub hooks: H,
    journal: Journal,
    /// The saga as of the last sync; behind a mutex so that a running step can sync too.
    saga: Mutex<Saga>,
    /// When the journal was last read, and how many records it had then: a remote store is
    /// read only when something is new or a poll has passed (see [`Engine::journal_read_due`]).
    last_read: Mutex<(tokio::time::Instant, u64)>,
    /// When the journal was last looked at: read, or found not due for a read. The watcher of a
    /// running step looks only when the step itself has not for a while (a bake or a gate looks
    /// every `JOURNAL_POLL`): one look a `JOURNAL_POLL`, not two, and on a remote store no read
    /// of the watcher's in the middle of the step's appends, which the step reads after them.
    looked: Mutex<tokio::time::Instant>,
    /// Whether a bake's poll is under way: on a remote store its watcher then does not read
    /// (the bake reads after the poll's verdicts, and a read in the middle of them is a second
    /// `Query` for the same poll, as a loaded machine showed).
    polling: std::sync::atomic::AtomicBool,
    /// Where the saga has read the journal up to. Held across a read, so that two syncs
    /// never fold the same records twice.
    reader: tokio::sync::Mutex<Reader>,
    live: Color,
    new: Color,
    clock: Clock,
    /// When the plan's `deadline` for the whole cutover passes (on tokio's clock).
    deadline: Option<tokio::time::Instant>,
    /// Who is driving, for operator events: `user@host pid N`.
    who: String,
    /// Rendering of events for the live log.
    renderer: Mutex<Renderer>,
}

/// The `Started` event of a new cutover; `action` is the forward action as read at the start.
pub fn started_event(
    id: &str,
    plan: &Plan,
    live: Color,
    initial: Split,
    action: Option<ActionSnapshot>,
    vars: BTreeMap<String, String>,
    started_by: Option<&str>,
) -> Event {
    Event::Started {
        started_by: started_by.map(str::to_string),
        id: id.to_string(),
        service: plan.service.clone(),
        plan: plan.path.display().to_string(),
        target_arn: plan.alb.target_arn().to_string(),
        live_color: live,
        new_color: live.other(),
        initial,
        action,
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
pub async fn journaled_plan(journal: &Journal, records: &[Record]) -> Result<Plan, String> {
    let plan = started_plan(journal, records).await?;
    let steps = journal::start_of(records).map(|s| s.steps).unwrap_or_default();
    let labels: Vec<String> = plan.steps.iter().map(|s| s.label()).collect();
    let journaled: Vec<&str> = steps.iter().map(|s| s.label.as_str()).collect();
    if labels != journaled {
        return Err(format!(
            "the plan of {} no longer matches its journal (steps {} vs {})",
            journal.id(),
            labels.join(", "),
            journaled.join(", ")
        ));
    }
    Ok(plan)
}

/// The plan a cutover started with, without checking its steps against the journal: enough
/// to find the traffic (its `[alb]`), not to drive the saga.
pub async fn started_plan(journal: &Journal, records: &[Record]) -> Result<Plan, String> {
    let id = journal.id();
    let start = journal::start_of(records).ok_or_else(|| format!("the journal of {id} has no start"))?;
    let path = std::path::PathBuf::from(start.plan);
    let text = match journal.saved_plan().await.map_err(|e| e.to_string())? {
        Some(text) => text,
        None => std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    };
    crate::config::parse(&path, &text).map_err(|e| e.to_string())
}

/// The local user's name: who a person at this terminal is, for approvals and for who started
/// a cutover (the daemon names its callers by their tokens instead).
///
/// `USER`, else `LOGNAME`, else the name `/etc/passwd` gives this process's uid (containers and
/// CI runners often set neither variable), else `uid N`.
pub fn principal() -> String {
    let set = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
    if let Some(user) = set("USER").or_else(|| set("LOGNAME")) {
        return user;
    }
    let Some(uid) = own_uid() else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    user_of_uid(&passwd, uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// This process's real uid, from `/proc/self/status` (no `unsafe` for `getuid`).
fn own_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The name of `uid` in a passwd file's text (`name:x:uid:gid:…` lines).
fn user_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid) && !name.is_empty()).then(|| name.to_string())
    })
}

/// `user@host pid N`: who an operator event came from.
pub fn whoami() -> String {
    let user = principal();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host} pid {}", std::process::id())
}

impl<T: Traffic, M: Metrics, H: Hooks> Engine<T, M, H> {
    /// The weights, read under [`READ_RETRY`].
    async fn read_weights(&self) -> Result<Split, TrafficError> {
        retrying("reading the weights", TrafficError::retryable, || self.traffic.read()).await
    }

    /// The new colour's healthy targets, read under [`READ_RETRY`].
    async fn read_health(&self) -> Result<u32, TrafficError> {
        retrying("reading target health", TrafficError::retryable, || {
            self.traffic.healthy_targets(self.new)
        })
        .await
    }

    /// How long a bake may judge nothing before it rolls back as stalled (`None`: never).
    fn stall_timeout(&self) -> Option<Duration> {
        self.plan.rollback.stall_timeout
    }

    /// An engine over an existing journal (new, or left by another process); replays it.
    pub async fn open(
        plan: Plan,
        traffic: T,
        metrics: M,
        hooks: H,
        journal: Journal,
        clock: Clock,
    ) -> Result<Self, EngineError> {
        let plan_streak_limit = plan.rollback.criteria.failures_to_rollback;
        let mut engine = Engine {
            saga: Mutex::new(Saga::judging(plan.rollback.criteria.clone())),
            last_read: Mutex::new((tokio::time::Instant::now(), 0)),
            looked: Mutex::new(tokio::time::Instant::now()),
            polling: Default::default(),
            reader: tokio::sync::Mutex::new(journal.reader()),
            plan,
            traffic,
            metrics,
            hooks,
            journal,
            live: Color::Blue,
            new: Color::Green,
            clock,
            deadline: None,
            who: whoami(),
            renderer: Mutex::new(Renderer::new().with_streak_limit(plan_streak_limit)),
        };
        let records = engine.sync().await?;
        // Render what is already there so the live log's context (colours, labels) is known.
        {
            let mut r = engine.renderer.lock().unwrap();
            for rec in &records {
                r.render(&rec.event);
            }
        }
        if let Some(live) = engine.saga().live_color {
            engine.live = live;
            engine.new = live.other();
        }
        // The deadline runs from the cutover's start, as journaled: across restarts.
        if let Some(deadline) = engine.plan.deadline
            && let Some(started) = records.iter().find(|r| matches!(r.event, Event::Started { .. }))
            && let Ok(at) = humantime::parse_rfc3339(&started.at)
        {
            let elapsed = SystemTime::now().duration_since(at).unwrap_or_default();
            engine.deadline = Some(tokio::time::Instant::now() + deadline.saturating_sub(elapsed));
        }
        Ok(engine)
    }

    /// A copy of the saga as of the last sync.
    pub fn saga(&self) -> Saga {
        self.saga.lock().unwrap().clone()
    }

    /// Reads the saga as of the last sync without copying it. A copy held across an `.await`
    /// is kept in the cutover's future for as long as it waits there, and the saga carries the
    /// judge (about 7 KB): take what a step needs from it, not the saga.
    pub fn saga_with<R>(&self, read: impl FnOnce(&Saga) -> R) -> R {
        read(&self.saga.lock().unwrap())
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Reads what was appended to the journal (by anyone) and folds it into the saga.
    async fn sync(&self) -> Result<Vec<Record>, EngineError> {
        let mut reader = self.reader.lock().await;
        let records = reader.read_new().await?;
        let now = tokio::time::Instant::now();
        *self.last_read.lock().unwrap() = (now, reader.seq());
        *self.looked.lock().unwrap() = now;
        let mut saga = self.saga.lock().unwrap();
        for r in &records {
            saga.apply(&r.event).map_err(|cause| EngineError::Saga {
                id: self.journal.id().to_string(),
                cause,
            })?;
        }
        Ok(records)
    }

    /// Fails (as a fenced journal would) once this process may no longer act as the owner: a
    /// weight write must never go out after the lease is gone.
    fn ensure_owner(&self) -> Result<(), JournalError> {
        match self.journal.lease() {
            Some(lease) if !lease.is_held() => Err(JournalError::Fenced {
                target: lease.fence().target.clone(),
                token: lease.fence().token,
            }),
            _ => Ok(()),
        }
    }

    /// Syncs, and stops the running step if a rollback has been requested meanwhile: the one
    /// way an operator's rollback (from this process or another) reaches a step.
    async fn sync_forward(&self) -> Result<(), Failure> {
        self.sync().await.map_err(|e| match e {
            EngineError::Journal(e) => Failure::Journal(e),
            other => Failure::step(other.to_string()),
        })?;
        self.stop_if_rolling_back()
    }

    /// Stops the running step if the saga, as of the last sync, is rolling back.
    fn stop_if_rolling_back(&self) -> Result<(), Failure> {
        match self.saga().phase {
            Phase::RollingBack {
                trigger, reason, by, ..
            } => Err(Failure::Step {
                trigger,
                reason: format!("rolled back by {by}: {reason}"),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the periodic read of the journal is due. A local store is read every time (a read
    /// costs a file read). A remote one only when this process appended to the journal since the
    /// last read (the engine's own records, or the daemon's API's operator actions), or when the
    /// plan's poll interval (at most [`REMOTE_JOURNAL_POLL`]) and a quarter have passed: other
    /// processes' actions reach the owner within a poll and a quarter, and the owner reads its
    /// journal once a poll. The quarter: a bake reads after its poll's verdicts, and a poll a
    /// little late (a loaded machine) must not make a second read by the clock just before it.
    fn journal_read_due(&self) -> bool {
        let store = self.journal.store();
        if store.cheap_reads() {
            return true;
        }
        let (at, seq) = *self.last_read.lock().unwrap();
        let poll = self.plan.metrics.poll_interval.min(REMOTE_JOURNAL_POLL);
        let every = poll + poll / 4;
        store.known_len(self.journal.id()).is_none_or(|n| n > seq) || at.elapsed() >= every
    }

    /// [`Engine::sync_forward`] when the journal read is due (see [`Engine::journal_read_due`]);
    /// otherwise only what the saga already knows.
    async fn sync_forward_if_due(&self) -> Result<(), Failure> {
        if self.journal_read_due() {
            return self.sync_forward().await;
        }
        *self.looked.lock().unwrap() = tokio::time::Instant::now();
        self.stop_if_rolling_back()
    }

    /// Resolves when a rollback has been requested (and journaled) while a step runs.
    async fn rollback_requested(&self) -> Failure {
        loop {
            // A step that looks at the journal itself (a bake, a gate: every `JOURNAL_POLL`)
            // keeps the saga fresh; look only when nobody has for a little longer than that.
            let last = *self.looked.lock().unwrap();
            tokio::time::sleep_until(last + JOURNAL_POLL + JOURNAL_POLL / 4).await;
            let polling =
                self.polling.load(std::sync::atomic::Ordering::Relaxed) && !self.journal.store().cheap_reads();
            let checked = if *self.looked.lock().unwrap() > last || polling {
                self.stop_if_rolling_back()
            } else {
                // Counted as a look before it is made: a read that fails (the store unreachable)
                // is tried again a look later, not at once in a loop.
                *self.looked.lock().unwrap() = tokio::time::Instant::now();
                self.sync_forward_if_due().await
            };
            match checked {
                Ok(()) => {}
                Err(Failure::Journal(e)) => warn!("reading the journal for operator actions: {e}"),
                Err(f) => return f,
            }
        }
    }

    /// Journals an event, then shows it in the live log.
    async fn emit(&self, event: Event) -> Result<(), JournalError> {
        self.journal.append(&event).await?;
        self.show(&event);
        Ok(())
    }

    /// Journals events together (one fsync on the state directory), then shows them.
    async fn emit_all(&self, events: Vec<Event>) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        self.journal.append_all(&events).await?;
        for event in &events {
            self.show(event);
        }
        Ok(())
    }

    /// Shows a journaled event in the live log.
    fn show(&self, event: &Event) {
        let line = self.renderer.lock().unwrap().render(event);
        crate::live_log::output::log(&line, Some(self.journal.id()), None);
    }

    async fn note(&self, step: Option<usize>, level: Level, message: String) -> Result<(), JournalError> {
        self.emit(Event::Note { step, level, message }).await
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

    async fn hook_event(
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
        .await
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
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
