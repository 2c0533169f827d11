//! Restores: the whole forward action put on the live colour, a restore never confirmed (exit 6),
//! a throttled ModifyListener retried, `rollback ID` exiting 0 when it did its job.

use std::time::Duration;

use cutover::color::{Color, Split};
use serde_json::json;

use crate::e2e::{Background, wait_for_event};
use crate::fault_proxy::{FaultProxy, Faults, Rule};
use crate::util::*;

use super::long_steps;

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
