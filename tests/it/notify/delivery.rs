//! Delivery: a receiver failing twice gets it on the third try, a refusal is not retried, and a
//! receiver that never answers or is down does not hold the rollback back.

use std::time::Instant;

use serde_json::json;

use crate::e2e::profile;
use crate::util::*;

use super::schemas::{assert_valid, pagerduty_schema};
use super::{Answer, PD_KEY, Receiver, at, journal, run_blocking};

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_twice_gets_the_delivery_on_the_third_try_and_a_refusal_is_not_retried() {
    let rx = Receiver::start(&[
        (
            "/flaky",
            &[Answer::Status(500), Answer::Status(500), Answer::Status(200)],
        ),
        ("/refuse", &[Answer::Status(400)]),
    ])
    .await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    // A verify whose check fails: the cutover ends not started, fast.
    let steps = QUICK_STEPS.replace(r#"command = ["true"]"#, r#"command = ["false"]"#);
    let notify = format!(
        r#"
[[notify]]
kind = "webhook"
url_env = "IT_FLAKY_URL"
events = ["not_started"]

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "{}/refuse"
events = ["not_started"]

[[notify]]
kind = "slack"
url_env = "IT_SLACK_URL_NOT_SET"
"#,
        rx.url
    );
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", &steps)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_FLAKY_URL", format!("{}/flaky", rx.url))
        .env("IT_PD_KEY", PD_KEY)
        .env_remove("IT_SLACK_URL_NOT_SET");
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(5));
    let log = String::from_utf8_lossy(&out.stderr);

    let flaky = rx.at("/flaky");
    assert_eq!(flaky.len(), 3, "500, 500, then 200 on the third try");
    assert!(flaky.iter().all(|g| g.header("x-cutover-event") == "not_started"));
    assert!(
        flaky.iter().all(|g| g.body == flaky[0].body && g.header("x-cutover-delivery") == flaky[0].header("x-cutover-delivery")),
        "each retry is the same delivery"
    );
    assert!(
        !log.contains("notify[0]"),
        "a delivery that got through logs nothing: {log}"
    );

    let refused = rx.at("/refuse");
    assert_eq!(refused.len(), 1, "a 400 is not retried");
    assert_valid(&pagerduty_schema(), &refused[0].json(), "a PagerDuty event");
    assert!(
        log.contains("notify[1] (pagerduty): not_started (journal record")
            && log.contains("not delivered after 1 attempt: HTTP 400: ok"),
        "{log}"
    );
    // A missing variable: one warning, and the cutover went on.
    assert_eq!(
        log.matches("notify[2] (slack): notify[2].url_env: the environment variable IT_SLACK_URL_NOT_SET is not set")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_or_is_down_does_not_hold_the_rollback_back() {
    let rx = Receiver::start(&[("/hang", &[Answer::Hang])]).await;
    // A port nobody listens on: PagerDuty is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    let notify = format!(
        r#"
[[notify]]
kind = "webhook"
url_env = "IT_HANG_URL"

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "http://{down}/v2/enqueue"
"#
    );
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", QUICK_STEPS)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_HANG_URL", format!("{}/hang", rx.url))
        .env("IT_PD_KEY", PD_KEY);
    let started = Instant::now();
    let out = run_blocking(cmd).await;
    let wall = started.elapsed();
    assert_eq!(out.status.code(), Some(3));
    let id = json(&out)["id"].as_str().unwrap().to_string();
    let records = journal(&wd, &id);
    let tags: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();

    // The rollback as the journal tells it: the judge's failure, then traffic back on blue at
    // once (no record between them), then the outcome.
    let failed = tags.iter().position(|t| *t == "step_failed").expect("a failed step");
    assert_eq!(records[failed]["trigger"], "judge");
    assert_eq!(tags[failed + 1], "traffic_restored", "{tags:?}");
    assert_eq!(
        records[failed + 1]["split"],
        json!({"blue": 999, "green": 0, "others": 0})
    );
    assert_eq!(records.last().unwrap()["outcome"], "rolled_back");

    // Meanwhile the webhook never got past its first delivery: every request it received is the
    // `started` record (retried after each attempt timed out), and the first came before the
    // rollback was decided. So the whole cutover, the rollback included, ran while a delivery
    // hung, and the restore followed the failure directly.
    let hang = rx.at("/hang");
    assert!(!hang.is_empty(), "the webhook was tried");
    assert!(
        hang.iter()
            .all(|g| g.header("x-cutover-delivery") == format!("{id}.0.0")),
        "{:?}",
        hang.iter().map(|g| g.header("x-cutover-delivery")).collect::<Vec<_>>()
    );
    assert!(
        hang[0].at <= at(&records[failed]),
        "the hung delivery began before the rollback"
    );
    let restore = at(&records[failed + 1])
        .duration_since(at(&records[failed]))
        .unwrap_or_default();
    eprintln!("rollback decided → traffic restored: {restore:?} (journal times); the run took {wall:?}");

    // At the end the queued deliveries get 10 s, then are dropped and said so.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("notify[0] (webhook): ") && log.contains("not sent within 10s of the end: dropped"),
        "{log}"
    );
    assert!(
        log.contains("notify[1] (pagerduty): "),
        "PagerDuty being down is logged: {log}"
    );
}
