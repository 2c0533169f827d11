//! A journal store in memory, for unit tests: the same contract as the shared store (ordered
//! appends from any number of handles, and leases with a time-to-live, renewal, fencing
//! tokens and takeover, on tokio's clock so a paused clock drives them), nothing on disk.
//! [`MemoryStore::cut_off`] stops a holder's renewals, as a network partition would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{
    Cursor, Fence, JournalError, LEASE_RENEW, LEASE_TTL, Lease, LeaseHolder, LeaseInfo, Record, Store, new_id, record,
};
use crate::saga::Event;

#[derive(Debug)]
struct Held {
    owner: String,
    token: u64,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    journals: BTreeMap<String, Vec<Record>>,
    plans: HashMap<String, String>,
    latest: HashMap<String, String>,
    leases: HashMap<String, Held>,
    /// `(target, token)` of holders whose renewals no longer reach the store.
    cut_off: HashSet<(String, u64)>,
}

/// A store in memory; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

/// A memory lease: renewed by a task every [`LEASE_RENEW`] while the store lets it through.
struct Renewing {
    inner: Arc<Mutex<Inner>>,
    target: String,
    token: u64,
    /// Until when the lease is ours, as of the last renewal that got through.
    until: Arc<Mutex<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Renewing {
    /// A clean release: the next owner need not wait for the lease to run out. The item stays
    /// (expired), so the next token is still higher: a stale fence never becomes valid again.
    fn let_go(&self) {
        self.task.abort();
        *self.until.lock().unwrap() = Instant::now();
        let mut inner = self.inner.lock().unwrap();
        if let Some(h) = inner.leases.get_mut(&self.target)
            && h.token == self.token
        {
            h.expires = Instant::now();
        }
    }
}

impl LeaseHolder for Renewing {
    fn held_for(&self, margin: Duration) -> bool {
        Instant::now() + margin < *self.until.lock().unwrap()
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        self.let_go();
        Box::pin(async {})
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        self.let_go();
    }
}

impl MemoryStore {
    /// Creates the (empty) journal of a cutover with the given id.
    pub fn create_with_id(&self, id: &str) {
        self.inner.lock().unwrap().journals.entry(id.to_string()).or_default();
    }

    /// Stops the renewals of the current holder of `target`'s lease from reaching the store.
    pub fn cut_off(&self, target: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(token) = inner.leases.get(target).map(|h| h.token) {
            inner.cut_off.insert((target.to_string(), token));
        }
    }
}

impl Store for MemoryStore {
    fn create<'a>(&'a self, plan_text: &'a str) -> BoxFuture<'a, Result<String, JournalError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap();
            let id = loop {
                let id = new_id();
                if !inner.journals.contains_key(&id) {
                    break id;
                }
            };
            inner.journals.insert(id.clone(), vec![]);
            inner.plans.insert(id.clone(), plan_text.to_string());
            Ok(id)
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        event: &'a Event,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<Record, JournalError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap();
            if let Some(f) = fence {
                let current = inner
                    .leases
                    .get(&f.target)
                    .filter(|h| h.expires > Instant::now())
                    .map(|h| h.token);
                if current != Some(f.token) {
                    return Err(JournalError::Fenced {
                        target: f.target.clone(),
                        token: f.token,
                    });
                }
            }
            let journal = inner
                .journals
                .get_mut(id)
                .ok_or_else(|| JournalError::NotFound(id.to_string()))?;
            let r = record(event);
            journal.push(r.clone());
            Ok(r)
        })
    }

    fn read<'a>(&'a self, id: &'a str, from: Cursor) -> BoxFuture<'a, Result<(Vec<Record>, Cursor), JournalError>> {
        Box::pin(async move {
            let inner = self.inner.lock().unwrap();
            let journal = inner
                .journals
                .get(id)
                .ok_or_else(|| JournalError::NotFound(id.to_string()))?;
            let records: Vec<Record> = journal.iter().skip(from.seq as usize).cloned().collect();
            let seq = journal.len() as u64;
            Ok((records, Cursor { seq, offset: seq }))
        })
    }

    fn saved_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(async move { Ok(self.inner.lock().unwrap().plans.get(id).cloned()) })
    }

    fn latest<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(async move { Ok(self.inner.lock().unwrap().latest.get(target).cloned()) })
    }

    fn set_latest<'a>(&'a self, target: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            self.inner
                .lock()
                .unwrap()
                .latest
                .insert(target.to_string(), id.to_string());
            Ok(())
        })
    }

    fn try_lock<'a>(&'a self, target: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Option<Lease>, JournalError>> {
        Box::pin(async move {
            let now = Instant::now();
            let token = {
                let mut inner = self.inner.lock().unwrap();
                let previous = inner.leases.get(target).map(|h| (h.token, h.expires));
                if previous.is_some_and(|(_, expires)| expires > now) {
                    return Ok(None);
                }
                let token = previous.map_or(1, |(t, _)| t + 1);
                inner.leases.insert(
                    target.to_string(),
                    Held {
                        owner: owner.to_string(),
                        token,
                        expires: now + LEASE_TTL,
                    },
                );
                token
            };
            let until = Arc::new(Mutex::new(now + LEASE_TTL));
            let (inner, t, u) = (self.inner.clone(), target.to_string(), until.clone());
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW).await;
                    let mut inner = inner.lock().unwrap();
                    if inner.cut_off.contains(&(t.clone(), token)) {
                        continue;
                    }
                    match inner.leases.get_mut(&t) {
                        // A renewal is a conditional write: only while the token is still ours.
                        Some(h) if h.token == token && h.expires > Instant::now() => {
                            h.expires = Instant::now() + LEASE_TTL;
                            *u.lock().unwrap() = h.expires;
                        }
                        _ => return,
                    }
                }
            });
            let holder = Renewing {
                inner: self.inner.clone(),
                target: target.to_string(),
                token,
                until,
                task,
            };
            Ok(Some(Lease::new(target, token, Box::new(holder))))
        })
    }

    fn lease<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>, JournalError>> {
        Box::pin(async move {
            let inner = self.inner.lock().unwrap();
            Ok(inner.leases.get(target).map(|h| LeaseInfo {
                owner: h.owner.clone(),
                token: h.token,
                expires_at: None,
                held: h.expires > Instant::now(),
            }))
        })
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, JournalError>> {
        Box::pin(async move { Ok(self.inner.lock().unwrap().journals.keys().cloned().collect()) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap();
            inner.plans.remove(id);
            inner
                .journals
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| JournalError::NotFound(id.to_string()))
        })
    }

    fn describe(&self) -> String {
        "memory store".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::LEASE_MARGIN;

    #[tokio::test]
    async fn the_memory_store_keeps_the_store_contract() {
        let store = MemoryStore::default();
        let id = store.create("plan").await.unwrap();
        store.append(&id, &Event::StepStarted { step: 0 }, None).await.unwrap();
        let (first, cursor) = store.read(&id, Cursor::default()).await.unwrap();
        assert_eq!(first.len(), 1);
        store
            .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, None)
            .await
            .unwrap();
        let (rest, _) = store.read(&id, cursor).await.unwrap();
        assert_eq!(rest.len(), 1, "a read from a cursor returns only what came after it");
        let lock = store.try_lock("t", "a").await.unwrap().expect("free");
        assert!(store.try_lock("t", "b").await.unwrap().is_none());
        drop(lock);
        let next = store.try_lock("t", "b").await.unwrap().expect("released");
        // Regression (review): a release removed the lease, and the next token was 1 again.
        assert_eq!(next.fence().token, 2, "tokens only grow");
        assert!(matches!(
            store.append("nope", &Event::StepStarted { step: 0 }, None).await,
            Err(JournalError::NotFound(_))
        ));
    }

    /// The lease rules, on a paused clock: a renewed lease lasts; a holder cut off from the store
    /// stops acting before its lease runs out, and only then can another process take it, with
    /// a higher token; the old holder's appends are refused from then on.
    #[tokio::test(start_paused = true)]
    async fn leases_renew_expire_and_fence() {
        let store = MemoryStore::default();
        let id = store.create("plan").await.unwrap();
        let first = store.try_lock("t", "serve a").await.unwrap().expect("free");
        assert_eq!(first.fence().token, 1);
        // Renewals keep it for as long as they get through.
        tokio::time::sleep(LEASE_TTL * 4).await;
        assert!(first.is_held());
        assert!(store.try_lock("t", "serve b").await.unwrap().is_none());
        store
            .append(&id, &Event::StepStarted { step: 0 }, Some(first.fence()))
            .await
            .unwrap();
        // Cut off: it stops acting before the lease would run out …
        store.cut_off("t");
        let cut = Instant::now();
        while first.is_held() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stopped = cut.elapsed();
        assert!(
            stopped <= LEASE_TTL - LEASE_MARGIN + LEASE_RENEW,
            "stopped after {stopped:?}"
        );
        // … and nobody can take it before it has.
        assert!(store.try_lock("t", "serve b").await.unwrap().is_none());
        while store.lease("t").await.unwrap().unwrap().held {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            cut.elapsed() > stopped,
            "the lease ran out after its holder stopped acting"
        );
        let second = store.try_lock("t", "serve b").await.unwrap().expect("expired");
        assert_eq!(second.fence().token, 2);
        assert_eq!(store.lease("t").await.unwrap().unwrap().owner, "serve b");
        // The old holder is fenced off; the new one and operators write.
        let stale = store
            .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, Some(first.fence()))
            .await;
        assert!(matches!(stale, Err(JournalError::Fenced { token: 1, .. })), "{stale:?}");
        store
            .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 }, Some(second.fence()))
            .await
            .unwrap();
        store.append(&id, &Event::StepStarted { step: 1 }, None).await.unwrap();
        // Dropping the stale holder does not release the new one's lease.
        drop(first);
        assert!(store.lease("t").await.unwrap().unwrap().held);
    }
}
