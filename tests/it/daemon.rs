//! The daemon: `cutover serve` on 127.0.0.1:0 against moto, driven through its
//! HTTP API and the `cutover` client commands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cutover::color::{Color, Split};
use serde_json::{Value, json};

use crate::daemon_contract::sample;
use crate::util::*;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `cutover serve`, killed (SIGKILL) on drop.
pub struct Serve {
    child: Child,
    pub url: String,
}

impl Serve {
    pub fn start(wd: &Workdir, endpoint: &str, plans: &Path) -> Serve {
        Serve::start_on(wd, endpoint, plans, "127.0.0.1:0")
    }

    fn start_on(wd: &Workdir, endpoint: &str, plans: &Path, listen: &str) -> Serve {
        Serve::start_with(wd, endpoint, plans, listen, &[])
    }

    /// With more arguments to `serve` (`--budget …`).
    pub fn start_with(wd: &Workdir, endpoint: &str, plans: &Path, listen: &str, extra: &[&str]) -> Serve {
        let mut cmd = wd.cutover(
            endpoint,
            &[
                &["serve", "--listen", listen, "--plans", plans.to_str().unwrap()],
                extra,
            ]
            .concat(),
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(wd.path().join("serve.log"))
            .unwrap();
        cmd.env("CUTOVER_TOKEN", TOKEN).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Serve { child, url }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn sigterm(&mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn api(s: &Serve, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(method, &format!("{}{path}", s.url), Some(TOKEN), body).await
}

/// A plans directory with `NAME.toml` for `world`.
fn plans(wd: &Workdir, name: &str, world: &World, steps: &str) -> PathBuf {
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), plan(world, "", steps)).unwrap();
    dir
}

async fn wait_until(s: &Serve, id: &str, bound: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = api(s, "GET", &format!("/v1/cutovers/{id}"), None).await;
        assert_eq!(code, 200, "{v}");
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}; last state {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn counted_verdicts(v: &Value) -> u64 {
    v["last_verdict"].as_object().map(|_| 1).unwrap_or(0)
}

const LONG_BAKE: &str = r#"
[[steps]]
action = "shift"
weight = 50
bake = "10m"

[[steps]]
action = "shift"
weight = 100
bake = "2s"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn auth_and_request_errors() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let dir = plans(&wd, "web", &world, QUICK_STEPS);
    // Without a token the daemon refuses to start.
    let out = run(wd.cutover(
        &moto.endpoint,
        &["serve", "--listen", "127.0.0.1:0", "--plans", dir.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));

    let s = Serve::start(&wd, &moto.endpoint, &dir);
    assert_eq!(call("GET", &format!("{}/health", s.url), None, None).await.0, 200);
    let (code, v) = call("GET", &format!("{}/v1/cutovers", s.url), None, None).await;
    assert_eq!((code, v["error"].is_string()), (401, true));
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/cutovers", s.url),
            Some("wrong-token-0123456789abcdef"),
            None
        )
        .await
        .0,
        401
    );
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "nope"}))).await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "../plans/web"}))).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = api(
        &s,
        "POST",
        "/v1/cutovers",
        Some(json!({"plan": "web", "vars": {"version": "1"}})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("variable name"), "{v}");
    let (code, v) = api(
        &s,
        "POST",
        "/v1/cutovers",
        Some(json!({"plan": "web", "colour": "red"})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, _) = api(&s, "GET", "/v1/cutovers/20260101T000000Z-0000", None).await;
    assert_eq!(code, 404);
    let (code, v) = api(&s, "GET", "/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(v["paths"]["/v1/cutovers"].is_object());
    // Nothing above changed the weights.
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn start_list_get_events_and_start_wait_exit_codes() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = format!(
        "{}{QUICK_STEPS}",
        r#"
[[steps]]
action = "deploy"
run = ["sh", "-c", "echo \"$CUTOVER_VAR_VERSION\" > version.txt"]
"#
    );
    let dir = plans(&wd, "web", &world, &steps);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let mut cmd = wd.cutover(
        &moto.endpoint,
        &["start", "web", "--var", "VERSION=2.1.0", "--wait", "--server", &s.url],
    );
    cmd.env("CUTOVER_TOKEN", TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "start --wait exits with the outcome's code");
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    // The live log streamed by --wait is the run's live log.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("weights verified by read-back"), "{log}");
    assert!(log.contains("green pass: "), "{log}");
    assert!(log.contains("PROMOTED"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("version.txt")).unwrap().trim(),
        "2.1.0"
    );

    let (code, v) = api(&s, "GET", "/v1/cutovers", None).await;
    assert_eq!(code, 200);
    assert_eq!(v["cutovers"][0]["id"], id.as_str());
    let (_, v) = api(&s, "GET", &format!("/v1/cutovers/{id}"), None).await;
    assert_eq!(v["outcome"], "promoted");
    assert_eq!(v["weights"], json!({"blue": 0.0, "green": 100.0}));
    assert!(v["last_verdict"]["outcome"].is_string(), "{v}");

    // SSE replays every event from the start.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/cutovers/{id}/events", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    let records: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(records.first().unwrap()["event"], "started");
    assert_eq!(records.first().unwrap()["vars"]["VERSION"], "2.1.0");
    assert_eq!(records.last().unwrap()["event"], "finished");

    // A failing new colour: start --wait exits 3. (Green is live now; blue is new.)
    let _bad = Sim::start(
        &world,
        &wd.path().join("bad").tap_mkdir(),
        json!({"rps": 200, "blue_error_rate": 0.3}),
    );
    drop(_sim);
    let mut cmd = wd.cutover(&moto.endpoint, &["start", "web", "--wait", "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN);
    assert_eq!(run(cmd).status.code(), Some(3));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));

    let (_, text) = call("GET", &format!("{}/metrics", s.url), None, None).await;
    let text = text.as_str().unwrap().to_string();
    let page = crate::daemon_contract::check_prometheus(&text);
    // Counters by service (the plans' service is `it`), one for each outcome and trigger.
    assert_eq!(
        sample(
            &page,
            "cutover_cutovers_total",
            &[("service", "it"), ("outcome", "promoted")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            "cutover_cutovers_total",
            &[("service", "it"), ("outcome", "rolled_back")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            "cutover_rollbacks_total",
            &[("service", "it"), ("trigger", "judge")]
        ),
        1.0
    );
    assert!(crate::daemon_contract::sample(&page, "cutover_aws_calls_total", &[("operation", "ModifyListener")]) > 0.0);
    assert_eq!(
        sample(&page, "cutover_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert_eq!(crate::daemon_contract::sample(&page, "cutover_journals", &[]), 2.0);
    // The judge's rollback was detected and restored once: one observation in each histogram.
    for name in ["cutover_detection_seconds", "cutover_rollback_duration_seconds"] {
        let h = &page.families[name];
        assert_eq!(h.family_type, openmetrics_parser::PrometheusType::Histogram, "{name}");
        let s = h.iter_samples().next().unwrap();
        let openmetrics_parser::PrometheusValue::Histogram(v) = &s.value else {
            panic!("{name}")
        };
        assert_eq!(v.count, Some(1), "{name}: {text}");
    }
    assert!(!text.contains("_percent"), "shares are ratios: {text}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// Every line of a Prometheus text exposition is a comment or `name{labels} value`.
#[tokio::test(flavor = "multi_thread")]
async fn operator_actions_pause_resume_promote_and_rollback() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, "web", &world, LONG_BAKE);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "first verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;

    // A second cutover on the same listener is refused, and so is `cutover run`.
    let (code, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    assert_eq!(code, 409, "{v}");
    let out = run(wd.cutover(
        &moto.endpoint,
        &["run", "--config", dir.join("web.toml").to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(5));

    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/pause"),
        Some(json!({"reason": "checking dashboards", "by": "alice"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["paused"], "checking dashboards");
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 200);
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 409, "resume when not paused");
    // Promote ends the 10-minute bake now: the cutover moves on to 100 %.
    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/promote"),
        Some(json!({"reason": "looks good"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    wait_until(&s, &id, Duration::from_secs(20), "shift 100%", |v| {
        v["step"] == "shift 100%"
    })
    .await;
    // Roll back: traffic is back before the response.
    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{id}/rollback"),
        Some(json!({"reason": "pager", "by": "bob"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    let v = wait_until(&s, &id, Duration::from_secs(20), "finished", |v| {
        v["outcome"].is_string()
    })
    .await;
    assert_eq!(v["outcome"], "rolled_back_by_operator");
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    // The caller is named by its token (`api`, the daemon's CUTOVER_TOKEN), and a `by` in the
    // body is kept beside it as said (issue 11's named tokens; this test still expected the
    // body's `by` first, from before them).
    for needle in [
        "\"event\":\"paused\"",
        "api (API, 127.0.0.1:",
        ", says alice)",
        "\"event\":\"resumed\"",
        "\"event\":\"promote_requested\"",
        ", says bob)",
    ] {
        assert!(journal.contains(needle), "{needle} missing from the journal");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_resumes_the_bake_and_promotes() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"8s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    s.kill9();
    assert_eq!(
        weights(&world).await,
        Split::with_new(Color::Green, 500),
        "killed mid-bake at 50 %"
    );
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let v = wait_until(&s, &id, Duration::from_secs(40), "finished", |v| {
        v["outcome"].is_string()
    })
    .await;
    assert_eq!(v["outcome"], "promoted", "{v}");
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    assert!(journal.contains("resuming step shift 50%"), "{journal}");
    // The bake went on with the time already judged: one BakeStarted for the 50 % step.
    assert_eq!(
        journal.matches("\"event\":\"bake_started\",\"step\":0").count(),
        1,
        "{journal}"
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_while_the_daemon_was_down_pauses_for_an_operator() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, "web", &world, LONG_BAKE);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    assert_eq!(s.sigterm(), 0, "graceful shutdown");
    // SIGTERM rolled nothing back.
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    // Someone moves the weights by hand while the daemon is down.
    let conf = sdk(&moto.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(&world));
    let manual = Split::with_new(Color::Green, 200);
    cutover::traffic::set_and_verify(
        &alb,
        manual,
        Duration::from_secs(5),
        cutover::traffic::Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();

    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let v = wait_until(&s, &id, Duration::from_secs(20), "paused", |v| v["paused"].is_string()).await;
    assert!(
        v["paused"]
            .as_str()
            .unwrap()
            .contains("weights changed outside cutover"),
        "{v}"
    );
    // Not overwritten while paused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(weights(&world).await, manual);
    let journal = std::fs::read_to_string(wd.state().join("cutovers").join(&id).join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"event\":\"drift\""), "{journal}");
    // Resume re-applies the plan's weight.
    let (code, _) = api(&s, "POST", &format!("/v1/cutovers/{id}/resume"), None).await;
    assert_eq!(code, 200);
    wait_until(&s, &id, Duration::from_secs(20), "re-applied", |v| {
        v["paused"].is_null()
    })
    .await;
    let start = Instant::now();
    while weights(&world).await != Split::with_new(Color::Green, 500) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the plan's weight was not re-applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cutovers_on_separate_listeners() {
    let moto = Moto::start();
    let a = fixture(&moto, &["--name", "alpha"]);
    let b = fixture(&moto, &["--name", "beta"]);
    let wd = Workdir::new();
    let _sa = Sim::start(&a, &wd.path().join("a").tap_mkdir(), profile_healthy());
    let _sb = Sim::start(&b, &wd.path().join("b").tap_mkdir(), profile_healthy());
    let dir = plans(&wd, "alpha", &a, QUICK_STEPS);
    plans(&wd, "beta", &b, QUICK_STEPS);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (ca, va) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "alpha"}))).await;
    let (cb, vb) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "beta"}))).await;
    assert_eq!((ca, cb), (201, 201), "{va} {vb}");
    for v in [va, vb] {
        let id = v["id"].as_str().unwrap().to_string();
        let v = wait_until(&s, &id, Duration::from_secs(60), "finished", |v| {
            v["outcome"].is_string()
        })
        .await;
        assert_eq!(v["outcome"], "promoted", "{v}");
    }
    assert_eq!(weights(&a).await.holder(), Some(Color::Green));
    assert_eq!(weights(&b).await.holder(), Some(Color::Green));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_https_with_the_given_certificate() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let dir = plans(&wd, "web", &world, QUICK_STEPS);
    let (cert, key) = (wd.path().join("cert.pem"), wd.path().join("key.pem"));
    // A test CA and a server certificate for 127.0.0.1 signed by it.
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=cutover-test-ca
openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile leaf.ext
"#;
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(wd.path())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "openssl (Debian package openssl) made no certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = wd.cutover(
        &moto.endpoint,
        &["serve", "--listen", "127.0.0.1:0", "--plans", dir.to_str().unwrap()],
    );
    cmd.args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let s = Serve {
        url: line.trim().strip_prefix("listening on ").unwrap().to_string(),
        child,
    };
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(wd.path().join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let resp = client.get(format!("{}/health", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client.get(format!("{}/v1/cutovers", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .get(format!("{}/v1/cutovers", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Plain HTTP to the TLS port gets no answer.
    assert!(
        reqwest::get(format!("{}/health", s.url.replace("https://", "http://")))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_replays_the_past_then_streams_live_until_the_end() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"5s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(20), "a verdict", |v| {
        counted_verdicts(v) > 0
    })
    .await;
    // Joined mid-bake: the log starts at the beginning and follows the cutover to its end.
    let mut cmd = wd.cutover(&moto.endpoint, &["watch", &id, "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    let first = log.lines().next().unwrap_or_default();
    assert!(first.contains(&format!("cutover {id} of it: blue is live")), "{first}");
    assert!(log.contains("step 2/2 shift 100%: started"), "{log}");
    assert!(log.lines().last().unwrap().contains("PROMOTED"), "{log}");
}

/// A pipeline's `start --wait` outlives a daemon restart: it reconnects and exits with the
/// cutover's outcome.
#[tokio::test(flavor = "multi_thread")]
async fn start_wait_survives_a_daemon_restart() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = LONG_BAKE.replace("bake = \"10m\"", "bake = \"6s\"");
    let dir = plans(&wd, "web", &world, &steps);
    let mut s = Serve::start(&wd, &moto.endpoint, &dir);
    let mut cmd = wd.cutover(&moto.endpoint, &["start", "web", "--wait", "--server", &s.url]);
    cmd.env("CUTOVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let waiter = cmd.spawn().unwrap();
    // Wait for the cutover to be baking, then restart the daemon on the same address.
    let start = Instant::now();
    let id = loop {
        let (_, v) = api(&s, "GET", "/v1/cutovers", None).await;
        if let Some(c) = v["cutovers"].as_array().and_then(|a| a.first())
            && c["last_verdict"].is_object()
        {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no verdict: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let addr = s.url.trim_start_matches("http://").to_string();
    assert_eq!(s.sigterm(), 0);
    let s2 = Serve::start_on(&wd, &moto.endpoint, &dir, &addr);
    let out = waiter.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "start --wait must follow the cutover across the restart"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("step 1/2 shift 50%: started").count(),
        1,
        "records shown twice after reconnecting"
    );
    let (_, v) = api(&s2, "GET", &format!("/v1/cutovers/{id}"), None).await;
    assert_eq!(v["outcome"], "promoted");
}
