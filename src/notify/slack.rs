//! Slack: one incoming-webhook message per notification, `{"text": …, "blocks": […]}` in
//! Block Kit (<https://api.slack.com/reference/block-kit/blocks>): a `header` (plain text, at
//! most 150 characters), a `section` with the reason and its numbers (mrkdwn, at most 3000), a
//! `section` of at most 10 `fields` (each at most 2000) — the event, the cutover, the colours,
//! the weights, the step, the trigger, who did it, the error rate and the latency — and a
//! `context` line with the id, the time and the report link. `text` is the notification's
//! fallback (what a phone shows). Pure.

use serde_json::{Value, json};

use super::fold::Change;
use super::words::{self, error_rate, latency, truncate};
use crate::config::notify::{EventName, REPORT_ID};

/// Block Kit's limits.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FIELDS_MAX: usize = 10;

/// The message for `name` about `c`; `report_url` with `{id}` not yet filled in.
pub fn message(name: EventName, c: &Change, report_url: Option<&str>) -> Value {
    let f = &c.facts;
    let w = words::words(name, c);
    let headline = format!("{}: {}", f.service, w.title);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&format!("{}{headline}", emoji(name)), HEADER_MAX), "emoji": true},
    })];
    if !w.detail.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&escape(&w.detail), SECTION_MAX)},
        }));
    }
    let mut fields = vec![
        ("Event", format!("`{}`", name.as_str())),
        ("Cutover", format!("`{}`", escape(&f.id))),
    ];
    if let (Some(live), Some(new)) = (f.live, f.new) {
        fields.push(("Colours", format!("{live} (live) → {new} (new)")));
    }
    if let Some(split) = f.weights {
        fields.push(("Weights", split.to_string()));
    }
    if let Some(step) = &f.step {
        fields.push(("Step", escape(step)));
    }
    let rollback = matches!(
        name,
        EventName::RolledBack | EventName::RolledBackByOperator | EventName::Stalled | EventName::Unsafe
    );
    if let Some(rb) = f.rollback.as_ref().filter(|_| rollback) {
        fields.push(("Trigger", rb.trigger.as_str().to_string()));
        if rb.by != "cutover" {
            fields.push(("By", escape(&rb.by)));
        }
    }
    if let Some(by) = c.record["by"].as_str().filter(|_| !rollback) {
        fields.push(("By", escape(by)));
    }
    if let (Some(n), Some(new), Some(live)) = (words::numbers(f), f.new, f.live) {
        fields.push((
            "Error rate",
            format!("{new} {} · {live} {}", error_rate(&n.new), error_rate(&n.live)),
        ));
        fields.push((
            "Latency",
            format!("{new} {} · {live} {}", latency(&n.new), latency(&n.live)),
        ));
    }
    fields.truncate(FIELDS_MAX);
    blocks.push(json!({
        "type": "section",
        "fields": fields
            .iter()
            .map(|(k, v)| json!({"type": "mrkdwn", "text": truncate(&format!("*{k}*\n{v}"), FIELD_MAX)}))
            .collect::<Vec<_>>(),
    }));
    let mut context = format!("cutover `{}` · {}", escape(&f.id), escape(c.at()));
    if let Some(url) = report_url {
        context.push_str(&format!(" · <{}|report>", url.replace(REPORT_ID, &f.id)));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(&context, SECTION_MAX)}],
    }));
    let text = if w.detail.is_empty() {
        headline
    } else {
        format!("{headline} — {}", w.detail)
    };
    json!({"text": truncate(&escape(&text), SECTION_MAX), "blocks": blocks})
}

/// Slack's three control characters in mrkdwn (<https://api.slack.com/reference/surfaces/formatting#escaping>).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn emoji(name: EventName) -> &'static str {
    match name {
        EventName::Promoted => ":white_check_mark: ",
        EventName::RolledBack | EventName::RolledBackByOperator | EventName::Stalled => ":leftwards_arrow_with_hook: ",
        EventName::Unsafe | EventName::Error => ":rotating_light: ",
        EventName::ApprovalNeeded => ":raised_hand: ",
        EventName::Drift => ":warning: ",
        _ => "",
    }
}
