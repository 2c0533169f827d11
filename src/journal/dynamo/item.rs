//! The table's keys and attribute values, the wall clock of a lease, and the nonces that let a
//! retried write recognise its own earlier attempt.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn journal_pk(id: &str) -> String {
    format!("cutover#{id}")
}

pub(super) fn target_pk(target: &str) -> String {
    format!("target#{target}")
}

pub(super) fn rec_sk(seq: u64) -> String {
    format!("rec#{seq:012}")
}

/// The sequence number of a record item (`sk = rec#<number>`).
pub(super) fn seq_of(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    item.get("sk")?.as_s().ok()?.strip_prefix("rec#")?.parse().ok()
}

/// Now on the wall clock, in Unix milliseconds (the unit of a lease's `expires`).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A value no other write carries: 64 bits from the OS-seeded hasher, the time, pid and a counter.
pub(super) fn nonce() -> String {
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
