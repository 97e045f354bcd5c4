//! Listeners, thread per core: each worker binds the same address with `SO_REUSEPORT`
//! (the kernel spreads connections), runs a current-thread runtime and serves its
//! connections on a `LocalSet`, so connection state and upstream pools stay on it.
//!
//! Each connection speaks HTTP/1.1 or, when it opens with the HTTP/2 preface, h2c
//! (prior knowledge). HTTP/1.1 connections may be upgraded (WebSocket).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::headers::Peer;
use crate::{Shared, request_path};

/// Largest request line + headers. The request path answers 431 (problem+json) beyond
/// it; the parser's buffer is twice as large, and only a head beyond that gets the
/// parser's own bare 431 with the connection closed.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
const PARSER_BUFFER: usize = 2 * MAX_REQUEST_HEAD;
/// A client must send its whole request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams a client may open on one HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Runs hyper's background tasks (HTTP/2 streams, upstream connections) on the
/// worker's `LocalSet`, so they stay on the thread that owns their connection.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// The connection builder of a worker: HTTP/1.1 and h2c, with the listener limits.
fn connection_builder() -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(PARSER_BUFFER)
        .writev(false)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(PARSER_BUFFER as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    builder
}

/// Running listeners.
#[derive(Debug)]
pub struct Listening {
    /// The bound address (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    /// Sends the drain deadline; `None` until shutdown.
    stop: watch::Sender<Option<Duration>>,
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
    let first = bind(addr)?;
    let local_addr = first.local_addr()?;
    let (stop, stopped) = watch::channel(None);
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(bind(local_addr)?);
    }
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let mut stopped = stopped.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name(format!("gatehouse-worker-{i}"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                shared.metrics.register_worker();
                local.block_on(&runtime, async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "listener setup failed");
                            return;
                        }
                    };
                    let builder = Rc::new(connection_builder());
                    // Cloned per request: an `Rc`, so no atomic traffic between workers.
                    let local_shared = Rc::new(shared.clone());
                    let active = Rc::new(Cell::new(0usize));
                    let idle = Rc::new(tokio::sync::Notify::new());
                    let drain = loop {
                        tokio::select! {
                            _ = stopped.changed() => break (*stopped.borrow()).unwrap_or_default(),
                            accepted = listener.accept() => {
                                let (stream, client) = match accepted {
                                    Ok(a) => a,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "accept failed");
                                        continue;
                                    }
                                };
                                let _ = stream.set_nodelay(true);
                                let shared = local_shared.clone();
                                let mut stop = stopped.clone();
                                let (active, idle) = (active.clone(), idle.clone());
                                let builder = builder.clone();
                                active.set(active.get() + 1);
                                tokio::task::spawn_local(async move {
                                    let peer = Rc::new(Peer::new(client));
                                    let svc = service_fn(move |req| {
                                        let (shared, peer) = (shared.clone(), peer.clone());
                                        async move {
                                            Ok::<_, std::convert::Infallible>(
                                                request_path::handle(req, &peer, &shared).await,
                                            )
                                        }
                                    });
                                    let conn = builder
                                        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                    tokio::pin!(conn);
                                    let ended = tokio::select! {
                                        ended = conn.as_mut() => ended,
                                        _ = stop.changed() => {
                                            // Finish the response in flight, then close.
                                            conn.as_mut().graceful_shutdown();
                                            conn.await
                                        }
                                    };
                                    if let Err(e) = ended {
                                        tracing::debug!(%client, error = %e, "connection ended");
                                    }
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
                });
            })?;
        handles.push(handle);
    }
    Ok(Listening {
        local_addr,
        stop,
        workers: handles,
    })
}
