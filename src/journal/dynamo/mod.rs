//! The shared store: one DynamoDB table (`--store dynamodb://TABLE`), so that processes on
//! different machines share journals, plan copies, latest-cutover indexes and leases.
//!
//! # Table layout
//!
//! One table, on-demand, key `pk` (S, HASH) + `sk` (S, RANGE) (`cutover store init` creates it;
//! `deploy/dynamodb/table.yaml` is the same table in CloudFormation):
//!
//! ```text
//! pk                 sk                  attributes
//! cutover#<id>       plan                plan: the plan text the cutover started with
//! cutover#<id>       rec#000000000001    record: one journal record, serde_json::to_string(&Record)
//! cutover#<id>       rec#000000000002    (exactly what a line of a local journal.jsonl holds),
//! …                                      writer: a nonce of the append that wrote it
//! index              <id>                writer: the nonce of the create (ids sort by start time)
//! target#<arn>       latest              id: the latest cutover of that listener or rule
//! target#<arn>       lease               owner, token (the fencing token), expires (Unix ms),
//!                                        claim: the nonce of the takeover
//! ```
//!
//! Records are numbered from 1 (`rec#` and the number zero-padded to 12 digits, so they sort as
//! numbers), without gaps: record `n` is only ever written by a writer that saw record `n - 1`.
//! A cutover exists when its `index` item does; `create` writes that item and the plan copy in
//! one transaction. A plan copy must stay under DynamoDB's 400 KB item size.
//!
//! # Operations, and where
//!
//! * `create`: `TransactWriteItems`, two `Put`s (index item, plan copy), each
//!   `attribute_not_exists(pk)`; a clashing id takes a new one.
//! * `append` by an operator (unfenced): `PutItem` of `rec#n` if `attribute_not_exists(sk)`.
//! * `append` by an owner (fenced): `TransactWriteItems`, a `ConditionCheck` of the lease item
//!   (`token` is the fence's and `expires > now`) and the same conditional `Put`.
//! * `append` to a journal this handle has not read or written yet, or after a lost race: first a
//!   `Query` for the newest `rec#` (descending, `Limit 1`), and a `GetItem` of the index item when
//!   there is none (`NotFound`, or an empty journal).
//! * `read`: `Query` `pk = cutover#<id> AND sk > rec#<cursor.seq>`, strongly consistent, every
//!   page; an empty read from 0 of a journal this handle does not know yet adds a `GetItem` of
//!   the index item (`NotFound`, or an empty journal).
//! * `saved_plan`, `latest`, `lease`: `GetItem`, strongly consistent. `set_latest`: `PutItem`.
//! * `try_lock`: `UpdateItem` `ADD token 1, SET owner, expires, claim` if
//!   `attribute_not_exists(token) OR expires <= now`.
//! * renewal, every `LEASE_RENEW`: `UpdateItem` `SET expires` if `token = mine AND expires > now`.
//! * release ([`Lease::release`], or the [`Lease`] dropped): `UpdateItem` `SET expires = 0` if `token = mine`.
//! * `ids`: `Query` `pk = index`, strongly consistent, every page.
//! * [`init`]: `DescribeTable`; `CreateTable` if the table is missing; `DescribeTable` until it
//!   is active.
//!
//! So the IAM actions are `GetItem`, `PutItem`, `UpdateItem`, `Query` and `ConditionCheckItem`
//! (a `TransactWriteItems` needs the actions of its parts), plus `DescribeTable` and
//! `CreateTable` for `init` (`deploy/dynamodb/iam-policy.json`).
//!
//! **Appends never interleave silently.** A writer keeps, per journal, the next sequence number
//! it knows of; its `Put` of `rec#n` is conditional on `rec#n` not existing. A writer that loses
//! the race re-reads the newest number and tries again, under [`APPEND_RACE`]. A fenced append
//! whose transaction is cancelled on the lease is [`JournalError::Fenced`]; cancelled on the
//! record, it is a lost race. Every failed condition returns the item that stood in the way
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`): a record (or takeover, or create) carrying
//! this call's own nonce is this call's own earlier attempt, whose answer was lost and the SDK
//! retried, so it counts as done instead of being written twice.
//!
//! # Leases
//!
//! The module doc of [`journal`](super) has the rules; here is how they are kept:
//!
//! * a takeover increments `token`, and a release never deletes the lease item (it sets
//!   `expires = 0`): a token is never handed out twice, so a fence taken before a release cannot
//!   become valid again after it (a deleted item would start again at token 1);
//! * the holder renews from a background task every `LEASE_RENEW`, each renewal bounded by
//!   `LEASE_RENEW` so that one hung call does not delay the next; a renewal refused by its
//!   condition (another token, or it ran out) stops the task and the holder at once;
//! * [`LeaseHolder::held_for`](super::LeaseHolder::held_for) answers from the holder's monotonic
//!   clock: `LEASE_TTL` after the moment the last renewal that got through was *sent* (never after
//!   its answer came), so a holder cut off from the table stops acting `LEASE_MARGIN` before the
//!   table's expiry;
//! * [`Lease::release`] stops the renewals and releases it, waiting for the table's answer:
//!   every process calls it before it exits. Dropping an unreleased [`Lease`] (a task that
//!   ended early) releases it from a spawned task, which may die with the process: its lease
//!   then runs out after `LEASE_TTL`.
//!
//! **Clock skew.** `expires` is the holder's wall clock (Unix milliseconds) at the moment it
//! sent the renewal, plus `LEASE_TTL`; another process compares it with its own wall clock when
//! it tries a takeover. The holder stops acting `LEASE_MARGIN` (5 s) before that expiry on its
//! own clock, so a taker whose clock runs ahead of the holder's by *s* takes over while the
//! holder may still act only if *s* + the duration of the holder's last action (a weight write
//! begun just before it stopped) exceeds 5 s. So keep clocks within a second or two (NTP, or the
//! Amazon Time Sync Service, keeps EC2 within milliseconds); a clock running behind only delays
//! takeovers. A fenced append compares the lease's expiry with the *writer's* clock, but the
//! token is what fences: once another process took over, the token differs whatever the clocks say.
//!
//! # Cost
//!
//! On-demand request units, as DynamoDB bills them (a strongly consistent read of up to 4 KB is
//! 1 RRU, an empty result included; a write of up to 1 KB is 1 WRU, a refused conditional write
//! included; in a transaction each item costs twice, a `ConditionCheck` as a 2-WRU write):
//!
//! | operation | units |
//! | --- | --- |
//! | an append by an operator (a record up to 1 KB; verdicts are about 0.5 KB) | 1 WRU |
//! | an append by the owner (fenced) | 4 WRU (2 the record, 2 the lease check) |
//! | an incremental read with no new records | 1 RRU (and 1 per 4 KB of new records) |
//! | a renewal | 1 WRU |
//! | a takeover (or a refused one) | 1 WRU |
//! | a release | 1 WRU |
//! | `latest`, `lease`, `saved_plan` | 1 RRU each (a plan over 4 KB: 1 per 4 KB) |
//! | `ids` | 1 RRU per 4 KB of ids (about 100 cutovers) |
//!
//! Prices in us-east-1 (on-demand, since the price cut of 1 November 2024, as published in July
//! 2025): $0.625 per million WRU and $0.125 per million RRU. Measured through a counting proxy
//! (`deploy/local/bench-rescue.sh`), a cutover with 60 s periods and 15 s polls makes per
//! minute 63 `Query` (the engine reads its journal about once a second, for operator actions),
//! 8 fenced appends, 12 renewals and a few other calls: 46 WRU and 64 RRU, so
//! 46 × $0.625 / 10⁶ + 64 × $0.125 / 10⁶ ≈ **$0.000036 per cutover-minute** (an hour-long
//! cutover: about $0.002), plus storage ($0.25 per GB-month; a journal is tens of KB). A daemon
//! on the store reads about 46 RRU a minute for each unfinished cutover it does not drive (its
//! rescue poll: the ids, the cutover's new records, its latest and its lease).

mod lease;
mod table;

pub use table::init;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::future::BoxFuture;

use super::{Cursor, Fence, JournalError, Lease, LeaseInfo, Record, Store, new_id, record};
use crate::saga::Event;

/// The scheme of a store URL: `dynamodb://TABLE`.
pub const SCHEME: &str = "dynamodb://";

/// Retries of an append that lost the race for its sequence number to another writer (or whose
/// transaction met another one): re-read the newest number at once, then back off, jittered, so
/// that a crowd of writers spreads out. Two writers (an owner and an operator) rarely race twice.
pub const APPEND_RACE: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(5))
    .with_max_delay(Duration::from_millis(250))
    .with_jitter()
    .with_max_times(30);

/// How many fresh ids `create` tries when an id is taken.
const CREATE_ATTEMPTS: usize = 5;

/// The partition of the cutover index.
const INDEX: &str = "index";

/// The table name of a store URL: `dynamodb://TABLE`, TABLE a DynamoDB table name (3–255 of
/// `A-Z a-z 0-9 _ - .`). Anything else is refused, naming the URL and the accepted form.
pub fn table_of(url: &str) -> Result<&str, JournalError> {
    let refuse = |why: &str| {
        JournalError::Store(format!(
            "{url:?} is not a store URL ({why}); accepted: dynamodb://TABLE, with TABLE a DynamoDB table name \
             (3-255 letters, digits, '_', '-' or '.')"
        ))
    };
    let table = url.strip_prefix(SCHEME).ok_or_else(|| refuse("unknown scheme"))?;
    if !(3..=255).contains(&table.len()) {
        return Err(refuse("the table name must be 3-255 characters"));
    }
    if let Some(c) = table
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(refuse(&format!("{c:?} cannot be in a table name")));
    }
    Ok(table)
}

/// The journal store in one DynamoDB table. Clones share the client and what the handle knows.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Per journal, the next sequence number this handle knows of: one past the newest record
    /// it wrote or read (records are never deleted, so it never runs ahead of the table). A
    /// journal listed here exists.
    next: Arc<Mutex<HashMap<String, u64>>>,
}

/// What became of one attempt to write a record.
enum Attempt {
    Written,
    /// Another writer holds that sequence number.
    Taken,
    /// Another transaction on the same items, or throttled: try the same number again.
    Busy,
    Fenced,
}

impl DynamoStore {
    /// The store in `table`, with cutover's deadlines and retries and the call counters.
    pub fn new(conf: &SdkConfig, table: &str) -> DynamoStore {
        DynamoStore {
            client: client(conf),
            table: table.to_string(),
            next: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// An SDK error as one line: the operation, the table and the service's code and message
    /// (never the SDK's debug dump, which `aws::classify` logs at debug level).
    fn error<E>(&self, operation: &'static str, err: SdkError<E, HttpResponse>) -> JournalError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        store_error(&self.table, operation, err)
    }

    fn known_next(&self, id: &str) -> Option<u64> {
        self.next.lock().unwrap().get(id).copied()
    }

    /// Notes that the journal exists and holds at least `next - 1` records.
    fn saw(&self, id: &str, next: u64) {
        let mut known = self.next.lock().unwrap();
        let entry = known.entry(id.to_string()).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Whether cutover `id` exists (its index item does).
    async fn exists(&self, id: &str) -> Result<bool, JournalError> {
        pace(false).await;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(INDEX))
            .key("sk", s(id))
            .projection_expression("sk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out.item().is_some())
    }

    /// The number of the newest record of a journal (0 for none), or `NotFound`.
    async fn newest(&self, id: &str) -> Result<u64, JournalError> {
        pace(false).await;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :rec)")
            .expression_attribute_values(":pk", s(journal_pk(id)))
            .expression_attribute_values(":rec", s("rec#"))
            .scan_index_forward(false)
            .limit(1)
            .projection_expression("sk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("Query", e))?;
        match out.items().first() {
            Some(item) => seq_of(item).ok_or_else(|| self.corrupt(id, 0, "a record key is not rec#<number>")),
            None if self.exists(id).await? => Ok(0),
            None => Err(JournalError::NotFound(id.to_string())),
        }
    }

    fn corrupt(&self, id: &str, seq: u64, message: &str) -> JournalError {
        JournalError::Corrupt {
            path: format!("{SCHEME}{}/{}", self.table, journal_pk(id)).into(),
            line: seq as usize,
            message: message.to_string(),
        }
    }

    async fn create_now(&self, plan_text: &str) -> Result<String, JournalError> {
        for _ in 0..CREATE_ATTEMPTS {
            let id = new_id();
            let writer = nonce();
            let index = Put::builder()
                .table_name(&self.table)
                .item("pk", s(INDEX))
                .item("sk", s(&id))
                .item("writer", s(&writer))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .expect("a Put with its table, item and condition");
            let plan = Put::builder()
                .table_name(&self.table)
                .item("pk", s(journal_pk(&id)))
                .item("sk", s("plan"))
                .item("plan", s(plan_text))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("a Put with its table, item and condition");
            pace(true).await;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(index).build())
                .transact_items(TransactWriteItem::builder().put(plan).build())
                .send()
                .await;
            match sent {
                Ok(_) => {}
                Err(e) => match cancellation(&e) {
                    // Our own first attempt, whose answer was lost.
                    Some(reasons) if written_by(reasons.first(), &writer) => {}
                    Some(reasons) if reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed")) => continue,
                    _ => return Err(self.error("TransactWriteItems", e)),
                },
            }
            self.saw(&id, 1);
            return Ok(id);
        }
        Err(JournalError::Store(format!(
            "DynamoDB table {}: {CREATE_ATTEMPTS} fresh cutover ids were all taken",
            self.table
        )))
    }

    async fn append_now(&self, id: &str, event: &Event, fence: Option<&Fence>) -> Result<Record, JournalError> {
        let record = record(event);
        let json = serde_json::to_string(&record).expect("journal records serialize");
        let writer = nonce();
        let mut backoff = APPEND_RACE.build();
        let mut seq = match self.known_next(id) {
            Some(next) => next,
            None => self.newest(id).await? + 1,
        };
        let mut races = 0u32;
        loop {
            let attempt = self.write_record(id, seq, &json, &writer, fence).await?;
            match attempt {
                Attempt::Written => {
                    self.saw(id, seq + 1);
                    return Ok(record);
                }
                Attempt::Fenced => {
                    let fence = fence.expect("only a fenced append is fenced");
                    return Err(JournalError::Fenced {
                        target: fence.target.clone(),
                        token: fence.token,
                    });
                }
                Attempt::Taken | Attempt::Busy => {}
            }
            // The first lost race re-reads at once; the next ones back off first.
            if races > 0 || matches!(attempt, Attempt::Busy) {
                let Some(pause) = backoff.next() else {
                    return Err(JournalError::Store(format!(
                        "DynamoDB table {}: cutover {id}: gave up appending after {races} races with other writers",
                        self.table
                    )));
                };
                tokio::time::sleep(pause).await;
            }
            races += 1;
            if matches!(attempt, Attempt::Taken) {
                seq = self.newest(id).await? + 1;
                self.saw(id, seq);
            }
        }
    }

    /// One attempt to write record `seq`: a conditional `PutItem`, or with a fence a transaction
    /// that also checks the lease.
    async fn write_record(
        &self,
        id: &str,
        seq: u64,
        json: &str,
        writer: &str,
        fence: Option<&Fence>,
    ) -> Result<Attempt, JournalError> {
        let Some(fence) = fence else {
            pace(true).await;
            let sent = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(journal_pk(id)))
                .item("sk", s(rec_sk(seq)))
                .item("record", s(json))
                .item("writer", s(writer))
                .condition_expression("attribute_not_exists(sk)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            return match sent {
                Ok(_) => Ok(Attempt::Written),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(taken)) => {
                        Ok(if has_writer(taken.item(), writer) {
                            Attempt::Written
                        } else {
                            Attempt::Taken
                        })
                    }
                    _ => Err(self.error("PutItem", e)),
                },
            };
        };
        let lease = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(target_pk(&fence.target)))
            .key("sk", s("lease"))
            .condition_expression("#token = :token AND #expires > :now")
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#expires", "expires")
            .expression_attribute_values(":token", n(fence.token))
            .expression_attribute_values(":now", n(now_ms()))
            .build()
            .expect("a ConditionCheck with its table, key and condition");
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(journal_pk(id)))
            .item("sk", s(rec_sk(seq)))
            .item("record", s(json))
            .item("writer", s(writer))
            .condition_expression("attribute_not_exists(sk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("a Put with its table, item and condition");
        pace(true).await;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(lease).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        let Err(e) = sent else {
            return Ok(Attempt::Written);
        };
        let Some(reasons) = cancellation(&e) else {
            return Err(self.error("TransactWriteItems", e));
        };
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        Ok(match (code(0), code(1)) {
            // Our own earlier attempt landed (under the lease as it was then).
            (_, "ConditionalCheckFailed") if written_by(reasons.get(1), writer) => Attempt::Written,
            ("ConditionalCheckFailed", _) => Attempt::Fenced,
            (_, "ConditionalCheckFailed") => Attempt::Taken,
            (a, b) if [a, b].iter().all(|c| RETRY_REASONS.contains(c)) => Attempt::Busy,
            _ => return Err(self.error("TransactWriteItems", e)),
        })
    }

    async fn read_now(&self, id: &str, from: Cursor) -> Result<(Vec<Record>, Cursor), JournalError> {
        let mut records = Vec::new();
        let mut seq = from.seq;
        let mut start = None;
        loop {
            pace(false).await;
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(journal_pk(id)))
                .expression_attribute_values(":after", s(rec_sk(from.seq)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            for item in out.items() {
                seq += 1;
                if seq_of(item) != Some(seq) {
                    return Err(self.corrupt(id, seq, &format!("record {seq} is missing")));
                }
                let json = item
                    .get("record")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| self.corrupt(id, seq, "the item has no record attribute"))?;
                let record = serde_json::from_str(json).map_err(|e| self.corrupt(id, seq, &e.to_string()))?;
                records.push(record);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        if seq == 0 && self.known_next(id).is_none() && !self.exists(id).await? {
            return Err(JournalError::NotFound(id.to_string()));
        }
        self.saw(id, seq + 1);
        Ok((records, Cursor { seq, offset: seq }))
    }

    /// One attribute of one item, read strongly consistent.
    async fn get_string(&self, pk: String, sk: &str, attribute: &str) -> Result<Option<String>, JournalError> {
        pace(false).await;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out
            .item()
            .and_then(|item| item.get(attribute))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    async fn set_latest_now(&self, target: &str, id: &str) -> Result<(), JournalError> {
        pace(true).await;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(target_pk(target)))
            .item("sk", s("latest"))
            .item("id", s(id))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }

    async fn ids_now(&self) -> Result<Vec<String>, JournalError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            pace(false).await;
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(INDEX))
                .projection_expression("sk")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", e))?;
            ids.extend(
                out.items()
                    .iter()
                    .filter_map(|item| item.get("sk").and_then(|v| v.as_s().ok()).cloned()),
            );
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(ids);
            }
        }
    }
}

impl Store for DynamoStore {
    fn create<'a>(&'a self, plan_text: &'a str) -> BoxFuture<'a, Result<String, JournalError>> {
        Box::pin(self.create_now(plan_text))
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        event: &'a Event,
        fence: Option<&'a Fence>,
    ) -> BoxFuture<'a, Result<Record, JournalError>> {
        Box::pin(self.append_now(id, event, fence))
    }

    fn read<'a>(&'a self, id: &'a str, from: Cursor) -> BoxFuture<'a, Result<(Vec<Record>, Cursor), JournalError>> {
        Box::pin(self.read_now(id, from))
    }

    fn saved_plan<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(self.get_string(journal_pk(id), "plan", "plan"))
    }

    fn latest<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<String>, JournalError>> {
        Box::pin(self.get_string(target_pk(target), "latest", "id"))
    }

    fn set_latest<'a>(&'a self, target: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(self.set_latest_now(target, id))
    }

    fn try_lock<'a>(&'a self, target: &'a str, owner: &'a str) -> BoxFuture<'a, Result<Option<Lease>, JournalError>> {
        Box::pin(self.take(target, owner))
    }

    fn lease<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>, JournalError>> {
        Box::pin(self.lease_info(target))
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, JournalError>> {
        Box::pin(self.ids_now())
    }

    fn describe(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }

    fn cheap_reads(&self) -> bool {
        false
    }

    fn known_len(&self, id: &str) -> Option<u64> {
        self.known_next(id).map(|next| next.saturating_sub(1))
    }
}

/// Takes a token of the budget's store class before a call: writes (appends, which journal an
/// intent before it is acted on, and the lease's takeovers, renewals and releases) in the urgent
/// lane, so that reads never hold them back; reads in the caller's lane (urgent inside a
/// rollback, else poll).
async fn pace(write: bool) {
    use crate::budget::{self, Class, Lane};
    let lane = if write { Lane::Urgent } else { budget::lane() };
    budget::global().acquire_in(Class::Store, lane).await
}

/// A DynamoDB client with cutover's deadlines and retries, counted for `/metrics`.
fn client(conf: &SdkConfig) -> Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(conf)
        .timeout_config(crate::aws::timeout_config())
        .retry_config(crate::aws::retry_config())
        .interceptor(crate::aws::calls::Counter)
        .build();
    Client::from_conf(conf)
}

/// See [`DynamoStore::error`]; a missing table says how to create it.
fn store_error<E>(table: &str, operation: &'static str, err: SdkError<E, HttpResponse>) -> JournalError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = crate::aws::classify(operation, err);
    if e.code.as_deref() == Some("ResourceNotFoundException") {
        return JournalError::Store(format!(
            "DynamoDB table {table} not found ({operation}: {}): create it with `cutover store init --store {SCHEME}{table}`",
            e.message
        ));
    }
    JournalError::Store(format!("DynamoDB {operation} on table {table}: {}", e.message))
}

/// Cancellation reasons of a transaction that are worth the same attempt again.
const RETRY_REASONS: &[&str] = &[
    "None",
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// The cancellation reasons of a cancelled transaction, item by item.
fn cancellation(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> Option<&[CancellationReason]> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(c.cancellation_reasons()),
        _ => None,
    }
}

/// Whether a cancellation reason failed on an item this call's nonce wrote.
fn written_by(reason: Option<&CancellationReason>, writer: &str) -> bool {
    reason.is_some_and(|r| r.code() == Some("ConditionalCheckFailed") && has_writer(r.item(), writer))
}

fn has_writer(item: Option<&HashMap<String, AttributeValue>>, writer: &str) -> bool {
    item.and_then(|i| i.get("writer"))
        .and_then(|v| v.as_s().ok())
        .is_some_and(|w| w == writer)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn journal_pk(id: &str) -> String {
    format!("cutover#{id}")
}

fn target_pk(target: &str) -> String {
    format!("target#{target}")
}

fn rec_sk(seq: u64) -> String {
    format!("rec#{seq:012}")
}

/// The sequence number of a record item (`sk = rec#<number>`).
fn seq_of(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    item.get("sk")?.as_s().ok()?.strip_prefix("rec#")?.parse().ok()
}

/// Now on the wall clock, in Unix milliseconds (the unit of a lease's `expires`).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A value no other write carries: 64 bits from the OS-seeded hasher, the time, pid and a counter.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_names_a_table() {
        assert_eq!(table_of("dynamodb://cutover-state").unwrap(), "cutover-state");
        assert_eq!(table_of("dynamodb://a.b_c-1").unwrap(), "a.b_c-1");
    }

    #[test]
    fn anything_but_a_dynamodb_url_is_refused_with_the_accepted_form() {
        for url in [
            "s3://bucket",
            "dynamodb:/t",
            "DYNAMODB://table",
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://table/extra",
            "dynamodb://table?region=x",
            "/var/lib/cutover",
        ] {
            let e = table_of(url).unwrap_err().to_string();
            assert!(e.contains(&format!("{url:?}")), "{e}");
            assert!(e.contains("dynamodb://TABLE"), "{e}");
        }
        let long = format!("dynamodb://{}", "t".repeat(256));
        assert!(table_of(&long).is_err());
    }

    #[test]
    fn record_keys_sort_as_their_numbers() {
        assert!(rec_sk(9) < rec_sk(10));
        assert!(rec_sk(999) < rec_sk(1000));
        let item = HashMap::from([("sk".to_string(), s(rec_sk(42)))]);
        assert_eq!(seq_of(&item), Some(42));
        // The plan copy sorts before every record, so a read from a cursor never meets it.
        assert!("plan" < rec_sk(0).as_str());
    }

    #[test]
    fn nonces_differ() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| nonce()).collect();
        assert_eq!(a.len(), 1000);
    }
}
