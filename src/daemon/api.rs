//! The control API: routes, bearer-token authentication, request bodies, and the handlers.
//! Errors are JSON, `{"error": "…"}`; `api/openapi.json` documents every route.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tracing::{error, info};

use super::Daemon;
use crate::color::Color;
use crate::config::{self, Plan};
use crate::engine::operator::{self, Control, ControlError};
use crate::engine::start::{self, NotStarted};
use crate::engine::{self};
use crate::journal::{self, Journal, JournalError, Record};
use crate::state::CutoverState;
use crate::traffic::Alb;

/// The OpenAPI document of the control API, checked in at `api/openapi.json`.
pub const OPENAPI: &str = include_str!("../../api/openapi.json");

/// An API error: a status and a JSON body `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn err(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::NotFound(id) => err(StatusCode::NOT_FOUND, format!("no cutover {id}")),
            e => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// The routes: `/health` and `/metrics` open, everything under `/v1` behind the token.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let v1 = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/cutovers", post(start).get(list))
        .route("/v1/cutovers/{id}", get(get_one))
        .route("/v1/cutovers/{id}/events", get(super::events::events))
        .route("/v1/cutovers/{id}/report", get(report))
        .route("/v1/cutovers/{id}/rollback", post(rollback))
        .route(
            "/v1/cutovers/{id}/pause",
            post(|s, p, c, k, b| control_action(Control::Pause, s, p, c, k, b)),
        )
        .route(
            "/v1/cutovers/{id}/resume",
            post(|s, p, c, k, b| control_action(Control::Resume, s, p, c, k, b)),
        )
        .route(
            "/v1/cutovers/{id}/promote",
            post(|s, p, c, k, b| control_action(Control::Promote, s, p, c, k, b)),
        )
        .route(
            "/v1/cutovers/{id}/approve",
            post(|s, p, c, k, b| control_action(Control::Approve, s, p, c, k, b)),
        )
        .route(
            "/v1/cutovers/{id}/reject",
            post(|s, p, c, k, b| control_action(Control::Reject, s, p, c, k, b)),
        );
    // The token is checked before routing, for every path under /v1: an unknown /v1 path or
    // method answers 401 without a token, so the routes cannot be listed unauthenticated.
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(daemon.clone(), auth))
        .with_state(daemon)
}

/// Whether a path is the API's, behind the token.
fn needs_token(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

async fn auth(State(d): State<Arc<Daemon>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if !needs_token(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = presented.unwrap_or("");
    // Constant time in each token's content (their lengths are not a secret worth hiding);
    // every token is compared, so the time does not say which one matched.
    let mut caller = None;
    for (name, token) in &d.tokens {
        if given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            caller = Some(name.clone());
        }
    }
    match caller {
        Some(name) => {
            let mut req = req;
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        None => {
            // RFC 6750: say which scheme, and whether the token given was wrong.
            let challenge = match presented {
                Some(_) => r#"Bearer realm="cutover", error="invalid_token""#,
                None => r#"Bearer realm="cutover""#,
            };
            let mut resp = err(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
            resp
        }
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// A request body: a JSON object whose fields make a `T`.
///
/// serde's derived `Deserialize` also builds a struct from an array of its field values
/// (`["web", {}]` for a [`StartBody`]), which `api/openapi.json` does not allow: every body
/// there is an object. This only hands maps on to `T`; anything else is refused with
/// "expected a JSON object". Field errors keep their path (`by: invalid type: …`).
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(OnlyMaps(std::marker::PhantomData)).map(Object)
    }
}

/// `POST /v1/cutovers` body (`Start` in `api/openapi.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    plan: String,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// Operator action bodies (`Action` in `api/openapi.json`).
///
/// `null` is the same as leaving a field out, and the document says so: the `cutover` client
/// sends `"reason": null` when no `--reason` is given, and clients already deployed keep
/// working with this daemon.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
    /// Who is asking (a name for the journal); the client's address is always recorded too.
    #[serde(default)]
    by: Option<String>,
}

/// The longest variable value, in characters (JSON Schema's `maxLength` counts characters).
const MAX_VAR_VALUE: usize = 4096;

/// Plan names are file stems in `--plans`: no paths, no dots.
fn valid_plan_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Variable keys reach hooks as `CUTOVER_VAR_<KEY>`: 1 to 64 of A-Z, 0-9 and _
/// (`^[A-Z0-9_]{1,64}$` in `api/openapi.json`).
pub fn valid_var_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Why a variable's value is refused, if it is: too long, or a NUL (an environment variable
/// cannot hold one).
fn invalid_var_value(value: &str) -> Option<String> {
    if value.chars().count() > MAX_VAR_VALUE {
        Some(format!("longer than {MAX_VAR_VALUE} characters"))
    } else if value.contains('\0') {
        Some("contains NUL".into())
    } else {
        None
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn body<T>(b: Result<Json<Object<T>>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(Object(v))| v).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", e.body_text()),
        )
    })
}

fn optional_body(b: Result<Json<Object<ActionBody>>, JsonRejection>) -> ApiResult<ActionBody> {
    match b {
        Ok(Json(Object(v))) => Ok(v),
        // An empty body (no content type) is fine for these actions.
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(ActionBody::default()),
        Err(e) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", e.body_text()),
        )),
    }
}

/// Who is calling: the name of the token the request carried (set by the auth middleware).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// How an operator event names its caller: the token's name (which no request body can
/// change) and the client's address; a `by` in the body is kept beside it, as said, not trusted.
fn caller(token: &Caller, by: Option<String>, addr: SocketAddr) -> String {
    match by.filter(|b| !b.trim().is_empty() && *b != token.0) {
        Some(by) => format!(
            "{} (API, {addr}, says {})",
            token.0,
            by.chars().take(100).collect::<String>()
        ),
        None => format!("{} (API, {addr})", token.0),
    }
}

impl Daemon {
    /// The journal of cutover `id`, with its records; 404 when there is none.
    pub(super) async fn journal(&self, id: &str) -> ApiResult<(Journal, Vec<Record>)> {
        if !valid_id(id) {
            return Err(err(StatusCode::NOT_FOUND, format!("no cutover {id}")));
        }
        let journal = Journal::new(self.store.clone(), id);
        let records = journal.read_all().await?;
        Ok((journal, records))
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

    /// The live colour and the journaled plan of a cutover.
    async fn live_and_plan(&self, journal: &Journal, records: &[Record]) -> ApiResult<(Color, Plan)> {
        let start =
            journal::start_of(records).ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "journal has no start"))?;
        let plan = engine::journaled_plan(journal, records)
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot load the plan: {e}")))?;
        Ok((start.live_color, plan))
    }

    async fn state_of(&self, id: &str) -> ApiResult<CutoverState> {
        if !valid_id(id) {
            return Err(err(StatusCode::NOT_FOUND, format!("no cutover {id}")));
        }
        let state = self.cache.state(id).await?;
        Ok(self.with_lease(state).await)
    }

    /// An unfinished cutover's state with its target's lease: who drives it, if anyone.
    async fn with_lease(&self, mut state: CutoverState) -> CutoverState {
        if state.outcome().is_none()
            && let Some(target) = &state.target_arn
        {
            state.lease = self.store.lease(target).await.ok().flatten();
        }
        state
    }
}

async fn start(
    State(d): State<Arc<Daemon>>,
    Extension(token): Extension<Caller>,
    b: Result<Json<Object<StartBody>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let b = body(b)?;
    if let Some(k) = b.vars.keys().find(|k| !valid_var_key(k)) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("invalid variable name {k:?}: use 1 to 64 of A-Z, 0-9 and _"),
        ));
    }
    if let Some((k, why)) = b.vars.iter().find_map(|(k, v)| Some((k, invalid_var_value(v)?))) {
        return Err(err(StatusCode::BAD_REQUEST, format!("variable {k}: value {why}")));
    }
    let plan = d.load_plan(&b.plan)?;
    let alb = Alb::shared(d.aws.elbv2.clone(), &d.aws.elb_reads, &plan.alb);
    let started = start::begin(&d.store, &plan, &alb, b.vars, &d.owner, &token.0)
        .await
        .map_err(|e| match e {
            NotStarted::Unreadable { .. } => err(StatusCode::BAD_GATEWAY, e.to_string()),
            NotStarted::Journal(e) => e.into(),
            e => err(StatusCode::CONFLICT, e.to_string()),
        })?;
    let id = started.id.clone();
    info!(id = %id, "cutover {id} of {} started: {} is live", plan.service, started.live);
    d.spawn(started.journal, plan, started.lease)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let mut all = vec![];
    for state in d.cache.all().await? {
        all.push(d.with_lease(state).await);
    }
    Ok(Json(json!({ "cutovers": all })))
}

async fn get_one(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<CutoverState>> {
    Ok(Json(d.state_of(&id).await?))
}

/// `GET /v1/cutovers/ID/report` query (`format` in `api/openapi.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// The cutover's report, built from its journal (never from AWS): HTML by default, or the record
/// as JSON or Markdown (`?format=json|markdown`).
async fn report(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    q: Result<axum::extract::Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = q.map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid query: {}", e.body_text())))?;
    let format = match q.0.format.as_deref() {
        None => crate::report::Format::Html,
        Some(f) => f.parse().map_err(|e: String| err(StatusCode::BAD_REQUEST, e))?,
    };
    if !valid_id(&id) {
        return Err(err(StatusCode::NOT_FOUND, format!("no cutover {id}")));
    }
    let report = crate::report::load(&d.store, &id).await?;
    let body = crate::report::render(&report, format);
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

async fn rollback(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Extension(token): Extension<Caller>,
    b: Result<Json<Object<ActionBody>>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let b = optional_body(b)?;
    let (journal, records) = d.journal(&id).await?;
    // The undo chain needs the plan the cutover started with; restoring traffic only needs its
    // ALB section, so a plan that no longer matches the journal still gets traffic back.
    let (live, plan, undo_blocked) = match d.live_and_plan(&journal, &records).await {
        Ok((live, plan)) => (live, plan, None),
        Err(e) => {
            let live = journal::start_of(&records).map(|s| s.live_color).ok_or(e)?;
            let plan = engine::started_plan(&journal, &records)
                .await
                .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot load the plan: {e}")))?;
            (
                live,
                plan,
                Some("the plan no longer matches the journal; the undo chain was not run".to_string()),
            )
        }
    };
    let target = plan.alb.target_arn().to_string();
    if d.store.latest(&target).await?.as_deref() != Some(id.as_str()) {
        return Err(err(
            StatusCode::CONFLICT,
            format!("{id} is not the latest cutover of {target}"),
        ));
    }
    let alb = Alb::shared(d.aws.elbv2.clone(), &d.aws.elb_reads, &plan.alb);
    let reason = b.reason.unwrap_or_else(|| "operator rollback".into());
    let by = caller(&token, b.by, addr);
    // Traffic is back on the live colour, verified, before this response is sent.
    let split = engine::operator_rollback(&journal, &alb, live, plan.alb.verify_timeout, &reason, &by)
        .await
        .map_err(|e| err(StatusCode::BAD_GATEWAY, format!("UNSAFE: {e}")))?;
    // The undo chain: the cutover's task runs it; if none is running, start one to finish the saga.
    // (Not when the saga already finished: the task ran the undos before this handler got here.)
    if undo_blocked.is_none()
        && !d.drives(&id)
        && journal.is_open().await.unwrap_or(false)
        && let Ok(Some(lock)) = d.store.try_lock(&target, &d.owner).await
    {
        d.spawn(journal, plan, Arc::new(lock))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    if let Some(why) = &undo_blocked {
        error!(id = %id, "{why}");
    }
    Ok(Json(
        json!({ "id": id, "weights": split.percents(), "traffic_restored": true, "undo_blocked": undo_blocked }),
    ))
}

async fn control_action(
    kind: Control,
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Extension(token): Extension<Caller>,
    b: Result<Json<Object<ActionBody>>, JsonRejection>,
) -> ApiResult<Json<CutoverState>> {
    let b = optional_body(b)?;
    // An approval is only worth its approver's identity: the token's name, nothing else.
    let by = match kind {
        Control::Approve | Control::Reject => token.0.clone(),
        _ => caller(&token, b.by, addr),
    };
    let (journal, _) = d.journal(&id).await?;
    operator::control(&journal, kind, &by, b.reason.as_deref())
        .await
        .map_err(|e| match e {
            ControlError::Journal(e) => e.into(),
            ControlError::Corrupt { .. } => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            ControlError::NotAllowed(_) => err(StatusCode::FORBIDDEN, e.to_string()),
            e => err(StatusCode::CONFLICT, e.to_string()),
        })?;
    Ok(Json(d.state_of(&id).await?))
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    let states = d.cache.all_recent().await.unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let text = super::prometheus::render(&states, &crate::aws::calls::snapshot(), now);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
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
        assert!(valid_var_key(&"A".repeat(64)));
        assert!(!valid_var_key(&"A".repeat(65)));
        // The limit is in characters, as JSON Schema's `maxLength` counts them.
        assert_eq!(invalid_var_value(&"é".repeat(MAX_VAR_VALUE)), None);
        assert!(invalid_var_value(&"a".repeat(MAX_VAR_VALUE + 1)).is_some());
        assert_eq!(invalid_var_value("a\0b").as_deref(), Some("contains NUL"));
    }

    /// What `axum::Json` would say about this body (it reports field paths the same way).
    fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
        let mut d = serde_json::Deserializer::from_str(body);
        serde_path_to_error::deserialize::<_, Object<T>>(&mut d)
            .map(|Object(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bodies_are_json_objects_of_known_fields() {
        let start: StartBody = parse(r#"{"plan": "web", "vars": {"VERSION": "2.1.0"}}"#).unwrap();
        assert_eq!((start.plan.as_str(), start.vars.len()), ("web", 1));
        // Regression: serde builds a struct from an array of its fields, which the document forbids.
        for body in [r#"["web", {}]"#, "null", r#""web""#, "[]"] {
            let e = parse::<StartBody>(body).unwrap_err();
            assert!(e.contains("expected a JSON object"), "{body}: {e}");
        }
        assert!(
            parse::<StartBody>(r#"{"plan": "web", "colour": "red"}"#)
                .unwrap_err()
                .contains("unknown field `colour`")
        );
        assert!(
            parse::<StartBody>(r#"{"plan": "web", "vars": null}"#)
                .unwrap_err()
                .starts_with("vars: ")
        );
        // null is the same as leaving a field out (the document says `string | null`)...
        let action: ActionBody = parse(r#"{"reason": null, "by": null}"#).unwrap();
        assert_eq!((action.reason, action.by), (None, None));
        // ...and any other type is refused, naming the field.
        let e = parse::<ActionBody>(r#"{"by": 5}"#).unwrap_err();
        assert!(e.starts_with("by: invalid type"), "{e}");
        assert!(
            parse::<ActionBody>("[]")
                .unwrap_err()
                .contains("expected a JSON object")
        );
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
            "/v1/cutovers/{id}/report",
            "/v1/cutovers/{id}/rollback",
            "/v1/cutovers/{id}/pause",
            "/v1/cutovers/{id}/resume",
            "/v1/cutovers/{id}/promote",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing from api/openapi.json");
        }
    }
}
