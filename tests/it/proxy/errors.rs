//! Injected errors as the SDK sees them: throttles and 5xx as service errors with each protocol's
//! code, the error bodies in the services' exact shape, resets as transport failures before any
//! response byte.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fault_proxy::{FaultProxy, Faults, OpStats, Rule, UNKNOWN_OPERATION};
use crate::util::Moto;

use super::{Clients, assert_io_failure, assert_service_error, no_retries, put_item, raw, sdk, stats};

const QUERY_FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
const ELB_AUTH: (&str, &str) = (
    "authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=0",
);
const DDB_AUTH: (&str, &str) = (
    "authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
);

#[tokio::test]
async fn throttles_arrive_as_service_errors_with_each_protocols_code() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    proxy.set(Faults::none().throttle(Rule::always()));

    let err = c.elb.describe_load_balancers().send().await.unwrap_err();
    assert_service_error(&err, 400, "Throttling");
    assert_eq!(err.message(), Some("Rate exceeded"));

    let err = c.cw.list_metrics().send().await.unwrap_err();
    assert_service_error(&err, 400, "Throttling");
    assert_eq!(err.message(), Some("Rate exceeded"));

    let err = c.ddb.list_tables().send().await.unwrap_err();
    assert_service_error(&err, 400, "ThrottlingException");

    let err = put_item(&c.ddb, "a").send().await.unwrap_err();
    assert_service_error(&err, 400, "ThrottlingException");
    // PutItem models ThrottlingException: the SDK deserialised it into that variant.
    let err = err.into_service_error();
    assert!(err.is_throttling_exception(), "{err:?}");
    assert_eq!(err.message(), Some("Rate of requests exceeds the allowed throughput."));

    let snap = proxy.snapshot();
    for op in ["DescribeLoadBalancers", "ListMetrics", "ListTables", "PutItem"] {
        assert_eq!(
            snap.op(op),
            OpStats {
                throttled: 1,
                ..stats(1)
            },
            "{op}"
        );
    }
}

#[tokio::test]
async fn error_bodies_have_the_services_exact_shape() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let url = format!("{}/", proxy.endpoint());
    proxy.set(Faults::none().throttle(Rule::always()));

    let (status, headers, body) = raw(
        "POST",
        &url,
        &[QUERY_FORM, ELB_AUTH],
        "Action=DescribeListeners&Version=2015-12-01",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "text/xml");
    assert_eq!(headers[crate::fault_proxy::FAULT_HEADER], "throttle");
    let id = headers["x-amzn-requestid"].to_str().unwrap().to_string();
    assert_eq!(
        body,
        format!(
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error><Type>Sender</Type>\
             <Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
        )
    );

    let (status, headers, body) = raw(
        "POST",
        &url,
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "DynamoDB_20120810.PutItem"),
            DDB_AUTH,
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers["content-type"], "application/x-amz-json-1.0");
    assert_eq!(headers["x-amzn-errortype"], "ThrottlingException");
    assert!(headers.contains_key("x-amzn-requestid") && headers.contains_key("x-amz-crc32"));
    assert_eq!(
        body,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#
    );

    proxy.set(Faults::none().server_error(503, Rule::always()));
    let (status, _, body) = raw("POST", &url, &[QUERY_FORM], "Action=GetMetricData&Version=2010-08-01").await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with(
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Receiver</Type>\
             <Code>ServiceUnavailable</Code>"
        ),
        "{body}"
    );

    // The operation is also found in a query string, and a request with none is
    // counted as unknown (and gets faults that name no operation).
    proxy.set(Faults::none().throttle(Rule::always().only(["DescribeTargetHealth"])));
    let (status, headers, _) = raw(
        "GET",
        &format!("{url}?Action=DescribeTargetHealth&Version=2015-12-01"),
        &[ELB_AUTH],
        "",
    )
    .await;
    assert_eq!(
        (status, headers.get(crate::fault_proxy::FAULT_HEADER).is_some()),
        (400, true)
    );
    proxy.set(Faults::none().server_error(500, Rule::always()));
    let (status, _, body) = raw("POST", &url, &[], "nothing to see").await;
    assert_eq!(status, 500);
    assert!(body.contains("<Code>InternalFailure</Code>"), "{body}");

    let snap = proxy.snapshot();
    assert_eq!(snap.op("DescribeListeners").throttled, 1);
    assert_eq!(snap.op("PutItem").throttled, 1);
    assert_eq!(snap.op("GetMetricData").server_errors, 1);
    assert_eq!(snap.op("DescribeTargetHealth").throttled, 1);
    assert_eq!(snap.op(UNKNOWN_OPERATION).server_errors, 1);
}

#[tokio::test]
async fn server_errors_arrive_as_5xx_service_errors() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);

    proxy.set(Faults::none().server_error(503, Rule::always()));
    let err = c.elb.describe_load_balancers().send().await.unwrap_err();
    assert_service_error(&err, 503, "ServiceUnavailable");
    let err = c.cw.list_metrics().send().await.unwrap_err();
    assert_service_error(&err, 503, "ServiceUnavailable");
    let err = c.ddb.list_tables().send().await.unwrap_err();
    assert_service_error(&err, 503, "ServiceUnavailable");

    proxy.set(Faults::none().server_error(500, Rule::always()));
    let err = c.elb.describe_load_balancers().send().await.unwrap_err();
    assert_service_error(&err, 500, "InternalFailure");
    let err = c.cw.list_metrics().send().await.unwrap_err();
    assert_service_error(&err, 500, "InternalFailure");
    let err = c.ddb.list_tables().send().await.unwrap_err();
    assert_service_error(&err, 500, "InternalServerError");
    assert!(err.into_service_error().is_internal_server_error());

    let snap = proxy.snapshot();
    for op in ["DescribeLoadBalancers", "ListMetrics", "ListTables"] {
        assert_eq!(
            snap.op(op),
            OpStats {
                server_errors: 2,
                ..stats(2)
            },
            "{op}"
        );
    }
}

#[tokio::test]
async fn resets_arrive_as_transport_failures_before_any_response_byte() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let c = Clients::new(&sdk(proxy.endpoint(), no_retries()).await);
    c.elb.describe_load_balancers().send().await.expect("before the fault");
    proxy.set(Faults::none().reset(Rule::always()));

    assert_io_failure(&c.elb.describe_load_balancers().send().await.unwrap_err());
    assert_io_failure(&c.cw.list_metrics().send().await.unwrap_err());
    assert_io_failure(&c.ddb.list_tables().send().await.unwrap_err());

    // On the wire: the request is read, then an RST, and not one byte of response.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let body = "Action=DescribeLoadBalancers&Version=2015-12-01";
    let req = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        proxy.addr(),
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("the proxy neither answered nor reset");
    let err = read.expect_err("the connection was closed, not reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(
        got.is_empty(),
        "response bytes before the reset: {:?}",
        String::from_utf8_lossy(&got)
    );

    proxy.clear();
    c.elb.describe_load_balancers().send().await.expect("after the fault");
    let snap = proxy.snapshot();
    assert_eq!(
        snap.op("DescribeLoadBalancers"),
        OpStats {
            resets: 2,
            forwarded: 2,
            ..stats(4)
        }
    );
    assert_eq!(snap.op("ListMetrics"), OpStats { resets: 1, ..stats(1) });
    assert_eq!(snap.op("ListTables"), OpStats { resets: 1, ..stats(1) });
}
