//! Whole cutovers: the real `cutover` binary against moto, with simulated traffic
//! publishing 1-second metrics that follow the listener's weights.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cutover::color::{Color, Split};
use serde_json::{Value, json};

use crate::util::*;

pub fn profile(green_error_rate: f64, green_latency: f64) -> Value {
    json!({"rps": 200, "blue_error_rate": 0.0, "green_error_rate": green_error_rate,
           "blue_latency": 0.05, "green_latency": green_latency})
}

/// A `cutover run` in the background, its live log in a file.
pub struct Background {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Background {
    pub fn start(wd: &Workdir, endpoint: &str, plan: &Path) -> Background {
        let log = wd.path().join("run.log");
        let mut cmd = wd.cutover(
            endpoint,
            &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
        );
        cmd.stderr(std::fs::File::create(&log).unwrap()).stdout(Stdio::piped());
        Background {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    pub fn wait(self, bound: Duration) -> (i32, Value) {
        let start = Instant::now();
        let mut child = self.child;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                eprintln!(
                    "--- background run log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                let summary = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or(Value::Null);
                return (status.code().unwrap_or(-1), summary);
            }
            if start.elapsed() > bound {
                let _ = child.kill();
                panic!(
                    "run did not end within {bound:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until the journal of the (only) cutover in `state` holds an event of `kind`.
pub fn wait_for_event(state: &Path, kind: &str, bound: Duration) {
    let start = Instant::now();
    while start.elapsed() < bound {
        if let Ok(entries) = std::fs::read_dir(state.join("cutovers")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap_or_default();
                if text.contains(&format!("\"event\":\"{kind}\"")) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {kind} event within {bound:?}");
}

pub fn journal_text(state: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(state.join("cutovers")).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap());
    }
    all
}

pub fn steps_with_deploy(extra: &str) -> String {
    format!(
        r#"
[[steps]]
action = "deploy"
run = ["sh", "-c", "echo \"deploy $CUTOVER_NEW_COLOR\" >> hooks.log"]
undo = ["sh", "-c", "echo \"undeploy $CUTOVER_NEW_COLOR\" >> hooks.log"]
timeout = "10s"
{extra}
"#
    )
}

pub fn hooks_log(wd: &Workdir) -> Vec<String> {
    std::fs::read_to_string(wd.path().join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_cutover_is_promoted() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(0));
    let s = json(&out);
    assert_eq!(s["outcome"], "promoted");
    assert_eq!(s["live_color"], "blue");
    assert_eq!(s["new_color"], "green");
    assert_eq!(s["final_weights"], json!({"blue": 0.0, "green": 100.0}));
    assert!(
        s["steps"].as_array().unwrap().iter().all(|st| st["status"] == "done"),
        "{s}"
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    assert_eq!(hooks_log(&wd), ["deploy green"]);
    // The live log shows the numbers behind each verdict.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("green pass: 5xx 0% "), "{log}");
    assert!(log.contains("weights verified by read-back"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_on_the_new_colour_roll_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    let s = json(&out);
    assert_eq!(s["outcome"], "rolled_back");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_on_the_new_colour_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.0, 0.8));
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    let s = json(&out);
    assert!(s["reason"].as_str().unwrap().contains("latency too high"), "{s}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rollback_while_baking_unwinds_the_live_run() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"");
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "weight_verified", Duration::from_secs(30));
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));

    let out = run(wd.cutover(
        &world.endpoint,
        &[
            "rollback",
            "--config",
            plan.to_str().unwrap(),
            "--reason",
            "pager fired",
        ],
    ));
    // Regression (issue 8): a successful rollback exited 4, so `cutover rollback … && echo ok`
    // reported a failure. The command did its job: 0. The run it rolled back exits 4.
    assert_eq!(out.status.code(), Some(0));
    // Traffic is back before the rollback command returns.
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));

    let (code, s) = bg.wait(Duration::from_secs(20));
    assert_eq!(code, 4);
    assert_eq!(s["outcome"], "rolled_back_by_operator");
    assert!(s["reason"].as_str().unwrap().contains("pager fired"), "{s}");
    assert_eq!(
        hooks_log(&wd),
        ["deploy green", "undeploy green"],
        "the undo must run exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_after_the_run_died_finishes_the_cutover() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"");
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let mut bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "weight_verified", Duration::from_secs(30));
    bg.child.kill().unwrap(); // SIGKILL: no chance to clean up.
    bg.child.wait().unwrap();
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));

    // A new run refuses to start over a half-finished cutover …
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish"));
    // … and the rollback restores traffic and runs the undo chain itself.
    let out = run(wd.cutover(
        &world.endpoint,
        &["rollback", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["outcome"], "rolled_back_by_operator");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = QUICK_STEPS.replace("bake = \"3s\"", "bake = \"10m\"");
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "weight_verified", Duration::from_secs(30));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGINT) };
    let (code, s) = bg.wait(Duration::from_secs(20));
    assert_eq!(code, 4);
    assert_eq!(s["outcome"], "rolled_back_by_operator");
    assert!(s["reason"].as_str().unwrap().contains("SIGINT"), "{s}");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_migrate_unwinds_the_deploy() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let migrate = r#"
[[steps]]
action = "migrate"
run = ["sh", "-c", "echo migrate >> hooks.log; echo 'relation already exists' >&2; exit 7"]
undo = ["sh", "-c", "echo 'migrate down' >> hooks.log"]
"#;
    let plan = wd.write_plan(&plan(
        &world,
        "",
        &format!("{}{QUICK_STEPS}", steps_with_deploy(migrate)),
    ));
    let before = weights(&world).await;
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(3));
    let s = json(&out);
    assert!(s["reason"].as_str().unwrap().contains("exited with 7"), "{s}");
    assert!(s["reason"].as_str().unwrap().contains("relation already exists"), "{s}");
    assert_eq!(hooks_log(&wd), ["deploy green", "migrate", "undeploy green"]);
    // No weight was ever written: the raw weights are the fixture's.
    assert_eq!(weights(&world).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_pong_the_second_cutover_goes_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let args = ["run", "--config", plan.to_str().unwrap(), "--output", "json"];
    let first = run(wd.cutover(&world.endpoint, &args));
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    let second = run(wd.cutover(&world.endpoint, &args));
    assert_eq!(second.status.code(), Some(0));
    let s = json(&second);
    assert_eq!(
        (s["live_color"].as_str(), s["new_color"].as_str()),
        (Some("green"), Some("blue"))
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_rule_is_shifted_and_the_default_action_left_alone() {
    let moto = Moto::start();
    let world = fixture(&moto, &["--rule"]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    let conf = sdk(&world.endpoint).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let l = elb
        .describe_listeners()
        .listener_arns(&world.listener_arn)
        .send()
        .await
        .unwrap();
    let default = &l.listeners()[0].default_actions()[0];
    assert_eq!(default.r#type().unwrap().as_str(), "fixed-response");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_traffic_holds_instead_of_deciding() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), json!({"rps": 0}));
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "verdict", Duration::from_secs(30));
    // Three bake-lengths later it is still holding at 50 %, neither promoted nor rolled back.
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(weights(&world).await, Split::with_new(Color::Green, 500));
    let journal = journal_text(&wd.state());
    assert!(journal.contains("\"outcome\":\"no_data\""), "{journal}");
    assert!(
        !journal.contains("\"outcome\":\"fail\"") && !journal.contains("step_done\",\"step\":1"),
        "{journal}"
    );
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    let (code, _) = bg.wait(Duration::from_secs(20));
    assert_eq!(code, 4);
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_start_is_not_started_and_changes_nothing() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let conf = sdk(&world.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(&world));
    let split = Split::with_new(Color::Green, 300);
    cutover::traffic::set_and_verify(
        &alb,
        split,
        Duration::from_secs(5),
        cutover::traffic::Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let out = run(wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no colour holds all traffic"));
    // Pipelines get a summary even when nothing started.
    let s = json(&out);
    assert_eq!(s["outcome"], "not_started");
    assert!(s["reason"].as_str().unwrap().contains("blue 70% green 30%"), "{s}");
    // Regression (issue 14.11): it said `"id": ""`; no journal was created, so there is no id.
    assert!(s.get("id").is_none(), "{s}");
    assert_eq!(s["service"], "it");
    assert_eq!(weights(&world).await, split);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_weights_and_the_latest_cutover() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let out = run(wd.cutover(
        &world.endpoint,
        &["status", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["latest"], Value::Null);
    assert_eq!(
        run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]))
            .status
            .code(),
        Some(0)
    );
    let out = run(wd.cutover(
        &world.endpoint,
        &["status", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    let s = json(&out);
    assert_eq!(s["weights"], json!({"blue": 0.0, "green": 100.0}));
    assert_eq!(s["latest"]["outcome"], "promoted");
    assert_eq!(s["running"], false);
}

/// An alarm of `rollback.alarms` that goes to ALARM mid-bake rolls the cutover back at once,
/// through the binary's own DescribeAlarms (moto does not evaluate alarms: the test sets the
/// state). Also the suite's one call of DescribeAlarms through a counted client, which keeps
/// `cloudwatch:DescribeAlarms` in the IAM policy by test (issue 14.10).
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_in_alarm_rolls_back_at_once() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.0, 0.05));
    let conf = sdk(&world.endpoint).await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    cw.put_metric_alarm()
        .alarm_name("it-checkout-5xx")
        .namespace("Cutover/Test")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    let steps = "[[steps]]\naction = \"shift\"\nweight = 50\nbake = \"10m\"\n\n[[steps]]\naction = \"shift\"\nweight = 100\nbake = \"3s\"\n";
    let plan = wd.write_plan(&plan(&world, "alarms = [\"it-checkout-5xx\"]", steps));
    let run = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    cw.set_alarm_state()
        .alarm_name("it-checkout-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("the test says so")
        .send()
        .await
        .unwrap();
    let (code, s) = run.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    assert_eq!(s["outcome"], "rolled_back");
    assert!(s["reason"].as_str().unwrap().contains("it-checkout-5xx"), "{s}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}
