//! The CloudWatch adapter: one GetMetricData call per poll for everything a step judges,
//! and DescribeAlarms for the plan's alarms.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StandardUnit, StateValue,
};
use aws_smithy_types::DateTime;

use super::{Alarms, MAX_DATAPOINTS_PER_CALL, MAX_PERIODS_PER_CALL, Metrics, MetricsError};
use crate::aws::classify;
use crate::color::Color;
use crate::config::{self, CustomMetric, MetricsConfig, target_group_dimension};
use crate::judge::{MetricSample, Sample, Window};

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
