//! Crashes at exact journal points (`CUTOVER_TEST_CRASH_AFTER`): a run killed before its start,
//! an undo or a command killed right after it succeeded.

use cutover::color::{Color, Split};

use crate::e2e::{hooks_log, profile, steps_with_deploy};
use crate::util::*;

/// Regression (issue 8.2): killed between the `started` record and the latest-cutover index,
/// `cutover rollback` acted on the previous cutover: in a ping-pong (green live) it moved all
/// traffic to blue and ran the previous cutover's undos while green served. The index is now
/// written first; killed between the two, the rollback finds a cutover that never began.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_before_its_start_never_rolls_back_the_previous_cutover() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", config]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    // The second cutover (green live) dies right after updating the index.
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env("CUTOVER_TEST_CRASH_AFTER", "latest ");
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config]));
    assert_eq!(out.status.code(), Some(2), "it must not guess a colour");
    assert!(String::from_utf8_lossy(&out.stderr).contains("never started"));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green), "green still serves");
    assert_eq!(hooks_log(&wd), ["deploy green"], "no undo of the previous cutover");
    // And nothing blocks the next cutover.
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", config]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

/// Regression (issue 8.2): an undo killed after its successful `hook` record and before
/// `undo_done` ran again on the next rollback, though the journal held its result.
#[tokio::test(flavor = "multi_thread")]
async fn an_undo_killed_after_it_succeeded_is_not_run_again() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env(
        "CUTOVER_TEST_CRASH_AFTER",
        "\"event\":\"hook\",\"step\":0,\"phase\":\"undo\"",
    );
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(3), "the crash hook did not fire");
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config, "--output", "json"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["outcome"], "rolled_back");
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"], "the undo ran twice");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Regression (issue 8.2): a forward command killed after its successful `hook` record and
/// before `step_done` was never undone, and the summary showed a finished cutover with a step
/// still `running`.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_killed_after_it_succeeded_is_undone() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env(
        "CUTOVER_TEST_CRASH_AFTER",
        "\"event\":\"hook\",\"step\":0,\"phase\":\"run\"",
    );
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config, "--output", "json"]));
    assert_eq!(out.status.code(), Some(0));
    let s = json(&out);
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
    assert!(
        s["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["status"] != "running"),
        "{s}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("although it did not complete"));
}
