//! Judging end to end: the real binary against moto, with the traffic simulator publishing
//! 1-second metrics that follow the weights. Low traffic, the fast path, advisory mode, an
//! outage both colours share, and issue 10's three situations: evidence that no window holds on
//! its own, at high and at low traffic, and a live colour already failing before the start.

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
/// proves nothing, so the judge gathers evidence for about ten seconds (inconclusive), then fails
/// it; the second failed verdict rolls back. (Issue 10: the evidence is the cutover's so far, not
/// a window grown afresh after each verdict: "gathering evidence", and no restart in between.)
#[tokio::test(flavor = "multi_thread")]
async fn a_regression_at_low_traffic_rolls_back_once_the_evidence_is_enough() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(4, 0.0, 0.5));
    let (code, s, log) = run_plan(&wd, &world, &plan(&world, "", LONG_FIRST_BAKE));
    assert_eq!(code, Some(3), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert!(log.contains("gathering evidence"), "{log}");
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

/// Both colours serve 30 % errors (a shared database is down) once the cutover is under way: the
/// judge reports a shared failure and holds at 50 %, neither promoting nor rolling back, until
/// the outage ends. (Issue 10: an outage already there before the start stops the start instead,
/// see `a_live_colour_already_failing_is_not_started`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_outage_holds_then_the_cutover_goes_on() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(200, 0.0, 0.0));
    let steps = QUICK_STEPS.replacen("bake = \"3s\"", "bake = \"8s\"", 1);
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let mut child = wd
        .cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_verdicts(&wd, "outcome", &json!("pass"), 1, &mut child);
    set_profile(&wd, profile(200, 0.3, 0.3));
    wait_for_verdicts(&wd, "outcome", &json!("shared_failure"), 4, &mut child);
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    // The outage ends: the bake resumes and the cutover is promoted.
    set_profile(&wd, profile(200, 0.0, 0.0));
    assert_eq!(wait_exit(&mut child), Some(0));
    let verdicts = verdicts(&wd.state());
    assert!(verdicts.iter().all(|v| v["outcome"] != "fail"), "{verdicts:?}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
}

/// Every journaled event of kind `event` of the cutovers in `state`.
fn events(state: &Path, event: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(state.join("cutovers")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == event {
                all.push(v);
            }
        }
    }
    all
}

const MINUTE_AT_HALF: &str = r#"
[[steps]]
action = "verify"
checks = [{ command = ["true"] }]

[[steps]]
action = "shift"
weight = 50
bake = "60s"

[[steps]]
action = "shift"
weight = 100
bake = "3s"
"#;

/// Regression (issue 10, situation 1): green at seven times blue's error rate (3.5 % against
/// 0.5 %, 200 requests a second each), under the plan's absolute 5 %. No second is significant on
/// its own (Fisher's p ≈ 0.03 per second: the judge before issue 10 passed every one and
/// promoted); the evidence of a few seconds together is overwhelming, and it rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn a_regression_no_window_proves_on_its_own_rolls_back_at_high_traffic() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(400, 0.005, 0.035));
    let (code, s, log) = run_plan(&wd, &world, &plan(&world, "", MINUTE_AT_HALF));
    assert_eq!(code, Some(3), "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("error rate too high vs live"), "{s}");
    assert!(reason.contains("δ-mSPRT rejects"), "{s}");
    assert!(
        !reason.contains("error rate too high,"),
        "the absolute 5 % is not what failed: {s}"
    );
    let verdicts = verdicts(&wd.state());
    let failed: Vec<&Value> = verdicts.iter().filter(|v| v["outcome"] == "fail").collect();
    let first = failed.first().expect("a failed verdict");
    // The evidence is many periods, not the one second that tipped it.
    assert!(first["evidence"]["windows"].as_u64().unwrap() >= 3, "{first}");
    // Well inside the minute at 50 %.
    let judged = verdicts.iter().filter(|v| v["outcome"] == "pass").count();
    assert!(judged < 40, "{judged} passing seconds before the rollback");
    assert!(log.contains("green pass: "), "{log}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Regression (issue 10, situation 2): a moderate regression at low traffic, 25 % errors against
/// the plan's 10 % at 4 requests a second. Each window of 20 requests (5 errors) is not
/// significant on its own (p ≈ 0.04; the judge before issue 10 promoted it); the cutover's
/// evidence is, and it rolls back during the first bake.
#[tokio::test(flavor = "multi_thread")]
async fn a_moderate_regression_at_low_traffic_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(8, 0.0, 0.25));
    let text = plan(&world, "", MINUTE_AT_HALF).replace("max_error_rate = 0.05", "max_error_rate = 0.1");
    let (code, s, _log) = run_plan(&wd, &world, &text);
    assert_eq!(code, Some(3), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    let verdicts = verdicts(&wd.state());
    let failed = verdicts
        .iter()
        .find(|v| v["outcome"] == "fail")
        .expect("a failed verdict");
    assert!(
        failed["evidence"]["new"]["requests"].as_f64().unwrap() > 20.0,
        "{failed}"
    );
    // Rolled back at 50 %, before the first bake's minute was over.
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps[1]["status"], "failed", "{s}");
}

/// Regression (issue 10, situation 3): blue already serves 20 % errors, over the plan's 5 %,
/// before anything changed. Verify reads its recent history (the baseline), and the cutover does
/// not start: exit 5, no weight written, nothing run.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_colour_already_failing_is_not_started() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(200, 0.2, 0.0));
    // A few settled seconds of blue's history for verify to read.
    std::thread::sleep(Duration::from_secs(4));
    let before = weights(&world).await;
    let steps = r#"
[[steps]]
action = "verify"
checks = [{ command = ["true"] }]

[[steps]]
action = "deploy"
run = ["touch", "deployed"]
undo = ["true"]

[[steps]]
action = "shift"
weight = 50
bake = "60s"

[[steps]]
action = "shift"
weight = 100
bake = "3s"
"#;
    let (code, s, log) = run_plan(&wd, &world, &plan(&world, "", steps));
    assert_eq!(code, Some(5), "{s}\n{log}");
    assert_eq!(s["outcome"], "not_started");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("blue already fails the plan's thresholds, before anything changed")
            && reason.contains("blue's error rate 20.00%"),
        "{s}"
    );
    assert_eq!(weights(&world).await, before);
    assert!(events(&wd.state(), "weight_intent").is_empty());
    assert!(!wd.path().join("deployed").exists(), "the deploy ran");
    // The baseline that stopped it is in the journal and in the live log.
    let baselines = events(&wd.state(), "baseline");
    assert_eq!(baselines.len(), 1, "{baselines:?}");
    assert!(baselines[0]["baseline"]["errors"].as_f64().unwrap() > 0.0);
    assert!(log.contains("baseline of blue"), "{log}");
}
