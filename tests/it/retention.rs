//! Retention (issue 14.8): `cutover prune` deletes old finished journals, so that the daemon's
//! list and `/metrics`, which fold every journal, do not grow without bound; it never deletes
//! a listener's latest cutover, which `rollback` and `status` start from.

use crate::e2e::profile;
use crate::util::*;

fn ids(wd: &Workdir) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(wd.state().join("cutovers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_the_latest_and_deletes_the_rest_that_finished_long_enough_ago() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.0, 0.05));
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let plan = plan.to_str().unwrap();
    for _ in 0..2 {
        let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan]));
        assert_eq!(out.status.code(), Some(0));
    }
    let before = ids(&wd);
    assert_eq!(before.len(), 2);
    let prune = |args: &[&str]| {
        let mut all = vec!["prune"];
        all.extend(args);
        let out = run(wd.cutover(&world.endpoint, &all));
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Finished a moment ago: a day's retention keeps both.
    assert_eq!(prune(&["--older-than", "1d"]), "");
    // --dry-run says what would go and deletes nothing.
    assert_eq!(
        prune(&["--older-than", "0s", "--dry-run"]),
        format!("would prune {}\n", before[0])
    );
    assert_eq!(ids(&wd), before);
    // The older one goes; the listener's latest stays, and status still finds it.
    assert_eq!(prune(&["--older-than", "0s"]), format!("pruned {}\n", before[0]));
    assert_eq!(ids(&wd), before[1..]);
    let out = run(wd.cutover(&world.endpoint, &["status", "--config", plan]));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&before[1]));
    assert_eq!(prune(&["--older-than", "0s"]), "");
}

/// Bad input names what is wrong.
#[test]
fn prune_needs_a_duration() {
    let wd = Workdir::new();
    let out = run(wd.cutover("http://127.0.0.1:9", &["prune", "--older-than", "soon"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than"));
}
