//! From journal records to [`Change`]s: what each record means in the notification vocabulary,
//! with the facts a message needs (service, colours, weights, the last verdict's numbers, who
//! rolled back and why). Pure: no IO, no clock.
//!
//! The journal is folded with the same [`CutoverState`] (and so the same saga) as `status` and
//! the daemon, so a notification says what the saga says: a `finished` record the saga ignores
//! (a promotion journaled while an operator's rollback runs) is not notified as `promoted`.
//!
//! The mapping, record → event name:
//!
//! | journal record | event |
//! | --- | --- |
//! | `started` | `started` |
//! | `step_done` | `step_done` |
//! | `approval_requested` / `approved` / `rejected` | `approval_needed` / `approved` / `rejected` |
//! | `drift` | `drift` |
//! | `adopted` | `adopted` |
//! | the `step_failed` or `rollback_requested` that turns the cutover to rolling back, with trigger `stalled` | `stalled` |
//! | `finished` (as the saga accepts it) | its outcome: `promoted`, `rolled_back`, `rolled_back_by_operator`, `not_started`, `unsafe`, `error` |
//!
//! Besides the names, a change says whether the record turned the cutover to rolling back and
//! whether it verified traffic back on the live colour: PagerDuty pages and resolves on those.

use serde_json::Value;

use crate::color::{Color, Split};
use crate::config::notify::EventName;
use crate::journal::Record;
use crate::judge::Verdict;
use crate::saga::{Event, Outcome, Phase, Trigger};
use crate::state::CutoverState;

/// The rollback a cutover is in (or was last in).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub trigger: Trigger,
    pub reason: String,
    /// Who asked (an operator's name), or `cutover` when a step or the judge failed.
    pub by: String,
    /// The outcome it is heading for: `rolled_back`, `rolled_back_by_operator`, or `not_started`
    /// when nothing had changed yet.
    pub heading: Outcome,
    /// The label of the step it began at.
    pub step: Option<String>,
}

/// What a message about a record can say, besides the record itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub id: String,
    pub service: String,
    pub live: Option<Color>,
    pub new: Option<Color>,
    /// The label of the record's step (or of the running step).
    pub step: Option<String>,
    /// The weights as last verified (or as read at the end, for `finished`).
    pub weights: Option<Split>,
    /// The newest verdict: the numbers behind a judge's rollback.
    pub verdict: Option<Verdict>,
    pub rollback: Option<Rollback>,
}

/// One record, as the notifier sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its position in the journal (0 is `started`).
    pub seq: u64,
    /// The record as journaled: `{"at": …, "event": …, …}`.
    pub record: Value,
    /// The event names it carries (usually none or one).
    pub names: Vec<EventName>,
    /// This record turned the cutover to rolling back.
    pub rollback_started: bool,
    /// This record verified traffic back on the live colour during a rollback.
    pub traffic_restored: bool,
    /// This record ended the cutover, with this outcome and reason.
    pub finished: Option<(Outcome, String)>,
    pub facts: Facts,
}

impl Change {
    /// The journal's `event` tag of the record.
    pub fn tag(&self) -> &str {
        self.record["event"].as_str().unwrap_or("")
    }

    /// The record's timestamp (RFC 3339, UTC).
    pub fn at(&self) -> &str {
        self.record["at"].as_str().unwrap_or("")
    }
}

/// A cutover's journal folded so far.
#[derive(Debug, Default)]
pub struct Fold {
    state: CutoverState,
    rollback: Option<Rollback>,
}

impl Fold {
    /// Folds record number `seq` in and says what it means.
    pub fn push(&mut self, seq: u64, r: &Record) -> Change {
        let record = serde_json::to_value(r).unwrap_or(Value::Null);
        let before = self.state.saga().phase.clone();
        self.state.push(r);
        let saga = self.state.saga();
        let after = &saga.phase;
        let rolling_back = |p: &Phase| matches!(p, Phase::RollingBack { .. });
        let rollback_started = !rolling_back(&before) && rolling_back(after);
        // The record's own step, else the step running.
        let label = |i: usize| saga.steps.get(i).map(|s| s.label.clone());
        let step = record["step"]
            .as_u64()
            .map(|i| i as usize)
            .or_else(|| saga.running_step())
            .and_then(label);
        if let Phase::RollingBack {
            trigger, reason, by, ..
        } = after
        {
            let began_at = match (&self.rollback, rollback_started) {
                (Some(rb), false) => rb.step.clone(),
                _ => step.clone(),
            };
            self.rollback = Some(Rollback {
                trigger: *trigger,
                reason: reason.clone(),
                by: by.clone(),
                heading: saga.rollback_outcome(*trigger),
                step: began_at,
            });
        }
        let traffic_restored = matches!(
            (&before, after),
            (
                Phase::RollingBack {
                    traffic_restored: false,
                    ..
                },
                Phase::RollingBack {
                    traffic_restored: true,
                    ..
                }
            )
        );
        let finished = match (&before, after) {
            (Phase::Finished { .. }, _) => None,
            (_, Phase::Finished { outcome, reason }) => Some((*outcome, reason.clone())),
            _ => None,
        };
        let names = names(
            &r.event,
            rollback_started
                .then(|| self.rollback.as_ref().map(|r| r.trigger))
                .flatten(),
            finished.as_ref().map(|(o, _)| *o),
        );
        // Once rolling back (or rolled back), messages are about the step it began at, not the
        // undo running: `rolled back at shift 50%`.
        let in_rollback = rolling_back(after)
            || matches!(
                finished,
                Some((Outcome::RolledBack | Outcome::RolledBackByOperator | Outcome::Unsafe, _))
            );
        let step = match (&self.rollback, in_rollback) {
            (Some(rb), true) => rb.step.clone().or(step),
            _ => step,
        };
        let weights = match &r.event {
            Event::Finished {
                final_split: Some(s), ..
            } => Some(*s),
            _ => saga.verified,
        };
        let summary = &self.state.summary;
        Change {
            seq,
            record,
            names,
            rollback_started,
            traffic_restored,
            finished,
            facts: Facts {
                id: summary.id.clone(),
                service: summary.service.clone(),
                live: summary.live_color,
                new: summary.new_color,
                step,
                weights,
                verdict: self.state.last_verdict.clone(),
                rollback: self.rollback.clone(),
            },
        }
    }
}

/// The event names of a record: from its event, the rollback it started (its trigger), and
/// the outcome it ended the cutover with.
pub fn names(event: &Event, rollback_started: Option<Trigger>, finished: Option<Outcome>) -> Vec<EventName> {
    let mut names = vec![];
    let by_tag = match event {
        Event::Started { .. } => Some(EventName::Started),
        Event::StepDone { .. } => Some(EventName::StepDone),
        Event::Drift { .. } => Some(EventName::Drift),
        Event::Adopted { .. } => Some(EventName::Adopted),
        Event::ApprovalRequested { .. } => Some(EventName::ApprovalNeeded),
        Event::Approved { .. } => Some(EventName::Approved),
        Event::Rejected { .. } => Some(EventName::Rejected),
        _ => None,
    };
    names.extend(by_tag);
    if rollback_started == Some(Trigger::Stalled) {
        names.push(EventName::Stalled);
    }
    names.extend(finished.map(EventName::of_outcome));
    names
}
