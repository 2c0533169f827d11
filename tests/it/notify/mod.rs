//! Notifications (issue 11.2) through real cutovers against moto: the `cutover` binary (and
//! the daemon) sending to a local HTTP receiver on 127.0.0.1:0 that checks each vendor's
//! documented schema — PagerDuty's Events API v2, Slack's Block Kit, and for the webhook the
//! signature, recomputed here and compared in constant time.
//!
//! Its files: `schemas` (the vendors' schemas and the webhook signature), `formats` (the three
//! formats from one rolled-back cutover), `delivery` (retries, refusals, hung and down receivers)
//! and `senders` (the daemon's notifier, a dead run's command-line rollback). The receiver is here.

mod delivery;
mod formats;
mod schemas;
mod senders;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::util::*;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Accept the request and never answer.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HashMap<String, String>,
    body: Bytes,
    at: SystemTime,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} sent a body that is not JSON ({e})", self.path))
    }
}

/// A local HTTP receiver: each path answers its requests with its script in turn (the last
/// answer repeats; a path without a script answers 404), and every request is kept.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: &[(&str, &[Answer])]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let script: Arc<HashMap<String, Vec<Answer>>> =
            Arc::new(script.iter().map(|(p, a)| (p.to_string(), a.to_vec())).collect());
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let seen = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let (script, counts, seen) = (script.clone(), counts.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (script, counts, seen) = (script.clone(), counts.clone(), seen.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            seen.lock().unwrap().push(Got {
                                path: path.clone(),
                                headers,
                                body,
                                at: SystemTime::now(),
                            });
                            let answer = {
                                let mut counts = counts.lock().unwrap();
                                let n = counts.entry(path.clone()).or_default();
                                *n += 1;
                                script
                                    .get(&path)
                                    .map(|a| a[(*n - 1).min(a.len() - 1)])
                                    .unwrap_or(Answer::Status(404))
                            };
                            let status = match answer {
                                Answer::Status(s) => s,
                                Answer::Hang => std::future::pending().await,
                            };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(StatusCode::from_u16(status).unwrap())
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}"),
            got,
            task,
        }
    }

    /// The requests to `path`, in the order they came.
    fn at(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a command to completion off the runtime's threads (the receiver runs on them).
async fn run_blocking(cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
}

/// The journal records of cutover `id`, as JSON.
fn journal(wd: &Workdir, id: &str) -> Vec<Value> {
    std::fs::read_to_string(wd.state().join("cutovers").join(id).join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events the default webhook entry is sent for `records`, by the vocabulary's mapping.
fn vocabulary(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let tag = r["event"].as_str().unwrap();
            match tag {
                "started" | "step_done" | "drift" | "adopted" => Some(tag.to_string()),
                "step_failed" | "rollback_requested" if r["trigger"] == "stalled" => Some("stalled".into()),
                "finished" => Some(r["outcome"].as_str().unwrap().to_string()),
                _ => None,
            }
        })
        .collect()
}

fn at(record: &Value) -> SystemTime {
    humantime::parse_rfc3339(record["at"].as_str().unwrap()).unwrap()
}

const HOOK_SECRET: &str = "it-webhook-secret-0123";
const PD_KEY: &str = "R0UT1NGKEY0123456789ABCDEFGHIJKL";
