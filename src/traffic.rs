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

use std::future::Future;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple, TargetHealthStateEnum,
};
use backon::{ExponentialBuilder, Retryable};

use crate::aws::{AwsError, classify};
use crate::color::{Color, MAX_WEIGHT, Split};
use crate::config;

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

/// Writes `split` and reads it back until it matches, for at most `bound`.
///
/// Backoff while reading back: exponential from 50 ms, doubling, capped at 1 s,
/// with jitter; retryable AWS errors are retried the same way until the bound.
pub async fn set_and_verify<T: Traffic>(traffic: &T, split: Split, bound: Duration) -> Result<Split, TrafficError> {
    validate(split)?;
    let deadline = tokio::time::Instant::now() + bound;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times();
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

/// The ALB adapter: one listener's default action, or one rule's actions.
#[derive(Debug, Clone)]
pub struct Alb {
    client: Client,
    listener_arn: String,
    rule_arn: Option<String>,
    blue: String,
    green: String,
}

impl Alb {
    pub fn new(client: Client, alb: &config::Alb) -> Alb {
        Alb {
            client,
            listener_arn: alb.listener_arn.clone(),
            rule_arn: alb.rule_arn.clone(),
            blue: alb.blue_target_group_arn.clone(),
            green: alb.green_target_group_arn.clone(),
        }
    }

    fn what(&self) -> String {
        match &self.rule_arn {
            Some(rule) => format!("rule {rule}"),
            None => format!("listener {}", self.listener_arn),
        }
    }

    /// The listener's default actions or the rule's actions.
    async fn actions(&self) -> Result<Vec<Action>, TrafficError> {
        match &self.rule_arn {
            Some(rule) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(rule)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeRules", e))?;
                let rule = out
                    .rules()
                    .first()
                    .ok_or_else(|| TrafficError::Shape(format!("{} not found", self.what())))?;
                Ok(rule.actions().to_vec())
            }
            None => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(&self.listener_arn)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeListeners", e))?;
                let l = out
                    .listeners()
                    .first()
                    .ok_or_else(|| TrafficError::Shape(format!("{} not found", self.what())))?;
                Ok(l.default_actions().to_vec())
            }
        }
    }

    fn forward_index(&self, actions: &[Action]) -> Result<usize, TrafficError> {
        actions
            .iter()
            .position(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| TrafficError::Shape(format!("{} has no forward action", self.what())))
    }

    /// `(target group ARN, weight)` of a forward action, in either shape.
    fn tuples(action: &Action) -> Vec<(String, i32)> {
        match action.forward_config() {
            Some(fc) if !fc.target_groups().is_empty() => fc
                .target_groups()
                .iter()
                .map(|t| {
                    (
                        t.target_group_arn().unwrap_or_default().to_string(),
                        t.weight().unwrap_or(1),
                    )
                })
                .collect(),
            _ => action
                .target_group_arn()
                .map(|arn| vec![(arn.to_string(), 1)])
                .unwrap_or_default(),
        }
    }

    fn split_of(&self, action: &Action) -> Result<Split, TrafficError> {
        let mut split = Split {
            blue: 0,
            green: 0,
            others: 0,
        };
        let mut seen = false;
        for (arn, w) in Self::tuples(action) {
            if arn == self.blue {
                split.blue += w;
                seen = true;
            } else if arn == self.green {
                split.green += w;
                seen = true;
            } else {
                split.others += w;
            }
        }
        if !seen {
            return Err(TrafficError::Shape(format!(
                "{} forwards to neither the blue nor the green target group of the plan",
                self.what()
            )));
        }
        Ok(split)
    }
}

impl Traffic for Alb {
    async fn read(&self) -> Result<Split, TrafficError> {
        let actions = self.actions().await?;
        let i = self.forward_index(&actions)?;
        self.split_of(&actions[i])
    }

    async fn write(&self, split: Split) -> Result<(), TrafficError> {
        validate(split)?;
        let mut actions = self.actions().await?;
        let i = self.forward_index(&actions)?;
        let forward = &actions[i];
        // Keep other target groups and their weights; set blue and green.
        let mut tuples: Vec<(String, i32)> = Self::tuples(forward)
            .into_iter()
            .filter(|(arn, _)| *arn != self.blue && *arn != self.green)
            .collect();
        tuples.push((self.blue.clone(), split.blue));
        tuples.push((self.green.clone(), split.green));
        if tuples.len() > MAX_TARGET_GROUPS {
            return Err(TrafficError::Invalid(format!(
                "{} would forward to {} target groups; an ALB allows {MAX_TARGET_GROUPS}",
                self.what(),
                tuples.len()
            )));
        }
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(
                tuples
                    .into_iter()
                    .map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build())
                    .collect(),
            ))
            .set_target_group_stickiness_config(
                forward
                    .forward_config()
                    .and_then(|f| f.target_group_stickiness_config().cloned()),
            )
            .build();
        let mut new_forward = forward.clone();
        new_forward.target_group_arn = None;
        new_forward.forward_config = Some(config);
        actions[i] = new_forward;
        match &self.rule_arn {
            Some(rule) => {
                self.client
                    .modify_rule()
                    .rule_arn(rule)
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| classify("ModifyRule", e))?;
            }
            None => {
                self.client
                    .modify_listener()
                    .listener_arn(&self.listener_arn)
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| classify("ModifyListener", e))?;
            }
        }
        Ok(())
    }

    async fn healthy_targets(&self, color: Color) -> Result<u32, TrafficError> {
        let arn = match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        };
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetHealth", e))?;
        let healthy = out
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy))
            .count();
        Ok(healthy as u32)
    }
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
