//! Unit tests of `[[notify]]`: the brief's entries with their defaults, then one case per
//! error, each naming its key; and reading a secret at run time.

use super::*;
use crate::config::parse;

const BASE: &str = r#"
[service]
name = "checkout"

[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod/50dc6c495c0c9188/f2f7dc8efc522ab2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-blue/73e2d6bc24d8a067"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-green/2453ed029918f21f"

[rollback]
max_error_rate = 0.001
"#;

fn plan(notify: &str) -> Result<crate::config::Plan, PlanError> {
    parse(Path::new("/etc/cutover/plans/plan.toml"), &format!("{BASE}\n{notify}"))
}

/// The `[[notify]]` text is rejected at `key` with a reason containing `reason`.
fn check_err(notify: &str, key: &str, reason: &str) {
    let e = plan(notify).expect_err("plan should be rejected");
    assert_eq!(e.key, key, "wrong key for {notify}: {e}");
    assert!(e.reason.contains(reason), "reason {:?} lacks {reason:?}", e.reason);
    assert!(e.to_string().starts_with("/etc/cutover/plans/plan.toml: "), "{e}");
}

#[test]
fn the_brief_s_three_entries_parse_with_their_defaults() {
    let p = plan(
        r#"
[[notify]]
kind = "slack"
url_env = "SLACK_WEBHOOK_URL"
events = ["rolled_back", "rolled_back_by_operator", "promoted", "unsafe", "approval_needed"]
report_url = "https://ci.example.com/cutovers/{id}"

[[notify]]
kind = "pagerduty"
routing_key_env = "PD_ROUTING_KEY"

[[notify]]
kind = "webhook"
url_file = "secrets/webhook-url"
secret_env = "CUTOVER_WEBHOOK_SECRET"
"#,
    )
    .unwrap();
    let [slack, pd, hook] = &p.notify[..] else {
        panic!("three entries: {:?}", p.notify)
    };
    assert_eq!(slack.kind, NotifyKind::Slack);
    assert_eq!(slack.credential.source, Source::Env("SLACK_WEBHOOK_URL".into()));
    assert_eq!(slack.credential.key, "notify[0].url_env");
    assert_eq!(slack.events.len(), 5);
    assert_eq!(
        slack.report_url.as_deref(),
        Some("https://ci.example.com/cutovers/{id}")
    );
    assert_eq!(pd.kind, NotifyKind::PagerDuty);
    assert_eq!(pd.endpoint.as_deref(), Some(PAGERDUTY_EVENTS_URL));
    assert_eq!(pd.events, EventName::defaults(NotifyKind::PagerDuty));
    assert!(pd.resolve);
    assert_eq!(hook.kind, NotifyKind::Webhook);
    // A file path is relative to the plan's directory.
    assert_eq!(
        hook.credential.source,
        Source::File("/etc/cutover/plans/secrets/webhook-url".into())
    );
    assert_eq!(
        hook.signing.as_ref().map(|s| &s.source),
        Some(&Source::Env("CUTOVER_WEBHOOK_SECRET".into()))
    );
    assert_eq!(hook.events.len(), EventName::ALL.len());
}

#[test]
fn a_plan_without_notify_has_none() {
    assert!(plan("").unwrap().notify.is_empty());
}

#[test]
fn every_event_name_round_trips() {
    for e in EventName::ALL {
        assert_eq!(EventName::parse(e.as_str()), Some(e));
    }
    for o in [
        Outcome::Promoted,
        Outcome::RolledBack,
        Outcome::RolledBackByOperator,
        Outcome::NotStarted,
        Outcome::Unsafe,
        Outcome::Error,
    ] {
        assert_eq!(EventName::of_outcome(o).as_str(), o.as_str());
    }
}

#[test]
fn kind_errors() {
    check_err(
        "[[notify]]\nkind = \"sns\"\nurl_env = \"X\"",
        "notify[0].kind",
        "\"sns\" is not a kind",
    );
    check_err("[[notify]]\nurl_env = \"X\"", "notify[0].kind", "missing");
}

#[test]
fn an_unknown_key_names_it() {
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nchannel = \"#ops\"",
        "notify[0].channel",
        "unknown field",
    );
}

#[test]
fn credential_errors() {
    check_err("[[notify]]\nkind = \"slack\"", "notify[0].url_env", "missing");
    check_err("[[notify]]\nkind = \"webhook\"", "notify[0].url_env", "missing");
    check_err(
        "[[notify]]\nkind = \"pagerduty\"",
        "notify[0].routing_key_env",
        "missing",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nurl_file = \"x\"",
        "notify[0].url_file",
        "not both",
    );
    check_err(
        "[[notify]]\nkind = \"pagerduty\"\nrouting_key_env = \"X\"\nrouting_key_file = \"x\"",
        "notify[0].routing_key_file",
        "not both",
    );
    check_err(
        "[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\nsecret_env = \"S\"\nsecret_file = \"s\"",
        "notify[0].secret_file",
        "not both",
    );
    // The value instead of the variable's name: the most likely mistake, and a leak.
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"https://hooks.slack.com/services/T0/B0/x\"",
        "notify[0].url_env",
        "not an environment variable name",
    );
    check_err(
        "[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\nsecret_env = \"1BAD\"",
        "notify[0].secret_env",
        "not an environment variable name",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_file = \" \"",
        "notify[0].url_file",
        "must not be empty",
    );
    // A URL in clear is refused where it is a credential.
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/x\"",
        "notify[0].url",
        "never written in the plan",
    );
}

#[test]
fn keys_of_another_kind_are_errors() {
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nrouting_key_env = \"K\"",
        "notify[0].routing_key_env",
        "not a key of a slack entry",
    );
    check_err(
        "[[notify]]\nkind = \"pagerduty\"\nrouting_key_env = \"K\"\nurl_env = \"X\"",
        "notify[0].url_env",
        "not a key of a pagerduty entry",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nsecret_env = \"S\"",
        "notify[0].secret_env",
        "only a webhook's bodies are signed",
    );
    check_err(
        "[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\nresolve = false",
        "notify[0].resolve",
        "only PagerDuty alerts are resolved",
    );
    check_err(
        "[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\nreport_url = \"https://x/{id}\"",
        "notify[0].report_url",
        "not a key of a webhook entry",
    );
}

#[test]
fn url_errors() {
    check_err(
        "[[notify]]\nkind = \"pagerduty\"\nrouting_key_env = \"K\"\nurl = \"events.pagerduty.com\"",
        "notify[0].url",
        "not an http(s) URL",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nreport_url = \"https://ci/{service}/{id}\"",
        "notify[0].report_url",
        "the only placeholder is {id}",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nreport_url = \"ftp://ci/{id}\"",
        "notify[0].report_url",
        "not an http(s) URL",
    );
}

#[test]
fn event_errors() {
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nevents = [\"promoted\", \"rollback\"]",
        "notify[0].events[1]",
        "\"rollback\" is not an event: started, step_done,",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nevents = [\"promoted\", \"promoted\"]",
        "notify[0].events[1]",
        "listed twice",
    );
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\nevents = []",
        "notify[0].events",
        "empty",
    );
    // The second entry's error names the second entry.
    check_err(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"X\"\n\n[[notify]]\nkind = \"webhook\"\nurl_env = \"Y\"\nevents = [\"Started\"]",
        "notify[1].events[0]",
        "not an event",
    );
}

#[test]
fn too_many_entries() {
    let one = "[[notify]]\nkind = \"webhook\"\nurl_env = \"X\"\n";
    check_err(&one.repeat(MAX_NOTIFY + 1), "notify", "at most 20");
    assert_eq!(plan(&one.repeat(MAX_NOTIFY)).unwrap().notify.len(), MAX_NOTIFY);
}

#[test]
fn a_secret_is_read_at_run_time_and_its_absence_names_the_key_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "R0UT1NGKEY\n").unwrap();
    std::fs::write(dir.path().join("blank"), "\n").unwrap();
    let file = |name: &str| Secret {
        key: "notify[0].routing_key_file".into(),
        source: Source::File(dir.path().join(name)),
    };
    assert_eq!(file("key").read().unwrap(), "R0UT1NGKEY");
    let e = file("missing").read().unwrap_err();
    assert!(e.starts_with("notify[0].routing_key_file: cannot read "), "{e}");
    assert!(file("blank").read().unwrap_err().ends_with("is empty"));
    let env = Secret {
        key: "notify[0].url_env".into(),
        source: Source::Env("CUTOVER_TEST_NOTIFY_SURELY_UNSET".into()),
    };
    assert_eq!(
        env.read().unwrap_err(),
        "notify[0].url_env: the environment variable CUTOVER_TEST_NOTIFY_SURELY_UNSET is not set"
    );
}
