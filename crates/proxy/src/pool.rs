//! Upstream connections, pooled per worker thread: each worker owns its pool, so taking
//! and returning a connection never crosses threads or takes a lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per endpoint and worker.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>> =
        RefCell::new(HashMap::new());
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made in time.
    #[error("connect to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    /// The connection was refused or failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed (reset, protocol error).
    #[error("exchange with {addr}: {source}")]
    Exchange {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
}

fn take_idle(addr: SocketAddr) -> Option<SendRequest<Incoming>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    })
}

fn give_back(addr: SocketAddr, sender: SendRequest<Incoming>) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    });
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<SendRequest<Incoming>, SendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::ConnectTimeout(addr))?
        .map_err(|source| SendError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| SendError::Exchange { addr, source })?;
    // The connection is driven on this worker; it ends when the peer or the pool drops it.
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream connection closed");
        }
    });
    Ok(sender)
}

/// Sends `req` to `addr` over a pooled (or new) HTTP/1.1 connection. When a pooled
/// connection turns out to be closed before the request was written (the upstream's
/// keep-alive timer won the race), the request is sent again on a new connection:
/// it never reached the upstream, so this is safe for any method.
pub async fn send(
    addr: SocketAddr,
    req: Request<Incoming>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    let req = match take_idle(addr) {
        Some(mut pooled) => match pooled.try_send_request(req).await {
            Ok(resp) => {
                give_back(addr, pooled);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => unsent,
                None => {
                    return Err(SendError::Exchange {
                        addr,
                        source: e.into_error(),
                    });
                }
            },
        },
        None => req,
    };
    let mut fresh = connect(addr, connect_timeout).await?;
    let resp = fresh
        .send_request(req)
        .await
        .map_err(|source| SendError::Exchange { addr, source })?;
    // Ready again once this response's body has been read; `take_idle` checks.
    give_back(addr, fresh);
    Ok(resp)
}
