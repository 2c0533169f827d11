//! What the benchmarks under `examples/` share: a moto server, the fixture and the traffic
//! simulator of `deploy/local/fixture.py`, the `cutover` binary's environment, journals read
//! back, and a little arithmetic. Included with `#[path = "support/bench.rs"] mod bench;`.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, or a loud failure naming the install command.
pub fn python() -> PathBuf {
    let py = root().join(".venv-moto/bin/python");
    assert!(py.exists(), "moto is not installed: run deploy/local/install-moto.sh");
    py
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server on a free loopback port, and its URL.
pub fn start_moto() -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // One request at a time, so conditional writes are atomic (see deploy/local/moto_server.py).
    let child = Command::new(python())
        .arg(root().join("deploy/local/moto_server.py"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "moto did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), endpoint)
}

/// `fixture.py setup`: a load balancer named `name` in moto.
pub fn world(endpoint: &str, name: &str) -> Value {
    let out = Command::new(python())
        .arg(root().join("deploy/local/fixture.py"))
        .args(["setup", "--endpoint", endpoint, "--name", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The traffic simulator for `w`, in namespace `Cutover/Bench`, its profile in `dir`.
pub fn sim(endpoint: &str, w: &Value, dir: &Path, green_error_rate: f64) -> Killed {
    let profile = dir.join("profile.json");
    set_profile(&profile, green_error_rate);
    Killed(
        Command::new(python())
            .arg(root().join("deploy/local/fixture.py"))
            .args(["traffic", "--endpoint", endpoint, "--namespace", "Cutover/Bench"])
            .args(["--listener-arn", w["listener_arn"].as_str().unwrap()])
            .args(["--blue-tg", w["blue_target_group_arn"].as_str().unwrap()])
            .args(["--green-tg", w["green_target_group_arn"].as_str().unwrap()])
            .arg("--profile-file")
            .arg(&profile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

pub fn set_profile(path: &Path, green_error_rate: f64) {
    let p = serde_json::json!({"rps": 200, "blue_error_rate": 0.0, "green_error_rate": green_error_rate,
                               "blue_latency": 0.05, "green_latency": 0.05});
    std::fs::write(path, p.to_string()).unwrap();
}

/// The `cutover` binary against `endpoint`, with test credentials and its state in `dir/state`.
pub fn cutover(binary: &Path, endpoint: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env("CUTOVER_STATE_DIR", dir.join("state"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("CUTOVER_STORE")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The weights as moto has them, read straight from moto (not through a proxy).
pub fn moto_weights(endpoint: &str, w: &Value) -> (i64, i64) {
    let out = Command::new(python())
        .arg(root().join("deploy/local/fixture.py"))
        .args(["weights", "--endpoint", endpoint])
        .args(["--listener-arn", w["listener_arn"].as_str().unwrap()])
        .args(["--blue-tg", w["blue_target_group_arn"].as_str().unwrap()])
        .args(["--green-tg", w["green_target_group_arn"].as_str().unwrap()])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let n = |k: &str| v[k].as_i64().unwrap_or(-1);
    (n("blue"), n("green"))
}

/// Journal records of every cutover in the state directory `state`.
pub fn journal(state: &Path) -> Vec<Value> {
    let mut out = vec![];
    for e in std::fs::read_dir(state.join("cutovers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// A record's time, in seconds since the epoch.
pub fn at(r: &Value) -> f64 {
    let t = humantime::parse_rfc3339(r["at"].as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The time of the first record of kind `event`.
pub fn first(records: &[Value], event: &str) -> Option<f64> {
    records.iter().find(|r| r["event"] == event).map(at)
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn max(xs: &[f64]) -> f64 {
    xs.iter().cloned().fold(f64::NAN, f64::max)
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The machine's load averages (1, 5, 15 minutes).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
