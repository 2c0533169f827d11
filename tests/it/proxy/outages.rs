//! Outages of the whole endpoint: refusing (back on the same port), blackholed (timeouts, then
//! recovery), resetting every connection.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fault_proxy::{FaultProxy, Faults, OutageKind};
use crate::util::Moto;

use super::{Clients, assert_io_failure, no_retries, sdk, sdk_with_timeout};

#[tokio::test]
async fn a_refusing_endpoint_comes_back_on_the_same_port() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    c.elb.describe_load_balancers().send().await.expect("before the outage");
    let outage = Duration::from_millis(1500);
    proxy.set(Faults::none().outage(OutageKind::Refuse, outage));
    let set_at = Instant::now();

    // The SDK's kept-alive connection is reset, a new one refused: both transport failures.
    assert_io_failure(&c.elb.describe_load_balancers().send().await.unwrap_err());
    assert_io_failure(&c.ddb.list_tables().send().await.unwrap_err());
    let refused = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect_err("connected during the outage");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    assert!(
        set_at.elapsed() < outage,
        "the machine is too slow for this test's outage"
    );

    tokio::time::sleep_until((set_at + outage + Duration::from_millis(200)).into()).await;
    c.elb.describe_load_balancers().send().await.expect("after the outage");
    c.ddb.list_tables().send().await.expect("after the outage");
    let snap = proxy.snapshot();
    assert!(snap.total().outages >= 1, "{snap}");
}

#[tokio::test]
async fn a_blackholed_endpoint_times_out_then_recovers() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    // Warm moto's backends up first (the first call to each loads it, which can take longer than the timeout).
    let warm = Clients::new(&sdk(&moto.endpoint, no_retries()).await);
    warm.elb.describe_load_balancers().send().await.unwrap();
    warm.ddb.list_tables().send().await.unwrap();
    let c = Clients::new(&sdk_with_timeout(proxy.endpoint(), no_retries(), Duration::from_millis(1000)).await);
    c.elb.describe_load_balancers().send().await.expect("before the outage");
    // Long enough for two timed-out calls and a probe on a loaded machine; moto under load
    // answered a call after the outage in more than 400 ms once, so the timeout is 1 s.
    let outage = Duration::from_millis(4000);
    proxy.set(Faults::none().outage(OutageKind::Blackhole, outage));
    let set_at = Instant::now();

    let err = c.elb.describe_load_balancers().send().await.unwrap_err();
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    let err = c.ddb.list_tables().send().await.unwrap_err();
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    // A new connection is let in by the kernel, but nothing answers on it.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("backlog accepts");
    tcp.write_all(b"GET /moto-api/data.json HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf))
            .await
            .is_err(),
        "something answered during the blackhole"
    );
    assert!(
        set_at.elapsed() < outage,
        "the machine is too slow for this test's outage"
    );

    tokio::time::sleep_until((set_at + outage + Duration::from_millis(100)).into()).await;
    c.elb.describe_load_balancers().send().await.expect("after the outage");
    c.ddb.list_tables().send().await.expect("after the outage");
    let snap = proxy.snapshot();
    assert!(snap.total().outages >= 1, "{snap}");
}

#[tokio::test]
async fn a_resetting_endpoint_resets_every_connection() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    c.ddb.list_tables().send().await.expect("before the outage");
    proxy.set(Faults::none().outage(OutageKind::Reset, Duration::from_secs(30)));

    assert_io_failure(&c.ddb.list_tables().send().await.unwrap_err()); // the kept-alive connection
    assert_io_failure(&c.ddb.list_tables().send().await.unwrap_err()); // a new one
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.expect("accepted");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("no reset");
    assert_eq!(
        read.expect_err("closed, not reset").kind(),
        std::io::ErrorKind::ConnectionReset
    );

    proxy.clear();
    c.ddb.list_tables().send().await.expect("after clear");
    let snap = proxy.snapshot();
    assert_eq!(snap.op("ListTables").outages, 1);
    assert!(snap.reset_connections >= 2, "{snap:?}");
}
