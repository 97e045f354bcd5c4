//! Listeners. One accept loop ([`accept_loop`]) serves every socket the proxy listens
//! on: the traffic workers, the admin and metrics surfaces, and the push socket. What
//! differs is only what serves an accepted connection.
//!
//! Traffic runs thread per core: each worker binds the same address with `SO_REUSEPORT`
//! (the kernel spreads connections), runs a current-thread runtime and serves its
//! connections on a `LocalSet`, so connection state, upstream pools and per-worker
//! counters stay on it. Each connection speaks HTTP/1.1 or, when it opens with the
//! HTTP/2 preface, h2c (`http.rs`); HTTP/1.1 connections may be upgraded (WebSocket).
//! With `--https`, each worker also accepts on the HTTPS socket: the TLS handshake
//! (`tls.rs`: rustls, the certificate chosen by SNI from the table) runs in the
//! connection's task, then the connection is served by the same builder.
//!
//! Stopping sends a drain deadline: the loop stops accepting, open connections finish
//! the response in flight, and the thread ends once they are done or the deadline
//! passes.

pub mod http;
pub mod limits;
pub mod tls;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::headers::{Peer, Tls};
use crate::{Shared, phases, worker};

/// Sends a listener's drain deadline; `None` until it stops.
pub(crate) type Stop = watch::Sender<Option<Duration>>;
/// Watches for the drain deadline.
pub(crate) type Stopped = watch::Receiver<Option<Duration>>;

/// A socket connections are accepted from.
pub(crate) trait Accept: 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + 'static;
    /// Who is at the other end.
    type Peer: 'static;
    /// The next connection.
    fn next(&self) -> impl Future<Output = io::Result<(Self::Io, Self::Peer)>>;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Peer = SocketAddr;

    async fn next(&self) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = self.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Peer = ();

    async fn next(&self) -> io::Result<(Self::Io, ())> {
        let (stream, _) = self.accept().await?;
        Ok((stream, ()))
    }
}

/// Accepts connections until told to stop, serving each with `serve` on this thread;
/// then waits for the open ones up to the drain deadline.
pub(crate) async fn accept_loop<L, F, Fut>(listener: L, mut stop: Stopped, serve: F)
where
    L: Accept,
    F: Fn(L::Io, L::Peer, Stopped) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let active = Rc::new(Cell::new(0usize));
    let idle = Rc::new(tokio::sync::Notify::new());
    let drain = loop {
        tokio::select! {
            _ = stop.changed() => break (*stop.borrow()).unwrap_or_default(),
            accepted = listener.next() => {
                let (io, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let served = serve(io, peer, stop.clone());
                let (active, idle) = (active.clone(), idle.clone());
                active.set(active.get() + 1);
                tokio::task::spawn_local(async move {
                    served.await;
                    active.set(active.get() - 1);
                    if active.get() == 0 {
                        idle.notify_one();
                    }
                });
            }
        }
    };
    drop(listener);
    if active.get() > 0 {
        let _ = tokio::time::timeout(drain, idle.notified()).await;
    }
}

/// Runs `run` on a thread of its own, on a current-thread runtime and a `LocalSet`.
pub(crate) fn on_thread<F, Fut>(name: String, run: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new().name(name).spawn(move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, run());
    })
}

/// Serves an accepted connection over plain HTTP/1.1 (the admin surfaces).
pub(crate) async fn serve_http1<I, S>(io: I, svc: S)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Running traffic listeners.
#[derive(Debug)]
pub struct Listening {
    /// The bound address (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The HTTPS listener's bound address, when there is one.
    pub tls_addr: Option<SocketAddr>,
    stop: Stop,
    workers: Vec<JoinHandle<()>>,
}

impl Listening {
    /// Drains: stops accepting, lets requests in flight finish (connections close
    /// after their current response) for up to `drain`, then stops the workers.
    pub fn shutdown(self, drain: Duration) {
        let _ = self.stop.send(Some(drain));
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves `shared` on `addr` with `workers` threads (at least one).
pub fn serve(addr: SocketAddr, shared: Arc<Shared>, workers: usize) -> io::Result<Listening> {
    serve_on(addr, None, shared, workers)
}

/// Serves `shared` on `http` and, when given, HTTPS on `https`, with `workers` threads
/// (at least one), each accepting on both.
pub fn serve_on(
    http: SocketAddr,
    https: Option<SocketAddr>,
    shared: Arc<Shared>,
    workers: usize,
) -> io::Result<Listening> {
    let first = bind(http)?;
    let local_addr = first.local_addr()?;
    let (first_tls, tls_addr) = match https {
        Some(a) => {
            let l = bind(a)?;
            let bound = l.local_addr()?;
            (Some(l), Some(bound))
        }
        None => (None, None),
    };
    let config = match tls_addr {
        Some(_) => Some(tls::server_config(shared.clone())?),
        None => None,
    };
    let (stop, stopped) = watch::channel(None);
    let mut listeners = vec![(first, first_tls)];
    for _ in 1..workers.max(1) {
        let tls = tls_addr.map(bind).transpose()?;
        listeners.push((bind(local_addr)?, tls));
    }
    let mut handles = Vec::new();
    for (i, (listener, tls_listener)) in listeners.into_iter().enumerate() {
        let (shared, stopped) = (shared.clone(), stopped.clone());
        let tls = tls_listener.zip(config.clone());
        handles.push(on_thread(format!("gatehouse-worker-{i}"), move || {
            traffic_worker(i, listener, tls, shared, stopped)
        })?);
    }
    Ok(Listening {
        local_addr,
        tls_addr,
        stop,
        workers: handles,
    })
}

/// One traffic worker: its accept loops (plain and TLS), serving HTTP/1.1 and HTTP/2
/// with the request path.
async fn traffic_worker(
    index: usize,
    listener: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    shared: Arc<Shared>,
    stopped: Stopped,
) {
    worker::enter(index);
    shared.metrics.register_worker();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "listener setup failed");
            return;
        }
    };
    let tls = match tls.map(|(l, c)| tokio::net::TcpListener::from_std(l).map(|l| (l, c))) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            tracing::error!(error = %e, "HTTPS listener setup failed");
            return;
        }
    };
    let builders = Rc::new(http::Builders::new());
    // Cloned per request: an `Rc`, so no atomic traffic between workers.
    let shared = Rc::new(shared);
    {
        // The worker's tick: the access log's lines of this worker leave at least this
        // often. It also keeps a deadline in the worker's timer wheel at all times.
        // Without one, tokio's driver parks with no deadline, and each timer armed then
        // (hyper's header-read timeout, once per request) wakes the driver through its
        // eventfd: a write(2) for every other request or so, measured under load.
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(crate::access_log::FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                shared.access_log.flush_worker();
            }
        });
    }
    // Request deadlines (header reads, upstream attempts) wait on the worker's wheel.
    tokio::task::spawn_local(crate::deadline::drive());
    let flush = shared.clone();
    let _flush_on_exit = scopeguard(move || flush.access_log.flush_worker());
    let plain = {
        let (shared, builders) = (shared.clone(), builders.clone());
        accept_loop(listener, stopped.clone(), move |stream, client, stop| {
            let peer = Peer::new(client);
            serve_traffic(stream, peer, shared.clone(), builders.clone(), None, stop)
        })
    };
    let Some((tls_listener, config)) = tls else {
        return plain.await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let secure = accept_loop(tls_listener, stopped, move |stream, client, stop| {
        let (shared, builders, acceptor) = (shared.clone(), builders.clone(), acceptor.clone());
        async move {
            let handshake = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let result = tls::Handshake::of(&e);
                    shared.metrics.tls_handshake(result);
                    tracing::debug!(%client, error = %e, result = result.label(), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.metrics.tls_handshake(tls::Handshake::Timeout);
                    return;
                }
            };
            shared.metrics.tls_handshake(tls::Handshake::Success);
            // The certificate served, found again by the name the client asked for.
            let (_, conn) = stream.get_ref();
            let (sni, alpn) = (conn.server_name(), conn.alpn_protocol().map(<[u8]>::to_vec));
            let certificate = shared
                .current
                .load()
                .tls
                .lookup(sni)
                .map(|(id, _)| id.clone());
            let peer = Peer::with_tls(client, Some(Tls { certificate }));
            serve_traffic(stream, peer, shared, builders, alpn, stop).await;
        }
    });
    tokio::join!(plain, secure);
}

/// Serves one traffic connection (plain, or after its TLS handshake with the protocol
/// ALPN agreed) with the request path until it closes or the listener stops. `shared`
/// is an `Rc` so that cloning it per request is a plain increment, not an atomic one on
/// a line every worker writes.
#[allow(clippy::redundant_allocation)]
async fn serve_traffic<I>(
    io: I,
    peer: Peer,
    shared: Rc<Arc<Shared>>,
    builders: Rc<http::Builders>,
    alpn: Option<Vec<u8>>,
    mut stop: Stopped,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = peer.addr;
    let peer = Rc::new(peer);
    let svc = service_fn(move |req| {
        let (shared, peer) = (shared.clone(), peer.clone());
        async move { Ok::<_, std::convert::Infallible>(phases::handle(req, &peer, &shared).await) }
    });
    // Runs a connection until it ends; on stop, finishes the response in flight first.
    macro_rules! until_stopped {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }};
    }
    let io = TokioIo::new(FirstRead::new(io, http::HEADER_READ_TIMEOUT));
    let ended = match alpn.as_deref() {
        // HTTP/2 agreed: nothing else is read (upgrades are HTTP/1.1 only, and hyper's
        // upgradeable connection would tell the protocols apart by the first bytes).
        Some(b"h2") => until_stopped!(builders.http2.serve_connection(io, svc)),
        _ => until_stopped!(builders.any.serve_connection_with_upgrades(io, svc)),
    };
    if let Err(e) = ended {
        tracing::debug!(%client, error = %e, "connection ended");
    }
}

/// A connection whose first bytes must arrive within a deadline. hyper's header read
/// timeout starts at a request's first byte, and telling HTTP/1.1 from h2c waits for the
/// first bytes with no limit: a client that connects and sends nothing would hold the
/// connection forever.
struct FirstRead<I> {
    io: I,
    /// Until the first bytes arrive.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<I> FirstRead<I> {
    fn new(io: I, within: Duration) -> FirstRead<I> {
        FirstRead {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstRead<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstRead<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
