//! The daemon killed and started again: a killed daemon resumes the bake and promotes, drift
//! while it was down pauses for an operator, `start --wait` survives a restart.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cutover::color::{Color, Split};
use serde_json::json;

use crate::util::*;

use super::{LONG_BAKE, Serve, TOKEN, api, counted_verdicts, plans, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_resumes_the_bake_and_promotes() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"8s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    s.kill9();
    assert_eq!(
        weights(&world).await,
        Split::with_new(Color::Green, 500),
        "killed mid-bake at 50 %"
    );
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let v = wait_until(&s, &id, Duration::from_secs(40), "finished", |v| {
        v["outcome"].is_string()
    })
    .await;
    assert_eq!(v["outcome"], "promoted", "{v}");
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    assert!(journal.contains("resuming step shift 50%"), "{journal}");
    // The bake went on with the time already judged: one BakeStarted for the 50 % step.
    assert_eq!(
        journal.matches("\"event\":\"bake_started\",\"step\":0").count(),
        1,
        "{journal}"
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_while_the_daemon_was_down_pauses_for_an_operator() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, "web", &world, LONG_BAKE);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    assert_eq!(s.sigterm(), 0, "graceful shutdown");
    // SIGTERM rolled nothing back.
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    // Someone moves the weights by hand while the daemon is down.
    let conf = sdk(&moto.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(&world));
    let manual = Split::with_new(Color::Green, 200);
    cutover::traffic::set_and_verify(
        &alb,
        manual,
        Duration::from_secs(5),
        cutover::traffic::Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();

    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let v = wait_until(&s, &id, Duration::from_secs(20), "paused", |v| v["paused"].is_string()).await;
    assert!(
        v["paused"]
            .as_str()
            .unwrap()
            .contains("weights changed outside cutover"),
        "{v}"
    );
    // Not overwritten while paused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(weights(&world).await, manual);
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"event\":\"drift\""), "{journal}");
    // Resume re-applies the plan's weight.
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 200);
    wait_until(&s, &id, Duration::from_secs(20), "re-applied", |v| {
        v["paused"].is_null()
    })
    .await;
    let start = Instant::now();
    while weights(&world).await != Split::with_new(Color::Green, 500) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the plan's weight was not re-applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pipeline's `start --wait` outlives a daemon restart: it reconnects and exits with the
/// cutover's outcome.
#[tokio::test(flavor = "multi_thread")]
async fn start_wait_survives_a_daemon_restart() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"6s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let mut cmd = wd.cutover(&moto.endpoint, &["start", "web", "--wait", "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let waiter = cmd.spawn().unwrap();
    // Wait for the cutover to be baking, then restart the daemon on the same address.
    let start = Instant::now();
    let id = loop {
        let (_, v) = api(&s, "GET", "/v1/cutovers", None).await;
        if let Some(c) = v["cutovers"].as_array().and_then(|a| a.first())
            && c["last_verdict"].is_object()
        {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no verdict: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let addr = s.url.trim_start_matches("http://").to_string();
    assert_eq!(s.sigterm(), 0);
    let s2 = Serve::start_on(&wd, &moto.endpoint, &dir, &addr);
    let out = waiter.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "start --wait must follow the cutover across the restart"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("step 1/2 shift 50%: started").count(),
        1,
        "records shown twice after reconnecting"
    );
    let (_, v) = api(&s2, "GET", &format!("/v1/cutovers/{id}"), None).await;
    assert_eq!(v["outcome"], "promoted");
}
