//! `[[notify]]`: where a cutover's notifications go (Slack, PagerDuty, a generic webhook), which
//! events each entry wants, and where its secret comes from.
//!
//! A Slack incoming-webhook URL, a PagerDuty routing key and a webhook's signing secret are
//! credentials: the plan names the environment variable (`*_env`) or the file (`*_file`, relative
//! to the plan's directory) that holds them, never the value. The plan is validated without that
//! environment ([`Secret::read`] runs when a notifier starts), so a missing variable or file is
//! not a plan error: it is a warning in the live log, and the cutover goes on without that entry.
//!
//! Every error names the key: `plan.toml: notify[1].events[2]: "rollback" is not an event: …`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PlanError;
use super::validate::Validator;
use crate::saga::Outcome;

/// The PagerDuty Events API v2 endpoint, unless `url` says otherwise (a proxy).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// At most this many `[[notify]]` entries: each one is a task and a connection per cutover.
pub const MAX_NOTIFY: usize = 20;

/// The only placeholder of `report_url`: the cutover's id.
pub const REPORT_ID: &str = "{id}";

/// `[[notify]]` as written. Every key is optional here so that each error can name its key
/// with a sentence (a missing `kind` included), rather than serde's `missing field`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    kind: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<String>,
    routing_key_env: Option<String>,
    routing_key_file: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    events: Option<Vec<String>>,
    report_url: Option<String>,
    resolve: Option<bool>,
}

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyKind {
    /// A Slack incoming webhook: Block Kit messages.
    Slack,
    /// PagerDuty Events API v2: trigger and resolve, one alert per cutover.
    PagerDuty,
    /// Any HTTP endpoint: the journal record as JSON, signed with HMAC-SHA256.
    Webhook,
}

impl NotifyKind {
    pub const ALL: [NotifyKind; 3] = [NotifyKind::Slack, NotifyKind::PagerDuty, NotifyKind::Webhook];

    /// The `kind` as written in a plan, and the `kind` label of `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::PagerDuty => "pagerduty",
            NotifyKind::Webhook => "webhook",
        }
    }
}

/// The notification vocabulary: what a `[[notify]]` entry subscribes to. Users script against
/// these names; each is derived from journal records (see `crate::notify` for the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventName {
    Started,
    StepDone,
    ApprovalNeeded,
    Approved,
    Rejected,
    RolledBack,
    RolledBackByOperator,
    Promoted,
    Unsafe,
    Stalled,
    NotStarted,
    Error,
    Drift,
    Adopted,
}

impl EventName {
    pub const ALL: [EventName; 14] = [
        EventName::Started,
        EventName::StepDone,
        EventName::ApprovalNeeded,
        EventName::Approved,
        EventName::Rejected,
        EventName::RolledBack,
        EventName::RolledBackByOperator,
        EventName::Promoted,
        EventName::Unsafe,
        EventName::Stalled,
        EventName::NotStarted,
        EventName::Error,
        EventName::Drift,
        EventName::Adopted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Started => "started",
            EventName::StepDone => "step_done",
            EventName::ApprovalNeeded => "approval_needed",
            EventName::Approved => "approved",
            EventName::Rejected => "rejected",
            EventName::RolledBack => "rolled_back",
            EventName::RolledBackByOperator => "rolled_back_by_operator",
            EventName::Promoted => "promoted",
            EventName::Unsafe => "unsafe",
            EventName::Stalled => "stalled",
            EventName::NotStarted => "not_started",
            EventName::Error => "error",
            EventName::Drift => "drift",
            EventName::Adopted => "adopted",
        }
    }

    pub fn parse(s: &str) -> Option<EventName> {
        EventName::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a cutover's outcome is notified as: the outcomes keep their names.
    pub fn of_outcome(outcome: Outcome) -> EventName {
        match outcome {
            Outcome::Promoted => EventName::Promoted,
            Outcome::RolledBack => EventName::RolledBack,
            Outcome::RolledBackByOperator => EventName::RolledBackByOperator,
            Outcome::NotStarted => EventName::NotStarted,
            Outcome::Unsafe => EventName::Unsafe,
            Outcome::Error => EventName::Error,
        }
    }

    /// What an entry of `kind` gets without an `events` key.
    ///
    /// * Slack, a channel people read: the outcomes and the approvals.
    /// * PagerDuty, which wakes someone: the rollbacks, unsafe and stalled (each resolved once
    ///   traffic is verified back, unless `resolve = false`).
    /// * A webhook, read by a program that picks what it wants: everything.
    pub fn defaults(kind: NotifyKind) -> BTreeSet<EventName> {
        use EventName::*;
        match kind {
            NotifyKind::Slack => [
                Promoted,
                RolledBack,
                RolledBackByOperator,
                NotStarted,
                Unsafe,
                Error,
                ApprovalNeeded,
                Approved,
                Rejected,
            ]
            .into(),
            NotifyKind::PagerDuty => [RolledBack, RolledBackByOperator, Unsafe, Stalled].into(),
            NotifyKind::Webhook => EventName::ALL.into(),
        }
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a credential is read from when a notifier starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable of the process that sends (validated name).
    Env(String),
    /// A file, absolute (a relative path in the plan is relative to the plan's directory);
    /// surrounding whitespace (the newline an editor adds) is not part of the value.
    File(PathBuf),
}

/// A credential of a `[[notify]]` entry, and the key it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The dotted key, e.g. `notify[0].url_env`.
    pub key: String,
    pub source: Source,
}

impl Secret {
    /// The value, or why there is none. Never includes the value itself.
    pub fn read(&self) -> Result<String, String> {
        let value = match &self.source {
            Source::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("{}: the environment variable {var} is not set", self.key));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("{}: the environment variable {var} is not UTF-8", self.key));
                }
            },
            Source::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read {}: {e}", self.key, path.display()))?,
        };
        let value = value.trim();
        if value.is_empty() {
            let what = match &self.source {
                Source::Env(var) => format!("the environment variable {var}"),
                Source::File(path) => path.display().to_string(),
            };
            return Err(format!("{}: {what} is empty", self.key));
        }
        Ok(value.to_string())
    }
}

/// A validated `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub kind: NotifyKind,
    /// The Slack or webhook URL, or the PagerDuty routing key.
    pub credential: Secret,
    /// PagerDuty only: the Events API URL (not a secret).
    pub endpoint: Option<String>,
    /// Webhook only: the HMAC-SHA256 key of `X-Cutover-Signature`.
    pub signing: Option<Secret>,
    /// What this entry is sent (never empty).
    pub events: BTreeSet<EventName>,
    /// A link to a report of the cutover, with `{id}` filled in (Slack, PagerDuty).
    pub report_url: Option<String>,
    /// PagerDuty only: resolve the cutover's alert once traffic is verified back.
    pub resolve: bool,
}

/// Checks every `[[notify]]` entry. `plan_dir` anchors relative `*_file` paths.
pub(super) fn entries(v: &Validator, raw: Vec<RawNotify>, plan_dir: &Path) -> Result<Vec<Notify>, PlanError> {
    if raw.len() > MAX_NOTIFY {
        return Err(v.err("notify", format!("{} entries: at most {MAX_NOTIFY}", raw.len())));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| entry(v, i, r, plan_dir))
        .collect()
}

fn entry(v: &Validator, i: usize, r: RawNotify, plan_dir: &Path) -> Result<Notify, PlanError> {
    let k = |name: &str| format!("notify[{i}].{name}");
    let kind = match r.kind.as_deref() {
        Some("slack") => NotifyKind::Slack,
        Some("pagerduty") => NotifyKind::PagerDuty,
        Some("webhook") => NotifyKind::Webhook,
        Some(other) => {
            return Err(v.err(
                k("kind"),
                format!("{other:?} is not a kind of notification: slack, pagerduty or webhook"),
            ));
        }
        None => return Err(v.err(k("kind"), "missing: slack, pagerduty or webhook")),
    };
    let kind_name = kind.as_str();
    // A key that means nothing for this kind is an error, like an unknown key.
    let forbid = |key: &str, present: bool, why: &str| -> Result<(), PlanError> {
        if present {
            return Err(v.err(k(key), format!("not a key of a {kind_name} entry{why}")));
        }
        Ok(())
    };
    let credential = match kind {
        NotifyKind::Slack | NotifyKind::Webhook => {
            forbid(
                "url",
                r.url.is_some(),
                ": its URL is a credential, read from url_env or url_file, never written in the plan",
            )?;
            forbid("routing_key_env", r.routing_key_env.is_some(), "")?;
            forbid("routing_key_file", r.routing_key_file.is_some(), "")?;
            let what = if kind == NotifyKind::Slack {
                "the incoming-webhook URL"
            } else {
                "the webhook's URL"
            };
            secret(v, i, ("url_env", r.url_env), ("url_file", r.url_file), plan_dir, what)?
                .ok_or_else(|| v.err(k("url_env"), format!("missing: {what} is read from url_env (an environment variable) or url_file (a file), never written in the plan")))?
        }
        NotifyKind::PagerDuty => {
            forbid(
                "url_env",
                r.url_env.is_some(),
                ": its URL is `url` (not a secret); the routing key is routing_key_env or routing_key_file",
            )?;
            forbid(
                "url_file",
                r.url_file.is_some(),
                ": its URL is `url` (not a secret); the routing key is routing_key_env or routing_key_file",
            )?;
            secret(
                v,
                i,
                ("routing_key_env", r.routing_key_env),
                ("routing_key_file", r.routing_key_file),
                plan_dir,
                "the integration's routing key",
            )?
            .ok_or_else(|| v.err(k("routing_key_env"), "missing: the routing key is read from routing_key_env (an environment variable) or routing_key_file (a file), never written in the plan"))?
        }
    };
    let endpoint = match kind {
        NotifyKind::PagerDuty => {
            let url = r.url.unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_string());
            if !is_http_url(&url) {
                return Err(v.err(k("url"), format!("{url:?} is not an http(s) URL")));
            }
            Some(url)
        }
        _ => None,
    };
    let signing = match kind {
        NotifyKind::Webhook => secret(
            v,
            i,
            ("secret_env", r.secret_env),
            ("secret_file", r.secret_file),
            plan_dir,
            "the signing secret",
        )?,
        _ => {
            forbid(
                "secret_env",
                r.secret_env.is_some(),
                ": only a webhook's bodies are signed",
            )?;
            forbid(
                "secret_file",
                r.secret_file.is_some(),
                ": only a webhook's bodies are signed",
            )?;
            None
        }
    };
    forbid(
        "resolve",
        r.resolve.is_some() && kind != NotifyKind::PagerDuty,
        ": only PagerDuty alerts are resolved",
    )?;
    forbid(
        "report_url",
        r.report_url.is_some() && kind == NotifyKind::Webhook,
        ": a webhook gets the journal record as it is",
    )?;
    let events = match r.events {
        None => EventName::defaults(kind),
        Some(list) if list.is_empty() => {
            return Err(v.err(
                k("events"),
                "empty: an entry that is sent nothing is a mistake; remove the entry, or leave the key out for the defaults",
            ));
        }
        Some(list) => {
            let mut events = BTreeSet::new();
            for (j, name) in list.iter().enumerate() {
                let key = format!("notify[{i}].events[{j}]");
                let Some(e) = EventName::parse(name) else {
                    let known: Vec<&str> = EventName::ALL.iter().map(|e| e.as_str()).collect();
                    return Err(v.err(key, format!("{name:?} is not an event: {}", known.join(", "))));
                };
                if !events.insert(e) {
                    return Err(v.err(key, format!("{name:?} is listed twice")));
                }
            }
            events
        }
    };
    let report_url = match r.report_url {
        None => None,
        Some(url) => {
            if url.replace(REPORT_ID, "").contains('{') {
                return Err(v.err(
                    k("report_url"),
                    format!("{url:?}: the only placeholder is {REPORT_ID}, the cutover's id"),
                ));
            }
            if !is_http_url(&url.replace(REPORT_ID, "20261122T024630Z-276f")) {
                return Err(v.err(k("report_url"), format!("{url:?} is not an http(s) URL")));
            }
            Some(url)
        }
    };
    Ok(Notify {
        kind,
        credential,
        endpoint,
        signing,
        events,
        report_url,
        resolve: r.resolve.unwrap_or(true),
    })
}

/// One of `(env key, value)` and `(file key, value)`, validated; `None` when neither is set.
fn secret(
    v: &Validator,
    i: usize,
    (env_key, env): (&str, Option<String>),
    (file_key, file): (&str, Option<String>),
    plan_dir: &Path,
    what: &str,
) -> Result<Option<Secret>, PlanError> {
    let k = |name: &str| format!("notify[{i}].{name}");
    match (env, file) {
        (Some(_), Some(_)) => Err(v.err(
            k(file_key),
            format!("set {env_key} or {file_key}, not both: {what} comes from one place"),
        )),
        (Some(var), None) => {
            let mut chars = var.chars();
            let is_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !is_name {
                return Err(v.err(
                    k(env_key),
                    format!("{var:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*); it names the variable that holds {what}, not the value"),
                ));
            }
            Ok(Some(Secret {
                key: k(env_key),
                source: Source::Env(var),
            }))
        }
        (None, Some(file)) => {
            if file.trim().is_empty() {
                return Err(v.err(k(file_key), "must not be empty: the path of the file that holds it"));
            }
            Ok(Some(Secret {
                key: k(file_key),
                source: Source::File(plan_dir.join(file)),
            }))
        }
        (None, None) => Ok(None),
    }
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://")) && reqwest::Url::parse(url).is_ok()
}

#[cfg(test)]
mod tests;
