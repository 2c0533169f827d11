//! The proxy itself: its shared state, [`FaultProxy::start`] on the caller's runtime or
//! [`FaultProxy::start_in_thread`] on a thread of its own, stopping it, and the
//! [`FaultHandle`] that sets its faults and reads its counters.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::faults::Faults;
use super::lock;
use super::server::{accept_loop, bind};
use super::stats::{Snapshot, Stats};

pub(super) struct Active {
    pub(super) faults: Faults,
    pub(super) since: Instant,
}

pub(super) struct Shared {
    /// `http://host:port`, no trailing slash.
    pub(super) upstream: String,
    pub(super) client: Client<HttpConnector, Full<Bytes>>,
    pub(super) active: Mutex<Active>,
    /// Bumped on every `set`/`clear`, to wake the accept loop and held requests.
    pub(super) changed: watch::Sender<u64>,
    pub(super) rng: AtomicU64,
    pub(super) stats: Mutex<Stats>,
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
