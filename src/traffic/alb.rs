//! The ALB adapter: reads and writes the weights of one forward action (a listener's default
//! action or a rule's), in either of its two shapes, and counts healthy targets.

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple, TargetHealthStateEnum,
};

use std::sync::{Arc, Mutex};

use aws_sdk_elasticloadbalancingv2::types::TargetGroupStickinessConfig;

use super::shared::{ElbReads, Target};
use super::{ActionSnapshot, MAX_TARGET_GROUPS, Traffic, TrafficError, validate};
use crate::aws::classify;
use crate::budget::Class;
use crate::budget::coalesce::Member;
use crate::color::{Color, Split};
use crate::config;

/// The ALB adapter: one listener's default action, or one rule's actions.
#[derive(Debug, Clone)]
pub struct Alb {
    client: Client,
    listener_arn: String,
    rule_arn: Option<String>,
    blue: String,
    green: String,
    /// The actions as last read (by any clone): what a write without reading first rewrites.
    last: Arc<Mutex<Option<Vec<Action>>>>,
    /// Where the weights are read: with the other adapters of the process.
    reads: Arc<ElbReads>,
    _member: Arc<Member>,
}

impl Alb {
    /// An adapter reading on its own (a batch of one).
    pub fn new(client: Client, alb: &config::Alb) -> Alb {
        let reads = ElbReads::new(client.clone());
        Alb::shared(client, &reads, alb)
    }

    /// An adapter whose reads share calls with the other adapters of `reads`.
    pub fn shared(client: Client, reads: &Arc<ElbReads>, alb: &config::Alb) -> Alb {
        Alb {
            client,
            listener_arn: alb.listener_arn.clone(),
            rule_arn: alb.rule_arn.clone(),
            blue: alb.blue_target_group_arn.clone(),
            green: alb.green_target_group_arn.clone(),
            last: Arc::new(Mutex::new(None)),
            _member: Arc::new(reads.join()),
            reads: reads.clone(),
        }
    }

    fn what(&self) -> String {
        match &self.rule_arn {
            Some(rule) => format!("rule {rule}"),
            None => format!("listener {}", self.listener_arn),
        }
    }

    /// The listener's default actions or the rule's actions, remembered for [`Traffic::write_known`].
    async fn actions(&self) -> Result<Vec<Action>, TrafficError> {
        let actions = self.describe().await?;
        *self.last.lock().unwrap() = Some(actions.clone());
        Ok(actions)
    }

    async fn describe(&self) -> Result<Vec<Action>, TrafficError> {
        let (target, arn) = match &self.rule_arn {
            Some(rule) => (Target::Rule, rule),
            None => (Target::Listener, &self.listener_arn),
        };
        self.reads
            .read(target, arn)
            .await?
            .ok_or_else(|| TrafficError::Shape(format!("{} not found", self.what())))
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
        let actions = self.actions().await?;
        self.modify(split, actions).await
    }

    async fn write_known(&self, split: Split, known: Option<&ActionSnapshot>) -> Result<(), TrafficError> {
        validate(split)?;
        let remembered = self.last.lock().unwrap().clone();
        let actions = match (remembered, known) {
            (Some(actions), _) => actions,
            (None, Some(k)) if k.alone => vec![Self::action_of(k)],
            // Nothing known that can be written blind: read first.
            (None, _) => self.actions().await?,
        };
        self.modify(split, actions).await
    }

    fn snapshot(&self) -> Option<ActionSnapshot> {
        let actions = self.last.lock().unwrap().clone()?;
        let i = self.forward_index(&actions).ok()?;
        let forward = &actions[i];
        let stickiness = forward
            .forward_config()
            .and_then(|f| f.target_group_stickiness_config())
            .map(|s| (s.enabled().unwrap_or(false), s.duration_seconds()));
        Some(ActionSnapshot {
            target_groups: Self::tuples(forward),
            stickiness,
            order: forward.order(),
            alone: actions.len() == 1,
        })
    }

    async fn healthy_targets(&self, color: Color) -> Result<u32, TrafficError> {
        let arn = match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        };
        self.reads.budget().acquire(Class::ElbDescribe).await;
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

impl Alb {
    /// A forward action rebuilt from a snapshot.
    fn action_of(k: &ActionSnapshot) -> Action {
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(
                k.target_groups
                    .iter()
                    .map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(arn).weight(*w).build())
                    .collect(),
            ))
            .set_target_group_stickiness_config(k.stickiness.map(|(enabled, duration)| {
                TargetGroupStickinessConfig::builder()
                    .enabled(enabled)
                    .set_duration_seconds(duration)
                    .build()
            }))
            .build();
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .set_order(k.order)
            .forward_config(config)
            .build()
    }

    /// Rewrites the forward action of `actions` with `split` and sends one Modify call.
    async fn modify(&self, split: Split, mut actions: Vec<Action>) -> Result<(), TrafficError> {
        let i = self.forward_index(&actions)?;
        let forward = &actions[i];
        // Other target groups stay in the action; with `others == 0` they get weight 0 (a restore
        // puts all of the action's traffic on the live colour), otherwise they keep theirs.
        let mut tuples: Vec<(String, i32)> = Self::tuples(forward)
            .into_iter()
            .filter(|(arn, _)| *arn != self.blue && *arn != self.green)
            .map(|(arn, w)| (arn, if split.others == 0 { 0 } else { w }))
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
        self.reads.budget().acquire(Class::ElbModify).await;
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
}
