//! Unit tests of the engine on in-memory fakes with a paused clock: promotion, every step
//! twice, a failure injected at every step in turn, interrupts, operator rollbacks, no data,
//! alarms and health.

use super::*;
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
    journal
        .append(&started_event(&id, &plan, Color::Blue, initial, Default::default()))
        .await
        .unwrap();
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
    journal
        .append(&started_event(
            &id,
            &plan,
            Color::Blue,
            Split::all_on(Color::Blue),
            Default::default(),
        ))
        .await
        .unwrap();
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
    // Ten minutes without traffic: still baking the first shift, nothing decided.
    let r = tokio::time::timeout(Duration::from_secs(600), drive).await;
    assert!(r.is_err(), "the cutover ended without any data");
    let split = *h.engine.traffic.split.lock().unwrap();
    assert_eq!(split, Split::with_new(Color::Green, 500));
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
