//! Notifications: Slack, PagerDuty and webhooks told what a cutover does, from its journal.
//!
//! **Architecture Invariant:** notifications are derived from the journal, never from the
//! engine's control flow. The engine knows nothing of them: a [`Notifier`] is a task that tails
//! the cutover's journal (incremental reads from a cursor) and sends what the plan's
//! `[[notify]]` entries subscribe to. A receiver that is slow, down, or never answers cannot
//! delay a rollback, because nothing the engine waits for waits for it.
//!
//! Lifecycle of a notifier:
//!
//! 1. [`Notifier::start`] reads each entry's credential (environment variable or file). One
//!    that is missing is a warning in the live log, once; that entry sends nothing (its
//!    notifications are counted as skipped) and the cutover goes on.
//! 2. Every [`POLL`] it reads what was appended to the journal and folds it
//!    ([`fold::Fold`], the same state the daemon and `status` fold), turning each record into
//!    a [`fold::Change`]: the event names it carries, and whether it started a rollback,
//!    verified traffic back, or ended the cutover.
//! 3. Each entry decides what it is sent about the change ([`route::Route`]); the request is
//!    built ([`slack`], [`pagerduty`], [`webhook`]) and queued on that entry's own task, which
//!    sends its queue in order, each delivery retried under [`deliver::DELIVERY`]. A delivery
//!    whose attempts all fail is logged once and counted (`cutover_notifications_total`), and
//!    the next one goes.
//! 4. When the cutover's driver is done (`cutover run` calls [`Notifier::finish`]; the
//!    daemon's task drops its notifier), it reads the journal one last time, then gives the
//!    queued deliveries up to its drain time ([`DRAIN_RUN`], [`DRAIN_DAEMON`]) to go out;
//!    what is still queued then is logged and counted as failed, and the task ends.
//!
//! **Once per process, at most once across processes.** A process never notifies the same
//! record twice: every record is claimed (cutover id and journal position) before it is sent,
//! in a table that outlives each notifier, so a second notifier of the same cutover in the same
//! process (a daemon that drives it again) goes on after the last record the first one took.
//! Across processes nothing is shared, so the rule is by position ([`Since`]): `cutover run`
//! notifies its whole journal (it created it); the daemon notifies a cutover it starts from its
//! first record, and one it adopts or resumes (after its own restart, or from a dead owner)
//! from its `adopted` record on — what the previous owner had journaled is not sent again, and
//! what it had journaled but not yet sent when it died is lost. Notifications are at most once:
//! a duplicate page is worse than a late one, and the journal (`cutover status`, the API's event
//! stream) has the whole story. The webhook's `X-Cutover-Delivery` is the same for the same
//! record and entry in any process, for receivers that want to de-duplicate themselves.
//!
//! * `mod.rs` (this file): [`Notifier`], the claim table, [`Since`];
//! * [`fold`]: records → changes (the event vocabulary's mapping);
//! * [`route`]: which entry is sent what (PagerDuty's trigger and resolve);
//! * [`words`], [`slack`], [`pagerduty`], [`webhook`]: the payloads (pure);
//! * [`deliver`]: HTTP, the retry policy, the counters.

pub mod deliver;
pub mod fold;
pub mod pagerduty;
pub mod route;
pub mod slack;
#[cfg(test)]
mod tests;
pub mod webhook;
pub mod words;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, warn};

use crate::config::Plan;
use crate::config::notify::{Notify, NotifyKind};
use crate::journal::{Journal, Reader, Record};
use deliver::{Outgoing, counts, entry_name};
use fold::{Change, Fold};
use pagerduty::Place;
use route::{Action, Route};

/// How often a notifier reads its journal: a notification goes out within this of its record.
pub const POLL: Duration = Duration::from_millis(500);
/// How long `cutover run` waits, once its cutover has ended, for queued notifications.
pub const DRAIN_RUN: Duration = Duration::from_secs(10);
/// How long a daemon's notifier goes on, once its cutover's task has ended, for queued
/// notifications: the daemon is not exiting, so a receiver down for a minute still gets them.
pub const DRAIN_DAEMON: Duration = Duration::from_secs(60);

/// Where in a journal a notifier starts sending (records before it are folded, not sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From the first record: a cutover this process started.
    Beginning,
    /// From the record at this position (0-based) on.
    Seq(u64),
}

impl Since {
    /// Where the daemon starts notifying a cutover whose journal holds `records` when its task
    /// is spawned: from the beginning for a cutover it has just started (nothing but its start
    /// is journaled); from the `adopted` record when it has just adopted or resumed it (the
    /// record is the last one, or the last but one before its orphaned rollback request); from
    /// the end otherwise (an API rollback of an orphan: what comes next is this process's).
    pub fn daemon(records: &[Record]) -> Since {
        use crate::saga::{Event, Trigger};
        let n = records.len();
        if records.iter().all(|r| r.event.start().is_some()) {
            return Since::Beginning;
        }
        let adopted = |i: usize| matches!(records.get(i).map(|r| &r.event), Some(Event::Adopted { .. }));
        if n >= 1 && adopted(n - 1) {
            return Since::Seq(n as u64 - 1);
        }
        if n >= 2
            && adopted(n - 2)
            && matches!(
                records[n - 1].event,
                Event::RollbackRequested {
                    trigger: Trigger::Orphaned,
                    ..
                }
            )
        {
            return Since::Seq(n as u64 - 2);
        }
        Since::Seq(n as u64)
    }

    fn seq(self) -> u64 {
        match self {
            Since::Beginning => 0,
            Since::Seq(n) => n,
        }
    }
}

/// The records of each cutover this process has taken to notify: the position after the last.
static CLAIMED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// Takes record `seq` of cutover `id` for notifying: false if this process took it already.
fn claim(id: &str, seq: u64) -> bool {
    let mut claimed = CLAIMED.lock().unwrap();
    let next = claimed
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_insert(0);
    if seq < *next {
        return false;
    }
    *next = seq + 1;
    true
}

/// The notifications of one cutover: a task tailing its journal. Dropping it lets the task
/// finish on its own (read the rest, then drain); [`Notifier::finish`] waits for that.
#[derive(Debug)]
pub struct Notifier {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts notifying the cutover of `journal` for `plan`'s `[[notify]]` entries, sending
    /// records from `from` on; after the stop, queued deliveries get `drain` to go out. A plan
    /// without entries starts nothing. `http` is the process's notification client
    /// ([`crate::aws::HttpClients::notify`]), or why there is none.
    pub fn start(
        plan: &Plan,
        journal: &Journal,
        from: Since,
        drain: Duration,
        http: &Result<reqwest::Client, String>,
    ) -> Notifier {
        let idle = Notifier { stop: None, task: None };
        if plan.notify.is_empty() {
            return idle;
        }
        let http = match http {
            Ok(http) => http.clone(),
            Err(e) => {
                warn!("notifications are off for this cutover: cannot build an HTTP client: {e}");
                return idle;
            }
        };
        let place = Place::of(&plan.alb);
        let sinks = plan
            .notify
            .iter()
            .enumerate()
            .map(|(i, n)| Sink::new(i, n, &http, &place))
            .collect();
        let (stop, stopped) = oneshot::channel();
        // Read through a journal handle of its own, without the owner's lease: a notifier still
        // draining after its cutover's task ended must not keep the target's lease (the next
        // cutover of that listener would be refused until it let go).
        let unowned = Journal::new(journal.store().clone(), journal.id());
        let tail = Tail {
            id: journal.id().to_string(),
            reader: unowned.reader(),
            from: from.seq(),
            fold: Fold::default(),
            sinks,
            read_failing: false,
            drain,
        };
        let span = tracing::info_span!("notify", cutover.id = %journal.id());
        Notifier {
            stop: Some(stop),
            task: Some(tokio::spawn(tail.run(stopped).instrument(span))),
        }
    }

    /// Reads the journal one last time, waits for the queued deliveries (at most the drain
    /// time given at the start), and returns.
    pub async fn finish(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The task: the journal's reader, the fold, and one sink per entry.
struct Tail {
    id: String,
    reader: Reader,
    from: u64,
    fold: Fold,
    sinks: Vec<Sink>,
    /// The journal could not be read last time (logged once until it can be again).
    read_failing: bool,
    drain: Duration,
}

impl Tail {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            self.read().await;
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                // Stopped (or the notifier dropped): one last read, then drain.
                _ = &mut stop => break,
            }
        }
        self.read().await;
        self.drain().await;
    }

    async fn read(&mut self) {
        let base = self.reader.seq();
        let records = match self.reader.read_new().await {
            Ok(records) => {
                self.read_failing = false;
                records
            }
            Err(e) => {
                if !self.read_failing {
                    warn!(
                        "notifications: cannot read the journal of {}: {e}; trying again",
                        self.id
                    );
                }
                self.read_failing = true;
                return;
            }
        };
        for (k, r) in records.iter().enumerate() {
            let seq = base + k as u64;
            let change = self.fold.push(seq, r);
            let send = seq >= self.from && claim(&self.id, seq);
            for sink in &mut self.sinks {
                sink.offer(&change, send);
            }
        }
    }

    async fn drain(mut self) {
        let deadline = tokio::time::Instant::now() + self.drain;
        for sink in &mut self.sinks {
            // Closing the queue ends the sink's task once it has sent what is queued.
            sink.queue = None;
        }
        for sink in &mut self.sinks {
            let Some(mut task) = sink.task.take() else { continue };
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let left = sink.pending.load(Ordering::Relaxed);
                if left > 0 {
                    warn!(
                        "{}: {left} notification(s) not sent within {}s of the end: dropped",
                        entry_name(sink.index, sink.kind),
                        self.drain.as_secs()
                    );
                    counts::add(sink.kind, "failed", left);
                }
            }
        }
    }
}

/// One `[[notify]]` entry: what it is sent, how its requests are built, and its queue.
struct Sink {
    index: usize,
    kind: NotifyKind,
    route: Route,
    /// `None` when its credential could not be read: it sends nothing.
    build: Option<Build>,
    queue: Option<mpsc::UnboundedSender<Outgoing>>,
    task: Option<JoinHandle<()>>,
    /// Queued or in flight.
    pending: Arc<AtomicU64>,
}

/// What building an entry's requests needs (credentials included).
struct Build {
    routing_key: Option<String>,
    signing: Option<Vec<u8>>,
    report_url: Option<String>,
    place: Place,
}

impl Sink {
    fn new(index: usize, n: &Notify, http: &reqwest::Client, place: &Place) -> Sink {
        let name = entry_name(index, n.kind);
        let mut sink = Sink {
            index,
            kind: n.kind,
            route: Route::new(n),
            build: None,
            queue: None,
            task: None,
            pending: Arc::new(AtomicU64::new(0)),
        };
        let ready = (|| -> Result<(reqwest::Url, Build), String> {
            let credential = n.credential.read()?;
            let (url, routing_key) = match n.kind {
                NotifyKind::PagerDuty => (n.endpoint.clone().unwrap_or_default(), Some(credential)),
                NotifyKind::Slack | NotifyKind::Webhook => (credential, None),
            };
            // Never print the URL: for Slack and webhooks it is the credential.
            let url = reqwest::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| format!("{}: the value is not an http(s) URL", n.credential.key))?;
            let signing = n
                .signing
                .as_ref()
                .map(|s| s.read())
                .transpose()?
                .map(String::into_bytes);
            Ok((
                url,
                Build {
                    routing_key,
                    signing,
                    report_url: n.report_url.clone(),
                    place: place.clone(),
                },
            ))
        })();
        match ready {
            Ok((url, build)) => {
                let (tx, rx) = mpsc::unbounded_channel();
                sink.queue = Some(tx);
                sink.build = Some(build);
                sink.task = Some(tokio::spawn(
                    worker(name, n.kind, http.clone(), url, rx, sink.pending.clone()).in_current_span(),
                ));
            }
            Err(e) => warn!("{name}: {e}: it sends nothing for this cutover (the cutover goes on)"),
        }
        sink
    }

    /// Routes `c`, and queues its request when `send`.
    fn offer(&mut self, c: &Change, send: bool) {
        let Some(action) = self.route.decide(c) else { return };
        if !send {
            return;
        }
        let (Some(build), Some(queue)) = (&self.build, &self.queue) else {
            counts::add(self.kind, "skipped", 1);
            return;
        };
        let out = build.request(self.kind, self.index, action, c);
        self.pending.fetch_add(1, Ordering::Relaxed);
        if queue.send(out).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Build {
    /// The request of `action` about `c` for entry `index` of `kind`.
    fn request(&self, kind: NotifyKind, index: usize, action: Action, c: &Change) -> Outgoing {
        let report = self.report_url.as_deref();
        let key = self.routing_key.as_deref().unwrap_or("");
        let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
        let mut headers = vec![];
        let body = match action {
            Action::Trigger(name) => json(pagerduty::trigger(name, c, key, &self.place, report)),
            Action::Resolve => json(pagerduty::resolve(c, key)),
            Action::Send(name) if kind == NotifyKind::Slack => json(slack::message(name, c, report)),
            Action::Send(name) => {
                let body = webhook::body(c);
                headers.push((webhook::EVENT_HEADER, name.as_str().to_string()));
                headers.push((
                    webhook::DELIVERY_HEADER,
                    webhook::delivery_id(&c.facts.id, c.seq, index),
                ));
                if let Some(secret) = &self.signing {
                    headers.push((webhook::SIGNATURE_HEADER, webhook::signature(secret, &body)));
                }
                body
            }
        };
        Outgoing {
            seq: c.seq,
            what: action.name(),
            body,
            headers,
        }
    }
}

/// An entry's task: sends its queue in order until it is closed.
async fn worker(
    name: String,
    kind: NotifyKind,
    http: reqwest::Client,
    url: reqwest::Url,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    pending: Arc<AtomicU64>,
) {
    while let Some(out) = queue.recv().await {
        match deliver::deliver(&http, &url, &out).await {
            Ok(_) => counts::add(kind, "delivered", 1),
            Err((e, attempts)) => {
                let tries = if attempts == 1 {
                    "1 attempt".to_string()
                } else {
                    format!("{attempts} attempts")
                };
                warn!(
                    "{name}: {} (journal record {}) not delivered after {tries}: {e}",
                    out.what, out.seq
                );
                counts::add(kind, "failed", 1);
            }
        }
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}
