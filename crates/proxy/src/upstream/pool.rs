//! Upstream connections, pooled per worker thread: each worker owns its pool, so taking
//! and returning a connection never crosses threads or takes a lock.
//!
//! - HTTP/1.1: a stack of idle keep-alive connections per endpoint; a request takes
//!   one and gives it back once sent (it is ready again when the response body ends).
//!   An idle connection is used at most the upstream's `timeouts.idle` after it was
//!   given back ([`IdleLists`], shared with the inline client in `h1.rs`).
//! - HTTP/2 (h2c prior knowledge, for gRPC): one multiplexed connection per endpoint
//!   and worker, shared by every request of that worker.
//! - Upgrades (WebSocket): a fresh HTTP/1.1 connection that is never pooled, since after
//!   `101 Switching Protocols` it belongs to the tunnel.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_table::{Protocol, Timeouts};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustc_hash::FxHashMap as HashMap;
use tokio::net::TcpStream;

use super::breaker::{Breaker, Connection};
use super::h1;
use super::tls::TlsClient;
use crate::listener::http::LocalExec;

/// What upstream-bound requests carry: the client's body, cut off at the body limit.
pub type UpstreamBody =
    http_body_util::Either<Limited<crate::body::ClientBody>, http_body_util::Full<bytes::Bytes>>;

/// Idle HTTP/1.1 connections kept per endpoint and worker.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// HTTP/2 pings keep idle upstream connections known alive.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

type H1 = http1::SendRequest<UpstreamBody>;
type H2 = http2::SendRequest<UpstreamBody>;

/// Where a pooled connection goes: the address, and the upstream's TLS settings
/// ([`TlsClient::key`]; 0 for plaintext).
type Dest = (SocketAddr, u64);

thread_local! {
    static IDLE: IdleLists<H1, Dest> = IdleLists::new(judge_h1);
    static MULTIPLEXED: RefCell<HashMap<Dest, H2>> = RefCell::new(HashMap::default());
}

/// An upstream's circuit-breaker limits on connections, when it has a breaker.
pub type Limits<'a> = (
    &'a std::sync::Arc<Breaker>,
    &'a gatehouse_table::resilience::CircuitBreaker,
);

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The breaker's `maxConnections` or `maxPendingRequests` is reached: no new
    /// connection was tried.
    #[error("the circuit breaker's connection limits are reached")]
    Overloaded,
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
    /// The TLS handshake failed (or timed out): the server's certificate was refused,
    /// it refused ours, or it does not speak TLS.
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange on the inline HTTP/1.1 client failed.
    #[error("exchange with {addr}: {source}")]
    Http1 {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: super::h1::Error,
    },
    /// The exchange failed (reset, protocol error, the request body broke).
    #[error("exchange with {addr}: {source}")]
    Exchange {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
}

impl SendError {
    /// Whether the client's request body arrived too slowly ([`crate::body::BodyTooSlow`]).
    pub fn client_body_too_slow(&self) -> bool {
        matches!(self, SendError::Exchange { source, .. } if crate::body::too_slow(source))
    }

    /// Whether the client's request body failed while it was being sent (a malformed
    /// chunk, a body cut short): the client's fault, not the upstream's.
    pub fn client_body_failed(&self) -> bool {
        // hyper reports the request body's own error as a user error with that error as
        // its cause; its other user errors (misuse of its API) have none.
        matches!(self, SendError::Exchange { source, .. }
            if source.is_user() && std::error::Error::source(source).is_some())
            && !self.body_too_large()
    }

    /// Whether TLS failed: the handshake, or an alert right after it (with TLS 1.3 a
    /// server refuses a missing or unknown client certificate once the client thinks
    /// the handshake is done).
    pub fn is_tls(&self) -> bool {
        if matches!(self, SendError::Tls { .. }) {
            return true;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if e.is::<rustls::Error>() {
                return true;
            }
            if let Some(inner) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                && inner.is::<rustls::Error>()
            {
                return true;
            }
            cause = e.source();
        }
        false
    }

    /// Whether the exchange failed because the client's body went over the limit.
    pub fn body_too_large(&self) -> bool {
        let SendError::Exchange { source, .. } = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
        while let Some(e) = cause {
            if e.is::<http_body_util::LengthLimitError>() {
                return true;
            }
            cause = e.source();
        }
        false
    }
}

/// A failed exchange, with the request when it was never sent (no connection could
/// be made), so the caller may try another endpoint.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: SendError,
    /// The request, when nothing of it reached the upstream.
    pub unsent: Option<Request<UpstreamBody>>,
}

impl From<SendError> for Failed {
    fn from(error: SendError) -> Failed {
        Failed {
            error,
            unsent: None,
        }
    }
}

/// An upstream's response body: from hyper's client, or from the inline HTTP/1.1 one.
pub type Received = Either<Incoming, h1::Body>;

/// Sends `req` to `addr` in `protocol` through hyper's client, over a pooled connection
/// or a new one. (HTTP/1.1 requests whose body is known go inline: [`h1`].)
///
/// `to`: the endpoint, and the time the request arrived (compared with idle deadlines).
pub async fn send(
    to: (SocketAddr, Instant),
    protocol: Protocol,
    req: Request<UpstreamBody>,
    timeouts: &Timeouts,
    (tls, limits): (Option<&TlsClient>, Option<Limits<'_>>),
) -> Result<Response<Incoming>, Failed> {
    let (addr, now) = to;
    let connect = Connect {
        addr,
        timeout: Duration::from_millis(timeouts.connect_ms),
        tls,
        limits,
    };
    match protocol {
        Protocol::Http1 => {
            let idle = Duration::from_millis(timeouts.idle_ms);
            send_http1(connect, req, (now, idle)).await
        }
        // Boxed: the larger future, and the rarer protocol.
        Protocol::Http2 => Box::pin(send_http2(connect, req)).await,
    }
}

/// How to open a connection to an endpoint.
#[derive(Clone, Copy)]
pub(super) struct Connect<'a> {
    /// The endpoint.
    pub addr: SocketAddr,
    /// For TCP, and again for the TLS handshake.
    pub timeout: Duration,
    /// The upstream's TLS; `None`: plaintext.
    pub tls: Option<&'a TlsClient>,
    /// The breaker's connection limits; `None`: not counted.
    pub limits: Option<Limits<'a>>,
}

impl Connect<'_> {
    fn dest(&self) -> Dest {
        (self.addr, self.tls.map_or(0, |t| t.key))
    }

    /// A new connection, TLS set up when the upstream has it, handed to `handshake`
    /// (hyper's, for the connection's protocol).
    /// The connection's count in the breaker's limits goes to `handshake` too, to live
    /// as long as the connection.
    async fn open<T, F, Fut>(&self, handshake: F) -> Result<T, SendError>
    where
        F: FnOnce(Io, Option<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SendError>>,
    {
        let addr = self.addr;
        let (waiting, slot) = counted(self.limits)?;
        let tcp = connect(addr, self.timeout).await?;
        let io = match self.tls {
            None => Io::Plain(TokioIo::new(tcp)),
            Some(tls) => {
                let stream = tokio::time::timeout(self.timeout, tls.connect(tcp, addr))
                    .await
                    .map_err(|_| SendError::Tls {
                        addr,
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the handshake did not finish in time",
                        ),
                    })?
                    .map_err(|source| SendError::Tls { addr, source })?;
                Io::Tls(Box::new(TokioIo::new(stream)))
            }
        };
        drop(waiting);
        handshake(io, slot).await
    }
}

/// Counts a request waiting for a new connection, and the connection, in the breaker's
/// limits; refused when either is full.
pub(super) fn counted(
    limits: Option<Limits<'_>>,
) -> Result<(Option<super::breaker::Waiting>, Option<Connection>), SendError> {
    match limits {
        None => Ok((None, None)),
        Some((breaker, cfg)) => breaker
            .connecting(cfg)
            .map(|(w, c)| (Some(w), Some(c)))
            .ok_or(SendError::Overloaded),
    }
}

/// An upstream connection: plaintext, or TLS.
pub(super) enum Io {
    /// TCP.
    Plain(TokioIo<TcpStream>),
    /// TLS over TCP (boxed: the TLS state is large, and plaintext the common case).
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => std::pin::Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => std::pin::Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            Io::Tls(io) => std::pin::Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => std::pin::Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

/// A new TCP connection to `addr` (no Nagle delay), within `timeout`.
pub(super) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, SendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::ConnectTimeout(addr))?
        .map_err(|source| SendError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn take_idle(addr: Dest, now: Instant) -> Option<H1> {
    IDLE.with(|idle| idle.take(addr, now))
}

/// Whether a pooled hyper connection can be used.
fn judge_h1(s: &mut H1) -> Idle {
    match (s.is_closed(), s.is_ready()) {
        (true, _) => Idle::Discard,
        (false, true) => Idle::Use,
        // Still reading its last response's body.
        (false, false) => Idle::Keep,
    }
}

fn give_back(addr: Dest, sender: H1, idle: (Instant, Duration)) {
    IDLE.with(|lists| lists.give_back(addr, sender, idle));
}

/// One worker's idle connections to each endpoint (at most [`MAX_IDLE_PER_ENDPOINT`]
/// each), for hyper's client here and the inline HTTP/1.1 client (`h1.rs`). Every
/// [`SWEEP_EVERY`] connections given back, every list is swept of connections the
/// upstream closed, and emptied lists go: an endpoint no longer picked keeps no
/// sockets.
#[derive(Debug)]
pub(super) struct IdleLists<C, K = SocketAddr> {
    lists: RefCell<HashMap<K, Vec<Pooled<C>>>>,
    judge: fn(&mut C) -> Idle,
    given: std::cell::Cell<u32>,
}

/// An idle connection, and when its upstream's `timeouts.idle` is up.
#[derive(Debug)]
struct Pooled<C> {
    conn: C,
    expires: Instant,
}

/// How often (in connections given back) the idle lists are swept.
const SWEEP_EVERY: u32 = 1024;

/// What to do with an idle connection found for a request.
pub(super) enum Idle {
    /// Take it.
    Use,
    /// Leave it for later.
    Keep,
    /// Drop it: it is closed.
    Discard,
}

impl<C, K: std::hash::Hash + Eq> IdleLists<C, K> {
    /// Lists whose connections `judge` says what to do with.
    pub(super) const fn new(judge: fn(&mut C) -> Idle) -> IdleLists<C, K> {
        IdleLists {
            lists: RefCell::new(HashMap::with_hasher(rustc_hash::FxBuildHasher)),
            judge,
            given: std::cell::Cell::new(0),
        }
    }

    /// The most recently returned usable connection to `addr`; closed or expired ones
    /// met on the way are dropped.
    pub(super) fn take(&self, addr: K, now: Instant) -> Option<C> {
        let mut lists = self.lists.borrow_mut();
        let list = lists.get_mut(&addr)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            match self.judge_at(&mut list[i], now) {
                Idle::Use => return Some(list.swap_remove(i).conn),
                Idle::Discard => drop(list.swap_remove(i)),
                Idle::Keep => {}
            }
        }
        None
    }

    fn judge_at(&self, pooled: &mut Pooled<C>, now: Instant) -> Idle {
        if pooled.expires <= now {
            return Idle::Discard;
        }
        (self.judge)(&mut pooled.conn)
    }

    /// Keeps `conn` for the next request to `addr` for at most `idle` from `now`,
    /// unless enough are kept.
    pub(super) fn give_back(&self, addr: K, conn: C, (now, idle): (Instant, Duration)) {
        let mut lists = self.lists.borrow_mut();
        let list = lists.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Pooled {
                conn,
                expires: now + idle,
            });
        }
        let given = self.given.get().wrapping_add(1);
        self.given.set(given);
        if given.is_multiple_of(SWEEP_EVERY) {
            lists.retain(|_, list| {
                list.retain_mut(|p| !matches!(self.judge_at(p, now), Idle::Discard));
                !list.is_empty()
            });
        }
    }
}

async fn connect_http1(to: Connect<'_>) -> Result<H1, SendError> {
    let addr = to.addr;
    to.open(|io, slot| async move {
        // Messages through a proxy are mostly small: one flattened write beats writev.
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(io)
            .await
            .map_err(|source| SendError::Exchange { addr, source })?;
        drive(conn, addr, "upstream connection closed", slot);
        Ok(sender)
    })
    .await
}

/// Drives an upstream connection on this worker; it ends when the peer or the pool
/// drops it (and with it, its count in the breaker's limits).
fn drive<C>(conn: C, addr: SocketAddr, closed: &'static str, slot: Option<Connection>)
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + 'static,
{
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "{closed}");
        }
        drop(slot);
    });
}

/// HTTP/1.1 through hyper's client (a streamed request body). When a pooled connection turns out to be closed before the request was
/// written (the upstream's keep-alive timer won the race), the request is sent again
/// on a new connection: it never reached the upstream, so this is safe for any method.
async fn send_http1(
    to: Connect<'_>,
    req: Request<UpstreamBody>,
    idle: (Instant, Duration),
) -> Result<Response<Incoming>, Failed> {
    let (addr, dest) = (to.addr, to.dest());
    let req = match take_idle(dest, idle.0) {
        Some(mut pooled) => match pooled.try_send_request(req).await {
            Ok(resp) => {
                give_back(dest, pooled, idle);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => unsent,
                None => {
                    return Err(SendError::Exchange {
                        addr,
                        source: e.into_error(),
                    }
                    .into());
                }
            },
        },
        None => req,
    };
    // Connecting is the rare path and its future is large: boxed, so the state every
    // request carries (and moves) stays small.
    let mut fresh = match Box::pin(connect_http1(to)).await {
        Ok(c) => c,
        Err(error) => {
            return Err(Failed {
                error,
                unsent: Some(req),
            });
        }
    };
    let resp = fresh
        .send_request(req)
        .await
        .map_err(|source| Failed::from(SendError::Exchange { addr, source }))?;
    // Ready again once this response's body has been read; `take_idle` checks.
    give_back(dest, fresh, idle);
    Ok(resp)
}

async fn connect_http2(to: Connect<'_>) -> Result<H2, SendError> {
    let addr = to.addr;
    to.open(|io, slot| async move {
        let (sender, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|source| SendError::Exchange { addr, source })?;
        drive(conn, addr, "upstream HTTP/2 connection closed", slot);
        Ok(sender)
    })
    .await
}

/// The worker's HTTP/2 connection to the endpoint, made when there is none or it closed.
async fn multiplexed(to: Connect<'_>, fresh: bool) -> Result<H2, SendError> {
    let dest = to.dest();
    if !fresh
        && let Some(s) =
            MULTIPLEXED.with(|m| m.borrow().get(&dest).filter(|s| !s.is_closed()).cloned())
    {
        return Ok(s);
    }
    let sender = Box::pin(connect_http2(to)).await?;
    MULTIPLEXED.with(|m| m.borrow_mut().insert(dest, sender.clone()));
    Ok(sender)
}

/// HTTP/2. A request the connection refused before sending it (the upstream said
/// GOAWAY) is sent again on a new connection.
async fn send_http2(
    to: Connect<'_>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Failed> {
    let addr = to.addr;
    let exchange = |e| Failed::from(SendError::Exchange { addr, source: e });
    let (mut sender, req) = match multiplexed(to, false).await {
        Ok(s) => (s, req),
        Err(error) => {
            return Err(Failed {
                error,
                unsent: Some(req),
            });
        }
    };
    sender.ready().await.map_err(exchange)?;
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => match e.take_message() {
            Some(unsent) => {
                let mut sender = match multiplexed(to, true).await {
                    Ok(s) => s,
                    Err(error) => {
                        return Err(Failed {
                            error,
                            unsent: Some(unsent),
                        });
                    }
                };
                sender.ready().await.map_err(exchange)?;
                sender.send_request(unsent).await.map_err(exchange)
            }
            None => Err(exchange(e.into_error())),
        },
    }
}

/// Sends an upgrade request (WebSocket) on a new HTTP/1.1 connection that may be
/// taken over by the protocol the upstream switches to.
pub(super) async fn send_upgrade(
    to: Connect<'_>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Failed> {
    let addr = to.addr;
    let opened = to
        .open(|io, slot| async move {
            let (sender, conn) = http1::handshake::<_, UpstreamBody>(io)
                .await
                .map_err(|source| SendError::Exchange { addr, source })?;
            tokio::task::spawn_local(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(%addr, error = %e, "upstream upgrade connection closed");
                }
                drop(slot);
            });
            Ok(sender)
        })
        .await;
    let mut sender = match opened {
        Ok(s) => s,
        Err(error) => {
            return Err(Failed {
                error,
                unsent: Some(req),
            });
        }
    };
    sender
        .send_request(req)
        .await
        .map_err(|source| SendError::Exchange { addr, source }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in connection: open or closed.
    struct Fake(bool);

    fn judge(c: &mut Fake) -> Idle {
        if c.0 { Idle::Use } else { Idle::Discard }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn idle_connections_expire_after_the_upstreams_idle_timeout() {
        let lists = IdleLists::new(judge);
        let a: SocketAddr = "10.0.0.1:80".parse().expect("a");
        lists.give_back(a, Fake(true), (Instant::now(), Duration::ZERO));
        assert!(
            lists.take(a, Instant::now()).is_none(),
            "an expired connection was handed out"
        );
        lists.give_back(a, Fake(true), (Instant::now(), MINUTE));
        assert!(lists.take(a, Instant::now()).is_some());
    }

    #[test]
    fn idle_lists_hand_out_open_connections_and_sweep_closed_ones() {
        let lists = IdleLists::new(judge);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:80".parse().expect("a"),
            "10.0.0.2:80".parse().expect("b"),
        );
        lists.give_back(a, Fake(true), (Instant::now(), MINUTE));
        lists.give_back(a, Fake(false), (Instant::now(), MINUTE));
        // The closed one, most recent, is dropped on the way to the open one.
        assert!(lists.take(a, Instant::now()).is_some_and(|c| c.0));
        assert!(lists.take(a, Instant::now()).is_none());
        // An endpoint no longer asked for: its closed connection goes at the next sweep.
        lists.give_back(b, Fake(false), (Instant::now(), MINUTE));
        for _ in 0..SWEEP_EVERY {
            lists.give_back(a, Fake(true), (Instant::now(), MINUTE));
            let _ = lists.take(a, Instant::now());
        }
        assert!(!lists.lists.borrow().contains_key(&b));
    }
}
