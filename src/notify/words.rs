//! What every kind of message says about a change, in words and numbers: a title, the detail
//! (the reason, with the numbers the engine journaled), and the last verdict's counts. Slack and
//! PagerDuty both build on these, so the two say the same thing. Pure.

use std::time::Duration;

use serde_json::Value;

use super::fold::{Change, Facts};
use crate::color::Color;
use crate::config::notify::EventName;
use crate::judge::Sample;

/// A change in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Words {
    /// One line: `rolled back`, `approval needed for shift 100%`.
    pub title: String,
    /// The reason or the detail, with its numbers; may be empty.
    pub detail: String,
}

/// The title and detail of `name` for the change `c`.
pub fn words(name: EventName, c: &Change) -> Words {
    let f = &c.facts;
    let r = &c.record;
    let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let step = f.step.clone().unwrap_or_else(|| "a step".into());
    let live = color(f.live, "the live colour");
    let new = color(f.new, "the new colour");
    // The reason of the outcome, or of the rollback under way.
    let reason = c
        .finished
        .as_ref()
        .map(|(_, reason)| reason.clone())
        .or_else(|| f.rollback.as_ref().map(|rb| rb.reason.clone()))
        .unwrap_or_default();
    let by = f
        .rollback
        .as_ref()
        .map(|rb| rb.by.clone())
        .unwrap_or_else(|| "an operator".into());
    let (title, detail) = match name {
        EventName::Started => {
            let steps: Vec<&str> = r["steps"]
                .as_array()
                .map(|s| s.iter().filter_map(|s| s["label"].as_str()).collect())
                .unwrap_or_default();
            (
                format!("cutover started: {live} is live, {new} is new"),
                format!("steps: {}", steps.join(" → ")),
            )
        }
        EventName::StepDone => (
            format!("step {step} done"),
            format!("in {}", duration_ms(r["elapsed_ms"].as_u64().unwrap_or(0))),
        ),
        EventName::ApprovalNeeded => {
            let approvers: Vec<&str> = r["approvers"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let who = if approvers.is_empty() {
                "any approver".to_string()
            } else {
                approvers.join(", ")
            };
            let timeout = r["timeout_secs"]
                .as_u64()
                .map(|s| format!("; times out in {}", humantime::format_duration(Duration::from_secs(s))))
                .unwrap_or_default();
            (
                format!("approval needed for {step}"),
                format!("waiting for {who}{timeout}: `cutover approve` or `cutover reject`"),
            )
        }
        EventName::Approved => (format!("{step} approved by {}", text("by")), text("reason")),
        EventName::Rejected => (format!("{step} rejected by {}", text("by")), text("reason")),
        EventName::RolledBack if c.rollback_started => ("rolling back".into(), reason),
        EventName::RolledBack => (format!("rolled back: traffic back on {live}"), reason),
        EventName::RolledBackByOperator if c.rollback_started => (format!("rolling back, asked by {by}"), reason),
        EventName::RolledBackByOperator => (format!("rolled back by {by}: traffic back on {live}"), reason),
        EventName::Stalled => ("stalled: judging nothing, rolling back".into(), reason),
        EventName::Promoted => (format!("promoted: {new} holds all traffic"), reason),
        EventName::Unsafe => (format!("UNSAFE: traffic could not be confirmed back on {live}"), reason),
        EventName::NotStarted => ("not started: nothing was changed".into(), reason),
        EventName::Error => ("error".into(), reason),
        EventName::Drift => (
            "weights changed outside cutover".into(),
            format!(
                "expected {}, found {}; the bake clock holds (judging goes on) until `cutover resume` or `cutover rollback`",
                split_text(&r["expected"]),
                split_text(&r["found"])
            ),
        ),
        EventName::Adopted => (
            format!("adopted by {}", text("by")),
            format!(
                "its owner ({}) stopped driving it: {}",
                r["previous_owner"].as_str().unwrap_or("unknown"),
                text("action")
            ),
        ),
    };
    Words { title, detail }
}

/// The newest verdict's numbers: what a message shows beside the reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numbers {
    pub verdict: &'static str,
    /// Consecutive failed verdicts at that one.
    pub failures: u32,
    pub new: Sample,
    pub live: Sample,
    /// The judged span, Unix seconds.
    pub start: u64,
    pub end: u64,
}

/// The counts of the newest verdict (its evidence when it has one, else its window).
pub fn numbers(f: &Facts) -> Option<Numbers> {
    let v = f.verdict.as_ref()?;
    let (new, live, start, end) = match &v.evidence {
        Some(e) => (e.new, e.live, e.start, e.end),
        None => (v.window.new, v.window.live, v.window.start, v.window.end),
    };
    Some(Numbers {
        verdict: v.outcome.as_str(),
        failures: v.failures,
        new,
        live,
        start,
        end,
    })
}

/// `30.00% (30/100)`, or `no requests`.
pub fn error_rate(s: &Sample) -> String {
    match s.error_rate() {
        Some(r) => format!("{:.2}% ({}/{})", r * 100.0, s.errors, s.requests),
        None => "no requests".into(),
    }
}

/// `52ms`, or `-` without a datapoint.
pub fn latency(s: &Sample) -> String {
    s.latency
        .map(|l| duration_ms((l * 1000.0).round() as u64))
        .unwrap_or_else(|| "-".into())
}

/// `blue 50% green 50% (weights 500/500)` from a journaled split.
pub fn split_text(v: &Value) -> String {
    serde_json::from_value::<crate::color::Split>(v.clone())
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn color(c: Option<Color>, otherwise: &str) -> String {
    c.map(|c| c.to_string()).unwrap_or_else(|| otherwise.into())
}

fn duration_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// `text` cut to at most `max` characters (not bytes), ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
