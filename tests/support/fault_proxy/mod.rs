//! A small fault-injecting HTTP/1.1 proxy to put between an AWS SDK and moto.
//!
//! [`FaultProxy::start`] binds `127.0.0.1:0` and forwards every request to the
//! upstream (moto) unchanged: method, path, query, headers (their case too, so
//! SigV4 stays valid) and body; the response is streamed back. Hop-by-hop headers
//! (`Connection`, `Transfer-Encoding`, …) are not forwarded, so the SDK's keep-alive
//! connection to the proxy survives moto's `Connection: close`.
//!
//! Faults are set at run time through the proxy (or a [`FaultHandle`] cloned from
//! it) with [`FaultHandle::set`] and removed with [`FaultHandle::clear`]:
//!
//! * **throttling**: HTTP 400 with the error the real service sends, so the SDK
//!   reports code `Throttling` (Query protocol: ELBv2, CloudWatch) or
//!   `ThrottlingException` (awsJson: DynamoDB) and retries it as throttling;
//! * **5xx**: HTTP 500/503 with `InternalFailure`/`ServiceUnavailable` (Query) or
//!   `InternalServerError`/`ServiceUnavailable` (awsJson) bodies;
//! * **delay**: a fixed pause plus uniform jitter before the request goes on;
//! * **reset**: a TCP RST (SO_LINGER 0, then close) before any response byte;
//! * **outage** for a duration: [`OutageKind::Refuse`] closes the listening
//!   socket (connection refused), [`OutageKind::Reset`] accepts and resets at
//!   once, [`OutageKind::Blackhole`] stops answering (connections queue, requests
//!   hang until the outage ends).
//!
//! Every fault but the outage is a [`Rule`]: a probability, an optional set of
//! operation names, and an optional window after `set` (so "DescribeListeners
//! throttled for 20 s" is `Rule::always().only(["DescribeListeners"]).lasting(20 s)`).
//! Per request, the first delay rule that fires sets the pause; then reset, 5xx and
//! throttle rules are tried in that order, each with its own roll, and the first
//! that fires answers (so a 30 % throttle beside a 10 % reset throttles 27 % of all).
//!
//! ```text
//! let proxy = FaultProxy::start(&moto_endpoint).await; // or start_in_thread(..) from sync code
//! let conf = aws_config::defaults(BehaviorVersion::latest()).endpoint_url(proxy.endpoint()) /* … */;
//! proxy.set(Faults::none().throttle(Rule::p(0.3)).reset(Rule::p(0.01)));
//! proxy.set(Faults::none().throttle(Rule::always().only(["DescribeListeners"]).lasting(Duration::from_secs(20))));
//! proxy.set(Faults::none().outage(OutageKind::Refuse, Duration::from_secs(5)));
//! println!("{}", proxy.snapshot()); // requests, req/s and faults per operation
//! proxy.clear();
//! ```
//!
//! Operations are recognised per protocol: `X-Amz-Target: DynamoDB_20120810.PutItem`
//! (awsJson 1.0/1.1), or `Action=DescribeListeners` in a form-encoded body or the
//! query string (Query protocol). Requests to moto's own `/moto-api/...` are passed
//! through untouched and never faulted. Requests and injected faults are counted
//! per operation name (bare, so two services' `ListTagsForResource` add up):
//! [`FaultHandle::snapshot`].
//!
//! [`FaultProxy::start`] runs on the caller's Tokio runtime, so it stalls while
//! that runtime's thread blocks (a single-threaded `#[tokio::test]` waiting on
//! `Command::output()` of a binary that talks to the proxy would time out);
//! [`FaultProxy::start_in_thread`] runs it on a thread of its own.
//!
//! Not handled: request bodies compressed with `Content-Encoding` (CloudWatch's
//! `PutMetricData` over 10 KiB): their operation shows as [`UNKNOWN_OPERATION`] and
//! only rules without an operation filter apply to them. rpcv2Cbor and REST
//! protocols are forwarded but not recognised either. Upstream must be plain `http://`.
//!
//! The module is self-contained (tokio, hyper, hyper-util, http-body-util, bytes) so
//! that tests and examples can include it with `#[path = ".../fault_proxy/mod.rs"] mod fault_proxy;`.
//! Its files: `faults` (the rules), `proxy` (starting, stopping, the handle), `server` (the
//! accept loop and each request's fate), `decide` (which fault a request gets), `protocol`
//! (which operation a request is), `errors` (the services' error bodies), `forward` (to
//! moto), `stream` (the resettable socket) and `stats` (the counters).
#![allow(dead_code, reason = "each including crate uses a different subset of the API")]

mod decide;
mod errors;
mod faults;
mod forward;
mod protocol;
mod proxy;
mod server;
mod stats;
mod stream;

use std::sync::{Mutex, MutexGuard};

// The API, whatever file defines it; like the dead code above, unused in one crate or another.
#[allow(unused_imports, reason = "each including crate uses a different subset of the API")]
pub use faults::{CodedError, Delay, Faults, Outage, OutageKind, Rule, ServerError};
#[allow(unused_imports, reason = "each including crate uses a different subset of the API")]
pub use proxy::{FaultHandle, FaultProxy};
#[allow(unused_imports, reason = "each including crate uses a different subset of the API")]
pub use stats::{OpStats, Snapshot};

/// The key under which requests whose operation could not be recognised are counted.
pub const UNKNOWN_OPERATION: &str = "(unknown)";

/// Header added to every response the proxy makes up, naming the fault (`throttle`, `server-error`).
pub const FAULT_HEADER: &str = "x-fault-proxy";

/// The mutex's contents, whether or not a panic poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
