//! The engine against a store that dies after its nth append: a crash at every journal point
//! rolls back to a clean slate, and a bake reads its journal once a poll.

use super::*;

/// A store that dies after its `n`th append (that record is durable; every later call fails),
/// like a process killed at that point of its journal.
#[derive(Debug)]
struct DyingStore {
    inner: MemoryStore,
    appends: std::sync::atomic::AtomicUsize,
    die_after: usize,
    /// Reads so far (a shared store bills each one).
    reads: std::sync::atomic::AtomicUsize,
}

impl DyingStore {
    fn dead(&self) -> bool {
        self.appends.load(std::sync::atomic::Ordering::SeqCst) >= self.die_after
    }
    fn crashed() -> JournalError {
        JournalError::Io {
            path: "crash".into(),
            cause: std::io::Error::other("the process died here"),
        }
    }
}

impl Store for DyingStore {
    fn create<'a>(&'a self, plan_text: &'a str) -> futures_util::future::BoxFuture<'a, Result<String, JournalError>> {
        self.inner.create(plan_text)
    }
    fn append<'a>(
        &'a self,
        id: &'a str,
        event: &'a Event,
        fence: Option<&'a journal::Fence>,
    ) -> futures_util::future::BoxFuture<'a, Result<journal::Record, JournalError>> {
        Box::pin(async move {
            if self.dead() {
                return Err(Self::crashed());
            }
            self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.append(id, event, fence).await
        })
    }
    fn read<'a>(
        &'a self,
        id: &'a str,
        from: journal::Cursor,
    ) -> futures_util::future::BoxFuture<'a, Result<(Vec<journal::Record>, journal::Cursor), JournalError>> {
        Box::pin(async move {
            if self.dead() {
                return Err(Self::crashed());
            }
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.read(id, from).await
        })
    }
    fn saved_plan<'a>(
        &'a self,
        id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<String>, JournalError>> {
        self.inner.saved_plan(id)
    }
    fn latest<'a>(
        &'a self,
        target: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<String>, JournalError>> {
        self.inner.latest(target)
    }
    fn set_latest<'a>(
        &'a self,
        target: &'a str,
        id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), JournalError>> {
        self.inner.set_latest(target, id)
    }
    fn try_lock<'a>(
        &'a self,
        target: &'a str,
        owner: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<journal::Lease>, JournalError>> {
        self.inner.try_lock(target, owner)
    }
    fn lease<'a>(
        &'a self,
        target: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<journal::LeaseInfo>, JournalError>> {
        self.inner.lease(target)
    }
    fn ids(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<String>, JournalError>> {
        self.inner.ids()
    }
    fn describe(&self) -> String {
        "dying store".into()
    }
}

/// Regression (issue 8, crash windows): the process driving a cutover is killed at every
/// journal point in turn, and on-call then runs `cutover rollback` (an operator rollback,
/// then the undo chain driven from the journal by a new engine). Whatever the point: traffic
/// ends on the live colour, no step is shown running, and each undo runs once, except an undo
/// whose own command was cut off (result unknown), which runs again. Two lives are crashed:
/// a healthy cutover, and one whose migrate fails (so the crash points cover its undo chain,
/// including the window between a successful undo and its `undo_done`).
#[tokio::test(start_paused = true)]
async fn a_crash_at_every_journal_point_rolls_back_to_a_clean_slate() {
    crash_everywhere(&[]).await;
    crash_everywhere(&["migrate up"]).await;
}

async fn crash_everywhere(failing: &[&str]) {
    let plan = config::parse(Path::new("plan.toml"), PLAN).unwrap();
    let initial = Split::all_on(Color::Blue);
    let clock = || Clock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let hooks_failing = || {
        let hooks = FakeHooks::default();
        hooks
            .failing
            .lock()
            .unwrap()
            .extend(failing.iter().map(|s| s.to_string()));
        hooks
    };
    // How many records the whole cutover journals bounds the crash points.
    let (total, expected) = {
        let memory = MemoryStore::default();
        memory.create_with_id("c1");
        let store: Arc<dyn Store> = Arc::new(memory);
        let journal = Journal::new(store, "c1");
        journal_started(&journal, "c1", &plan, initial).await;
        let mut e = Engine::open(
            plan.clone(),
            FakeTraffic::new(initial),
            FakeMetrics::healthy(10),
            hooks_failing(),
            journal.clone(),
            clock(),
        )
        .await
        .unwrap();
        let outcome = e.drive(no_interrupt().1).await.unwrap();
        (journal.read_all().await.unwrap().len(), outcome)
    };
    assert!(total > 20, "{total} records");
    for n in 2..=total {
        let memory = MemoryStore::default();
        memory.create_with_id("c1");
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        journal_started(&Journal::new(store.clone(), "c1"), "c1", &plan, initial).await;
        let dying: Arc<dyn Store> = Arc::new(DyingStore {
            inner: memory.clone(),
            appends: 1.into(),
            die_after: n,
            reads: 0.into(),
        });
        let traffic = FakeTraffic::new(initial);
        let hooks = hooks_failing();
        let mut first = Engine::open(
            plan.clone(),
            traffic.clone(),
            FakeMetrics::healthy(10),
            hooks.clone(),
            Journal::new(dying, "c1"),
            clock(),
        )
        .await
        .unwrap();
        // The first life ends with the crash (or, past the last record, with the cutover).
        let first_outcome = first.drive(no_interrupt().1).await;
        let journal = Journal::new(store.clone(), "c1");
        let before = journal.read_all().await.unwrap();
        let rolled_back_already = before.iter().any(|r| {
            matches!(
                r.event,
                Event::StepFailed {
                    trigger: Trigger::Step,
                    ..
                }
            )
        });
        // On-call: traffic back first, then whatever the journal says is left to undo.
        operator_rollback(
            &journal,
            &traffic,
            Color::Blue,
            Duration::from_secs(5),
            "pager",
            "oncall",
        )
        .await
        .unwrap();
        let mut second = Engine::open(
            plan.clone(),
            traffic.clone(),
            FakeMetrics::healthy(10),
            hooks.clone(),
            journal.clone(),
            clock(),
        )
        .await
        .unwrap();
        let outcome = second.drive(no_interrupt().1).await.unwrap();
        let what = format!(
            "failing {failing:?}: crash after record {n} of {total} ({:?}), first life {first_outcome:?}",
            before.last().map(|r| &r.event)
        );
        let want = if rolled_back_already && expected == Outcome::RolledBack {
            Outcome::RolledBack
        } else {
            Outcome::RolledBackByOperator
        };
        assert_eq!(outcome, want, "{what}");
        assert_eq!(traffic.current(), Split::all_on(Color::Blue), "{what}");
        let summary = summarize(&journal.read_all().await.unwrap());
        assert!(
            summary
                .steps
                .iter()
                .all(|s| s.status != crate::saga::StepStatus::Running),
            "{what}: {summary:?}"
        );
        // Each step whose command ran (and did not fail) was undone; an undo ran twice only when
        // the crash cut its own command off.
        let cut_undo = |cmd: &str| {
            matches!(before.last().map(|r| &r.event),
                Some(Event::HookStarted { phase, what, .. }) if phase == "undo" && what == cmd)
        };
        // What the journal knew of each step's run when the process died.
        let started = |step: usize| {
            before
                .iter()
                .any(|r| matches!(&r.event, Event::HookStarted { step: s, phase, .. } if *s == step && phase == "run"))
        };
        let failed = |step: usize| {
            before.iter().any(
                |r| matches!(&r.event, Event::Hook { step: s, phase, ok: false, .. } if *s == step && phase == "run"),
            )
        };
        let calls = hooks.calls();
        for (step, undo) in [(1, "undeploy"), (2, "migrate down")] {
            let undone = calls.iter().filter(|c| c.as_str() == undo).count();
            let expected = match (started(step), failed(step), cut_undo(undo)) {
                (false, _, _) | (_, true, _) => 0,
                (true, false, true) => 2,
                (true, false, false) => 1,
            };
            assert_eq!(undone, expected, "{what}: {undo} ran {undone} times: {calls:?}");
        }
    }
}

/// Regression (issue 9, measured by `deploy/local/bench-rescue.sh`): a baking cutover read its
/// journal twice a second, once for the bake's own loop and once for the watcher that lets a
/// rollback reach any running step; on a shared store each read is billed. Now the watcher
/// reads only when the step has not: about one read a second of the cutover.
#[tokio::test(start_paused = true)]
async fn a_bake_reads_its_journal_once_a_poll() {
    let plan = config::parse(Path::new("plan.toml"), PLAN).unwrap();
    let memory = MemoryStore::default();
    memory.create_with_id("c1");
    let counting = Arc::new(DyingStore {
        inner: memory,
        appends: 0.into(),
        die_after: usize::MAX,
        reads: 0.into(),
    });
    let journal = Journal::new(counting.clone(), "c1");
    let initial = Split::all_on(Color::Blue);
    journal_started(&journal, "c1", &plan, initial).await;
    let clock = Clock::at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let mut e = Engine::open(
        plan,
        FakeTraffic::new(initial),
        FakeMetrics::healthy(10),
        FakeHooks::default(),
        journal,
        clock,
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(e.drive(no_interrupt().1).await.unwrap(), Outcome::Promoted);
    let secs = started.elapsed().as_secs_f64();
    let reads = counting.reads.load(std::sync::atomic::Ordering::SeqCst) as f64;
    let appends = counting.appends.load(std::sync::atomic::Ordering::SeqCst) as f64;
    // One read a second, plus one after each step's start and a few at each step boundary.
    assert!(
        reads <= 1.15 * secs + appends,
        "{reads} reads in {secs:.0} s of cutover ({appends} appends)"
    );
}
