//! `/metrics`: Prometheus text exposition, computed from the cutovers' states (so it
//! survives restarts), the process's AWS call and throttle counters, its API budget, its polls
//! and its notification counters.

use std::collections::BTreeMap;

use crate::color::Color;
use crate::saga::Outcome;
use crate::state::CutoverState;

/// The exposition text for `states` and the AWS counters `calls` (`operation → (calls, errors)`).
pub(super) fn render(states: &[CutoverState], calls: &BTreeMap<String, (u64, u64)>, now: u64) -> String {
    let mut out = String::new();
    let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut verdicts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rollbacks: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut active = 0u64;
    let mut weights = String::new();
    let mut lag = String::new();
    for c in states {
        let (id, service) = (&c.summary.id, escape(&c.summary.service));
        for (v, n) in &c.verdicts {
            *verdicts.entry(v).or_default() += n;
        }
        if let Some(t) = c.rollback_trigger() {
            *rollbacks.entry(t.as_str()).or_default() += 1;
        }
        match c.outcome() {
            Some(o) => *by_outcome.entry(o.as_str()).or_default() += 1,
            None => {
                active += 1;
                if let Some(split) = c.split {
                    for color in [Color::Blue, Color::Green] {
                        weights.push_str(&format!(
                            "cutover_weight_percent{{id=\"{id}\",service=\"{service}\",color=\"{color}\"}} {}\n",
                            split.percent(color)
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
    out.push_str("# HELP cutover_cutovers_total Cutovers by outcome.\n# TYPE cutover_cutovers_total counter\n");
    for o in [
        Outcome::Promoted,
        Outcome::RolledBack,
        Outcome::RolledBackByOperator,
        Outcome::NotStarted,
        Outcome::Unsafe,
        Outcome::Error,
    ] {
        out.push_str(&format!(
            "cutover_cutovers_total{{outcome=\"{}\"}} {}\n",
            o.as_str(),
            by_outcome.get(o.as_str()).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_active_cutovers Cutovers not yet finished.\n# TYPE cutover_active_cutovers gauge\n");
    out.push_str(&format!("cutover_active_cutovers {active}\n"));
    out.push_str(
        "# HELP cutover_weight_percent Current verified share of each colour.\n# TYPE cutover_weight_percent gauge\n",
    );
    out.push_str(&weights);
    out.push_str("# HELP cutover_verdicts_total Judged windows by result.\n# TYPE cutover_verdicts_total counter\n");
    for v in ["pass", "fail", "inconclusive", "no_data", "shared_failure"] {
        out.push_str(&format!(
            "cutover_verdicts_total{{result=\"{v}\"}} {}\n",
            verdicts.get(v).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_rollbacks_total Rollbacks by trigger.\n# TYPE cutover_rollbacks_total counter\n");
    for t in ["judge", "step", "operator", "interrupt", "stalled", "orphaned"] {
        out.push_str(&format!(
            "cutover_rollbacks_total{{trigger=\"{t}\"}} {}\n",
            rollbacks.get(t).copied().unwrap_or(0)
        ));
    }
    out.push_str("# HELP cutover_aws_calls_total AWS calls by operation.\n# TYPE cutover_aws_calls_total counter\n");
    for (op, (n, _)) in calls {
        out.push_str(&format!("cutover_aws_calls_total{{operation=\"{op}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP cutover_aws_errors_total Failed AWS calls by operation.\n# TYPE cutover_aws_errors_total counter\n",
    );
    for (op, (_, e)) in calls {
        out.push_str(&format!("cutover_aws_errors_total{{operation=\"{op}\"}} {e}\n"));
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
