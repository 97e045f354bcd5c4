//! Listeners, thread per core: each worker binds the same address with `SO_REUSEPORT`
//! (the kernel spreads connections), runs a current-thread runtime and serves its
//! connections on a `LocalSet`, so connection state and upstream pools stay on it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::{Shared, request_path};

/// Running listeners.
#[derive(Debug)]
pub struct Listening {
    /// The bound address (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Listening {
    /// Stops accepting and waits for the workers to exit.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
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
    let (stop, stopped) = watch::channel(false);
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
                local.block_on(&runtime, async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "listener setup failed");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => break,
                            accepted = listener.accept() => {
                                let (stream, client) = match accepted {
                                    Ok(a) => a,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "accept failed");
                                        continue;
                                    }
                                };
                                let _ = stream.set_nodelay(true);
                                let shared = shared.clone();
                                tokio::task::spawn_local(async move {
                                    let svc = service_fn(move |req| {
                                        let shared = shared.clone();
                                        async move {
                                            Ok::<_, std::convert::Infallible>(
                                                request_path::handle(req, client, &shared).await,
                                            )
                                        }
                                    });
                                    if let Err(e) = http1::Builder::new()
                                        .max_buf_size(64 * 1024)
                                        .serve_connection(TokioIo::new(stream), svc)
                                        .await
                                    {
                                        tracing::debug!(%client, error = %e, "connection ended");
                                    }
                                });
                            }
                        }
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
