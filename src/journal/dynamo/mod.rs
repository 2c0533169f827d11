//! The shared store: one DynamoDB table (`--store dynamodb://TABLE`), so that processes on
//! different machines share journals, plan copies, latest-cutover indexes and leases.
//!
//! This file has the handle, the [`Store`] contract's entry points and the rules below;
//! `records.rs` creates, appends and reads journals, `lease.rs` takes, renews and releases
//! leases, `table.rs` names the table ([`table_of`]) and creates it ([`init`]), and `item.rs` has
//! the keys, the wall clock and the nonces.
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
mod item;
mod lease;
mod records;
mod table;

pub use table::{init, table_of};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use backon::ExponentialBuilder;
use futures_util::future::BoxFuture;

use super::{Cursor, Fence, JournalError, Lease, LeaseInfo, Record, Store};
use crate::saga::Event;
use item::{journal_pk, target_pk};

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
