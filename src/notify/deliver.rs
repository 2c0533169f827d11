//! Sending: one HTTP POST per delivery, retried under [`DELIVERY`], counted for `/metrics`.
//!
//! Nothing here may leak a credential: a Slack or webhook URL is a secret, so errors are
//! described without their URL (`reqwest::Error::without_url`), and a delivery is named by its
//! entry (`notify[0] (slack)`), never by where it goes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::config::notify::NotifyKind;

/// The delivery policy. A delivery that fails with an error that may pass (the connection
/// refused or reset, no answer within [`ATTEMPT_TIMEOUT`], HTTP 5xx, 408 or 429) is tried again
/// after 1 s, doubling to 8 s, with jitter (so that many cutovers do not retry in step), at
/// most 4 more times: 5 attempts over about 15 s of waiting, plus the attempts themselves. A
/// 429's `Retry-After` is honoured when longer, up to [`RETRY_AFTER_MAX`]. Any other answer
/// (another 4xx, a redirect) is the receiver refusing this request — a revoked Slack URL
/// answers 404, a bad routing key 400 — and trying again cannot fix it.
///
/// Nothing waits for this: each entry has its own queue and task, and the engine never sees
/// either (a rollback is never held back by a receiver that is slow or down).
pub const DELIVERY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(1))
    .with_max_delay(Duration::from_secs(8))
    .with_jitter()
    .with_max_times(4);

/// How long one attempt may take, connection included: a receiver that accepts and never
/// answers costs this much per attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// One request, ready to go.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The journal record it is about.
    pub seq: u64,
    /// The event name (or `resolve`), for logs.
    pub what: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with a status other than 2xx; `body` is the start of its answer
    /// (Slack says why: `invalid_payload`, `no_service`).
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    /// No answer: the connection refused or reset, a timeout (the cause, without the URL).
    #[error("{0}")]
    Transport(String),
}

impl DeliveryError {
    /// Whether trying again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            DeliveryError::Transport(_) => true,
        }
    }
}

/// The HTTP client of every notifier: no redirects (a body and its signature go where the plan
/// says, or nowhere), and the deadlines above. A process builds it once
/// ([`crate::aws::HttpClients`]) and its cutovers' notifiers share it.
pub fn client() -> reqwest::Result<reqwest::Client> {
    #[cfg(test)]
    crate::hooks::tests::HTTP_CLIENTS_BUILT.with(|n| n.set(n.get() + 1));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One attempt.
pub async fn attempt(http: &reqwest::Client, url: &reqwest::Url, out: &Outgoing) -> Result<(), DeliveryError> {
    let mut req = http
        .post(url.clone())
        .header("content-type", "application/json")
        .body(out.body.clone());
    for (k, v) in &out.headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_default();
    let body: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body,
        retry_after,
    })
}

/// Sends `out` under [`DELIVERY`]: `Ok(attempts)`, or the last error and the attempts made.
pub async fn deliver(http: &reqwest::Client, url: &reqwest::Url, out: &Outgoing) -> Result<u32, (DeliveryError, u32)> {
    let attempts = AtomicU32::new(0);
    let result = (|| async {
        attempts.fetch_add(1, Ordering::Relaxed);
        attempt(http, url, out).await
    })
    .retry(DELIVERY)
    .sleep(tokio::time::sleep)
    .when(DeliveryError::retryable)
    .adjust(|e, delay| match e {
        DeliveryError::Status {
            retry_after: Some(after),
            ..
        } => delay.map(|d| d.max((*after).min(RETRY_AFTER_MAX))),
        _ => delay,
    })
    .notify(|e, after| tracing::debug!("delivery of record {} failed ({e}); trying again in {after:?}", out.seq))
    .await;
    let n = attempts.load(Ordering::Relaxed);
    result.map(|()| n).map_err(|e| (e, n))
}

/// A transport error in one line, without the URL (it may be the credential).
fn transport(e: reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        return DeliveryError::Transport(format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()));
    }
    let e = e.without_url();
    let mut parts: Vec<String> = vec![];
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    DeliveryError::Transport(parts.join(": "))
}

/// Every notification since the process started, by kind and result (for `/metrics`):
/// `delivered`; `failed` (every attempt failed, or it was still queued when the process had to
/// stop); `skipped` (its entry has no URL or key: the variable or file was missing).
pub mod counts {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use crate::config::notify::NotifyKind;

    pub const RESULTS: [&str; 3] = ["delivered", "failed", "skipped"];

    static COUNTS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

    pub fn add(kind: NotifyKind, result: &'static str, n: u64) {
        *COUNTS.lock().unwrap().entry((kind.as_str(), result)).or_default() += n;
    }

    /// `(kind, result) → count`, with every kind and result present.
    pub fn snapshot() -> BTreeMap<(&'static str, &'static str), u64> {
        let mut all: BTreeMap<_, _> = NotifyKind::ALL
            .iter()
            .flat_map(|k| RESULTS.iter().map(move |r| ((k.as_str(), *r), 0)))
            .collect();
        for (k, v) in COUNTS.lock().unwrap().iter() {
            all.insert(*k, *v);
        }
        all
    }
}

/// The kind's name in logs: `notify[0] (slack)`.
pub fn entry_name(index: usize, kind: NotifyKind) -> String {
    format!("notify[{index}] ({})", kind.as_str())
}
