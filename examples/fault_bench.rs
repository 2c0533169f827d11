//! Whole cutovers through the fault-injecting proxy, with figures (issue 8's measurement):
//!
//! ```text
//! deploy/local/bench-faults.sh [--debug] [--cutovers N]
//! cargo run --release --example fault_bench -- --binary target/release/cutover [--cutovers N]
//! ```
//!
//! 1. **Fault mix**: `N` healthy and `N` failing (green at 30 % 5xx) cutovers, four at a time,
//!    each on its own load balancer in one moto, every ELBv2 and CloudWatch call of the binary
//!    through the proxy at 30 % throttling, 10 % HTTP 500, +500 ms on a third of the calls and
//!    2 % connection resets. Prints the outcomes, how many ended stranded (no colour holding
//!    all traffic), and for the failing ones the time from the judge's decision to traffic
//!    confirmed back on blue.
//! 2. **DescribeListeners throttled for 30 s** from the moment green starts failing: the time
//!    from the judge's decision to traffic back on blue (as moto sees it, polled directly) and
//!    to the read-back that confirms it.
//!
//! Needs moto (`deploy/local/install-moto.sh`) and a built `cutover` binary.

#[path = "support/bench.rs"]
mod bench;
#[path = "../tests/support/fault_proxy/mod.rs"]
mod fault_proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::*;
use fault_proxy::{FaultProxy, Faults, Rule};
use serde_json::Value;

fn plan(w: &Value, bake: &str, verify_timeout: &str) -> String {
    format!(
        r#"[service]
name = "bench"
[alb]
listener_arn = "{}"
blue_target_group_arn = "{}"
green_target_group_arn = "{}"
verify_timeout = "{verify_timeout}"
[metrics]
namespace = "Cutover/Bench"
period = "1s"
settle = "1s"
poll_interval = "1s"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.05
min_requests = 20
failures_to_rollback = 2
[[steps]]
action = "verify"
[[steps]]
action = "deploy"
run = ["true"]
undo = ["true"]
[[steps]]
action = "shift"
weight = 50
bake = "{bake}"
[[steps]]
action = "shift"
weight = 100
bake = "3s"
"#,
        w["listener_arn"].as_str().unwrap(),
        w["blue_target_group_arn"].as_str().unwrap(),
        w["green_target_group_arn"].as_str().unwrap(),
    )
}

/// `cutover run --config plan --output json`.
fn run(binary: &Path, endpoint: &str, dir: &Path, plan: &Path) -> Command {
    let mut cmd = cutover(binary, endpoint, dir);
    cmd.args(["run", "--config"]).arg(plan).args(["--output", "json"]);
    cmd
}

fn fault_mix() -> Faults {
    Faults::none()
        .throttle(Rule::p(0.3))
        .server_error(500, Rule::p(0.1))
        .delay(Duration::from_millis(500), Duration::ZERO, Rule::p(0.33))
        .reset(Rule::p(0.02))
}

struct Run {
    healthy: bool,
    code: i32,
    stranded: bool,
    restore_secs: Option<f64>,
}

fn one(binary: &Path, moto: &str, proxy: &str, name: &str, healthy: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let w = world(moto, name);
    let _sim = sim(moto, &w, dir.path(), if healthy { 0.0 } else { 0.3 });
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(&plan_path, plan(&w, "3s", "30s")).unwrap();
    let out = run(binary, proxy, dir.path(), &plan_path).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let (b, g) = moto_weights(moto, &w);
    let stranded = !((b > 0 && g == 0) || (g > 0 && b == 0));
    let records = journal(&dir.path().join("state"));
    let restore_secs = match (first(&records, "step_failed"), first(&records, "traffic_restored")) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Run {
        healthy,
        code,
        stranded,
        restore_secs,
    }
}

#[tokio::main]
async fn main() {
    let mut binary = root().join("target/release/cutover");
    let mut n = 12usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--binary" => binary = PathBuf::from(args.next().expect("--binary PATH")),
            "--cutovers" => n = args.next().and_then(|v| v.parse().ok()).expect("--cutovers N"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(binary.exists(), "no binary at {}: build it first", binary.display());
    let (_moto, moto) = start_moto();
    let proxy = FaultProxy::start(&moto).await;
    let proxy_url = proxy.endpoint().to_string();
    println!("fault mix: 30 % throttling, 10 % HTTP 500, +500 ms on a third of the calls, 2 % resets");
    println!("machine: {} cores, load {}", num_cores(), load());
    proxy.set(fault_mix());
    let started = Instant::now();
    let mut runs = vec![];
    let jobs: Vec<(String, bool)> = (0..n)
        .flat_map(|i| [(format!("h{i}"), true), (format!("f{i}"), false)])
        .collect();
    for chunk in jobs.chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|(name, healthy)| {
                let (binary, moto, proxy_url, name, healthy) =
                    (binary.clone(), moto.clone(), proxy_url.clone(), name.clone(), *healthy);
                std::thread::spawn(move || one(&binary, &moto, &proxy_url, &name, healthy))
            })
            .collect();
        runs.extend(handles.into_iter().map(|h| h.join().unwrap()));
    }
    let snapshot = proxy.snapshot();
    proxy.clear();
    let count = |healthy: bool, code: i32| runs.iter().filter(|r| r.healthy == healthy && r.code == code).count();
    let healthy_other = runs.iter().filter(|r| r.healthy && r.code != 0).count();
    let failing_other = runs.iter().filter(|r| !r.healthy && r.code != 3).count();
    println!(
        "\n1. {} cutovers in {:.0} s under the fault mix ({} calls, {} faults injected)",
        runs.len(),
        started.elapsed().as_secs_f64(),
        snapshot.operations.values().map(|o| o.requests).sum::<u64>(),
        snapshot.operations.values().map(|o| o.faults()).sum::<u64>()
    );
    println!(
        "   healthy: {} promoted (exit 0), {} other",
        count(true, 0),
        healthy_other
    );
    println!(
        "   failing: {} rolled back (exit 3), {} other",
        count(false, 3),
        failing_other
    );
    for r in runs
        .iter()
        .filter(|r| (r.healthy && r.code != 0) || (!r.healthy && r.code != 3))
    {
        println!("     unexpected: healthy={} exit {}", r.healthy, r.code);
    }
    println!(
        "   stranded (no colour holding all traffic at the end): {}",
        runs.iter().filter(|r| r.stranded).count()
    );
    let restores: Vec<f64> = runs.iter().filter_map(|r| r.restore_secs).collect();
    println!(
        "   judge's decision → traffic confirmed on blue: median {:.2} s, max {:.2} s (n={})",
        median(restores.clone()),
        max(&restores),
        restores.len()
    );
    println!("\n{snapshot}");

    println!("2. DescribeListeners throttled for 30 s from the moment green starts failing (3 runs)");
    let mut back = vec![];
    let mut confirmed = vec![];
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let w = world(&moto, &format!("t{i}"));
        let _sim = sim(&moto, &w, dir.path(), 0.0);
        let plan_path = dir.path().join("plan.toml");
        std::fs::write(&plan_path, plan(&w, "10m", "60s")).unwrap();
        let mut child = Killed(
            run(&binary, &proxy_url, dir.path(), &plan_path)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let state = dir.path().join("state");
        let t0 = Instant::now();
        while first(&journal(&state), "bake_started").is_none() {
            assert!(t0.elapsed() < Duration::from_secs(60), "no bake");
            std::thread::sleep(Duration::from_millis(100));
        }
        proxy.set(
            Faults::none().throttle(
                Rule::always()
                    .only(["DescribeListeners"])
                    .lasting(Duration::from_secs(30)),
            ),
        );
        set_profile(&dir.path().join("profile.json"), 0.5);
        let mut back_at = None;
        let t0 = Instant::now();
        while child.0.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(120) {
            if back_at.is_none() && moto_weights(&moto, &w) == (999, 0) {
                back_at = Some(now_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy.clear();
        let records = journal(&state);
        if let (Some(decided), Some(b), Some(c)) = (
            first(&records, "step_failed"),
            back_at,
            first(&records, "traffic_restored"),
        ) {
            back.push(b - decided);
            confirmed.push(c - decided);
        }
    }
    println!(
        "   judge's decision → traffic back on blue (moto): median {:.2} s; → confirmed by read-back: median {:.2} s (n={})",
        median(back),
        median(confirmed.clone()),
        confirmed.len()
    );
}
