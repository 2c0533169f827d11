//! `/metrics`: Prometheus text exposition, computed from the cutovers' states (so it
//! survives restarts), the process's AWS call counters and its notification counters.

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
    out.push_str(&notifications(&crate::notify::deliver::counts::snapshot()));
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
