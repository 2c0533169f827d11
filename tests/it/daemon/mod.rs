//! The daemon: `cutover serve` on 127.0.0.1:0 against moto, driven through its
//! HTTP API and the `cutover` client commands.
//!
//! Its files: `api` (auth, request errors, start/list/get, events, `start --wait` exit codes,
//! `/metrics`, `watch`), `operator` (pause, resume, promote, rollback), `restarts` (kill -9 and
//! resume, drift while down, `start --wait` across a restart) and `listeners` (concurrent
//! cutovers on separate listeners, TLS). `Serve` and `api` here are used by other test modules.

mod api;
mod listeners;
mod operator;
mod restarts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
