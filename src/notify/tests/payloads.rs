//! The payload builders: Slack's Block Kit, PagerDuty's Events API v2, the webhook's body and
//! signature, from hand-made journals.

use super::*;

/// The change a judge's rollback ends with, for the payload tests.
fn rolled_back() -> Change {
    let mut fold = Fold::default();
    let mut events = vec![started()];
    events.extend(to_failing_bake());
    events.extend([
        Event::StepFailed {
            step: 2,
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
        },
        restored(),
    ]);
    for (seq, e) in events.into_iter().enumerate() {
        fold.push(seq as u64, &rec(e));
    }
    fold.push(10, &rec(finished(Outcome::RolledBack, JUDGE_REASON)))
}

#[test]
fn the_fold_keeps_the_facts_a_message_needs() {
    let c = rolled_back();
    assert_eq!(c.finished, Some((Outcome::RolledBack, JUDGE_REASON.to_string())));
    assert_eq!(c.names, [EventName::RolledBack]);
    assert_eq!(c.tag(), "finished");
    assert_eq!(c.at(), AT);
    let f = &c.facts;
    assert_eq!((f.id.as_str(), f.service.as_str()), ("c1", "checkout"));
    assert_eq!((f.live, f.new), (Some(Color::Blue), Some(Color::Green)));
    assert_eq!(f.weights, Some(Split::all_on(Color::Blue)));
    assert_eq!(f.verdict.as_ref().map(|v| v.failures), Some(2));
    assert_eq!(
        f.rollback,
        Some(Rollback {
            trigger: Trigger::Judge,
            reason: JUDGE_REASON.into(),
            by: "cutover".into(),
            heading: Outcome::RolledBack,
            step: Some("shift 50%".into()),
        })
    );
    // The step a rollback began at is the step of the messages that follow it.
    assert_eq!(f.step.as_deref(), Some("shift 50%"));
}

/// Block Kit's rules for what these messages use (header, section, context; text objects).
fn assert_block_kit(m: &Value) {
    let obj = m.as_object().unwrap();
    assert!(obj.keys().all(|k| k == "text" || k == "blocks"), "{m}");
    assert!(!m["text"].as_str().unwrap().is_empty());
    let blocks = m["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    let text_object = |t: &Value, max: usize| {
        assert!(matches!(t["type"].as_str(), Some("plain_text" | "mrkdwn")), "{t}");
        let s = t["text"].as_str().unwrap();
        assert!(!s.is_empty() && s.chars().count() <= max, "{t}");
    };
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                text_object(&b["text"], 150);
            }
            "section" => {
                assert!(b.get("text").is_some() || b.get("fields").is_some(), "{b}");
                if let Some(t) = b.get("text") {
                    text_object(t, 3000);
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().unwrap();
                    assert!(!f.is_empty() && f.len() <= 10, "{b}");
                    f.iter().for_each(|t| text_object(t, 2000));
                }
            }
            "context" => {
                let e = b["elements"].as_array().unwrap();
                assert!(!e.is_empty() && e.len() <= 10);
                e.iter().for_each(|t| text_object(t, 3000));
            }
            other => panic!("unexpected block {other}"),
        }
    }
}

#[test]
fn slack_says_the_outcome_with_the_reason_s_numbers_the_weights_and_a_link() {
    let c = rolled_back();
    let m = slack::message(EventName::RolledBack, &c, Some("https://ci.example.com/cutovers/{id}"));
    assert_block_kit(&m);
    let all = m.to_string();
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: checkout: rolled back: traffic back on blue"
    );
    // The reason with its numbers, escaped for mrkdwn.
    assert!(all.contains("5xx 30.00% (30/100) &gt; 5.00%"), "{all}");
    assert!(all.contains("*Weights*\\nblue 100% green 0% (weights 999/0)"), "{all}");
    assert!(
        all.contains("*Error rate*\\ngreen 30.00% (30/100) · blue 0.00% (0/100)"),
        "{all}"
    );
    assert!(all.contains("*Trigger*\\njudge"), "{all}");
    // The judge rolled back, not a person: no "By".
    assert!(!all.contains("*By*"), "{all}");
    assert!(all.contains("<https://ci.example.com/cutovers/c1|report>"), "{all}");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("checkout: rolled back: traffic back on blue — green error rate")
    );
}

#[test]
fn slack_names_who_rolled_back_and_who_must_approve() {
    let mut c = rolled_back();
    c.finished = Some((Outcome::RolledBackByOperator, "pager fired".into()));
    c.facts.rollback = Some(Rollback {
        trigger: Trigger::Operator,
        reason: "pager fired".into(),
        by: "alice@laptop".into(),
        heading: Outcome::RolledBackByOperator,
        step: None,
    });
    let m = slack::message(EventName::RolledBackByOperator, &c, None);
    assert_block_kit(&m);
    assert!(m.to_string().contains("*By*\\nalice@laptop"), "{m}");
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":leftwards_arrow_with_hook: checkout: rolled back by alice@laptop: traffic back on blue"
    );

    let approval = Change {
        seq: 7,
        record: json!({"at": AT, "event": "approval_requested", "step": 2, "approvers": ["alice", "bob"], "timeout_secs": 3600}),
        names: vec![EventName::ApprovalNeeded],
        rollback_started: false,
        traffic_restored: false,
        finished: None,
        facts: Facts {
            id: "c1".into(),
            service: "checkout".into(),
            step: Some("shift 100%".into()),
            ..Facts::default()
        },
    };
    let m = slack::message(EventName::ApprovalNeeded, &approval, None);
    assert_block_kit(&m);
    assert_eq!(
        m["blocks"][0]["text"]["text"],
        ":raised_hand: checkout: approval needed for shift 100%"
    );
    assert_eq!(
        m["blocks"][1]["text"]["text"],
        "waiting for alice, bob; times out in 1h: `cutover approve` or `cutover reject`"
    );
    let mut approved = approval.clone();
    approved.record = json!({"at": AT, "event": "approved", "step": 2, "by": "carol", "reason": "p99 fine"});
    let m = slack::message(EventName::Approved, &approved, None);
    assert!(m.to_string().contains("*By*\\ncarol"), "{m}");
    assert_eq!(m["blocks"][0]["text"]["text"], "checkout: shift 100% approved by carol");
}

#[test]
fn slack_escapes_its_control_characters() {
    assert_eq!(slack::escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
}

fn place() -> pagerduty::Place {
    pagerduty::Place {
        load_balancer: "app/prod/50dc6c495c0c9188".into(),
        blue: "checkout-blue".into(),
        green: "checkout-green".into(),
    }
}

/// PagerDuty Events API v2: the fields of a trigger and their types and enums.
fn assert_pagerduty_trigger(e: &Value) {
    let top: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = [
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "images",
        "links",
        "client",
        "client_url",
    ]
    .into();
    assert!(top.is_subset(&allowed), "{top:?}");
    assert_eq!(e["event_action"], "trigger");
    assert!(e["routing_key"].is_string() && e["dedup_key"].as_str().unwrap().len() <= 255);
    let p = &e["payload"];
    let fields: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = [
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    ]
    .into();
    assert!(fields.is_subset(&allowed), "{fields:?}");
    let summary = p["summary"].as_str().unwrap();
    assert!(!summary.is_empty() && summary.chars().count() <= pagerduty::SUMMARY_MAX);
    assert!(!p["source"].as_str().unwrap().is_empty());
    assert!(matches!(
        p["severity"].as_str(),
        Some("critical" | "error" | "warning" | "info")
    ));
    assert!(humantime::parse_rfc3339(p["timestamp"].as_str().unwrap()).is_ok());
    assert!(p["custom_details"].is_object());
}

#[test]
fn pagerduty_triggers_with_the_v2_schema_and_resolves_with_the_same_key() {
    let mut c = rolled_back();
    // The trigger goes out when the rollback begins.
    c.finished = None;
    c.rollback_started = true;
    let e = pagerduty::trigger(
        EventName::RolledBack,
        &c,
        "R0UT1NGKEY0123456789ABCDEFGHIJKL",
        &place(),
        Some("https://ci/{id}"),
    );
    assert_pagerduty_trigger(&e);
    assert_eq!(e["dedup_key"], "cutover-c1");
    let p = &e["payload"];
    assert_eq!(p["summary"], format!("checkout: rolling back: {JUDGE_REASON}"));
    assert_eq!(p["source"], "checkout");
    assert_eq!(p["severity"], "error");
    assert_eq!(p["timestamp"], AT);
    assert_eq!(p["component"], "checkout-green");
    assert_eq!(p["group"], "app/prod/50dc6c495c0c9188");
    assert_eq!(p["class"], "rolled_back");
    let d = &p["custom_details"];
    assert_eq!(d["trigger"], "judge");
    assert_eq!(d["error_rate"], 0.3);
    assert_eq!(
        (d["errors"].as_f64(), d["requests"].as_f64()),
        (Some(30.0), Some(100.0))
    );
    assert_eq!(d["live_error_rate"], 0.0);
    assert_eq!(d["weights"], json!({"blue": 100.0, "green": 0.0}));
    assert_eq!(d["step"], "shift 50%");
    assert_eq!(e["client_url"], "https://ci/c1");
    assert_eq!(e["links"][0]["href"], "https://ci/c1");

    let r = pagerduty::resolve(&c, "R0UT1NGKEY0123456789ABCDEFGHIJKL");
    assert_eq!(
        r,
        json!({"routing_key": "R0UT1NGKEY0123456789ABCDEFGHIJKL", "event_action": "resolve", "dedup_key": "cutover-c1"})
    );
}

#[test]
fn pagerduty_severity_follows_the_outcome_and_the_summary_is_cut_at_1024() {
    use pagerduty::Severity;
    assert_eq!(Severity::of(EventName::Unsafe), Severity::Critical);
    assert_eq!(Severity::of(EventName::RolledBack), Severity::Error);
    assert_eq!(Severity::of(EventName::Stalled), Severity::Error);
    assert_eq!(Severity::of(EventName::RolledBackByOperator), Severity::Warning);
    assert_eq!(Severity::of(EventName::Promoted), Severity::Info);
    let mut c = rolled_back();
    c.finished = Some((Outcome::Unsafe, "x".repeat(5000)));
    let e = pagerduty::trigger(EventName::Unsafe, &c, "k", &place(), None);
    assert_pagerduty_trigger(&e);
    assert_eq!(e["payload"]["severity"], "critical");
    let summary = e["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    assert!(e.get("links").is_none());
}

#[test]
fn the_webhook_body_is_the_journal_record_with_the_cutover_and_service() {
    let c = rolled_back();
    let body = webhook::body(&c);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["at"], AT);
    assert_eq!(v["event"], "finished");
    assert_eq!(v["outcome"], "rolled_back");
    assert_eq!(v["reason"], JUDGE_REASON);
    assert_eq!(v["final_split"], json!({"blue": 999, "green": 0, "others": 0}));
    assert_eq!(v["cutover_id"], "c1");
    assert_eq!(v["service"], "checkout");
    assert_eq!(webhook::delivery_id("c1", 10, 2), "c1.10.2");
}

#[test]
fn the_signature_is_hmac_sha256_of_the_body() {
    // RFC 4231, test case 2.
    assert_eq!(
        webhook::signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
