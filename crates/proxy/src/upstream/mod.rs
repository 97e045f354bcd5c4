//! Upstreams: where the backend phase sends a request and how.
//!
//! ```text
//!  balance.rs   a rule's weighted backends → one upstream; the upstream's endpoints →
//!               one address (round robin; sees the request, so hashing balancers can)
//!  state.rs     per-upstream state kept across tables: endpoint schedule, positions
//!  resolve.rs   DNS names among the endpoints, kept fresh on their TTL
//!  pool.rs      per-worker connection pools (HTTP/1.1 keep-alive, HTTP/2, upgrades)
//!  h1.rs        HTTP/1.1 on the request's own task, for plaintext requests whose body
//!               is known
//!  tls.rs       TLS to the servers: verification, client certificates, ALPN
//!  (health.rs, breaker.rs, retry.rs come next: checks, ejection, circuit breaking,
//!   retries with budget and backoff)
//! ```
//!
//! [`exchange`] is the one place a request leaves for an upstream: connect (trying the
//! next endpoints when no connection can be made), send within the timeout, and turn
//! an accepted upgrade into a tunnel.

pub mod balance;
pub mod h1;
pub mod pool;
mod resolve;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_table::{Protocol, Upstream};
use http::{Request, Response, StatusCode, header};
use http_body_util::Either;

use crate::body::{Body, Streamed};
use crate::listener::limits::MAX_BODY_BYTES;
use crate::problem::GatewayError;
use crate::tunnel;
use state::UpstreamState;

/// One upstream, ready to pick endpoints from.
#[derive(Debug)]
pub struct PreparedUpstream {
    /// The table's upstream.
    pub spec: Upstream,
    /// Its live state, shared with the tables before and after this one.
    pub state: Arc<UpstreamState>,
    /// Its TLS client, when it has `tls`.
    pub tls: Option<Arc<tls::TlsClient>>,
}

impl PreparedUpstream {
    /// The next endpoint (weighted round robin); `None` when there is none.
    pub fn pick(&self) -> Option<SocketAddr> {
        self.state.pick()
    }
}

/// Endpoints tried for one request when connecting fails (nothing was sent, so trying
/// another endpoint is safe for any method).
const CONNECT_ATTEMPTS: usize = 3;

/// Sends the request to `addr` (or, when no connection can be made, to the next
/// endpoints) within the timeout; an accepted upgrade becomes a tunnel between the
/// two connections. `held` lives as long as the response body (a concurrency permit).
///
/// An HTTP/1.1 request whose body is known goes inline ([`h1`]), written out once here
/// so that what the futures below carry is small (every future on the way is moved
/// when it starts); the others go through hyper's client, boxed for the same reason.
///
/// `to`: the endpoint, and the time the request arrived (connection pools compare it
/// with idle deadlines).
pub(crate) fn exchange(
    req: Request<pool::UpstreamBody>,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    timeout: Duration,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + '_ {
    // Not an `async fn`: its future would keep a copy of `req` however it is sent.
    let way =
        if upstream.spec.protocol == Protocol::Http1 && upstream.tls.is_none() && h1::carries(&req)
        {
            Way::Inline(h1::Wire::new(req))
        } else {
            Way::Pooled(Box::new(req))
        };
    let (addr, now) = to;
    async move {
        let resp = match way {
            Way::Inline(wire) => {
                let sent =
                    tokio::time::timeout(timeout, send_inline(&wire, (addr, now), upstream)).await;
                outcome(sent, upstream)?.map(Either::Right)
            }
            Way::Pooled(req) => Box::pin(exchange_pooled(*req, (addr, now), upstream, timeout))
                .await?
                .map(Either::Left),
        };
        Ok(resp.map(|b| Either::Right(Streamed::new(b, held))))
    }
}

/// How a request goes to its upstream.
enum Way {
    /// Written out, for the inline HTTP/1.1 exchange.
    Inline(h1::Wire),
    /// As it is, through hyper's client.
    Pooled(Box<Request<pool::UpstreamBody>>),
}

/// What a timed exchange came to, as the gateway answers it.
fn outcome<T>(
    sent: Result<Result<T, pool::SendError>, tokio::time::error::Elapsed>,
    upstream: &PreparedUpstream,
) -> Result<T, GatewayError> {
    match sent {
        Err(_) | Ok(Err(pool::SendError::ConnectTimeout(_))) => Err(GatewayError::Timeout),
        Ok(Err(e)) if e.body_too_large() => Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES)),
        Ok(Err(e)) if e.client_body_too_slow() => Err(GatewayError::BodyTooSlow),
        Ok(Err(e)) if e.client_body_failed() => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "the client's request body failed");
            Err(GatewayError::Framing("the request body is malformed"))
        }
        Ok(Err(e)) if e.is_tls() => {
            // Configuration or certificate trouble, not a passing glitch: always logged.
            tracing::warn!(upstream = %upstream.spec.id, error = %e, "upstream TLS handshake failed");
            Err(GatewayError::BadGateway)
        }
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream exchange failed");
            Err(GatewayError::BadGateway)
        }
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// The endpoint to try after `addr` could not be connected to, counting `attempt`s;
/// `None` when there is no other or enough were tried.
fn next_endpoint(
    upstream: &PreparedUpstream,
    addr: SocketAddr,
    attempt: &mut usize,
    error: &pool::SendError,
) -> Option<SocketAddr> {
    if *attempt >= CONNECT_ATTEMPTS {
        return None;
    }
    *attempt += 1;
    let next = upstream.pick().filter(|next| *next != addr)?;
    tracing::debug!(upstream = %upstream.spec.id, %error, "trying the next endpoint");
    Some(next)
}

/// The inline HTTP/1.1 exchange, moving to the next endpoints when connecting fails.
async fn send_inline(
    wire: &h1::Wire,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
) -> Result<Response<h1::Body>, pool::SendError> {
    let (mut addr, now) = to;
    let mut attempt = 1;
    loop {
        match h1::send(wire, (addr, now), &upstream.spec.timeouts).await {
            Err(h1::Failed {
                error,
                unsent: true,
            }) => match next_endpoint(upstream, addr, &mut attempt, &error) {
                Some(next) => addr = next,
                None => return Err(error),
            },
            other => return other.map_err(|f| f.error),
        }
    }
}

/// Through hyper's client: a streamed body, HTTP/2, or an upgrade (then a tunnel).
async fn exchange_pooled(
    mut req: Request<pool::UpstreamBody>,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    timeout: Duration,
) -> Result<Response<hyper::body::Incoming>, GatewayError> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let sent = tokio::time::timeout(timeout, send_pooled(req, to, upstream, upgrade)).await;
    let mut resp = outcome(sent, upstream)?;
    // An HTTP/1.1 response framed both ways (hyper reads it by the coding): refused, as
    // the inline client does (`h1.rs`).
    if resp.headers().contains_key(header::TRANSFER_ENCODING)
        && resp.headers().contains_key(header::CONTENT_LENGTH)
    {
        tracing::debug!(upstream = %upstream.spec.id, "response with both Content-Length and Transfer-Encoding");
        return Err(GatewayError::BadGateway);
    }
    if let Some(client_side) = client_side
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tunnel::spawn(client_side, upstream_side, upstream.spec.id.clone());
    }
    Ok(resp)
}

/// Sends on a pooled connection; when connecting fails (nothing was sent), to the next
/// endpoints, up to [`CONNECT_ATTEMPTS`].
async fn send_pooled(
    mut req: Request<pool::UpstreamBody>,
    to: (SocketAddr, Instant),
    upstream: &PreparedUpstream,
    upgrade: bool,
) -> Result<Response<hyper::body::Incoming>, pool::SendError> {
    let (mut addr, now) = to;
    let timeout = Duration::from_millis(upstream.spec.timeouts.connect_ms);
    let tls = upstream.tls.as_deref();
    let mut attempt = 1;
    loop {
        let result = if upgrade {
            Box::pin(pool::send_upgrade(
                pool::Connect { addr, timeout, tls },
                req,
            ))
            .await
        } else {
            pool::send(
                (addr, now),
                upstream.spec.protocol,
                req,
                &upstream.spec.timeouts,
                tls,
            )
            .await
        };
        match result {
            Err(pool::Failed {
                error,
                unsent: Some(unsent),
            }) => match next_endpoint(upstream, addr, &mut attempt, &error) {
                Some(next) => {
                    addr = next;
                    req = unsent;
                }
                None => return Err(error),
            },
            other => return other.map_err(|f| f.error),
        }
    }
}
