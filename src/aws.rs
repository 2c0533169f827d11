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
    let message = format!("{}", DisplayErrorContext(&err));
    let (code, retryable) = match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().map(str::to_string);
            let retryable =
                code.as_deref().is_some_and(|c| RETRYABLE_CODES.contains(&c)) || se.raw().status().is_server_error();
            (code, retryable)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => (None, true),
        _ => (None, false),
    };
    AwsError {
        operation,
        code,
        message,
        retryable,
    }
}
