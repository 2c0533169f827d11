//! Shared AWS plumbing for the two adapters: SDK configuration (deadlines and
//! retries) and the classification of SDK errors into retryable or fatal.
//!
//! Only [`crate::traffic`] and [`crate::metrics`] call AWS; they build their
//! clients from [`load`] and turn every SDK error into an [`AwsError`] here.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Deadlines for every AWS call. An attempt that takes longer than
/// `ATTEMPT_TIMEOUT` is abandoned and retried; a call (all attempts) is
/// abandoned after `OPERATION_TIMEOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The SDK's standard retry mode with exponential backoff and jitter. Four
/// attempts ride out a burst of `Throttling` on the shared ELBv2 Modify budget
/// (refill 3/s) without holding a rollback back for long.
pub const MAX_ATTEMPTS: u32 = 4;

/// Loads the standard credential and region chain (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, instance roles…) with cutover's deadlines and retries.
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .load()
        .await
}

/// The deadlines above, as SDK configuration.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The retry policy above, as SDK configuration.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

/// An AWS call that failed after the SDK's own retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct AwsError {
    /// The API operation, e.g. `ModifyListener`.
    pub operation: &'static str,
    /// The service's error code, when it sent one (`Throttling`, `ListenerNotFound`…).
    pub code: Option<String>,
    pub message: String,
    /// Whether trying again later may succeed (throttling, timeouts, 5xx, network).
    pub retryable: bool,
    /// Whether AWS answered (an error response, with or without a code), as opposed to a
    /// timeout, a lost connection or a request never sent.
    pub answered: bool,
}

/// Error codes that mean "slow down": the account's rate for the API is spent.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "SlowDown",
];

/// Whether an error code says the caller is being throttled (not that anything is wrong with
/// the request): a batch of many cutovers' reads that is throttled fails for all of them alike.
pub fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

impl AwsError {
    /// Whether AWS refused the call for its rate.
    pub fn throttled(&self) -> bool {
        is_throttling(self.code.as_deref())
    }

    /// Whether one request of a batched call may have caused this failure, so that calling for
    /// fewer requests can tell which: an error answer (a bad ARN, a rule not found, a denied
    /// alarm, a statistic refused — moto refuses a percentile with a bare HTTP 500). Not
    /// throttling, `ServiceUnavailable`, a timeout or a lost connection, which fail every part
    /// alike: splitting on them turned one failed call of N requests into 2N − 1.
    pub fn may_be_one_request(&self) -> bool {
        self.answered && !self.throttled() && self.code.as_deref() != Some("ServiceUnavailable")
    }
}

/// Error codes that mean "slow down" or "try again", across ELBv2 and CloudWatch.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "LimitExceeded",
];

/// Classifies an SDK error: service errors by code and HTTP status, transport
/// failures and timeouts as retryable, request construction errors as fatal.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // The whole error, raw response included, only for whoever asked for debug logs: a log
    // line or a journaled reason gets the service's code and message, or the transport's chain.
    tracing::debug!("{operation}: {}", DisplayErrorContext(&err));
    let answered = matches!(err, SdkError::ServiceError(_));
    let (code, retryable, message) = match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_string);
            let status = se.raw().status();
            let retryable = code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c)) || status.is_server_error();
            let message = match (se.err().code(), se.err().message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                // A modeled error without the wire's code (or an unmodeled one): its own words.
                (None, _) => format!("{} (HTTP {})", chain(se.err()), status.as_u16()),
            };
            (code, retryable, message)
        }
        SdkError::TimeoutError(_) => (None, true, "timed out".to_string()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (None, true, chain(&err)),
        _ => (None, false, chain(&err)),
    };
    AwsError {
        operation,
        code,
        message,
        retryable,
        answered,
    }
}

/// An error and its causes on one line, each cause once.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Every AWS call and every failed one, by operation, since the process started (for `/metrics`),
/// and every throttled attempt, which also slows its class down in the [`crate::budget`].
pub mod calls {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use aws_smithy_runtime_api::client::interceptors::context::Error;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;

    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
    use aws_smithy_runtime_api::client::orchestrator::Metadata;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::config_bag::ConfigBag;

    /// `operation → (calls, errors)`.
    static COUNTS: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());

    /// `operation → throttled attempts` (each attempt of a call: the SDK retries throttling).
    static THROTTLES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

    /// A snapshot of the counters.
    pub fn snapshot() -> BTreeMap<String, (u64, u64)> {
        COUNTS.lock().unwrap().clone()
    }

    /// A snapshot of the throttled attempts by operation.
    pub fn throttles() -> BTreeMap<String, u64> {
        THROTTLES.lock().unwrap().clone()
    }

    /// The service's error code of a failed attempt, for the operations cutover calls.
    fn code_of(e: &Error) -> Option<String> {
        macro_rules! codes {
            ($($t:ty),* $(,)?) => {
                $(if let Some(e) = e.downcast_ref::<$t>() {
                    return e.code().map(str::to_string);
                })*
            };
        }
        use aws_sdk_cloudwatch::operation as cw;
        use aws_sdk_dynamodb::operation as ddb;
        use aws_sdk_elasticloadbalancingv2::operation as elb;
        codes!(
            elb::describe_rules::DescribeRulesError,
            elb::describe_listeners::DescribeListenersError,
            elb::describe_target_health::DescribeTargetHealthError,
            elb::modify_rule::ModifyRuleError,
            elb::modify_listener::ModifyListenerError,
            cw::get_metric_data::GetMetricDataError,
            cw::describe_alarms::DescribeAlarmsError,
            ddb::get_item::GetItemError,
            ddb::put_item::PutItemError,
            ddb::update_item::UpdateItemError,
            ddb::query::QueryError,
            ddb::transact_write_items::TransactWriteItemsError,
            ddb::describe_table::DescribeTableError,
            ddb::create_table::CreateTableError,
        );
        None
    }

    /// Counts each call (all its attempts as one) and whether it failed in the end.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Counter;

    impl Intercept for Counter {
        fn name(&self) -> &'static str {
            "cutover::aws::calls::Counter"
        }

        fn read_after_attempt(
            &self,
            context: &FinalizerInterceptorContextRef<'_>,
            _runtime_components: &RuntimeComponents,
            cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let Some(Err(e)) = context.output_or_error() else {
                return Ok(());
            };
            let code = e.as_operation_error().and_then(code_of);
            if !super::is_throttling(code.as_deref()) {
                return Ok(());
            }
            let (service, op) = cfg
                .load::<Metadata>()
                .map(|m| (m.service().to_string(), m.name().to_string()))
                .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
            if let Some(class) = crate::budget::Class::of(&service, &op) {
                crate::budget::global().throttled(class);
            }
            *THROTTLES.lock().unwrap().entry(op).or_default() += 1;
            Ok(())
        }

        fn read_after_execution(
            &self,
            context: &FinalizerInterceptorContextRef<'_>,
            _runtime_components: &RuntimeComponents,
            cfg: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let op = cfg
                .load::<Metadata>()
                .map(|m| m.name().to_string())
                .unwrap_or_else(|| "unknown".into());
            let failed = !matches!(context.output_or_error(), Some(Ok(_)));
            let mut counts = COUNTS.lock().unwrap();
            let entry = counts.entry(op).or_default();
            entry.0 += 1;
            if failed {
                entry.1 += 1;
            }
            Ok(())
        }
    }
}

/// The two clients, built from the shared configuration, with the call counter, and the shared
/// readers every adapter built from them reads through: one set per process, so the cutovers of
/// a daemon share their calls (a `cutover run` has a batch of one).
#[derive(Debug, Clone)]
pub struct Clients {
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub elb_reads: std::sync::Arc<crate::traffic::ElbReads>,
    pub cloudwatch_reads: std::sync::Arc<crate::metrics::CloudWatchReads>,
}

impl Clients {
    pub async fn load() -> Clients {
        Clients::from_conf(&load().await)
    }

    pub fn from_conf(conf: &SdkConfig) -> Clients {
        let elbv2 = aws_sdk_elasticloadbalancingv2::config::Builder::from(conf)
            .interceptor(calls::Counter)
            .build();
        let cloudwatch = aws_sdk_cloudwatch::config::Builder::from(conf)
            .interceptor(calls::Counter)
            .build();
        let elbv2 = aws_sdk_elasticloadbalancingv2::Client::from_conf(elbv2);
        let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(cloudwatch);
        Clients {
            elb_reads: crate::traffic::ElbReads::new(elbv2.clone()),
            cloudwatch_reads: crate::metrics::CloudWatchReads::new(cloudwatch.clone()),
            elbv2,
            cloudwatch,
        }
    }
}
