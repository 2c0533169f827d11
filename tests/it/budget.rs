//! Many cutovers inside the account's API budget (issue 12): shared reads and the budget's urgent
//! lane, through a real daemon against moto, with the fault proxy's per-operation counters
//! counting the calls it makes; and the shared CloudWatch reads at the adapter.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, PathPatternConditionConfig, RuleCondition, TargetGroupTuple,
};
use aws_smithy_types::DateTime;
use cutover::color::{Color, Split};
use cutover::metrics::{CloudWatch, CloudWatchReads, Metrics};
use serde_json::{Value, json};

use crate::daemon::{Serve, api};
use crate::fault_proxy::{FaultProxy, Faults, Rule};
use crate::util::*;

/// One step: everything on the new colour, then a long bake (no traffic is published, so every
/// poll judges "no data" and the bake holds: the steady state of many cutovers polling).
const BAKING: &str = r#"
[[steps]]
action = "shift"
weight = 100
bake = "10m"
"#;

/// `n` listener rules on the world's listener, each forwarding all to blue; their ARNs.
async fn rules(world: &World, n: usize) -> Vec<String> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk(&world.endpoint).await);
    let mut arns = vec![];
    for k in 1..=n {
        let forward = ForwardActionConfig::builder()
            .target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(&world.blue)
                    .weight(1)
                    .build(),
            )
            .target_groups(
                TargetGroupTuple::builder()
                    .target_group_arn(&world.green)
                    .weight(0)
                    .build(),
            )
            .build();
        let out = elb
            .create_rule()
            .listener_arn(&world.listener_arn)
            .priority(k as i32 + 10)
            .conditions(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(
                        PathPatternConditionConfig::builder()
                            .values(format!("/svc{k}/*"))
                            .build(),
                    )
                    .build(),
            )
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .forward_config(forward)
                    .build(),
            )
            .send()
            .await
            .expect("create a listener rule");
        arns.push(out.rules()[0].rule_arn().unwrap().to_string());
    }
    arns
}

/// A plans directory with `svc{k}.toml` on each rule.
fn plans(wd: &Workdir, world: &World, rules: &[String]) -> PathBuf {
    plans_polling(wd, world, rules, "1s")
}

/// [`plans`] with polls every `poll`.
fn plans_polling(wd: &Workdir, world: &World, rules: &[String], poll: &str) -> PathBuf {
    let dir = wd.path().join("plans");
    std::fs::create_dir_all(&dir).unwrap();
    for (k, rule) in rules.iter().enumerate() {
        let w = World {
            rule_arn: Some(rule.clone()),
            ..world.clone()
        };
        let text = plan(&w, "", BAKING).replace("poll_interval = \"1s\"", &format!("poll_interval = \"{poll}\""));
        std::fs::write(dir.join(format!("svc{k}.toml")), text).unwrap();
    }
    dir
}

/// Starts a cutover of every plan and waits until all of them bake at 100 %; their ids.
async fn start_baking(s: &Serve, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for k in 0..n {
        let (code, v) = api(s, "POST", "/v1/cutovers", Some(json!({"plan": format!("svc{k}")}))).await;
        assert_eq!(code, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let start = Instant::now();
    for id in &ids {
        loop {
            let (code, v) = api(s, "GET", &format!("/v1/cutovers/{id}"), None).await;
            assert_eq!(code, 200, "{v}");
            if v["step"] == "shift 100%" && v["weights"]["green"] == 100.0 && v["last_verdict"].is_object() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(90), "{id} is not baking: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ids
}

/// The daemon's `/metrics`, `name{labels}` → value.
async fn scrape(s: &Serve) -> HashMap<String, f64> {
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// The journal of cutover `id` in the state directory, one record per line.
fn journal(wd: &Workdir, id: &str) -> Vec<Value> {
    std::fs::read_to_string(wd.state().join("cutovers").join(id).join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Regression (issue 12): every cutover polled on its own, so 100 cutovers made 100
/// GetMetricData and 100 DescribeRules calls a tick. Eight cutovers on one daemon, polling every
/// second on the same ticks, now share them: far fewer calls than polls.
#[tokio::test(flavor = "multi_thread")]
async fn many_cutovers_on_one_daemon_share_their_reads() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let rules = rules(&world, 8).await;
    let wd = Workdir::new();
    let s = Serve::start(&wd, proxy.endpoint(), &plans(&wd, &world, &rules));
    start_baking(&s, rules.len()).await;
    let (m0, c0) = (scrape(&s).await, proxy.snapshot());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (m1, c1) = (scrape(&s).await, proxy.snapshot());
    let polls = get(&m1, "cutover_polls_total") - get(&m0, "cutover_polls_total");
    let calls = |op: &str| (c1.op(op).requests - c0.op(op).requests) as f64;
    assert!(polls >= 16.0, "too few polls to tell: {polls}");
    for op in ["GetMetricData", "DescribeRules"] {
        // Alone, each poll makes one call of each; shared, a tick's polls make one.
        assert!(
            calls(op) * 3.0 <= polls,
            "{op}: {} calls for {polls} polls of 8 cutovers\n{c1}",
            calls(op)
        );
    }
    assert_eq!(calls("DescribeListeners"), 0.0, "a rule's cutover read its listener");
}

/// A rollback's write and read-back go in the budget's urgent lane: with the Describe budget
/// squeezed by AWS's throttling (and a small one to begin with), the polls wait for tokens, the
/// rollback does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_is_not_delayed_by_a_throttled_poll_budget() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let rules = rules(&world, 6).await;
    let wd = Workdir::new();
    let plans = plans(&wd, &world, &rules);
    let s = Serve::start_with(
        &wd,
        proxy.endpoint(),
        &plans,
        "127.0.0.1:0",
        &["--budget", "elbv2-describe=1/4"],
    );
    let ids = start_baking(&s, rules.len()).await;
    proxy.set(Faults::none().throttle(Rule::always().only(["DescribeRules"]).lasting(Duration::from_secs(4))));
    let start = Instant::now();
    loop {
        let m = scrape(&s).await;
        let rate = get(&m, "cutover_budget_rate_per_second{class=\"elbv2-describe\"}");
        if get(&m, "cutover_aws_throttles_total{operation=\"DescribeRules\"}") > 0.0 && rate < 0.5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the budget did not shrink: rate {rate}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(start.elapsed())).await;
    proxy.clear();
    let before = scrape(&s).await;
    let urgent = |m: &HashMap<String, f64>, class: &str| {
        get(
            m,
            &format!("cutover_budget_delayed_total{{class=\"{class}\",lane=\"urgent\"}}"),
        )
    };
    let (code, v) = api(
        &s,
        "POST",
        &format!("/v1/cutovers/{}/rollback", ids[0]),
        Some(json!({"reason": "budget test"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["traffic_restored"], true, "{v}");
    let w = World {
        rule_arn: Some(rules[0].clone()),
        ..world.clone()
    };
    assert_eq!(weights(&w).await, Split::all_on(Color::Blue));
    let after = scrape(&s).await;
    for class in ["elbv2-describe", "elbv2-modify"] {
        assert_eq!(
            urgent(&after, class),
            urgent(&before, class),
            "the rollback waited for a {class} token"
        );
        assert!(
            get(
                &after,
                &format!("cutover_budget_calls_total{{class=\"{class}\",lane=\"urgent\"}}")
            ) >= 1.0
        );
    }
    assert!(
        get(
            &after,
            "cutover_budget_delayed_total{class=\"elbv2-describe\",lane=\"poll\"}"
        ) > 0.0,
        "the polls never waited: the budget was not squeezed"
    );
}

/// Issue 12, item 4: on the DynamoDB store, a baking cutover read its journal every second (a
/// `Query` each, billed), five a poll with 5-second polls. Its owner now reads once a poll (after
/// its own verdicts, or when a poll has passed without news): at most one `Query` per poll per
/// cutover, besides the rescue loop's listing of the ids every 5 s.
#[tokio::test(flavor = "multi_thread")]
async fn on_the_dynamodb_store_a_baking_cutover_reads_its_journal_once_a_poll() {
    const STORE: &str = "dynamodb://cutover-budget";
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let rules = rules(&world, 4).await;
    let wd = Workdir::new();
    let out = run(wd.cutover(&moto.endpoint, &["store", "init", "--store", STORE]));
    assert_eq!(out.status.code(), Some(0), "store init");
    let plans = plans_polling(&wd, &world, &rules, "5s");
    let s = Serve::start_with(&wd, proxy.endpoint(), &plans, "127.0.0.1:0", &["--store", STORE]);
    start_baking(&s, rules.len()).await;
    // The scrapes outside the counted window: they read journals too (see below).
    let m0 = scrape(&s).await;
    let c0 = proxy.snapshot();
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    let c1 = proxy.snapshot();
    let m1 = scrape(&s).await;
    let polls = get(&m1, "cutover_polls_total") - get(&m0, "cutover_polls_total");
    let queries = (c1.op("Query").requests - c0.op("Query").requests) as f64;
    assert!(polls >= 12.0, "too few polls to tell: {polls}\n{c1}");
    // The rescue loop lists the ids (one page) every 5 s; one more for a pass at either edge.
    // On a loaded machine (the suite's other tests at once) a poll late past its quarter is
    // followed by a read by the clock as well: a quarter more, far below a read a second.
    let listings = (window.as_secs() / 5 + 2) as f64;
    assert!(
        queries <= polls * 1.25 + listings,
        "{queries} Query for {polls} polls of {} cutovers in {window:?}\nbefore: {c0}\nafter: {c1}",
        rules.len()
    );
    // Each poll's verdicts are still read back into the saga: the cutovers judge on.
    assert!(
        queries >= polls / 2.0,
        "{queries} Query for {polls} polls: the owners stopped reading\n{c1}"
    );
    // `/metrics` read every journal at every scrape; scraped again at once, it reads none (the
    // listing of the ids, and perhaps a rescue pass's, are the only Query).
    let c2 = proxy.snapshot();
    let again = scrape(&s).await;
    let c3 = proxy.snapshot();
    // Active cutovers are counted per service (issue 14.8): all of them, whatever the service.
    let active: f64 = again
        .iter()
        .filter(|(k, _)| k.starts_with("cutover_active_cutovers{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(active, rules.len() as f64);
    let queries = c3.op("Query").requests - c2.op("Query").requests;
    assert!(
        queries <= 2,
        "a second scrape read the journals again: {queries} Query\n{c3}"
    );
}

/// AWS fails a whole DescribeRules when one of its rules is gone (RuleNotFound): the batch is
/// read again rule by rule, so only the cutover whose rule was deleted sees the error.
#[tokio::test(flavor = "multi_thread")]
async fn one_missing_rule_in_a_batch_fails_only_its_cutover() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let rules = rules(&world, 4).await;
    let wd = Workdir::new();
    let s = Serve::start(&wd, &moto.endpoint, &plans(&wd, &world, &rules));
    let ids = start_baking(&s, rules.len()).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk(&world.endpoint).await);
    elb.delete_rule().rule_arn(&rules[0]).send().await.unwrap();
    let failed = |id: &str| {
        journal(&wd, id)
            .iter()
            .any(|r| r["event"] == "note" && r["message"].as_str().unwrap_or("").contains("RuleNotFound"))
    };
    let start = Instant::now();
    while !failed(&ids[0]) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the deleted rule's cutover saw no error"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verdicts = |id: &str| journal(&wd, id).iter().filter(|r| r["event"] == "verdict").count();
    let before: Vec<usize> = ids.iter().map(|id| verdicts(id)).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (id, before) in ids.iter().zip(before).skip(1) {
        assert!(!failed(id), "{id}: its read failed with another cutover's missing rule");
        let notes: Vec<Value> = journal(&wd, id)
            .into_iter()
            .filter(|r| r["event"] == "note" && r["message"].as_str().unwrap_or("").contains("reading weights failed"))
            .collect();
        assert!(notes.is_empty(), "{id}: {notes:?}");
        assert!(verdicts(id) > before, "{id} stopped judging");
    }
}

/// Puts one datapoint of `name` for target group `tg` at `t`.
async fn put(cw: &aws_sdk_cloudwatch::Client, lb: &str, tg: &str, t: u64, name: &str, v: f64, unit: StandardUnit) {
    cw.put_metric_data()
        .namespace("Cutover/Test")
        .metric_data(
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(Dimension::builder().name("LoadBalancer").value(lb).build())
                .dimensions(Dimension::builder().name("TargetGroup").value(tg).build())
                .timestamp(DateTime::from_secs(t as i64))
                .value(v)
                .unit(unit)
                .storage_resolution(1)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Batching must not change what a judge sees: two cutovers' windows read in one shared
/// GetMetricData are those each reads alone; and a query CloudWatch refuses (moto answers a
/// percentile with HTTP 500) fails only the cutover that asked it.
#[tokio::test(flavor = "multi_thread")]
async fn shared_metric_reads_give_each_cutover_what_it_reads_alone() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let world = fixture(&moto, &[]);
    let direct = aws_sdk_cloudwatch::Client::new(&sdk(&world.endpoint).await);
    let alb = alb_config(&world);
    let lb = alb.load_balancer_dimension();
    let (green, blue) = (
        cutover::config::target_group_dimension(&world.green),
        cutover::config::target_group_dimension(&world.blue),
    );
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 60;
    for (i, t) in (t0..t0 + 4).enumerate() {
        put(
            &direct,
            &lb,
            &green,
            t,
            "RequestCount",
            100.0 + i as f64,
            StandardUnit::Count,
        )
        .await;
        put(
            &direct,
            &lb,
            &green,
            t,
            "HTTPCode_Target_5XX_Count",
            i as f64,
            StandardUnit::Count,
        )
        .await;
        put(
            &direct,
            &lb,
            &blue,
            t,
            "RequestCount",
            300.0 - i as f64,
            StandardUnit::Count,
        )
        .await;
        put(
            &direct,
            &lb,
            &blue,
            t,
            "TargetResponseTime",
            0.01 * i as f64,
            StandardUnit::Seconds,
        )
        .await;
    }
    let text = plan(&world, "", BAKING);
    let p = cutover::config::parse(std::path::Path::new("plan.toml"), &text).unwrap();
    let mut p99 = p.metrics.clone();
    p99.latency_statistic = "p99".into();
    let alone = |new: Color| CloudWatch::new(direct.clone(), &p.metrics, &alb, new, &[]);
    let (green_alone, blue_alone) = (
        alone(Color::Green).windows(t0, t0 + 4).await.unwrap(),
        alone(Color::Blue).windows(t0, t0 + 4).await.unwrap(),
    );
    assert!(green_alone.iter().any(|w| w.new.requests > 0.0), "{green_alone:?}");

    let proxied = aws_sdk_cloudwatch::Client::new(&sdk(proxy.endpoint()).await);
    let reads = CloudWatchReads::new(proxied);
    let green = CloudWatch::shared(&reads, &p.metrics, &alb, Color::Green, &[]);
    let blue = CloudWatch::shared(&reads, &p.metrics, &alb, Color::Blue, &[]);
    proxy.reset_stats();
    let (g, b) = tokio::join!(green.windows(t0, t0 + 4), blue.windows(t0, t0 + 4));
    assert_eq!(g.unwrap(), green_alone);
    assert_eq!(b.unwrap(), blue_alone);
    assert_eq!(proxy.snapshot().op("GetMetricData").requests, 1, "{}", proxy.snapshot());

    drop(green);
    let refused = CloudWatch::shared(&reads, &p99, &alb, Color::Green, &[]);
    let (r, b) = tokio::join!(refused.windows(t0, t0 + 4), blue.windows(t0, t0 + 4));
    assert!(r.is_err(), "moto answers a percentile with 500: {r:?}");
    assert_eq!(b.unwrap(), blue_alone, "the refused query failed the other cutover too");
}

/// Regression (review of issue 12): a shared read that failed for everyone alike (a 503
/// ServiceUnavailable, a timeout) was split in halves down to single cutovers, so one failed
/// call of N cutovers' queries became 2N − 1 calls to an API already in trouble. It is not split:
/// each cutover gets the error, in as many calls as one (the SDK's own retries of it).
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_read_that_fails_for_everyone_is_not_split() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let world = fixture(&moto, &[]);
    let alb = alb_config(&world);
    let text = plan(&world, "", BAKING);
    let p = cutover::config::parse(std::path::Path::new("plan.toml"), &text).unwrap();
    let proxied = aws_sdk_cloudwatch::Client::new(&sdk(proxy.endpoint()).await);
    let reads = CloudWatchReads::new(proxied);
    let readers: Vec<_> = (0..4)
        .map(|_| CloudWatch::shared(&reads, &p.metrics, &alb, Color::Green, &[]))
        .collect();
    proxy.set(Faults::none().error(503, "ServiceUnavailable", Rule::always().only(["GetMetricData"])));
    proxy.reset_stats();
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 60;
    let results = futures_util::future::join_all(readers.iter().map(|r| r.windows(t0, t0 + 4))).await;
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    let calls = proxy.snapshot().op("GetMetricData").requests;
    // The test client retries as the SDK does by default.
    let attempts = aws_config::retry::RetryConfig::standard().max_attempts() as u64;
    assert!(
        calls <= attempts,
        "{calls} GetMetricData requests for one failed shared call of {attempts} attempts:\n{}",
        proxy.snapshot()
    );
}
