//! A journal store in memory, for unit tests: the same contract as the state directory
//! (ordered appends from any number of handles, one lock per target), nothing on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::{Cursor, JournalError, Lock, Record, Store, new_id, record};
use crate::saga::Event;

#[derive(Debug, Default)]
struct Inner {
    journals: BTreeMap<String, Vec<Record>>,
    plans: HashMap<String, String>,
    latest: HashMap<String, String>,
    locks: HashSet<String>,
}

/// A store in memory; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

/// Releases a target's lock when dropped.
struct Held(Arc<Mutex<Inner>>, String);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.lock().unwrap().locks.remove(&self.1);
    }
}

impl MemoryStore {
    /// Creates the (empty) journal of a cutover with the given id.
    pub fn create_with_id(&self, id: &str) {
        self.inner.lock().unwrap().journals.entry(id.to_string()).or_default();
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

    fn append<'a>(&'a self, id: &'a str, event: &'a Event) -> BoxFuture<'a, Result<Record, JournalError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap();
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

    fn try_lock<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<Lock>, JournalError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap();
            if !inner.locks.insert(target.to_string()) {
                return Ok(None);
            }
            Ok(Some(Lock(Box::new(Held(self.inner.clone(), target.to_string())))))
        })
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, JournalError>> {
        Box::pin(async move { Ok(self.inner.lock().unwrap().journals.keys().cloned().collect()) })
    }

    fn describe(&self) -> String {
        "memory store".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_keeps_the_store_contract() {
        let store = MemoryStore::default();
        let id = store.create("plan").await.unwrap();
        store.append(&id, &Event::StepStarted { step: 0 }).await.unwrap();
        let (first, cursor) = store.read(&id, Cursor::default()).await.unwrap();
        assert_eq!(first.len(), 1);
        store
            .append(&id, &Event::StepDone { step: 0, elapsed_ms: 0 })
            .await
            .unwrap();
        let (rest, _) = store.read(&id, cursor).await.unwrap();
        assert_eq!(rest.len(), 1, "a read from a cursor returns only what came after it");
        let lock = store.try_lock("t").await.unwrap().expect("free");
        assert!(store.try_lock("t").await.unwrap().is_none());
        drop(lock);
        assert!(store.try_lock("t").await.unwrap().is_some());
        assert!(matches!(
            store.append("nope", &Event::StepStarted { step: 0 }).await,
            Err(JournalError::NotFound(_))
        ));
    }
}
