//! Delivery: which errors are retried, where the daemon starts, and a notifier over the
//! in-memory store against a local receiver.

use super::*;

#[test]
fn only_errors_that_may_pass_are_retried() {
    use deliver::DeliveryError;
    let status = |status| DeliveryError::Status {
        status,
        body: String::new(),
        retry_after: None,
    };
    for (code, retry) in [
        (500, true),
        (502, true),
        (503, true),
        (408, true),
        (429, true),
        (400, false),
        (401, false),
        (403, false),
        (404, false),
        (410, false),
        (302, false),
    ] {
        assert_eq!(status(code).retryable(), retry, "{code}");
    }
    assert!(DeliveryError::Transport("connection refused".into()).retryable());
}

#[test]
fn the_daemon_starts_at_its_own_part_of_a_journal() {
    let rb = |trigger| {
        rec(Event::RollbackRequested {
            trigger,
            reason: "r".into(),
            by: "b".into(),
        })
    };
    let adopted = || {
        rec(Event::Adopted {
            by: "serve a".into(),
            previous_owner: None,
            action: "resume".into(),
        })
    };
    let step = || rec(Event::StepStarted { step: 0 });
    assert_eq!(Since::daemon(&[rec(started())]), Since::Beginning);
    assert_eq!(Since::daemon(&[rec(started()), step(), adopted()]), Since::Seq(2));
    assert_eq!(
        Since::daemon(&[rec(started()), step(), adopted(), rb(Trigger::Orphaned)]),
        Since::Seq(2)
    );
    // An API rollback of an orphan: the operator's records are the owner's past.
    assert_eq!(
        Since::daemon(&[rec(started()), step(), adopted(), step(), rb(Trigger::Operator)]),
        Since::Seq(5)
    );
}

/// A receiver on 127.0.0.1:0 that answers each request with the next of `statuses` (the last
/// one repeats) and records `(path, headers, body)`.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(vec![]));
    let seen = got.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![];
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let (head, body_start, len) = loop {
                let k = sock.read(&mut chunk).await.unwrap();
                if k == 0 {
                    break (String::new(), 0, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    break (head, i + 4, len);
                }
            };
            while buf.len() < body_start + len {
                let k = sock.read(&mut chunk).await.unwrap();
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            seen.lock()
                .unwrap()
                .push((path, head.to_ascii_lowercase(), buf[body_start..].to_vec()));
            let status = statuses[n.min(statuses.len() - 1)];
            n += 1;
            let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 7\r\nconnection: close\r\n\r\nno_team");
            let _ = sock.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), got)
}

fn outgoing() -> deliver::Outgoing {
    deliver::Outgoing {
        seq: 3,
        what: "promoted",
        body: b"{}".to_vec(),
        headers: vec![("x-cutover-event", "promoted".into())],
    }
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_says_what_the_receiver_said() {
    let (url, got) = receiver(vec![404]).await;
    let url = reqwest::Url::parse(&format!("{url}/services/T0/B0/SECRET")).unwrap();
    let err = deliver::deliver(&deliver::client().unwrap(), &url, &outgoing())
        .await
        .unwrap_err();
    assert_eq!(err.1, 1, "one attempt");
    assert_eq!(err.0.to_string(), "HTTP 404: no_team");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].1.contains("x-cutover-event: promoted"), "{}", got[0].1);
}

#[tokio::test]
async fn a_transport_error_does_not_name_the_url() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/services/T0/B0/SECRET")).unwrap();
    let err = deliver::attempt(&deliver::client().unwrap(), &url, &outgoing())
        .await
        .unwrap_err();
    assert!(err.retryable());
    let text = err.to_string();
    assert!(!text.contains("SECRET") && !text.contains(&port.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notifier_sends_in_order_once_per_process_and_skips_an_entry_without_its_url() {
    let (url, got) = receiver(vec![200]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook-url"), format!("{url}/hook\n")).unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let text = format!(
        "{}\n[[notify]]\nkind = \"webhook\"\nurl_file = \"hook-url\"\nsecret_file = \"secret\"\n\n[[notify]]\nkind = \"slack\"\nurl_file = \"missing\"\nevents = [\"started\"]\n",
        PLAN
    );
    let plan = crate::config::parse(&dir.path().join("plan.toml"), &text).unwrap();
    let store = crate::journal::memory::MemoryStore::default();
    let id = format!("notify-unit-{}", std::process::id());
    store.create_with_id(&id);
    let store: Arc<dyn crate::journal::Store> = Arc::new(store);
    let lease = Arc::new(store.try_lock("arn", "run test").await.unwrap().unwrap());
    let journal = Journal::owned(store.clone(), &id, lease.clone());
    for e in [
        started(),
        Event::StepStarted { step: 0 },
        Event::StepDone { step: 0, elapsed_ms: 2 },
    ] {
        journal.append(&e).await.unwrap();
    }
    let before = deliver::counts::snapshot();
    let notifier = Notifier::start(&plan, &journal, Since::Beginning, Duration::from_secs(5), &http());
    tokio::time::sleep(POLL * 2).await;
    // Regression: the notifier read through the owner's journal handle, so it held the target's
    // lease for as long as it drained after the engine task had ended. The owner lets go: the
    // lease is free at once, though the notifier goes on.
    drop((journal, lease));
    let journal = Journal::new(store.clone(), &id);
    assert!(
        store.try_lock("arn", "next").await.unwrap().is_some(),
        "the notifier keeps the lease"
    );
    journal.append(&Event::StepStarted { step: 1 }).await.unwrap();
    journal
        .append(&Event::StepDone { step: 1, elapsed_ms: 3 })
        .await
        .unwrap();
    notifier.finish().await;
    // A second notifier of the same cutover in the same process sends nothing again.
    Notifier::start(&plan, &journal, Since::Beginning, Duration::from_secs(5), &http())
        .finish()
        .await;

    let got = got.lock().unwrap();
    let events: Vec<(String, String)> = got
        .iter()
        .map(|(path, head, body)| {
            let v: Value = serde_json::from_slice(body).unwrap();
            let event = head
                .lines()
                .find_map(|l| l.strip_prefix("x-cutover-event: "))
                .unwrap()
                .to_string();
            // Signed over the exact bytes received.
            let sig = head
                .lines()
                .find_map(|l| l.strip_prefix("x-cutover-signature: "))
                .unwrap();
            assert_eq!(sig, webhook::signature(b"s3cret", body));
            assert_eq!(v["cutover_id"], "c1");
            assert_eq!(path, "/hook");
            (event, v["event"].as_str().unwrap().to_string())
        })
        .collect();
    let want = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        events,
        [
            want("started", "started"),
            want("step_done", "step_done"),
            want("step_done", "step_done")
        ]
    );
    let after = deliver::counts::snapshot();
    let delta = |k: (&'static str, &'static str)| after[&k] - before[&k];
    assert!(delta(("webhook", "delivered")) >= 3);
    // The Slack entry's URL file is missing: its `started` is skipped, and counted so.
    assert!(delta(("slack", "skipped")) >= 1);
}

/// The process's notification client, as [`crate::aws::HttpClients`] builds it.
fn http() -> Result<reqwest::Client, String> {
    deliver::client().map_err(|e| e.to_string())
}
