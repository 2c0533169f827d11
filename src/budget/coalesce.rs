//! Coalescing: the reads many cutovers make at one tick become one call (or a few).
//!
//! A [`Coalescer`] gathers requests by key for a short window and hands each group to its
//! [`Batch`] at once; every caller gets its own answer back. The lifecycle of a group:
//!
//! 1. The first request for a key opens a group and starts its flush task.
//! 2. Requests for the same key join it until the window passes, or until every member has a
//!    request waiting (then nobody else can come: a `cutover run` is one member, so its reads
//!    go out at once, through the same path as the daemon's).
//! 3. The flush task waits until the batch could go now ([`Batch::ready`]: its class of the
//!    budget has a token), the group still open: under a squeezed budget (a ramp of hundreds
//!    of starts, AWS throttling) the requests that come meanwhile join it, so the budget pays
//!    for fewer, fuller calls instead of a queue of small ones.
//! 4. It takes the group and runs the batch, which answers every request in order.
//!
//! Members are the adapters that submit ([`Coalescer::join`]); each engine's adapter is one and
//! has at most one request waiting, since an engine reads one thing at a time.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, oneshot};

/// How long a group waits for more requests: long enough for the cutovers woken at one tick to
/// submit theirs, short against a poll interval (1 s at least).
pub const WINDOW: Duration = Duration::from_millis(50);

/// What one coalesced call does.
pub trait Batch: Send + Sync + 'static {
    /// Requests with the same key may share a call.
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Request: Send + 'static;
    type Response: Send + 'static;

    /// Answers every request, one answer per request, in order.
    fn run(self: Arc<Self>, key: Self::Key, requests: Vec<Self::Request>) -> BoxFuture<'static, Vec<Self::Response>>;

    /// The answer for a request whose batch was abandoned (it panicked, or the runtime stopped).
    fn abandoned() -> Self::Response;

    /// Resolves when a call for `key` could go now, without taking anything (see the module
    /// doc, step 3). At once unless a batch says otherwise.
    fn ready(self: Arc<Self>, _key: Self::Key) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

struct Group<B: Batch> {
    requests: Vec<(B::Request, oneshot::Sender<B::Response>)>,
    flush: Arc<Notify>,
}

struct State<B: Batch> {
    members: usize,
    waiting: usize,
    groups: HashMap<B::Key, Group<B>>,
}

/// Gathers requests into batches (see the module doc).
pub struct Coalescer<B: Batch> {
    batch: Arc<B>,
    window: Duration,
    state: Arc<Mutex<State<B>>>,
}

impl<B: Batch> std::fmt::Debug for Coalescer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().unwrap();
        write!(f, "Coalescer({} members, {} waiting)", s.members, s.waiting)
    }
}

/// A member of a coalescer, counted while it lives.
pub struct Member {
    release: Box<dyn Fn() + Send + Sync>,
}

impl Drop for Member {
    fn drop(&mut self) {
        (self.release)()
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Member")
    }
}

impl<B: Batch> Coalescer<B> {
    pub fn new(batch: B, window: Duration) -> Coalescer<B> {
        Coalescer {
            batch: Arc::new(batch),
            window,
            state: Arc::new(Mutex::new(State {
                members: 0,
                waiting: 0,
                groups: HashMap::new(),
            })),
        }
    }

    pub fn batch(&self) -> &B {
        &self.batch
    }

    /// Counts a member until the returned guard is dropped.
    pub fn join(&self) -> Member {
        self.state.lock().unwrap().members += 1;
        let state = Arc::downgrade(&self.state);
        Member {
            release: Box::new(move || {
                if let Some(state) = state.upgrade() {
                    let mut s = state.lock().unwrap();
                    s.members = s.members.saturating_sub(1);
                    // Those left may be all that is waiting now.
                    if s.waiting >= s.members {
                        s.groups.values().for_each(|g| g.flush.notify_one());
                    }
                }
            }),
        }
    }

    /// Submits a request with the others of its key, and waits for its answer.
    pub async fn submit(&self, key: B::Key, request: B::Request) -> B::Response {
        let (tx, rx) = oneshot::channel();
        let opened = {
            let mut s = self.state.lock().unwrap();
            s.waiting += 1;
            let all_in = s.waiting >= s.members;
            let opened = !s.groups.contains_key(&key);
            let group = s.groups.entry(key.clone()).or_insert_with(|| Group {
                requests: vec![],
                flush: Arc::new(Notify::new()),
            });
            group.requests.push((request, tx));
            let flush = group.flush.clone();
            if all_in {
                s.groups.values().for_each(|g| g.flush.notify_one());
            }
            opened.then_some(flush)
        };
        if let Some(flush) = opened {
            let (state, batch, window) = (self.state.clone(), self.batch.clone(), self.window);
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(window) => {}
                    _ = flush.notified() => {}
                }
                batch.clone().ready(key.clone()).await;
                let group = {
                    let mut s = state.lock().unwrap();
                    let group = s.groups.remove(&key);
                    if let Some(g) = &group {
                        s.waiting -= g.requests.len();
                    }
                    group
                };
                let Some(group) = group else { return };
                let (requests, senders): (Vec<_>, Vec<_>) = group.requests.into_iter().unzip();
                let answers = batch.run(key, requests).await;
                for (tx, answer) in senders.into_iter().zip(answers) {
                    let _ = tx.send(answer);
                }
            });
        }
        rx.await.unwrap_or_else(|_| B::abandoned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers each request with the size of its batch, and counts the batches; with `gate`,
    /// a batch is ready only at that instant (a budget with no token before it).
    #[derive(Default)]
    struct Sizes {
        runs: AtomicUsize,
        gate: Option<tokio::time::Instant>,
    }

    impl Batch for Sizes {
        type Key = u8;
        type Request = ();
        type Response = usize;
        fn run(self: Arc<Self>, _key: u8, requests: Vec<()>) -> BoxFuture<'static, Vec<usize>> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { vec![requests.len(); requests.len()] })
        }
        fn abandoned() -> usize {
            0
        }
        fn ready(self: Arc<Self>, _key: u8) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                if let Some(gate) = self.gate {
                    tokio::time::sleep_until(gate).await;
                }
            })
        }
    }

    async fn submit_all(c: &Arc<Coalescer<Sizes>>, keys: &[u8]) -> Vec<usize> {
        let tasks: Vec<_> = keys
            .iter()
            .map(|&k| {
                let c = c.clone();
                tokio::spawn(async move { c.submit(k, ()).await })
            })
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    /// The regression this module exists for (issue 12): N cutovers made N calls per tick.
    #[tokio::test(start_paused = true)]
    async fn the_requests_of_one_tick_share_one_call() {
        let c = Arc::new(Coalescer::new(Sizes::default(), WINDOW));
        let _members: Vec<Member> = (0..100).map(|_| c.join()).collect();
        // 60 of the 100 members are due: one batch of 60 after the window.
        assert_eq!(submit_all(&c, &[0; 60]).await, vec![60; 60]);
        assert_eq!(c.batch().runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_member_does_not_wait_for_the_window() {
        let c = Arc::new(Coalescer::new(Sizes::default(), Duration::from_secs(3600)));
        let _member = c.join();
        let started = tokio::time::Instant::now();
        assert_eq!(c.submit(0, ()).await, 1);
        assert_eq!(started.elapsed(), Duration::ZERO, "a batch of one waited for others");
    }

    #[tokio::test(start_paused = true)]
    async fn once_every_member_is_in_the_batch_goes() {
        let c = Arc::new(Coalescer::new(Sizes::default(), Duration::from_secs(3600)));
        let _members: Vec<Member> = (0..5).map(|_| c.join()).collect();
        let started = tokio::time::Instant::now();
        assert_eq!(submit_all(&c, &[0; 5]).await, vec![5; 5]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_do_not_share_and_a_late_request_opens_a_new_batch() {
        let c = Arc::new(Coalescer::new(Sizes::default(), WINDOW));
        let _members: Vec<Member> = (0..10).map(|_| c.join()).collect();
        assert_eq!(submit_all(&c, &[1, 1, 2]).await, vec![2, 2, 1]);
        assert_eq!(submit_all(&c, &[1]).await, vec![1]);
        assert_eq!(c.batch().runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_leaving_lets_the_others_go() {
        let c = Arc::new(Coalescer::new(Sizes::default(), Duration::from_secs(3600)));
        let stay = c.join();
        let leave = c.join();
        let pending = {
            let c = c.clone();
            tokio::spawn(async move { c.submit(0, ()).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!pending.is_finished());
        drop(leave);
        assert_eq!(pending.await.unwrap(), 1);
        drop(stay);
    }

    /// Regression (issue 12's bench): with the Describe budget spent during a ramp of 500
    /// starts, each 50 ms group closed and then queued for a token, so the calls stayed small
    /// (one ARN each) exactly when the budget was scarcest. A group now stays open while its
    /// batch waits for the budget: the requests that come meanwhile share its call.
    #[tokio::test(start_paused = true)]
    async fn requests_join_a_group_while_it_waits_for_the_budget() {
        let gate = tokio::time::Instant::now() + Duration::from_secs(1);
        let c = Arc::new(Coalescer::new(
            Sizes {
                gate: Some(gate),
                ..Sizes::default()
            },
            WINDOW,
        ));
        let _members: Vec<Member> = (0..10).map(|_| c.join()).collect();
        let first = {
            let c = c.clone();
            tokio::spawn(async move { c.submit(0, ()).await })
        };
        // Past the window: the first group waits for the budget, still open.
        tokio::time::sleep(WINDOW * 4).await;
        let later = submit_all(&c, &[0, 0]).await;
        assert_eq!(first.await.unwrap(), 3);
        assert_eq!(later, vec![3, 3]);
        assert_eq!(c.batch().runs.load(Ordering::SeqCst), 1);
        assert!(tokio::time::Instant::now() >= gate);
    }
}
