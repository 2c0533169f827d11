//! The HTTP server: the accept loop (which closes, holds or resets connections during an
//! outage), one hyper connection per socket, and the handling of each request: counted,
//! held through an outage, delayed, faulted or forwarded.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::decide::Fault;
use super::errors::{ErrorKind, error_response};
use super::faults::OutageKind;
use super::forward::{ProxyBody, forward, plain};
use super::protocol::recognise;
use super::proxy::Shared;
use super::stream::ResettableStream;
use super::{UNKNOWN_OPERATION, lock};

/// A listening socket with SO_REUSEADDR, so that the same port can be bound again
/// after an [`OutageKind::Refuse`] while old connections sit in TIME_WAIT.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
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
