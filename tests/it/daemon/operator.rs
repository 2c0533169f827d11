//! Operator actions through the API: pause, resume, promote and rollback.

use std::time::Duration;

use cutover::color::{Color, Split};
use serde_json::json;

use crate::util::*;

use super::{LONG_BAKE, Serve, api, counted_verdicts, plans, wait_until};

/// Every line of a Prometheus text exposition is a comment or `name{labels} value`.
#[tokio::test(flavor = "multi_thread")]
async fn operator_actions_pause_resume_promote_and_rollback() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, "web", &world, LONG_BAKE);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "first verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;

    // A second cutover on the same listener is refused, and so is `cutover run`.
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 409, "{v}");
    let out = run(wd.cutover(
        &moto.endpoint,
        &["run", "--config", dir.join("web.toml").to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(5));

    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/pause"),
        Some(json!({"reason": "checking dashboards", "by": "alice"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["paused"], "checking dashboards");
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 200);
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 409, "resume when not paused");
    // Promote ends the 10-minute bake now: the cutover moves on to 100 %.
    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/promote"),
        Some(json!({"reason": "looks good"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    wait_until(&s, &id, Duration::from_secs(20), "shift 100%", |v| {
        v["step"] == "shift 100%"
    })
    .await;
    // Roll back: traffic is back before the response.
    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/rollback"),
        Some(json!({"reason": "pager", "by": "bob"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    let v = wait_until(&s, &id, Duration::from_secs(20), "finished", |v| {
        v["outcome"].is_string()
    })
    .await;
    assert_eq!(v["outcome"], "rolled_back_by_operator");
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    // The caller is named by its token (`api`, the daemon's CUTOVER_TOKEN), and a `by` in the
    // body is kept beside it as said (issue 11's named tokens; this test still expected the
    // body's `by` first, from before them).
    for needle in [
        "\"event\":\"paused\"",
        "api (API, 127.0.0.1:",
        ", says alice)",
        "\"event\":\"resumed\"",
        "\"event\":\"promote_requested\"",
        ", says bob)",
    ] {
        assert!(journal.contains(needle), "{needle} missing from the journal");
    }
}
