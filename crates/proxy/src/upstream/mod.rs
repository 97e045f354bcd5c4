//! Upstreams: where the backend phase sends a request and how.
//!
//! ```text
//!  balance.rs   a rule's weighted backends → one upstream; the upstream's endpoints in
//!               rotation → one endpoint (six balancers; sees the request's hash key)
//!  endpoint.rs  one server: in-flight count, latency estimate, failures, verdicts
//!  state.rs     per-upstream state kept across tables: endpoints, what is in rotation,
//!               breaker, retry budget; passive ejection
//!  health.rs    active probes on their own thread; the timers that end ejections
//!  breaker.rs   the circuit breaker: limits and the failure-ratio state machine
//!  retry.rs     what is retried, the budget, backoff
//!  window.rs    lock-free sliding windows of counts (breaker, budget)
//!  resolve.rs   DNS names among the endpoints, kept fresh on their TTL
//!  pool.rs      per-worker connection pools (HTTP/1.1 keep-alive, HTTP/2, upgrades)
//!  h1.rs        HTTP/1.1 on the request's own task, for plaintext requests whose body
//!               is known
//!  tls.rs       TLS to the servers: verification, client certificates, ALPN
//! ```
//!
//! [`call`] is the one place a request leaves for an upstream: the breaker admits it,
//! then attempts are made — each picks an endpoint, goes through [`exchange`] and is
//! counted (metrics, the endpoint's counts, passive checks) — until one succeeds, the
//! retry policy or its budget says stop, or the request timeout runs out.

pub mod balance;
pub mod breaker;
pub mod endpoint;
pub mod h1;
mod health;
pub mod pool;
mod resolve;
pub mod retry;
pub mod state;
pub mod tls;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::Either as OneOf;
use gatehouse_table::{LoadBalancer, Protocol, Upstream};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};

use crate::body::{Body, Streamed};
use crate::listener::limits::MAX_BODY_BYTES;
use crate::metrics::{Metrics, UpstreamLabels, UpstreamOutcome};
use crate::problem::GatewayError;
use crate::tunnel;
use endpoint::now_ns;
use retry::Failure;
use state::{Picked, UpstreamState};

/// One upstream, ready to pick endpoints from.
#[derive(Debug)]
pub struct PreparedUpstream {
    /// The table's upstream.
    pub spec: Upstream,
    /// Its live state, shared with the tables before and after this one.
    pub state: Arc<UpstreamState>,
    /// Its TLS client, when it has `tls`.
    pub tls: Option<Arc<tls::TlsClient>>,
    /// Its metric labels.
    pub labels: UpstreamLabels,
}

/// How a request is sent: what the balancer hashes, when the request arrived, the
/// time it may take (all attempts), and where outcomes are counted.
pub(crate) struct Call<'a> {
    /// The hash of the request's key (`hashOn`), for RingHash and Maglev.
    pub key: Option<u64>,
    /// When the request arrived (connection pools compare it with idle deadlines).
    pub started: Instant,
    /// The request timeout: the rule's, else the upstream's.
    pub timeout: Duration,
    /// Where attempts are counted.
    pub metrics: &'a Metrics,
    /// Where the last attempt is noted for the access log, when it is kept.
    pub seen: Option<&'a std::cell::Cell<Option<crate::access_log::Attempted>>>,
    /// The request's trace, when tracing is on: each attempt is a client span of it.
    pub trace: Option<&'a crate::trace::Traced>,
}

/// A failed attempt: what the client is answered, and how the upstream failed (`None`
/// when it was not the upstream's doing: the client's body, a limit of ours).
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: GatewayError,
    pub failure: Option<Failure>,
}

impl From<GatewayError> for Failed {
    fn from(error: GatewayError) -> Failed {
        Failed {
            error,
            failure: None,
        }
    }
}

/// Sends the request to `upstream`: breaker, balancer, attempts (see the module doc).
/// `held` (a concurrency permit) lives as long as the response body.
///
/// Not an `async fn`, nor are [`attempt`] and [`exchange`]: what can be decided at once
/// (admission, the endpoint) is, and the request moves straight into the exchange's
/// future instead of being carried (and moved) through each layer's.
pub(crate) fn call<'a>(
    req: Request<pool::UpstreamBody>,
    upstream: &'a PreparedUpstream,
    how: Call<'a>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + 'a {
    let spec = &upstream.spec;
    let admitted = match &spec.circuit_breaker {
        Some(cfg) => upstream
            .state
            .breaker
            .admit(cfg, now_ns())
            .ok_or(GatewayError::CircuitOpen)
            .map(Some),
        None => Ok(None),
    };
    let retries = spec.retries.as_ref().filter(|r| {
        r.attempts > 0
            && retry::method_allows(r, req.method())
            && !req.headers().contains_key(header::UPGRADE)
    });
    // One attempt (most requests), attempts under the retry policy, or why none is made.
    let attempts = match (&admitted, retries) {
        (Err(e), _) => OneOf::Left(std::future::ready(Err(Failed::from(e.clone())))),
        (Ok(_), None) => match pick(upstream, how.key, None) {
            Ok(picked) => OneOf::Right(OneOf::Left(attempt(
                req,
                picked,
                upstream,
                &how,
                (how.timeout, 0),
                held,
            ))),
            Err(f) => OneOf::Left(std::future::ready(Err(f))),
        },
        (Ok(_), Some(r)) => OneOf::Right(OneOf::Right(Box::pin(with_retries(
            req, r, upstream, how, held,
        )))),
    };
    // A combinator rather than an `async` block: the block would hold the attempts'
    // future twice (as what it captured and as what it awaits), and every future above
    // this one, moved as each starts, would carry both copies.
    attempts.map(move |result| {
        if let Ok(Some(admitted)) = admitted {
            let failed = match &result {
                Ok(resp) => resp.status().is_server_error(),
                Err(f) => f.failure.is_some_and(Failure::is_upstream_failure),
            };
            admitted.finish(spec.circuit_breaker.as_ref(), failed, now_ns());
        }
        result.map_err(|f| f.error)
    })
}

/// The endpoint for an attempt; 503 when none is in rotation.
fn pick(
    upstream: &PreparedUpstream,
    key: Option<u64>,
    avoid: Option<SocketAddr>,
) -> Result<Picked, Failed> {
    upstream.state.pick(key, avoid).ok_or_else(|| {
        if upstream.state.has_endpoints() {
            GatewayError::NoHealthyEndpoint.into()
        } else {
            GatewayError::Unavailable.into()
        }
    })
}

/// One attempt on `picked` (within `timeout`, after `resend` others), counted (metrics,
/// the endpoint's counts, passive checks): the exchange itself, which does the
/// counting, so that no future wraps its own.
fn attempt<'a>(
    req: Request<pool::UpstreamBody>,
    picked: Picked,
    upstream: &'a PreparedUpstream,
    how: &Call<'a>,
    (timeout, resend): (Duration, u32),
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl Future<Output = Result<Response<Body>, Failed>> + use<'a> {
    let to = Sending {
        picked,
        started: how.started,
        key: how.key,
        timeout,
        metrics: how.metrics,
        seen: how.seen,
        trace: how.trace.map(|t| (t, resend)),
    };
    exchange(req, to, upstream, held)
}

/// Where and how an attempt goes ([`exchange`]).
pub(crate) struct Sending<'a> {
    /// The endpoint.
    pub picked: Picked,
    /// When the request arrived (connection pools compare it with idle deadlines).
    pub started: Instant,
    /// The balancer's key (another endpoint is picked when connecting fails).
    pub key: Option<u64>,
    /// The attempt's timeout.
    pub timeout: Duration,
    /// Where the attempt is counted.
    pub metrics: &'a Metrics,
    /// Where the attempt is noted for the access log.
    pub seen: Option<&'a std::cell::Cell<Option<crate::access_log::Attempted>>>,
    /// The request's trace, and how many attempts of this call came before.
    pub trace: Option<(&'a crate::trace::Traced, u32)>,
}

/// Counts an attempt's outcome: metrics, PeakEwma's estimate, passive checks.
fn judge<B>(
    result: &Result<(Response<B>, SocketAddr), Failed>,
    picked: &Picked,
    upstream: &PreparedUpstream,
    metrics: &Metrics,
    took: Duration,
) {
    let failure = match result {
        Ok((resp, _)) => resp
            .status()
            .is_server_error()
            .then(|| Failure::Status(resp.status().as_u16())),
        Err(f) => f.failure,
    };
    // A client-side failure (its body) or our own limit says nothing of the upstream.
    let judged = !matches!(result, Err(f) if f.failure.is_none());
    if judged {
        metrics.upstream(upstream.labels, counted_as(failure), took);
    }
    let Some(e) = &picked.endpoint else { return };
    if upstream.spec.load_balancer == LoadBalancer::PeakEwma {
        e.observe(took, now_ns());
    }
    if let Some(check) = upstream
        .spec
        .health_check
        .as_ref()
        .and_then(|h| h.passive.as_ref())
        && judged
    {
        // The picked endpoint's verdict; when another one answered after it could not
        // be connected to, that one's success is not counted. Connect failures were
        // counted as they happened (`next_endpoint`).
        match (result, failure) {
            (_, Some(Failure::Refused)) => {}
            (Ok((_, addr)), _) if *addr != picked.addr => {}
            (_, Some(f)) if f.is_upstream_failure() => upstream.state.failed(e, check),
            _ => e.succeeded(),
        }
    }
}

/// Attempts under the retry policy `r`, within the request timeout.
async fn with_retries<'a>(
    req: Request<pool::UpstreamBody>,
    r: &'a gatehouse_table::resilience::Retries,
    upstream: &'a PreparedUpstream,
    how: Call<'a>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Response<Body>, Failed> {
    let how = &how;
    let state = &upstream.state;
    state.budget.request(now_ns());
    let (parts, body) = req.into_parts();
    let body = match replayable(body, retry::REPLAY_LIMIT).await {
        Replay::Bytes(b) => b,
        Replay::Failed(e) => return Err(e.into()),
        // Too large or of unknown length: sent once.
        Replay::No(body) => {
            let picked = pick(upstream, how.key, None)?;
            let req = Request::from_parts(parts, body);
            return attempt(req, picked, upstream, how, (how.timeout, 0), held).await;
        }
    };
    let per_try = r
        .per_try_timeout_ms
        .map_or(how.timeout, Duration::from_millis)
        .min(how.timeout);
    let attempts = async {
        let mut avoid = None;
        let mut n = 0;
        loop {
            let picked = pick(upstream, how.key, avoid)?;
            let addr = picked.addr;
            let req = copy(&parts, &body);
            let result = attempt(req, picked, upstream, how, (per_try, n), None).await;
            let failure = match &result {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    (s >= 500 || r.status_codes.binary_search(&s).is_ok())
                        .then_some(Failure::Status(s))
                }
                Err(f) => f.failure,
            };
            if n >= r.attempts || !failure.is_some_and(|f| retry::retried(r, f)) {
                return result;
            }
            if !state.budget.retry(r, now_ns()) {
                how.metrics.retry(upstream.labels, false);
                return result;
            }
            how.metrics.retry(upstream.labels, true);
            // The failed answer is dropped unread: nothing of it reached the client.
            drop(result);
            n += 1;
            tokio::time::sleep(retry::backoff(r, n)).await;
            avoid = Some(addr);
        }
    };
    let mut resp = tokio::time::timeout(how.timeout, attempts)
        .await
        .unwrap_or(Err(Failed {
            error: GatewayError::Timeout,
            failure: Some(Failure::Timeout),
        }))?;
    if let Either::Right(streamed) = resp.body_mut() {
        streamed.hold(held);
    }
    Ok(resp)
}

/// A request body for attempts: the bytes to replay, or the body to send once.
pub(crate) enum Replay {
    Bytes(Bytes),
    No(pool::UpstreamBody),
    Failed(GatewayError),
}

/// The body as bytes to replay when it is known and at most `limit` bytes.
pub(crate) async fn replayable(body: pool::UpstreamBody, limit: u64) -> Replay {
    use hyper::body::Body as _;
    match body {
        Either::Right(full) => {
            let bytes = match full.collect().await {
                Ok(c) => c.to_bytes(),
                Err(never) => match never {},
            };
            if bytes.len() as u64 <= limit {
                Replay::Bytes(bytes)
            } else {
                Replay::No(Either::Right(Full::new(bytes)))
            }
        }
        Either::Left(streamed) if streamed.is_end_stream() => Replay::Bytes(Bytes::new()),
        Either::Left(streamed) if streamed.size_hint().exact().is_some_and(|n| n <= limit) => {
            match streamed.collect().await {
                Ok(c) => Replay::Bytes(c.to_bytes()),
                Err(e) if crate::body::too_slow(&*e) => Replay::Failed(GatewayError::BodyTooSlow),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Replay::Failed(GatewayError::PayloadTooLarge(MAX_BODY_BYTES))
                }
                Err(_) => Replay::Failed(GatewayError::Framing("the request body is malformed")),
            }
        }
        other => Replay::No(other),
    }
}

/// A copy of the request for one attempt.
pub(crate) fn copy(parts: &http::request::Parts, body: &Bytes) -> Request<pool::UpstreamBody> {
    let mut req = Request::new(Either::Right(Full::new(body.clone())));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

/// Endpoints tried for one attempt when connecting fails (nothing was sent, so trying
/// another endpoint is safe for any method).
const CONNECT_ATTEMPTS: usize = 3;

/// Sends the request to the picked endpoint (or, when no connection can be made, to
/// the next endpoints) within the timeout, and counts the attempt ([`judge`]); an
/// accepted upgrade becomes a tunnel between the two connections. `held` lives as long
/// as the response body (a concurrency permit).
///
/// An HTTP/1.1 request whose body is known goes inline ([`h1`]), written out once here
/// so that what the futures below carry is small (every future on the way is moved
/// when it starts); the others go through hyper's client, boxed for the same reason.
pub(crate) fn exchange<'a>(
    mut req: Request<pool::UpstreamBody>,
    to: Sending<'a>,
    upstream: &'a PreparedUpstream,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl Future<Output = Result<Response<Body>, Failed>> + 'a {
    // A client span of the request's trace: the upstream's parent.
    let span = to.trace.map(|(trace, resend)| {
        let (id, header) = trace.attempt();
        req.headers_mut()
            .insert(crate::headers::TRACEPARENT, header);
        (trace, resend, id, req.method().clone())
    });
    // Not an `async fn`: its future would keep a copy of `req` however it is sent.
    let way =
        if upstream.spec.protocol == Protocol::Http1 && upstream.tls.is_none() && h1::carries(&req)
        {
            Way::Inline(h1::Wire::new(req))
        } else {
            Way::Pooled(Box::new(req))
        };
    async move {
        let Sending {
            picked,
            started,
            key,
            timeout,
            metrics,
            seen,
            trace: _,
        } = to;
        let addr = picked.addr;
        let in_flight = picked.endpoint.as_deref().map(endpoint::Endpoint::start);
        let began = Instant::now();
        let result = match way {
            Way::Inline(wire) => {
                // On the worker's wheel: armed for every request, almost never fired.
                let sent = crate::deadline::timeout_at(
                    began + timeout,
                    send_inline(&wire, (addr, started), upstream, key),
                )
                .await;
                outcome(sent, upstream).map(|(resp, addr)| (resp.map(Either::Right), addr))
            }
            Way::Pooled(req) => Box::pin(exchange_pooled(
                *req,
                (addr, started),
                upstream,
                key,
                timeout,
            ))
            .await
            .map(|(resp, addr)| (resp.map(Either::Left), addr)),
        };
        let took = began.elapsed();
        drop(in_flight);
        judge(&result, &picked, upstream, metrics, took);
        if let Some(seen) = seen {
            let endpoint = result.as_ref().map_or(addr, |(_, a)| *a);
            seen.set(Some(crate::access_log::Attempted {
                upstream: upstream.labels,
                endpoint,
                took,
            }));
        }
        if let Some((trace, resend, span_id, method)) = span {
            let (status, error) = match &result {
                Ok((resp, _)) => (Some(resp.status().as_u16()), None),
                Err(f) => (
                    None,
                    Some(f.failure.map_or("gateway", |f| counted_as(Some(f)).label())),
                ),
            };
            trace.attempted(crate::trace::AttemptSpan {
                span_id,
                method,
                upstream: upstream.labels,
                endpoint: result.as_ref().map_or(addr, |(_, a)| *a),
                offset: began.saturating_duration_since(started),
                took,
                status,
                error,
                resend,
            });
        }
        result.map(|(resp, _)| resp.map(|b| Either::Right(Streamed::new(b, held))))
    }
}

/// What an attempt that failed with `failure` (or did not) counts as: the `outcome`
/// label of `gatehouse_upstream_requests_total`, and a failed attempt's `error.type`.
fn counted_as(failure: Option<Failure>) -> UpstreamOutcome {
    match failure {
        None => UpstreamOutcome::Success,
        Some(Failure::Status(_)) => UpstreamOutcome::Error,
        Some(Failure::Timeout) => UpstreamOutcome::Timeout,
        Some(Failure::Reset) => UpstreamOutcome::Reset,
        Some(Failure::Refused) => UpstreamOutcome::Refused,
    }
}

/// How a request goes to its upstream.
enum Way {
    /// Written out, for the inline HTTP/1.1 exchange.
    Inline(h1::Wire),
    /// As it is, through hyper's client.
    Pooled(Box<Request<pool::UpstreamBody>>),
}

/// What a timed exchange came to, as the gateway answers it, and how the upstream
/// failed.
fn outcome<T>(
    sent: Result<Result<T, pool::SendError>, crate::deadline::TimedOut>,
    upstream: &PreparedUpstream,
) -> Result<T, Failed> {
    let (error, failure) = match sent {
        Ok(Ok(resp)) => return Ok(resp),
        Err(_) => (GatewayError::Timeout, Some(Failure::Timeout)),
        Ok(Err(pool::SendError::ConnectTimeout(_))) => {
            (GatewayError::Timeout, Some(Failure::Refused))
        }
        Ok(Err(pool::SendError::Overloaded)) => (GatewayError::CircuitOpen, None),
        Ok(Err(e)) if e.body_too_large() => (GatewayError::PayloadTooLarge(MAX_BODY_BYTES), None),
        Ok(Err(e)) if e.client_body_too_slow() => (GatewayError::BodyTooSlow, None),
        Ok(Err(e)) if e.client_body_failed() => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "the client's request body failed");
            (GatewayError::Framing("the request body is malformed"), None)
        }
        Ok(Err(e)) if e.is_tls() => {
            // Configuration or certificate trouble, not a passing glitch: always logged.
            tracing::warn!(upstream = %upstream.spec.id, error = %e, "upstream TLS handshake failed");
            (GatewayError::BadGateway, Some(Failure::Refused))
        }
        Ok(Err(e @ pool::SendError::Connect { .. })) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream connect failed");
            (GatewayError::BadGateway, Some(Failure::Refused))
        }
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream exchange failed");
            (GatewayError::BadGateway, Some(Failure::Reset))
        }
    };
    Err(Failed { error, failure })
}

/// The endpoint to try after `addr` could not be connected to, counting `attempt`s;
/// `None` when there is no other or enough were tried. The failed connect counts
/// against `addr` in passive checks here (every connect failure passes by here).
fn next_endpoint(
    upstream: &PreparedUpstream,
    key: Option<u64>,
    addr: SocketAddr,
    attempt: &mut usize,
    error: &pool::SendError,
) -> Option<SocketAddr> {
    if matches!(error, pool::SendError::Overloaded) {
        // Our own limit, not the endpoint's failure; another endpoint would meet it too.
        return None;
    }
    if let Some(check) = upstream
        .spec
        .health_check
        .as_ref()
        .and_then(|h| h.passive.as_ref())
    {
        upstream.state.refused(addr, check);
    }
    if *attempt >= CONNECT_ATTEMPTS {
        return None;
    }
    *attempt += 1;
    let next = upstream
        .state
        .pick(key, Some(addr))
        .map(|p| p.addr)
        .filter(|next| *next != addr)?;
    tracing::debug!(upstream = %upstream.spec.id, %error, "trying the next endpoint");
    Some(next)
}

/// The inline HTTP/1.1 exchange, moving to the next endpoints when connecting fails.
async fn send_inline(
    wire: &h1::Wire,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    key: Option<u64>,
) -> Result<(Response<h1::Body>, SocketAddr), pool::SendError> {
    let (mut addr, now) = to;
    let mut attempt = 1;
    loop {
        match h1::send(
            wire,
            (addr, now),
            &upstream.spec.timeouts,
            upstream.limits(),
        )
        .await
        {
            Err(h1::Failed {
                error,
                unsent: true,
            }) => match next_endpoint(upstream, key, addr, &mut attempt, &error) {
                Some(next) => addr = next,
                None => return Err(error),
            },
            other => return other.map(|r| (r, addr)).map_err(|f| f.error),
        }
    }
}

/// Through hyper's client: a streamed body, HTTP/2, or an upgrade (then a tunnel).
async fn exchange_pooled(
    mut req: Request<pool::UpstreamBody>,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    key: Option<u64>,
    timeout: Duration,
) -> Result<(Response<hyper::body::Incoming>, SocketAddr), Failed> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let sent = crate::deadline::timeout_at(
        Instant::now() + timeout,
        send_pooled(req, to, upstream, key, upgrade),
    )
    .await;
    let (mut resp, addr) = outcome(sent, upstream)?;
    // An HTTP/1.1 response framed both ways (hyper reads it by the coding): refused, as
    // the inline client does (`h1.rs`).
    if resp.headers().contains_key(header::TRANSFER_ENCODING)
        && resp.headers().contains_key(header::CONTENT_LENGTH)
    {
        tracing::debug!(upstream = %upstream.spec.id, "response with both Content-Length and Transfer-Encoding");
        return Err(Failed {
            error: GatewayError::BadGateway,
            failure: Some(Failure::Reset),
        });
    }
    if let Some(client_side) = client_side
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tunnel::spawn(client_side, upstream_side, upstream.spec.id.clone());
    }
    Ok((resp, addr))
}

/// Sends on a pooled connection; when connecting fails (nothing was sent), to the next
/// endpoints, up to [`CONNECT_ATTEMPTS`].
async fn send_pooled(
    mut req: Request<pool::UpstreamBody>,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    key: Option<u64>,
    upgrade: bool,
) -> Result<(Response<hyper::body::Incoming>, SocketAddr), pool::SendError> {
    let (mut addr, now) = to;
    let timeout = Duration::from_millis(upstream.spec.timeouts.connect_ms);
    let tls = upstream.tls.as_deref();
    let limits = upstream.limits();
    let mut attempt = 1;
    loop {
        let result = if upgrade {
            Box::pin(pool::send_upgrade(
                pool::Connect {
                    addr,
                    timeout,
                    tls,
                    limits,
                },
                req,
            ))
            .await
        } else {
            pool::send(
                (addr, now),
                upstream.spec.protocol,
                req,
                &upstream.spec.timeouts,
                (tls, limits),
            )
            .await
        };
        match result {
            Err(pool::Failed {
                error,
                unsent: Some(unsent),
            }) => match next_endpoint(upstream, key, addr, &mut attempt, &error) {
                Some(next) => {
                    addr = next;
                    req = unsent;
                }
                None => return Err(error),
            },
            other => return other.map(|r| (r, addr)).map_err(|f| f.error),
        }
    }
}

impl PreparedUpstream {
    /// The breaker's connection limits, when the upstream has a breaker.
    pub(crate) fn limits(&self) -> Option<pool::Limits<'_>> {
        self.spec
            .circuit_breaker
            .as_ref()
            .map(|cfg| (&self.state.breaker, cfg))
    }
}
