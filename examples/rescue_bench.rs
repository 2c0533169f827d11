//! The shared store's figures (issue 9), printed:
//!
//! ```text
//! deploy/local/bench-rescue.sh [--debug] [--trials N]
//! cargo run --release --example rescue_bench -- --binary target/release/cutover [--trials N]
//! ```
//!
//! Everything against one moto: a DynamoDB store (`cutover store init`), a blue/green load
//! balancer with simulated healthy traffic, and a daemon (`cutover serve --name ops-1`) on the
//! same store, as a second machine would run it.
//!
//! 1. **Store calls per cutover-minute.** One `cutover run --store` of two 60-second bakes
//!    (60 s periods, 15 s polls: the production defaults' cadence), its
//!    calls through a counting proxy (no faults), and the daemon's calls over the same minutes
//!    through another: the calls by operation per minute, the request units they cost (the
//!    unit model of `journal::dynamo`'s module doc: a fenced append or a create is a
//!    transaction of 4 WRU, any other write 1 WRU, a read 1 RRU per 4 KB) and the price at
//!    on-demand rates.
//! 2. **An owner's death.** `N` times: a `cutover run --store` at 50 % in a long bake is killed
//!    with SIGKILL; the time until moto's weights are all on the live colour again (polled directly every
//!    100 ms) and until the daemon has journaled the cutover's end. A dead owner cannot release
//!    its lease, so it runs out 10–15 s after the kill (15 s after the last renewal, which came
//!    at most 5 s before), and the next rescue poll (every 5 s) adopts it: 10–20 s, plus the
//!    rescue pass and the restore.
//!
//! Needs moto (`deploy/local/install-moto.sh`) and a built `cutover` binary.

#[path = "support/bench.rs"]
mod bench;
#[path = "../tests/support/fault_proxy/mod.rs"]
mod fault_proxy;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bench::*;
use fault_proxy::{FaultProxy, Snapshot};
use serde_json::Value;

const STORE: &str = "dynamodb://cutover-bench";
const TOKEN: &str = "rescue-bench-token-0123456789";
/// us-east-1 on-demand prices (the `journal::dynamo` module doc says where they are from).
const USD_PER_WRU: f64 = 0.625e-6;
const USD_PER_RRU: f64 = 0.125e-6;

fn plan(w: &Value, steps: &str) -> String {
    format!(
        r#"[service]
name = "rescue-bench"
[alb]
listener_arn = "{}"
blue_target_group_arn = "{}"
green_target_group_arn = "{}"
[metrics]
namespace = "Cutover/Bench"
period = "60s"
settle = "5s"
poll_interval = "15s"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.05
min_requests = 20
[[steps]]
action = "verify"
[[steps]]
action = "deploy"
run = ["true"]
undo = ["true"]
{steps}"#,
        w["listener_arn"].as_str().unwrap(),
        w["blue_target_group_arn"].as_str().unwrap(),
        w["green_target_group_arn"].as_str().unwrap(),
    )
}

const MEASURED_STEPS: &str = "[[steps]]\naction = \"shift\"\nweight = 50\nbake = \"60s\"\n\
                              [[steps]]\naction = \"shift\"\nweight = 100\nbake = \"60s\"\n";
const LONG_STEPS: &str = "[[steps]]\naction = \"shift\"\nweight = 50\nbake = \"10m\"\n\
                          [[steps]]\naction = \"shift\"\nweight = 100\nbake = \"3s\"\n";

/// The store's calls by operation between two snapshots of a proxy.
fn store_calls(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, u64> {
    let dynamo = [
        "GetItem",
        "PutItem",
        "UpdateItem",
        "Query",
        "TransactWriteItems",
        "DeleteItem",
    ];
    dynamo
        .iter()
        .map(|op| {
            let n = |s: &Snapshot| s.operations.get(*op).map(|o| o.requests).unwrap_or(0);
            (op.to_string(), n(after) - n(before))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// (WRU, RRU) of these calls, by the module doc's unit model.
fn units(calls: &BTreeMap<String, u64>) -> (f64, f64) {
    let mut wru = 0.0;
    let mut rru = 0.0;
    for (op, n) in calls {
        let n = *n as f64;
        match op.as_str() {
            "TransactWriteItems" => wru += 4.0 * n,
            "PutItem" | "UpdateItem" | "DeleteItem" => wru += n,
            _ => rru += n,
        }
    }
    (wru, rru)
}

fn print_rates(who: &str, calls: &BTreeMap<String, u64>, minutes: f64) {
    let per_minute: Vec<String> = calls
        .iter()
        .map(|(op, n)| format!("{op} {:.1}", *n as f64 / minutes))
        .collect();
    let (wru, rru) = units(calls);
    let usd = (wru * USD_PER_WRU + rru * USD_PER_RRU) / minutes;
    println!(
        "   {who}: {} a minute → {:.1} WRU + {:.1} RRU a minute = ${usd:.7} a minute",
        per_minute.join(", "),
        wru / minutes,
        rru / minutes
    );
}

/// `cutover status --store --output json` of the plan.
fn status(binary: &Path, moto: &str, dir: &Path, plan: &Path) -> Value {
    let out = cutover(binary, moto, dir)
        .args(["status", "--store", STORE, "--config"])
        .arg(plan)
        .args(["--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until the file `log` says `what`.
fn wait_log(log: &Path, what: &str, bound: Duration) {
    let start = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(what) {
        assert!(
            start.elapsed() < bound,
            "no {what:?} in {} within {bound:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::main]
async fn main() {
    let mut binary = root().join("target/release/cutover");
    let mut trials = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--binary" => binary = PathBuf::from(args.next().expect("--binary PATH")),
            "--trials" => trials = args.next().and_then(|v| v.parse().ok()).expect("--trials N"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(binary.exists(), "no binary at {}: build it first", binary.display());
    let (_moto, moto) = start_moto();
    let runner_proxy = FaultProxy::start(&moto).await;
    let daemon_proxy = FaultProxy::start(&moto).await;
    println!("machine: {} cores, load {}", num_cores(), load());

    let dir = tempfile::tempdir().unwrap();
    let init = cutover(&binary, &moto, dir.path())
        .args(["store", "init", "--store", STORE])
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(init.success(), "cutover store init failed");
    let w = world(&moto, "rescue");
    let _sim = sim(&moto, &w, dir.path(), 0.0);

    // The daemon, on the same store, as another machine.
    let daemon_dir = tempfile::tempdir().unwrap();
    let plans = daemon_dir.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let mut serve = cutover(&binary, daemon_proxy.endpoint(), daemon_dir.path());
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "ops-1",
            "--store",
            STORE,
            "--plans",
        ])
        .arg(&plans)
        .env("CUTOVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(daemon_dir.path().join("serve.log")).unwrap());
    let mut serve = Killed(serve.spawn().unwrap());
    let mut line = String::new();
    std::io::BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "the daemon did not start: {line:?}");

    println!("\n1. Store calls of one cutover (two 60 s bakes, 60 s periods, 15 s polls) and of a daemon on the store");
    let measured = dir.path().join("measured.toml");
    std::fs::write(&measured, plan(&w, MEASURED_STEPS)).unwrap();
    let (r0, d0) = (runner_proxy.snapshot(), daemon_proxy.snapshot());
    let t0 = Instant::now();
    let out = cutover(&binary, runner_proxy.endpoint(), dir.path())
        .args(["run", "--store", STORE, "--output", "json", "--config"])
        .arg(&measured)
        .output()
        .unwrap();
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        summary["outcome"], "promoted",
        "the measured cutover did not promote: {summary}"
    );
    let (r1, d1) = (runner_proxy.snapshot(), daemon_proxy.snapshot());
    println!("   the cutover took {:.2} minutes", minutes);
    print_rates("the runner", &store_calls(&r0, &r1), minutes);
    print_rates(
        "the daemon (idle, rescue polls every 5 s)",
        &store_calls(&d0, &d1),
        minutes,
    );

    println!(
        "\n2. An owner killed (SIGKILL) at 50 %: until traffic is back on the live colour and the cutover is finished ({trials} trials)"
    );
    let long = dir.path().join("long.toml");
    std::fs::write(&long, plan(&w, LONG_STEPS)).unwrap();
    let (mut back, mut finished) = (vec![], vec![]);
    for trial in 0..trials {
        let log = dir.path().join(format!("run-{trial}.log"));
        let mut run = cutover(&binary, &moto, dir.path());
        run.args(["run", "--store", STORE, "--config"])
            .arg(&long)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // The live colour: whichever holds all traffic now (the measured cutover promoted green).
        let live = moto_weights(&moto, &w);
        assert!(
            live == (999, 0) || live == (0, 999),
            "trial {trial}: split before the start: {live:?}"
        );
        let mut child = Killed(run.spawn().unwrap());
        wait_log(&log, "baking", Duration::from_secs(60));
        assert_eq!(moto_weights(&moto, &w), (500, 500), "trial {trial}: not at 50 %");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let killed = Instant::now();
        while moto_weights(&moto, &w) != live {
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "trial {trial}: still split after 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        back.push(killed.elapsed().as_secs_f64());
        loop {
            let v = status(&binary, &moto, dir.path(), &long);
            if v["latest"]["outcome"].is_string() {
                assert_eq!(v["latest"]["outcome"], "rolled_back", "trial {trial}: {v}");
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(180),
                "trial {trial}: never finished: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        finished.push(killed.elapsed().as_secs_f64());
        println!(
            "   trial {trial}: traffic back on the live colour {:.2} s after the kill, finished {:.2} s after",
            back[trial], finished[trial]
        );
    }
    println!(
        "   kill → traffic back on the live colour: median {:.2} s, max {:.2} s; → finished: median {:.2} s, max {:.2} s (n={trials}; expected 10–20 s: the lease runs out 10–15 s after the kill, then a rescue poll ≤ 5 s)",
        median(back.clone()),
        max(&back),
        median(finished.clone()),
        max(&finished)
    );
    println!("\nmachine at the end: load {}", load());
}
