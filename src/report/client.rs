//! `cutover report ID --server URL`: a daemon's cutover report, fetched from
//! `GET /v1/cutovers/ID/report?format=…` (the daemon builds it from its own store).

use anyhow::{Context, bail};

use super::Format;

/// The report of cutover `id` on the daemon at `server`, in `format`, as the daemon wrote it.
pub async fn fetch(server: &str, token: &str, id: &str, format: Format) -> anyhow::Result<String> {
    if token.is_empty() {
        bail!("no token: pass --token or --token-file, or set CUTOVER_TOKEN");
    }
    let base = server.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--server {server:?} is not an http:// or https:// URL");
    }
    if !super::valid_id(id) {
        bail!("{id:?} is not a cutover id");
    }
    let url = format!("{base}/v1/cutovers/{id}/report?format={}", format.as_str());
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of GET {url}"))?;
    if !status.is_success() {
        // Errors are `{"error": "…"}`; anything else is shown as it came.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        bail!("GET {url}: HTTP {}: {message}", status.as_u16());
    }
    Ok(text)
}
