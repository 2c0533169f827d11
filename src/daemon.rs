//! The daemon: `cutover serve`. Many cutovers at once behind a control API, each
//! driven by the same [`Engine`] as `cutover run`, and restarts that lose nothing.
//!
//! Lifecycle:
//!
//! 1. At start, every unfinished cutover in the state directory whose plan is in
//!    `--plans` is resumed: its engine replays the journal, reads the weights again,
//!    and continues (a verified bake goes on with the time already judged; weights
//!    that differ from the journal pause it for an operator).
//! 2. `POST /v1/cutovers` takes the listener's lock (the same flock `cutover run`
//!    takes), checks for a clean start, journals `Started`, and spawns one task.
//! 3. Operator actions are journal events: the engine task sees them within a
//!    second. A rollback puts traffic back before the HTTP response.
//! 4. On SIGTERM the server stops accepting, and the tasks are dropped without
//!    rolling anything back: their journals hold everything, and step 1 resumes
//!    them at the next start.
//!
//! **Architecture Invariant:** the daemon owns its plans; an API caller names a
//! plan and passes variables, never commands.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::aws::Clients;
use crate::config::{self, Plan};
use crate::engine::{self, Clock, Engine, summarize};
use crate::hooks::Processes;
use crate::journal::{self, Record, StateDir};
use crate::metrics::CloudWatch;
use crate::saga::{Event, Outcome, Phase, Saga, StepStatus};
use crate::traffic::{Alb, Traffic};

/// The OpenAPI document of the control API, checked in at `api/openapi.json`.
pub const OPENAPI: &str = include_str!("../api/openapi.json");

/// How often an event stream looks for new journal records.
const EVENT_POLL: Duration = Duration::from_millis(200);

/// What `serve` needs.
pub struct Options {
    pub plans: PathBuf,
    pub state: StateDir,
    pub token: String,
}

/// One cutover driven by this daemon.
struct Task {
    handle: tokio::task::JoinHandle<()>,
}

/// What the read endpoints need from one journal, cached by its length: a journal only grows,
/// so an unchanged length means an unchanged digest, and finished cutovers cost one `stat`.
#[derive(Clone)]
struct Digest {
    len: u64,
    state: Value,
    service: String,
    outcome: Option<Outcome>,
    verdicts: BTreeMap<String, u64>,
    /// What started the rollback, for rolled-back or rolling-back cutovers.
    rollback_trigger: Option<String>,
    weights: Option<crate::color::Split>,
    last_window_end: Option<u64>,
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

/// Shared state of the daemon.
pub struct Daemon {
    digests: Mutex<HashMap<String, Digest>>,
    plans: PathBuf,
    state: StateDir,
    token: String,
    aws: Clients,
    tasks: Mutex<HashMap<String, Task>>,
    shutdown: watch::Receiver<bool>,
}

/// An API error: a status and a JSON body `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn err(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

impl From<journal::JournalError> for ApiError {
    fn from(e: journal::JournalError) -> Self {
        err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs the daemon on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        plans: opts.plans,
        state: opts.state,
        token: opts.token,
        aws: Clients::load().await,
        tasks: Mutex::new(HashMap::new()),
        digests: Mutex::new(HashMap::new()),
        shutdown: stop_rx,
    });
    daemon.resume_all().await;

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
    for (_, task) in daemon.tasks.lock().unwrap().drain() {
        task.handle.abort();
    }
    Ok(())
}

/// The routes: `/health` and `/metrics` open, everything under `/v1` behind the token.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let v1 = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/cutovers", post(start).get(list))
        .route("/v1/cutovers/{id}", get(get_one))
        .route("/v1/cutovers/{id}/events", get(events))
        .route("/v1/cutovers/{id}/rollback", post(rollback))
        .route(
            "/v1/cutovers/{id}/pause",
            post(|s, p, c, b| control_action(Control::Pause, s, p, c, b)),
        )
        .route(
            "/v1/cutovers/{id}/resume",
            post(|s, p, c, b| control_action(Control::Resume, s, p, c, b)),
        )
        .route(
            "/v1/cutovers/{id}/promote",
            post(|s, p, c, b| control_action(Control::Promote, s, p, c, b)),
        )
        .route_layer(middleware::from_fn_with_state(daemon.clone(), auth));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(daemon)
}

async fn auth(State(d): State<Arc<Daemon>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's content (its length is not a secret worth hiding).
    if given.len() == d.token.len() && bool::from(given.as_bytes().ct_eq(d.token.as_bytes())) {
        next.run(req).await
    } else {
        err(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `POST /v1/cutovers` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    plan: String,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// Operator action bodies.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
    /// Who is asking (a name for the journal); the client's address is always recorded too.
    #[serde(default)]
    by: Option<String>,
}

/// Plan names are file stems in `--plans`: no paths, no dots.
fn valid_plan_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Variable keys reach hooks as `CUTOVER_VAR_<KEY>`.
pub fn valid_var_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", e.body_text()),
        )
    })
}

impl Daemon {
    /// The digest of a journal, recomputed only when the journal grew.
    fn digest(&self, id: &str) -> Option<Digest> {
        let path = self.state.journal_path(id);
        let len = std::fs::metadata(&path).ok()?.len();
        if let Some(d) = self.digests.lock().unwrap().get(id)
            && d.len == len
        {
            return Some(d.clone());
        }
        let records = journal::read_all(&path).ok()?;
        let saga = Saga::replay(records.iter().map(|r| &r.event)).ok()?;
        let mut verdicts = BTreeMap::new();
        let mut last_window_end = None;
        for r in &records {
            if let Event::Verdict { verdict, .. } = &r.event {
                *verdicts.entry(verdict.outcome.as_str().to_string()).or_default() += 1;
                last_window_end = Some(verdict.window.end);
            }
        }
        let outcome = saga.outcome().map(|(o, _)| o);
        let rolling_back = matches!(saga.phase, Phase::RollingBack { .. })
            || matches!(outcome, Some(Outcome::RolledBack | Outcome::RolledBackByOperator));
        let digest = Digest {
            len,
            state: state_of(&records),
            service: journal::start_of(&records)
                .map(|s| s.service.to_string())
                .unwrap_or_default(),
            outcome,
            verdicts,
            rollback_trigger: rolling_back.then(|| first_trigger(&records)),
            weights: saga.verified,
            last_window_end,
        };
        self.digests.lock().unwrap().insert(id.to_string(), digest.clone());
        Some(digest)
    }

    fn records(&self, id: &str) -> ApiResult<Vec<Record>> {
        if !valid_id(id) || !self.state.journal_path(id).exists() {
            return Err(err(StatusCode::NOT_FOUND, format!("no cutover {id}")));
        }
        Ok(journal::read_all(&self.state.journal_path(id))?)
    }

    fn load_plan(&self, name: &str) -> ApiResult<Plan> {
        if !valid_plan_name(name) {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("invalid plan name {name:?}: letters, digits, - and _"),
            ));
        }
        let path = self.plans.join(format!("{name}.toml"));
        if !path.exists() {
            return Err(err(
                StatusCode::NOT_FOUND,
                format!("no plan {name} in {}", self.plans.display()),
            ));
        }
        config::load(&path).map_err(|e| err(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid plan: {e}")))
    }

    /// Spawns the task that drives a cutover whose journal exists. `lock` is the listener's lock.
    fn spawn(self: &Arc<Self>, id: String, plan: Plan, lock: std::fs::File) -> ApiResult<()> {
        let journal = self.state.open_journal(&id)?;
        let records = journal::read_all(journal.path())?;
        let new = journal::start_of(&records).map(|s| s.new_color).ok_or_else(|| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("journal of {id} has no start"),
            )
        })?;
        let alb = Alb::new(self.aws.elbv2.clone(), &plan.alb);
        let metrics = CloudWatch::new(
            self.aws.cloudwatch.clone(),
            &plan.metrics,
            &plan.alb,
            new,
            &plan.rollback.alarms,
        )
        .with_custom(&plan.rollback.metrics);
        let hooks = Processes::new(plan.path.parent().map(Path::to_path_buf).unwrap_or_default());
        let mut engine = Engine::open(plan, alb, metrics, hooks, journal, Clock::start())
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let me = self.clone();
        let task_id = id.clone();
        // Held across spawn and insert: a task that ends at once cannot be forgotten before it is listed.
        let mut tasks = self.tasks.lock().unwrap();
        let handle = tokio::spawn(async move {
            let _lock = lock;
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
        });
        tasks.insert(id, Task { handle });
        Ok(())
    }

    /// Resumes every unfinished cutover whose plan is one of ours.
    async fn resume_all(self: &Arc<Self>) {
        let ids = match self.state.ids() {
            Ok(ids) => ids,
            Err(e) => {
                error!("cannot list cutovers to resume: {e}");
                return;
            }
        };
        for id in ids {
            let Ok(records) = journal::read_all(&self.state.journal_path(&id)) else {
                continue;
            };
            let Ok(saga) = Saga::replay(records.iter().map(|r| &r.event)) else {
                error!(id = %id, "journal of {id} does not replay; not resuming it");
                continue;
            };
            if saga.outcome().is_some() {
                continue;
            }
            let Some((plan_path, target)) =
                journal::start_of(&records).map(|s| (PathBuf::from(s.plan), s.target_arn.to_string()))
            else {
                continue;
            };
            if plan_path.parent() != Some(self.plans.as_path())
                && plan_path.parent() != std::path::absolute(&self.plans).ok().as_deref()
            {
                continue; // A `cutover run` of some other plan: not ours to drive.
            }
            let plan = match engine::journaled_plan(&self.state, &id, &records) {
                Ok(p) => p,
                Err(e) => {
                    error!(id = %id, "cannot resume {id}: {e}");
                    continue;
                }
            };
            let lock = match self.state.try_lock_target(&target) {
                Ok(Some(lock)) => lock,
                _ => {
                    warn!(id = %id, "cannot resume {id}: another process holds {target}");
                    continue;
                }
            };
            info!(id = %id, "resuming cutover {id} of {}", plan.service);
            if let Err(e) = self.spawn(id.clone(), plan, lock) {
                error!(id = %id, "cannot resume {id}: {}", e.1);
            }
        }
    }

    fn live_and_plan(&self, records: &[Record]) -> ApiResult<(crate::color::Color, Plan)> {
        let start =
            journal::start_of(records).ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "journal has no start"))?;
        let plan = engine::journaled_plan(&self.state, start.id, records)
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot load the plan: {e}")))?;
        Ok((start.live_color, plan))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn caller(by: Option<String>, addr: SocketAddr) -> String {
    match by.filter(|b| !b.trim().is_empty()) {
        Some(by) => format!("{} (API, {addr})", by.chars().take(100).collect::<String>()),
        None => format!("API client {addr}"),
    }
}

async fn start(
    State(d): State<Arc<Daemon>>,
    b: Result<Json<StartBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let b = body(b)?;
    if let Some(k) = b.vars.keys().find(|k| !valid_var_key(k)) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid variable name {k:?}: use A-Z, 0-9 and _"),
        ));
    }
    if let Some((k, _)) = b.vars.iter().find(|(_, v)| v.len() > 4096 || v.contains('\0')) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("variable {k}: value too long or contains NUL"),
        ));
    }
    let plan = d.load_plan(&b.plan)?;
    let target = plan.alb.target_arn().to_string();
    let Some(lock) = d.state.try_lock_target(&target)? else {
        return Err(err(StatusCode::CONFLICT, format!("another cutover holds {target}")));
    };
    if let Some(prev) = d.state.latest(&target)? {
        let records = journal::read_all(&d.state.journal_path(&prev))?;
        let finished = Saga::replay(records.iter().map(|r| &r.event))
            .map(|s| s.outcome().is_some())
            .unwrap_or(false);
        if !finished {
            return Err(err(
                StatusCode::CONFLICT,
                format!("cutover {prev} of {target} did not finish; roll it back first"),
            ));
        }
    }
    let alb = Alb::new(d.aws.elbv2.clone(), &plan.alb);
    let split = alb
        .read()
        .await
        .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("reading weights: {e}")))?;
    let Some(live) = split.holder() else {
        return Err(err(
            StatusCode::CONFLICT,
            format!("no colour holds all traffic ({split}): not a clean start; roll back to one colour first"),
        ));
    };
    let (id, journal) = d.state.create_new()?;
    d.state.save_plan(&id, &plan.source)?;
    journal.append(&engine::started_event(&id, &plan, live, split, b.vars))?;
    d.state.set_latest(&target, &id)?;
    info!(id = %id, "cutover {id} of {} started: {live} is live", plan.service);
    d.spawn(id.clone(), plan, lock)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// The summary plus `step`, `weights`, `last_verdict` and `paused`.
fn state_of(records: &[Record]) -> Value {
    let summary = summarize(records);
    let saga = Saga::replay(records.iter().map(|r| &r.event)).unwrap_or_default();
    let step = saga
        .status
        .iter()
        .position(|s| *s == StepStatus::Running)
        .map(|i| saga.steps[i].label.clone());
    let last_verdict = records.iter().rev().find_map(|r| match &r.event {
        Event::Verdict { verdict, .. } => Some(serde_json::to_value(verdict).unwrap_or(Value::Null)),
        _ => None,
    });
    let mut v = serde_json::to_value(&summary).unwrap_or(Value::Null);
    v["step"] = json!(step);
    v["weights"] = json!(saga.verified.map(|s| s.percents()));
    v["last_verdict"] = json!(last_verdict);
    v["paused"] = json!(saga.paused);
    v["phase"] = json!(match saga.phase {
        Phase::New => "new",
        Phase::Forward => "running",
        Phase::RollingBack { .. } => "rolling_back",
        Phase::Finished { .. } => "finished",
    });
    v
}

async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let mut ids = d.state.ids()?;
    ids.reverse();
    let all: Vec<Value> = ids.iter().filter_map(|id| d.digest(id)).map(|c| c.state).collect();
    Ok(Json(json!({ "cutovers": all })))
}

async fn get_one(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state_of(&d.records(&id)?)))
}

/// Server-sent events: every journal record from the start, then new ones as they come,
/// until the cutover finishes (or the daemon shuts down).
async fn events(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    d.records(&id)?;
    let reader = journal::Reader::new(&d.state.journal_path(&id));
    let shutdown = d.shutdown.clone();
    // The stream ends once everything written so far is sent and the saga has finished (as the
    // saga sees it: a promotion journaled while an operator's rollback runs is not the end).
    let stream = futures_util::stream::unfold(
        (
            reader,
            std::collections::VecDeque::<Record>::new(),
            Saga::default(),
            shutdown,
            0u64,
        ),
        |(mut reader, mut queue, mut saga, shutdown, mut n)| async move {
            loop {
                if let Some(r) = queue.pop_front() {
                    n += 1;
                    let _ = saga.apply(&r.event);
                    let data = serde_json::to_string(&r).unwrap_or_default();
                    let ev = SseEvent::default().event("record").id(n.to_string()).data(data);
                    return Some((Ok(ev), (reader, queue, saga, shutdown, n)));
                }
                if *shutdown.borrow() {
                    return None;
                }
                match reader.read_new() {
                    Ok(records) if !records.is_empty() => queue.extend(records),
                    Ok(_) if saga.outcome().is_some() => return None,
                    Ok(_) => tokio::time::sleep(EVENT_POLL).await,
                    Err(e) => {
                        warn!("event stream: {e}");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn rollback(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    b: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = optional_body(b)?;
    let records = d.records(&id)?;
    // The undo chain needs the plan the cutover started with; restoring traffic only needs its
    // ALB section, so a plan that no longer matches the journal still gets traffic back.
    let (live, plan, undo_blocked) = match d.live_and_plan(&records) {
        Ok((live, plan)) => (live, plan, None),
        Err(e) => {
            let live = journal::start_of(&records).map(|s| s.live_color).ok_or(e)?;
            let plan = engine::started_plan(&d.state, &id, &records)
                .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot load the plan: {e}")))?;
            (
                live,
                plan,
                Some("the plan no longer matches the journal; the undo chain was not run".to_string()),
            )
        }
    };
    let target = plan.alb.target_arn().to_string();
    if d.state.latest(&target)?.as_deref() != Some(id.as_str()) {
        return Err(err(
            StatusCode::CONFLICT,
            format!("{id} is not the latest cutover of {target}"),
        ));
    }
    let journal = d.state.open_journal(&id)?;
    let alb = Alb::new(d.aws.elbv2.clone(), &plan.alb);
    let reason = b.reason.unwrap_or_else(|| "operator rollback".into());
    let by = caller(b.by, addr);
    // Traffic is back on the live colour, verified, before this response is sent.
    let split = engine::operator_rollback(&journal, &alb, live, plan.alb.verify_timeout, &reason, &by)
        .await
        .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("UNSAFE: {e}")))?;
    // The undo chain: the cutover's task runs it; if none is running, start one to finish the saga.
    // (Not when the saga already finished: the task ran the undos before this handler got here.)
    let running = d.tasks.lock().unwrap().contains_key(&id);
    if undo_blocked.is_none()
        && !running
        && !d.state.is_finished(&id)
        && let Ok(Some(lock)) = d.state.try_lock_target(&target)
    {
        d.spawn(id.clone(), plan, lock)?;
    }
    if let Some(why) = &undo_blocked {
        error!(id = %id, "{why}");
    }
    Ok(Json(
        json!({ "id": id, "weights": split.percents(), "traffic_restored": true, "undo_blocked": undo_blocked }),
    ))
}

fn optional_body(b: Result<Json<ActionBody>, JsonRejection>) -> ApiResult<ActionBody> {
    match b {
        Ok(Json(v)) => Ok(v),
        // An empty body (no content type) is fine for these actions.
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(ActionBody::default()),
        Err(e) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", e.body_text()),
        )),
    }
}

/// Appends an operator event to an unfinished cutover.
fn control(d: &Daemon, id: &str, make: impl FnOnce(&Saga) -> ApiResult<Event>) -> ApiResult<Json<Value>> {
    let records = d.records(id)?;
    let saga = Saga::replay(records.iter().map(|r| &r.event))
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if saga.outcome().is_some() {
        return Err(err(StatusCode::CONFLICT, format!("cutover {id} has finished")));
    }
    let event = make(&saga)?;
    d.state.open_journal(id)?.append(&event)?;
    Ok(Json(state_of(&journal::read_all(&d.state.journal_path(id))?)))
}

/// The operator actions that only append an event: they share one handler.
#[derive(Debug, Clone, Copy)]
enum Control {
    Pause,
    Resume,
    Promote,
}

async fn control_action(
    kind: Control,
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    b: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = optional_body(b)?;
    let by = caller(b.by, addr);
    let reason = |default: &str| b.reason.clone().unwrap_or_else(|| default.into());
    control(&d, &id, |saga| match kind {
        Control::Pause => Ok(Event::Paused {
            by,
            reason: reason("paused by an operator"),
        }),
        Control::Resume if saga.paused.is_none() => Err(err(StatusCode::CONFLICT, "not paused")),
        Control::Resume => Ok(Event::Resumed {
            by,
            reason: reason("resumed by an operator"),
        }),
        Control::Promote => {
            let step = saga
                .status
                .iter()
                .position(|s| *s == StepStatus::Running)
                .filter(|i| saga.bakes.contains_key(i))
                .ok_or_else(|| err(StatusCode::CONFLICT, "nothing is baking"))?;
            Ok(Event::PromoteRequested {
                step,
                by,
                reason: reason("promoted by an operator"),
            })
        }
    })
}

/// Prometheus text exposition, computed from the journals (so it survives restarts) and the
/// process's AWS call counters.
async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    let mut out = String::new();
    let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut rollbacks: BTreeMap<String, u64> = BTreeMap::new();
    let mut active = 0u64;
    let mut weights = String::new();
    let mut lag = String::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for id in d.state.ids().unwrap_or_default() {
        let Some(c) = d.digest(&id) else { continue };
        for (v, n) in &c.verdicts {
            *verdicts.entry(v.clone()).or_default() += n;
        }
        if let Some(t) = &c.rollback_trigger {
            *rollbacks.entry(t.clone()).or_default() += 1;
        }
        match c.outcome {
            Some(o) => *by_outcome.entry(o.as_str()).or_default() += 1,
            None => {
                active += 1;
                if let Some(split) = c.weights {
                    for (color, pct) in [
                        ("blue", split.percent(crate::color::Color::Blue)),
                        ("green", split.percent(crate::color::Color::Green)),
                    ] {
                        weights.push_str(&format!(
                            "cutover_weight_percent{{id=\"{id}\",service=\"{}\",color=\"{color}\"}} {pct}\n",
                            escape(&c.service)
                        ));
                    }
                }
                if let Some(end) = c.last_window_end {
                    lag.push_str(&format!(
                        "cutover_poll_lag_seconds{{id=\"{id}\",service=\"{}\"}} {}\n",
                        escape(&c.service),
                        now.saturating_sub(end)
                    ));
                }
            }
        }
    }
    out.push_str("# HELP cutover_cutovers_total Cutovers by outcome.\n# TYPE cutover_cutovers_total counter\n");
    for o in [
        "promoted",
        "rolled_back",
        "rolled_back_by_operator",
        "not_started",
        "unsafe",
        "error",
    ] {
        out.push_str(&format!(
            "cutover_cutovers_total{{outcome=\"{o}\"}} {}\n",
            by_outcome.get(o).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_active_cutovers Cutovers not yet finished.\n# TYPE cutover_active_cutovers gauge\n");
    out.push_str(&format!("cutover_active_cutovers {active}\n"));
    out.push_str(
        "# HELP cutover_weight_percent Current verified share of each colour.\n# TYPE cutover_weight_percent gauge\n",
    );
    out.push_str(&weights);
    out.push_str("# HELP cutover_verdicts_total Judged windows by result.\n# TYPE cutover_verdicts_total counter\n");
    for v in ["pass", "fail", "inconclusive", "no_data", "shared_failure"] {
        out.push_str(&format!(
            "cutover_verdicts_total{{result=\"{v}\"}} {}\n",
            verdicts.get(v).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_rollbacks_total Rollbacks by trigger.\n# TYPE cutover_rollbacks_total counter\n");
    for t in ["judge", "step", "operator", "interrupt"] {
        out.push_str(&format!(
            "cutover_rollbacks_total{{trigger=\"{t}\"}} {}\n",
            rollbacks.get(t).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_aws_calls_total AWS calls by operation.\n# TYPE cutover_aws_calls_total counter\n");
    let calls = crate::aws::calls::snapshot();
    for (op, (n, _)) in &calls {
        out.push_str(&format!("cutover_aws_calls_total{{operation=\"{op}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP cutover_aws_errors_total Failed AWS calls by operation.\n# TYPE cutover_aws_errors_total counter\n",
    );
    for (op, (_, e)) in &calls {
        out.push_str(&format!("cutover_aws_errors_total{{operation=\"{op}\"}} {e}\n"));
    }
    out.push_str(
        "# HELP cutover_poll_lag_seconds Seconds between now and the end of the newest judged window.\n# TYPE cutover_poll_lag_seconds gauge\n",
    );
    out.push_str(&lag);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// What started a finished rollback: the first `StepFailed` or `RollbackRequested`.
fn first_trigger(records: &[Record]) -> String {
    records
        .iter()
        .find_map(|r| match &r.event {
            Event::StepFailed { trigger, .. } | Event::RollbackRequested { trigger, .. } => Some(*trigger),
            _ => None,
        })
        .map(|t| format!("{t:?}").to_lowercase())
        .unwrap_or_else(|| "step".into())
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_and_var_keys_are_restricted() {
        assert!(valid_plan_name("checkout-api_2"));
        assert!(!valid_plan_name("../etc/passwd"));
        assert!(!valid_plan_name("a.toml"));
        assert!(!valid_plan_name(""));
        assert!(valid_var_key("VERSION_2"));
        assert!(!valid_var_key("version"));
        assert!(!valid_var_key("A-B"));
        assert!(!valid_var_key(""));
    }

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/health",
            "/metrics",
            "/v1/openapi.json",
            "/v1/cutovers",
            "/v1/cutovers/{id}",
            "/v1/cutovers/{id}/events",
            "/v1/cutovers/{id}/rollback",
            "/v1/cutovers/{id}/pause",
            "/v1/cutovers/{id}/resume",
            "/v1/cutovers/{id}/promote",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing from api/openapi.json");
        }
    }
}
