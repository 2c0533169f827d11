//! The start of a cutover and the adapters that drive it, written once for every caller:
//! `cutover run`, `cutover rollback` (which may drive the undo chain), and the daemon's
//! start and resume.
//!
//! A clean start ([`begin`]), in order:
//!
//! 1. take the lock of the listener or rule (the caller holds it for the whole cutover);
//! 2. refuse when the previous cutover of that target did not finish (traffic may be split);
//! 3. read the weights: one colour must hold all traffic, and it is the live one;
//! 4. create the journal with the plan copy, record it as the target's latest, and journal
//!    `Started` (in that order: the index never points behind a started cutover).
//!
//! Nothing is written to the ALB before the first step runs, so a refusal changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::started_event;
use crate::aws::Clients;
use crate::color::{Color, Split};
use crate::config::Plan;
use crate::hooks::{HookEnv, Processes};
use crate::journal::{Journal, JournalError, Lease, Store};
use crate::metrics::CloudWatch;
use crate::traffic::{Alb, Traffic, TrafficError};

/// The real adapters of one cutover of a plan.
pub struct Adapters {
    pub alb: Alb,
    pub cloudwatch: CloudWatch,
    pub hooks: Processes,
}

/// The adapters for a cutover of `plan` whose new colour is `new`. `secrets` are values no
/// command of the plan may see in its environment (the daemon's API token).
pub fn adapters(clients: &Clients, plan: &Plan, new: Color, secrets: &[String]) -> Adapters {
    let env = HookEnv {
        clean: plan.environment.clean,
        pass: plan.environment.pass.clone(),
        secrets: secrets.to_vec(),
    };
    Adapters {
        alb: Alb::shared(clients.elbv2.clone(), &clients.elb_reads, &plan.alb),
        cloudwatch: cloudwatch(clients, plan, new),
        hooks: Processes::new(plan_dir(plan), clients.http.hooks.clone()).with_env(env),
    }
}

/// The CloudWatch adapter for `plan` with `new` as the new colour, custom metrics included.
pub fn cloudwatch(clients: &Clients, plan: &Plan, new: Color) -> CloudWatch {
    CloudWatch::shared(
        &clients.cloudwatch_reads,
        &plan.metrics,
        &plan.alb,
        new,
        &plan.rollback.alarms,
    )
    .with_custom(&plan.rollback.metrics)
}

/// The directory the plan's commands run in: the plan file's.
pub fn plan_dir(plan: &Plan) -> PathBuf {
    match plan.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Why a cutover did not start. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum NotStarted {
    /// Another process drives a cutover of the same listener or rule.
    #[error("another cutover process holds {target} (lock in the {store})")]
    Busy { target: String, store: String },
    /// The previous cutover of the target did not finish.
    #[error(
        "cutover {id} of {target} did not finish (its process died); traffic may be split. \
         Run `cutover rollback --config {}` to put traffic back and finish it",
        plan.display()
    )]
    Unfinished { id: String, target: String, plan: PathBuf },
    /// The weights could not be read.
    #[error("reading the weights of {target}: {error}")]
    Unreadable { target: String, error: TrafficError },
    /// No colour holds all traffic.
    #[error(
        "no colour holds all traffic, so there is no clean start: {0}. \
         Use `cutover rollback --to blue|green` to choose one"
    )]
    Split(Split),
    /// The journal store failed.
    #[error("{0}")]
    Journal(JournalError),
}

impl From<JournalError> for NotStarted {
    fn from(e: JournalError) -> NotStarted {
        NotStarted::Journal(e)
    }
}

/// A cutover that started cleanly: its journal holds `Started`.
pub struct Started {
    pub id: String,
    /// The owner's journal: its appends are fenced by the lease.
    pub journal: Journal,
    pub live: Color,
    /// The weights found at the start.
    pub split: Split,
    /// The target's lease: keep it for as long as the cutover is driven.
    pub lease: Arc<Lease>,
}

/// Starts a cutover of `plan` cleanly as `owner` (`run alice@ci-7 pid 42`, `serve ops-1`), or
/// says why not (see the module doc).
pub async fn begin<T: Traffic>(
    store: &Arc<dyn Store>,
    plan: &Plan,
    traffic: &T,
    vars: BTreeMap<String, String>,
    owner: &str,
    started_by: &str,
) -> Result<Started, NotStarted> {
    let target = plan.alb.target_arn().to_string();
    let Some(lease) = store.try_lock(&target, owner).await? else {
        return Err(NotStarted::Busy {
            target,
            store: store.describe(),
        });
    };
    if let Some(prev) = store.latest(&target).await?
        && Journal::new(store.clone(), &prev).is_open().await?
    {
        return Err(NotStarted::Unfinished {
            id: prev,
            target,
            plan: plan.path.clone(),
        });
    }
    let split = super::retrying("reading the weights", TrafficError::retryable, || traffic.read())
        .await
        .map_err(|error| NotStarted::Unreadable {
            target: target.clone(),
            error,
        })?;
    let Some(live) = split.holder() else {
        return Err(NotStarted::Split(split));
    };
    let id = store.create(&plan.source).await?;
    let lease = Arc::new(lease);
    let journal = Journal::owned(store.clone(), &id, lease.clone());
    // The index first: it must never point behind a started cutover, or a rollback would act on
    // the previous one. Killed between the two, it points at a journal with no start: a cutover
    // that never began, which blocks nothing and is never rolled back.
    store.set_latest(&target, &id).await?;
    journal
        .append(&started_event(
            &id,
            plan,
            live,
            split,
            traffic.snapshot(),
            vars,
            Some(started_by),
        ))
        .await?;
    Ok(Started {
        id,
        journal,
        live,
        split,
        lease,
    })
}
