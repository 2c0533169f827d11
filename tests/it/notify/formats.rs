//! The three formats from one rolled-back cutover: PagerDuty pages then resolves, Slack gets the
//! numbers, every webhook record is signed.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::e2e::{profile, steps_with_deploy};
use crate::util::*;

use super::schemas::{assert_signed, assert_valid, pagerduty_schema, slack_schema};
use super::{Answer, Got, HOOK_SECRET, PD_KEY, Receiver, journal, run_blocking, vocabulary};

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_cutover_pages_then_resolves_tells_slack_the_numbers_and_signs_every_webhook_record() {
    let rx = Receiver::start(&[
        ("/slack", &[Answer::Status(200)]),
        ("/pd", &[Answer::Status(202)]),
        ("/hook", &[Answer::Status(204)]),
    ])
    .await;
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile(0.3, 0.05));
    std::fs::write(wd.path().join("hook-secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let notify = format!(
        r#"
[[notify]]
kind = "slack"
url_env = "IT_SLACK_URL"
report_url = "https://ci.example.com/cutovers/{{id}}"

[[notify]]
kind = "pagerduty"
routing_key_env = "IT_PD_KEY"
url = "{}/pd"

[[notify]]
kind = "webhook"
url_env = "IT_HOOK_URL"
secret_file = "hook-secret"
"#,
        rx.url
    );
    let steps = format!("{}{QUICK_STEPS}", steps_with_deploy(""));
    let plan = wd.write_plan(&format!("{}{notify}", plan(&world, "", &steps)));
    let mut cmd = wd.cutover(
        &world.endpoint,
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    );
    cmd.env("IT_SLACK_URL", format!("{}/slack", rx.url))
        .env("IT_PD_KEY", PD_KEY)
        .env("IT_HOOK_URL", format!("{}/hook", rx.url));
    let out = run_blocking(cmd).await;
    assert_eq!(out.status.code(), Some(3));
    let summary = json(&out);
    let id = summary["id"].as_str().unwrap().to_string();
    let records = journal(&wd, &id);
    let finished = records.last().unwrap();
    assert_eq!(finished["outcome"], "rolled_back");
    let reason = finished["reason"].as_str().unwrap();
    assert!(reason.contains("error rate too high"), "{reason}");

    // PagerDuty: a trigger when the rollback began, then the resolve, one alert.
    let pd = rx.at("/pd");
    let schema = pagerduty_schema();
    pd.iter()
        .for_each(|g| assert_valid(&schema, &g.json(), "a PagerDuty event"));
    let events: Vec<Value> = pd.iter().map(Got::json).collect();
    let actions: Vec<&str> = events.iter().map(|e| e["event_action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["trigger", "resolve"], "{events:#?}");
    let (trigger, resolve) = (&events[0], &events[1]);
    eprintln!("--- PagerDuty, as sent:\n{trigger:#}\n{resolve:#}");
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["dedup_key"], format!("cutover-{id}"));
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    let p = &trigger["payload"];
    assert_eq!(p["severity"], "error");
    assert_eq!(p["source"], "it");
    assert_eq!(p["class"], "rolled_back");
    let failed = records.iter().find(|r| r["event"] == "step_failed").unwrap();
    assert_eq!(
        p["timestamp"], failed["at"],
        "the trigger is the record that began the rollback"
    );
    assert_eq!(
        p["summary"],
        format!("it: rolling back: {}", failed["reason"].as_str().unwrap())
    );
    let d = &p["custom_details"];
    assert_eq!(d["trigger"], "judge");
    assert_eq!(d["step"], "shift 50%");
    assert_eq!(d["weights"], json!({"blue": 50.0, "green": 50.0}));
    assert!(d["error_rate"].as_f64().unwrap() > 0.05, "{d}");
    assert!(d["requests"].as_f64().unwrap() >= 20.0, "{d}");

    // Slack: the outcome, with the reason's numbers, the weights and the report link.
    let slack = rx.at("/slack");
    assert_eq!(slack.len(), 1, "Slack's defaults: the outcome only");
    let m = slack[0].json();
    eprintln!("--- Slack, as sent:\n{m:#}");
    assert_valid(&slack_schema(), &m, "the Slack message");
    let text = m.to_string();
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: it: rolled back: traffic back on blue"
    );
    let escaped = reason.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    assert_eq!(
        m["blocks"][1]["text"]["text"], escaped,
        "the journal's reason, numbers and all"
    );
    assert!(
        text.contains("*Weights*\\nblue 100% green 0% (weights 999/0)"),
        "{text}"
    );
    assert!(text.contains("*Error rate*\\ngreen "), "{text}");
    assert!(
        text.contains(&format!("<https://ci.example.com/cutovers/{id}|report>")),
        "{text}"
    );

    // The webhook: every subscribed record, signed, as the journal holds it.
    let hook = rx.at("/hook");
    let last = hook.last().expect("webhook deliveries");
    eprintln!(
        "--- webhook, as sent: headers {:?}\n{}",
        last.headers,
        String::from_utf8_lossy(&last.body)
    );
    let names: Vec<&str> = hook.iter().map(|g| g.header("x-cutover-event")).collect();
    assert_eq!(names, vocabulary(&records), "every subscribed record, in order");
    assert_eq!(names.first(), Some(&"started"));
    assert_eq!(names.last(), Some(&"rolled_back"));
    let deliveries: BTreeSet<&str> = hook.iter().map(|g| g.header("x-cutover-delivery")).collect();
    assert_eq!(deliveries.len(), hook.len(), "a delivery id is unique per delivery");
    for g in &hook {
        assert_signed(g, HOOK_SECRET.as_bytes());
        let body = g.json();
        assert_eq!(body["cutover_id"], id.as_str());
        assert_eq!(body["service"], "it");
        let same = records
            .iter()
            .find(|r| r["at"] == body["at"] && r["event"] == body["event"])
            .unwrap_or_else(|| panic!("no journal record like {body}"));
        let mut same = same.clone();
        same["cutover_id"] = json!(id);
        same["service"] = json!("it");
        assert_eq!(
            body, same,
            "the body is the journal record as journaled, plus cutover_id and service"
        );
    }
}
