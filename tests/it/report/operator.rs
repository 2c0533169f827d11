//! An operator rollback on the daemon, reported by the daemon (its route and `report ID
//! --server`) with who did it and why.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::{Serve, TOKEN};
use crate::e2e::steps_with_deploy;
use crate::util::*;

use super::browser::screenshot;
use super::chart::{check_chart, expect};

/// A GET with the token: status, content type and body.
async fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rollback_on_the_daemon_is_reported_by_the_daemon_with_who_and_why() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"");
    std::fs::write(plans.join("web.toml"), plan(&world, "", &steps)).unwrap();
    let s = Serve::start(&wd, &moto.endpoint, &plans);
    let (code, v) = crate::daemon::api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let wait = |what: &'static str, pred: fn(&Value) -> bool| {
        let (s, id) = (&s, &id);
        async move {
            let start = Instant::now();
            loop {
                let (_, v) = crate::daemon::api(s, "GET", &format!("/v1/cutovers/{id}"), None).await;
                if pred(&v) {
                    return v;
                }
                assert!(start.elapsed() < Duration::from_secs(40), "{what}: not yet: {v}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait("a pass at 50 %", |v| v["last_verdict"]["outcome"] == "pass").await;
    for (action, body) in [
        ("pause", json!({"reason": "checking dashboards", "by": "alice"})),
        ("resume", json!({"by": "alice"})),
        ("rollback", json!({"reason": "pager fired", "by": "bob"})),
    ] {
        let (code, v) = crate::daemon::api(&s, "POST", &format!("/v1/cutovers/{id}/{action}"), Some(body)).await;
        assert_eq!(code, 200, "{action}: {v}");
        // Apart on the timeline, as an operator's actions are.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    wait("rolled back", |v| v["outcome"].is_string()).await;

    let url = format!("{}/v1/cutovers/{id}/report", s.url);
    let (code, ct, html) = get(&url, Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "text/html; charset=utf-8"));
    let (code, ct, text) = get(&format!("{url}?format=json"), Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["outcome"], "rolled_back_by_operator");
    let rb = &record["rollback"];
    assert_eq!(
        (rb["trigger"].as_str(), rb["reason"].as_str()),
        (Some("operator"), Some("pager fired"))
    );
    // The token's name (a lone token is `api`) is who acted; `by` is what the caller says.
    let initiated_by = rb["initiated_by"].as_str().unwrap();
    assert!(
        initiated_by.starts_with("api (API, 127.0.0.1:") && initiated_by.ends_with(", says bob)"),
        "{rb}"
    );
    let actions: Vec<(&str, &str)> = record["operator_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["by"]
                    .as_str()
                    .unwrap()
                    .rsplit("says ")
                    .next()
                    .unwrap()
                    .trim_end_matches(')'),
            )
        })
        .collect();
    assert_eq!(actions, [("pause", "alice"), ("resume", "alice"), ("rollback", "bob")]);
    let (code, ct, md) = get(&format!("{url}?format=markdown"), Some(TOKEN)).await;
    assert_eq!((code, ct.as_str()), (200, "text/markdown; charset=utf-8"));
    assert!(md.contains("| Rollback reason | pager fired |"), "{md}");
    // Behind the token, 404 for a cutover that is not there, 400 for a format that is not one.
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(
        get(
            &format!("{}/v1/cutovers/20260101T000000Z-0000/report", s.url),
            Some(TOKEN)
        )
        .await
        .0,
        404
    );
    assert_eq!(get(&format!("{url}?format=pdf"), Some(TOKEN)).await.0, 400);
    // The API document describes the route and what it answers.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(root().join("api/openapi.json")).unwrap()).unwrap();
    let op = &doc["paths"]["/v1/cutovers/{id}/report"]["get"];
    for media in ["text/html", "application/json", "text/markdown"] {
        assert!(
            op["responses"]["200"]["content"][media].is_object(),
            "{media} not in api/openapi.json"
        );
    }
    let registry = jsonschema::Registry::new()
        .draft(jsonschema::Draft::Draft202012)
        .add("urn:cutover:openapi", doc.clone())
        .and_then(|r| r.prepare())
        .unwrap();
    let report_schema = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&registry)
        .build(&json!({"$ref": "urn:cutover:openapi#/components/schemas/Report"}))
        .unwrap();
    let errors: Vec<String> = report_schema
        .iter_errors(&record)
        .map(|e| format!("{}: {e}", e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "the record is not what api/openapi.json says: {errors:#?}"
    );

    // `cutover report ID --server URL` writes what the daemon serves.
    let file = wd.path().join("from-daemon.html");
    let out = run(wd.cutover(
        &moto.endpoint,
        &[
            "report",
            &id,
            "--server",
            &s.url,
            "--token",
            TOKEN,
            "--output",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), html);

    let want = expect(&[0.0, 50.0, 0.0], true);
    check_chart(&wd, &html, &want).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        html.matches(r#"data-kind="operator""#).count() >= 3,
        "pause, resume and rollback marks"
    );
    screenshot(&wd, &html, "operator-375", (375, 1400));
}
