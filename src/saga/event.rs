//! The journal's vocabulary: every [`Event`] a cutover's journal can hold, and the small
//! types they carry. Their serde shapes are the journal format: change them only additively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::color::{Color, Split};
use crate::judge::{Baseline, Verdict};
use crate::traffic::ActionSnapshot;

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
    /// A bake judged nothing for `rollback.stall_timeout` (metrics unreadable, or no data).
    Stalled,
    /// The cutover's owner vanished (its lease ran out) and the daemon that adopted it rolls
    /// it back (`rollback.on_orphan = "rollback"`).
    Orphaned,
    /// The plan's `deadline` for the whole cutover passed.
    Deadline,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Judge => "judge",
            Trigger::Step => "step",
            Trigger::Operator => "operator",
            Trigger::Interrupt => "interrupt",
            Trigger::Stalled => "stalled",
            Trigger::Orphaned => "orphaned",
            Trigger::Deadline => "deadline",
        }
    }
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
        /// The forward action as read at the start (what a restore can write from).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ActionSnapshot>,
        steps: Vec<StepInfo>,
        pid: u32,
        /// Who started it: a token's name (daemon) or a local user name (`cutover run`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_by: Option<String>,
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
        /// The forward action as read back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ActionSnapshot>,
    },
    /// The live colour's recent history, read by verify before any weight was written: the judge
    /// compares the new colour with it where the live colour has no traffic left (at 100 %).
    Baseline {
        step: usize,
        baseline: Baseline,
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
    /// About to run a hook command (`run` or `undo` of a step): from here until its `Hook`
    /// result, what the command did is unknown.
    HookStarted {
        step: usize,
        /// `run` or `undo`.
        phase: String,
        /// The command line.
        what: String,
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
    /// An approval step is waiting for a person's Go or No-Go.
    ApprovalRequested {
        step: usize,
        /// Who may answer (empty: anyone).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        timeout_secs: u64,
    },
    /// Go: a person approved the waiting approval step.
    Approved {
        step: usize,
        by: String,
        reason: String,
    },
    /// No-Go: a person rejected it; the cutover rolls back.
    Rejected {
        step: usize,
        by: String,
        reason: String,
    },
    /// A lifecycle hook (`[[hooks]]`) finished.
    LifecycleHook {
        /// `before_shift`, `after_shift`, `before_promote`, `on_rollback`, `after_promote`
        /// (not `at`: that is the record's own time).
        point: String,
        what: String,
        ok: bool,
        detail: String,
        elapsed_ms: u64,
    },
    /// A process took over a cutover whose owner vanished (its lease was free or ran out).
    Adopted {
        /// The new owner.
        by: String,
        /// Who held the lease last, when the store knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_owner: Option<String>,
        /// What it does with it: `rollback` or `resume` (`rollback.on_orphan`; a daemon resumes
        /// its own cutovers after a restart).
        action: String,
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
