//! The HTTP API and the client commands: auth and request errors, start/list/get with the
//! event stream and `start --wait` exit codes (and `/metrics` parsed), `watch` replaying the past
//! then streaming live.

use std::time::Duration;

use cutover::color::Color;
use serde_json::{Value, json};

use crate::daemon_contract::sample;
use crate::util::*;

use super::{LONG_BAKE, Serve, TOKEN, TapMkdir, api, call, counted_verdicts, plans, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn auth_and_request_errors() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let dir = plans(&wd, "web", &world, QUICK_STEPS);
    // Without a token the daemon refuses to start.
    let out = run(wd.cutover(
        &moto.endpoint,
        &["serve", "--listen", "127.0.0.1:0", "--plans", dir.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));

    let s = Serve::start(&wd, &moto.endpoint, &dir);
    assert_eq!(call("GET", &format!("{}/health", s.url), None, None).await.0, 200);
    let (code, v) = call("GET", &format!("{}/v1/cutovers", s.url), None, None).await;
    assert_eq!((code, v["error"].is_string()), (401, true));
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/cutovers", s.url),
            Some("wrong-token-0123456789abcdef"),
            None
        )
        .await
        .0,
        401
    );
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "nope"}))).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "../plans/web"}))).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = api(
        &s,
        "POST",
        "/v1/cutovers",
        Some(json!({"plan": "web", "vars": {"version": "1"}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("variable name"), "{v}");
    let (code, v) = api(
        &s,
        "POST",
        "/v1/cutovers",
        Some(json!({"plan": "web", "colour": "red"})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = api(&s, "GET", "/v1/cutovers/20260101T000000Z-0000", None).await;
    assert_eq!(code, 404);
    let (code, v) = api(&s, "GET", "/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(v["paths"]["/v1/cutovers"].is_object());
    // Nothing above changed the weights.
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn start_list_get_events_and_start_wait_exit_codes() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = format!(
        "{}{QUICK_STEPS}",
        r#"
[[steps]]
action = "deploy"
run = ["sh", "-c", "echo \"$CUTOVER_VAR_VERSION\" > version.txt"]
"#
    );
    let dir = plans(&wd, "web", &world, &steps);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let mut cmd = wd.cutover(
        &moto.endpoint,
        &["start", "web", "--var", "VERSION=2.1.0", "--wait", "--server", &s.url],
    );
    cmd.env("CUTOVER_TOKEN", TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "start --wait exits with the outcome's code");
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    // The live log streamed by --wait is the run's live log.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("weights verified by read-back"), "{log}");
    assert!(log.contains("green pass: "), "{log}");
    assert!(log.contains("PROMOTED"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("version.txt")).unwrap().trim(),
        "2.1.0"
    );

    let (code, v) = api(&s, "GET", "/v1/cutovers", None).await;
    assert_eq!(code, 200);
    assert_eq!(v["cutovers"][0]["id"], id.as_str());
    let (_, v) = api(&s, "GET", &format!("/v1/cutovers/{id}"), None).await;
    assert_eq!(v["outcome"], "promoted");
    assert_eq!(v["weights"], json!({"blue": 0.0, "green": 100.0}));
    assert!(v["last_verdict"]["outcome"].is_string(), "{v}");

    // SSE replays every event from the start.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/cutovers/{id}/events", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    let records: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(records.first().unwrap()["event"], "started");
    assert_eq!(records.first().unwrap()["vars"]["VERSION"], "2.1.0");
    assert_eq!(records.last().unwrap()["event"], "finished");

    // A failing new colour: start --wait exits 3. (Green is live now; blue is new.)
    let _bad = Sim::start(
        &world,
        &wd.path().join("bad").tap_mkdir(),
        json!({"rps": 200, "blue_error_rate": 0.3}),
    );
    drop(_sim);
    let mut cmd = wd.cutover(&moto.endpoint, &["start", "web", "--wait", "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN);
    assert_eq!(run(cmd).status.code(), Some(3));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));

    let (_, text) = call("GET", &format!("{}/metrics", s.url), None, None).await;
    let text = text.as_str().unwrap().to_string();
    let page = crate::daemon_contract::check_prometheus(&text);
    // Counters by service (the plans' service is `it`), one for each outcome and trigger.
    assert_eq!(
        sample(
            &page,
            "cutover_cutovers_total",
            &[("service", "it"), ("outcome", "promoted")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            "cutover_cutovers_total",
            &[("service", "it"), ("outcome", "rolled_back")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            "cutover_rollbacks_total",
            &[("service", "it"), ("trigger", "judge")]
        ),
        1.0
    );
    assert!(crate::daemon_contract::sample(&page, "cutover_aws_calls_total", &[("operation", "ModifyListener")]) > 0.0);
    assert_eq!(
        sample(&page, "cutover_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert_eq!(crate::daemon_contract::sample(&page, "cutover_journals", &[]), 2.0);
    // The judge's rollback was detected and restored once: one observation in each histogram.
    for name in ["cutover_detection_seconds", "cutover_rollback_duration_seconds"] {
        let h = &page.families[name];
        assert_eq!(h.family_type, openmetrics_parser::PrometheusType::Histogram, "{name}");
        let s = h.iter_samples().next().unwrap();
        let openmetrics_parser::PrometheusValue::Histogram(v) = &s.value else {
            panic!("{name}")
        };
        assert_eq!(v.count, Some(1), "{name}: {text}");
    }
    assert!(!text.contains("_percent"), "shares are ratios: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_replays_the_past_then_streams_live_until_the_end() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"5s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    // Joined mid-bake: the log starts at the beginning and follows the cutover to its end.
    let mut cmd = wd.cutover(&moto.endpoint, &["watch", &id, "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    let first = log.lines().next().unwrap_or_default();
    assert!(first.contains(&format!("cutover {id} of it: blue is live")), "{first}");
    assert!(log.contains("step 2/2 shift 100%: started"), "{log}");
    assert!(log.lines().last().unwrap().contains("PROMOTED"), "{log}");
}
