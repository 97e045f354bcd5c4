//! Fault-injection upstreams: HTTP/1.1 servers whose misbehaviour a test switches on
//! and off while they run.
//!
//! [`spawn_faulty`] starts one on a free loopback port and hands back a [`Faults`]
//! handle. Every switch applies to the next request (or, for [`Faults::refuse`], the
//! next connection):
//! - `refuse`: the listener is closed, so connections are refused; switched off, it
//!   listens on the same port again. Open keep-alive connections are closed at their
//!   next request.
//! - `reset`: the request is read and the connection reset (RST) without an answer.
//! - `reset_mid_body`: the head and part of the body are sent, then the connection is
//!   reset.
//! - `stall`: the request is read and never answered (the connection stays open).
//! - `fail_percent(p, status)`: that share of requests, drawn at random, is answered
//!   with `status`.
//! - `latency(d)`: every answer waits `d` first.
//! - `healthy(false)`: the health path ([`HEALTH_PATH`]) answers 503 instead of 200.
//! - `capacity(n)`: at most `n` requests are worked on at once (each for `latency`);
//!   the others wait their turn, like a server with `n` workers.
//!
//! Answers are `200` with a JSON body `{"server": "<addr>", "path": "<path>"}` and the
//! header `x-echo-server: <addr>`, like the echo upstream. The handle counts requests
//! that reached the application ([`Faults::requests`], health probes apart:
//! [`Faults::probes`]) and the concurrent requests at most ([`Faults::peak_in_flight`]).
//!
//! `GET /__stats` answers those counters as JSON (`{"requests", "probes"}`) without
//! counting itself: what a benchmark reads from outside the process.
//!
//! [`dead_addr`] is a loopback address nothing listens on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The path that answers the health probe.
pub const HEALTH_PATH: &str = "/healthz";

#[derive(Debug)]
struct State {
    addr: SocketAddr,
    refuse: AtomicBool,
    reset: AtomicBool,
    reset_mid_body: AtomicBool,
    stall: AtomicBool,
    fail_per_mille: AtomicU32,
    fail_status: AtomicU16,
    latency_ms: AtomicU64,
    healthy: AtomicBool,
    requests: AtomicU64,
    probes: AtomicU64,
    in_flight: AtomicU32,
    peak: AtomicU32,
    capacity: std::sync::Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

/// The switches and counters of one fault-injection upstream.
#[derive(Debug, Clone)]
pub struct Faults(Arc<State>);

impl Faults {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Refuses connections (closes its listener), or listens again.
    pub fn refuse(&self, on: bool) {
        self.0.refuse.store(on, Ordering::SeqCst);
    }

    /// Resets each connection after reading a request, without an answer.
    pub fn reset(&self, on: bool) {
        self.0.reset.store(on, Ordering::SeqCst);
    }

    /// Sends the head and part of the body, then resets the connection.
    pub fn reset_mid_body(&self, on: bool) {
        self.0.reset_mid_body.store(on, Ordering::SeqCst);
    }

    /// Reads requests and never answers them.
    pub fn stall(&self, on: bool) {
        self.0.stall.store(on, Ordering::SeqCst);
    }

    /// Answers `percent` of the requests (at random) with `status`.
    pub fn fail_percent(&self, percent: f64, status: u16) {
        let per_mille = (percent * 10.0).round().clamp(0.0, 1000.0) as u32;
        self.0.fail_status.store(status, Ordering::SeqCst);
        self.0.fail_per_mille.store(per_mille, Ordering::SeqCst);
    }

    /// Waits `latency` before each answer.
    pub fn latency(&self, latency: Duration) {
        self.0
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Works on at most `n` requests at once; 0: no limit.
    pub fn capacity(&self, n: usize) {
        if let Ok(mut c) = self.0.capacity.lock() {
            *c = (n > 0).then(|| Arc::new(tokio::sync::Semaphore::new(n)));
        }
    }

    /// What the health path answers: 200 when healthy, else 503.
    pub fn healthy(&self, on: bool) {
        self.0.healthy.store(on, Ordering::SeqCst);
    }

    /// Requests that reached it (health probes apart).
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::SeqCst)
    }

    /// Health probes that reached it.
    pub fn probes(&self) -> u64 {
        self.0.probes.load(Ordering::SeqCst)
    }

    /// The most requests it had in flight at once.
    pub fn peak_in_flight(&self) -> u32 {
        self.0.peak.load(Ordering::SeqCst)
    }
}

/// A loopback address nothing listens on (connections to it are refused).
pub async fn dead_addr() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    l.local_addr()
}

/// Starts a fault-injection upstream on a free loopback port.
pub async fn spawn_faulty() -> std::io::Result<Faults> {
    spawn_faulty_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a fault-injection upstream on `addr` (port 0: a free one).
pub async fn spawn_faulty_on(addr: SocketAddr) -> std::io::Result<Faults> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let faults = Faults(Arc::new(State {
        addr,
        refuse: AtomicBool::new(false),
        reset: AtomicBool::new(false),
        reset_mid_body: AtomicBool::new(false),
        stall: AtomicBool::new(false),
        fail_per_mille: AtomicU32::new(0),
        fail_status: AtomicU16::new(503),
        latency_ms: AtomicU64::new(0),
        healthy: AtomicBool::new(true),
        requests: AtomicU64::new(0),
        probes: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        peak: AtomicU32::new(0),
        capacity: std::sync::Mutex::new(None),
    }));
    tokio::spawn(serve(listener, faults.0.clone()));
    Ok(faults)
}

/// Accepts until refusing, then waits and listens again on the same address.
async fn serve(mut listener: TcpListener, state: Arc<State>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, state.clone()));
                }
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if state.refuse.load(Ordering::SeqCst) {
            drop(listener);
            while state.refuse.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            listener = loop {
                match TcpListener::bind(state.addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
        }
    }
}

/// A request as read: path and whether the connection may be kept.
struct Head {
    path: String,
    close: bool,
}

/// Reads one request (head and `Content-Length` body); `None` at the end of the
/// connection or on a malformed request.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = req.parse(buf) {
            let path = req.path.unwrap_or("/").to_string();
            let mut body = 0usize;
            let mut close = false;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                }
                if h.name.eq_ignore_ascii_case("connection")
                    && h.value.eq_ignore_ascii_case(b"close")
                {
                    close = true;
                }
            }
            while buf.len() < len + body {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..len + body);
            return Some(Head { path, close });
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Closes with a reset (RST) rather than an orderly FIN: a zero linger time (which
/// never blocks on close).
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(head) = read_request(&mut stream, &mut buf).await {
        if state.refuse.load(Ordering::SeqCst) {
            return reset(stream);
        }
        if head.path.starts_with(HEALTH_PATH) {
            state.probes.fetch_add(1, Ordering::SeqCst);
            let status = if state.healthy.load(Ordering::SeqCst) {
                200
            } else {
                503
            };
            if answer(&mut stream, &state, status, &head).await.is_err() || head.close {
                return;
            }
            continue;
        }
        if head.path.starts_with("/__stats") {
            let stats = serde_json::json!({
                "requests": state.requests.load(Ordering::SeqCst),
                "probes": state.probes.load(Ordering::SeqCst),
            });
            if reply(&mut stream, &state, 200, &stats.to_string(), head.close)
                .await
                .is_err()
                || head.close
            {
                return;
            }
            continue;
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak.fetch_max(now, Ordering::SeqCst);
        let _done = InFlight(&state);
        if state.stall.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if state.reset.load(Ordering::SeqCst) {
            return reset(stream);
        }
        let capacity = state.capacity.lock().ok().and_then(|c| c.clone());
        let _turn = match capacity {
            Some(c) => c.acquire_owned().await.ok(),
            None => None,
        };
        let latency = state.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if state.reset_mid_body.load(Ordering::SeqCst) {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nx-echo-server: {}\r\n\r\n{{\"partial\":",
                state.addr
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            return reset(stream);
        }
        let per_mille = state.fail_per_mille.load(Ordering::SeqCst);
        let status = if per_mille > 0 && fastrand::u32(..1000) < per_mille {
            state.fail_status.load(Ordering::SeqCst)
        } else {
            200
        };
        if answer(&mut stream, &state, status, &head).await.is_err() || head.close {
            return;
        }
    }
}

struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(
    stream: &mut TcpStream,
    state: &State,
    status: u16,
    head: &Head,
) -> std::io::Result<()> {
    let body = serde_json::json!({"server": state.addr.to_string(), "path": head.path}).to_string();
    reply(stream, state, status, &body, head.close).await
}

async fn reply(
    stream: &mut TcpStream,
    state: &State,
    status: u16,
    body: &str,
    close: bool,
) -> std::io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-echo-server: {}\r\n{}\r\n{body}",
        body.len(),
        state.addr,
        if close { "connection: close\r\n" } else { "" },
    );
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await
}
