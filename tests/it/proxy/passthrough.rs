//! Without faults: moto's real answers over kept-alive connections, `/moto-api` never faulted,
//! concurrent calls served in parallel, and the proxy on its own thread serving while the test's
//! thread blocks.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::fault_proxy::{FaultProxy, Faults, OpStats, Rule};
use crate::util::Moto;

use super::{Clients, TABLE, assert_service_error, create_table, no_retries, put_item, raw, sdk, stats};

#[tokio::test]
async fn without_faults_calls_get_motos_real_answers_over_kept_alive_connections() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let via = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    let direct = Clients::new(&sdk(&moto.endpoint, no_retries()).await);

    // DynamoDB: what goes through the proxy lands in moto, and comes back.
    create_table(&via.ddb).await;
    put_item(&via.ddb, "a").send().await.expect("put item");
    let got = via
        .ddb
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .expect("get item");
    assert_eq!(
        got.item().and_then(|i| i.get("n")),
        Some(&AttributeValue::N("1".into()))
    );
    let tables = direct.ddb.list_tables().send().await.unwrap();
    assert_eq!(tables.table_names(), [TABLE]);

    // CloudWatch: a metric published through the proxy is listed by moto directly.
    via.cw
        .put_metric_data()
        .namespace("FaultProxy")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("m")
                .value(1.0)
                .build(),
        )
        .send()
        .await
        .expect("put metric data");
    let listed = via
        .cw
        .list_metrics()
        .namespace("FaultProxy")
        .send()
        .await
        .expect("list metrics");
    let names: Vec<_> = listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    assert_eq!(names, ["m"]);
    let listed_direct = direct.cw.list_metrics().namespace("FaultProxy").send().await.unwrap();
    assert_eq!(listed_direct.metrics(), listed.metrics());

    // ELBv2: moto's own errors pass through unchanged.
    let via_err = via
        .elb
        .describe_load_balancers()
        .names("nope")
        .send()
        .await
        .unwrap_err();
    let direct_err = direct
        .elb
        .describe_load_balancers()
        .names("nope")
        .send()
        .await
        .unwrap_err();
    assert_service_error(&via_err, 400, "LoadBalancerNotFound");
    assert_eq!(via_err.message(), direct_err.message());
    let lbs = via
        .elb
        .describe_load_balancers()
        .send()
        .await
        .expect("describe load balancers");
    assert!(lbs.load_balancers().is_empty());

    let snap = proxy.snapshot();
    println!("{snap}");
    for (op, n) in [
        ("CreateTable", 1),
        ("PutItem", 1),
        ("GetItem", 1),
        ("PutMetricData", 1),
        ("ListMetrics", 1),
        ("DescribeLoadBalancers", 2),
    ] {
        assert_eq!(
            snap.op(op),
            OpStats {
                forwarded: n,
                ..stats(n)
            },
            "{op}"
        );
    }
    assert_eq!(snap.operations.len(), 6, "{:?}", snap.operations);
    assert_eq!(snap.total().requests, 7);
    assert_eq!(snap.total().faults(), 0);
    assert!(snap.rate("DescribeLoadBalancers") > 0.0);
    // Seven sequential calls from three clients: keep-alive reused connections.
    assert!(
        (1..=3).contains(&snap.connections),
        "{} connections for 7 sequential calls",
        snap.connections
    );
}

#[tokio::test]
async fn moto_api_passes_untouched_and_is_never_faulted() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    create_table(&c.ddb).await;
    proxy.set(
        Faults::none()
            .throttle(Rule::always())
            .server_error(500, Rule::always())
            .reset(Rule::always()),
    );

    let (status, _, body) = raw("GET", &format!("{}/moto-api/data.json", proxy.endpoint()), &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains(TABLE), "moto's state should list the table: {body}");
    let (status, _, _) = raw("POST", &format!("{}/moto-api/reset", proxy.endpoint()), &[], "").await;
    assert_eq!(status, 200);

    proxy.clear();
    let tables = c.ddb.list_tables().send().await.unwrap();
    assert!(tables.table_names().is_empty(), "moto was reset through the proxy");
    let snap = proxy.snapshot();
    assert_eq!(snap.moto_api, 2);
    assert_eq!(snap.total().faults(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_served_in_parallel() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    c.elb.describe_load_balancers().send().await.unwrap();
    let delay = Duration::from_millis(50);
    proxy.set(Faults::none().delay(delay, Duration::ZERO, Rule::always()));

    const CALLS: u32 = 32;
    let t = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let elb = c.elb.clone();
        calls.spawn(async move { elb.describe_load_balancers().send().await.map(|_| ()) });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().expect("concurrent call");
    }
    let took = t.elapsed();
    assert!(
        took < delay * CALLS,
        "{CALLS} delayed calls took {took:?}: served one at a time?"
    );
    let snap = proxy.snapshot();
    assert_eq!(snap.op("DescribeLoadBalancers").delayed, u64::from(CALLS));
    assert_eq!(snap.op("DescribeLoadBalancers").forwarded, u64::from(CALLS) + 1);
    assert!(snap.connections > 1, "{snap}");
}

#[tokio::test]
async fn a_proxy_on_its_own_thread_serves_while_the_test_thread_blocks() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    proxy.set(Faults::none().throttle(Rule::always().only(["DescribeLoadBalancers"])));
    // Blocking I/O on this (the test runtime's only) thread: a proxy started with
    // `start` could not answer it; this one runs elsewhere.
    let body = "Action=DescribeLoadBalancers&Version=2015-12-01";
    let req = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(proxy.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut tcp, req.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>Throttling</Code>"), "{answer}");

    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    c.ddb
        .list_tables()
        .send()
        .await
        .expect("the SDK through the threaded proxy");
    let addr = proxy.addr();
    assert_eq!(proxy.snapshot().op("DescribeLoadBalancers").throttled, 1);
    drop(proxy);
    let refused = tokio::net::TcpStream::connect(addr)
        .await
        .expect_err("still listening after drop");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
