//! A running `cutover serve` and the client that sends it requests, every answer and every JSON
//! body checked against the document on the way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

use super::TOKEN;
use super::checker::{Answer, Doc, short};

/// A request body.
pub(super) enum Body {
    None,
    /// JSON, sent with `Content-Type: application/json`; checked against the document too.
    Json(Value),
    /// Sent as it is, with this content type.
    Raw(&'static str, &'static str),
}

/// A running `cutover serve`, killed on drop, and the document to check its answers against.
pub(super) struct Api {
    child: Child,
    pub(super) url: String,
    pub(super) doc: Doc,
    http: reqwest::Client,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    pub(super) fn start(wd: &Workdir, endpoint: &str, plans: &Path) -> Api {
        let mut cmd = wd.cutover(
            endpoint,
            &["serve", "--listen", "127.0.0.1:0", "--plans", plans.to_str().unwrap()],
        );
        let log = std::fs::File::create(wd.path().join("serve.log")).unwrap();
        cmd.env("CUTOVER_TOKEN", TOKEN).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Api {
            child,
            url,
            doc: Doc::load(),
            http: reqwest::Client::new(),
        }
    }

    /// `method path` (an instance of the document's `route`), its answer checked against the
    /// document, and a JSON body checked against the route's request schema: the document must
    /// refuse it exactly when the daemon answers 400.
    pub(super) async fn call(&self, method: &str, route: &str, path: &str, token: Option<&str>, body: Body) -> Answer {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match &body {
            Body::None => req,
            Body::Json(v) => req.header("content-type", "application/json").body(v.to_string()),
            Body::Raw(ct, text) => req.header("content-type", *ct).body(*text),
        };
        let mut resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut chunks = vec![];
        while let Some(chunk) = resp.chunk().await.unwrap() {
            chunks.push(chunk.to_vec());
        }
        let answer = Answer {
            status,
            content_type,
            chunks,
        };
        if let Err(e) = self.doc.check_answer(method, route, &answer) {
            panic!("{method} {path}: the answer disagrees with api/openapi.json: {e}");
        }
        if let Body::Json(b) = &body
            && token.is_some()
        {
            let doc = self.doc.accepts_request(method, route, b);
            assert_eq!(
                doc.is_err(),
                status == 400,
                "{method} {path} with {}: the document says {doc:?}, the daemon answered {status}: {}",
                short(&b.to_string()),
                short(&answer.text())
            );
        }
        answer
    }

    /// A `/v1` call with the token.
    pub(super) async fn v1(&self, method: &str, route: &str, path: &str, body: Body) -> Answer {
        self.call(method, route, path, Some(TOKEN), body).await
    }

    /// The records of a cutover's event stream, checked, read until the stream ends.
    pub(super) async fn events(&self, id: &str) -> Vec<Value> {
        let path = format!("/v1/cutovers/{id}/events");
        let a = self.v1("GET", "/v1/cutovers/{id}/events", &path, Body::None).await;
        assert_eq!(a.status, 200, "{}", a.text());
        self.doc
            .check_answer("GET", "/v1/cutovers/{id}/events", &a)
            .expect("checked in call")
    }

    /// Polls a cutover's state (each answer checked) until `pred` holds.
    pub(super) async fn wait_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let a = self
                .v1("GET", "/v1/cutovers/{id}", &format!("/v1/cutovers/{id}"), Body::None)
                .await;
            let v = a.json();
            assert_eq!(a.status, 200, "{v}");
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: not within 60 s; last state {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An operator action on cutover `id`.
    pub(super) async fn action(&self, id: &str, action: &str, body: Body) -> Answer {
        let route = format!("/v1/cutovers/{{id}}/{action}");
        self.v1("POST", &route, &format!("/v1/cutovers/{id}/{action}"), body)
            .await
    }
}
