//! The API document and the API agree (issue 8, item 10).
//!
//! `cutover serve` runs on moto and is driven through every route of `api/openapi.json`: a
//! cutover from start to promotion with its live event stream, the operator actions, rollbacks,
//! and each error the routes list. Every answer is checked against the document:
//!
//! 1. its status is one the document lists for that route;
//! 2. its content type is one that response declares;
//! 3. its body validates against the schema declared there (JSON Schema 2020-12, by the
//!    `jsonschema` crate, with the whole document registered as one resource so that its `$ref`s
//!    resolve); an event stream is parsed as SSE (`eventsource-stream`), each event checked
//!    against the response's `itemSchema` and each record against its `contentSchema`.
//!
//! Every request body sent is checked too: the document must refuse exactly the bodies that the
//! daemon answers with 400. The checker itself is tested on answers the document does not
//! describe, so that a checker which accepts everything cannot pass for agreement.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt};
use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

use crate::util::*;

const TOKEN: &str = "test-token-openapi-0123456789abcdef";

/// The document's URI in the validator's registry: its `#/…` references resolve against it.
const DOC_URI: &str = "urn:cutover:openapi";

/// `api/openapi.json`, ready to check requests and answers against.
struct Doc {
    doc: Value,
    registry: Registry<'static>,
}

/// One answer of the daemon, as it came over the wire.
struct Answer {
    status: u16,
    content_type: String,
    /// The body as it arrived, chunk by chunk (an event stream is parsed from these).
    chunks: Vec<Vec<u8>>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.chunks.concat()).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.text()).unwrap_or(Value::Null)
    }
}

/// At most 300 characters of `text`, for messages.
fn short(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `/` and `~` escaped for a JSON pointer segment.
fn esc(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: characters a fragment cannot hold (`{id}`) percent-encoded.
fn fragment(pointer: &str) -> String {
    pointer
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Doc {
    fn load() -> Doc {
        let path = root().join("api/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap();
        Doc::parse(serde_json::from_str(&text).expect("api/openapi.json is JSON"))
    }

    fn parse(doc: Value) -> Doc {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.") && !v.starts_with("3.0.")),
            "the schemas are JSON Schema 2020-12, which needs OpenAPI 3.1 or later"
        );
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(DOC_URI, doc.clone())
            .and_then(|r| r.prepare())
            .expect("api/openapi.json registers as a JSON Schema resource");
        Doc { doc, registry }
    }

    /// A validator for the schema at `pointer` in the document.
    fn validator(&self, pointer: &str) -> Validator {
        assert!(
            self.doc.pointer(pointer).is_some(),
            "api/openapi.json has no schema at {pointer}"
        );
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .build(&json!({ "$ref": format!("{DOC_URI}#{}", fragment(pointer)) }))
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
    }

    /// What is wrong with `instance` by the schema at `pointer`: nothing, or one line per error.
    fn validate(&self, pointer: &str, instance: &Value) -> Result<(), String> {
        let validator = self.validator(pointer);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n  "))
        }
    }

    /// `pointer`, or where it leads when it holds a local `$ref` (a response or a schema).
    fn follow(&self, pointer: String) -> String {
        match self
            .doc
            .pointer(&pointer)
            .and_then(|v| v.get("$ref"))
            .and_then(Value::as_str)
        {
            Some(r) => self.follow(r.strip_prefix('#').expect("a local $ref").to_string()),
            None => pointer,
        }
    }

    fn operation(&self, method: &str, route: &str) -> String {
        let pointer = format!("/paths/{}/{}", esc(route), method.to_ascii_lowercase());
        assert!(
            self.doc.pointer(&pointer).is_some(),
            "{method} {route} is not in api/openapi.json"
        );
        pointer
    }

    /// Checks one answer of `method route` against the document; returns the records of an
    /// event stream (none for other answers).
    fn check_answer(&self, method: &str, route: &str, a: &Answer) -> Result<Vec<Value>, String> {
        let response = format!("{}/responses/{}", self.operation(method, route), a.status);
        if self.doc.pointer(&response).is_none() {
            return Err(format!(
                "status {} is not listed for {method} {route} (body {})",
                a.status,
                a.text()
            ));
        }
        let response = self.follow(response);
        let essence = a
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let media = format!("{response}/content/{}", esc(&essence));
        if self.doc.pointer(&media).is_none() {
            let declared: Vec<&String> = self
                .doc
                .pointer(&format!("{response}/content"))
                .and_then(Value::as_object)
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "{method} {route} {}: content type {:?} is not one of {declared:?}",
                a.status, a.content_type
            ));
        }
        let context = |e: String| format!("{method} {route} {}: {e}\n  body: {}", a.status, short(&a.text()));
        match essence.as_str() {
            "application/json" => {
                let body: Value = serde_json::from_str(&a.text()).map_err(|e| context(format!("not JSON: {e}")))?;
                self.validate(&format!("{media}/schema"), &body).map_err(context)?;
                Ok(vec![])
            }
            "text/event-stream" => self.check_event_stream(&media, &a.chunks).map_err(context),
            _ => {
                self.validate(&format!("{media}/schema"), &Value::String(a.text()))
                    .map_err(context)?;
                Ok(vec![])
            }
        }
    }

    /// Parses an event stream as SSE and checks every event and every record in it.
    fn check_event_stream(&self, media: &str, chunks: &[Vec<u8>]) -> Result<Vec<Value>, String> {
        let item = format!("{media}/itemSchema");
        if self.doc.pointer(&item).is_none() {
            return Err(format!("no itemSchema at {media}"));
        }
        let item = self.follow(item);
        let data = format!("{item}/properties/data/contentSchema");
        let events = futures_util::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>))
            .eventsource()
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("a stream over a vector is ready at once");
        let mut records = vec![];
        for (n, event) in events.into_iter().enumerate() {
            let event = event.map_err(|e| format!("event {}: not SSE: {e}", n + 1))?;
            let mut fields = json!({ "event": event.event, "id": event.id, "data": event.data });
            if let Some(retry) = event.retry {
                fields["retry"] = json!(retry.as_millis() as u64);
            }
            self.validate(&item, &fields)
                .map_err(|e| format!("event {}: {e}\n  event: {fields}", n + 1))?;
            // The document says ids count the records from 1.
            if event.id != (n + 1).to_string() {
                return Err(format!("event {} has id {:?}", n + 1, event.id));
            }
            let record: Value =
                serde_json::from_str(&event.data).map_err(|e| format!("event {}: data is not JSON: {e}", n + 1))?;
            self.validate(&data, &record)
                .map_err(|e| format!("record {}: {e}\n  record: {record}", n + 1))?;
            records.push(record);
        }
        Ok(records)
    }

    /// Whether the document accepts `body` as the request body of `method route`.
    fn accepts_request(&self, method: &str, route: &str, body: &Value) -> Result<(), String> {
        let op = self.operation(method, route);
        self.validate(&format!("{op}/requestBody/content/application~1json/schema"), body)
    }
}

/// A request body.
enum Body {
    None,
    /// JSON, sent with `Content-Type: application/json`; checked against the document too.
    Json(Value),
    /// Sent as it is, with this content type.
    Raw(&'static str, &'static str),
}

/// A running `cutover serve`, killed on drop, and the document to check its answers against.
struct Api {
    child: Child,
    url: String,
    doc: Doc,
    http: reqwest::Client,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    fn start(wd: &Workdir, endpoint: &str, plans: &Path) -> Api {
        let mut cmd = wd.cutover(
            endpoint,
            &["serve", "--listen", "127.0.0.1:0", "--plans", plans.to_str().unwrap()],
        );
        let log = std::fs::File::create(wd.path().join("serve.log")).unwrap();
        cmd.env("CUTOVER_TOKEN", TOKEN).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Api {
            child,
            url,
            doc: Doc::load(),
            http: reqwest::Client::new(),
        }
    }

    /// `method path` (an instance of the document's `route`), its answer checked against the
    /// document, and a JSON body checked against the route's request schema: the document must
    /// refuse it exactly when the daemon answers 400.
    async fn call(&self, method: &str, route: &str, path: &str, token: Option<&str>, body: Body) -> Answer {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match &body {
            Body::None => req,
            Body::Json(v) => req.header("content-type", "application/json").body(v.to_string()),
            Body::Raw(ct, text) => req.header("content-type", *ct).body(*text),
        };
        let mut resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut chunks = vec![];
        while let Some(chunk) = resp.chunk().await.unwrap() {
            chunks.push(chunk.to_vec());
        }
        let answer = Answer {
            status,
            content_type,
            chunks,
        };
        if let Err(e) = self.doc.check_answer(method, route, &answer) {
            panic!("{method} {path}: the answer disagrees with api/openapi.json: {e}");
        }
        if let Body::Json(b) = &body
            && token.is_some()
        {
            let doc = self.doc.accepts_request(method, route, b);
            assert_eq!(
                doc.is_err(),
                status == 400,
                "{method} {path} with {}: the document says {doc:?}, the daemon answered {status}: {}",
                short(&b.to_string()),
                short(&answer.text())
            );
        }
        answer
    }

    /// A `/v1` call with the token.
    async fn v1(&self, method: &str, route: &str, path: &str, body: Body) -> Answer {
        self.call(method, route, path, Some(TOKEN), body).await
    }

    /// The records of a cutover's event stream, checked, read until the stream ends.
    async fn events(&self, id: &str) -> Vec<Value> {
        let path = format!("/v1/cutovers/{id}/events");
        let a = self.v1("GET", "/v1/cutovers/{id}/events", &path, Body::None).await;
        assert_eq!(a.status, 200, "{}", a.text());
        self.doc
            .check_answer("GET", "/v1/cutovers/{id}/events", &a)
            .expect("checked in call")
    }

    /// Polls a cutover's state (each answer checked) until `pred` holds.
    async fn wait_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let a = self
                .v1("GET", "/v1/cutovers/{id}", &format!("/v1/cutovers/{id}"), Body::None)
                .await;
            let v = a.json();
            assert_eq!(a.status, 200, "{v}");
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: not within 60 s; last state {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An operator action on cutover `id`.
    async fn action(&self, id: &str, action: &str, body: Body) -> Answer {
        let route = format!("/v1/cutovers/{{id}}/{action}");
        self.v1("POST", &route, &format!("/v1/cutovers/{id}/{action}"), body)
            .await
    }
}

/// Steps that journal most kinds of event: a check, a hook with an undo, a long bake that an
/// operator pauses, resumes and promotes, an approval, a short bake, and a lifecycle hook.
const STEPS: &str = r#"
[[steps]]
action = "verify"
checks = [{ command = ["true"] }]

[[steps]]
action = "deploy"
run = ["sh", "-c", "echo \"$CUTOVER_VAR_VERSION\" > version.txt"]
undo = ["true"]

[[steps]]
action = "shift"
weight = 50
bake = "10m"

[[steps]]
action = "approve"
timeout = "10m"

[[steps]]
action = "shift"
weight = 100
bake = "2s"

[[hooks]]
at = "after_shift"
command = ["true"]
"#;

/// A plans directory: `web` for `world`, `broken` (invalid), `ghost` (a listener that does not exist).
fn plans(wd: &Workdir, world: &World) -> PathBuf {
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.toml"), plan(world, "", STEPS)).unwrap();
    std::fs::write(dir.join("broken.toml"), "[service]\nname = 1\n").unwrap();
    let ghost = World {
        listener_arn: world.listener_arn.replace("listener/app/", "listener/app/ghost-"),
        rule_arn: None,
        ..world.clone()
    };
    std::fs::write(dir.join("ghost.toml"), plan(&ghost, "", STEPS)).unwrap();
    dir
}

fn kinds(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["event"].as_str().unwrap_or("?")).collect()
}

/// The journal file of a cutover, one JSON value per record.
fn journal(wd: &Workdir, id: &str) -> Vec<Value> {
    std::fs::read_to_string(wd.state().join("cutovers").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_of_the_daemon_is_what_the_api_document_says() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, &world);
    let api = Api::start(&wd, &moto.endpoint, &dir);

    // Open routes.
    assert_eq!(
        api.call("GET", "/health", "/health", None, Body::None).await.status,
        200
    );
    assert_eq!(
        api.call("GET", "/metrics", "/metrics", None, Body::None).await.status,
        200
    );

    // 401 on every /v1 route, without a token or with a wrong one.
    let some_id = "20260101T000000Z-0000";
    for (method, route) in [
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/cutovers"),
        ("POST", "/v1/cutovers"),
        ("GET", "/v1/cutovers/{id}"),
        ("GET", "/v1/cutovers/{id}/events"),
        ("POST", "/v1/cutovers/{id}/rollback"),
        ("POST", "/v1/cutovers/{id}/pause"),
        ("POST", "/v1/cutovers/{id}/resume"),
        ("POST", "/v1/cutovers/{id}/promote"),
        ("POST", "/v1/cutovers/{id}/approve"),
        ("POST", "/v1/cutovers/{id}/reject"),
        ("GET", "/v1/cutovers/{id}/report"),
    ] {
        let path = route.replace("{id}", some_id);
        for token in [None, Some("wrong-token-0123456789abcdef-openapi")] {
            let a = api.call(method, route, &path, token, Body::None).await;
            assert_eq!(a.status, 401, "{method} {path} with {token:?}: {}", a.text());
        }
    }

    // The document the daemon serves is the checked-in one.
    let a = api.v1("GET", "/v1/openapi.json", "/v1/openapi.json", Body::None).await;
    assert_eq!((a.status, a.json()), (200, api.doc.doc.clone()));

    // Bodies the document refuses, and the daemon too (400, naming what is wrong). `call` checks
    // that the document refuses each of them.
    let long_key = "K".repeat(65);
    let api_ref = &api;
    let start = move |body: Value| async move {
        api_ref
            .v1("POST", "/v1/cutovers", "/v1/cutovers", Body::Json(body))
            .await
    };
    for (body, says) in [
        (json!({"plan": "web", "colour": "red"}), "unknown field `colour`"),
        (json!({"plan": "web", "vars": {"version": "1"}}), "\"version\""),
        (json!({"plan": "web", "vars": {"": "1"}}), "invalid variable name"),
        (
            json!({"plan": "web", "vars": {long_key.clone(): "1"}}),
            "invalid variable name",
        ),
        (json!({"plan": "web", "vars": {"V": "x".repeat(4097)}}), "variable V"),
        (json!({"plan": "web", "vars": {"V": "a\u{0}b"}}), "variable V"),
        (json!({"plan": "web", "vars": {"V": 1}}), "vars.V"),
        (json!({"plan": "web", "vars": null}), "vars"),
        (json!({"plan": "../plans/web"}), "invalid plan name"),
        (json!({"plan": null}), "plan"),
        (json!({}), "missing field `plan`"),
        (json!(["web", {}]), "expected a JSON object"),
        (json!("web"), "expected a JSON object"),
    ] {
        let a = start(body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        let error = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{body}: {error:?} does not say {says:?}");
    }
    for (raw_type, raw) in [
        ("application/json", "{\"plan\":"),
        ("text/plain", "{\"plan\": \"web\"}"),
    ] {
        let a = api
            .v1("POST", "/v1/cutovers", "/v1/cutovers", Body::Raw(raw_type, raw))
            .await;
        assert_eq!(a.status, 400, "{raw_type} {raw}: {}", a.text());
    }
    // Bodies both accept, at the edges of the limits: an unknown plan is 404, not 400.
    for body in [
        json!({"plan": "nope"}),
        json!({"plan": "nope", "vars": {}}),
        json!({"plan": "nope", "vars": {"K".repeat(64): "é".repeat(4096), "V_2": ""}}),
    ] {
        assert_eq!(start(body).await.status, 404);
    }
    assert_eq!(start(json!({"plan": "broken"})).await.status, 422);
    assert_eq!(start(json!({"plan": "ghost"})).await.status, 502);

    // 404 for ids that do not exist, on every route that takes one; and for ids that could not.
    for id in [some_id, "not.an.id", &"x".repeat(65)] {
        let a = api
            .v1("GET", "/v1/cutovers/{id}", &format!("/v1/cutovers/{id}"), Body::None)
            .await;
        assert_eq!(a.status, 404, "{id}");
    }
    let a = api
        .v1(
            "GET",
            "/v1/cutovers/{id}/events",
            &format!("/v1/cutovers/{some_id}/events"),
            Body::None,
        )
        .await;
    assert_eq!(a.status, 404);
    for action in ["rollback", "pause", "resume", "promote", "approve", "reject"] {
        assert_eq!(api.action(some_id, action, Body::None).await.status, 404, "{action}");
    }

    // A cutover, its event stream followed live from the start.
    let a = start(json!({"plan": "web", "vars": {"VERSION": "2.1.0"}})).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_string();
    let live = {
        let url = api.url.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut resp = reqwest::Client::new()
                .get(format!("{url}/v1/cutovers/{id}/events"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            let mut chunks = vec![];
            while let Some(chunk) = resp.chunk().await.unwrap() {
                chunks.push(chunk.to_vec());
            }
            Answer {
                status,
                content_type,
                chunks,
            }
        })
    };
    // Another cutover of the same listener is refused while this one runs.
    assert_eq!(start(json!({"plan": "web"})).await.status, 409);
    let list = api.v1("GET", "/v1/cutovers", "/v1/cutovers", Body::None).await.json();
    assert_eq!(list["cutovers"][0]["id"], id.as_str());
    api.wait_until(&id, "a verdict", |v| v["last_verdict"].is_object())
        .await;

    // Operator actions: bodies the document refuses are refused (400, naming the field)...
    for (body, says) in [
        (json!({"reason": "x", "colour": "red"}), "unknown field `colour`"),
        (json!({"by": 5}), "by: invalid type"),
        (json!({"reason": ["x"]}), "reason: invalid type"),
        (json!([]), "expected a JSON object"),
    ] {
        let a = api.action(&id, "pause", Body::Json(body.clone())).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        let error = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{body}: {error:?} does not say {says:?}");
    }
    // ...and `null` is the same as leaving a field out, as the document says.
    let a = api
        .action(
            &id,
            "pause",
            Body::Json(json!({"reason": "checking dashboards", "by": null})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["paused"], "checking dashboards");
    let a = api
        .action(&id, "resume", Body::Json(json!({"reason": null, "by": "alice"})))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(api.action(&id, "resume", Body::None).await.status, 409, "not paused");
    assert_eq!(
        api.action(&id, "approve", Body::None).await.status,
        409,
        "no approval waits"
    );
    let a = api
        .action(&id, "promote", Body::Json(json!({"reason": "looks good"})))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    api.wait_until(&id, "the approval step", |v| v["step"] == "approve")
        .await;
    let a = api
        .action(&id, "approve", Body::Json(json!({"reason": "dashboards green"})))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = api.action(&id, "reject", Body::None).await;
    assert_eq!(a.status, 409, "the first answer counts: {}", a.text());
    assert!(a.text().contains("already approved by api"), "{}", a.text());
    let v = api.wait_until(&id, "promoted", |v| v["outcome"].is_string()).await;
    assert_eq!(v["outcome"], "promoted", "{v}");
    for action in ["pause", "resume", "promote", "approve", "reject"] {
        assert_eq!(
            api.action(&id, action, Body::None).await.status,
            409,
            "{action} after the end"
        );
    }

    // The live stream ended with the cutover; every record in it is described and is the journal's.
    let live = tokio::time::timeout(Duration::from_secs(30), live)
        .await
        .expect("the event stream ends when the cutover has finished")
        .unwrap();
    let records = api
        .doc
        .check_answer("GET", "/v1/cutovers/{id}/events", &live)
        .unwrap_or_else(|e| panic!("the live event stream disagrees with api/openapi.json: {e}"));
    assert_eq!(records, journal(&wd, &id));
    let seen = kinds(&records);
    for kind in [
        "started",
        "step_started",
        "hook",
        "step_done",
        "weight_intent",
        "weight_verified",
        "bake_started",
        "verdict",
        "paused",
        "resumed",
        "promote_requested",
        "approval_requested",
        "approved",
        "lifecycle_hook",
        "finished",
    ] {
        assert!(seen.contains(&kind), "no {kind} record in {seen:?}");
    }

    // A promoted cutover rolled back: traffic back, then its completed steps undone.
    let a = api
        .action(&id, "rollback", Body::Json(json!({"reason": "pager", "by": "bob"})))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    api.wait_until(&id, "rolled back", |v| v["outcome"] == "rolled_back_by_operator")
        .await;

    // A second cutover: the first is no longer its listener's latest (409); the second is rolled
    // back while it runs.
    let a = start(json!({"plan": "web"})).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let second = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(api.action(&id, "rollback", Body::None).await.status, 409);
    api.wait_until(&second, "running", |v| v["step"].is_string()).await;
    let a = api.action(&second, "rollback", Body::None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    api.wait_until(&second, "rolled back", |v| v["outcome"] == "rolled_back_by_operator")
        .await;

    // Replayed streams of finished cutovers, and the list with everything in it.
    let first = api.events(&id).await;
    assert_eq!(first, journal(&wd, &id));
    let second_records = api.events(&second).await;
    let seen = [kinds(&first), kinds(&second_records)].concat();
    for kind in ["rollback_requested", "traffic_restored", "undo_started", "undo_done"] {
        assert!(seen.contains(&kind), "no {kind} record in {seen:?}");
    }
    let list = api.v1("GET", "/v1/cutovers", "/v1/cutovers", Body::None).await.json();
    assert_eq!(list["cutovers"].as_array().map(Vec::len), Some(2), "{list}");
}

/// The checker is not vacuous: answers the document does not describe are refused, each for the
/// reason the document gives.
#[test]
fn the_checker_refuses_answers_the_document_does_not_describe() {
    let doc = Doc::load();
    let json_answer = |status: u16, body: Value| Answer {
        status,
        content_type: "application/json".into(),
        chunks: vec![body.to_string().into_bytes()],
    };
    let get = |a: &Answer| doc.check_answer("GET", "/v1/cutovers/{id}", a);
    let state = json!({
        "id": "20261122T024630Z-276f", "service": "web", "outcome": null, "reason": null,
        "live_color": "blue", "new_color": "green", "final_weights": {"blue": 100.0, "green": 0.0},
        "steps": [], "started_at": "2026-11-22T02:46:30.453Z", "finished_at": null,
        "step": null, "weights": {"blue": 100.0, "green": 0.0}, "last_verdict": null,
        "paused": null, "phase": "running"
    });
    get(&json_answer(200, state.clone())).expect("a state as the daemon sends it");
    let mut missing = state.clone();
    missing.as_object_mut().unwrap().remove("phase");
    assert!(get(&json_answer(200, missing)).unwrap_err().contains("phase"));
    let mut extra = state.clone();
    extra["colour"] = json!("red");
    assert!(get(&json_answer(200, extra)).unwrap_err().contains("colour"));
    let mut wrong = state.clone();
    wrong["phase"] = json!("baking");
    assert!(get(&json_answer(200, wrong)).is_err());
    let mut bad_date = state;
    bad_date["started_at"] = json!("yesterday");
    assert!(get(&json_answer(200, bad_date)).is_err(), "formats are checked");
    assert!(
        get(&json_answer(409, json!({"error": "x"})))
            .unwrap_err()
            .contains("not listed")
    );
    assert!(get(&json_answer(404, json!({"message": "x"}))).is_err());
    let text = Answer {
        status: 404,
        content_type: "text/plain".into(),
        chunks: vec![b"no".to_vec()],
    };
    assert!(get(&text).unwrap_err().contains("content type"));

    let stream = |text: &str| Answer {
        status: 200,
        content_type: "text/event-stream".into(),
        chunks: text.as_bytes().chunks(7).map(<[u8]>::to_vec).collect(),
    };
    let events = |a: &Answer| doc.check_answer("GET", "/v1/cutovers/{id}/events", a);
    let record = r#"{"at":"2026-11-22T02:46:30.453Z","event":"step_started","step":0}"#;
    let ok = format!(":\n\nevent: record\nid: 1\ndata: {record}\n\n");
    assert_eq!(events(&stream(&ok)).unwrap().len(), 1);
    for (bad, why) in [
        (format!("id: 1\ndata: {record}\n\n"), "no event type"),
        (format!("event: record\nid: 2\ndata: {record}\n\n"), "ids count from 1"),
        (format!("event: record\ndata: {record}\n\n"), "no id"),
        (
            "event: record\nid: 1\ndata: {\"at\":\"x\",\"event\":\"step_started\",\"step\":0}\n\n".into(),
            "at",
        ),
        (
            format!(
                "event: record\nid: 1\ndata: {}\n\n",
                record.replace("step_started", "step_begun")
            ),
            "unknown event",
        ),
        (
            format!(
                "event: record\nid: 1\ndata: {}\n\n",
                record.replace("\"step\":0", "\"step\":0,\"x\":1")
            ),
            "unknown field",
        ),
        (
            format!("event: record\nid: 1\ndata: {}\n\n", record.replace(",\"step\":0", "")),
            "missing field",
        ),
    ] {
        assert!(events(&stream(&bad)).is_err(), "{why}: {bad}");
    }
}
