//! Operator actions, from any process: a rollback (traffic back on the live colour at once,
//! then the undo chain by whoever drives the saga) and the actions that only append an event
//! for the owner to act on (pause, resume, promote). The daemon's API and the command line
//! (`cutover rollback|pause|resume|promote --config`) both use these, so the rules are the same.

use std::time::Duration;

use super::EngineError;
use crate::color::{Color, Split};
use crate::journal::{Journal, JournalError};
use crate::saga::{Event, Saga, Trigger};
use crate::traffic::{self, Traffic, Writing};

/// An operator's rollback, from any process: journal the request (a run that is alive sees it
/// within one poll), put all traffic on the live colour and read it back, journal that. The
/// write goes out from the forward action the journal knows, without reading first.
/// Returns the verified weights; the undo chain is left to whoever drives the saga.
///
/// Its AWS calls run in the budget's urgent lane ([`crate::budget::urgently`]): they never wait
/// behind other cutovers' polls.
pub async fn operator_rollback<T: Traffic>(
    journal: &Journal,
    traffic: &T,
    live: Color,
    verify_timeout: Duration,
    reason: &str,
    by: &str,
) -> Result<Split, EngineError> {
    crate::budget::urgently(rollback_now(journal, traffic, live, verify_timeout, reason, by)).await
}

async fn rollback_now<T: Traffic>(
    journal: &Journal,
    traffic: &T,
    live: Color,
    verify_timeout: Duration,
    reason: &str,
    by: &str,
) -> Result<Split, EngineError> {
    journal
        .append(&Event::RollbackRequested {
            trigger: Trigger::Operator,
            reason: reason.to_string(),
            by: by.to_string(),
        })
        .await?;
    let records = journal.read_all().await?;
    // A saga that does not replay still has its action: the last one journaled.
    let known = records.iter().rev().find_map(|r| match &r.event {
        Event::WeightVerified { action, .. } | Event::Started { action, .. } => action.clone(),
        _ => None,
    });
    let split = traffic::set_and_verify(
        traffic,
        Split::all_on(live),
        verify_timeout,
        Writing::FromKnown(known.as_ref()),
        traffic::ALWAYS,
    )
    .await
    .map_err(EngineError::Traffic)?;
    journal.append(&Event::TrafficRestored { split }).await?;
    Ok(split)
}

/// An operator action that only appends an event for the cutover's owner to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Hold the bake clock (judging and automatic rollback go on).
    Pause,
    /// Let it run again (after drift: the verified weights are written again first).
    Resume,
    /// End the current bake now.
    Promote,
    /// Go: answer the waiting approval step.
    Approve,
    /// No-Go: answer the waiting approval step; the cutover rolls back.
    Reject,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Promote => "promote",
            Control::Approve => "approve",
            Control::Reject => "reject",
        }
    }
}

/// Why an operator action was refused. Nothing was appended.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The cutover has finished: nothing to pause, resume or promote.
    #[error("cutover {0} has finished")]
    Finished(String),
    /// `resume` of a cutover that is not paused.
    #[error("cutover {0} is not paused")]
    NotPaused(String),
    /// `promote` while no step is baking.
    #[error("cutover {0}: nothing is baking")]
    NothingBaking(String),
    /// `approve` or `reject` while no approval step waits.
    #[error("cutover {0}: no approval is waiting")]
    NothingToApprove(String),
    /// The waiting approval has its answer already: the first one counts.
    #[error("cutover {id}: the approval was already {answer}")]
    AlreadyAnswered { id: String, answer: String },
    /// The plan does not let this person answer this approval.
    #[error("{0}")]
    NotAllowed(String),
    /// The journal does not replay.
    #[error("journal of {id}: {cause}")]
    Corrupt {
        id: String,
        cause: crate::saga::IllegalTransition,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Appends `kind` to an unfinished cutover's journal, recorded with who asked and why. For
/// approvals, `by` is the person's name (a token's, or a local user's): the plan's `approvers`
/// and `require_other` are checked against it here, and again by the engine.
pub async fn control(journal: &Journal, kind: Control, by: &str, reason: Option<&str>) -> Result<Event, ControlError> {
    let id = journal.id().to_string();
    let records = journal.read_all().await?;
    let saga = Saga::replay(records.iter().map(|r| &r.event))
        .map_err(|cause| ControlError::Corrupt { id: id.clone(), cause })?;
    if saga.outcome().is_some() {
        return Err(ControlError::Finished(id));
    }
    let by = by.to_string();
    let reason = |default: &str| reason.map(str::to_string).unwrap_or_else(|| default.into());
    let event = match kind {
        Control::Pause => Event::Paused {
            by,
            reason: reason("paused by an operator"),
        },
        Control::Resume if saga.paused.is_none() => return Err(ControlError::NotPaused(id)),
        Control::Resume => Event::Resumed {
            by,
            reason: reason("resumed by an operator"),
        },
        Control::Promote => {
            let step = saga
                .running_step()
                .filter(|i| saga.bakes.contains_key(i))
                .ok_or(ControlError::NothingBaking(id))?;
            Event::PromoteRequested {
                step,
                by,
                reason: reason("promoted by an operator"),
            }
        }
        Control::Approve | Control::Reject => {
            let step = saga
                .running_step()
                .filter(|i| saga.approvals.get(i).is_some_and(|a| a.requested))
                .ok_or_else(|| ControlError::NothingToApprove(id.clone()))?;
            if let Some((approved, who, why)) = saga.approvals[&step].answers.first() {
                let word = if *approved { "approved" } else { "rejected" };
                return Err(ControlError::AlreadyAnswered {
                    id,
                    answer: format!("{word} by {who} ({why})"),
                });
            }
            let plan = super::journaled_plan(journal, &records)
                .await
                .map_err(ControlError::NotAllowed)?;
            if let crate::config::Step::Approve {
                approvers,
                require_other,
                ..
            } = &plan.steps[step]
            {
                if !approvers.is_empty() && !approvers.contains(&by) {
                    return Err(ControlError::NotAllowed(format!(
                        "{by} may not answer this approval: the approvers are {}",
                        approvers.join(", ")
                    )));
                }
                if *require_other && kind == Control::Approve && saga.started_by.as_deref() == Some(by.as_str()) {
                    return Err(ControlError::NotAllowed(format!(
                        "{by} started this cutover; the plan requires someone else to approve it"
                    )));
                }
            }
            if kind == Control::Approve {
                Event::Approved {
                    step,
                    by,
                    reason: reason("approved"),
                }
            } else {
                Event::Rejected {
                    step,
                    by,
                    reason: reason("rejected"),
                }
            }
        }
    };
    journal.append(&event).await?;
    Ok(event)
}
