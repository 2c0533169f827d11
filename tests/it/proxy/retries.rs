//! The SDK's retries of injected faults: retried as retryable, and standard retries riding out
//! a 30 % throttle.

use crate::fault_proxy::{FaultProxy, Faults, OpStats, Rule};
use crate::util::Moto;

use super::{Clients, TABLE, assert_io_failure, assert_service_error, create_table, put_item, sdk, standard, stats};

#[tokio::test]
async fn the_sdk_retries_injected_faults_as_retryable() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), standard(4)).await);

    // An always-on fault: the proxy sees all 4 attempts, so the SDK classified it retryable.
    proxy.set(Faults::none().throttle(Rule::always()));
    let err = c.elb.describe_load_balancers().send().await.unwrap_err();
    assert_service_error(&err, 400, "Throttling");
    proxy.set(Faults::none().server_error(503, Rule::always()));
    let err = c.ddb.list_tables().send().await.unwrap_err();
    assert_service_error(&err, 503, "ServiceUnavailable");
    proxy.set(Faults::none().reset(Rule::always()));
    assert_io_failure(&c.cw.list_metrics().send().await.unwrap_err());

    let snap = proxy.snapshot();
    assert_eq!(
        snap.op("DescribeLoadBalancers"),
        OpStats {
            throttled: 4,
            ..stats(4)
        }
    );
    assert_eq!(
        snap.op("ListTables"),
        OpStats {
            server_errors: 4,
            ..stats(4)
        }
    );
    assert_eq!(snap.op("ListMetrics"), OpStats { resets: 4, ..stats(4) });
}

#[tokio::test]
async fn standard_retries_ride_out_a_30_percent_throttle() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), standard(4)).await);
    create_table(&c.ddb).await;
    proxy.reset_stats();
    // Seeded: the calls are sequential, so every run sees the same throttles.
    proxy.set(Faults::none().throttle(Rule::p(0.3)).seed(0x5eed));

    const CALLS: u64 = 20;
    for i in 0..CALLS {
        c.elb
            .describe_load_balancers()
            .send()
            .await
            .expect("describe load balancers");
        c.cw.list_metrics().send().await.expect("list metrics");
        c.ddb.list_tables().send().await.expect("list tables");
        put_item(&c.ddb, &format!("k{i}")).send().await.expect("put item");
    }

    let snap = proxy.snapshot();
    println!("{snap}");
    for op in ["DescribeLoadBalancers", "ListMetrics", "ListTables", "PutItem"] {
        let s = snap.op(op);
        // Every throttle cost exactly one more attempt, and the rest went to moto.
        assert_eq!(s.requests, CALLS + s.throttled, "{op}: {s:?}");
        assert_eq!(s.forwarded, CALLS, "{op}: {s:?}");
    }
    let t = snap.total();
    let share = t.throttled as f64 / t.requests as f64;
    assert!(
        (0.15..0.45).contains(&share),
        "{} of {} requests throttled",
        t.throttled,
        t.requests
    );
    let scan = c.ddb.scan().table_name(TABLE).send().await.unwrap();
    assert_eq!(scan.count(), CALLS as i32);
}
