//! Traffic: the ALB forward action's weights and the target groups' health.
//!
//! **Architecture Invariant:** this is the only module that talks to ELBv2.
//! Weights are written as one ModifyListener (or ModifyRule) that keeps the rest
//! of the action as it was (stickiness, other actions), and every write is followed
//! by a read-back of the whole forward action ([`set_and_verify`]): callers start a
//! bake clock only after it returns. A split whose `others` is 0 sets every other
//! target group of the forward action to weight 0 (keeping it in the action): a
//! restore puts all of the action's traffic on the live colour, not just more of it.
//!
//! A rollback must not wait for a read: [`set_and_verify`] given a known action (an
//! [`ActionSnapshot`], journaled after every read-back) writes from it with one Modify
//! and reads back afterwards, so a throttled or failing Describe delays only the
//! confirmation, not the traffic.
//!
//! The [`Traffic`] trait is what the engine uses; [`Alb`] implements it over
//! the SDK and the unit tests implement it in memory.
//!
//! * `mod.rs` (this file): the trait, the errors, and [`set_and_verify`];
//! * [`alb`]: the SDK implementation over a listener's default action or a rule;
//! * [`shared`]: the weight reads of many cutovers in batched Describe calls.

mod alb;
pub mod shared;

pub use alb::Alb;
pub use shared::ElbReads;

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};

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
    /// The writer's lease is gone: another process owns the traffic now.
    #[error("not written: this process no longer holds the lease of the listener or rule")]
    NotOwner,
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

/// A forward action as it was last read: enough to write weights without reading first.
/// Journaled (`Started`, `WeightVerified`), so another process can use it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSnapshot {
    /// The forward action's target groups, in order, with their weights.
    pub target_groups: Vec<(String, i32)>,
    /// Target group stickiness: enabled, and its duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<(bool, Option<i32>)>,
    /// The action's `Order`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i32>,
    /// Whether the forward action is the listener's (rule's) only action: only then can the
    /// actions be rebuilt from this snapshot alone, in a process that never read them.
    pub alone: bool,
}

/// What the engine needs from the load balancer.
pub trait Traffic: Send + Sync {
    /// The current weights of the forward action.
    fn read(&self) -> impl Future<Output = Result<Split, TrafficError>> + Send;
    /// Writes the weights of blue and green with one Modify call after reading the actions,
    /// keeping everything else; with `split.others == 0`, every other target group of the
    /// forward action gets weight 0.
    fn write(&self, split: Split) -> impl Future<Output = Result<(), TrafficError>> + Send;
    /// Writes like [`Traffic::write`] without reading first: from the actions this adapter read
    /// last, or else from `known` (when it is the only action). Falls back to a read-then-write
    /// when neither is there.
    fn write_known(
        &self,
        split: Split,
        known: Option<&ActionSnapshot>,
    ) -> impl Future<Output = Result<(), TrafficError>> + Send;
    /// The forward action as this adapter last read it (to journal after a read-back).
    fn snapshot(&self) -> Option<ActionSnapshot>;
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

/// How a write finds the actions it rewrites.
#[derive(Debug, Clone, Copy)]
pub enum Writing<'a> {
    /// Read the actions, then write (every forward shift: never overwrite what is there).
    AfterRead,
    /// Write from what is known without reading first (a restore: traffic must not wait).
    FromKnown(Option<&'a ActionSnapshot>),
}

/// A `may_write` for writers without a lease to lose (an operator's `--to`, tests).
pub const ALWAYS: &(dyn Fn() -> bool + Sync) = &|| true;

/// Writes `split` and reads the whole forward action back until it matches (blue, green and
/// the other target groups), for at most `bound`, backing off with [`READ_BACK`]; retryable
/// AWS errors are retried the same way until the bound. `may_write` is asked before every
/// write attempt: an owner whose lease ran out must not write, even in the middle of retries.
pub async fn set_and_verify<T: Traffic>(
    traffic: &T,
    split: Split,
    bound: Duration,
    writing: Writing<'_>,
    may_write: &(dyn Fn() -> bool + Sync),
) -> Result<Split, TrafficError> {
    validate(split)?;
    let deadline = tokio::time::Instant::now() + bound;
    let backoff = READ_BACK;
    let before_deadline = |e: &TrafficError| {
        tokio::time::Instant::now() < deadline && (e.retryable() || matches!(e, TrafficError::NotVerified { .. }))
    };
    (|| async {
        if !may_write() {
            return Err(TrafficError::NotOwner);
        }
        match writing {
            Writing::AfterRead => traffic.write(split).await,
            Writing::FromKnown(known) => traffic.write_known(split, known).await,
        }
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(before_deadline)
    .await?;
    (|| async {
        let read = traffic.read().await?;
        if (read.blue, read.green, read.others) == (split.blue, split.green, split.others) {
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
