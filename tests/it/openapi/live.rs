//! The daemon driven through every route of the document: a cutover from start to promotion with
//! its live event stream, the operator actions, rollbacks and each error the routes list.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

use super::TOKEN;
use super::checker::Answer;
use super::client::{Api, Body};

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
