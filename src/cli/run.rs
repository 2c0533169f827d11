//! `cutover run` and `cutover rollback --config`: the commands that drive a cutover.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::args::Output;
use super::status::{not_started, print_bare, print_summary};
use super::{EXIT_ERROR, EXIT_OK, EXIT_UNSAFE, EXIT_USAGE, signals};
use crate::aws::{Clients, Patience};
use crate::color::{Color, Split};
use crate::config::Plan;
use crate::engine::start::{self, NotStarted};
use crate::engine::{self, Clock, Engine};
use crate::journal::{self, Journal, Store};
use crate::saga::Outcome;
use crate::state::summarize;
use crate::traffic::{self, Alb, Writing};

/// How long `cutover rollback` waits for a run that holds the listener's lock to either
/// finish the undo chain or let go of the lock (then this process finishes it).
const OWNER_WAIT: Duration = Duration::from_secs(30);

/// How long `cutover rollback` waits for a run that holds the lock to journal its start.
const START_WAIT: Duration = Duration::from_secs(5);

/// `cutover run`: one cutover in the foreground; the lock is held until it ends.
pub(super) async fn run(plan: Plan, store: Arc<dyn Store>, output: Output) -> anyhow::Result<i32> {
    let clients = Clients::load(crate::aws::arn_region(&plan.alb.listener_arn), Patience::Driving).await;
    let alb = Alb::new(clients.elbv2.clone(), &plan.alb);
    let owner = format!("run {}", engine::whoami());
    let principal = engine::principal();
    let started = match start::begin(&store, &plan, &alb, Default::default(), &owner, &principal).await {
        Ok(started) => started,
        Err(NotStarted::Journal(e)) => return Err(e.into()),
        Err(e) => return Ok(not_started(&plan, output, e.to_string())),
    };
    // Held for the whole run: one process drives a listener (or rule) at a time, and
    // `cutover rollback` knows from it whether this run is still alive. Released before the
    // process exits, so the next run need not wait for it to run out.
    let lease = started.lease.clone();
    let code = drive(plan, clients, started, output).await;
    lease.release().await;
    code
}

/// The run's cutover, from its start to its summary; the exit code.
async fn drive(plan: Plan, clients: Clients, started: start::Started, output: Output) -> anyhow::Result<i32> {
    let started_lease = started.lease.clone();
    let (id, live, split) = (started.id, started.live, started.split);
    let new = live.other();
    info!(
        id = %id, service = %plan.service,
        "cutover {id} of {}: {live} is live ({split}), {new} is new; steps: {}",
        plan.service, engine::describe_steps(&plan)
    );
    let a = start::adapters(&clients, &plan, new, &[]);
    let journal = started.journal;
    // [[notify]]: a task of its own that tails this journal; the engine knows nothing of it.
    let notifier = crate::notify::Notifier::start(
        &plan,
        &journal,
        crate::notify::Since::Beginning,
        crate::notify::DRAIN_RUN,
        &clients.http.notify,
    );
    let mut engine = Engine::open(plan, a.alb, a.cloudwatch, a.hooks, journal.clone(), Clock::start()).await?;
    let verify_timeout = engine.plan.alb.verify_timeout;
    let outcome = match engine.drive(signals()).await {
        Ok(outcome) => outcome,
        // The lease was lost (the store unreachable for longer than its time-to-live): another
        // process owns the cutover now and acts on it; this one must not touch the traffic.
        Err(e) if e.lease_lost() || !journal.may_act() => {
            error!("{e}; the process that takes the cutover over (a daemon on the same store) acts on it");
            print_bare(&engine.plan, output, Outcome::Error, e.to_string());
            return Ok(EXIT_ERROR);
        }
        // The journal failed (disk full, corrupt): cutover cannot go on, but it must not leave
        // traffic split. Put it back on the live colour and say so.
        Err(e) => {
            error!(
                "cannot go on: {e}; this run still holds the cutover's lease, so it puts traffic back on {live} \
                 itself (the undo chain is left to `cutover rollback`, or to a daemon on a shared store)"
            );
            let known = engine.saga().action;
            let writing = Writing::FromKnown(known.as_ref());
            let may = || journal.may_act();
            return Ok(
                match traffic::set_and_verify(&engine.traffic, Split::all_on(live), verify_timeout, writing, &may).await
                {
                    Ok(split) => {
                        let reason =
                            format!("{e}; traffic restored to {live} ({split}) without running the undo chain");
                        error!("{reason}");
                        print_bare(&engine.plan, output, Outcome::Error, reason);
                        EXIT_ERROR
                    }
                    Err(e2) => {
                        let reason = format!("{e}; and traffic could not be confirmed back on {live}: {e2}");
                        error!("UNSAFE: {reason}");
                        print_bare(&engine.plan, output, Outcome::Unsafe, reason);
                        Outcome::Unsafe.exit_code()
                    }
                },
            );
        }
    };
    print_summary(&summarize(&journal.read_all().await?), output);
    // The outcome is journaled: the next cutover of the target may start while the last
    // notifications go out (for at most DRAIN_RUN).
    started_lease.release().await;
    notifier.finish().await;
    Ok(outcome.exit_code())
}

/// `cutover rollback --config`: traffic back on the live colour of the target's latest
/// cutover (or `--to`), then the undo chain, by the run that owns it or by this process.
pub(super) async fn rollback(
    plan: Plan,
    store: Arc<dyn Store>,
    reason: String,
    to: Option<Color>,
    output: Output,
) -> anyhow::Result<i32> {
    let target = plan.alb.target_arn().to_string();
    // A run that holds the lock but has not yet journaled its cutover is about to: wait for it,
    // so that the rollback is about that cutover and not the previous one.
    let mut latest = store.latest(&target).await?;
    let held = |info: Option<crate::journal::LeaseInfo>| info.is_some_and(|l| l.held);
    if held(store.lease(&target).await?) {
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            let unfinished = match &latest {
                Some(id) => Journal::new(store.clone(), id).is_open().await.unwrap_or(true),
                None => false,
            };
            if unfinished {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            latest = store.latest(&target).await?;
        }
    }
    // The journal tells which colour was live. If it cannot be read, traffic is still restored
    // (to the colour its first line names, or --to): the journal must never stand in the way.
    let recorded = match &latest {
        Some(id) => {
            let journal = Journal::new(store.clone(), id);
            let records = journal.read_all().await;
            let live = records
                .as_ref()
                .ok()
                .and_then(|r| journal::start_of(r))
                .map(|s| s.live_color);
            Some((journal, live, records.err()))
        }
        None => None,
    };
    let live = match (recorded.as_ref().and_then(|r| r.1), to) {
        (Some(live), Some(to)) if live != to => {
            error!(
                "refusing: the latest cutover ({}) started with {live} live, and --to says {to}; drop --to to restore {live}",
                latest.unwrap_or_default()
            );
            return Ok(EXIT_USAGE);
        }
        (Some(live), _) => live,
        (None, Some(to)) => to,
        (None, None) => {
            match &recorded {
                Some((j, _, Some(e))) => error!("cannot read the journal of {}: {e}; pass --to blue|green", j.id()),
                Some((j, None, None)) => error!(
                    "the latest cutover of {target}, {}, never started (its process died before journaling \
                     its start): there is nothing to undo, and no record of the live colour; pass --to blue|green",
                    j.id()
                ),
                _ => error!(
                    "no cutover of {target} is recorded in the {}: pass --to blue|green",
                    store.describe()
                ),
            }
            return Ok(EXIT_USAGE);
        }
    };
    let journal = match recorded {
        // A journal without a start is a cutover that never began: traffic only.
        Some((_, None, None)) => None,
        Some((j, _, None)) => Some(j),
        Some((j, _, Some(e))) => {
            error!(
                "the journal of {} is unreadable ({e}); restoring traffic without it",
                j.id()
            );
            None
        }
        None => None,
    };
    // Someone waits at a terminal, in an incident: each call fails fast on a hung endpoint
    // (the interactive deadlines), and the write and its read-back are still retried until the
    // plan's verify_timeout, so a merely slow or throttled API still gets traffic back.
    let clients = Clients::load(crate::aws::arn_region(&plan.alb.listener_arn), Patience::Interactive).await;
    let alb = Alb::new(clients.elbv2.clone(), &plan.alb);
    let started = Instant::now();
    let by = engine::whoami();
    let restored = match &journal {
        Some(j) => engine::operator_rollback(j, &alb, live, plan.alb.verify_timeout, &reason, &by).await,
        None => crate::budget::urgently(traffic::set_and_verify(
            &alb,
            Split::all_on(live),
            plan.alb.verify_timeout,
            Writing::AfterRead,
            traffic::ALWAYS,
        ))
        .await
        .map_err(engine::EngineError::Traffic),
    };
    let split = match restored {
        Ok(split) => split,
        Err(e) => {
            // The traffic error itself: the engine's wrapper says "could not confirm traffic
            // back" too, and the line would say it twice.
            let why = match &e {
                engine::EngineError::Traffic(t) => t.to_string(),
                other => format!("{other:#}"),
            };
            error!("UNSAFE: could not confirm traffic back on {live}: {why}");
            print_bare(
                &plan,
                output,
                Outcome::Unsafe,
                format!("could not confirm traffic back on {live}: {why}"),
            );
            return Ok(EXIT_UNSAFE);
        }
    };
    info!(
        "traffic back on {live}, confirmed by read-back {}ms after the request: {split}",
        started.elapsed().as_millis()
    );
    let Some(journal) = journal else {
        print_bare(
            &plan,
            output,
            Outcome::RolledBackByOperator,
            format!("{reason} (no journal: traffic only)"),
        );
        return Ok(EXIT_OK);
    };
    let id = journal.id().to_string();

    // The undo chain: a run that is alive holds the lock and runs it within one poll. Wait for it
    // to finish or to let go of the lock; if it lets go (or was dead), finish the saga here.
    let deadline = Instant::now() + OWNER_WAIT;
    let owner = format!("rollback {}", engine::whoami());
    let lock = loop {
        if let Some(lease) = store.try_lock(&target, &owner).await? {
            break Some(std::sync::Arc::new(lease));
        }
        if journal.is_finished().await || Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let outcome = match lock {
        None if journal.is_finished().await => Outcome::RolledBackByOperator,
        None => {
            info!("the run driving cutover {id} is alive and runs the undo chain; `cutover status` shows its progress");
            Outcome::RolledBackByOperator
        }
        Some(lease) => {
            // This process owns the cutover now: its appends are fenced by the lease.
            let journal = Journal::owned(store.clone(), &id, lease.clone());
            // The undo chain follows the plan the cutover started with.
            let records = journal.read_all().await?;
            let plan = match engine::journaled_plan(&journal, &records).await {
                Ok(p) => p,
                Err(e) => {
                    error!("traffic is back on {live}, but the undo chain cannot run: {e}");
                    return Ok(EXIT_ERROR);
                }
            };
            let a = start::adapters(&clients, &plan, live.other(), &[]);
            // [[notify]]: the run that started it is gone, so this process tells the plan's
            // receivers about the rollback, from its request on.
            let requested = records
                .iter()
                .rposition(|r| matches!(r.event, crate::saga::Event::RollbackRequested { .. }))
                .unwrap_or(records.len());
            let notifier = crate::notify::Notifier::start(
                &plan,
                &journal,
                crate::notify::Since::Seq(requested as u64),
                crate::notify::DRAIN_RUN,
                &clients.http.notify,
            );
            let mut engine = Engine::open(plan, a.alb, a.cloudwatch, a.hooks, journal.clone(), Clock::start()).await?;
            // Signals are logged and ignored: nothing interrupts a rollback.
            let outcome = engine.drive(signals()).await;
            lease.release().await;
            notifier.finish().await;
            outcome?
        }
    };
    print_summary(&summarize(&journal.read_all().await?), output);
    // This command did its job unless traffic could not be confirmed back on the live colour;
    // the run that was rolled back exits with the outcome's code (4).
    Ok(if outcome == Outcome::Unsafe {
        EXIT_UNSAFE
    } else {
        EXIT_OK
    })
}
