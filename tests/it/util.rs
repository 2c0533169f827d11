//! Test helpers: moto servers, the fixture, the traffic simulator, plans, and
//! running the `cutover` binary.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("CUTOVER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-moto"))
}

/// The venv's python, or a loud failure saying how to install it.
pub fn python() -> PathBuf {
    let py = venv().join("bin/python");
    let server = venv().join("bin/moto_server");
    if !py.exists() || !server.exists() {
        panic!(
            "moto is not installed ({} missing).\nInstall it with: deploy/local/install-moto.sh\n(or run the whole suite with deploy/local/test.sh, which installs it)",
            server.display()
        );
    }
    py
}

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Started through `deploy/local/moto_server.py`, which handles one request at a time:
    /// DynamoDB's conditional writes are atomic, moto's threaded server's are not (two winners
    /// of one race, under load), and the leases rest on them.
    pub fn start() -> Moto {
        call_log();
        let py = python();
        let server = root().join("deploy/local/moto_server.py");
        // Retry on the rare race where another test takes the port between probe and bind.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(&py)
                .arg(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            if moto.wait_ready(Duration::from_secs(30)) {
                return moto;
            }
        }
        panic!("moto_server did not come up on 127.0.0.1");
    }

    fn wait_ready(&mut self, bound: Duration) -> bool {
        let start = Instant::now();
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        while start.elapsed() < bound {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The world `fixture.py setup` creates.
#[derive(Debug, Clone)]
pub struct World {
    pub endpoint: String,
    pub listener_arn: String,
    pub rule_arn: Option<String>,
    pub blue: String,
    pub green: String,
    pub stopped_instance: Option<String>,
}

pub fn fixture(moto: &Moto, args: &[&str]) -> World {
    let out = Command::new(python())
        .arg(root().join("deploy/local/fixture.py"))
        .args(["setup", "--endpoint", &moto.endpoint])
        .args(args)
        .output()
        .expect("run fixture.py");
    assert!(
        out.status.success(),
        "fixture.py setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("fixture JSON");
    let s = |k: &str| v[k].as_str().map(str::to_string);
    World {
        endpoint: moto.endpoint.clone(),
        listener_arn: s("listener_arn").unwrap(),
        rule_arn: s("rule_arn"),
        blue: s("blue_target_group_arn").unwrap(),
        green: s("green_target_group_arn").unwrap(),
        stopped_instance: s("stopped_instance"),
    }
}

/// The traffic simulator, killed on drop. Its behaviour follows a profile file that tests rewrite.
pub struct Sim {
    child: Child,
}

impl Sim {
    pub fn start(world: &World, dir: &Path, profile: Value) -> Sim {
        let path = dir.join("profile.json");
        std::fs::write(&path, profile.to_string()).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(root().join("deploy/local/fixture.py"))
            .args([
                "traffic",
                "--endpoint",
                &world.endpoint,
                "--blue-tg",
                &world.blue,
                "--green-tg",
                &world.green,
            ])
            .args(["--namespace", "Cutover/Test", "--profile-file"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &world.rule_arn {
            Some(rule) => cmd.args(["--rule-arn", rule]),
            None => cmd.args(["--listener-arn", &world.listener_arn]),
        };
        Sim {
            child: cmd.spawn().expect("start the traffic simulator"),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plan for `world` with 1-second metrics; `steps` is TOML for `[[steps]]`, `extra_rollback` adds keys.
pub fn plan(world: &World, rollback_extra: &str, steps: &str) -> String {
    let rule = world
        .rule_arn
        .as_ref()
        .map(|r| format!("rule_arn = \"{r}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[service]
name = "it"

[alb]
listener_arn = "{listener}"
{rule}blue_target_group_arn = "{blue}"
green_target_group_arn = "{green}"
min_healthy_targets = 1
verify_timeout = "5s"

[metrics]
namespace = "Cutover/Test"
period = "1s"
settle = "1s"
poll_interval = "1s"
latency_statistic = "Average"

[rollback]
max_error_rate = 0.05
max_latency = "250ms"
min_requests = 20
failures_to_rollback = 2
{rollback_extra}

{steps}
"#,
        listener = world.listener_arn,
        blue = world.blue,
        green = world.green,
    )
}

/// The default steps of the end-to-end tests: short bakes on 1-second metrics.
pub const QUICK_STEPS: &str = r#"
[[steps]]
action = "verify"
checks = [{ command = ["true"] }]

[[steps]]
action = "shift"
weight = 50
bake = "3s"

[[steps]]
action = "shift"
weight = 100
bake = "3s"

[[steps]]
action = "observe"
duration = "2s"
"#;

/// A working directory with a plan file and a state directory.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write_plan(&self, text: &str) -> PathBuf {
        let p = self.path().join("plan.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    /// A `cutover` command pointed at moto and this state directory.
    pub fn cutover(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(args)
            .env("CUTOVER_STATE_DIR", self.state())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CUTOVER_LOG_FORMAT", "text")
            .env("CUTOVER_AWS_CALL_LOG", call_log())
            .stdin(Stdio::null());
        cmd
    }
}

/// Runs a command to completion; prints its stderr (the live log) so a failing test shows it.
pub fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run cutover");
    eprintln!(
        "--- cutover exited {:?}; live log:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON summary on stdout: {stdout:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}"))
}

/// SDK clients for the adapters, pointed at moto.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_elasticloadbalancingv2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// The current weights as the ALB reports them, read through the product's adapter.
pub async fn weights(world: &World) -> cutover::color::Split {
    use cutover::traffic::Traffic;
    let conf = sdk(&world.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(world));
    alb.read().await.expect("read weights")
}

pub fn alb_config(world: &World) -> cutover::config::Alb {
    cutover::config::Alb {
        listener_arn: world.listener_arn.clone(),
        rule_arn: world.rule_arn.clone(),
        blue_target_group_arn: world.blue.clone(),
        green_target_group_arn: world.green.clone(),
        min_healthy_targets: 1,
        verify_timeout: Duration::from_secs(5),
    }
}

pub fn profile_healthy() -> Value {
    serde_json::json!({"rps": 200, "blue_error_rate": 0.0, "green_error_rate": 0.0, "blue_latency": 0.05, "green_latency": 0.05})
}

/// The file every AWS operation of this run of the suite is logged to, by the `cutover`
/// processes it starts and by the product code it runs in process (`cutover::aws::calls`):
/// `target/tmp/aws-calls/it-PID.log`, beside `it-PID.full` when the run is the whole suite
/// (no filter). `tests/iam_policy.rs` checks the newest whole run's against the IAM policies.
pub fn call_log() -> PathBuf {
    static LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aws-calls");
        std::fs::create_dir_all(&dir).unwrap();
        let run = format!("it-{}", std::process::id());
        let log = dir.join(format!("{run}.log"));
        std::fs::write(&log, "").unwrap();
        if whole_suite(std::env::args().skip(1)) {
            std::fs::write(dir.join(format!("{run}.full")), "").unwrap();
        }
        cutover::aws::calls::log_to(log.clone());
        log
    })
    .clone()
}

/// Whether the harness's arguments run every test: no name filter, no `--skip`, `--exact`
/// or `--ignored` (the flags that take a value are stepped over).
fn whole_suite(args: impl Iterator<Item = String>) -> bool {
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed" => {
                args.next();
            }
            "--skip" | "--exact" | "--ignored" | "--include-ignored" => return false,
            flag if flag.starts_with('-') => {}
            _ => return false,
        }
    }
    true
}
