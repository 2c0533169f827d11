//! The fault proxy itself (`tests/support/fault_proxy.rs`), between the real AWS SDK clients
//! (ELBv2 and CloudWatch over the Query protocol, DynamoDB over awsJson 1.0) and a real moto
//! server: the faults the other tests inject must reach the SDK as the real services send them.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::fault_proxy::{FaultProxy, Faults, OpStats, OutageKind, Rule, UNKNOWN_OPERATION};
use crate::util::Moto;

const TABLE: &str = "fault-proxy-test";

/// No retries: every injected fault reaches the caller as is.
pub fn no_retries() -> RetryConfig {
    RetryConfig::disabled()
}

/// The SDK's standard mode with `attempts` attempts and a short backoff, so tests stay fast.
pub fn standard(attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(50))
}

/// SDK configuration for `endpoint` with test credentials and the given retries.
pub async fn sdk(endpoint: &str, retry: RetryConfig) -> SdkConfig {
    sdk_with_timeout(endpoint, retry, Duration::from_secs(10)).await
}

pub async fn sdk_with_timeout(endpoint: &str, retry: RetryConfig, attempt_timeout: Duration) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .load()
        .await
}

/// The three clients the tests use, from one configuration (so one connection pool).
pub struct Clients {
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cw: aws_sdk_cloudwatch::Client,
    pub ddb: aws_sdk_dynamodb::Client,
}

impl Clients {
    pub fn new(conf: &SdkConfig) -> Clients {
        Clients {
            elb: aws_sdk_elasticloadbalancingv2::Client::new(conf),
            cw: aws_sdk_cloudwatch::Client::new(conf),
            ddb: aws_sdk_dynamodb::Client::new(conf),
        }
    }
}

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Asserts a service error (an HTTP response the SDK parsed), with status, code and request id.
#[track_caller]
fn assert_service_error<E>(err: &SdkError<E>, status: u16, code: &str)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    assert!(
        matches!(err, SdkError::ServiceError(_)),
        "expected a service error, got {}",
        DisplayErrorContext(err)
    );
    assert_eq!(err.code(), Some(code), "code of {}", DisplayErrorContext(err));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(status));
    assert!(err.request_id().is_some_and(|id| !id.is_empty()), "no request id");
}

/// Asserts a transport failure: the SDK got no HTTP response at all.
#[track_caller]
fn assert_io_failure<E>(err: &SdkError<E>)
where
    E: std::error::Error + 'static,
{
    match err {
        SdkError::DispatchFailure(d) => assert!(d.is_io(), "not an I/O failure: {}", DisplayErrorContext(err)),
        other => panic!("expected a dispatch failure, got {}", DisplayErrorContext(other)),
    }
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client) {
    ddb.create_table()
        .table_name(TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

fn put_item(
    ddb: &aws_sdk_dynamodb::Client,
    pk: &str,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    ddb.put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S(pk.to_string()))
        .item("n", AttributeValue::N("1".to_string()))
}

fn get_metric_data(
    cw: &aws_sdk_cloudwatch::Client,
) -> aws_sdk_cloudwatch::operation::get_metric_data::builders::GetMetricDataFluentBuilder {
    let now = std::time::SystemTime::now();
    cw.get_metric_data()
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from(
            now - Duration::from_secs(600),
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from(now))
        .metric_data_queries(
            aws_sdk_cloudwatch::types::MetricDataQuery::builder()
                .id("q1")
                .metric_stat(
                    aws_sdk_cloudwatch::types::MetricStat::builder()
                        .metric(
                            aws_sdk_cloudwatch::types::Metric::builder()
                                .namespace("FaultProxy")
                                .metric_name("m")
                                .build(),
                        )
                        .period(60)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
}

/// One raw HTTP request through hyper's client: (status, headers, body).
async fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, HeaderMap, String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .expect("raw request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

const QUERY_FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
const ELB_AUTH: (&str, &str) = (
    "authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=0",
);
const DDB_AUTH: (&str, &str) = (
    "authorization",
    "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
);

fn stats(requests: u64) -> OpStats {
    OpStats {
        requests,
        ..OpStats::default()
    }
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

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
