//! The AWS adapters: `traffic` and `metrics` against moto's wire protocol, and
//! their error and retry paths with `aws-smithy-mocks`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
use aws_sdk_elasticloadbalancingv2::operation::modify_listener::{ModifyListenerError, ModifyListenerOutput};
use aws_sdk_elasticloadbalancingv2::types::error::ListenerNotFoundException;
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, Listener, TargetGroupTuple};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use cutover::color::{Color, Split};
use cutover::config::MetricsConfig;
use cutover::metrics::{CloudWatch, Metrics};
use cutover::traffic::{Alb, Traffic, TrafficError};

use crate::util::*;

async fn alb(world: &World) -> Alb {
    let conf = sdk(&world.endpoint).await;
    Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &alb_config(world))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plain_target_group_shape_reads_as_all_on_blue_and_writes_as_forward_config() {
    let moto = Moto::start();
    let world = fixture(&moto, &["--shape", "plain"]);
    let alb = alb(&world).await;
    let split = alb.read().await.unwrap();
    assert_eq!(split.holder(), Some(Color::Blue));
    let half = Split::with_new(Color::Green, 500);
    let read = cutover::traffic::set_and_verify(
        &alb,
        half,
        Duration::from_secs(5),
        cutover::traffic::Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();
    assert_eq!(read, half);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_keeps_stickiness_and_the_target_group_order() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let conf = sdk(&world.endpoint).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let describe = || async {
        let out = elb
            .describe_listeners()
            .listener_arns(&world.listener_arn)
            .send()
            .await
            .unwrap();
        out.listeners()[0].default_actions()[0].clone()
    };
    let before = describe().await;
    let alb = alb(&world).await;
    cutover::traffic::set_and_verify(
        &alb,
        Split::with_new(Color::Green, 250),
        Duration::from_secs(5),
        cutover::traffic::Writing::AfterRead,
        cutover::traffic::ALWAYS,
    )
    .await
    .unwrap();
    let after = describe().await;
    let fc = after.forward_config().unwrap();
    assert_eq!(
        fc.target_group_stickiness_config(),
        before.forward_config().unwrap().target_group_stickiness_config()
    );
    let weights: Vec<(String, i32)> = fc
        .target_groups()
        .iter()
        .map(|t| (t.target_group_arn().unwrap().to_string(), t.weight().unwrap()))
        .collect();
    assert_eq!(weights, [(world.blue.clone(), 750), (world.green.clone(), 250)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_is_read_and_written_instead_of_the_default_action() {
    let moto = Moto::start();
    let world = fixture(&moto, &["--rule"]);
    let alb = alb(&world).await;
    assert_eq!(alb.read().await.unwrap().holder(), Some(Color::Blue));
    let all_green = Split::all_on(Color::Green);
    assert_eq!(
        cutover::traffic::set_and_verify(
            &alb,
            all_green,
            Duration::from_secs(5),
            cutover::traffic::Writing::AfterRead,
            cutover::traffic::ALWAYS,
        )
        .await
        .unwrap(),
        all_green
    );
    // Without the rule, the listener's default action (a fixed response) has no forward action.
    let mut config = alb_config(&world);
    config.rule_arn = None;
    let conf = sdk(&world.endpoint).await;
    let listener = Alb::new(aws_sdk_elasticloadbalancingv2::Client::new(&conf), &config);
    let e = listener.read().await.unwrap_err();
    assert!(e.to_string().contains("has no forward action"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_health_counts_only_healthy_targets() {
    let moto = Moto::start();
    let world = fixture(&moto, &["--stopped-instance"]);
    assert!(world.stopped_instance.is_some());
    let alb = alb(&world).await;
    assert_eq!(alb.healthy_targets(Color::Blue).await.unwrap(), 2);
    // Green has two running instances and one stopped one, which reports `unused`.
    assert_eq!(alb.healthy_targets(Color::Green).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_an_alb_would_refuse_are_never_sent() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let alb = alb(&world).await;
    let before = alb.read().await.unwrap();
    let e = alb
        .write(Split {
            blue: 1000,
            green: 0,
            others: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, TrafficError::Invalid(_)), "{e}");
    assert_eq!(alb.read().await.unwrap(), before);
}

fn metrics_config() -> MetricsConfig {
    MetricsConfig {
        namespace: "Cutover/Test".into(),
        period: Duration::from_secs(1),
        settle: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        latency_statistic: "Average".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_metric_data_windows_per_period_for_both_colours() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let conf = sdk(&world.endpoint).await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let config = alb_config(&world);
    let lb = config.load_balancer_dimension();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let t0 = now - 60;
    // Green: 100 requests with 7 errors at t0, nothing at t0+1, 50 requests at t0+2. Blue: 200 at each.
    let put = |tg: String, t: u64, name: &'static str, v: f64, unit: StandardUnit| {
        let cw = cw.clone();
        let lb = lb.clone();
        async move {
            cw.put_metric_data()
                .namespace("Cutover/Test")
                .metric_data(
                    MetricDatum::builder()
                        .metric_name(name)
                        .dimensions(Dimension::builder().name("LoadBalancer").value(lb).build())
                        .dimensions(Dimension::builder().name("TargetGroup").value(tg).build())
                        .timestamp(DateTime::from_secs(t as i64))
                        .value(v)
                        .unit(unit)
                        .storage_resolution(1)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    let green = cutover::config::target_group_dimension(&world.green);
    let blue = cutover::config::target_group_dimension(&world.blue);
    put(green.clone(), t0, "RequestCount", 100.0, StandardUnit::Count).await;
    put(green.clone(), t0, "HTTPCode_Target_5XX_Count", 7.0, StandardUnit::Count).await;
    put(green.clone(), t0, "TargetResponseTime", 0.12, StandardUnit::Seconds).await;
    put(green.clone(), t0 + 2, "RequestCount", 50.0, StandardUnit::Count).await;
    for t in t0..t0 + 3 {
        put(blue.clone(), t, "RequestCount", 200.0, StandardUnit::Count).await;
    }
    let metrics = CloudWatch::new(cw, &metrics_config(), &config, Color::Green, &[]);
    let windows = metrics.windows(t0, t0 + 3).await.unwrap();
    let got: Vec<(u64, f64, f64, Option<f64>, f64)> = windows
        .iter()
        .map(|w| (w.start, w.new.requests, w.new.errors, w.new.latency, w.live.requests))
        .collect();
    assert_eq!(
        got,
        [
            (t0, 100.0, 7.0, Some(0.12), 200.0),
            (t0 + 1, 0.0, 0.0, None, 200.0),
            (t0 + 2, 50.0, 0.0, None, 200.0)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alarms_in_alarm_and_missing_alarms_are_reported() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let conf = sdk(&world.endpoint).await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    for name in ["it-5xx", "it-latency"] {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("Cutover/Test")
            .metric_name("RequestCount")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .unwrap();
    }
    cw.set_alarm_state()
        .alarm_name("it-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    let names = ["it-5xx".to_string(), "it-latency".to_string(), "it-typo".to_string()];
    let metrics = CloudWatch::new(cw, &metrics_config(), &alb_config(&world), Color::Green, &names);
    let alarms = metrics.alarms().await.unwrap();
    assert_eq!(alarms.in_alarm, ["it-5xx"]);
    assert_eq!(alarms.missing, ["it-typo"]);
}

// --- Error and retry paths, with aws-smithy-mocks and the product's own retry configuration.

const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2";
const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/1";
const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/g/2";

fn describe_rule() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_elasticloadbalancingv2::Client::describe_listeners).then_output(|| {
        let forward = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(TargetGroupTuple::builder().target_group_arn(BLUE).weight(1).build())
                    .target_groups(TargetGroupTuple::builder().target_group_arn(GREEN).weight(0).build())
                    .build(),
            )
            .build();
        DescribeListenersOutput::builder()
            .listeners(
                Listener::builder()
                    .listener_arn(LISTENER)
                    .default_actions(forward)
                    .build(),
            )
            .build()
    })
}

fn mocked_alb(rules: &[&aws_smithy_mocks::Rule]) -> Alb {
    let client = mock_client!(aws_sdk_elasticloadbalancingv2, RuleMode::MatchAny, rules, |b| b
        .retry_config(cutover::aws::retry_config())
        .timeout_config(cutover::aws::timeout_config()));
    let config = cutover::config::Alb {
        listener_arn: LISTENER.into(),
        rule_arn: None,
        blue_target_group_arn: BLUE.into(),
        green_target_group_arn: GREEN.into(),
        min_healthy_targets: 1,
        verify_timeout: Duration::from_secs(5),
    };
    Alb::new(client, &config)
}

fn throttling() -> ModifyListenerError {
    ModifyListenerError::generic(
        aws_smithy_types::error::ErrorMetadata::builder()
            .code("Throttling")
            .message("Rate exceeded")
            .build(),
    )
}

#[tokio::test(start_paused = true)]
async fn throttled_modify_calls_are_retried_by_the_sdk() {
    let describe = describe_rule();
    let modify = mock!(aws_sdk_elasticloadbalancingv2::Client::modify_listener)
        .sequence()
        .error(throttling)
        .times(2)
        .http_status(503, None)
        .output(|| ModifyListenerOutput::builder().build())
        .build();
    let alb = mocked_alb(&[&describe, &modify]);
    alb.write(Split::with_new(Color::Green, 500)).await.unwrap();
    assert_eq!(modify.num_calls(), 4, "two throttles and a 503, then success");
}

#[tokio::test(start_paused = true)]
async fn throttling_beyond_the_retry_budget_is_a_retryable_error() {
    let describe = describe_rule();
    let modify = mock!(aws_sdk_elasticloadbalancingv2::Client::modify_listener)
        .sequence()
        .error(throttling)
        .times(10)
        .build();
    let alb = mocked_alb(&[&describe, &modify]);
    let e = alb.write(Split::with_new(Color::Green, 500)).await.unwrap_err();
    assert_eq!(modify.num_calls(), cutover::aws::MAX_ATTEMPTS as usize);
    match e {
        TrafficError::Aws(aws) => {
            assert!(aws.retryable, "{aws:?}");
            assert_eq!(aws.code.as_deref(), Some("Throttling"));
            assert_eq!(aws.operation, "ModifyListener");
        }
        other => panic!("expected an AWS error, got {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_listener_is_fatal_and_not_retried() {
    let describe = describe_rule();
    let modify = mock!(aws_sdk_elasticloadbalancingv2::Client::modify_listener).then_error(|| {
        ModifyListenerError::ListenerNotFoundException(ListenerNotFoundException::builder().message("gone").build())
    });
    let alb = mocked_alb(&[&describe, &modify]);
    let e = alb.write(Split::with_new(Color::Green, 500)).await.unwrap_err();
    assert_eq!(modify.num_calls(), 1);
    assert!(!e.retryable(), "{e}");
    assert!(e.to_string().contains("ListenerNotFound"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn get_metric_data_survives_5xx() {
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_sdk_cloudwatch::types::MetricDataResult;
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .sequence()
        .http_status(500, None)
        .times(2)
        .output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        // Every read goes through the shared reader, which prefixes each
                        // request's query ids (`q{j}_`): a lone request is `q0_`.
                        .id("q0_n_req")
                        .timestamps(DateTime::from_secs(60))
                        .values(42.0)
                        .build(),
                )
                .build()
        })
        .build();
    let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, &[&rule], |b| b
        .retry_config(cutover::aws::retry_config()));
    let config = cutover::config::Alb {
        listener_arn: LISTENER.into(),
        rule_arn: None,
        blue_target_group_arn: BLUE.into(),
        green_target_group_arn: GREEN.into(),
        min_healthy_targets: 1,
        verify_timeout: Duration::from_secs(5),
    };
    let mut m = metrics_config();
    m.period = Duration::from_secs(60);
    let metrics = CloudWatch::new(cw, &m, &config, Color::Green, &[]);
    let windows = metrics.windows(60, 120).await.unwrap();
    assert_eq!(rule.num_calls(), 3);
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].new.requests, 42.0);
}
