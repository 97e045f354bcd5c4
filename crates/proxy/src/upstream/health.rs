//! Active health checks, off the request path: one thread (`gatehouse-health`, started
//! when the first upstream with `healthCheck.active` arrives) runs one prober task per
//! endpoint, not per worker.
//!
//! Each prober sends `GET path` on a new connection (TLS when the upstream has it,
//! HTTP/2 when it speaks it) every `interval` (±10% jitter, so probes of many
//! endpoints spread out), within `timeout`. A status in `expectedStatuses` is a
//! success; anything else, including no answer, a failure. `unhealthyThreshold`
//! failures in a row take a healthy endpoint out of rotation; `healthyThreshold`
//! successes in a row bring it back. Endpoints start healthy and are probed at once.
//!
//! A supervisor per upstream follows its endpoint list (new endpoints get a prober,
//! gone ones lose theirs) and stops when the upstream leaves the table or loses its
//! active check. Probers hold the upstream state weakly: nothing here keeps an old
//! table's upstream alive.
//!
//! The same thread runs the timers that end passive ejections ([`after`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_table::Protocol;
use gatehouse_table::resilience::ActiveCheck;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::endpoint::Endpoint;
use super::state::{ProbePlan, UpstreamState};
use super::tls::TlsClient;

/// The health thread's runtime, started on first use.
fn runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            crate::runtime_thread("gatehouse-health", std::future::pending())
                .map_err(|e| tracing::error!(error = %e, "health-check thread did not start"))
                .ok()
        })
        .as_ref()
}

/// Runs `f` on the health thread after `delay`.
pub(crate) fn after(delay: Duration, f: impl FnOnce() + Send + 'static) {
    if let Some(rt) = runtime() {
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            f();
        });
    }
}

/// Hands upstreams with active checks to the health thread.
#[derive(Debug, Default)]
pub(crate) struct Prober;

impl Prober {
    /// Starts probing `state`'s endpoints (until it has no active check or is gone).
    pub(crate) fn watch(&self, id: String, state: &Arc<UpstreamState>) {
        let weak = Arc::downgrade(state);
        match runtime() {
            Some(rt) => {
                rt.spawn(supervise(id, weak));
            }
            None => state.probing.store(false, Ordering::Release),
        }
    }
}

/// How often a supervisor looks at its upstream's endpoint list, at most.
const FOLLOW: Duration = Duration::from_secs(1);

/// Keeps one prober per endpoint of the upstream.
async fn supervise(id: String, state: Weak<UpstreamState>) {
    let mut probers: HashMap<
        SocketAddr,
        (Arc<Endpoint>, ActiveCheck, tokio::task::JoinHandle<()>),
    > = HashMap::new();
    loop {
        let Some(s) = state.upgrade() else { break };
        let Some(plan) = s.probe_plan() else {
            s.probing.store(false, Ordering::Release);
            break;
        };
        drop(s);
        probers.retain(|addr, (e, check, task)| {
            let keep = *check == plan.check
                && plan
                    .endpoints
                    .iter()
                    .any(|x| x.addr == *addr && Arc::ptr_eq(x, e));
            if !keep {
                task.abort();
            }
            keep
        });
        for e in &plan.endpoints {
            if probers.contains_key(&e.addr) {
                continue;
            }
            let task = tokio::spawn(probe_loop(
                id.clone(),
                state.clone(),
                e.clone(),
                plan.clone(),
            ));
            probers.insert(e.addr, (e.clone(), plan.check.clone(), task));
        }
        let every = Duration::from_millis(plan.check.interval_ms).min(FOLLOW);
        tokio::time::sleep(every).await;
    }
    for (_, (_, _, task)) in probers {
        task.abort();
    }
}

/// Probes one endpoint until aborted or its upstream is gone.
async fn probe_loop(id: String, state: Weak<UpstreamState>, e: Arc<Endpoint>, plan: ProbePlan) {
    let check = &plan.check;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let ok = probe(e.addr, check, plan.protocol, plan.tls.as_deref()).await;
        if ok {
            successes = successes.saturating_add(1);
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
            successes = 0;
        }
        let was = e.is_healthy();
        let now = if was {
            failures < check.unhealthy_threshold
        } else {
            successes >= check.healthy_threshold
        };
        if now != was {
            e.healthy.store(now, Ordering::Relaxed);
            if now {
                tracing::info!(upstream = %id, endpoint = %e.addr, "endpoint healthy again: back in rotation");
            } else {
                tracing::warn!(upstream = %id, endpoint = %e.addr, failures, "endpoint failed its health checks: out of rotation");
            }
            match state.upgrade() {
                Some(s) => s.refresh(),
                None => return,
            }
        }
        let jitter = 0.9 + fastrand::f64() * 0.2;
        tokio::time::sleep(Duration::from_millis(check.interval_ms).mul_f64(jitter)).await;
    }
}

/// One probe: whether `GET path` answered an expected status within the timeout.
async fn probe(
    addr: SocketAddr,
    check: &ActiveCheck,
    protocol: Protocol,
    tls: Option<&TlsClient>,
) -> bool {
    let timeout = Duration::from_millis(check.timeout_ms);
    let status = tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        match tls {
            None => send(TokioIo::new(tcp), addr, check, protocol).await,
            Some(tls) => {
                let stream = tls.connect(tcp, addr).await.ok()?;
                send(TokioIo::new(stream), addr, check, protocol).await
            }
        }
    })
    .await
    .ok()
    .flatten();
    status.is_some_and(|s| check.expected_statuses.binary_search(&s).is_ok())
}

/// Sends the probe on `io`; the status, or `None` when the exchange failed.
async fn send<I>(io: I, addr: SocketAddr, check: &ActiveCheck, protocol: Protocol) -> Option<u16>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let host = addr.to_string();
    let req = Request::get(check.path.as_str())
        .header(header::USER_AGENT, "gatehouse-health-check")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = match protocol {
        Protocol::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
            tokio::spawn(conn);
            let mut req = req;
            req.headers_mut()
                .insert(header::HOST, http::HeaderValue::from_str(&host).ok()?);
            req.headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            sender.send_request(req).await.ok()?
        }
        Protocol::Http2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .ok()?;
            tokio::spawn(conn);
            let (mut parts, body) = req.into_parts();
            parts.uri = format!("http://{host}{}", check.path).parse().ok()?;
            sender
                .send_request(Request::from_parts(parts, body))
                .await
                .ok()?
        }
    };
    Some(resp.status().as_u16())
}
