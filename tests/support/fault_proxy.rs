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
//! The file is self-contained (tokio, hyper, hyper-util, http-body-util, bytes) so
//! that tests and examples can include it with `#[path = "..."] mod fault_proxy;`.
#![allow(dead_code, reason = "each including crate uses a different subset of the API")]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The key under which requests whose operation could not be recognised are counted.
pub const UNKNOWN_OPERATION: &str = "(unknown)";

/// Header added to every response the proxy makes up, naming the fault (`throttle`, `server-error`).
pub const FAULT_HEADER: &str = "x-fault-proxy";

// ---------------------------------------------------------------------------
// Fault configuration
// ---------------------------------------------------------------------------

/// When a fault applies: with which probability, to which operations, for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Chance in `[0, 1]` that a matching request gets the fault; 1 = every one.
    pub probability: f64,
    /// Operation names (`DescribeListeners`, `PutItem`, …) the rule is restricted
    /// to; empty = every request, including ones whose operation is unknown.
    pub operations: Vec<String>,
    /// How long after [`FaultHandle::set`] the rule stays in force; `None` = until
    /// the next `set` or `clear`.
    pub window: Option<Duration>,
}

impl Rule {
    /// A rule that fires with `probability` on every operation, until changed.
    pub fn p(probability: f64) -> Rule {
        Rule {
            probability,
            operations: Vec::new(),
            window: None,
        }
    }

    /// A rule that fires on every matching request (probability 1).
    pub fn always() -> Rule {
        Rule::p(1.0)
    }

    /// Restricts the rule to the named operations.
    pub fn only<I, S>(mut self, operations: I) -> Rule
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.operations = operations.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the rule in force only for `window` after [`FaultHandle::set`].
    pub fn lasting(mut self, window: Duration) -> Rule {
        self.window = Some(window);
        self
    }

    fn matches(&self, operation: Option<&str>) -> bool {
        self.operations.is_empty() || operation.is_some_and(|op| self.operations.iter().any(|o| o == op))
    }

    fn in_force(&self, since: Instant, now: Instant) -> bool {
        self.window.is_none_or(|w| now.saturating_duration_since(since) < w)
    }
}

/// An HTTP 5xx answer with an AWS-shaped body.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    /// 500 (`InternalFailure` / `InternalServerError`) or 503 (`ServiceUnavailable`);
    /// any other 5xx is sent with the 500 body.
    pub status: u16,
    pub rule: Rule,
}

/// Any AWS error, by status and code (`AccessDenied` 403, `ValidationError` 400…): errors
/// that retrying cannot fix. The message says the proxy injected it.
#[derive(Clone, Debug, PartialEq)]
pub struct CodedError {
    pub status: u16,
    pub code: String,
    pub rule: Rule,
}

/// A pause before the request goes on (to moto, or to another fault).
#[derive(Clone, Debug, PartialEq)]
pub struct Delay {
    pub fixed: Duration,
    /// Up to this much more, uniformly at random.
    pub jitter: Duration,
    pub rule: Rule,
}

/// How the endpoint is gone during an [`Outage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutageKind {
    /// The listening socket is closed: new connections are refused (RST to the
    /// SYN); a request on an already open connection is answered with a reset.
    /// The same port is bound again when the outage ends.
    Refuse,
    /// Connections are accepted and reset at once; so are requests on open ones.
    Reset,
    /// Nothing answers: new connections wait in the listen backlog unaccepted, and
    /// requests on open connections hang until the outage ends, then go on to
    /// moto (as if the network came back). The SDK sees its own timeouts.
    Blackhole,
}

/// The endpoint is gone for `duration` after [`FaultHandle::set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub kind: OutageKind,
    pub duration: Duration,
}

/// The faults in force. `Faults::default()` (or [`Faults::none`]) injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// HTTP 400 throttling errors.
    pub throttle: Vec<Rule>,
    /// HTTP 5xx errors.
    pub server_error: Vec<ServerError>,
    /// Errors with a given status and code (tried before throttling).
    pub error: Vec<CodedError>,
    /// TCP resets before any response byte.
    pub reset: Vec<Rule>,
    /// Added latency; the first delay rule that fires applies.
    pub delay: Vec<Delay>,
    /// The whole endpoint gone for a while.
    pub outage: Option<Outage>,
    /// Seeds the proxy's random numbers when set, so a sequential test sees the
    /// same faults on every run.
    pub seed: Option<u64>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    pub fn throttle(mut self, rule: Rule) -> Faults {
        self.throttle.push(rule);
        self
    }

    pub fn server_error(mut self, status: u16, rule: Rule) -> Faults {
        self.server_error.push(ServerError { status, rule });
        self
    }

    /// An error with `status` and `code`, as the service would send it.
    pub fn error(mut self, status: u16, code: &str, rule: Rule) -> Faults {
        self.error.push(CodedError {
            status,
            code: code.to_string(),
            rule,
        });
        self
    }

    pub fn reset(mut self, rule: Rule) -> Faults {
        self.reset.push(rule);
        self
    }

    pub fn delay(mut self, fixed: Duration, jitter: Duration, rule: Rule) -> Faults {
        self.delay.push(Delay { fixed, jitter, rule });
        self
    }

    pub fn outage(mut self, kind: OutageKind, duration: Duration) -> Faults {
        self.outage = Some(Outage { kind, duration });
        self
    }

    pub fn seed(mut self, seed: u64) -> Faults {
        self.seed = Some(seed);
        self
    }

    fn validate(&self) {
        let rules = self
            .throttle
            .iter()
            .chain(self.reset.iter())
            .chain(self.server_error.iter().map(|s| &s.rule))
            .chain(self.error.iter().map(|e| &e.rule))
            .chain(self.delay.iter().map(|d| &d.rule));
        for rule in rules {
            assert!(
                (0.0..=1.0).contains(&rule.probability),
                "fault_proxy: probability {} is not in [0, 1]",
                rule.probability
            );
        }
        for s in &self.server_error {
            assert!(
                (500..600).contains(&s.status),
                "fault_proxy: status {} is not a 5xx",
                s.status
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

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
    /// Per operation name ([`UNKNOWN_OPERATION`] for unrecognised requests).
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

struct Stats {
    since: Instant,
    operations: HashMap<String, OpStats>,
    moto_api: u64,
    connections: u64,
    reset_connections: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            since: Instant::now(),
            operations: HashMap::new(),
            moto_api: 0,
            connections: 0,
            reset_connections: 0,
        }
    }
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

type ProxyBody = BoxBody<Bytes, hyper::Error>;

struct Active {
    faults: Faults,
    since: Instant,
}

struct Shared {
    /// `http://host:port`, no trailing slash.
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    active: Mutex<Active>,
    /// Bumped on every `set`/`clear`, to wake the accept loop and held requests.
    changed: watch::Sender<u64>,
    rng: AtomicU64,
    stats: Mutex<Stats>,
}

/// Changes the faults of a running [`FaultProxy`] and reads its counters.
/// Cheap to clone; usable from any task or thread.
#[derive(Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

/// The proxy. Dereferences to its [`FaultHandle`]. Dropping it stops accepting
/// connections; with [`FaultProxy::start`], connections already open are served
/// until the client closes them, with [`FaultProxy::start_in_thread`] they are closed.
pub struct FaultProxy {
    handle: FaultHandle,
    addr: SocketAddr,
    endpoint: String,
    runner: Runner,
}

enum Runner {
    /// The accept loop, a task on the caller's runtime.
    Task(JoinHandle<()>),
    /// A thread with a runtime of its own, stopped by the sender.
    Thread(
        Option<tokio::sync::oneshot::Sender<()>>,
        Option<std::thread::JoinHandle<()>>,
    ),
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (e.g. moto's
    /// `http://127.0.0.1:5000`), with no faults, as tasks on the current Tokio runtime.
    ///
    /// The proxy only runs while that runtime does: a `#[tokio::test]` (one thread)
    /// that blocks, say on `std::process::Command::output()` of a program talking
    /// to the proxy, stalls it. Use [`FaultProxy::start_in_thread`] there.
    ///
    /// # Panics
    /// If `upstream` is not an `http://host:port` URL or the socket cannot be bound.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let uri: Uri = upstream
            .parse()
            .unwrap_or_else(|e| panic!("fault_proxy: upstream {upstream:?} is not a URL: {e}"));
        assert!(
            uri.scheme_str() == Some("http") && uri.authority().is_some() && uri.path() == "/",
            "fault_proxy: upstream must look like http://host:port, not {upstream:?}"
        );
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("fault_proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fault_proxy: local address");

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http1_preserve_header_case(true)
            .build(connector);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared {
            upstream,
            client,
            active: Mutex::new(Active {
                faults: Faults::none(),
                since: Instant::now(),
            }),
            changed: watch::Sender::new(0),
            rng: AtomicU64::new(seed),
            stats: Mutex::new(Stats::new()),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener, addr));
        FaultProxy {
            handle: FaultHandle { shared },
            addr,
            endpoint: format!("http://{addr}"),
            runner: Runner::Task(accept),
        }
    }

    /// Like [`FaultProxy::start`], but on a thread with its own Tokio runtime, so
    /// the proxy keeps serving whatever the caller's thread does; callable from
    /// synchronous code too. Dropping the proxy stops that thread and closes its
    /// connections.
    ///
    /// # Panics
    /// As [`FaultProxy::start`].
    pub fn start_in_thread(upstream: &str) -> FaultProxy {
        let upstream = upstream.to_string();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fault_proxy".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fault_proxy: build a Tokio runtime");
                runtime.block_on(async move {
                    let proxy = FaultProxy::start(&upstream).await;
                    let _ = started_tx.send((proxy.handle(), proxy.addr, proxy.endpoint.clone()));
                    let _ = stop_rx.await;
                });
                // Dropping the runtime drops every connection task, closing the sockets.
            })
            .expect("fault_proxy: spawn its thread");
        match started_rx.recv() {
            Ok((handle, addr, endpoint)) => FaultProxy {
                handle,
                addr,
                endpoint,
                runner: Runner::Thread(Some(stop_tx), Some(thread)),
            },
            Err(_) => match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("fault_proxy: its thread ended before starting"),
            },
        }
    }

    /// The URL to give the SDK (`AWS_ENDPOINT_URL`, or `endpoint_url`), `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to change faults and read counters from elsewhere.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }
}

impl Deref for FaultProxy {
    type Target = FaultHandle;
    fn deref(&self) -> &FaultHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task(accept) => accept.abort(),
            Runner::Thread(stop, thread) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.handle.shared.upstream)
            .finish()
    }
}

impl FaultHandle {
    /// Replaces the faults in force. Rule windows and the outage start now.
    ///
    /// # Panics
    /// On a probability outside `[0, 1]` or a server-error status outside 5xx.
    pub fn set(&self, faults: Faults) {
        faults.validate();
        if let Some(seed) = faults.seed {
            self.shared.rng.store(seed, Ordering::Relaxed);
        }
        *lock(&self.shared.active) = Active {
            faults,
            since: Instant::now(),
        };
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// Removes every fault (an outage in progress ends now).
    pub fn clear(&self) {
        self.set(Faults::none());
    }

    /// The faults last set.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.active).faults.clone()
    }

    /// The counters so far.
    pub fn snapshot(&self) -> Snapshot {
        let s = lock(&self.shared.stats);
        Snapshot {
            elapsed: s.since.elapsed(),
            operations: s.operations.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            moto_api: s.moto_api,
            connections: s.connections,
            reset_connections: s.reset_connections,
        }
    }

    /// Zeroes the counters and restarts `elapsed`.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::new();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A listening socket with SO_REUSEADDR, so that the same port can be bound again
/// after an [`OutageKind::Refuse`] while old connections sit in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Shared {
    fn count(&self, op: &str, f: impl FnOnce(&mut OpStats)) {
        let mut stats = lock(&self.stats);
        match stats.operations.get_mut(op) {
            Some(s) => f(s),
            None => f(stats.operations.entry(op.to_string()).or_default()),
        }
    }

    /// A uniform number in `[0, 1)` (SplitMix64).
    fn roll(&self) -> f64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fires(&self, probability: f64) -> bool {
        probability >= 1.0 || (probability > 0.0 && self.roll() < probability)
    }

    /// The outage in force, with its end (`None`: no outage).
    fn outage(&self) -> Option<(OutageKind, Instant)> {
        let active = lock(&self.active);
        let outage = active.faults.outage?;
        // A duration too long to add means "for ever": a year will do.
        let until = active
            .since
            .checked_add(outage.duration)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        (Instant::now() < until).then_some((outage.kind, until))
    }

    fn decide(&self, operation: Option<&str>) -> Decision {
        let (faults, since) = {
            let active = lock(&self.active);
            (active.faults.clone(), active.since)
        };
        let now = Instant::now();
        let applies = |r: &Rule| r.in_force(since, now) && r.matches(operation);
        let delay = faults
            .delay
            .iter()
            .find(|d| applies(&d.rule) && self.fires(d.rule.probability))
            .map(|d| d.fixed + d.jitter.mul_f64(self.roll()));
        let fault = if faults.reset.iter().any(|r| applies(r) && self.fires(r.probability)) {
            Some(Fault::Reset)
        } else if let Some(s) = faults
            .server_error
            .iter()
            .find(|s| applies(&s.rule) && self.fires(s.rule.probability))
        {
            Some(Fault::ServerError(s.status))
        } else if let Some(e) = faults
            .error
            .iter()
            .find(|e| applies(&e.rule) && self.fires(e.rule.probability))
        {
            Some(Fault::Coded(e.status, e.code.clone()))
        } else if faults.throttle.iter().any(|r| applies(r) && self.fires(r.probability)) {
            Some(Fault::Throttle)
        } else {
            None
        };
        Decision { delay, fault }
    }

    fn request_id(&self) -> String {
        let a = (self.roll() * (1u64 << 53) as f64) as u64;
        let b = (self.roll() * (1u64 << 53) as f64) as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 21,
            (a >> 5) & 0xffff,
            b & 0xfff,
            (b >> 12) & 0xfff,
            (b >> 24) & 0xffff_ffff_ffff
        )
    }
}

struct Decision {
    delay: Option<Duration>,
    fault: Option<Fault>,
}

enum Fault {
    Reset,
    ServerError(u16),
    Coded(u16, String),
    Throttle,
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut changed = shared.changed.subscribe();
    let mut listener = Some(listener);
    let mut warned = false;
    loop {
        match shared.outage() {
            Some((OutageKind::Refuse, until)) => {
                listener = None; // closing it refuses new connections and resets queued ones
                wait(&mut changed, until).await;
                continue;
            }
            Some((OutageKind::Blackhole, until)) => {
                wait(&mut changed, until).await;
                continue;
            }
            _ => {}
        }
        if listener.is_none() {
            match bind(addr) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    if !warned {
                        eprintln!("fault_proxy: cannot bind {addr} again after an outage ({e}); retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(l) = listener.as_ref() else { continue };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((stream, _)) => {
                    if matches!(shared.outage(), Some((OutageKind::Reset, _))) {
                        lock(&shared.stats).reset_connections += 1;
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    } else {
                        lock(&shared.stats).connections += 1;
                        tokio::spawn(serve(shared.clone(), stream));
                    }
                }
                Err(e) => {
                    eprintln!("fault_proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = changed.changed() => {}
        }
    }
}

/// Sleeps until `until` or the next change of faults, whichever is first.
async fn wait(changed: &mut watch::Receiver<u64>, until: Instant) {
    tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => {}
        _ = changed.changed() => {}
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        stream,
        reset: reset.clone(),
    });
    let service = service_fn(move |req| handle(shared.clone(), reset.clone(), req));
    // Errors here are the client going away, or an injected reset: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(io, service)
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!("fault_proxy: reading the request: {e}"),
            ));
        }
    };
    if parts.uri.path().starts_with("/moto-api") {
        lock(&shared.stats).moto_api += 1;
        return Ok(forward(&shared, parts, body).await);
    }
    let call = recognise(&parts, &body);
    let op = call.operation.as_deref();
    let key = op.unwrap_or(UNKNOWN_OPERATION);
    shared.count(key, |s| s.requests += 1);

    if shared.outage().is_some() {
        shared.count(key, |s| s.outages += 1);
        let mut changed = shared.changed.subscribe();
        loop {
            match shared.outage() {
                None => break,
                Some((OutageKind::Blackhole, until)) => wait(&mut changed, until).await,
                Some((OutageKind::Refuse | OutageKind::Reset, _)) => return Ok(abort(&reset)),
            }
        }
    }

    let decision = shared.decide(op);
    if let Some(delay) = decision.delay {
        shared.count(key, |s| s.delayed += 1);
        tokio::time::sleep(delay).await;
    }
    match decision.fault {
        Some(Fault::Reset) => {
            shared.count(key, |s| s.resets += 1);
            return Ok(abort(&reset));
        }
        Some(Fault::ServerError(status)) => {
            shared.count(key, |s| s.server_errors += 1);
            return Ok(error_response(&shared, &call, ErrorKind::Server(status)));
        }
        Some(Fault::Throttle) => {
            shared.count(key, |s| s.throttled += 1);
            return Ok(error_response(&shared, &call, ErrorKind::Throttle));
        }
        Some(Fault::Coded(status, code)) => {
            shared.count(key, |s| s.server_errors += 1);
            return Ok(error_response(&shared, &call, ErrorKind::Coded(status, code)));
        }
        None => {}
    }
    shared.count(key, |s| s.forwarded += 1);
    Ok(forward(&shared, parts, body).await)
}

/// Marks the connection for a reset. The response returned is never sent: hyper's
/// first write of it fails in [`ResettableStream`], which sets SO_LINGER 0, and the
/// close that follows sends an RST.
fn abort(reset: &AtomicBool) -> Response<ProxyBody> {
    reset.store(true, Ordering::SeqCst);
    plain(StatusCode::INTERNAL_SERVER_ERROR, "fault_proxy: reset".to_string())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

async fn forward(shared: &Shared, parts: Parts, body: Bytes) -> Response<ProxyBody> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = match format!("{}{}", shared.upstream, path).parse() {
        Ok(uri) => uri,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("fault_proxy: bad request target {path:?}: {e}"),
            );
        }
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = parts.headers;
    // The extensions carry hyper's record of the original header case.
    *req.extensions_mut() = parts.extensions;
    strip_hop_by_hop(req.headers_mut());
    match shared.client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            eprintln!("fault_proxy: upstream {}: {e:?}", shared.upstream);
            plain(
                StatusCode::BAD_GATEWAY,
                format!("fault_proxy: upstream {}: {e}", shared.upstream),
            )
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

// ---------------------------------------------------------------------------
// Protocols: recognising the operation, and the errors the services send
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Protocol {
    /// awsQuery (ELBv2, CloudWatch ≤ 1.99, …), with the request's `Version`.
    Query { version: Option<String> },
    /// awsJson 1.0/1.1: `X-Amz-Target: <prefix>.<Operation>`.
    Json { prefix: String, content_type: String },
    /// Anything else; its faults are answered in the Query shape.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    protocol: Protocol,
    operation: Option<String>,
}

fn recognise(parts: &Parts, body: &[u8]) -> Call {
    let header = |name: HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(target) = header(HeaderName::from_static("x-amz-target")) {
        let (prefix, operation) = target.rsplit_once('.').unwrap_or(("", target));
        let content_type = header(CONTENT_TYPE)
            .filter(|ct| ct.starts_with("application/x-amz-json-"))
            .unwrap_or("application/x-amz-json-1.0");
        return Call {
            protocol: Protocol::Json {
                prefix: prefix.to_string(),
                content_type: content_type.to_string(),
            },
            operation: (!operation.is_empty()).then(|| operation.to_string()),
        };
    }
    let form = header(CONTENT_TYPE).is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        && header(CONTENT_ENCODING).is_none_or(|ce| ce.eq_ignore_ascii_case("identity"));
    let sources = [form.then_some(body), parts.uri.query().map(str::as_bytes)];
    for source in sources.into_iter().flatten() {
        let (mut action, mut version) = (None, None);
        for pair in source.split(|&b| b == b'&') {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            match k {
                b"Action" => action = Some(form_decode(v)),
                b"Version" => version = Some(form_decode(v)),
                _ => {}
            }
        }
        if let Some(action) = action.filter(|a| !a.is_empty()) {
            return Call {
                protocol: Protocol::Query { version },
                operation: Some(action),
            };
        }
    }
    Call {
        protocol: Protocol::Other,
        operation: None,
    }
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space, `%XX` a byte).
fn form_decode(v: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < v.len() => match (hex(v[i + 1]), hex(v[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum ErrorKind {
    Throttle,
    Server(u16),
    Coded(u16, String),
}

/// The XML namespace real Query services put on `<ErrorResponse>`, by API version.
fn query_namespace(version: Option<&str>) -> Option<String> {
    let host = match version? {
        "2015-12-01" | "2012-06-01" => "elasticloadbalancing",
        "2010-08-01" => "monitoring",
        _ => return None,
    };
    Some(format!("http://{host}.amazonaws.com/doc/{}/", version?))
}

/// The shape ID namespace awsJson services put before `#` in `__type`.
fn json_namespace(prefix: &str) -> Option<&'static str> {
    match prefix {
        "DynamoDB_20120810" => Some("com.amazonaws.dynamodb.v20120810"),
        "DynamoDBStreams_20120810" => Some("com.amazonaws.dynamodb.v20120810"),
        _ => None,
    }
}

fn error_response(shared: &Shared, call: &Call, kind: ErrorKind) -> Response<ProxyBody> {
    let request_id = shared.request_id();
    let (status, fault) = match &kind {
        ErrorKind::Throttle => (400, "throttle"),
        ErrorKind::Server(status) => (*status, "server-error"),
        ErrorKind::Coded(status, _) => (*status, "error"),
    };
    let (content_type, body, error_type) = match &call.protocol {
        Protocol::Json { prefix, content_type } => {
            let (code, message) = match &kind {
                ErrorKind::Throttle => (
                    "ThrottlingException",
                    "Rate of requests exceeds the allowed throughput.",
                ),
                ErrorKind::Server(503) => ("ServiceUnavailable", "The service is unavailable. Please try again."),
                ErrorKind::Server(_) => ("InternalServerError", "Internal server error"),
                ErrorKind::Coded(_, code) => (code.as_str(), "injected by the fault proxy"),
            };
            let typ = match json_namespace(prefix) {
                Some(ns) => format!("{ns}#{code}"),
                None => code.to_string(),
            };
            let body = format!(r#"{{"__type":"{typ}","message":"{message}"}}"#);
            (content_type.clone(), body, Some(code))
        }
        Protocol::Query { .. } | Protocol::Other => {
            let version = match &call.protocol {
                Protocol::Query { version } => version.as_deref(),
                _ => None,
            };
            let (typ, code, message) = match &kind {
                ErrorKind::Throttle => ("Sender", "Throttling", "Rate exceeded"),
                ErrorKind::Coded(status, code) => (
                    if *status >= 500 { "Receiver" } else { "Sender" },
                    code.as_str(),
                    "injected by the fault proxy",
                ),
                ErrorKind::Server(503) => (
                    "Receiver",
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                ),
                ErrorKind::Server(_) => (
                    "Receiver",
                    "InternalFailure",
                    "The request processing has failed because of an unknown error, exception or failure.",
                ),
            };
            let xmlns = query_namespace(version)
                .map(|ns| format!(" xmlns=\"{ns}\""))
                .unwrap_or_default();
            let body = format!(
                "<ErrorResponse{xmlns}><Error><Type>{typ}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            );
            ("text/xml".to_string(), body, None)
        }
    };
    let crc = crc32(body.as_bytes());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(CONTENT_TYPE, value(&content_type));
    headers.insert(HeaderName::from_static("x-amzn-requestid"), value(&request_id));
    if let Some(code) = error_type {
        headers.insert(HeaderName::from_static("x-amzn-errortype"), value(code));
        headers.insert(HeaderName::from_static("x-amz-crc32"), value(&crc.to_string()));
    }
    headers.insert(HeaderName::from_static(FAULT_HEADER), HeaderValue::from_static(fault));
    resp
}

/// CRC-32 (IEEE), as DynamoDB sends in `x-amz-crc32`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// A TCP stream that can be made to reset
// ---------------------------------------------------------------------------

/// The accepted socket. Once `reset` is set, the next read or write sets
/// SO_LINGER 0 and fails, so hyper drops the connection and the close sends an RST
/// instead of a FIN, before any byte of the response.
struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fault_proxy: injected reset",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}
