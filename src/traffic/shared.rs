//! Shared weight reads: the listeners and rules that many cutovers read at one tick, in
//! batched DescribeListeners and DescribeRules calls.
//!
//! A poll's read joins the others of its tick ([`crate::budget::coalesce`]); the batch asks
//! for up to [`ARNS_PER_CALL`] ARNs a call, every call paced by the budget's Describe class.
//! The rules that keep one cutover's trouble its own:
//!
//! 1. AWS fails a whole call when one ARN in it is unknown (`RuleNotFound`, `ListenerNotFound`):
//!    such a call, or one refused in any other way an ARN may have caused, is made again ARN by
//!    ARN, so the error reaches the cutover it belongs to and the others get their actions.
//! 2. A call that fails for everyone alike (throttling, `ServiceUnavailable`, a timeout) is not split (that
//!    would only add calls to a struggling API): every cutover in it gets the error, which they
//!    retry as they always did.
//! 3. An urgent read (a rollback's read-back, [`crate::budget::Lane::Urgent`]) never joins a
//!    batch: it goes out alone, at once, in the urgent lane.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::Action;
use futures_util::future::BoxFuture;

use super::TrafficError;
use crate::aws::{AwsError, classify};
use crate::budget::coalesce::{Batch, Coalescer, Member, WINDOW};
use crate::budget::{self, Budget, Class, Lane};

/// ARNs per DescribeRules or DescribeListeners call. AWS documents no maximum for `RuleArns`
/// or `ListenerArns` (results page at up to 400); ELBv2's other ARN lists (DescribeTags) take
/// 20, so 20 stays inside whatever the service enforces: 500 cutovers are 25 calls a tick.
pub const ARNS_PER_CALL: usize = 20;

/// What a weight read asks for: a listener's default actions, or a rule's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Listener,
    Rule,
}

impl Target {
    fn operation(self) -> &'static str {
        match self {
            Target::Listener => "DescribeListeners",
            Target::Rule => "DescribeRules",
        }
    }
}

/// The actions of one ARN: `None` when AWS answered without it.
pub type Read = Result<Option<Vec<Action>>, TrafficError>;

/// The batched reads of one process's ELBv2 client.
#[derive(Debug)]
pub struct ElbReads {
    coalescer: Coalescer<Describe>,
}

#[derive(Debug)]
struct Describe {
    client: Client,
    budget: Arc<Budget>,
}

impl ElbReads {
    /// Shared reads through `client`, paced by the process's budget.
    pub fn new(client: Client) -> Arc<ElbReads> {
        Self::with_budget(client, budget::global())
    }

    pub fn with_budget(client: Client, budget: Arc<Budget>) -> Arc<ElbReads> {
        Arc::new(ElbReads {
            coalescer: Coalescer::new(Describe { client, budget }, WINDOW),
        })
    }

    /// The budget its calls are paced by (the adapter's other calls use it too).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.coalescer.batch().budget
    }

    /// Counts an adapter among those whose reads are awaited before a batch goes.
    pub fn join(&self) -> Member {
        self.coalescer.join()
    }

    /// The actions of `arn`: with the others of this tick in the poll lane, alone in the urgent one.
    pub async fn read(&self, target: Target, arn: &str) -> Read {
        match budget::lane() {
            Lane::Urgent => {
                let d = self.coalescer.batch();
                d.budget.acquire_in(Class::ElbDescribe, Lane::Urgent).await;
                let chunk = [arn.to_string()];
                d.call(target, &chunk)
                    .await
                    .map(|mut found| found.remove(arn))
                    .map_err(TrafficError::Aws)
            }
            Lane::Poll => self.coalescer.submit(target, arn.to_string()).await,
        }
    }
}

impl Describe {
    /// One call for `arns` (every page): their actions by ARN.
    async fn call(&self, target: Target, arns: &[String]) -> Result<HashMap<String, Vec<Action>>, AwsError> {
        let mut found = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let next = match target {
                Target::Rule => {
                    let out = self
                        .client
                        .describe_rules()
                        .set_rule_arns(Some(arns.to_vec()))
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| classify("DescribeRules", e))?;
                    for r in out.rules() {
                        found.insert(r.rule_arn().unwrap_or_default().to_string(), r.actions().to_vec());
                    }
                    out.next_marker().map(str::to_string)
                }
                Target::Listener => {
                    let out = self
                        .client
                        .describe_listeners()
                        .set_listener_arns(Some(arns.to_vec()))
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| classify("DescribeListeners", e))?;
                    for l in out.listeners() {
                        found.insert(
                            l.listener_arn().unwrap_or_default().to_string(),
                            l.default_actions().to_vec(),
                        );
                    }
                    out.next_marker().map(str::to_string)
                }
            };
            match next {
                Some(m) => {
                    marker = Some(m);
                    self.budget.acquire_in(Class::ElbDescribe, Lane::Poll).await;
                }
                None => return Ok(found),
            }
        }
    }

    /// One chunk of a batch: one call, or, when it fails in a way one ARN may have caused (not
    /// throttling, `ServiceUnavailable` or a timeout), one call per ARN (see the module doc).
    async fn chunk(&self, target: Target, arns: Vec<String>) -> HashMap<String, Read> {
        self.budget.acquire_in(Class::ElbDescribe, Lane::Poll).await;
        let e = match self.call(target, &arns).await {
            Ok(mut found) => return arns.into_iter().map(|a| (a.clone(), Ok(found.remove(&a)))).collect(),
            Err(e) => e,
        };
        if !e.may_be_one_request() || arns.len() == 1 {
            return arns
                .into_iter()
                .map(|a| (a, Err(TrafficError::Aws(e.clone()))))
                .collect();
        }
        tracing::debug!(
            "{}: a call for {} ARNs failed ({e}); reading them one by one",
            target.operation(),
            arns.len()
        );
        let singles = arns.into_iter().map(|arn| async move {
            self.budget.acquire_in(Class::ElbDescribe, Lane::Poll).await;
            let read = self
                .call(target, std::slice::from_ref(&arn))
                .await
                .map(|mut found| found.remove(&arn))
                .map_err(TrafficError::Aws);
            (arn, read)
        });
        futures_util::future::join_all(singles).await.into_iter().collect()
    }
}

impl Batch for Describe {
    type Key = Target;
    type Request = String;
    type Response = Read;

    fn run(self: Arc<Self>, target: Target, arns: Vec<String>) -> BoxFuture<'static, Vec<Read>> {
        Box::pin(async move {
            let mut unique: Vec<String> = arns.clone();
            unique.sort();
            unique.dedup();
            let chunks = unique.chunks(ARNS_PER_CALL).map(|c| self.chunk(target, c.to_vec()));
            let mut reads: HashMap<String, Read> = HashMap::new();
            for part in futures_util::future::join_all(chunks).await {
                reads.extend(part);
            }
            arns.iter().map(|a| reads.get(a).cloned().unwrap_or(Ok(None))).collect()
        })
    }

    fn abandoned() -> Read {
        Err(TrafficError::Shape("the shared weight read was abandoned".into()))
    }

    fn ready(self: Arc<Self>, _key: Target) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.budget.ready_in(Class::ElbDescribe, Lane::Poll).await })
    }
}
