//! Shared CloudWatch reads: the cutovers due at one tick share their GetMetricData calls (up to
//! [`QUERIES_PER_CALL`] queries each) and their DescribeAlarms calls (up to
//! [`ALARMS_PER_CALL`] names each).
//!
//! **Batching never changes what a judge sees.** Only requests for the same period, start and
//! end share a call ([`Span`]), so every query goes to CloudWatch exactly as it would alone,
//! with the same period, statistic, dimensions and time range; only its id is prefixed
//! (`q7_n_req`), and the answer is handed back under the id it was asked with. A cutover's
//! queries always travel in one call.
//!
//! One cutover's trouble stays its own:
//!
//! 1. a call that fails in a way one cutover's queries may have caused (an answer with an error
//!    code: a refused statistic, a validation error, access denied) is split in halves and each
//!    half asked again, down to single cutovers, so the error reaches the cutover whose queries
//!    caused it and the others get their data;
//! 2. a call that fails for everyone alike (throttling, `ServiceUnavailable`, a timeout, a lost
//!    connection) is not split, which would only multiply calls to a struggling API (one call of
//!    N requests became 2N − 1): everyone in it gets the error and holds its bake clock, as it
//!    always did.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{AlarmType, MetricDataQuery, ScanBy, StateValue};
use aws_smithy_types::DateTime;
use futures_util::future::BoxFuture;

use super::MetricsError;
use crate::aws::classify;
use crate::budget::coalesce::{Batch, Coalescer, Member, WINDOW};
use crate::budget::{self, Budget, Class, Lane};

/// GetMetricData takes at most 500 queries per call.
pub const QUERIES_PER_CALL: usize = 500;
/// DescribeAlarms takes at most 100 alarm names per call.
pub const ALARMS_PER_CALL: usize = 100;

/// Metrics requested from GetMetricData since the process started (each query of each call,
/// pages included), for `/metrics`: CloudWatch bills GetMetricData per metric requested, so
/// sharing calls saves calls, not money.
static METRICS_REQUESTED: AtomicU64 = AtomicU64::new(0);

/// See [`METRICS_REQUESTED`].
pub fn metrics_requested() -> u64 {
    METRICS_REQUESTED.load(Ordering::Relaxed)
}

/// The time range and period requests must share to share a call: `[from, to)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub period: u64,
    pub from: u64,
    pub to: u64,
}

/// The datapoints of each query id: `id → (timestamp → value)`.
pub type Series = HashMap<String, HashMap<u64, f64>>;

/// The states of alarms by name: `true` for ALARM. A name CloudWatch does not know is absent.
pub type AlarmStates = Arc<HashMap<String, bool>>;

/// The shared CloudWatch reads of one process.
#[derive(Debug)]
pub struct CloudWatchReads {
    data: Coalescer<MetricData>,
    alarms: Coalescer<DescribeAlarms>,
}

#[derive(Debug)]
struct MetricData {
    client: Client,
    budget: Arc<Budget>,
}

#[derive(Debug)]
struct DescribeAlarms {
    client: Client,
    budget: Arc<Budget>,
}

impl CloudWatchReads {
    pub fn new(client: Client) -> Arc<CloudWatchReads> {
        Self::with_budget(client, budget::global())
    }

    pub fn with_budget(client: Client, budget: Arc<Budget>) -> Arc<CloudWatchReads> {
        Arc::new(CloudWatchReads {
            data: Coalescer::new(
                MetricData {
                    client: client.clone(),
                    budget: budget.clone(),
                },
                WINDOW,
            ),
            alarms: Coalescer::new(DescribeAlarms { client, budget }, WINDOW),
        })
    }

    /// Counts an adapter among the readers of metric data.
    pub fn join_data(&self) -> Member {
        self.data.join()
    }

    /// Counts an adapter (one with alarms) among the readers of alarms.
    pub fn join_alarms(&self) -> Member {
        self.alarms.join()
    }

    /// The datapoints of `queries` over `span`, with the other requests for that span.
    pub async fn metric_data(&self, span: Span, queries: Vec<MetricDataQuery>) -> Result<Series, MetricsError> {
        self.data.submit(span, queries).await
    }

    /// The states of `names`, with the other requests of this tick.
    pub async fn alarms(&self, names: Vec<String>) -> Result<AlarmStates, MetricsError> {
        self.alarms.submit((), names).await
    }
}

impl MetricData {
    /// One GetMetricData call (every page) for a group of requests, their ids prefixed by their
    /// place in the group: each request's series under its own ids.
    async fn call(
        &self,
        span: Span,
        group: &[&Vec<MetricDataQuery>],
    ) -> Result<Vec<Result<Series, MetricsError>>, MetricsError> {
        let queries: Vec<MetricDataQuery> = group
            .iter()
            .enumerate()
            .flat_map(|(j, qs)| {
                qs.iter().map(move |q| {
                    let mut q = q.clone();
                    q.id = Some(format!("q{j}_{}", q.id.as_deref().unwrap_or_default()));
                    q
                })
            })
            .collect();
        let mut answers: Vec<Result<Series, MetricsError>> = group.iter().map(|_| Ok(Series::new())).collect();
        let mut token: Option<String> = None;
        loop {
            self.budget.acquire_in(Class::GetMetricData, Lane::Poll).await;
            METRICS_REQUESTED.fetch_add(queries.len() as u64, Ordering::Relaxed);
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_secs(span.from as i64))
                .end_time(DateTime::from_secs(span.to as i64))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| MetricsError::Aws(classify("GetMetricData", e)))?;
            for r in out.metric_data_results() {
                let full = r.id().unwrap_or_default();
                let Some((j, id)) = full
                    .strip_prefix('q')
                    .and_then(|rest| rest.split_once('_'))
                    .and_then(|(j, id)| Some((j.parse::<usize>().ok()?, id)))
                    .filter(|(j, _)| *j < group.len())
                else {
                    continue;
                };
                let Ok(series) = &mut answers[j] else { continue };
                if r.timestamps().len() != r.values().len() {
                    answers[j] = Err(MetricsError::Query {
                        id: id.to_string(),
                        message: "timestamps and values differ in length".into(),
                    });
                    continue;
                }
                let s = series.entry(id.to_string()).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    s.insert(t.secs().max(0) as u64, *v);
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(answers);
            }
        }
    }

    /// A group's answers: one call, or halves of it when it fails in a way one request may have
    /// caused ([`crate::aws::AwsError::may_be_one_request`]).
    fn answer<'a>(
        &'a self,
        span: Span,
        group: Vec<&'a Vec<MetricDataQuery>>,
    ) -> BoxFuture<'a, Vec<Result<Series, MetricsError>>> {
        Box::pin(async move {
            match self.call(span, &group).await {
                Ok(answers) => answers,
                Err(MetricsError::Aws(e)) if e.may_be_one_request() && group.len() > 1 => {
                    let right = group[group.len() / 2..].to_vec();
                    let left = group[..group.len() / 2].to_vec();
                    let (mut l, r) =
                        futures_util::future::join(self.answer(span, left), self.answer(span, right)).await;
                    l.extend(r);
                    l
                }
                Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
            }
        })
    }
}

impl Batch for MetricData {
    type Key = Span;
    type Request = Vec<MetricDataQuery>;
    type Response = Result<Series, MetricsError>;

    fn run(self: Arc<Self>, span: Span, requests: Vec<Self::Request>) -> BoxFuture<'static, Vec<Self::Response>> {
        Box::pin(async move {
            // Whole requests into calls of at most QUERIES_PER_CALL queries.
            let mut calls: Vec<Vec<&Vec<MetricDataQuery>>> = vec![];
            let mut size = 0;
            for r in &requests {
                if calls.is_empty() || size + r.len() > QUERIES_PER_CALL {
                    calls.push(vec![]);
                    size = 0;
                }
                calls.last_mut().expect("a call").push(r);
                size += r.len();
            }
            let answers = futures_util::future::join_all(calls.into_iter().map(|group| self.answer(span, group))).await;
            answers.into_iter().flatten().collect()
        })
    }

    fn abandoned() -> Self::Response {
        Err(MetricsError::Query {
            id: "*".into(),
            message: "the shared GetMetricData call was abandoned".into(),
        })
    }

    fn ready(self: Arc<Self>, _key: Span) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.budget.ready_in(Class::GetMetricData, Lane::Poll).await })
    }
}

impl DescribeAlarms {
    /// The states of `names` (at most [`ALARMS_PER_CALL`]), every page.
    async fn call(&self, names: &[String]) -> Result<HashMap<String, bool>, MetricsError> {
        let mut found = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            self.budget.acquire_in(Class::DescribeAlarms, Lane::Poll).await;
            let out = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(names.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| MetricsError::Aws(classify("DescribeAlarms", e)))?;
            for a in out.metric_alarms() {
                found.insert(
                    a.alarm_name().unwrap_or_default().to_string(),
                    a.state_value() == Some(&StateValue::Alarm),
                );
            }
            for a in out.composite_alarms() {
                found.insert(
                    a.alarm_name().unwrap_or_default().to_string(),
                    a.state_value() == Some(&StateValue::Alarm),
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    /// The states of every name the requests of `group` ask for, in chunks of
    /// [`ALARMS_PER_CALL`]; split by request when a call fails in a way one request may have caused.
    fn answer<'a>(&'a self, group: Vec<&'a Vec<String>>) -> BoxFuture<'a, Vec<Result<AlarmStates, MetricsError>>> {
        Box::pin(async move {
            let mut names: Vec<String> = group.iter().flat_map(|r| r.iter().cloned()).collect();
            names.sort();
            names.dedup();
            let calls = names.chunks(ALARMS_PER_CALL).map(|chunk| self.call(chunk));
            let mut states = HashMap::new();
            let mut failed = None;
            for r in futures_util::future::join_all(calls).await {
                match r {
                    Ok(found) => states.extend(found),
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                None => {
                    let states = Arc::new(states);
                    group.iter().map(|_| Ok(states.clone())).collect()
                }
                Some(MetricsError::Aws(e)) if e.may_be_one_request() && group.len() > 1 => {
                    let right = group[group.len() / 2..].to_vec();
                    let left = group[..group.len() / 2].to_vec();
                    let (mut l, r) = futures_util::future::join(self.answer(left), self.answer(right)).await;
                    l.extend(r);
                    l
                }
                Some(e) => group.iter().map(|_| Err(e.clone())).collect(),
            }
        })
    }
}

impl Batch for DescribeAlarms {
    type Key = ();
    type Request = Vec<String>;
    type Response = Result<AlarmStates, MetricsError>;

    fn run(self: Arc<Self>, _key: (), requests: Vec<Self::Request>) -> BoxFuture<'static, Vec<Self::Response>> {
        Box::pin(async move { self.answer(requests.iter().collect()).await })
    }

    fn abandoned() -> Self::Response {
        Err(MetricsError::Query {
            id: "*".into(),
            message: "the shared DescribeAlarms call was abandoned".into(),
        })
    }

    fn ready(self: Arc<Self>, _key: ()) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.budget.ready_in(Class::DescribeAlarms, Lane::Poll).await })
    }
}
