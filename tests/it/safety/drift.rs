//! Drift: weights changed by hand mid-bake keep the judge judging; a foreground run paused for
//! drift is resumed through its journal by `cutover resume --config`.

use std::time::Duration;

use cutover::color::{Color, Split};
use cutover::traffic::Writing;

use crate::e2e::{Background, journal_text, profile, steps_with_deploy, wait_for_event};
use crate::util::*;

use super::{long_steps, set_profile};

/// Writes weights by hand, as an operator at the console would, straight to moto.
async fn set_weights_by_hand(world: &World, split: Split) {
    let conf = sdk(&world.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(world));
    cutover::traffic::set_and_verify(
        &alb,
        split,
        Duration::from_secs(5),
        Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();
}

fn event_count(wd: &Workdir, kind: &str) -> usize {
    journal_text(&wd.state())
        .matches(&format!("\"event\":\"{kind}\""))
        .count()
}

/// Regression (issue 8.1): after weights were changed by hand mid-bake, the cutover paused and
/// stopped judging; green then returned 50 % 5xx with 70 % of traffic on it, and nothing
/// happened. The drift pause holds the bake clock only: the judge rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn drift_mid_bake_keeps_judging_and_a_failure_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    set_weights_by_hand(&world, Split::with_new(Color::Green, 700)).await;
    wait_for_event(&wd.state(), "drift", Duration::from_secs(20));
    let verdicts_at_drift = event_count(&wd, "verdict");
    set_profile(&wd, profile(0.5, 0.05));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert!(
        event_count(&wd, "verdict") > verdicts_at_drift,
        "no verdict after the drift"
    );
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Issue 8.1: a foreground run paused for drift is resumed without a daemon, through the
/// journal: `cutover resume --config` re-applies the verified weights and the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_paused_for_drift_resumes_with_resume_config() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"8s\"");
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    set_weights_by_hand(&world, Split::with_new(Color::Green, 700)).await;
    wait_for_event(&wd.state(), "drift", Duration::from_secs(20));
    let config = plan.to_str().unwrap();
    let out = run(wd.cutover(&world.endpoint, &["resume", "--config", config, "--reason", "checked"]));
    assert_eq!(out.status.code(), Some(0));
    let (code, s) = bg.wait(Duration::from_secs(90));
    assert_eq!(code, 0, "{s}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    let journal = journal_text(&wd.state());
    assert!(journal.contains("\"reason\":\"checked\""), "{journal}");
    // Resuming something that is not paused says so and changes nothing.
    let out = run(wd.cutover(&world.endpoint, &["resume", "--config", config]));
    assert_eq!(out.status.code(), Some(1));
}
