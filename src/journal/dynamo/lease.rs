//! Leases in the table: the takeover, the renewal task, the release, and what `lease` shows
//! (the rules are in [`journal`](crate::journal); how this file keeps them, in [`super`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::DynamoStore;
use super::item::{n, nonce, now_ms, s, target_pk};
use crate::journal::{JournalError, LEASE_RENEW, LEASE_TTL, Lease, LeaseHolder, LeaseInfo};

/// A lease in the table, renewed by a task every [`LEASE_RENEW`] until dropped.
struct Renewing {
    store: DynamoStore,
    target: String,
    token: u64,
    /// Until when the lease is ours: [`LEASE_TTL`] after sending the last renewal that got through.
    until: Arc<Mutex<Instant>>,
    task: tokio::task::JoinHandle<()>,
    /// Set by the first release (explicit or by drop): a lease is released once.
    released: AtomicBool,
}

impl Renewing {
    /// Stops the renewals and claims the release: `false` when it was already claimed.
    fn let_go(&self) -> bool {
        self.task.abort();
        *self.until.lock().unwrap() = Instant::now();
        !self.released.swap(true, Ordering::SeqCst)
    }
}

/// Releases the lease item, logging (never failing): an unreleased lease runs out by itself.
async fn release(store: DynamoStore, target: String, token: u64) {
    match store.release(&target, token).await {
        Ok(true) => debug!("released the lease of {target} (token {token})"),
        Ok(false) => debug!("the lease of {target} (token {token}) was no longer ours to release"),
        Err(e) => warn!("releasing the lease of {target} (token {token}): {e}; it runs out by itself"),
    }
}

impl LeaseHolder for Renewing {
    fn held_for(&self, margin: Duration) -> bool {
        !self.released.load(Ordering::SeqCst) && Instant::now() + margin < *self.until.lock().unwrap()
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.let_go() {
                release(self.store.clone(), self.target.clone(), self.token).await
            }
        })
    }
}

impl Drop for Renewing {
    fn drop(&mut self) {
        if !self.let_go() {
            return;
        }
        // Not released explicitly (a task that ended early, a panic): release it from a task,
        // since drop cannot wait. It may die with the process; then the lease runs out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(release(self.store.clone(), self.target.clone(), self.token));
        }
    }
}

impl DynamoStore {
    /// `try_lock`: one conditional `UpdateItem`, then the renewal task.
    pub(super) async fn take(&self, target: &str, owner: &str) -> Result<Option<Lease>, JournalError> {
        let claim = nonce();
        let sent = Instant::now();
        let now = now_ms();
        super::pace(true).await;
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(target_pk(target)))
            .key("sk", s("lease"))
            .update_expression("SET #owner = :owner, #expires = :expires, #claim = :claim ADD #token :one")
            .condition_expression("attribute_not_exists(#token) OR #expires <= :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#expires", "expires")
            .expression_attribute_names("#claim", "claim")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":expires", n(now + LEASE_TTL.as_millis() as u64))
            .expression_attribute_values(":claim", s(&claim))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let token = match taken {
            Ok(out) => number(out.attributes().and_then(|a| a.get("token"))),
            Err(e) => match e.as_service_error() {
                // Our own first attempt took it and its answer was lost; the SDK's retry met it.
                Some(UpdateItemError::ConditionalCheckFailedException(held))
                    if held.item().and_then(|i| i.get("claim")).and_then(|v| v.as_s().ok()) == Some(&claim) =>
                {
                    number(held.item().and_then(|i| i.get("token")))
                }
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => return Ok(None),
                _ => return Err(self.error("UpdateItem", e)),
            },
        };
        let token = token.ok_or_else(|| {
            JournalError::Store(format!(
                "DynamoDB table {}: the lease of {target} has no numeric token",
                self.table
            ))
        })?;
        let until = Arc::new(Mutex::new(sent + LEASE_TTL));
        let task = tokio::spawn(renew_every(self.clone(), target.to_string(), token, until.clone()));
        let holder = Renewing {
            store: self.clone(),
            target: target.to_string(),
            token,
            until,
            task,
            released: AtomicBool::new(false),
        };
        Ok(Some(Lease::new(target, token, Box::new(holder))))
    }

    /// One renewal: `Ok(false)` when the condition refused it (the lease is no longer ours).
    async fn renew(&self, target: &str, token: u64) -> Result<bool, JournalError> {
        let now = now_ms();
        super::pace(true).await;
        let renewed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(target_pk(target)))
            .key("sk", s("lease"))
            .update_expression("SET #expires = :expires")
            .condition_expression("#token = :token AND #expires > :now")
            .expression_attribute_names("#expires", "expires")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":expires", n(now + LEASE_TTL.as_millis() as u64))
            .expression_attribute_values(":token", n(token))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match renewed {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    /// Gives the lease up if it is still `token`'s: `expires = 0`, so anyone may take it at
    /// once whatever their clock, and the token stays (the next takeover increments it).
    async fn release(&self, target: &str, token: u64) -> Result<bool, JournalError> {
        super::pace(true).await;
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(target_pk(target)))
            .key("sk", s("lease"))
            .update_expression("SET #expires = :zero")
            .condition_expression("#token = :token")
            .expression_attribute_names("#expires", "expires")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":token", n(token))
            .send()
            .await;
        match released {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    /// `lease`: the lease item as it is now. `expires_at` is `None` once released.
    pub(super) async fn lease_info(&self, target: &str) -> Result<Option<LeaseInfo>, JournalError> {
        super::pace(false).await;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(target_pk(target)))
            .key("sk", s("lease"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let expires = number(item.get("expires")).unwrap_or(0);
        Ok(Some(LeaseInfo {
            owner: item
                .get("owner")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default(),
            token: number(item.get("token")).unwrap_or(0),
            expires_at: (expires > 0)
                .then(|| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(expires)).to_string()),
            held: expires > now_ms(),
        }))
    }
}

/// The renewal task: every [`LEASE_RENEW`] (each call bounded by it, so a hung call does not
/// hold the next one back), until the lease is refused or the holder is dropped.
async fn renew_every(store: DynamoStore, target: String, token: u64, until: Arc<Mutex<Instant>>) {
    let mut next = Instant::now() + LEASE_RENEW;
    loop {
        tokio::time::sleep_until(next).await;
        next = (next + LEASE_RENEW).max(Instant::now());
        let sent = Instant::now();
        match tokio::time::timeout(LEASE_RENEW, store.renew(&target, token)).await {
            Ok(Ok(true)) => *until.lock().unwrap() = sent + LEASE_TTL,
            Ok(Ok(false)) => {
                warn!("the lease of {target} (token {token}) is no longer ours: stopped renewing it");
                *until.lock().unwrap() = sent;
                return;
            }
            Ok(Err(e)) => warn!("renewing the lease of {target} (token {token}): {e}"),
            Err(_) => warn!(
                "renewing the lease of {target} (token {token}): no answer within {}s",
                LEASE_RENEW.as_secs()
            ),
        }
    }
}

fn number(v: Option<&AttributeValue>) -> Option<u64> {
    v?.as_n().ok()?.parse().ok()
}
