//! Who sends besides a foreground run: the daemon, for the cutovers it drives (counted in
//! `/metrics`), and the command-line rollback of a dead run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::{Serve, api};
use crate::e2e::steps_with_deploy;
use crate::util::*;

use super::{Answer, Receiver, journal, run_blocking, vocabulary};

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
