//! Traffic: the ALB forward action's weights and the target groups' health.
//!
//! **Architecture Invariant:** this is the only module that talks to ELBv2.
//! Weights are written as one ModifyListener (or ModifyRule) that keeps the rest
//! of the action as it was (stickiness, other target groups, other actions), and
//! every write is followed by a read-back ([`set_and_verify`]): callers start a
//! bake clock only after it returns.
//!
//! The [`Traffic`] trait is what the engine uses; [`Alb`] implements it over
//! the SDK and the unit tests implement it in memory.

//!
//! * `mod.rs` (this file): the trait, the errors, and [`set_and_verify`];
//! * [`alb`]: the SDK implementation over a listener's default action or a rule.

mod alb;

pub use alb::Alb;

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::aws::AwsError;
use crate::color::{Color, MAX_WEIGHT, Split};

/// The most target groups one forward action may hold.
pub const MAX_TARGET_GROUPS: usize = 5;

/// Why a traffic operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrafficError {
    /// An ELBv2 call failed after the SDK's retries.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The listener or rule does not forward the way the plan says.
    #[error("{0}")]
    Shape(String),
    /// The weights to write are outside what an ALB accepts.
    #[error("invalid weights: {0}")]
    Invalid(String),
    /// The weights did not read back as written within the bound.
    #[error("weights did not read back as written within {bound:?}: wrote {wrote}, read {read}")]
    NotVerified { wrote: Split, read: Split, bound: Duration },
}

impl TrafficError {
    /// Whether trying again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, TrafficError::Aws(e) if e.retryable)
    }
}

/// What the engine needs from the load balancer.
pub trait Traffic: Send + Sync {
    /// The current weights of the forward action.
    fn read(&self) -> impl Future<Output = Result<Split, TrafficError>> + Send;
    /// Writes the weights of blue and green with one Modify call, keeping everything else.
    fn write(&self, split: Split) -> impl Future<Output = Result<(), TrafficError>> + Send;
    /// How many targets of a colour's target group are healthy.
    fn healthy_targets(&self, color: Color) -> impl Future<Output = Result<u32, TrafficError>> + Send;
}

/// The read-back policy: after a write, and between retries of a retryable error, wait
/// 50 ms, then double each time up to 1 s, with jitter so that many cutovers do not retry
/// in step; no limit on the number of tries, because the caller's `bound` (the plan's
/// `alb.verify_timeout`, 30 s by default) is the limit. A weight change usually shows within
/// a few hundred milliseconds, so the first tries are quick; a throttled API gets at most
/// one call a second from each cutover.
pub const READ_BACK: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(1))
    .with_jitter()
    .without_max_times();

/// Writes `split` and reads it back until it matches, for at most `bound`, backing off
/// with [`READ_BACK`]; retryable AWS errors are retried the same way until the bound.
pub async fn set_and_verify<T: Traffic>(traffic: &T, split: Split, bound: Duration) -> Result<Split, TrafficError> {
    validate(split)?;
    let deadline = tokio::time::Instant::now() + bound;
    let backoff = READ_BACK;
    let before_deadline = |e: &TrafficError| {
        tokio::time::Instant::now() < deadline && (e.retryable() || matches!(e, TrafficError::NotVerified { .. }))
    };
    (|| traffic.write(split))
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(before_deadline)
        .await?;
    (|| async {
        let read = traffic.read().await?;
        if read.blue == split.blue && read.green == split.green {
            Ok(read)
        } else {
            Err(TrafficError::NotVerified {
                wrote: split,
                read,
                bound,
            })
        }
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(before_deadline)
    .await
}

/// Rejects weights an ALB would refuse (moto accepts anything, so the product checks).
pub fn validate(split: Split) -> Result<(), TrafficError> {
    for (name, w) in [("blue", split.blue), ("green", split.green)] {
        if !(0..=MAX_WEIGHT).contains(&w) {
            return Err(TrafficError::Invalid(format!(
                "{name} weight {w} is outside 0–{MAX_WEIGHT}"
            )));
        }
    }
    if split.blue + split.green + split.others <= 0 {
        return Err(TrafficError::Invalid(
            "every weight is zero: the ALB would send traffic nowhere".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_use_the_alb_scale() {
        assert_eq!(
            Split::with_new(Color::Green, 500),
            Split {
                blue: 500,
                green: 500,
                others: 0
            }
        );
        assert_eq!(
            Split::with_new(Color::Green, 1000),
            Split {
                blue: 0,
                green: 999,
                others: 0
            }
        );
        assert_eq!(
            Split::with_new(Color::Blue, 1),
            Split {
                blue: 1,
                green: 999,
                others: 0
            }
        );
        assert_eq!(
            Split::all_on(Color::Blue),
            Split {
                blue: 999,
                green: 0,
                others: 0
            }
        );
        assert_eq!(Split::with_new(Color::Green, 999).percent(Color::Green), 99.9);
        assert_eq!(Split::all_on(Color::Green).holder(), Some(Color::Green));
        assert_eq!(
            Split {
                blue: 1,
                green: 1,
                others: 0
            }
            .holder(),
            None
        );
        assert_eq!(
            Split {
                blue: 1,
                green: 0,
                others: 3
            }
            .holder(),
            None
        );
    }

    #[test]
    fn invalid_weights_are_refused() {
        assert!(
            validate(Split {
                blue: 1000,
                green: 0,
                others: 0
            })
            .is_err()
        );
        assert!(
            validate(Split {
                blue: -1,
                green: 5,
                others: 0
            })
            .is_err()
        );
        assert!(
            validate(Split {
                blue: 0,
                green: 0,
                others: 0
            })
            .is_err()
        );
        assert!(
            validate(Split {
                blue: 0,
                green: 999,
                others: 0
            })
            .is_ok()
        );
    }
}
