//! The call counter: requests and injected faults per operation, connections, and the
//! [`Snapshot`] of them a test reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use super::lock;
use super::proxy::Shared;

/// What happened to the requests for one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Requests received (faulted or not).
    pub requests: u64,
    /// Requests sent on to moto.
    pub forwarded: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub resets: u64,
    /// Requests that arrived during an outage (reset, or held and then forwarded).
    pub outages: u64,
    /// Requests that were delayed (they may have been faulted or forwarded after).
    pub delayed: u64,
}

impl OpStats {
    /// Injected failures: throttles, 5xx, resets and outages (not delays).
    pub fn faults(&self) -> u64 {
        self.throttled + self.server_errors + self.resets + self.outages
    }

    fn add(&mut self, o: &OpStats) {
        self.requests += o.requests;
        self.forwarded += o.forwarded;
        self.throttled += o.throttled;
        self.server_errors += o.server_errors;
        self.resets += o.resets;
        self.outages += o.outages;
        self.delayed += o.delayed;
    }
}

/// Counters since the proxy started or since [`FaultHandle::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// Per operation name ([`UNKNOWN_OPERATION`](super::UNKNOWN_OPERATION) for unrecognised requests).
    pub operations: BTreeMap<String, OpStats>,
    /// Requests to moto's `/moto-api/...` (never faulted, not in `operations`).
    pub moto_api: u64,
    /// TCP connections accepted and served.
    pub connections: u64,
    /// TCP connections accepted and reset at once during an [`OutageKind::Reset`] outage.
    pub reset_connections: u64,
}

impl Snapshot {
    /// The counters of one operation (zero if it was never seen).
    pub fn op(&self, name: &str) -> OpStats {
        self.operations.get(name).copied().unwrap_or_default()
    }

    /// All operations added up.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in self.operations.values() {
            t.add(s);
        }
        t
    }

    /// Requests per second received for `name` over `elapsed`.
    pub fn rate(&self, name: &str) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.op(name).requests as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Snapshot {
    /// A table: one line per operation with requests, requests per second and faults.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "fault_proxy: {secs:.1} s, {} connections, {} moto-api requests",
            self.connections, self.moto_api
        )?;
        writeln!(
            f,
            "{:<32} {:>9} {:>8} {:>9} {:>6} {:>6} {:>7} {:>7}",
            "operation", "requests", "req/s", "throttled", "5xx", "resets", "outages", "delayed"
        )?;
        let total = self.total();
        let rows = self
            .operations
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("total", &total)]);
        for (name, s) in rows {
            let rate = if secs > 0.0 { s.requests as f64 / secs } else { 0.0 };
            writeln!(
                f,
                "{:<32} {:>9} {:>8.2} {:>9} {:>6} {:>6} {:>7} {:>7}",
                name, s.requests, rate, s.throttled, s.server_errors, s.resets, s.outages, s.delayed
            )?;
        }
        Ok(())
    }
}

pub(super) struct Stats {
    pub(super) since: Instant,
    pub(super) operations: HashMap<String, OpStats>,
    pub(super) moto_api: u64,
    pub(super) connections: u64,
    pub(super) reset_connections: u64,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            since: Instant::now(),
            operations: HashMap::new(),
            moto_api: 0,
            connections: 0,
            reset_connections: 0,
        }
    }
}

impl Shared {
    /// Counts into `op`'s counters (made on its first request).
    pub(super) fn count(&self, op: &str, f: impl FnOnce(&mut OpStats)) {
        let mut stats = lock(&self.stats);
        match stats.operations.get_mut(op) {
            Some(s) => f(s),
            None => f(stats.operations.entry(op.to_string()).or_default()),
        }
    }
}
