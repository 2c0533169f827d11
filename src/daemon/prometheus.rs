//! `/metrics`: Prometheus text exposition, computed from the cutovers' states (so it
//! survives restarts), the process's AWS call and throttle counters, its API budget, its polls
//! and its notification counters.

use std::collections::BTreeMap;

use crate::color::Color;
use crate::saga::Outcome;
use crate::state::CutoverState;

/// The buckets of `cutover_rollback_duration_seconds`: a rollback is one Modify and a
/// read-back, well under a second on a healthy API, tens of seconds when throttled.
const ROLLBACK_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The buckets of `cutover_detection_seconds`: seconds with 1-second metrics, minutes with
/// ALB's 60-second ones (the newest minute settles for one to two).
const DETECTION_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// The outcomes and rollback triggers, every one exposed (as 0 until it happens) so that a
/// rate over them is defined from the start.
const OUTCOMES: [Outcome; 6] = [
    Outcome::Promoted,
    Outcome::RolledBack,
    Outcome::RolledBackByOperator,
    Outcome::NotStarted,
    Outcome::Unsafe,
    Outcome::Error,
];
const TRIGGERS: [&str; 7] = [
    "judge",
    "step",
    "operator",
    "interrupt",
    "stalled",
    "orphaned",
    "deadline",
];
const VERDICTS: [&str; 5] = ["pass", "fail", "inconclusive", "no_data", "shared_failure"];

/// Per service: outcomes, verdicts, rollbacks by trigger, the active count and the
/// observations of the two histograms.
#[derive(Default)]
struct PerService {
    outcomes: BTreeMap<&'static str, u64>,
    verdicts: BTreeMap<&'static str, u64>,
    rollbacks: BTreeMap<&'static str, u64>,
    active: u64,
    rollback_secs: Vec<f64>,
    detection_secs: Vec<f64>,
}

/// The exposition text for `states` and the AWS counters `calls` (`operation → (calls, errors)`).
///
/// Counters and histograms are labelled by `service`: a daemon drives many services' cutovers,
/// and a rollback rate is read per service. Shares of traffic are ratios (0–1), as Prometheus
/// names them (`_ratio`), not percentages.
pub(super) fn render(states: &[CutoverState], calls: &BTreeMap<String, (u64, u64)>, now: u64) -> String {
    let mut out = String::new();
    let mut services: BTreeMap<String, PerService> = BTreeMap::new();
    let mut weights = String::new();
    let mut lag = String::new();
    for c in states {
        let (id, service) = (escape(&c.summary.id), escape(&c.summary.service));
        let per = services.entry(service.clone()).or_default();
        for (v, n) in &c.verdicts {
            *per.verdicts.entry(v).or_default() += n;
        }
        if let Some(t) = c.rollback_trigger() {
            *per.rollbacks.entry(t.as_str()).or_default() += 1;
        }
        per.rollback_secs.extend(c.rollback_secs);
        per.detection_secs.extend(c.detection_secs);
        match c.outcome() {
            Some(o) => *per.outcomes.entry(o.as_str()).or_default() += 1,
            None => {
                per.active += 1;
                if let Some(split) = c.split {
                    for color in [Color::Blue, Color::Green] {
                        weights.push_str(&format!(
                            "cutover_weight_ratio{{id=\"{id}\",service=\"{service}\",color=\"{color}\"}} {}\n",
                            split.percent(color) / 100.0
                        ));
                    }
                }
                if let Some(end) = c.last_window_end {
                    lag.push_str(&format!(
                        "cutover_poll_lag_seconds{{id=\"{id}\",service=\"{service}\"}} {}\n",
                        now.saturating_sub(end)
                    ));
                }
            }
        }
    }
    out.push_str("# HELP cutover_build_info The running cutover's version.\n# TYPE cutover_build_info gauge\n");
    out.push_str(&format!(
        "cutover_build_info{{version=\"{}\"}} 1\n",
        escape(env!("CARGO_PKG_VERSION"))
    ));
    out.push_str(
        "# HELP cutover_journals Journals in the store, every one folded for this page and the list (see serve --retain).\n# TYPE cutover_journals gauge\n",
    );
    out.push_str(&format!("cutover_journals {}\n", states.len()));
    out.push_str(
        "# HELP cutover_cutovers_total Finished cutovers by service and outcome.\n# TYPE cutover_cutovers_total counter\n",
    );
    for (service, per) in &services {
        for o in OUTCOMES {
            out.push_str(&format!(
                "cutover_cutovers_total{{service=\"{service}\",outcome=\"{}\"}} {}\n",
                o.as_str(),
                per.outcomes.get(o.as_str()).copied().unwrap_or(0)
            ));
        }
    }
    out.push_str(
        "# HELP cutover_active_cutovers Cutovers not yet finished, by service.\n# TYPE cutover_active_cutovers gauge\n",
    );
    for (service, per) in &services {
        out.push_str(&format!(
            "cutover_active_cutovers{{service=\"{service}\"}} {}\n",
            per.active
        ));
    }
    out.push_str(
        "# HELP cutover_weight_ratio Verified share of traffic (0-1) of each colour of an unfinished cutover.\n# TYPE cutover_weight_ratio gauge\n",
    );
    out.push_str(&weights);
    out.push_str(
        "# HELP cutover_verdicts_total Judged windows by service and result.\n# TYPE cutover_verdicts_total counter\n",
    );
    for (service, per) in &services {
        for v in VERDICTS {
            out.push_str(&format!(
                "cutover_verdicts_total{{service=\"{service}\",result=\"{v}\"}} {}\n",
                per.verdicts.get(v).copied().unwrap_or(0)
            ));
        }
    }
    out.push_str(
        "# HELP cutover_rollbacks_total Rolled-back cutovers by service and trigger.\n# TYPE cutover_rollbacks_total counter\n",
    );
    for (service, per) in &services {
        for t in TRIGGERS {
            out.push_str(&format!(
                "cutover_rollbacks_total{{service=\"{service}\",trigger=\"{t}\"}} {}\n",
                per.rollbacks.get(t).copied().unwrap_or(0)
            ));
        }
    }
    out.push_str(
        "# HELP cutover_rollback_duration_seconds From the start of a rollback to traffic verified back on the live colour.\n# TYPE cutover_rollback_duration_seconds histogram\n",
    );
    for (service, per) in &services {
        histogram(
            &mut out,
            "cutover_rollback_duration_seconds",
            service,
            ROLLBACK_BUCKETS,
            &per.rollback_secs,
        );
    }
    out.push_str(
        "# HELP cutover_detection_seconds From the read-back of the shift whose bake failed to the judge's decision to roll back.\n# TYPE cutover_detection_seconds histogram\n",
    );
    for (service, per) in &services {
        histogram(
            &mut out,
            "cutover_detection_seconds",
            service,
            DETECTION_BUCKETS,
            &per.detection_secs,
        );
    }
    out.push_str("# HELP cutover_aws_calls_total AWS calls by operation.\n# TYPE cutover_aws_calls_total counter\n");
    for (op, (n, _)) in calls {
        out.push_str(&format!(
            "cutover_aws_calls_total{{operation=\"{}\"}} {n}\n",
            escape(op)
        ));
    }
    out.push_str(
        "# HELP cutover_aws_errors_total Failed AWS calls by operation.\n# TYPE cutover_aws_errors_total counter\n",
    );
    for (op, (_, e)) in calls {
        out.push_str(&format!(
            "cutover_aws_errors_total{{operation=\"{}\"}} {e}\n",
            escape(op)
        ));
    }
    out.push_str(
        "# HELP cutover_poll_lag_seconds Seconds between now and the end of the newest judged window.\n# TYPE cutover_poll_lag_seconds gauge\n",
    );
    out.push_str(&lag);
    out.push_str(&throttles(&crate::aws::calls::throttles()));
    out.push_str(&format!(
        "# HELP cutover_cloudwatch_metrics_requested_total Metrics requested from GetMetricData (what CloudWatch bills).\n# TYPE cutover_cloudwatch_metrics_requested_total counter\ncutover_cloudwatch_metrics_requested_total {}\n",
        crate::metrics::shared::metrics_requested()
    ));
    out.push_str(&budget(&crate::budget::global()));
    out.push_str(&polls(&crate::engine::pace::snapshot()));
    out.push_str(&notifications(&crate::notify::deliver::counts::snapshot()));
    out
}

/// One histogram's series for `service`: cumulative buckets, `+Inf`, `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, service: &str, buckets: &[f64], values: &[f64]) {
    for le in buckets {
        let n = values.iter().filter(|v| **v <= *le).count();
        out.push_str(&format!("{name}_bucket{{service=\"{service}\",le=\"{le}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "{name}_bucket{{service=\"{service}\",le=\"+Inf\"}} {}\n",
        values.len()
    ));
    out.push_str(&format!(
        "{name}_sum{{service=\"{service}\"}} {}\n",
        values.iter().sum::<f64>()
    ));
    out.push_str(&format!("{name}_count{{service=\"{service}\"}} {}\n", values.len()));
}

/// `cutover_aws_throttles_total{operation}`: attempts AWS answered with throttling (each attempt
/// of a call: the SDK retries them), from `operation → count`.
fn throttles(counts: &BTreeMap<String, u64>) -> String {
    let mut out = String::from(
        "# HELP cutover_aws_throttles_total AWS attempts answered with throttling, by operation.\n# TYPE cutover_aws_throttles_total counter\n",
    );
    for (op, n) in counts {
        out.push_str(&format!("cutover_aws_throttles_total{{operation=\"{op}\"}} {n}\n"));
    }
    out
}

/// The API budget: each class's configured and current rate (lower after throttling), and the
/// calls of each lane with the time they waited for a token.
fn budget(b: &crate::budget::Budget) -> String {
    let mut out = String::from(
        "# HELP cutover_budget_limit_per_second The configured calls a second of each API class.\n# TYPE cutover_budget_limit_per_second gauge\n",
    );
    let stats = b.stats();
    for (class, s) in &stats {
        out.push_str(&format!(
            "cutover_budget_limit_per_second{{class=\"{}\"}} {}\n",
            class.as_str(),
            s.limit.rate
        ));
    }
    out.push_str("# HELP cutover_budget_rate_per_second The calls a second each API class may make now (halved on throttling, growing back).\n# TYPE cutover_budget_rate_per_second gauge\n");
    for (class, s) in &stats {
        out.push_str(&format!(
            "cutover_budget_rate_per_second{{class=\"{}\"}} {}\n",
            class.as_str(),
            s.rate
        ));
    }
    let waits = b.waits();
    out.push_str("# HELP cutover_budget_calls_total Calls that took a token, by API class and lane (urgent: rollbacks and store writes).\n# TYPE cutover_budget_calls_total counter\n");
    for (class, lane, w) in &waits {
        out.push_str(&format!(
            "cutover_budget_calls_total{{class=\"{}\",lane=\"{}\"}} {}\n",
            class.as_str(),
            lane.as_str(),
            w.calls
        ));
    }
    out.push_str("# HELP cutover_budget_delayed_total Calls that found no token and waited, by API class and lane.\n# TYPE cutover_budget_delayed_total counter\n");
    for (class, lane, w) in &waits {
        out.push_str(&format!(
            "cutover_budget_delayed_total{{class=\"{}\",lane=\"{}\"}} {}\n",
            class.as_str(),
            lane.as_str(),
            w.delayed
        ));
    }
    out.push_str("# HELP cutover_budget_wait_seconds_total Time calls waited for a token, by API class and lane.\n# TYPE cutover_budget_wait_seconds_total counter\n");
    for (class, lane, w) in &waits {
        out.push_str(&format!(
            "cutover_budget_wait_seconds_total{{class=\"{}\",lane=\"{}\"}} {:.6}\n",
            class.as_str(),
            lane.as_str(),
            w.waited_secs
        ));
    }
    out
}

/// The polls of every bake: how many, how many missed their next tick, and the histogram of
/// their delay (from the tick to the reads answered and judged).
fn polls(p: &crate::engine::pace::Polls) -> String {
    use crate::engine::pace::DELAY_BUCKETS;
    let mut out =
        String::from("# HELP cutover_polls_total Polls of baking cutovers.\n# TYPE cutover_polls_total counter\n");
    out.push_str(&format!("cutover_polls_total {}\n", p.polls));
    out.push_str("# HELP cutover_polls_missed_total Polls that took a whole poll interval or more from their tick: the next tick passed unpolled.\n# TYPE cutover_polls_missed_total counter\n");
    out.push_str(&format!("cutover_polls_missed_total {}\n", p.missed));
    out.push_str("# HELP cutover_poll_delay_seconds From a poll's tick to its reads answered and judged.\n# TYPE cutover_poll_delay_seconds histogram\n");
    let mut cumulative = 0;
    for (i, le) in DELAY_BUCKETS.iter().enumerate() {
        cumulative += p.buckets[i];
        out.push_str(&format!(
            "cutover_poll_delay_seconds_bucket{{le=\"{le}\"}} {cumulative}\n"
        ));
    }
    cumulative += p.buckets[DELAY_BUCKETS.len()];
    out.push_str(&format!(
        "cutover_poll_delay_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n"
    ));
    out.push_str(&format!("cutover_poll_delay_seconds_sum {:.6}\n", p.delay_sum));
    out.push_str(&format!("cutover_poll_delay_seconds_count {}\n", p.polls));
    out.push_str("# HELP cutover_poll_delay_seconds_max The longest poll delay since the daemon started.\n# TYPE cutover_poll_delay_seconds_max gauge\n");
    out.push_str(&format!("cutover_poll_delay_seconds_max {:.6}\n", p.delay_max));
    out
}

/// `cutover_notifications_total{kind,result}` from `(kind, result) → count`: every delivery
/// since the process started, `delivered`, `failed` (all its attempts failed, or it was still
/// queued when the notifier had to stop) or `skipped` (its entry's URL or key was missing).
fn notifications(counts: &BTreeMap<(&'static str, &'static str), u64>) -> String {
    let mut out = String::from(
        "# HELP cutover_notifications_total Notifications by kind (slack, pagerduty, webhook) and result (delivered, failed, skipped).\n# TYPE cutover_notifications_total counter\n",
    );
    for ((kind, result), n) in counts {
        out.push_str(&format!(
            "cutover_notifications_total{{kind=\"{kind}\",result=\"{result}\"}} {n}\n"
        ));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::Split;
    use crate::journal::Record;
    use crate::saga::{Event, StepInfo, Trigger};

    fn at(secs: f64) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(1_800_000_000.0 + secs);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// A cutover of `service` shifted at 10 s, rolled back by `trigger` at `failed_at`, traffic
    /// back 0.4 s later.
    fn rolled_back(service: &str, trigger: Trigger, failed_at: f64) -> CutoverState {
        let record = |t: f64, event: Event| Record { at: at(t), event };
        let steps = vec![StepInfo {
            label: "shift 50%".into(),
            has_effects: true,
            has_undo: false,
        }];
        let half = Split::with_new(Color::Green, 500);
        CutoverState::fold(&[
            record(
                0.0,
                Event::Started {
                    id: format!("20270115T080000Z-{service}"),
                    service: service.into(),
                    plan: "p.toml".into(),
                    target_arn: format!("arn:{service}"),
                    live_color: Color::Blue,
                    new_color: Color::Green,
                    initial: Split::all_on(Color::Blue),
                    action: None,
                    steps,
                    pid: 1,
                    started_by: None,
                    vars: Default::default(),
                },
            ),
            record(1.0, Event::StepStarted { step: 0 }),
            record(2.0, Event::WeightIntent { step: 0, split: half }),
            record(
                10.0,
                Event::WeightVerified {
                    step: 0,
                    split: half,
                    elapsed_ms: 20,
                    action: None,
                },
            ),
            record(
                failed_at,
                Event::StepFailed {
                    step: 0,
                    trigger,
                    reason: "green error rate too high".into(),
                },
            ),
            record(
                failed_at + 0.4,
                Event::TrafficRestored {
                    split: Split::all_on(Color::Blue),
                },
            ),
            record(
                failed_at + 1.0,
                Event::Finished {
                    outcome: Outcome::RolledBack,
                    reason: "green error rate too high".into(),
                    final_split: Some(Split::all_on(Color::Blue)),
                },
            ),
        ])
    }

    /// Regression (issue 14.8): no service label, `_percent` for a share, no build_info, no
    /// histograms. The page is checked by a strict parser of the text exposition format (its
    /// grammar, one TYPE per family, histogram buckets cumulative and ending at `+Inf`).
    #[test]
    fn the_page_parses_strictly_with_service_labels_ratios_and_histograms() {
        let states = [
            rolled_back("checkout", Trigger::Judge, 70.0),
            rolled_back("search \"eu\"", Trigger::Judge, 40.0),
        ];
        assert_eq!(states[0].detection_secs, Some(60.0));
        assert_eq!(states[0].rollback_secs.map(|s| (s * 10.0).round()), Some(4.0));
        let calls = BTreeMap::from([("DescribeListeners".to_string(), (3u64, 1u64))]);
        let text = render(&states, &calls, 1_800_000_100);
        let page = openmetrics_parser::prometheus::parse_prometheus(&text)
            .unwrap_or_else(|e| panic!("not the text format ({e:?}):\n{text}"));
        let family = |name: &str| {
            page.families
                .get(name)
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        };
        use openmetrics_parser::{PrometheusType, PrometheusValue};
        assert_eq!(family("cutover_build_info").family_type, PrometheusType::Gauge);
        let outcomes = family("cutover_cutovers_total");
        assert_eq!(outcomes.family_type, PrometheusType::Counter);
        let rolled_back = outcomes
            .iter_samples()
            .find(|s| {
                let l = s.get_labelset().unwrap();
                l.get_label_value("service") == Some("checkout") && l.get_label_value("outcome") == Some("rolled_back")
            })
            .expect("checkout's rolled_back");
        assert!(matches!(&rolled_back.value, PrometheusValue::Counter(c) if c.value.as_f64() == 1.0));
        assert!(
            family("cutover_rollbacks_total")
                .get_label_names()
                .contains(&"service".to_string())
        );
        assert!(!text.contains("_percent"), "{text}");
        for name in ["cutover_rollback_duration_seconds", "cutover_detection_seconds"] {
            let h = family(name);
            assert_eq!(h.family_type, PrometheusType::Histogram, "{name}");
            let checkout = h
                .iter_samples()
                .find(|s| s.get_labelset().unwrap().get_label_value("service") == Some("checkout"))
                .unwrap();
            let PrometheusValue::Histogram(v) = &checkout.value else {
                panic!("{name} is not a histogram")
            };
            assert_eq!(v.count, Some(1), "{name}");
        }
        // Detection 60 s falls in the 60 s bucket, not the 30 s one.
        assert!(
            text.contains("cutover_detection_seconds_bucket{service=\"checkout\",le=\"30\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("cutover_detection_seconds_bucket{service=\"checkout\",le=\"60\"} 1\n"),
            "{text}"
        );
    }

    /// The parser is strict: a page it accepts is no proof unless it refuses a broken one (an
    /// unclosed label set, a histogram without `+Inf` or with buckets that are not cumulative, a
    /// value that is not a number, a bad label name, two TYPEs for one family).
    #[test]
    fn the_strict_parser_refuses_what_prometheus_would() {
        for bad in [
            "# TYPE x counter\nx{a=\"1\" 1\n",
            "# TYPE x histogram\nx_bucket{le=\"1\"} 1\nx_sum 1\nx_count 1\n",
            "# TYPE x histogram\nx_bucket{le=\"1\"} 2\nx_bucket{le=\"+Inf\"} 1\nx_sum 1\nx_count 1\n",
            "# TYPE x gauge\nx one\n",
            "# TYPE x gauge\nx{1a=\"b\"} 1\n",
            "# TYPE x gauge\n# TYPE x counter\nx 1\n",
        ] {
            assert!(
                openmetrics_parser::prometheus::parse_prometheus(bad).is_err(),
                "accepted: {bad}"
            );
        }
    }

    #[test]
    fn the_budget_and_the_polls_are_exposed_by_class_and_lane() {
        let text = budget(&crate::budget::Budget::new(&crate::budget::BudgetConfig::default()));
        for class in crate::budget::Class::ALL {
            let c = class.as_str();
            assert!(
                text.contains(&format!("cutover_budget_rate_per_second{{class=\"{c}\"}}")),
                "{text}"
            );
            for lane in ["urgent", "poll"] {
                assert!(
                    text.contains(&format!(
                        "cutover_budget_wait_seconds_total{{class=\"{c}\",lane=\"{lane}\"}}"
                    )),
                    "{text}"
                );
            }
        }
        let mut p = crate::engine::pace::Polls {
            polls: 3,
            ..Default::default()
        };
        p.buckets[0] = 2;
        p.buckets[crate::engine::pace::DELAY_BUCKETS.len()] = 1;
        let text = polls(&p);
        assert!(
            text.contains("cutover_poll_delay_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("cutover_poll_delay_seconds_bucket{le=\"60\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("cutover_poll_delay_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        let text = throttles(&BTreeMap::from([("DescribeRules".to_string(), 4)]));
        assert!(
            text.contains("cutover_aws_throttles_total{operation=\"DescribeRules\"} 4\n"),
            "{text}"
        );
    }

    #[test]
    fn notification_counters_have_every_kind_and_result() {
        let mut counts = crate::notify::deliver::counts::snapshot();
        counts.insert(("webhook", "delivered"), 3);
        let text = notifications(&counts);
        assert!(text.contains("# TYPE cutover_notifications_total counter\n"), "{text}");
        assert!(
            text.contains("cutover_notifications_total{kind=\"webhook\",result=\"delivered\"} 3\n"),
            "{text}"
        );
        for kind in ["slack", "pagerduty", "webhook"] {
            for result in ["delivered", "failed", "skipped"] {
                assert!(
                    text.contains(&format!("{{kind=\"{kind}\",result=\"{result}\"}}")),
                    "{kind} {result}: {text}"
                );
            }
        }
    }
}
