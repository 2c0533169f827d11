//! The daemon's view of every journal: one [`CutoverState`] per cutover, brought up to date
//! by reading only what was appended since the last request. A finished cutover costs one
//! empty read per request; its records are folded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::journal::{Journal, JournalError, Reader, Store};
use crate::state::CutoverState;

struct Entry {
    reader: Reader,
    state: CutoverState,
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
        let entry = self
            .entries
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Entry {
                    reader: Journal::new(self.store.clone(), id).reader(),
                    state: CutoverState::default(),
                }))
            })
            .clone();
        let mut entry = entry.lock().await;
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
        Ok(entry.state.clone())
    }

    /// The state of cutover `id` as last read, without reading (`None`: never read, or being read).
    pub(super) fn cached(&self, id: &str) -> Option<CutoverState> {
        let entry = self.entries.lock().unwrap().get(id)?.clone();
        let entry = entry.try_lock().ok()?;
        Some(entry.state.clone())
    }

    /// The states of every cutover, newest first (unreadable journals left out).
    pub(super) async fn all(&self) -> Result<Vec<CutoverState>, JournalError> {
        let mut ids = self.store.ids().await?;
        ids.reverse();
        let mut all = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(state) = self.state(&id).await {
                all.push(state);
            }
        }
        Ok(all)
    }
}
