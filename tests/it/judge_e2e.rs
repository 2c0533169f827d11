//! Judging end to end: the real binary against moto, with the traffic simulator publishing
//! 1-second metrics that follow the weights. Low traffic, the fast path, advisory mode, and
//! an outage both colours share.

use std::path::Path;
use std::time::{Duration, Instant};

use cutover::color::{Color, Split};
use serde_json::{Value, json};

use crate::util::*;

fn profile(rps: u64, blue_error_rate: f64, green_error_rate: f64) -> Value {
    json!({"rps": rps, "blue_error_rate": blue_error_rate, "green_error_rate": green_error_rate,
           "blue_latency": 0.05, "green_latency": 0.05})
}

/// Every journaled verdict of the cutovers in `state`, oldest first.
fn verdicts(state: &Path) -> Vec<Value> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(state.join("cutovers")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "verdict" {
                all.push(v["verdict"].clone());
            }
        }
    }
    all
}

fn run_plan(wd: &Workdir, world: &World, plan_text: &str) -> (Option<i32>, Value, String) {
    let plan = wd.write_plan(plan_text);
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code(), json(&out), log)
}

const LONG_FIRST_BAKE: &str = r#"
[[steps]]
action = "shift"
weight = 50
bake = "60s"

[[steps]]
action = "shift"
weight = 100
bake = "3s"
"#;

/// Two requests a second reach green, half of them errors; min_requests is 20. One second
/// proves nothing, so the judge grows the window to about ten seconds, then fails it; the
/// second such window rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn a_regression_at_low_traffic_rolls_back_once_the_evidence_is_enough() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(4, 0.0, 0.5));
    let (code, s, log) = run_plan(&wd, &world, &plan(&world, "", LONG_FIRST_BAKE));
    assert_eq!(code, Some(3), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert!(log.contains("growing the window"), "{log}");
    let verdicts = verdicts(&wd.state());
    let failed: Vec<&Value> = verdicts.iter().filter(|v| v["outcome"] == "fail").collect();
    assert_eq!(failed.len(), 2, "{verdicts:?}");
    for v in &failed {
        let ev = &v["evidence"];
        assert!(ev["new"]["requests"].as_f64().unwrap() >= 20.0, "{v}");
        assert!(
            ev["windows"].as_u64().unwrap() >= 5,
            "a grown window, not one second: {v}"
        );
    }
    assert!(
        verdicts
            .iter()
            .any(|v| v["outcome"] == "inconclusive" && v["evidence_pending"] == true)
    );
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Every green request fails. With failures_to_rollback = 5 only the fast path can act on
/// the first judged window: one failed verdict, and traffic is back on blue.
#[tokio::test(flavor = "multi_thread")]
async fn a_hard_failure_rolls_back_on_the_first_window() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(200, 0.0, 1.0));
    let text = plan(&world, "critical_error_rate = 0.5", LONG_FIRST_BAKE)
        .replace("failures_to_rollback = 2", "failures_to_rollback = 5");
    let (code, s, _log) = run_plan(&wd, &world, &text);
    assert_eq!(code, Some(3), "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("critical error rate") && reason.contains("fast path → rollback"),
        "{s}"
    );
    let failed: Vec<Value> = verdicts(&wd.state())
        .into_iter()
        .filter(|v| v["outcome"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["critical"], true);
    assert_eq!(failed[0]["failures"], 1);
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// `mode = "advise"`: green fails, the judge says it would roll back, and nothing rolls
/// back. When green recovers the bake goes on and the cutover is promoted.
#[tokio::test(flavor = "multi_thread")]
async fn advisory_mode_records_what_it_would_do_and_never_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(200, 0.0, 0.3));
    // A first bake long enough to see several would-be rollbacks before it can end.
    let steps = QUICK_STEPS.replacen("bake = \"3s\"", "bake = \"12s\"", 1);
    let plan = wd.write_plan(&plan(&world, "mode = \"advise\"", &steps));
    let log = wd.path().join("run.log");
    let mut child = wd
        .cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_verdicts(&wd, "would_rollback", &json!(true), 3, &mut child);
    // The bake goes on (it may have moved on to 100 %): traffic was never put back on blue.
    let w = weights(&world).await;
    assert!(w.weight(Color::Green) >= 500, "advisory mode rolled back: {w}");
    set_profile(&wd, profile(200, 0.0, 0.0));
    let code = wait_exit(&mut child);
    let log = std::fs::read_to_string(&log).unwrap();
    eprintln!("--- live log:\n{log}");
    assert_eq!(code, Some(0));
    assert!(
        log.contains("→ would roll back (advisory mode: not rolling back)"),
        "{log}"
    );
    let verdicts = verdicts(&wd.state());
    assert!(verdicts.iter().all(|v| v["rollback"] == false), "{verdicts:?}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
}

/// Rewrites the simulator's profile atomically (it re-reads the file every second).
fn set_profile(wd: &Workdir, profile: Value) {
    let tmp = wd.path().join("profile.json.tmp");
    std::fs::write(&tmp, profile.to_string()).unwrap();
    std::fs::rename(&tmp, wd.path().join("profile.json")).unwrap();
}

/// Waits until `n` journaled verdicts have `key` = `value`; fails if the run ends first.
fn wait_for_verdicts(wd: &Workdir, key: &str, value: &Value, n: usize, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        let seen = if wd.state().join("cutovers").exists() {
            verdicts(&wd.state()).iter().filter(|v| &v[key] == value).count()
        } else {
            0
        };
        if seen >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {n} verdicts with {key} = {value}");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("no {n} verdicts with {key} = {value} within 60s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (up to a minute) for the run to end; its exit code.
fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the run did not end within 60s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Both colours serve 30 % errors (a shared database is down): the judge reports a shared
/// failure and holds at 50 %, neither promoting nor rolling back, until the outage ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_outage_holds_then_the_cutover_goes_on() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(200, 0.3, 0.3));
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let mut child = wd
        .cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_verdicts(&wd, "outcome", &json!("shared_failure"), 4, &mut child);
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    // The outage ends: the bake resumes and the cutover is promoted.
    set_profile(&wd, profile(200, 0.0, 0.0));
    assert_eq!(wait_exit(&mut child), Some(0));
    let verdicts = verdicts(&wd.state());
    assert!(verdicts.iter().all(|v| v["outcome"] != "fail"), "{verdicts:?}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
}
