//! The journals in the table: `create` (the index item and the plan copy in one transaction),
//! `append` (a conditional `PutItem`, or a transaction that also checks the owner's lease, retried
//! under [`APPEND_RACE`] when another writer took the number), `read` (every page of a `Query`
//! past the cursor, checked for gaps), and the index and latest items.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use backon::BackoffBuilder;

use super::item::{journal_pk, n, nonce, now_ms, rec_sk, s, seq_of, target_pk};
use super::{APPEND_RACE, CREATE_ATTEMPTS, DynamoStore, INDEX, SCHEME, pace};
use crate::journal::{Cursor, Fence, JournalError, Record, new_id, record};
use crate::saga::Event;

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

    pub(super) async fn create_now(&self, plan_text: &str) -> Result<String, JournalError> {
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

    pub(super) async fn append_now(
        &self,
        id: &str,
        event: &Event,
        fence: Option<&Fence>,
    ) -> Result<Record, JournalError> {
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
        // The same item and condition either way: written alone (1 WRU) or in the transaction.
        let item = HashMap::from([
            ("pk".to_string(), s(journal_pk(id))),
            ("sk".to_string(), s(rec_sk(seq))),
            ("record".to_string(), s(json)),
            ("writer".to_string(), s(writer)),
        ]);
        const NEW_RECORD: &str = "attribute_not_exists(sk)";
        let Some(fence) = fence else {
            pace(true).await;
            let sent = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(NEW_RECORD)
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
            .set_item(Some(item))
            .condition_expression(NEW_RECORD)
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

    pub(super) async fn read_now(&self, id: &str, from: Cursor) -> Result<(Vec<Record>, Cursor), JournalError> {
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
    pub(super) async fn get_string(
        &self,
        pk: String,
        sk: &str,
        attribute: &str,
    ) -> Result<Option<String>, JournalError> {
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

    pub(super) async fn set_latest_now(&self, target: &str, id: &str) -> Result<(), JournalError> {
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

    pub(super) async fn ids_now(&self) -> Result<Vec<String>, JournalError> {
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
