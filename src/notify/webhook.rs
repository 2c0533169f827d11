//! The generic webhook: the journal record as JSON, as the journal holds it
//! (`{"at": …, "event": …, …}`), plus `cutover_id` and `service`, signed when a secret is set.
//! Pure.
//!
//! Headers: `X-Cutover-Event` (the event name, e.g. `rolled_back`; the body's `event` is the
//! journal's, e.g. `finished`), `X-Cutover-Delivery` (unique per delivery, the same on each of
//! its retries, so a receiver can drop a duplicate), and with a secret
//! `X-Cutover-Signature: sha256=HEX`, the HMAC-SHA256 of the exact body bytes with the secret.
//! A receiver recomputes it over the raw body it received (before parsing) and compares in
//! constant time.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::fold::Change;

pub const EVENT_HEADER: &str = "x-cutover-event";
pub const DELIVERY_HEADER: &str = "x-cutover-delivery";
pub const SIGNATURE_HEADER: &str = "x-cutover-signature";

/// The body: the record with `cutover_id` and `service` beside its own fields.
pub fn body(c: &Change) -> Vec<u8> {
    let mut record = c.record.clone();
    if let Value::Object(map) = &mut record {
        map.insert("cutover_id".into(), json!(c.facts.id));
        map.insert("service".into(), json!(c.facts.service));
    }
    serde_json::to_vec(&record).unwrap_or_default()
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length (longer ones are hashed first), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delivery id: the cutover, the record's position in its journal and the `[[notify]]`
/// entry. Unique per delivery, and the same if another process ever sent the same record to
/// the same entry, so a receiver can de-duplicate across processes too.
pub fn delivery_id(cutover: &str, seq: u64, entry: usize) -> String {
    format!("{cutover}.{seq}.{entry}")
}
