//! Metrics: CloudWatch windows of both colours, and alarm states.
//!
//! **Architecture Invariant:** this is the only module that talks to CloudWatch.
//! One GetMetricData call per poll fetches everything a step judges (requests,
//! 5xx and latency of the new colour, and of the live colour for the log), for
//! closed periods only: callers pass period-aligned bounds that ended at least
//! `settle` ago ([`settled_end`]). Error rates are computed from the raw counts,
//! never with metric math. The plan's `[[rollback.metrics]]` ride in the same
//! call ([`CloudWatch::with_custom`]); a backtest pages through history in calls
//! of [`CloudWatch::periods_per_call`] periods.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StandardUnit, StateValue,
};
use aws_smithy_types::DateTime;

use crate::aws::{AwsError, classify};
use crate::color::Color;
use crate::config::{self, CustomMetric, MetricsConfig, target_group_dimension};
use crate::judge::{MetricSample, Sample, Window};

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

/// The CloudWatch adapter for one cutover: fixed colours, dimensions and alarms.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    client: Client,
    namespace: String,
    period: Duration,
    statistic: String,
    load_balancer: String,
    new_tg: String,
    live_tg: String,
    alarm_names: Vec<String>,
    custom: Vec<Custom>,
}

/// A `[[rollback.metrics]]` entry with its dimensions resolved for both colours.
#[derive(Debug, Clone)]
struct Custom {
    metric: CustomMetric,
    new_dims: Vec<(String, String)>,
    /// Only with `compare_with_live`.
    live_dims: Option<Vec<(String, String)>>,
}

impl CloudWatch {
    pub fn new(
        client: Client,
        metrics: &MetricsConfig,
        alb: &config::Alb,
        new: Color,
        alarms: &[String],
    ) -> CloudWatch {
        CloudWatch {
            client,
            namespace: metrics.namespace.clone(),
            period: metrics.period,
            statistic: metrics.latency_statistic.clone(),
            load_balancer: alb.load_balancer_dimension(),
            new_tg: target_group_dimension(alb.target_group(new)),
            live_tg: target_group_dimension(alb.target_group(new.other())),
            alarm_names: alarms.to_vec(),
            custom: vec![],
        }
    }

    /// Also fetches the plan's `[[rollback.metrics]]` (`plan.rollback.metrics`), into [`Window::metrics`].
    pub fn with_custom(mut self, metrics: &[CustomMetric]) -> CloudWatch {
        self.custom = metrics
            .iter()
            .map(|m| Custom {
                metric: m.clone(),
                new_dims: m.dimensions_for(&self.load_balancer, &self.new_tg),
                live_dims: m
                    .compare_with_live
                    .then(|| m.dimensions_for(&self.load_balancer, &self.live_tg)),
            })
            .collect();
        self
    }

    /// How many periods one GetMetricData call may cover: CloudWatch returns at most
    /// 100,800 datapoints per call over all queries, and this adapter asks for at most 1440.
    pub fn periods_per_call(&self) -> u64 {
        let queries = self.queries().len() as u64;
        MAX_PERIODS_PER_CALL.min(MAX_DATAPOINTS_PER_CALL / queries.max(1))
    }

    fn query(&self, id: &str, tg: &str, metric: &str, stat: &str) -> MetricDataQuery {
        let dims = [
            ("LoadBalancer".to_string(), self.load_balancer.clone()),
            ("TargetGroup".to_string(), tg.to_string()),
        ];
        self.metric_query(id, &self.namespace, metric, &dims, stat, None)
    }

    fn metric_query(
        &self,
        id: &str,
        namespace: &str,
        metric: &str,
        dims: &[(String, String)],
        stat: &str,
        unit: Option<&str>,
    ) -> MetricDataQuery {
        let dims = dims
            .iter()
            .map(|(n, v)| Dimension::builder().name(n).value(v).build())
            .collect();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(namespace)
                            .metric_name(metric)
                            .set_dimensions(Some(dims))
                            .build(),
                    )
                    .period(self.period.as_secs() as i32)
                    .stat(stat)
                    .set_unit(unit.map(StandardUnit::from))
                    .build(),
            )
            .return_data(true)
            .build()
    }

    /// Every query of one call: requests, 5xx and latency of both colours, then each custom
    /// metric of the new colour (`m{i}_n`) and, when compared, of the live one (`m{i}_l`).
    fn queries(&self) -> Vec<MetricDataQuery> {
        let mut queries: Vec<MetricDataQuery> = [("n", &self.new_tg), ("l", &self.live_tg)]
            .into_iter()
            .flat_map(|(prefix, tg)| {
                [
                    self.query(&format!("{prefix}_req"), tg, "RequestCount", "Sum"),
                    self.query(&format!("{prefix}_err"), tg, "HTTPCode_Target_5XX_Count", "Sum"),
                    self.query(&format!("{prefix}_lat"), tg, "TargetResponseTime", &self.statistic),
                ]
            })
            .collect();
        for (i, c) in self.custom.iter().enumerate() {
            let m = &c.metric;
            let q = |id: String, dims: &[(String, String)]| {
                self.metric_query(&id, &m.namespace, &m.name, dims, &m.statistic, m.unit.as_deref())
            };
            queries.push(q(format!("m{i}_n"), &c.new_dims));
            if let Some(dims) = &c.live_dims {
                queries.push(q(format!("m{i}_l"), dims));
            }
        }
        queries
    }
}

impl Metrics for CloudWatch {
    async fn windows(&self, from: u64, to: u64) -> Result<Vec<Window>, MetricsError> {
        let p = self.period.as_secs().max(1);
        if to <= from {
            return Ok(vec![]);
        }
        let from = from.max(to.saturating_sub(self.periods_per_call() * p));
        let queries = self.queries();
        let mut series: HashMap<String, HashMap<u64, f64>> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_secs(from as i64))
                .end_time(DateTime::from_secs(to as i64))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("GetMetricData", e))?;
            for r in out.metric_data_results() {
                let id = r.id().unwrap_or_default().to_string();
                if r.timestamps().len() != r.values().len() {
                    return Err(MetricsError::Query {
                        id,
                        message: "timestamps and values differ in length".into(),
                    });
                }
                let s = series.entry(id).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    s.insert(t.secs().max(0) as u64, *v);
                }
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let get = |id: &str, t: u64| series.get(id).and_then(|s| s.get(&t)).copied();
        let sample = |prefix: &str, t: u64| Sample {
            // Count metrics are absent when zero.
            requests: get(&format!("{prefix}_req"), t).unwrap_or(0.0),
            errors: get(&format!("{prefix}_err"), t).unwrap_or(0.0),
            latency: get(&format!("{prefix}_lat"), t),
        };
        Ok((from..to)
            .step_by(p as usize)
            .map(|t| Window {
                start: t,
                end: t + p,
                new: sample("n", t),
                live: sample("l", t),
                metrics: (0..self.custom.len())
                    .map(|i| MetricSample {
                        new: get(&format!("m{i}_n"), t),
                        live: get(&format!("m{i}_l"), t),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn alarms(&self) -> Result<Alarms, MetricsError> {
        if self.alarm_names.is_empty() {
            return Ok(Alarms::default());
        }
        let mut found: HashMap<String, bool> = HashMap::new();
        // DescribeAlarms takes at most 100 names per call.
        for chunk in self.alarm_names.chunks(100) {
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify("DescribeAlarms", e))?;
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
                    break;
                }
            }
        }
        let mut alarms = Alarms::default();
        for name in &self.alarm_names {
            match found.get(name) {
                Some(true) => alarms.in_alarm.push(name.clone()),
                Some(false) => {}
                None => alarms.missing.push(name.clone()),
            }
        }
        Ok(alarms)
    }
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
