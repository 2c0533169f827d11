//! Notifications (issue 11.2) through real cutovers against moto: the `cutover` binary (and
//! the daemon) sending to a local HTTP receiver on 127.0.0.1:0 that checks each vendor's
//! documented schema — PagerDuty's Events API v2, Slack's Block Kit, and for the webhook the
//! signature, recomputed here and compared in constant time.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonschema::{Draft, Validator};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::daemon::{Serve, api};
use crate::e2e::{profile, steps_with_deploy};
use crate::util::*;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Accept the request and never answer.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HashMap<String, String>,
    body: Bytes,
    at: SystemTime,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} sent a body that is not JSON ({e})", self.path))
    }
}

/// A local HTTP receiver: each path answers its requests with its script in turn (the last
/// answer repeats; a path without a script answers 404), and every request is kept.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: &[(&str, &[Answer])]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let script: Arc<HashMap<String, Vec<Answer>>> =
            Arc::new(script.iter().map(|(p, a)| (p.to_string(), a.to_vec())).collect());
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let seen = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let (script, counts, seen) = (script.clone(), counts.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (script, counts, seen) = (script.clone(), counts.clone(), seen.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            seen.lock().unwrap().push(Got {
                                path: path.clone(),
                                headers,
                                body,
                                at: SystemTime::now(),
                            });
                            let answer = {
                                let mut counts = counts.lock().unwrap();
                                let n = counts.entry(path.clone()).or_default();
                                *n += 1;
                                script
                                    .get(&path)
                                    .map(|a| a[(*n - 1).min(a.len() - 1)])
                                    .unwrap_or(Answer::Status(404))
                            };
                            let status = match answer {
                                Answer::Status(s) => s,
                                Answer::Hang => std::future::pending().await,
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(StatusCode::from_u16(status).unwrap())
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}"),
            got,
            task,
        }
    }

    /// The requests to `path`, in the order they came.
    fn at(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a command to completion off the runtime's threads (the receiver runs on them).
async fn run_blocking(cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
}

fn validator(schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .expect("the test's schema compiles")
}

fn assert_valid(v: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the schema:\n  {}\n{instance:#}",
        errors.join("\n  ")
    );
}

/// PagerDuty Events API v2, as documented
/// (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>,
/// `/resolve-events/`): the fields, their types and enums, and which are required.
fn pagerduty_schema() -> Validator {
    validator(&json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["routing_key", "event_action"],
        "properties": {
            "routing_key": {"type": "string", "minLength": 1},
            "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
            "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
            "payload": {
                "type": "object",
                "additionalProperties": false,
                "required": ["summary", "source", "severity"],
                "properties": {
                    "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "source": {"type": "string", "minLength": 1},
                    "severity": {"enum": ["critical", "error", "warning", "info"]},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "component": {"type": "string"},
                    "group": {"type": "string"},
                    "class": {"type": "string"},
                    "custom_details": {"type": "object"}
                }
            },
            "images": {"type": "array"},
            "links": {
                "type": "array",
                "items": {"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}, "text": {"type": "string"}}}
            },
            "client": {"type": "string"},
            "client_url": {"type": "string"}
        },
        "allOf": [
            {"if": {"properties": {"event_action": {"const": "trigger"}}}, "then": {"required": ["payload"]}},
            {"if": {"properties": {"event_action": {"enum": ["acknowledge", "resolve"]}}}, "then": {"required": ["dedup_key"]}}
        ]
    }))
}

/// Slack's Block Kit (<https://api.slack.com/reference/block-kit/blocks>), for the blocks and
/// text objects these messages use: limits on lengths and counts, and what each block holds.
fn slack_schema() -> Validator {
    validator(&json!({
        "$defs": {
            "text": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "text"],
                "properties": {
                    "type": {"enum": ["plain_text", "mrkdwn"]},
                    "text": {"type": "string", "minLength": 1, "maxLength": 3000},
                    "emoji": {"type": "boolean"},
                    "verbatim": {"type": "boolean"}
                }
            },
            "header": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "text"],
                "properties": {
                    "type": {"const": "header"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "text": {
                        "allOf": [{"$ref": "#/$defs/text"}],
                        "properties": {"type": {"const": "plain_text"}, "text": {"maxLength": 150}}
                    }
                }
            },
            "section": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type"],
                "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                "properties": {
                    "type": {"const": "section"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "text": {"$ref": "#/$defs/text"},
                    "fields": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10,
                        "items": {"allOf": [{"$ref": "#/$defs/text"}], "properties": {"text": {"maxLength": 2000}}}
                    }
                }
            },
            "context": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "elements"],
                "properties": {
                    "type": {"const": "context"},
                    "block_id": {"type": "string", "maxLength": 255},
                    "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"$ref": "#/$defs/text"}}
                }
            }
        },
        "type": "object",
        "additionalProperties": false,
        "required": ["text", "blocks"],
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "blocks": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {"oneOf": [{"$ref": "#/$defs/header"}, {"$ref": "#/$defs/section"}, {"$ref": "#/$defs/context"}]}
            }
        }
    }))
}

/// Checks `X-Cutover-Signature: sha256=HEX` over the exact body bytes, in constant time
/// (`Mac::verify_slice`).
fn assert_signed(g: &Got, secret: &[u8]) {
    let sig = g.header("x-cutover-signature");
    let hex_sig = sig
        .strip_prefix("sha256=")
        .unwrap_or_else(|| panic!("signature {sig:?} is not sha256=HEX"));
    let tag = hex::decode(hex_sig).expect("hex signature");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(&g.body);
    mac.verify_slice(&tag)
        .unwrap_or_else(|_| panic!("bad signature on {}", g.header("x-cutover-event")));
}

/// The journal records of cutover `id`, as JSON.
fn journal(wd: &Workdir, id: &str) -> Vec<Value> {
    std::fs::read_to_string(wd.state().join("cutovers").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events the default webhook entry is sent for `records`, by the vocabulary's mapping.
fn vocabulary(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let tag = r["event"].as_str().unwrap();
            match tag {
                "started" | "step_done" | "drift" | "adopted" => Some(tag.to_string()),
                "step_failed" | "rollback_requested" if r["trigger"] == "stalled" => Some("stalled".into()),
                "finished" => Some(r["outcome"].as_str().unwrap().to_string()),
                _ => None,
            }
        })
        .collect()
}

fn at(record: &Value) -> SystemTime {
    humantime::parse_rfc3339(record["at"].as_str().unwrap()).unwrap()
}

const HOOK_SECRET: &str = "it-webhook-secret-0123";
const PD_KEY: &str = "R0UT1NGKEY0123456789ABCDEFGHIJKL";

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_cutover_pages_then_resolves_tells_slack_the_numbers_and_signs_every_webhook_record() {
    let rx = Receiver::start(&[
        ("/slack", &[Answer::Status(200)]),
        ("/pd", &[Answer::Status(202)]),
        ("/hook", &[Answer::Status(204)]),
    ])
    .await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    std::fs::write(wd.path().join("hook-secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let notify = format!(
        r#"
[[notify]]
kind = "slack"
url_env = "IT_SLACK_URL"
report_url = "https://ci.example.com/cutovers/{{id}}"

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "{}/pd"

[[notify]]
kind = "webhook"
url_env = "IT_HOOK_URL"
secret_file = "hook-secret"
"#,
        rx.url
    );
    let steps = format!("{}{QUICK_STEPS}", steps_with_deploy(""));
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", &steps)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_SLACK_URL", format!("{}/slack", rx.url))
        .env("IT_PD_KEY", PD_KEY)
        .env("IT_HOOK_URL", format!("{}/hook", rx.url));
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(3));
    let summary = json(&out);
    let id = summary["id"].as_str().unwrap().to_string();
    let records = journal(&wd, &id);
    let finished = records.last().unwrap();
    assert_eq!(finished["outcome"], "rolled_back");
    let reason = finished["reason"].as_str().unwrap();
    assert!(reason.contains("error rate too high"), "{reason}");

    // PagerDuty: a trigger when the rollback began, then the resolve, one alert.
    let pd = rx.at("/pd");
    let schema = pagerduty_schema();
    pd.iter()
        .for_each(|g| assert_valid(&schema, &g.json(), "a PagerDuty event"));
    let events: Vec<Value> = pd.iter().map(Got::json).collect();
    let actions: Vec<&str> = events.iter().map(|e| e["event_action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["trigger", "resolve"], "{events:#?}");
    let (trigger, resolve) = (&events[0], &events[1]);
    eprintln!("--- PagerDuty, as sent:\n{trigger:#}\n{resolve:#}");
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["dedup_key"], format!("cutover-{id}"));
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    let p = &trigger["payload"];
    assert_eq!(p["severity"], "error");
    assert_eq!(p["source"], "it");
    assert_eq!(p["class"], "rolled_back");
    let failed = records.iter().find(|r| r["event"] == "step_failed").unwrap();
    assert_eq!(
        p["timestamp"], failed["at"],
        "the trigger is the record that began the rollback"
    );
    assert_eq!(
        p["summary"],
        format!("it: rolling back: {}", failed["reason"].as_str().unwrap())
    );
    let d = &p["custom_details"];
    assert_eq!(d["trigger"], "judge");
    assert_eq!(d["step"], "shift 50%");
    assert_eq!(d["weights"], json!({"blue": 50.0, "green": 50.0}));
    assert!(d["error_rate"].as_f64().unwrap() > 0.05, "{d}");
    assert!(d["requests"].as_f64().unwrap() >= 20.0, "{d}");

    // Slack: the outcome, with the reason's numbers, the weights and the report link.
    let slack = rx.at("/slack");
    assert_eq!(slack.len(), 1, "Slack's defaults: the outcome only");
    let m = slack[0].json();
    eprintln!("--- Slack, as sent:\n{m:#}");
    assert_valid(&slack_schema(), &m, "the Slack message");
    let text = m.to_string();
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: it: rolled back: traffic back on blue"
    );
    let escaped = reason.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    assert_eq!(
        m["blocks"][1]["text"]["text"], escaped,
        "the journal's reason, numbers and all"
    );
    assert!(
        text.contains("*Weights*\\nblue 100% green 0% (weights 999/0)"),
        "{text}"
    );
    assert!(text.contains("*Error rate*\\ngreen "), "{text}");
    assert!(
        text.contains(&format!("<https://ci.example.com/cutovers/{id}|report>")),
        "{text}"
    );

    // The webhook: every subscribed record, signed, as the journal holds it.
    let hook = rx.at("/hook");
    let last = hook.last().expect("webhook deliveries");
    eprintln!(
        "--- webhook, as sent: headers {:?}\n{}",
        last.headers,
        String::from_utf8_lossy(&last.body)
    );
    let names: Vec<&str> = hook.iter().map(|g| g.header("x-cutover-event")).collect();
    assert_eq!(names, vocabulary(&records), "every subscribed record, in order");
    assert_eq!(names.first(), Some(&"started"));
    assert_eq!(names.last(), Some(&"rolled_back"));
    let deliveries: BTreeSet<&str> = hook.iter().map(|g| g.header("x-cutover-delivery")).collect();
    assert_eq!(deliveries.len(), hook.len(), "a delivery id is unique per delivery");
    for g in &hook {
        assert_signed(g, HOOK_SECRET.as_bytes());
        let body = g.json();
        assert_eq!(body["cutover_id"], id.as_str());
        assert_eq!(body["service"], "it");
        let same = records
            .iter()
            .find(|r| r["at"] == body["at"] && r["event"] == body["event"])
            .unwrap_or_else(|| panic!("no journal record like {body}"));
        let mut same = same.clone();
        same["cutover_id"] = json!(id);
        same["service"] = json!("it");
        assert_eq!(
            body, same,
            "the body is the journal record as journaled, plus cutover_id and service"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_twice_gets_the_delivery_on_the_third_try_and_a_refusal_is_not_retried() {
    let rx = Receiver::start(&[
        (
            "/flaky",
            &[Answer::Status(500), Answer::Status(500), Answer::Status(200)],
        ),
        ("/refuse", &[Answer::Status(400)]),
    ])
    .await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    // A verify whose check fails: the cutover ends not started, fast.
    let steps = QUICK_STEPS.replace(r#"command = ["true"]"#, r#"command = ["false"]"#);
    let notify = format!(
        r#"
[[notify]]
kind = "webhook"
url_env = "IT_FLAKY_URL"
events = ["not_started"]

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "{}/refuse"
events = ["not_started"]

[[notify]]
kind = "slack"
url_env = "IT_SLACK_URL_NOT_SET"
"#,
        rx.url
    );
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", &steps)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_FLAKY_URL", format!("{}/flaky", rx.url))
        .env("IT_PD_KEY", PD_KEY)
        .env_remove("IT_SLACK_URL_NOT_SET");
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(5));
    let log = String::from_utf8_lossy(&out.stderr);

    let flaky = rx.at("/flaky");
    assert_eq!(flaky.len(), 3, "500, 500, then 200 on the third try");
    assert!(flaky.iter().all(|g| g.header("x-cutover-event") == "not_started"));
    assert!(
        flaky.iter().all(|g| g.body == flaky[0].body && g.header("x-cutover-delivery") == flaky[0].header("x-cutover-delivery")),
        "each retry is the same delivery"
    );
    assert!(
        !log.contains("notify[0]"),
        "a delivery that got through logs nothing: {log}"
    );

    let refused = rx.at("/refuse");
    assert_eq!(refused.len(), 1, "a 400 is not retried");
    assert_valid(&pagerduty_schema(), &refused[0].json(), "a PagerDuty event");
    assert!(
        log.contains("notify[1] (pagerduty): not_started (journal record")
            && log.contains("not delivered after 1 attempt: HTTP 400: ok"),
        "{log}"
    );
    // A missing variable: one warning, and the cutover went on.
    assert_eq!(
        log.matches("notify[2] (slack): notify[2].url_env: the environment variable IT_SLACK_URL_NOT_SET is not set")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_or_is_down_does_not_hold_the_rollback_back() {
    let rx = Receiver::start(&[("/hang", &[Answer::Hang])]).await;
    // A port nobody listens on: PagerDuty is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let notify = format!(
        r#"
[[notify]]
kind = "webhook"
url_env = "IT_HANG_URL"

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "http://{down}/v2/enqueue"
"#
    );
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", QUICK_STEPS)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_HANG_URL", format!("{}/hang", rx.url))
        .env("IT_PD_KEY", PD_KEY);
    let started = Instant::now();
    let out = run_blocking(cmd).await;
    let wall = started.elapsed();
    assert_eq!(out.status.code(), Some(3));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let records = journal(&wd, &id);
    let tags: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();

    // The rollback as the journal tells it: the judge's failure, then traffic back on blue at
    // once (no record between them), then the outcome.
    let failed = tags.iter().position(|t| *t == "step_failed").expect("a failed step");
    assert_eq!(records[failed]["trigger"], "judge");
    assert_eq!(tags[failed + 1], "traffic_restored", "{tags:?}");
    assert_eq!(
        records[failed + 1]["split"],
        json!({"blue": 999, "green": 0, "others": 0})
    );
    assert_eq!(records.last().unwrap()["outcome"], "rolled_back");

    // Meanwhile the webhook never got past its first delivery: every request it received is the
    // `started` record (retried after each attempt timed out), and the first came before the
    // rollback was decided. So the whole cutover, the rollback included, ran while a delivery
    // hung, and the restore followed the failure directly.
    let hang = rx.at("/hang");
    assert!(!hang.is_empty(), "the webhook was tried");
    assert!(
        hang.iter()
            .all(|g| g.header("x-cutover-delivery") == format!("{id}.0.0")),
        "{:?}",
        hang.iter().map(|g| g.header("x-cutover-delivery")).collect::<Vec<_>>()
    );
    assert!(
        hang[0].at <= at(&records[failed]),
        "the hung delivery began before the rollback"
    );
    let restore = at(&records[failed + 1])
        .duration_since(at(&records[failed]))
        .unwrap_or_default();
    eprintln!("rollback decided → traffic restored: {restore:?} (journal times); the run took {wall:?}");

    // At the end the queued deliveries get 10 s, then are dropped and said so.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("notify[0] (webhook): ") && log.contains("not sent within 10s of the end: dropped"),
        "{log}"
    );
    assert!(
        log.contains("notify[1] (pagerduty): "),
        "PagerDuty being down is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_notifies_the_cutovers_it_drives_and_counts_them_in_metrics() {
    let rx = Receiver::start(&[("/hook", &[Answer::Status(200)])]).await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    // The daemon's plans name a file, beside them, that holds the URL.
    std::fs::write(dir.join("hook-url"), format!("{}/hook\n", rx.url)).unwrap();
    let notify = "\n[[notify]]\nkind = \"webhook\"\nurl_file = \"hook-url\"\n";
    std::fs::write(
        dir.join("svc.toml"),
        format!("{}{notify}", plan(&world, "", QUICK_STEPS)),
    )
    .unwrap();
    let serve = Serve::start(&wd, &world.endpoint, &dir);
    let (code, v) = api(&serve, "POST", "/v1/cutovers", Some(json!({"plan": "svc"}))).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    let bound = Instant::now() + Duration::from_secs(90);
    while !rx.at("/hook").iter().any(|g| g.header("x-cutover-event") == "promoted") {
        assert!(
            Instant::now() < bound,
            "no promoted notification; got {:?}",
            rx.at("/hook")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hook = rx.at("/hook");
    let records = journal(&wd, &id);
    let names: Vec<&str> = hook.iter().map(|g| g.header("x-cutover-event")).collect();
    assert_eq!(names, vocabulary(&records), "everything from the start, once, in order");
    assert!(hook.iter().all(|g| g.json()["cutover_id"] == id.as_str()));

    let metrics = reqwest::get(format!("{}/metrics", serve.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "cutover_notifications_total{{kind=\"webhook\",result=\"delivered\"}} {}",
        hook.len()
    );
    assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    assert!(metrics.contains("cutover_notifications_total{kind=\"slack\",result=\"failed\"} 0"));
}

/// Regression (issue 11, review): when the run that started a cutover is dead, `cutover
/// rollback --config` finishes it, and its receivers heard nothing of the rollback (only the
/// run had a notifier). The rollback's own process now tells them, from the request on.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_run_rolled_back_from_the_command_line_is_notified() {
    let rx = Receiver::start(&[("/hook", &[Answer::Status(200)])]).await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"");
    // The URL from a file beside the plan: both processes read it.
    std::fs::write(wd.path().join("hook.url"), format!("{}/hook\n", rx.url)).unwrap();
    let notify = "\n[[notify]]\nkind = \"webhook\"\nurl_file = \"hook.url\"\nevents = [\"rolled_back_by_operator\"]\n";
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", &steps)));
    let mut bg = crate::e2e::Background::start(&wd, &world.endpoint, &plan);
    crate::e2e::wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    bg.child.kill().unwrap(); // SIGKILL: its notifier dies with it.
    bg.child.wait().unwrap();
    let out = run_blocking(wd.cutover(
        &world.endpoint,
        &[
            "rollback",
            "--config",
            plan.to_str().unwrap(),
            "--reason",
            "pager fired",
        ],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let got = rx.at("/hook");
    assert_eq!(got.len(), 1, "one delivery of the finished rollback: {got:?}");
    assert_eq!(got[0].header("x-cutover-event"), "rolled_back_by_operator");
    let body = got[0].json();
    assert_eq!(body["event"], "finished", "{body}");
    assert_eq!(body["outcome"], "rolled_back_by_operator", "{body}");
}
