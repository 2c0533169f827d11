//! Shared state (issue 9): whoever drives a cutover may die; a daemon on the same store
//! adopts what nobody drives any more, and no orphan ever looks driven.

use std::time::{Duration, Instant};

use cutover::color::{Color, Split};

use crate::e2e::{Background, hooks_log, journal_text, steps_with_deploy, wait_for_event};
use crate::util::*;

fn long_steps() -> String {
    steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"")
}

/// Regression (issue 9): a `cutover run` killed with SIGKILL at 50 % (a preempted CI runner)
/// stayed split for as long as anyone watched, while a daemon on the same state directory
/// showed it as active and never touched it. The daemon adopts it (its lock is free: its
/// process is gone) and, as `rollback.on_orphan` says by default, rolls it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_is_adopted_and_rolled_back_by_a_daemon_on_its_store() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let _serve = crate::daemon::Serve::start(&wd, &world.endpoint, &plans);
    let mut bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    bg.child.kill().unwrap(); // SIGKILL: no chance to clean up.
    bg.child.wait().unwrap();
    let killed = Instant::now();
    while weights(&world).await != Split::all_on(Color::Blue) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "still split {:?} after the run died:\n{}",
            killed.elapsed(),
            journal_text(&wd.state())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_event(&wd.state(), "finished", Duration::from_secs(30));
    let journal = journal_text(&wd.state());
    assert!(journal.contains("\"event\":\"adopted\""), "{journal}");
    assert!(journal.contains("\"previous_owner\":\"run "), "{journal}");
    assert!(journal.contains("\"trigger\":\"orphaned\""), "{journal}");
    assert!(journal.contains("\"outcome\":\"rolled_back\""), "{journal}");
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"], "each undo once");
}

/// Issue 9: an orphan must never look driven. After its run is killed (and with no daemon to
/// adopt it), `status` says nobody drives it and names the last owner.
#[tokio::test(flavor = "multi_thread")]
async fn status_never_shows_an_orphan_as_driven() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let config = plan.to_str().unwrap();
    let mut bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    let out = run(wd.cutover(&world.endpoint, &["status", "--config", config, "--output", "json"]));
    let v = json(&out);
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["lease"]["held"], true, "{v}");
    assert!(v["lease"]["owner"].as_str().unwrap().starts_with("run "), "{v}");
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    let out = run(wd.cutover(&world.endpoint, &["status", "--config", config, "--output", "json"]));
    let v = json(&out);
    assert_eq!(v["running"], false, "{v}");
    assert_eq!(v["lease"]["held"], false, "{v}");
    let out = run(wd.cutover(&world.endpoint, &["status", "--config", config]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nobody drives it (last owner run "), "{text}");
}
