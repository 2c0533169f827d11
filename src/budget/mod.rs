//! The process's AWS API budget: one token bucket per API class, two lanes, and the coalescing
//! of reads that many cutovers make at the same tick.
//!
//! The ELBv2 budget (Describe refills 50 a second, Modify 3) is the account's and region's,
//! shared with every other tool; CloudWatch's and DynamoDB's limits are the account's too. So a
//! daemon driving hundreds of cutovers paces its own calls, well inside those limits, and backs
//! off further when AWS answers with throttling. The rules:
//!
//! 1. Every AWS call takes a token of its [`Class`] first ([`Budget::acquire`]); the SDK's
//!    retries of a call ride on that token (with the SDK's own backoff).
//! 2. A call runs in a [`Lane`]: [`Lane::Urgent`] for a rollback's writes and their read-back
//!    (the engine's restore and every operator rollback run inside [`urgently`]) and for the
//!    store's lease and journal writes; [`Lane::Poll`] for everything else. Urgent calls never
//!    wait behind polls: polls leave a reserve in every bucket, and stand aside while an
//!    urgent call waits (see [`bucket`]).
//! 3. Every throttled attempt (seen by [`crate::aws::calls::Counter`]) halves its class's rate
//!    for a while; it grows back a twentieth a second.
//! 4. Reads in the poll lane are coalesced ([`coalesce`]): the cutovers due at one tick share
//!    one GetMetricData, one DescribeAlarms and batched DescribeRules/DescribeListeners
//!    ([`crate::metrics`] and [`crate::traffic`] own those calls; this module only paces and
//!    gathers them).
//!
//! The limits are daemon-level: `cutover serve --budget CLASS=RATE[/BURST],…` (or
//! `CUTOVER_BUDGET`); every other command runs with [`BudgetConfig::default`].
//!
//! * `mod.rs` (this file): classes, lanes, the configuration and the process's [`Budget`];
//! * [`bucket`]: one class's token bucket, with AIMD;
//! * [`coalesce`]: the batcher that turns the requests of one tick into one call.

pub mod bucket;
pub mod coalesce;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

pub use bucket::{Bucket, BucketStats, Limit};

/// A class of AWS calls that shares one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// ModifyListener, ModifyRule.
    ElbModify,
    /// DescribeListeners, DescribeRules, DescribeTargetHealth.
    ElbDescribe,
    /// CloudWatch GetMetricData.
    GetMetricData,
    /// CloudWatch DescribeAlarms.
    DescribeAlarms,
    /// The DynamoDB store's calls (when `--store dynamodb://…`).
    Store,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::ElbModify,
        Class::ElbDescribe,
        Class::GetMetricData,
        Class::DescribeAlarms,
        Class::Store,
    ];

    /// The name in `--budget` and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::ElbModify => "elbv2-modify",
            Class::ElbDescribe => "elbv2-describe",
            Class::GetMetricData => "get-metric-data",
            Class::DescribeAlarms => "describe-alarms",
            Class::Store => "store",
        }
    }

    /// The class of an SDK operation, by the service that serves it and its name.
    pub fn of(service: &str, operation: &str) -> Option<Class> {
        let service = service.to_ascii_lowercase();
        if service.contains("dynamo") {
            return Some(Class::Store);
        }
        match operation {
            "ModifyListener" | "ModifyRule" => Some(Class::ElbModify),
            "DescribeListeners" | "DescribeRules" | "DescribeTargetHealth" => Some(Class::ElbDescribe),
            "GetMetricData" => Some(Class::GetMetricData),
            "DescribeAlarms" => Some(Class::DescribeAlarms),
            _ => None,
        }
    }

    /// The default limit, and why it is where it is.
    pub fn default_limit(self) -> Limit {
        match self {
            // AWS: 3 a second, burst 20, for the whole account and region. Two leave room for
            // every other tool; a rollback storm of 20 restores goes out in under 10 s.
            Class::ElbModify => Limit { rate: 2.0, burst: 10.0 },
            // AWS: 50 a second, burst 200. A fifth of it: batched, 500 cutovers polling every 15 s
            // need about two.
            Class::ElbDescribe => Limit {
                rate: 10.0,
                burst: 20.0,
            },
            // Coalesced, 500 cutovers with 15-second polls need well under one a second.
            Class::GetMetricData => Limit { rate: 5.0, burst: 10.0 },
            Class::DescribeAlarms => Limit { rate: 2.0, burst: 5.0 },
            // DynamoDB on demand has no per-call rate quota of this kind: this is cutover's own
            // ceiling, above what 500 cutovers need (leases, appends, one read a poll each).
            Class::Store => Limit {
                rate: 200.0,
                burst: 400.0,
            },
        }
    }
}

impl std::str::FromStr for Class {
    type Err = String;
    fn from_str(s: &str) -> Result<Class, String> {
        Class::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            format!(
                "unknown API class {s:?} (known: {})",
                Class::ALL.map(Class::as_str).join(", ")
            )
        })
    }
}

/// Which lane a call runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// A rollback's writes and read-back, the store's lease and journal writes: never behind a poll.
    Urgent,
    /// Polls, and every other call.
    Poll,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Poll => "poll",
        }
    }
}

tokio::task_local! {
    /// The lane of the calls the current task makes (unset: [`Lane::Poll`]).
    static LANE: Lane;
}

/// The lane of the calls made from here.
pub fn lane() -> Lane {
    LANE.try_with(|l| *l).unwrap_or(Lane::Poll)
}

/// Runs `f` with its AWS calls in the urgent lane: a rollback's restore and its read-back.
/// The lane is the task's, so it follows `f` through every adapter it calls without changing
/// their signatures; a read coalesced with other cutovers' never runs in it (urgent reads go
/// out on their own, at once).
pub async fn urgently<F: Future>(f: F) -> F::Output {
    LANE.scope(Lane::Urgent, f).await
}

/// The limits of every class: the defaults, with `--budget` overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    pub limits: BTreeMap<Class, Limit>,
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            limits: Class::ALL.into_iter().map(|c| (c, c.default_limit())).collect(),
        }
    }
}

impl BudgetConfig {
    /// The defaults with `spec`'s overrides: `CLASS=RATE[/BURST]`, comma-separated, e.g.
    /// `elbv2-describe=20,get-metric-data=2/4`. A rate without a burst keeps the burst at twice
    /// the rate (at least 1).
    pub fn parse(spec: &str) -> Result<BudgetConfig, String> {
        let mut config = BudgetConfig::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (class, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected CLASS=RATE[/BURST]"))?;
            let class: Class = class.trim().parse()?;
            let (rate, burst) = match value.split_once('/') {
                Some((r, b)) => (number(part, r)?, Some(number(part, b)?)),
                None => (number(part, value)?, None),
            };
            if !(0.01..=10_000.0).contains(&rate) {
                return Err(format!("{part:?}: the rate must be 0.01–10000 calls a second"));
            }
            let burst = burst.unwrap_or((rate * 2.0).max(1.0));
            if !(1.0..=100_000.0).contains(&burst) {
                return Err(format!("{part:?}: the burst must be 1–100000 calls"));
            }
            config.limits.insert(class, Limit { rate, burst });
        }
        Ok(config)
    }

    /// `class=rate/burst,…`, as the daemon logs it at start.
    pub fn describe(&self) -> String {
        self.limits
            .iter()
            .map(|(c, l)| format!("{}={}/{}", c.as_str(), l.rate, l.burst))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn number(part: &str, text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{part:?}: {text:?} is not a number"))
}

/// The token buckets of every class.
#[derive(Debug)]
pub struct Budget {
    buckets: BTreeMap<Class, Bucket>,
}

impl Budget {
    pub fn new(config: &BudgetConfig) -> Budget {
        Budget {
            buckets: Class::ALL
                .into_iter()
                .map(|c| {
                    let limit = config.limits.get(&c).copied().unwrap_or(c.default_limit());
                    (c, Bucket::new(limit))
                })
                .collect(),
        }
    }

    fn bucket(&self, class: Class) -> &Bucket {
        &self.buckets[&class]
    }

    /// Waits for a token of `class` in the current task's lane.
    pub async fn acquire(&self, class: Class) {
        self.acquire_in(class, lane()).await
    }

    pub async fn acquire_in(&self, class: Class, lane: Lane) {
        self.bucket(class).acquire(lane).await
    }

    /// Resolves once a call of `class` in `lane` would get a token at once, taking none.
    pub async fn ready_in(&self, class: Class, lane: Lane) {
        self.bucket(class).ready(lane).await
    }

    /// AWS throttled a call of `class`.
    pub fn throttled(&self, class: Class) {
        self.bucket(class).throttled()
    }

    /// Every class's limit and current rate, for `/metrics`.
    pub fn stats(&self) -> Vec<(Class, BucketStats)> {
        self.buckets.iter().map(|(c, b)| (*c, b.stats())).collect()
    }

    /// Every class's acquisitions and time waited, by lane, for `/metrics`.
    pub fn waits(&self) -> Vec<(Class, Lane, bucket::Waits)> {
        self.buckets
            .iter()
            .flat_map(|(c, b)| [Lane::Urgent, Lane::Poll].map(|l| (*c, l, b.waits(l))))
            .collect()
    }
}

static GLOBAL: OnceLock<Arc<Budget>> = OnceLock::new();

/// Sets the process's budget (the daemon, from `--budget`) before any AWS call is made. Returns
/// false when a budget was already in use: the first one stays.
pub fn install(config: &BudgetConfig) -> bool {
    GLOBAL.set(Arc::new(Budget::new(config))).is_ok()
}

/// The process's budget: the account's API budget is one per process, shared by every client
/// (and by the call counters' throttle feedback), so it is global like those counters.
pub fn global() -> Arc<Budget> {
    GLOBAL
        .get_or_init(|| Arc::new(Budget::new(&BudgetConfig::default())))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_flag_overrides_the_defaults_it_names() {
        let c = BudgetConfig::parse("elbv2-describe=20, get-metric-data=2/4").unwrap();
        assert_eq!(
            c.limits[&Class::ElbDescribe],
            Limit {
                rate: 20.0,
                burst: 40.0
            }
        );
        assert_eq!(c.limits[&Class::GetMetricData], Limit { rate: 2.0, burst: 4.0 });
        assert_eq!(c.limits[&Class::ElbModify], Class::ElbModify.default_limit());
        assert_eq!(BudgetConfig::parse("").unwrap(), BudgetConfig::default());
    }

    #[test]
    fn a_bad_budget_flag_says_what_is_wrong() {
        for (spec, says) in [
            ("elbv2-describ=1", "unknown API class"),
            ("elbv2-describe", "expected CLASS=RATE"),
            ("store=fast", "is not a number"),
            ("store=0", "the rate must be"),
            ("store=5/0", "the burst must be"),
            ("store=inf", "is not a number"),
        ] {
            let e = BudgetConfig::parse(spec).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn operations_fall_in_their_classes() {
        assert_eq!(
            Class::of("Elastic Load Balancing v2", "ModifyRule"),
            Some(Class::ElbModify)
        );
        assert_eq!(
            Class::of("Elastic Load Balancing v2", "DescribeRules"),
            Some(Class::ElbDescribe)
        );
        assert_eq!(Class::of("CloudWatch", "GetMetricData"), Some(Class::GetMetricData));
        assert_eq!(Class::of("DynamoDB", "Query"), Some(Class::Store));
        assert_eq!(Class::of("CloudWatch", "PutMetricData"), None);
    }

    #[tokio::test]
    async fn the_lane_follows_the_task_inside_urgently() {
        assert_eq!(lane(), Lane::Poll);
        assert_eq!(urgently(async { lane() }).await, Lane::Urgent);
        assert_eq!(lane(), Lane::Poll);
    }
}
