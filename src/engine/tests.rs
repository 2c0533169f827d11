//! Unit tests of the engine on in-memory fakes with a paused clock: promotion, every step
//! twice, a failure injected at every step in turn, interrupts, operator rollbacks, no data,
//! alarms and health.

use super::*;

mod crashes;
use crate::color::Percents;
use crate::config;
use crate::fakes::{FakeHooks, FakeMetrics, FakeTraffic};
use crate::journal::memory::MemoryStore;
use crate::journal::{StateDir, Store};
use crate::judge::Sample;
use crate::saga::{Outcome, Trigger};
use crate::state::summarize;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::sync::watch;

const PLAN: &str = r#"
[service]
name = "svc"
[alb]
listener_arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2"
blue_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/1"
green_target_group_arn = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/g/2"
[metrics]
period = "10s"
settle = "10s"
poll_interval = "5s"
latency_statistic = "Average"
[rollback]
max_error_rate = 0.01
min_requests = 10
failures_to_rollback = 2
[[steps]]
action = "verify"
checks = [{ command = ["check"] }]
[[steps]]
action = "deploy"
run = ["deploy"]
undo = ["undeploy"]
[[steps]]
action = "migrate"
run = ["migrate", "up"]
undo = ["migrate", "down"]
[[steps]]
action = "shift"
weight = 50
bake = "30s"
[[steps]]
action = "shift"
weight = 100
bake = "30s"
[[steps]]
action = "observe"
duration = "30s"
"#;

/// Journals the `Started` of cutover `id` of `plan` with blue live at `initial`, as `begin` does.
async fn journal_started(journal: &Journal, id: &str, plan: &config::Plan, initial: Split) {
    journal
        .append(&started_event(
            id,
            plan,
            Color::Blue,
            initial,
            None,
            Default::default(),
            None,
        ))
        .await
        .unwrap();
}

struct Harness {
    store: Arc<dyn Store>,
    engine: Engine<FakeTraffic, FakeMetrics, FakeHooks>,
    id: String,
}

async fn harness(hooks: FakeHooks, metrics: FakeMetrics) -> Harness {
    let memory = MemoryStore::default();
    let plan = config::parse(Path::new("plan.toml"), PLAN).unwrap();
    let initial = Split::all_on(Color::Blue);
    let id = "c1".to_string();
    memory.create_with_id(&id);
    let store: Arc<dyn Store> = Arc::new(memory);
    let journal = Journal::new(store.clone(), &id);
    journal_started(&journal, &id, &plan, initial).await;
    let clock = Clock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let engine = Engine::open(plan, FakeTraffic::new(initial), metrics, hooks, journal, clock)
        .await
        .unwrap();
    Harness { store, engine, id }
}

fn no_interrupt() -> (watch::Sender<Option<String>>, watch::Receiver<Option<String>>) {
    watch::channel(None)
}

fn undos(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.as_str() == "undeploy" || c.as_str() == "migrate down")
        .cloned()
        .collect()
}

/// Regression (review): resuming with a plan edited since the start ran the wrong step.
#[tokio::test]
async fn the_journaled_plan_is_used_and_an_edited_plan_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn Store> = Arc::new(StateDir::open(dir.path()).unwrap());
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, PLAN).unwrap();
    let plan = config::load(&path).unwrap();
    let id = state.create(&plan.source).await.unwrap();
    let journal = Journal::new(state.clone(), &id);
    journal_started(&journal, &id, &plan, Split::all_on(Color::Blue)).await;
    // Someone edits the file: the cutover still follows the copy it started with.
    std::fs::write(
        &path,
        PLAN.replace(
            "[[steps]]\naction = \"verify\"",
            "[[steps]]\naction = \"verify\"\n[[steps]]\naction = \"verify\"",
        ),
    )
    .unwrap();
    let records = journal.read_all().await.unwrap();
    let resumed = journaled_plan(&journal, &records).await.unwrap();
    assert_eq!(resumed.steps.len(), plan.steps.len());
    assert_eq!(resumed.path, plan.path, "commands still run in the plan's directory");
    // Without the copy (an older journal), the edited file is refused.
    std::fs::remove_file(dir.path().join("cutovers").join(&id).join("plan.toml")).unwrap();
    let e = journaled_plan(&journal, &records).await.unwrap_err();
    assert!(e.contains("no longer matches its journal"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_cutover_is_promoted() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let (_tx, rx) = no_interrupt();
    assert_eq!(h.engine.drive(rx).await.unwrap(), Outcome::Promoted);
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Green));
    assert_eq!(h.engine.hooks.calls(), ["check", "deploy", "migrate up"]);
    // Every write was read back before its bake: the journal has the intent, then the verification.
    let events: Vec<Event> = h
        .engine
        .journal()
        .read_all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let verified = events
        .iter()
        .filter(|e| matches!(e, Event::WeightVerified { .. }))
        .count();
    assert_eq!(verified, 2);
    let summary = summarize(&h.engine.journal().read_all().await.unwrap());
    assert_eq!(summary.outcome, Some(Outcome::Promoted));
    assert_eq!(
        summary.final_weights,
        Some(Percents {
            blue: 0.0,
            green: 100.0
        })
    );
    assert_eq!(summary.id, h.id);
}

#[tokio::test(start_paused = true)]
async fn every_step_succeeds_when_run_twice() {
    let h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    for (i, step) in h.engine.plan.steps.iter().enumerate() {
        for attempt in 0..2 {
            let r = h.engine.do_step(i, step).await;
            assert!(r.is_ok(), "step {i} attempt {attempt}: {r:?}");
        }
    }
}

/// The steno test: a failure injected at every step in turn unwinds to traffic on the
/// live colour, with the undo of each completed step run exactly once, in reverse.
#[tokio::test(start_paused = true)]
async fn a_failure_at_every_step_unwinds_to_a_clean_slate() {
    let failing_sample = Sample {
        requests: 1000.0,
        errors: 500.0,
        latency: None,
    };
    // (what fails, expected outcome, expected undos)
    let cases: &[(&str, Outcome, &[&str])] = &[
        ("check", Outcome::NotStarted, &[]),
        ("deploy", Outcome::RolledBack, &[]),
        ("migrate up", Outcome::RolledBack, &["undeploy"]),
        ("shift 50%", Outcome::RolledBack, &["migrate down", "undeploy"]),
        ("shift 100%", Outcome::RolledBack, &["migrate down", "undeploy"]),
        ("observe", Outcome::RolledBack, &["migrate down", "undeploy"]),
    ];
    for (fail_at, expected, expected_undos) in cases {
        let hooks = FakeHooks::default();
        if !fail_at.starts_with("shift") && *fail_at != "observe" {
            hooks.failing.lock().unwrap().insert(fail_at.to_string());
        }
        let mut h = harness(hooks, FakeMetrics::healthy(10)).await;
        let metrics = h.engine.metrics.clone();
        let (_tx, rx) = no_interrupt();
        // Metrics turn bad when the step under test starts.
        let step_index = h.engine.plan.steps.iter().position(|s| s.label() == *fail_at);
        let outcome = if let Some(i) = step_index.filter(|_| fail_at.starts_with("shift") || *fail_at == "observe") {
            let journal = h.engine.journal().clone();
            let drive = h.engine.drive(rx);
            tokio::pin!(drive);
            loop {
                tokio::select! {
                    o = &mut drive => break o.unwrap(),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        let started = journal.read_all().await.unwrap().iter().any(|r| r.event == Event::StepStarted { step: i });
                        if started {
                            metrics.set(failing_sample);
                        }
                    }
                }
            }
        } else {
            h.engine.drive(rx).await.unwrap()
        };
        assert_eq!(outcome, *expected, "failure at {fail_at}");
        assert_eq!(
            h.engine.traffic.current().holder(),
            Some(Color::Blue),
            "failure at {fail_at}: traffic not on blue"
        );
        assert_eq!(undos(&h.engine.hooks.calls()), *expected_undos, "failure at {fail_at}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_baking_rolls_back() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let (tx, rx) = no_interrupt();
    let interrupt = async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        tx.send(Some("interrupted by SIGINT".into())).unwrap();
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), interrupt);
    assert_eq!(outcome.unwrap(), Outcome::RolledBackByOperator);
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
    assert_eq!(undos(&h.engine.hooks.calls()), ["migrate down", "undeploy"]);
}

#[tokio::test(start_paused = true)]
async fn an_operator_rollback_from_another_process_is_noticed() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let (_tx, rx) = no_interrupt();
    let other = Journal::new(h.store.clone(), &h.id);
    let operator = async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        other
            .append(&Event::RollbackRequested {
                trigger: Trigger::Operator,
                reason: "pager".into(),
                by: "oncall".into(),
            })
            .await
            .unwrap();
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), operator);
    assert_eq!(outcome.unwrap(), Outcome::RolledBackByOperator);
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
    // Each undo ran exactly once.
    assert_eq!(undos(&h.engine.hooks.calls()), ["migrate down", "undeploy"]);
}

#[tokio::test(start_paused = true)]
async fn no_data_holds_the_bake_clock() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    h.engine.metrics.set(Sample::default());
    let (_tx, rx) = no_interrupt();
    let drive = h.engine.drive(rx);
    // Nine minutes without traffic (inside the stall timeout): still baking the first shift,
    // nothing decided.
    let r = tokio::time::timeout(Duration::from_secs(540), drive).await;
    assert!(r.is_err(), "the cutover ended without any data");
    let split = *h.engine.traffic.split.lock().unwrap();
    assert_eq!(split, Split::with_new(Color::Green, 500));
}

/// Regression (issue 8): a bake that could judge nothing (no data, or metrics unreadable) held
/// traffic split at 50/50 for ever. Past `rollback.stall_timeout` it rolls back as `stalled`,
/// saying what could not be read.
#[tokio::test(start_paused = true)]
async fn a_blind_bake_rolls_back_as_stalled() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    h.engine.metrics.set(Sample::default());
    let (_tx, rx) = no_interrupt();
    assert_eq!(h.engine.drive(rx).await.unwrap(), Outcome::RolledBack);
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
    let records = h.engine.journal().read_all().await.unwrap();
    let failed = records.iter().find_map(|r| match &r.event {
        Event::StepFailed { trigger, reason, .. } => Some((*trigger, reason.clone())),
        _ => None,
    });
    let (trigger, reason) = failed.expect("a failed step");
    assert_eq!(trigger, Trigger::Stalled);
    assert!(
        reason.contains("judged nothing for 10m") && reason.contains("TargetGroup=targetgroup/g/2"),
        "{reason}"
    );
}

/// Regression (issue 8): weights changed by hand mid-bake paused the cutover and stopped the
/// judging: green then failed with nobody watching. The drift pause holds the bake clock, and
/// only that: a failing verdict still rolls back, and traffic goes back to the live colour.
#[tokio::test(start_paused = true)]
async fn drift_holds_the_clock_but_not_the_judge() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let traffic = h.engine.traffic.clone();
    let metrics = h.engine.metrics.clone();
    let journal = h.engine.journal().clone();
    let (_tx, rx) = no_interrupt();
    let human = async {
        // Wait for the 50 % bake, then move the weights by hand, then let green fail.
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::BakeStarted { .. })) {
                break;
            }
        }
        *traffic.split.lock().unwrap() = Split::with_new(Color::Green, 700);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::Drift { .. })) {
                break;
            }
        }
        metrics.set(Sample {
            requests: 1000.0,
            errors: 500.0,
            latency: None,
        });
    };
    // Before the fix the judging stopped at the drift and this never ended: an hour is a failure.
    let (outcome, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(3600), h.engine.drive(rx)),
        human
    );
    assert_eq!(
        outcome.expect("still paused after an hour").unwrap(),
        Outcome::RolledBack
    );
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
    let records = h.engine.journal().read_all().await.unwrap();
    let drift_at = records
        .iter()
        .position(|r| matches!(r.event, Event::Drift { .. }))
        .expect("drift recorded");
    // Verdicts went on after the drift, not counted toward the bake, and the last one rolled back.
    let after: Vec<_> = records[drift_at..]
        .iter()
        .filter_map(|r| match &r.event {
            Event::Verdict { verdict, counted, .. } => Some((verdict.rollback, *counted)),
            _ => None,
        })
        .collect();
    assert!(after.len() >= 2, "{after:?}");
    assert!(after.iter().all(|(_, counted)| !counted), "{after:?}");
    assert!(after.last().unwrap().0, "{after:?}");
    // The human's weights were never overwritten while paused: no write before the restore.
    let writes = h.engine.traffic.writes.lock().unwrap().clone();
    assert_eq!(writes.last(), Some(&Split::all_on(Color::Blue)), "{writes:?}");
    assert!(!writes.contains(&Split::with_new(Color::Green, 1000)), "{writes:?}");
}

/// A drift pause ends with an operator's resume: the verified weights are written again and
/// the cutover goes on to promote.
#[tokio::test(start_paused = true)]
async fn a_resume_after_drift_reapplies_the_verified_weights() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let traffic = h.engine.traffic.clone();
    let journal = h.engine.journal().clone();
    let (_tx, rx) = no_interrupt();
    let human = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::BakeStarted { .. })) {
                break;
            }
        }
        *traffic.split.lock().unwrap() = Split::with_new(Color::Green, 700);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::Drift { .. })) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        journal
            .append(&Event::Resumed {
                by: "oncall".into(),
                reason: "checked".into(),
            })
            .await
            .unwrap();
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), human);
    assert_eq!(outcome.unwrap(), Outcome::Promoted);
    let writes = h.engine.traffic.writes.lock().unwrap().clone();
    // 50 %, the re-applied 50 % after the resume, then 100 %.
    assert_eq!(
        writes,
        [
            Split::with_new(Color::Green, 500),
            Split::with_new(Color::Green, 500),
            Split::all_on(Color::Green)
        ]
    );
}

/// Regression (issue 8): with DescribeListeners throttled, a rollback read the listener before
/// its Modify and traffic came back 18.6 s after the judge decided. The restore writes from
/// the action it knows, without reading first, and reads back afterwards.
#[tokio::test(start_paused = true)]
async fn a_restore_writes_without_reading_while_describe_is_throttled() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let traffic = h.engine.traffic.clone();
    let metrics = h.engine.metrics.clone();
    let journal = h.engine.journal().clone();
    let (_tx, rx) = no_interrupt();
    let bad = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::BakeStarted { .. })) {
                break;
            }
        }
        metrics.set(Sample {
            requests: 1000.0,
            errors: 500.0,
            latency: None,
        });
        // From the judge's decision on, Describe is throttled for a while.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let records = journal.read_all().await.unwrap();
            if records.iter().any(|r| matches!(r.event, Event::StepFailed { .. })) {
                traffic.failing_reads.store(20, std::sync::atomic::Ordering::SeqCst);
                break;
            }
        }
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), bad);
    assert_eq!(outcome.unwrap(), Outcome::RolledBack);
    assert_eq!(h.engine.traffic.current(), Split::all_on(Color::Blue));
    assert!(h.engine.traffic.blind_writes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test(start_paused = true)]
async fn an_alarm_rolls_back_at_once() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    let metrics = h.engine.metrics.clone();
    let (_tx, rx) = no_interrupt();
    let alarm = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        metrics.alarms.lock().unwrap().in_alarm.push("svc-5xx".into());
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), alarm);
    assert_eq!(outcome.unwrap(), Outcome::RolledBack);
    let records = h.engine.journal().read_all().await.unwrap();
    let summary = summarize(&records);
    assert!(summary.reason.unwrap().contains("alarm in ALARM: svc-5xx"));
}

#[tokio::test(start_paused = true)]
async fn too_few_healthy_targets_at_verify_change_nothing() {
    let mut h = harness(FakeHooks::default(), FakeMetrics::healthy(10)).await;
    *h.engine.traffic.healthy.lock().unwrap() = (2, 0);
    let (_tx, rx) = no_interrupt();
    assert_eq!(h.engine.drive(rx).await.unwrap(), Outcome::NotStarted);
    assert!(
        h.engine.traffic.writes.lock().unwrap().is_empty(),
        "nothing may be written"
    );
}

/// Targets that turn unhealthy after verify and deploy stop the shift before any write.
#[tokio::test(start_paused = true)]
async fn too_few_healthy_targets_block_the_shift() {
    let hooks = FakeHooks {
        delay: Duration::from_secs(10),
        ..Default::default()
    };
    let mut h = harness(hooks, FakeMetrics::healthy(10)).await;
    let traffic = h.engine.traffic.clone();
    let (_tx, rx) = no_interrupt();
    // check (10 s), deploy (10 s, then health is checked), migrate (10 s), then the shift:
    // green's targets go unhealthy during the migrate.
    let flap = async {
        tokio::time::sleep(Duration::from_secs(25)).await;
        *traffic.healthy.lock().unwrap() = (2, 0);
    };
    let (outcome, ()) = tokio::join!(h.engine.drive(rx), flap);
    assert_eq!(outcome.unwrap(), Outcome::RolledBack);
    assert!(traffic.writes.lock().unwrap().is_empty(), "no weight may be written");
    let summary = summarize(&h.engine.journal().read_all().await.unwrap());
    assert!(
        summary
            .reason
            .clone()
            .unwrap()
            .contains("green has 0 healthy targets, needs 1"),
        "{summary:?}"
    );
    assert_eq!(summary.steps[3].status, crate::saga::StepStatus::Failed);
}

/// Regression: with neither `USER` nor `LOGNAME` set (containers, CI runners, the demo), a
/// report said a cutover was started by `unknown`; the uid's name in `/etc/passwd` says who.
#[test]
fn a_process_without_user_variables_is_named_by_its_uid() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  # a comment\n\
                  deploy:x:1001:1001::/home/deploy:/bin/sh\n";
    assert_eq!(super::user_of_uid(passwd, 1001).as_deref(), Some("deploy"));
    assert_eq!(super::user_of_uid(passwd, 0).as_deref(), Some("root"));
    assert_eq!(super::user_of_uid(passwd, 7), None);
    assert!(super::own_uid().is_some(), "/proc/self/status has no Uid: line");
}

/// Regression (issue 12's memory, found with heaptrack): the hooks of every cutover built an
/// HTTP client of their own, and the notifier of every cutover with `[[notify]]` another, each
/// parsing the system's TLS roots again and keeping its own session cache (about 80 KiB): some
/// 40 MiB of a daemon with 500 cutovers. A process builds its clients once; the adapters of
/// its cutovers share them.
#[tokio::test]
async fn the_adapters_of_many_cutovers_build_no_http_client_of_their_own() {
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    let built = || crate::hooks::tests::HTTP_CLIENTS_BUILT.with(|n| n.get());
    let before = built();
    let conf = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let clients = crate::aws::Clients::from_conf(&conf);
    assert_eq!(
        built() - before,
        2,
        "a process builds a hooks client and a notification client"
    );
    let plan = config::parse(Path::new("plan.toml"), PLAN).unwrap();
    let cutovers: Vec<_> = (0..3)
        .map(|_| super::start::adapters(&clients, &plan, Color::Green, &[]))
        .collect();
    assert_eq!(
        built() - before,
        2,
        "{} cutovers built clients of their own",
        cutovers.len()
    );
}
