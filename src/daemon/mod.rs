//! The daemon: `cutover serve`. Many cutovers at once behind a control API, each
//! driven by the same [`Engine`] as `cutover run`, and restarts that lose nothing.
//!
//! Lifecycle:
//!
//! 1. At start, and every few seconds after, every unfinished cutover in the store that
//!    nobody drives (its owner gone: a restart of this daemon, a killed `cutover run`, a dead
//!    replica) is adopted ([`Daemon::rescue`]): this daemon's own resume (the engine replays
//!    the journal, reads the weights again, and goes on), anyone else's follow the plan's
//!    `rollback.on_orphan` (rollback by default).
//! 2. `POST /v1/cutovers` starts a cutover cleanly ([`start::begin`]: the target's lock,
//!    the same one `cutover run` takes; no unfinished predecessor; one colour holding all
//!    traffic) and spawns one task for it.
//! 3. Operator actions are journal events: the engine task sees them within a
//!    second. A rollback puts traffic back before the HTTP response.
//! 4. On SIGTERM the server stops accepting, and the tasks are dropped without
//!    rolling anything back: their journals hold everything, and step 1 resumes
//!    them at the next start.
//!
//! **Architecture Invariant:** the daemon owns its plans; an API caller names a
//! plan and passes variables, never commands.
//!
//! * `mod.rs` (this file): [`serve`], the shared [`Daemon`], spawning and resuming engines;
//! * `api.rs`: the routes, authentication and handlers;
//! * `events.rs`: a cutover's journal as server-sent events, resumed from `Last-Event-ID`;
//! * `cache.rs`: each journal's [`CutoverState`](crate::state::CutoverState), read incrementally;
//! * `prometheus.rs`: `/metrics`;
//! * [`client`]: the command-line clients of the API.

mod api;
mod cache;
pub mod client;
mod events;
mod prometheus;

pub use api::{OPENAPI, router, valid_var_key};

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::aws::Clients;
use crate::config::{OnOrphan, Plan};
use crate::engine::start;
use crate::engine::{self, Clock, Engine};
use crate::journal::{self, Journal, JournalError, Lease, Store};
use crate::saga::{Event, Trigger};

/// How often the daemon looks for cutovers whose owner is gone.
const RESCUE_POLL: Duration = Duration::from_secs(5);
/// With a remote store, a finished journal is read again every this many rescue passes (a minute).
const RESCUE_REREAD_FINISHED: u64 = 12;

/// What `serve` needs.
pub struct Options {
    /// This daemon's name as an owner of cutovers (`--name`, default the host name).
    pub name: String,
    pub plans: PathBuf,
    pub store: Arc<dyn Store>,
    /// The API's callers: `(name, token)`; the name is recorded on what each caller does.
    pub tokens: Vec<(String, String)>,
    /// `--retain`: prune finished cutovers older than this, every [`PRUNE_EVERY`].
    pub retain: Option<Duration>,
}

/// How often a daemon with `--retain` prunes.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Shared state of the daemon.
pub struct Daemon {
    /// How this daemon names itself as an owner: `serve NAME`.
    owner: String,
    plans: PathBuf,
    store: Arc<dyn Store>,
    tokens: Vec<(String, String)>,
    aws: Clients,
    /// The engine task of each cutover this daemon drives.
    tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    cache: cache::Cache,
    shutdown: watch::Receiver<bool>,
    /// Rescue passes so far.
    rescue_passes: std::sync::atomic::AtomicU64,
}

/// Removes a task from the daemon's table when dropped.
struct Forget(Arc<Daemon>, String);

impl Drop for Forget {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.0.tasks.lock() {
            tasks.remove(&self.1);
        }
    }
}

/// The region the plans in `dir` are in, when their ARNs agree on one (the daemon has one set of
/// clients; `AWS_REGION` still wins, see [`crate::aws::load_for`]).
fn plans_region(dir: &std::path::Path) -> Option<String> {
    let mut regions = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Ok(plan) = crate::config::load(&path)
            && let Some(r) = crate::aws::arn_region(&plan.alb.listener_arn)
        {
            regions.insert(r.to_string());
        }
    }
    if regions.len() > 1 {
        warn!(
            "the plans are in several regions ({}): the daemon calls one, so set AWS_REGION",
            regions.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        return None;
    }
    regions.into_iter().next()
}

/// Runs the daemon on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let region = plans_region(&opts.plans);
    let daemon = Arc::new(Daemon {
        owner: format!("serve {}", opts.name),
        plans: opts.plans,
        cache: cache::Cache::new(opts.store.clone()),
        store: opts.store,
        tokens: opts.tokens,
        aws: Clients::load(region.as_deref(), crate::aws::Patience::Driving).await,
        tasks: Mutex::new(HashMap::new()),
        shutdown: stop_rx,
        rescue_passes: Default::default(),
    });
    daemon.rescue().await;
    let rescuer = {
        let d = daemon.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESCUE_POLL).await;
                d.rescue().await;
            }
        })
    };

    let pruner = opts.retain.map(|keep| {
        let d = daemon.clone();
        tokio::spawn(async move {
            loop {
                d.prune(keep).await;
                tokio::time::sleep(PRUNE_EVERY).await;
            }
        })
    });

    let app = router(daemon.clone());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down: cutovers stay journaled and resume at the next start");
        let _ = stop_tx.send(true);
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            println!("listening on https://{addr}");
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(make)
                .await?;
        }
        None => {
            println!("listening on http://{addr}");
            axum_server::from_tcp(listener)?.handle(handle).serve(make).await?;
        }
    }
    // Dropping the tasks stops them where they are; the journal has the rest.
    rescuer.abort();
    if let Some(p) = pruner {
        p.abort();
    }
    for (_, task) in daemon.tasks.lock().unwrap().drain() {
        task.abort();
    }
    Ok(())
}

impl Daemon {
    /// Deletes the journals retention allows ([`journal::retention`]) and forgets their states.
    async fn prune(&self, keep: Duration) {
        let ids = match journal::retention::prunable(&self.store, keep, std::time::SystemTime::now()).await {
            Ok(ids) => ids,
            Err(e) => {
                warn!("retention: cannot read the {}: {e}", self.store.describe());
                return;
            }
        };
        let mut pruned = 0;
        for id in ids {
            if self.drives(&id) {
                continue;
            }
            match self.store.remove(&id).await {
                Ok(()) => {
                    self.cache.forget(&id);
                    pruned += 1;
                }
                Err(e) => {
                    warn!("retention: {e}");
                    return;
                }
            }
        }
        if pruned > 0 {
            info!(
                "retention: pruned {pruned} finished cutover(s) older than {}",
                humantime::format_duration(keep)
            );
        }
    }
}

/// Why an engine could not be spawned.
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("the journal of {0} has no start")]
    NoStart(String),
    #[error("{0}")]
    Plan(String),
}

impl Daemon {
    /// Spawns the task that drives a cutover whose journal exists, as its owner holding `lease`.
    async fn spawn(self: &Arc<Self>, journal: Journal, plan: Plan, lease: Arc<Lease>) -> Result<(), SpawnError> {
        let id = journal.id().to_string();
        let journal = Journal::owned(self.store.clone(), &id, lease.clone());
        let records = journal.read_all().await?;
        let new = journal::start_of(&records)
            .map(|s| s.new_color)
            .ok_or_else(|| SpawnError::NoStart(id.clone()))?;
        let secrets: Vec<String> = self.tokens.iter().map(|(_, t)| t.clone()).collect();
        let a = start::adapters(&self.aws, &plan, new, &secrets);
        // [[notify]]: a task of its own that tails the journal, from where this daemon's part
        // begins (see `notify::Since::daemon`); it ends once the engine task has ended (the
        // notifier dropped) and its queue is sent.
        let notifier = crate::notify::Notifier::start(
            &plan,
            &journal,
            crate::notify::Since::daemon(&records),
            crate::notify::DRAIN_DAEMON,
            &self.aws.http.notify,
        );
        let mut engine = Engine::open(plan, a.alb, a.cloudwatch, a.hooks, journal, Clock::start()).await?;
        let me = self.clone();
        let task_id = id.clone();
        // Held across spawn and insert: a task that ends at once cannot be forgotten before it is listed.
        let mut tasks = self.tasks.lock().unwrap();
        let handle = tokio::spawn(async move {
            let _notifier = notifier;
            // Forget the task however it ends (a panic included), so a later rollback can drive it.
            let _forget = Forget(me.clone(), task_id.clone());
            // No interrupts in the daemon: shutting down never rolls back.
            let (_tx, rx) = watch::channel(None);
            match engine.drive(rx).await {
                Ok(outcome) => info!(id = %task_id, "cutover {task_id}: {}", outcome.as_str()),
                Err(e) => {
                    error!(id = %task_id, "cutover {task_id} stopped: {e}; `cutover rollback` or a restart resumes it")
                }
            }
            // Let the target go for its next cutover (a panic drops the lease, which releases it too).
            lease.release().await;
        });
        tasks.insert(id, handle);
        Ok(())
    }

    /// Whether this daemon runs a task for the cutover.
    fn drives(&self, id: &str) -> bool {
        self.tasks.lock().unwrap().contains_key(id)
    }

    /// Adopts every cutover whose owner is gone. One pass, in order:
    ///
    /// 1. only a started, unfinished cutover that is the latest of its target and that this
    ///    daemon does not drive already;
    /// 2. take its target's lease: when someone holds it, the cutover is driven; when it is free
    ///    (the local lock of a dead process) or ran out (a shared store), its owner is gone;
    /// 3. follow the plan copy in the store (not `--plans`: the cutover may be anyone's);
    /// 4. journal `Adopted`, naming the previous owner and what is done: this daemon's own
    ///    cutovers after a restart resume, anyone else's follow the plan's `rollback.on_orphan`;
    /// 5. with `rollback`, journal an orphaned rollback request (traffic goes back first);
    /// 6. spawn its engine.
    async fn rescue(self: &Arc<Self>) {
        let ids = match self.store.ids().await {
            Ok(ids) => ids,
            Err(e) => {
                error!("cannot list cutovers to rescue: {e}");
                return;
            }
        };
        // A remote store's reads are calls: a journal known to be finished is read again only
        // every RESCUE_REREAD_FINISHED passes (a promoted cutover can still be rolled back).
        let pass = self.rescue_passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let remote = !self.store.cheap_reads();
        for id in ids {
            if self.drives(&id) {
                continue;
            }
            if remote
                && !pass.is_multiple_of(RESCUE_REREAD_FINISHED)
                && self.cache.cached(&id).is_some_and(|s| s.outcome().is_some())
            {
                continue;
            }
            let Ok(state) = self.cache.state(&id).await else {
                continue;
            };
            let Some(target) = state.target_arn.clone() else {
                continue; // Never started: nothing to adopt.
            };
            if state.outcome().is_some() || state.saga().live_color.is_none() {
                continue;
            }
            if self.store.latest(&target).await.ok().flatten().as_deref() != Some(id.as_str()) {
                continue;
            }
            // A read first: a held lease (the common case, polled every few seconds for every
            // driven cutover) costs one read, not a refused conditional write.
            let lease = self.store.lease(&target).await.ok().flatten();
            if lease.as_ref().is_some_and(|l| l.held) {
                continue;
            }
            let previous = lease.map(|l| l.owner);
            let lease = match self.store.try_lock(&target, &self.owner).await {
                Ok(Some(lease)) => Arc::new(lease),
                Ok(None) => continue, // Driven by someone alive.
                Err(e) => {
                    warn!(id = %id, "cannot take the lease of {target} to rescue {id}: {e}");
                    continue;
                }
            };
            if let Err(e) = self.adopt(&id, previous, lease).await {
                error!(id = %id, "cannot adopt {id}: {e}");
            }
        }
    }

    async fn adopt(self: &Arc<Self>, id: &str, previous: Option<String>, lease: Arc<Lease>) -> Result<(), SpawnError> {
        let journal = Journal::owned(self.store.clone(), id, lease.clone());
        let records = journal.read_all().await?;
        let plan = match engine::journaled_plan(&journal, &records).await {
            Ok(plan) => plan,
            Err(e) => {
                // The undo chain cannot be followed, but nobody may be left watching a split:
                // traffic goes back on the live colour at least.
                let start = journal::start_of(&records).ok_or_else(|| SpawnError::NoStart(id.to_string()))?;
                let live = start.live_color;
                let plan = engine::started_plan(&journal, &records)
                    .await
                    .map_err(|e| SpawnError::Plan(e.to_string()))?;
                let alb = crate::traffic::Alb::shared(self.aws.elbv2.clone(), &self.aws.elb_reads, &plan.alb);
                let reason = format!("adopted, but its plan cannot be followed ({e}): traffic only");
                engine::operator_rollback(&journal, &alb, live, plan.alb.verify_timeout, &reason, &self.owner).await?;
                return Err(SpawnError::Plan(e));
            }
        };
        let own = previous.as_deref() == Some(self.owner.as_str());
        let action = if own { OnOrphan::Resume } else { plan.rollback.on_orphan };
        info!(id = %id, "adopting cutover {id} of {} from {}: {}", plan.service, previous.as_deref().unwrap_or("?"), action.as_str());
        journal
            .append(&Event::Adopted {
                by: self.owner.clone(),
                previous_owner: previous.clone(),
                action: action.as_str().to_string(),
            })
            .await?;
        if action == OnOrphan::Rollback {
            journal
                .append(&Event::RollbackRequested {
                    trigger: Trigger::Orphaned,
                    reason: format!(
                        "its owner ({}) stopped driving it: rollback.on_orphan = rollback",
                        previous.as_deref().unwrap_or("unknown")
                    ),
                    by: self.owner.clone(),
                })
                .await?;
        }
        self.spawn(journal, plan, lease).await
    }
}
