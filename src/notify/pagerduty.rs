//! PagerDuty Events API v2 (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>):
//! `trigger` and `resolve` events, one alert per cutover (`dedup_key` `cutover-<id>`). Pure.
//!
//! A trigger carries `routing_key`, `event_action`, `dedup_key` and `payload` with `summary`
//! (the title and reason, at most 1024 characters), `source` (the service), `severity`
//! (`critical` for unsafe, `error` for an automatic rollback, a stall or an error, `warning` for
//! an operator's rollback, a drift, an approval asked for or refused, an adoption; `info` for
//! the rest), `timestamp` (the journal record's), `component` (the new colour's target group),
//! `group` (the load balancer), `class` (the event name) and `custom_details` (the numbers:
//! error rates and counts, latency, weights, trigger, step, who). With a `report_url`, also
//! `client`, `client_url` and `links`. A resolve carries only `routing_key`, `event_action` and
//! `dedup_key`, as the API asks.

use serde_json::{Map, Value, json};

use super::fold::Change;
use super::words::{self, truncate};
use crate::color::Color;
use crate::config::notify::{EventName, REPORT_ID};

/// The API's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;

/// `payload.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// The severity an event pages with.
    pub fn of(name: EventName) -> Severity {
        match name {
            EventName::Unsafe => Severity::Critical,
            EventName::RolledBack | EventName::Stalled | EventName::Error => Severity::Error,
            EventName::RolledBackByOperator
            | EventName::Drift
            | EventName::ApprovalNeeded
            | EventName::Rejected
            | EventName::Adopted => Severity::Warning,
            EventName::Started
            | EventName::StepDone
            | EventName::Approved
            | EventName::Promoted
            | EventName::NotStarted => Severity::Info,
        }
    }
}

/// Where the traffic is, for `component` and `group`: names taken from the plan's ARNs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    /// `app/NAME/ID`.
    pub load_balancer: String,
    /// The target groups' names (`checkout-blue`).
    pub blue: String,
    pub green: String,
}

impl Place {
    pub fn of(alb: &crate::config::Alb) -> Place {
        let name = |arn: &str| {
            let dim = crate::config::target_group_dimension(arn);
            dim.split('/').nth(1).unwrap_or(&dim).to_string()
        };
        Place {
            load_balancer: alb.load_balancer_dimension(),
            blue: name(&alb.blue_target_group_arn),
            green: name(&alb.green_target_group_arn),
        }
    }

    fn target_group(&self, c: Color) -> &str {
        match c {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// The alert key of a cutover: every event of one cutover is one alert.
pub fn dedup_key(id: &str) -> String {
    format!("cutover-{id}")
}

/// A `trigger` event for `name` about `c`.
pub fn trigger(name: EventName, c: &Change, routing_key: &str, place: &Place, report_url: Option<&str>) -> Value {
    let f = &c.facts;
    let w = words::words(name, c);
    let summary = if w.detail.is_empty() {
        format!("{}: {}", f.service, w.title)
    } else {
        format!("{}: {}: {}", f.service, w.title, w.detail)
    };
    let mut details = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            details.insert(k.to_string(), v);
        }
    };
    put("cutover_id", json!(f.id));
    put("event", json!(name.as_str()));
    put("journal_event", json!(c.tag()));
    put("step", json!(f.step));
    put("live_color", json!(f.live));
    put("new_color", json!(f.new));
    if let Some(rb) = &f.rollback {
        put("trigger", json!(rb.trigger.as_str()));
        put("by", json!(rb.by));
        put("reason", json!(rb.reason));
    }
    if let Some((outcome, reason)) = &c.finished {
        put("outcome", json!(outcome.as_str()));
        put("reason", json!(reason));
    }
    if let Some(split) = f.weights {
        put("weights", json!(split.percents()));
        put("raw_weights", json!(split));
    }
    if let Some(n) = words::numbers(f) {
        put("verdict", json!(n.verdict));
        put("failures", json!(n.failures));
        put("error_rate", json!(n.new.error_rate()));
        put("errors", json!(n.new.errors));
        put("requests", json!(n.new.requests));
        put("latency_seconds", json!(n.new.latency));
        put("live_error_rate", json!(n.live.error_rate()));
        put("live_errors", json!(n.live.errors));
        put("live_requests", json!(n.live.requests));
        put("live_latency_seconds", json!(n.live.latency));
        put("judged_from", json!(n.start));
        put("judged_to", json!(n.end));
    }
    let mut payload = json!({
        "summary": truncate(&summary, SUMMARY_MAX),
        "source": f.service,
        "severity": Severity::of(name).as_str(),
        "timestamp": c.at(),
        "group": place.load_balancer,
        "class": name.as_str(),
        "custom_details": details,
    });
    if let Some(new) = f.new {
        payload["component"] = json!(place.target_group(new));
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(&f.id),
        "payload": payload,
    });
    if let Some(url) = report_url {
        let url = url.replace(REPORT_ID, &f.id);
        event["client"] = json!("cutover");
        event["client_url"] = json!(url);
        event["links"] = json!([{"href": url, "text": format!("cutover {}", f.id)}]);
    }
    event
}

/// A `resolve` event: the cutover's alert is over (traffic is verified back on the live colour).
pub fn resolve(c: &Change, routing_key: &str) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(&c.facts.id),
    })
}
