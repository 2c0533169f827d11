//! The daemon's command-line clients: `start`, `list`, `watch`, and
//! `rollback|pause|resume|promote ID`. They talk to `cutover serve` over its
//! control API and render its event stream as the same live log `run` prints.

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::journal::Record;
use crate::live_log::Renderer;
use crate::saga::{Outcome, Saga};
use crate::state::CutoverState;

/// The daemon answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("{request}: HTTP {status}: {message}")]
pub struct ApiFailure {
    pub request: String,
    pub status: u16,
    pub message: String,
}

impl ApiFailure {
    /// Whether the daemon could not confirm traffic back on the live colour (`UNSAFE`).
    pub fn is_unsafe(&self) -> bool {
        self.status == 502 && self.message.starts_with("UNSAFE")
    }
}

/// A client of one daemon.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: &str) -> anyhow::Result<Client> {
        if token.is_empty() {
            bail!("no token: pass --token or --token-file, or set CUTOVER_TOKEN");
        }
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server {server:?} is not an http:// or https:// URL");
        }
        let http = reqwest::Client::builder().build().context("building the HTTP client")?;
        Ok(Client {
            base,
            token: token.to_string(),
            http,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {}{path}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            let message = v.get("error").and_then(Value::as_str).unwrap_or(&text).to_string();
            return Err(ApiFailure {
                request: format!("{method} {path}"),
                status: status.as_u16(),
                message,
            }
            .into());
        }
        Ok(v)
    }

    pub async fn start(&self, plan: &str, vars: &[(String, String)]) -> anyhow::Result<String> {
        let vars: serde_json::Map<String, Value> = vars.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let v = self
            .call(
                reqwest::Method::POST,
                "/v1/cutovers",
                Some(json!({ "plan": plan, "vars": vars })),
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no id in the answer: {v}"))
    }

    /// Every cutover of the daemon, newest first.
    pub async fn list(&self) -> anyhow::Result<Vec<CutoverState>> {
        #[derive(serde::Deserialize)]
        struct List {
            cutovers: Vec<CutoverState>,
        }
        let v = self.call(reqwest::Method::GET, "/v1/cutovers", None).await?;
        let list: List = serde_json::from_value(v).context("the daemon's list of cutovers")?;
        Ok(list.cutovers)
    }

    /// One cutover's state.
    pub async fn get(&self, id: &str) -> anyhow::Result<CutoverState> {
        let v = self
            .call(reqwest::Method::GET, &format!("/v1/cutovers/{id}"), None)
            .await?;
        serde_json::from_value(v).with_context(|| format!("the state of {id}"))
    }

    /// `rollback`, `pause`, `resume` or `promote`.
    pub async fn action(&self, id: &str, action: &str, reason: Option<&str>) -> anyhow::Result<Value> {
        let by = crate::engine::whoami();
        let body = json!({ "reason": reason, "by": by });
        self.call(
            reqwest::Method::POST,
            &format!("/v1/cutovers/{id}/{action}"),
            Some(body),
        )
        .await
    }

    /// Streams a cutover's events as the live log (stderr, in `--log-format`) until it
    /// finishes; returns its outcome.
    ///
    /// If the stream breaks before the end (the daemon restarted), it reconnects for up to
    /// `RECONNECT_FOR` with `Last-Event-ID` set to the last record it showed, so the daemon
    /// sends only what came after (records it sees again, from a daemon that replays anyway,
    /// are skipped by their id). The outcome is the saga's, folded from the records, not
    /// merely the first `finished` record.
    pub async fn watch(&self, id: &str) -> anyhow::Result<Option<Outcome>> {
        let url = format!("{}/v1/cutovers/{id}/events", self.base);
        let mut renderer = Renderer::new();
        let mut saga = Saga::default();
        let mut last: Option<u64> = None;
        let mut broken_since: Option<std::time::Instant> = None;
        loop {
            match self.stream_once(&url, id, &mut renderer, &mut saga, &mut last).await {
                Ok(()) if saga.outcome().is_some() => return Ok(saga.outcome().map(|(o, _)| o)),
                Ok(()) => {}
                Err(e) if last.is_none() && broken_since.is_none() => return Err(e),
                Err(e) => tracing::warn!("event stream: {e:#}"),
            }
            let since = *broken_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > RECONNECT_FOR {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// One connection: renders the records after `last` (the id of the last one shown);
    /// returns when the stream ends.
    async fn stream_once(
        &self,
        url: &str,
        id: &str,
        renderer: &mut Renderer,
        saga: &mut Saga,
        last: &mut Option<u64>,
    ) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut req = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream");
        if let Some(n) = last {
            req = req.header("last-event-id", n.to_string());
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            bail!("GET {url}: HTTP {status}: {text}");
        }
        let mut records = std::pin::pin!(records(resp.bytes_stream()));
        while let Some(item) = records.next().await {
            let (n, record) = item?;
            if let (Some(n), Some(seen)) = (n, *last)
                && n <= seen
            {
                continue; // Shown before a reconnect.
            }
            *last = n.or(last.map(|l| l + 1)).or(Some(1));
            let _ = saga.apply(&record.event);
            let line = renderer.render(&record.event);
            crate::live_log::output::log(&line, Some(id), Some(&record.at));
        }
        Ok(())
    }
}

/// The journal records of a daemon's event stream, with their ids (the record's position,
/// from 1), decoded by `eventsource-stream`: a character split across two chunks, a `data`
/// field over several lines and comments (keep-alives) are the parser's business. Events of
/// another type than `record`, and data that is not a record, are skipped.
pub fn records<S, B, E>(bytes: S) -> impl futures_util::Stream<Item = anyhow::Result<(Option<u64>, Record)>>
where
    S: futures_util::Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    bytes.eventsource().filter_map(|item| async move {
        match item {
            Err(e) => Some(Err(anyhow!("reading the event stream: {e}"))),
            Ok(ev) if ev.event != "record" => None,
            Ok(ev) => serde_json::from_str::<Record>(&ev.data)
                .ok()
                .map(|r| Ok((ev.id.parse().ok(), r))),
        }
    })
}

/// How long `cutover health` waits for the daemon's answer: a container runtime runs the check
/// every 30 s and counts a slow answer as a failure anyway.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `cutover health`: whether the daemon at `server` answers `GET /health` with 200 (no token:
/// the endpoint is open).
pub async fn health(server: &str) -> anyhow::Result<()> {
    let base = server.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--server {server:?} is not an http:// or https:// URL");
    }
    let url = format!("{base}/health");
    let http = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let resp = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status().as_u16());
    }
    Ok(())
}

/// How long `watch` keeps reconnecting to a daemon that went away (a restart takes seconds).
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Parses `K=V` (`--var`), with the daemon's rule for keys.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if !super::valid_var_key(k) {
        return Err(format!("variable name {k:?}: use A-Z, 0-9 and _"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// A table of cutovers for `cutover list`.
pub fn print_list(cutovers: &[CutoverState]) {
    println!(
        "{:<24} {:<16} {:<24} {:<14} {:<22} OWNER",
        "ID", "SERVICE", "STATE", "STEP", "WEIGHTS"
    );
    for c in cutovers {
        let weights = match c.weights {
            Some(w) => w.to_string(),
            None => "-".into(),
        };
        println!(
            "{:<24} {:<16} {:<24} {:<14} {:<22} {}",
            c.summary.id,
            c.summary.service,
            c.state_word(),
            c.step.as_deref().unwrap_or("-"),
            weights,
            c.driver()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_are_key_equals_value_with_restricted_keys() {
        assert_eq!(
            parse_var("VERSION=2.1.0=x").unwrap(),
            ("VERSION".into(), "2.1.0=x".into())
        );
        assert!(parse_var("version=1").is_err());
        assert!(parse_var("NOEQUALS").is_err());
    }

    /// The records `records` decodes from `chunks`, as (id, the note's message).
    async fn decode(chunks: Vec<Vec<u8>>) -> Vec<(Option<u64>, String)> {
        use futures_util::StreamExt;
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        records(stream)
            .map(|r| {
                let (id, record) = r.unwrap();
                match record.event {
                    crate::saga::Event::Note { message, .. } => (id, message),
                    other => panic!("not a note: {other:?}"),
                }
            })
            .collect()
            .await
    }

    fn note(message: &str) -> String {
        format!(r#"{{"at":"2026-11-22T02:46:30.453Z","event":"note","step":0,"level":"warn","message":"{message}"}}"#)
    }

    /// Regression (issue 14.7): the client decoded UTF-8 chunk by chunk, so a `→` split across
    /// two chunks (as a proxy or TLS may split it) came out as two replacement characters.
    #[tokio::test]
    async fn a_character_split_across_chunks_survives() {
        let text = format!(
            "event: record\nid: 7\ndata: {}\n\n",
            note("fail 2/2 → rollback, p ≤ 0.01")
        );
        let bytes = text.into_bytes();
        // Cut inside every multi-byte character in turn, and everywhere else too.
        for cut in 1..bytes.len() {
            let got = decode(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]).await;
            assert_eq!(
                got,
                [(Some(7), "fail 2/2 → rollback, p ≤ 0.01".to_string())],
                "cut at {cut}"
            );
        }
        // One byte a chunk.
        let got = decode(bytes.iter().map(|b| vec![*b]).collect()).await;
        assert_eq!(got[0].1, "fail 2/2 → rollback, p ≤ 0.01");
    }

    /// Regression (issue 14.7): only a single-line `data:` was understood. The standard joins
    /// the lines of a multi-line `data` with newlines, which JSON takes as whitespace.
    #[tokio::test]
    async fn multi_line_data_comments_ids_and_other_events() {
        let record = note("two lines");
        let (head, tail) = record.split_at(record.find(",\"event\"").unwrap() + 1);
        let text = format!(
            ": keep-alive\n\n\
             event: record\nid: 1\ndata: {head}\ndata: {tail}\n\n\
             event: ping\ndata: {{}}\n\n\
             event: record\r\nid: 2\r\ndata:{}\r\n\r\n\
             event: record\ndata: {}\n\n",
            note("crlf, no space after the colon"),
            note("no id")
        );
        let got = decode(vec![text.into_bytes()]).await;
        assert_eq!(
            got,
            [
                (Some(1), "two lines".to_string()),
                (Some(2), "crlf, no space after the colon".to_string()),
                // The standard keeps the last id for an event that sets none.
                (Some(2), "no id".to_string()),
            ]
        );
    }
}
