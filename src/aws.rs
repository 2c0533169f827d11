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

/// How long a command may wait on AWS before it says what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A cutover or a rollback in flight: ride out a slow or throttled API with the deadlines
    /// above (`run`, `rollback`, `serve`).
    Driving,
    /// Someone waiting at a terminal for an answer (`status`, `backtest`, `store init`): the
    /// `INTERACTIVE_*` deadlines, so an unreachable or hung endpoint is an error within seconds.
    Interactive,
}

/// The deadlines of [`Patience::Interactive`]: a refused or black-holed endpoint fails the
/// connect in a second, a hung one the attempt in three, and a call gives up after five (two
/// attempts). A healthy Describe answers in well under a second.
pub const INTERACTIVE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const INTERACTIVE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
pub const INTERACTIVE_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
pub const INTERACTIVE_MAX_ATTEMPTS: u32 = 2;

/// Loads the standard credential and region chain (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, instance roles…) with cutover's deadlines and retries, and no region
/// of the plan's to fall back on (see [`load_for`]).
pub async fn load() -> SdkConfig {
    load_for(None, Patience::Driving).await
}

/// Loads the SDK configuration for calls on resources in `arn_region` (the region every ARN of
/// the plan names), with the deadlines of `patience`.
///
/// The region, in order:
///
/// 1. `AWS_REGION` (or `AWS_DEFAULT_REGION`), then the profile's `region`: the environment says
///    otherwise, so it wins; when it differs from `arn_region` this warns, because the ARNs are
///    then looked for where they do not exist;
/// 2. `arn_region`: ARNs carry their region, so a plan needs no `AWS_REGION`;
/// 3. only without either, the instance metadata service (IMDS), which an EC2 instance answers.
///
/// The region in use is remembered for the hints of [`classify`].
pub async fn load_for(arn_region: Option<&str>, patience: Patience) -> SdkConfig {
    use aws_config::meta::region::RegionProviderChain;
    let from_env = RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .or_else(aws_config::profile::ProfileFileRegionProvider::new())
        .region()
        .await;
    let region = match (from_env, arn_region) {
        (Some(env), Some(arn)) => {
            if env.as_ref() != arn {
                tracing::warn!(
                    "the environment (AWS_REGION or the profile) says region {env}, but the plan's ARNs are in {arn}: \
                     calls go to {env}, where those ARNs do not exist; unset AWS_REGION to use {arn}"
                );
            }
            Some(env)
        }
        (Some(env), None) => Some(env),
        (None, Some(arn)) => Some(aws_config::Region::new(arn.to_string())),
        (None, None) => RegionProviderChain::default_provider().region().await,
    };
    if let Some(r) = &region {
        *REGION.lock().unwrap() = Some(r.to_string());
    }
    let (timeouts, retries) = match patience {
        Patience::Driving => (timeout_config(), retry_config()),
        Patience::Interactive => (
            TimeoutConfig::builder()
                .connect_timeout(INTERACTIVE_CONNECT_TIMEOUT)
                .operation_attempt_timeout(INTERACTIVE_ATTEMPT_TIMEOUT)
                .operation_timeout(INTERACTIVE_OPERATION_TIMEOUT)
                .build(),
            RetryConfig::standard().with_max_attempts(INTERACTIVE_MAX_ATTEMPTS),
        ),
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(r) = region {
        loader = loader.region(r);
    }
    loader.load().await
}

/// The region the process's clients call, once [`load_for`] has run (for hints).
static REGION: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The region of an ARN (`arn:aws:SERVICE:REGION:ACCOUNT:…`), when it names one.
pub fn arn_region(arn: &str) -> Option<&str> {
    let region = arn.split(':').nth(3)?;
    (!region.is_empty()).then_some(region)
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
    // The credential chain lists every provider it tried, one clause each (six on a laptop):
    // that list is for CUTOVER_LOG=debug, the line says what is missing.
    let message = match message.find("no credentials found in chain") {
        Some(_) => "no credentials found in the credential chain".to_string(),
        None => message,
    };
    let message = match hint(operation, code.as_deref(), &message, REGION.lock().unwrap().as_deref()) {
        Some(h) => format!("{message} ({h})"),
        None => message,
    };
    AwsError {
        operation,
        code,
        message,
        retryable,
        answered,
    }
}

/// The likely cause of a common error, in words that say what to check: the credentials, the
/// policy, the ARN and its region, the endpoint. `region` is where the calls went.
fn hint(operation: &str, code: Option<&str>, message: &str, region: Option<&str>) -> Option<String> {
    let policy = "deploy/iam-policy.json lists what cutover needs";
    match code {
        Some(
            "ListenerNotFound"
            | "RuleNotFound"
            | "TargetGroupNotFound"
            | "LoadBalancerNotFound"
            | "ResourceNotFoundException",
        ) if operation != "DescribeTable" => Some(match region {
            Some(r) => format!(
                "check the ARN in the plan, and that it is in {r}, the region the calls went to \
                 (AWS_REGION or the profile overrides the ARN's region)"
            ),
            None => "check the ARN in the plan and the region".into(),
        }),
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError") => {
            Some(format!("the credentials in use may not call {operation}: {policy}"))
        }
        Some(
            "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidSignatureException"
            | "AuthFailure",
        ) => Some(
            "the AWS credentials are wrong or expired: check AWS_PROFILE or AWS_ACCESS_KEY_ID, or log in again".into(),
        ),
        None if message.contains("loading credentials") || message.contains("no credentials") => Some(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             or run where an instance or task role is"
                .into(),
        ),
        None if message == "timed out" || message.contains("dispatch failure") || message.contains("connect") => {
            Some(match std::env::var("AWS_ENDPOINT_URL") {
                Ok(url) if !url.is_empty() => format!("is AWS_ENDPOINT_URL={url} reachable?"),
                _ => format!(
                    "cannot reach AWS in {}: check the network, a proxy, or the region",
                    region.unwrap_or("the configured region")
                ),
            })
        }
        _ => None,
    }
}

/// An error and its causes on one line, each cause once (a cause that spans lines, such as
/// the credential chain's list of providers it tried, is joined with `; `).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_carry_their_region() {
        let arn =
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2";
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        assert_eq!(arn_region("arn:aws:iam::123456789012:role/x"), None);
        assert_eq!(arn_region("not an arn"), None);
    }

    /// Regression (issue 14.1): common errors said nothing of their likely cause.
    #[test]
    fn common_errors_hint_at_their_cause() {
        let hint = |op, code, msg| hint(op, code, msg, Some("us-west-2")).unwrap_or_default();
        assert!(hint("DescribeListeners", Some("ListenerNotFound"), "").contains("us-west-2"));
        assert!(hint("ModifyListener", Some("AccessDenied"), "").contains("deploy/iam-policy.json"));
        assert!(hint("DescribeListeners", Some("ExpiredToken"), "").contains("expired"));
        assert!(
            hint(
                "DescribeListeners",
                None,
                "dispatch failure: other: no credentials found in chain"
            )
            .contains("no AWS credentials found")
        );
        assert!(hint("GetMetricData", None, "timed out").contains("reach"));
        // A missing table is the store's to explain (it names `cutover store init`).
        assert_eq!(hint("DescribeTable", Some("ResourceNotFoundException"), ""), "");
        assert_eq!(hint("DescribeListeners", Some("ValidationError"), "bad"), "");
    }
}

/// Every AWS call and every failed one, by operation, since the process started (for `/metrics`),
/// and every throttled attempt, which also slows its class down in the [`crate::budget`].
///
/// With `CUTOVER_AWS_CALL_LOG=FILE` (or [`calls::log_to`]), each service's operation is also appended
/// to FILE, once per process, as `SERVICE:Operation` (`CloudWatch:GetMetricData`): the
/// integration tests collect them, and a test then checks that `deploy/iam-policy.json` grants
/// exactly those (see `tests/iam_policy.rs`).
pub mod calls {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};

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

    /// Where this process logs the operations it calls: [`log_to`]'s file, else
    /// `CUTOVER_AWS_CALL_LOG`'s, else nowhere.
    static LOG: OnceLock<Option<PathBuf>> = OnceLock::new();

    /// The `SERVICE:Operation`s logged so far by this process.
    static LOGGED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    /// Logs this process's operations to `file` (for an in-process caller, such as the tests'
    /// harness, that cannot set its own environment). The first setting wins.
    pub fn log_to(file: PathBuf) {
        let _ = LOG.set(Some(file));
    }

    /// Appends `SERVICE:Operation` to the log the first time this process calls it. One
    /// `write` of one short line to an `O_APPEND` file: lines of processes writing at once do
    /// not interleave. A log that cannot be written is no reason to fail an AWS call.
    fn log(service: &str, operation: &str) {
        let Some(file) = LOG.get_or_init(|| std::env::var_os("CUTOVER_AWS_CALL_LOG").map(PathBuf::from)) else {
            return;
        };
        let line = format!("{service}:{operation}");
        if !LOGGED.lock().unwrap().insert(line.clone()) {
            return;
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
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
            let (service, op) = cfg
                .load::<Metadata>()
                .map(|m| (m.service().to_string(), m.name().to_string()))
                .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
            log(&service, &op);
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
    /// The HTTP clients, one of each per process (see [`HttpClients`]).
    pub http: HttpClients,
}

/// The HTTP clients of a process, built once and shared by all its cutovers. A client holds
/// its TLS roots (the system's certificates, parsed when it is built) and a TLS session cache:
/// about 80 KiB, so a client per cutover and use cost a daemon with 500 cutovers some 40 MiB
/// of its 125 MiB (measured with heaptrack, issue 12's `deploy/local/bench-daemon.sh`).
#[derive(Debug, Clone)]
pub struct HttpClients {
    /// HTTP hooks' checks ([`crate::hooks::http_client`]).
    pub hooks: reqwest::Client,
    /// Notifications ([`crate::notify::deliver::client`]), or why the client could not be
    /// built: notifications are then off, with a warning for each cutover that has some.
    pub notify: Result<reqwest::Client, String>,
}

impl HttpClients {
    pub fn new() -> HttpClients {
        HttpClients {
            hooks: crate::hooks::http_client(),
            notify: crate::notify::deliver::client().map_err(|e| e.to_string()),
        }
    }
}

impl Default for HttpClients {
    fn default() -> HttpClients {
        HttpClients::new()
    }
}

impl Clients {
    /// The clients of a process whose plans are in `arn_region` (see [`load_for`]).
    pub async fn load(arn_region: Option<&str>, patience: Patience) -> Clients {
        Clients::from_conf(&load_for(arn_region, patience).await)
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
            http: HttpClients::new(),
        }
    }
}
