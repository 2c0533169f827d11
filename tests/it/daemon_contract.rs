//! The daemon's contract at its edges (issue 14): `/metrics` through a strict parser,
//! server-sent events resumed from `Last-Event-ID`, and the token asked for before anything
//! under `/v1` is revealed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Serve, TOKEN, api};
use crate::util::*;

/// A plans directory with `NAME.toml` for `world`.
fn plans(wd: &Workdir, name: &str, world: &World, steps: &str) -> PathBuf {
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), plan(world, "", steps)).unwrap();
    dir
}

/// Polls `GET /v1/cutovers/ID` until `done` holds.
async fn wait_until(s: &Serve, id: &str, bound: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (code, v) = api(s, "GET", &format!("/v1/cutovers/{id}"), None).await;
        assert_eq!(code, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < bound, "not within {bound:?}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/metrics` through a strict parser of the text exposition format (issue 14.8): its grammar,
/// one TYPE per family, histograms cumulative up to `+Inf`.
pub fn check_prometheus(
    text: &str,
) -> openmetrics_parser::MetricsExposition<openmetrics_parser::PrometheusType, openmetrics_parser::PrometheusValue> {
    openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("/metrics is not the text exposition format ({e:?}):\n{text}"))
}

/// The value of the one sample of `name` whose labels include `labels`.
pub fn sample(
    page: &openmetrics_parser::MetricsExposition<
        openmetrics_parser::PrometheusType,
        openmetrics_parser::PrometheusValue,
    >,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    use openmetrics_parser::PrometheusValue;
    let family = page.families.get(name).unwrap_or_else(|| panic!("no {name}"));
    let found: Vec<f64> = family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().unwrap();
            labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(g) | PrometheusValue::Unknown(g) => g.as_f64(),
            other => panic!("{name} is not a number: {other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

/// The ids of the records `GET /v1/cutovers/ID/events` sends, with `Last-Event-ID` if given.
async fn event_ids(s: &Serve, id: &str, last: Option<&str>) -> Vec<u64> {
    use futures_util::StreamExt;
    let mut req = reqwest::Client::new()
        .get(format!("{}/v1/cutovers/{id}/events", s.url))
        .bearer_auth(TOKEN);
    if let Some(n) = last {
        req = req.header("last-event-id", n);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let records = cutover::daemon::client::records(resp.bytes_stream());
    records
        .map(|r| r.unwrap().0.expect("every record has an id"))
        .collect()
        .await
}

/// Regression (issue 14.7): the server ignored `Last-Event-ID` and a reconnecting client got
/// the whole journal again.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_resumes_after_the_last_event_id() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let dir = plans(&wd, "web", &world, QUICK_STEPS);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (_, v) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "web"}))).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_until(&s, &id, Duration::from_secs(60), |v| v["outcome"].is_string()).await;
    let all = event_ids(&s, &id, None).await;
    assert!(all.len() > 10, "{all:?}");
    assert_eq!(
        all,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "ids are positions from 1"
    );
    let after = event_ids(&s, &id, Some("4")).await;
    assert_eq!(after, all[4..].to_vec());
    // Past the end: nothing more, and the stream still ends (the cutover has finished).
    let n = all.len().to_string();
    assert!(event_ids(&s, &id, Some(&n)).await.is_empty());
    // Garbage is as if no id had been sent.
    assert_eq!(event_ids(&s, &id, Some("yesterday")).await, all);
}

/// Regression (issue 14.11): a 401 had no `WWW-Authenticate` header, and an unknown `/v1` path
/// answered 404 without a token, so the routes could be listed by probing without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_asked_for_before_anything_under_v1_is_revealed() {
    let moto = Moto::start();
    let wd = Workdir::new();
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{}{path}", s.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for path in ["/v1/cutovers", "/v1/no-such-route", "/v1", "/v1/cutovers/x/y/z"] {
        let resp = get(path, None).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            r#"Bearer realm="cutover""#,
            "{path}"
        );
        let resp = get(path, Some("wrong-token-0123456789abcdef")).await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            r#"Bearer realm="cutover", error="invalid_token""#,
            "{path}"
        );
    }
    // A wrong method is as unauthenticated as a wrong path.
    let resp = http.delete(format!("{}/v1/cutovers", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // With the token, an unknown route is a 404 (and the JSON error of every other answer).
    let resp = get("/v1/no-such-route", Some(TOKEN)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.headers().get("www-authenticate").is_none());
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert!(body["error"].is_string(), "{body}");
    // Outside /v1 nothing needs a token: /health, /metrics, and a 404 for the rest.
    assert_eq!(get("/health", None).await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/metrics", None).await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/v1x", None).await.unwrap().status().as_u16(), 404);
    assert_eq!(get("/nothing", None).await.unwrap().status().as_u16(), 404);
}
