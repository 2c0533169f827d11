//! The CloudWatch adapter: every query a step judges in one GetMetricData request per poll,
//! and DescribeAlarms for the plan's alarms, both through the process's shared readers
//! ([`super::shared`]), which put the requests of many cutovers into the same calls.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit};

use super::shared::{CloudWatchReads, Span};
use super::{Alarms, MAX_DATAPOINTS_PER_CALL, MAX_PERIODS_PER_CALL, Metrics, MetricsError};
use crate::budget::coalesce::Member;
use crate::color::Color;
use crate::config::{self, CustomMetric, MetricsConfig, target_group_dimension};
use crate::judge::{MetricSample, Sample, Window};

/// The CloudWatch adapter for one cutover: fixed colours, dimensions and alarms.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    reads: Arc<CloudWatchReads>,
    /// This adapter's membership of the shared readers (alarms: only with alarms to read).
    _members: Arc<(Member, Option<Member>)>,
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
    /// An adapter reading on its own (a batch of one).
    pub fn new(
        client: Client,
        metrics: &MetricsConfig,
        alb: &config::Alb,
        new: Color,
        alarms: &[String],
    ) -> CloudWatch {
        CloudWatch::shared(&CloudWatchReads::new(client), metrics, alb, new, alarms)
    }

    /// An adapter whose reads share calls with the other adapters of `reads`.
    pub fn shared(
        reads: &Arc<CloudWatchReads>,
        metrics: &MetricsConfig,
        alb: &config::Alb,
        new: Color,
        alarms: &[String],
    ) -> CloudWatch {
        CloudWatch {
            _members: Arc::new((reads.join_data(), (!alarms.is_empty()).then(|| reads.join_alarms()))),
            reads: reads.clone(),
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
        let span = Span { period: p, from, to };
        let series = self.reads.metric_data(span, self.queries()).await?;
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
        let found = self.reads.alarms(self.alarm_names.clone()).await?;
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
