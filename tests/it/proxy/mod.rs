//! The fault proxy itself (`tests/support/fault_proxy/`), between the real AWS SDK clients
//! (ELBv2 and CloudWatch over the Query protocol, DynamoDB over awsJson 1.0) and a real moto
//! server: the faults the other tests inject must reach the SDK as the real services send them.
//!
//! Its files: `passthrough` (no faults: moto's own answers, kept-alive connections, moto's API,
//! concurrency, the proxy on its own thread), `errors` (throttles, 5xx and resets as each
//! protocol's SDK sees them, byte for byte), `retries` (the SDK retrying injected faults),
//! `rules` (operation filters, windows, delays) and `outages` (refused, blackholed, resetting).
//! What they share is here: the SDK configurations and clients, request builders, raw HTTP, and
//! the assertions on service errors and transport failures.

mod errors;
mod outages;
mod passthrough;
mod retries;
mod rules;

use std::time::Duration;

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

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::fault_proxy::OpStats;

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

fn stats(requests: u64) -> OpStats {
    OpStats {
        requests,
        ..OpStats::default()
    }
}
