//! `GET /v1/cutovers/ID/events`: a cutover's journal as server-sent events.
//!
//! 1. Every record from the start is sent as an event of type `record`, its data the record's
//!    JSON and its id the record's position in the journal, from 1.
//! 2. A client that reconnects sends `Last-Event-ID: N` (the SSE standard's header): the
//!    records up to the Nth are folded into the saga but not sent again.
//! 3. Then new records as they are appended, looked for every `EVENT_POLL`.
//! 4. The stream ends once everything written so far is sent and the saga has an outcome, or
//!    when the daemon shuts down. Keep-alive comments hold idle proxies open.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tracing::warn;

use super::Daemon;
use super::api::ApiResult;
use crate::journal::Record;
use crate::saga::Saga;

/// How often an event stream looks for new journal records.
const EVENT_POLL: Duration = Duration::from_millis(200);

/// The position after which a reconnecting client wants records: its `Last-Event-ID`. An id
/// that is not a position (another server's, garbage) is as if there were none: the client
/// gets everything, which is never wrong, only longer.
pub(super) fn resume_after(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Server-sent events: every journal record from the start, then new ones as they come,
/// until the cutover finishes (or the daemon shuts down). A record's event id is its position
/// in the journal, from 1; a client that reconnects with `Last-Event-ID: N` gets the records
/// after the Nth only.
pub(super) async fn events(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let (journal, _) = d.journal(&id).await?;
    let skip = resume_after(&headers);
    let reader = journal.reader();
    let shutdown = d.shutdown.clone();
    // The stream ends once everything written so far is sent and the saga has finished (as the
    // saga sees it: a promotion journaled while an operator's rollback runs is not the end).
    let stream = futures_util::stream::unfold(
        (
            reader,
            std::collections::VecDeque::<Record>::new(),
            Saga::default(),
            shutdown,
            (0u64, skip),
        ),
        |(mut reader, mut queue, mut saga, shutdown, (mut n, mut skip))| async move {
            loop {
                while skip > 0
                    && let Some(r) = queue.front()
                {
                    // Already sent before the client reconnected; the saga still sees it, so
                    // the stream still ends where the cutover does.
                    let _ = saga.apply(&r.event);
                    queue.pop_front();
                    n += 1;
                    skip -= 1;
                }
                if let Some(r) = queue.pop_front() {
                    n += 1;
                    let _ = saga.apply(&r.event);
                    let data = serde_json::to_string(&r).unwrap_or_default();
                    let ev = SseEvent::default().event("record").id(n.to_string()).data(data);
                    return Some((Ok(ev), (reader, queue, saga, shutdown, (n, skip))));
                }
                if *shutdown.borrow() {
                    return None;
                }
                match reader.read_new().await {
                    Ok(records) if !records.is_empty() => queue.extend(records),
                    Ok(_) if saga.outcome().is_some() => return None,
                    Ok(_) => tokio::time::sleep(EVENT_POLL).await,
                    Err(e) => {
                        warn!("event stream: {e}");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_a_position_or_nothing() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", v.parse().unwrap());
            resume_after(&h)
        };
        assert_eq!(resume_after(&HeaderMap::new()), 0);
        assert_eq!(with("12"), 12);
        assert_eq!(with(" 3 "), 3);
        assert_eq!(with("abc"), 0);
        assert_eq!(with("-1"), 0);
    }
}
