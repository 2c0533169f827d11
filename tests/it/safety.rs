//! The safety net (issue 8): drift, crashes at exact journal points, AWS faults from the
//! fault-injecting proxy between the binary and moto, restores that must not wait for a read,
//! blind bakes, and the exit codes of a rollback. Each test is named after what broke.

use std::time::{Duration, Instant};

use cutover::color::{Color, Split};
use cutover::traffic::Writing;
use serde_json::{Value, json};

use crate::e2e::{Background, hooks_log, journal_text, profile, steps_with_deploy, wait_for_event};
use crate::fault_proxy::{FaultProxy, Faults, Rule};
use crate::util::*;

/// Long enough that a test decides what happens during the bake, not the clock.
fn long_steps() -> String {
    steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"")
}

fn set_profile(wd: &Workdir, profile: Value) {
    std::fs::write(wd.path().join("profile.json"), profile.to_string()).unwrap();
}

/// Writes weights by hand, as an operator at the console would, straight to moto.
async fn set_weights_by_hand(world: &World, split: Split) {
    let conf = sdk(&world.endpoint).await;
    let alb = cutover::traffic::Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(world));
    cutover::traffic::set_and_verify(
        &alb,
        split,
        Duration::from_secs(5),
        Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();
}

fn event_count(wd: &Workdir, kind: &str) -> usize {
    journal_text(&wd.state())
        .matches(&format!("\"event\":\"{kind}\""))
        .count()
}

/// Regression (issue 8.1): after weights were changed by hand mid-bake, the cutover paused and
/// stopped judging; green then returned 50 % 5xx with 70 % of traffic on it, and nothing
/// happened. The drift pause holds the bake clock only: the judge rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn drift_mid_bake_keeps_judging_and_a_failure_rolls_back() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    set_weights_by_hand(&world, Split::with_new(Color::Green, 700)).await;
    wait_for_event(&wd.state(), "drift", Duration::from_secs(20));
    let verdicts_at_drift = event_count(&wd, "verdict");
    set_profile(&wd, profile(0.5, 0.05));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    assert!(s["reason"].as_str().unwrap().contains("error rate too high"), "{s}");
    assert!(
        event_count(&wd, "verdict") > verdicts_at_drift,
        "no verdict after the drift"
    );
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Issue 8.1: a foreground run paused for drift is resumed without a daemon, through the
/// journal: `cutover resume --config` re-applies the verified weights and the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_paused_for_drift_resumes_with_resume_config() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let steps = steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"8s\"");
    let plan = wd.write_plan(&plan(&world, "", &steps));
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    set_weights_by_hand(&world, Split::with_new(Color::Green, 700)).await;
    wait_for_event(&wd.state(), "drift", Duration::from_secs(20));
    let config = plan.to_str().unwrap();
    let out = run(wd.cutover(&world.endpoint, &["resume", "--config", config, "--reason", "checked"]));
    assert_eq!(out.status.code(), Some(0));
    let (code, s) = bg.wait(Duration::from_secs(90));
    assert_eq!(code, 0, "{s}");
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    let journal = journal_text(&wd.state());
    assert!(journal.contains("\"reason\":\"checked\""), "{journal}");
    // Resuming something that is not paused says so and changes nothing.
    let out = run(wd.cutover(&world.endpoint, &["resume", "--config", config]));
    assert_eq!(out.status.code(), Some(1));
}

/// Regression (issue 8.2): killed between the `started` record and the latest-cutover index,
/// `cutover rollback` acted on the previous cutover: in a ping-pong (green live) it moved all
/// traffic to blue and ran the previous cutover's undos while green served. The index is now
/// written first; killed between the two, the rollback finds a cutover that never began.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_before_its_start_never_rolls_back_the_previous_cutover() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", config]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green));
    // The second cutover (green live) dies right after updating the index.
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env("CUTOVER_TEST_CRASH_AFTER", "latest ");
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config]));
    assert_eq!(out.status.code(), Some(2), "it must not guess a colour");
    assert!(String::from_utf8_lossy(&out.stderr).contains("never started"));
    assert_eq!(weights(&world).await.holder(), Some(Color::Green), "green still serves");
    assert_eq!(hooks_log(&wd), ["deploy green"], "no undo of the previous cutover");
    // And nothing blocks the next cutover.
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", config]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
}

/// Regression (issue 8.2): an undo killed after its successful `hook` record and before
/// `undo_done` ran again on the next rollback, though the journal held its result.
#[tokio::test(flavor = "multi_thread")]
async fn an_undo_killed_after_it_succeeded_is_not_run_again() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env(
        "CUTOVER_TEST_CRASH_AFTER",
        "\"event\":\"hook\",\"step\":0,\"phase\":\"undo\"",
    );
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(3), "the crash hook did not fire");
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config, "--output", "json"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["outcome"], "rolled_back");
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"], "the undo ran twice");
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Regression (issue 8.2): a forward command killed after its successful `hook` record and
/// before `step_done` was never undone, and the summary showed a finished cutover with a step
/// still `running`.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_killed_after_it_succeeded_is_undone() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
    let config = plan.to_str().unwrap();
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", config]);
    cmd.env(
        "CUTOVER_TEST_CRASH_AFTER",
        "\"event\":\"hook\",\"step\":0,\"phase\":\"run\"",
    );
    let out = run(cmd);
    assert_ne!(out.status.code(), Some(0), "the crash hook did not fire");
    let out = run(wd.cutover(&world.endpoint, &["rollback", "--config", config, "--output", "json"]));
    assert_eq!(out.status.code(), Some(0));
    let s = json(&out);
    assert_eq!(hooks_log(&wd), ["deploy green", "undeploy green"]);
    assert!(
        s["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["status"] != "running"),
        "{s}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("although it did not complete"));
}

/// The fault mix the product was tried under: 30 % throttling, 10 % 5xx, +500 ms on a third
/// of the calls, 2 % connection resets, on every ELBv2 and CloudWatch call.
fn fault_mix() -> Faults {
    Faults::none()
        .throttle(Rule::p(0.3))
        .server_error(500, Rule::p(0.1))
        .delay(Duration::from_millis(500), Duration::ZERO, Rule::p(0.33))
        .reset(Rule::p(0.02))
}

/// Regression (issue 8.3): under that mix, 4 of 12 healthy cutovers failed (DescribeListeners
/// throttled four times, DescribeTargetHealth reset), one of them rolling back a healthy
/// release. Healthy cutovers promote; failing ones roll back.
#[tokio::test(flavor = "multi_thread")]
async fn under_faults_a_healthy_cutover_promotes_and_a_failing_one_rolls_back() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    for (green_error_rate, expected) in [(0.0, 0), (0.3, 3)] {
        let world = fixture(&moto, &["--name", &format!("faults{}", expected)]);
        let wd = Workdir::new();
        let _sim = Sim::start(&world, wd.path(), profile(green_error_rate, 0.05));
        let plan = wd.write_plan(&plan(&world, "", &format!("{}{QUICK_STEPS}", steps_with_deploy(""))));
        proxy.set(fault_mix());
        let out = run(wd.cutover(
            proxy.endpoint(),
            &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
        ));
        proxy.clear();
        assert_eq!(out.status.code(), Some(expected), "{}", json(&out));
        let holder = if expected == 0 { Color::Green } else { Color::Blue };
        assert_eq!(weights(&world).await, Split::all_on(holder));
    }
    let faults: u64 = proxy.snapshot().operations.values().map(|o| o.faults()).sum();
    assert!(
        faults > 10,
        "the proxy injected only {faults} faults:\n{}",
        proxy.snapshot()
    );
}

/// Regression (issue 8.4): a rollback read the listener before its Modify, so with
/// DescribeListeners throttled traffic came back 18.6 s after the judge decided. The restore
/// writes from the forward action it knows and reads back afterwards: traffic is back on blue
/// while DescribeListeners is still throttled.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_writes_while_describe_is_throttled() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = plan(&world, "", &long_steps()).replace("verify_timeout = \"5s\"", "verify_timeout = \"60s\"");
    let plan = wd.write_plan(&text);
    let bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    proxy.set(
        Faults::none().throttle(
            Rule::always()
                .only(["DescribeListeners"])
                .lasting(Duration::from_secs(30)),
        ),
    );
    let forwarded = proxy.snapshot().op("DescribeListeners").forwarded;
    set_profile(&wd, profile(0.5, 0.05));
    // Traffic goes back while every DescribeListeners is still refused.
    let start = Instant::now();
    while weights(&world).await != Split::all_on(Color::Blue) {
        assert!(start.elapsed() < Duration::from_secs(30), "traffic did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        proxy.snapshot().op("DescribeListeners").forwarded,
        forwarded,
        "the restore read the listener before writing"
    );
    let (code, _) = bg.wait(Duration::from_secs(90));
    assert_eq!(code, 3);
}

/// The same for on-call's `cutover rollback` from another process: it writes from the action
/// journaled by the run, without reading first.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rollback_writes_while_describe_is_throttled() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = plan(&world, "", &long_steps()).replace("verify_timeout = \"5s\"", "verify_timeout = \"60s\"");
    let plan = wd.write_plan(&text);
    let mut bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    proxy.set(
        Faults::none().throttle(
            Rule::always()
                .only(["DescribeListeners"])
                .lasting(Duration::from_secs(20)),
        ),
    );
    let forwarded = proxy.snapshot().op("DescribeListeners").forwarded;
    let mut rollback = wd.cutover(proxy.endpoint(), &["rollback", "--config", plan.to_str().unwrap()]);
    let mut child = rollback.spawn().unwrap();
    let start = Instant::now();
    while weights(&world).await != Split::all_on(Color::Blue) {
        assert!(start.elapsed() < Duration::from_secs(20), "traffic did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.snapshot().op("DescribeListeners").forwarded, forwarded);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A third target group given weight in the forward action, through the SDK.
async fn add_third_target_group(world: &World, weight: i32) -> String {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple};
    let conf = sdk(&world.endpoint).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lb = elb
        .describe_listeners()
        .listener_arns(&world.listener_arn)
        .send()
        .await
        .unwrap();
    let lb_arn = lb.listeners()[0].load_balancer_arn().unwrap().to_string();
    let vpc = elb
        .describe_load_balancers()
        .load_balancer_arns(&lb_arn)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let tg = elb
        .create_target_group()
        .name("third")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .send()
        .await
        .unwrap();
    let third = tg.target_groups()[0].target_group_arn().unwrap().to_string();
    let tuple = |arn: &str, w: i32| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build();
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(tuple(&world.blue, 999))
                .target_groups(tuple(&world.green, 0))
                .target_groups(tuple(&third, weight))
                .build(),
        )
        .build();
    elb.modify_listener()
        .listener_arn(&world.listener_arn)
        .default_actions(forward)
        .send()
        .await
        .unwrap();
    third
}

/// Regression (issue 8.5): `cutover rollback --to blue` logged "traffic restored to blue …
/// others 999" and exited as a success with half the traffic elsewhere. A restore puts the
/// whole forward action on the live colour, the other target group kept at weight 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_puts_the_whole_action_on_the_live_colour() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let third = add_third_target_group(&world, 999).await;
    let before = weights(&world).await;
    assert_eq!((before.blue, before.others), (999, 999));
    let wd = Workdir::new();
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let out = run(wd.cutover(
        &world.endpoint,
        &["rollback", "--config", plan.to_str().unwrap(), "--to", "blue"],
    ));
    assert_eq!(out.status.code(), Some(0));
    let after = weights(&world).await;
    assert_eq!(after, Split::all_on(Color::Blue), "{after}");
    let conf = sdk(&world.endpoint).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let l = elb
        .describe_listeners()
        .listener_arns(&world.listener_arn)
        .send()
        .await
        .unwrap();
    let tgs = l.listeners()[0].default_actions()[0]
        .forward_config()
        .unwrap()
        .target_groups()
        .to_vec();
    assert!(
        tgs.iter()
            .any(|t| t.target_group_arn() == Some(third.as_str()) && t.weight() == Some(0)),
        "the third target group must stay in the action, at 0: {tgs:?}"
    );
}

/// Regression (issue 8.6): a metrics read that always fails (access denied) held the bake at
/// 50/50 for ever. Verify reads exactly the bake's queries before anything changes: an error
/// there means not started, with a one-line reason.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_metrics_at_verify_mean_not_started() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    proxy.set(Faults::none().error(403, "AccessDenied", Rule::always().only(["GetMetricData"])));
    let out = run(wd.cutover(
        proxy.endpoint(),
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(5));
    let reason = json(&out)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("cannot read the judged metrics") && reason.contains("AccessDenied"),
        "{reason}"
    );
    assert!(!reason.contains('\n') && reason.len() < 300, "not one line: {reason}");
    assert_eq!(
        proxy.snapshot().op("GetMetricData").requests,
        1,
        "retried an error that retrying cannot fix"
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue), "nothing changed");
}

/// Issue 8.6: the same error in the middle of a bake rolls back at once as `stalled`, rather
/// than holding traffic split while warning every poll.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_unreadable_mid_bake_roll_back_as_stalled() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    proxy.set(Faults::none().error(403, "AccessDenied", Rule::always().only(["GetMetricData"])));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("retrying cannot fix") && reason.contains("AccessDenied"),
        "{reason}"
    );
    assert!(journal_text(&wd.state()).contains("\"trigger\":\"stalled\""));
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Issue 8.6: a live colour without a single datapoint while it holds all traffic (a wrong
/// namespace) is named in a warning at verify, with the namespace and dimensions.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_colour_without_datapoints_is_warned_about() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = plan(&world, "", QUICK_STEPS).replace("namespace = \"Cutover/Test\"", "namespace = \"Cutover/Typo\"");
    let plan = wd.write_plan(&text);
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    let log_path = bg.log.clone();
    let (code, _) = bg.wait(Duration::from_secs(30));
    assert_eq!(code, 4);
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("no request count for it")
            && log.contains("Cutover/Typo")
            && log.contains("TargetGroup=targetgroup/"),
        "{log}"
    );
}

/// Issue 8.11: exit 6. A restore that is never confirmed (every ModifyListener fails) is
/// `unsafe`: page someone. Never a silent success.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_never_confirmed_exits_6() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = plan(&world, "", &long_steps()).replace("verify_timeout = \"5s\"", "verify_timeout = \"2s\"");
    let plan = wd.write_plan(&text);
    let mut bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    proxy.set(Faults::none().server_error(500, Rule::always().only(["ModifyListener"])));
    let out = run(wd.cutover(proxy.endpoint(), &["rollback", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNSAFE"));
    // The engine's own restore: the same, as the outcome of the cutover.
    proxy.clear();
    let out = run(wd.cutover(proxy.endpoint(), &["rollback", "--config", plan.to_str().unwrap()]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "once AWS answers again, the rollback goes through"
    );
}

/// Issue 8.11: the restore's retries. With ModifyListener throttled most of the time, the
/// rollback still gets through and is confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_retries_a_throttled_modify() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let mut bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    bg.child.kill().unwrap();
    bg.child.wait().unwrap();
    proxy.set(Faults::none().throttle(Rule::p(0.8).only(["ModifyListener"])).seed(7));
    let out = run(wd.cutover(proxy.endpoint(), &["rollback", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
    let modify = proxy.snapshot().op("ModifyListener");
    assert!(modify.throttled >= 1 && modify.forwarded >= 1, "{modify:?}");
}

/// A one-shot HTTP server answering every GET with `status`.
fn http_server(status: u16) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{addr}/health")
}

/// Issue 8.11: the HTTP verify check, against a real HTTP server: the expected status passes,
/// another one stops the cutover before anything changed.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_verify_check_gates_the_start() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    for (status, expected) in [(503, 5), (200, 0)] {
        let url = http_server(status);
        let steps = QUICK_STEPS.replace(
            "checks = [{ command = [\"true\"] }]",
            &format!("checks = [{{ http = \"{url}\", expect_status = 200 }}]"),
        );
        let plan = wd.write_plan(&plan(&world, "", &steps));
        let out = run(wd.cutover(
            &world.endpoint,
            &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
        ));
        assert_eq!(out.status.code(), Some(expected), "{}", json(&out));
        if expected == 5 {
            assert!(
                json(&out)["reason"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 503, expected 200")
            );
            assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
        }
    }
}

/// Issue 8.11: `cutover serve` binds 127.0.0.1 unless told otherwise.
#[test]
fn serve_listens_on_loopback_by_default() {
    let wd = Workdir::new();
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let mut cmd = wd.cutover("http://127.0.0.1:9", &["serve", "--plans", plans.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", "0123456789abcdef0123")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.trim(), "listening on http://127.0.0.1:7878");
}

/// Issue 8.9: `cutover rollback ID` against the daemon exits 0 when traffic is verified back.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_by_id_exits_0_when_it_did_its_job() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(plans.join("svc.toml"), plan(&world, "", &long_steps())).unwrap();
    let serve = crate::daemon::Serve::start(&wd, &world.endpoint, &plans);
    let (status, v) = crate::daemon::api(&serve, "POST", "/v1/cutovers", Some(json!({"plan": "svc"}))).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    let mut cmd = wd.cutover(&world.endpoint, &["rollback", &id, "--server", &serve.url]);
    cmd.env("CUTOVER_TOKEN", crate::daemon::TOKEN);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// A deploy step that writes its whole environment to `env.txt`.
fn env_dumping_steps() -> String {
    format!(
        r#"
[[steps]]
action = "deploy"
run = ["sh", "-c", "env > env.txt"]
timeout = "10s"
{QUICK_STEPS}"#
    )
}

/// Regression (issue 8.8): hooks inherited the whole environment, and verify commands, deploy
/// and migrate runs saw `CUTOVER_TOKEN` under `cutover run` and under the daemon. They never
/// see the API token, whatever its source; the job's AWS credentials they do see (by default).
#[tokio::test(flavor = "multi_thread")]
async fn hooks_never_see_the_api_token() {
    use std::os::unix::fs::PermissionsExt;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &env_dumping_steps()));
    let mut cmd = wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", "run-token-0123456789abcdef");
    assert_eq!(run(cmd).status.code(), Some(0));
    let env = std::fs::read_to_string(wd.path().join("env.txt")).unwrap();
    assert!(!env.contains("CUTOVER_TOKEN") && !env.contains("run-token"), "{env}");
    assert!(
        env.contains("AWS_SECRET_ACCESS_KEY=test"),
        "a CI deploy needs the job's credentials: {env}"
    );
    assert!(env.contains("CUTOVER_NEW_COLOR=green"), "{env}");

    // The daemon, with its token in a file: the token's value reaches no hook either.
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(plans.join("svc.toml"), plan_text_in(&wd, &world)).unwrap();
    let token_file = wd.path().join("token");
    std::fs::write(&token_file, "file-token-0123456789abcdef").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = wd.cutover(
        &world.endpoint,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plans",
            plans.to_str().unwrap(),
            "--token-file",
        ],
    );
    cmd.arg(&token_file)
        .env("CUTOVER_TOKEN_COPY", "file-token-0123456789abcdef");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/cutovers"))
        .bearer_auth("file-token-0123456789abcdef")
        .header("content-type", "application/json")
        .body(json!({"plan": "svc"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let start = Instant::now();
    let env_file = plans.join("env.txt");
    while !env_file.exists() || std::fs::read_to_string(&env_file).unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "the deploy hook never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains("file-token"), "the token's value reached a hook: {env}");
}

/// The daemon's plan for `hooks_never_see_the_api_token`: the same steps, 1-second metrics.
fn plan_text_in(_wd: &Workdir, world: &World) -> String {
    plan(world, "", &env_dumping_steps())
}

/// Issue 8.8: a token file readable by group or others is refused at start, as ssh refuses
/// such keys.
#[test]
fn a_token_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let wd = Workdir::new();
    let plans = wd.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let token_file = wd.path().join("token");
    std::fs::write(&token_file, "file-token-0123456789abcdef").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = wd.cutover(
        "http://127.0.0.1:9",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plans",
            plans.to_str().unwrap(),
            "--token-file",
        ],
    );
    cmd.arg(&token_file);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too open"));
}

/// Issue 8.8: a plan can ask for a clean environment for its commands: the basics, what
/// cutover sets, and what the plan names, nothing else (not the job's AWS credentials).
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_environment_keeps_only_what_the_plan_names() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = format!(
        "[environment]\nclean = true\npass = [\"AWS_REGION\"]\n\n{}",
        plan(&world, "", &env_dumping_steps())
    );
    let plan = wd.write_plan(&text);
    let out = run(wd.cutover(&world.endpoint, &["run", "--config", plan.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    let env = std::fs::read_to_string(wd.path().join("env.txt")).unwrap();
    assert!(!env.contains("AWS_SECRET_ACCESS_KEY"), "{env}");
    assert!(env.contains("AWS_REGION=us-east-1"), "the pass list: {env}");
    assert!(env.contains("\nPATH=") || env.starts_with("PATH="), "{env}");
    assert!(env.contains("CUTOVER_NEW_COLOR=green"), "{env}");
    assert!(
        !env.contains("CUTOVER_STATE_DIR"),
        "only the CUTOVER_* variables cutover sets: {env}"
    );
}
