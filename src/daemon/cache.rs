//! The daemon's view of every journal: one [`CutoverState`] per cutover, brought up to date
//! by reading only what was appended since the last request. A finished cutover costs one
//! empty read per request; its records are folded once.
//!
//! On a remote store (DynamoDB, where every read is a billed `Query`), `/metrics` reads through
//! [`Cache::all_recent`]: a journal read within [`RECENT`] is not read again, and a finished
//! one only every [`RECENT_FINISHED`]. A scrape every 15 s of a daemon with 500 cutovers (and
//! every finished cutover the table still holds) would otherwise make a `Query` per journal per
//! scrape, as many as the engines' own reads; the API's answers still read every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::journal::{Journal, JournalError, Reader, Store};
use crate::state::CutoverState;

/// How old a remote journal's state may be in [`Cache::all_recent`]: a poll at the default
/// `poll_interval`.
pub(super) const RECENT: Duration = Duration::from_secs(15);
/// The same for a finished cutover (a promoted one can still be rolled back by an operator).
pub(super) const RECENT_FINISHED: Duration = Duration::from_secs(60);

struct Entry {
    reader: Reader,
    state: CutoverState,
    /// When the journal was last read (`None`: never).
    read_at: Option<Instant>,
}

/// The states of the store's cutovers, folded incrementally.
pub(super) struct Cache {
    store: Arc<dyn Store>,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

impl Cache {
    pub(super) fn new(store: Arc<dyn Store>) -> Cache {
        Cache {
            store,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The state of cutover `id` now.
    pub(super) async fn state(&self, id: &str) -> Result<CutoverState, JournalError> {
        self.state_within(id, None).await
    }

    /// The state of cutover `id`, read again unless it was read within `recent` (by its
    /// outcome: running, finished).
    async fn state_within(&self, id: &str, recent: Option<(Duration, Duration)>) -> Result<CutoverState, JournalError> {
        let entry = self
            .entries
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Entry {
                    reader: Journal::new(self.store.clone(), id).reader(),
                    state: CutoverState::default(),
                    read_at: None,
                }))
            })
            .clone();
        let mut entry = entry.lock().await;
        if let (Some((running, finished)), Some(at)) = (recent, entry.read_at) {
            let fresh = if entry.state.outcome().is_some() {
                finished
            } else {
                running
            };
            if at.elapsed() < fresh {
                return Ok(entry.state.clone());
            }
        }
        let records = match entry.reader.read_new().await {
            Ok(records) => records,
            Err(e) => {
                // Forget a journal that cannot be read (yet): the next request starts afresh.
                self.entries.lock().unwrap().remove(id);
                return Err(e);
            }
        };
        for r in &records {
            entry.state.push(r);
        }
        entry.read_at = Some(Instant::now());
        Ok(entry.state.clone())
    }

    /// Forgets a pruned cutover.
    pub(super) fn forget(&self, id: &str) {
        self.entries.lock().unwrap().remove(id);
    }

    /// The state of cutover `id` as last read, without reading (`None`: never read, or being read).
    pub(super) fn cached(&self, id: &str) -> Option<CutoverState> {
        let entry = self.entries.lock().unwrap().get(id)?.clone();
        let entry = entry.try_lock().ok()?;
        Some(entry.state.clone())
    }

    /// The states of every cutover, newest first (unreadable journals left out).
    pub(super) async fn all(&self) -> Result<Vec<CutoverState>, JournalError> {
        self.all_within(None).await
    }

    /// [`Cache::all`], but on a remote store a journal read within [`RECENT`] (a finished one:
    /// [`RECENT_FINISHED`]) is not read again: for `/metrics`, scraped every few seconds.
    pub(super) async fn all_recent(&self) -> Result<Vec<CutoverState>, JournalError> {
        let recent = (!self.store.cheap_reads()).then_some((RECENT, RECENT_FINISHED));
        self.all_within(recent).await
    }

    async fn all_within(&self, recent: Option<(Duration, Duration)>) -> Result<Vec<CutoverState>, JournalError> {
        let mut ids = self.store.ids().await?;
        ids.reverse();
        let mut all = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(state) = self.state_within(&id, recent).await {
                all.push(state);
            }
        }
        Ok(all)
    }
}
