//! Retention: which cutovers' journals may be deleted, so that a state directory written to
//! for years does not grow without bound (and the daemon's list and `/metrics`, which look at
//! every journal, stay cheap).
//!
//! A cutover may be pruned when all of these hold:
//!
//! 1. it finished (its saga has an outcome) longer ago than the retention, by its `finished`
//!    record; a journal that never started (its process died first) counts from its id's time;
//! 2. it is not the latest cutover of its listener or rule: `cutover rollback --config` and
//!    `status` start from that one, and a promoted cutover can still be rolled back;
//! 3. it is not unfinished: an unfinished cutover is never pruned, however old, because its
//!    journal is what a rollback of its traffic follows.
//!
//! An unreadable journal is kept: what cannot be read cannot be judged finished.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Journal, JournalError, Store};
use crate::state::CutoverState;

/// The ids that may be pruned at `now` with retention `keep`, oldest first.
pub async fn prunable(store: &Arc<dyn Store>, keep: Duration, now: SystemTime) -> Result<Vec<String>, JournalError> {
    let Some(cutoff) = now.checked_sub(keep) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for id in store.ids().await? {
        let Ok(records) = Journal::new(store.clone(), &id).read_all().await else {
            continue;
        };
        let state = CutoverState::fold(&records);
        let ended = match (&state.target_arn, state.summary.finished_at.as_deref()) {
            // Started and finished: by its end, unless it is its target's latest.
            (Some(target), Some(finished)) => {
                if store.latest(target).await?.as_deref() == Some(id.as_str()) {
                    continue;
                }
                humantime::parse_rfc3339_weak(finished).ok()
            }
            // Started, not finished: never.
            (Some(_), None) => continue,
            // Never started: by the time in its id, unless an index still names it.
            (None, _) => id_time(&id),
        };
        if ended.is_some_and(|t| t < cutoff) && !is_someones_latest(store, &id, &records).await? {
            out.push(id);
        }
    }
    Ok(out)
}

/// Whether a journal that never started is still named by an index (its `Started` was about to
/// be written when its process died): only the target's index could say, and without `Started`
/// the journal does not name its target, so a never-started journal is kept while it is the
/// newest of all (the one a dying `begin` could have indexed).
async fn is_someones_latest(store: &Arc<dyn Store>, id: &str, records: &[super::Record]) -> Result<bool, JournalError> {
    if super::start_of(records).is_some() {
        return Ok(false);
    }
    Ok(store.ids().await?.last().map(String::as_str) == Some(id))
}

/// The start time in an id (`20261122T023000Z-3fa2c9d1`).
fn id_time(id: &str) -> Option<SystemTime> {
    let stamp = id.split('-').next()?;
    if stamp.len() != 16 {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    humantime::parse_rfc3339(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::{Color, Split};
    use crate::journal::memory::MemoryStore;
    use crate::saga::{Event, Outcome};

    async fn cutover(store: &Arc<dyn Store>, target: &str, finished: bool) -> String {
        let id = store.create("plan").await.unwrap();
        store.set_latest(target, &id).await.unwrap();
        let started = Event::Started {
            id: id.clone(),
            service: "svc".into(),
            plan: "plan.toml".into(),
            target_arn: target.into(),
            live_color: Color::Blue,
            new_color: Color::Green,
            initial: Split::all_on(Color::Blue),
            action: None,
            steps: vec![],
            pid: 1,
            started_by: None,
            vars: Default::default(),
        };
        store.append(&id, &started, None).await.unwrap();
        if finished {
            let done = Event::Finished {
                outcome: Outcome::Promoted,
                reason: "done".into(),
                final_split: None,
            };
            store.append(&id, &done, None).await.unwrap();
        }
        id
    }

    #[tokio::test]
    async fn never_an_unfinished_cutover_nor_a_targets_latest() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let old = cutover(&store, "listener-a", true).await;
        let latest_a = cutover(&store, "listener-a", true).await;
        let unfinished = cutover(&store, "listener-b", false).await;
        let _latest_b = cutover(&store, "listener-b", true).await;
        // Everything finished a moment ago: a day later, with one hour kept…
        let later = SystemTime::now() + Duration::from_secs(86_400);
        let ids = prunable(&store, Duration::from_secs(3600), later).await.unwrap();
        // …only the older cutover of listener-a goes: not its latest, not the unfinished one of
        // listener-b (older than its latest), not listener-b's latest.
        assert_eq!(ids, vec![old.clone()]);
        assert!(!ids.contains(&latest_a) && !ids.contains(&unfinished));
        // With the retention longer than their age, nothing goes.
        assert!(
            prunable(&store, Duration::from_secs(2 * 86_400), later)
                .await
                .unwrap()
                .is_empty()
        );
        store.remove(&old).await.unwrap();
        assert!(!store.ids().await.unwrap().contains(&old));
    }

    #[test]
    fn ids_carry_their_start_time() {
        let t = id_time("20261122T023000Z-3fa2c9d1").unwrap();
        assert_eq!(humantime::format_rfc3339_seconds(t).to_string(), "2026-11-22T02:30:00Z");
        assert_eq!(id_time("garbage"), None);
    }
}
