//! What a rule hits: only the named operations, only within its window, and delays on the
//! matching calls only.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::fault_proxy::{FaultProxy, Faults, OpStats, Rule};
use crate::util::Moto;

use super::{Clients, assert_service_error, create_table, get_metric_data, no_retries, put_item, sdk, stats};

#[tokio::test]
async fn operation_filters_apply_only_to_the_named_operations() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    create_table(&c.ddb).await;
    let fake_lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/nope/50dc6c495c0c9188";
    proxy.set(Faults::none().throttle(Rule::always().only(["DescribeListeners", "GetMetricData", "PutItem"])));

    c.elb.describe_load_balancers().send().await.expect("not filtered");
    let err = c
        .elb
        .describe_listeners()
        .load_balancer_arn(fake_lb)
        .send()
        .await
        .unwrap_err();
    assert_service_error(&err, 400, "Throttling");
    c.cw.list_metrics().send().await.expect("not filtered");
    assert_service_error(&get_metric_data(&c.cw).send().await.unwrap_err(), 400, "Throttling");
    c.ddb.list_tables().send().await.expect("not filtered");
    assert_service_error(
        &put_item(&c.ddb, "a").send().await.unwrap_err(),
        400,
        "ThrottlingException",
    );

    // Cleared, the same calls get moto's own answers.
    proxy.clear();
    let err = c
        .elb
        .describe_listeners()
        .load_balancer_arn(fake_lb)
        .send()
        .await
        .unwrap_err();
    assert_ne!(err.code(), Some("Throttling"), "{}", DisplayErrorContext(&err));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    get_metric_data(&c.cw).send().await.expect("get metric data");
    put_item(&c.ddb, "a").send().await.expect("put item");

    let snap = proxy.snapshot();
    for op in ["DescribeLoadBalancers", "ListMetrics", "ListTables"] {
        assert_eq!(
            snap.op(op),
            OpStats {
                forwarded: 1,
                ..stats(1)
            },
            "{op}"
        );
    }
    for op in ["DescribeListeners", "GetMetricData", "PutItem"] {
        assert_eq!(
            snap.op(op),
            OpStats {
                throttled: 1,
                forwarded: 1,
                ..stats(2)
            },
            "{op}"
        );
    }
}

#[tokio::test]
async fn a_deterministic_throttle_window_ends_on_time() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    let window = Duration::from_millis(1500);
    proxy.set(Faults::none().throttle(Rule::always().only(["DescribeLoadBalancers"]).lasting(window)));
    let set_at = Instant::now();

    for _ in 0..3 {
        let err = c.elb.describe_load_balancers().send().await.unwrap_err();
        assert_service_error(&err, 400, "Throttling");
    }
    c.ddb.list_tables().send().await.expect("other operations pass");
    assert!(
        set_at.elapsed() < window,
        "the machine is too slow for this test's window"
    );
    tokio::time::sleep_until((set_at + window + Duration::from_millis(200)).into()).await;
    c.elb.describe_load_balancers().send().await.expect("after the window");

    let snap = proxy.snapshot();
    assert_eq!(
        snap.op("DescribeLoadBalancers"),
        OpStats {
            throttled: 3,
            forwarded: 1,
            ..stats(4)
        }
    );
    // The rule is still set, only out of force.
    assert_eq!(proxy.faults().throttle.len(), 1);
}

#[tokio::test]
async fn delays_slow_only_the_matching_calls() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    // Warm moto's backends up: the first call to each loads it.
    c.ddb.list_tables().send().await.unwrap();
    c.elb.describe_load_balancers().send().await.unwrap();
    let delay = Duration::from_millis(800);
    proxy.set(Faults::none().delay(delay, Duration::from_millis(200), Rule::always().only(["ListTables"])));

    let t = Instant::now();
    c.ddb.list_tables().send().await.expect("delayed, not failed");
    let slow = t.elapsed();
    assert!(slow >= delay, "ListTables took {slow:?}");
    let t = Instant::now();
    c.elb.describe_load_balancers().send().await.unwrap();
    let fast = t.elapsed();
    assert!(fast < delay, "DescribeLoadBalancers took {fast:?}, as if delayed");

    let snap = proxy.snapshot();
    assert_eq!(
        snap.op("ListTables"),
        OpStats {
            delayed: 1,
            forwarded: 2,
            ..stats(2)
        }
    );
    assert_eq!(snap.op("DescribeLoadBalancers").delayed, 0);
}
