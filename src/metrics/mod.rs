//! Metrics: CloudWatch windows of both colours, and alarm states.
//!
//! **Architecture Invariant:** this is the only module that talks to CloudWatch.
//! One GetMetricData request per poll fetches everything a step judges (requests,
//! 5xx and latency of the new colour, and of the live colour for the log), for
//! closed periods only: callers pass period-aligned bounds that ended at least
//! `settle` ago ([`settled_end`]). Error rates are computed from the raw counts,
//! never with metric math. The plan's `[[rollback.metrics]]` ride in the same
//! call ([`CloudWatch::with_custom`]); a backtest pages through history in calls
//! of [`CloudWatch::periods_per_call`] periods.
//!
//! * `mod.rs` (this file): the trait, the errors, and which periods may be judged;
//! * [`cloudwatch`]: the SDK implementation;
//! * [`shared`]: the reads of many cutovers in shared GetMetricData and DescribeAlarms calls.

mod cloudwatch;
pub mod shared;

pub use cloudwatch::CloudWatch;
pub use shared::CloudWatchReads;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aws::AwsError;
use crate::judge::Window;

/// The most periods fetched in one call; older ones are skipped (and logged by the engine).
pub const MAX_PERIODS_PER_CALL: u64 = 1440;
/// GetMetricData returns at most this many datapoints per call, over all its queries.
pub const MAX_DATAPOINTS_PER_CALL: u64 = 100_800;

/// Why a metrics operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    /// A CloudWatch call failed after the SDK's retries.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// CloudWatch answered, but not with usable data for a query.
    #[error("GetMetricData query {id}: {message}")]
    Query { id: String, message: String },
}

impl MetricsError {
    /// Whether trying again may succeed (throttling, 5xx, network), as opposed to an error
    /// that retrying cannot fix (access denied, a statistic CloudWatch refuses).
    pub fn retryable(&self) -> bool {
        matches!(self, MetricsError::Aws(e) if e.retryable)
    }
}

/// The plan's alarms, by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alarms {
    pub in_alarm: Vec<String>,
    /// Configured names that CloudWatch does not know: probably a typo, and then never able to fire.
    pub missing: Vec<String>,
}

/// What the engine needs from CloudWatch.
pub trait Metrics: Send + Sync {
    /// One [`Window`] per period in `[from, to)` (Unix seconds, period-aligned), oldest first.
    fn windows(&self, from: u64, to: u64) -> impl Future<Output = Result<Vec<Window>, MetricsError>> + Send;
    /// The states of the plan's alarms.
    fn alarms(&self) -> impl Future<Output = Result<Alarms, MetricsError>> + Send;
}

/// The newest period boundary at least `settle` before `now`: periods ending there or earlier are closed.
pub fn settled_end(now: SystemTime, settle: Duration, period: Duration) -> u64 {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let p = period.as_secs().max(1);
    now.saturating_sub(settle.as_secs()) / p * p
}

/// The first period boundary at or after `t`: the first period wholly at the new weights.
pub fn next_boundary(t: SystemTime, period: Duration) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let p = period.as_secs().max(1);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.div_ceil(p) * p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn only_settled_closed_periods_are_judged() {
        let min = Duration::from_secs(60);
        // At 10:05:30 with settle 2 min: periods up to 10:03 are closed and settled.
        assert_eq!(settled_end(at(36330, 0), Duration::from_secs(120), min), 36180);
        assert_eq!(
            settled_end(at(100, 500), Duration::from_secs(1), Duration::from_secs(1)),
            99
        );
    }

    #[test]
    fn windows_start_after_the_weights_changed() {
        let min = Duration::from_secs(60);
        assert_eq!(next_boundary(at(120, 0), min), 120);
        assert_eq!(next_boundary(at(120, 1), min), 180);
        assert_eq!(next_boundary(at(100, 250_000_000), Duration::from_secs(1)), 101);
    }
}
