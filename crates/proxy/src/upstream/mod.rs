//! Upstreams: where the backend phase sends a request and how.
//!
//! ```text
//!  balance.rs   a rule's weighted backends → one upstream; the upstream's endpoints →
//!               one address (round robin; sees the request, so hashing balancers can)
//!  state.rs     per-upstream state kept across tables: endpoint schedule, positions
//!  resolve.rs   DNS names among the endpoints, kept fresh on their TTL
//!  pool.rs      per-worker connection pools (HTTP/1.1 keep-alive, HTTP/2, upgrades)
//!  h1.rs        HTTP/1.1 on the request's own task, for requests whose body is known
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_table::Upstream;
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
pub(crate) async fn exchange(
    mut req: Request<pool::UpstreamBody>,
    addr: SocketAddr,
    upstream: &PreparedUpstream,
    timeout: Duration,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Response<Body>, GatewayError> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let sent = send(req, addr, upstream, upgrade);
    let mut resp = match tokio::time::timeout(timeout, sent).await {
        Err(_) => return Err(GatewayError::Timeout),
        Ok(Err(pool::SendError::ConnectTimeout(_))) => return Err(GatewayError::Timeout),
        Ok(Err(e)) if e.body_too_large() => {
            return Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream exchange failed");
            return Err(GatewayError::BadGateway);
        }
        Ok(Ok(resp)) => resp,
    };
    if let Some(client_side) = client_side
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tunnel::spawn(client_side, upstream_side, upstream.spec.id.clone());
    }
    Ok(resp.map(|b| Either::Right(Streamed::new(b, held))))
}

/// Sends on a pooled connection; when connecting fails (nothing was sent), to the next
/// endpoints, up to [`CONNECT_ATTEMPTS`].
async fn send(
    mut req: Request<pool::UpstreamBody>,
    mut addr: SocketAddr,
    upstream: &PreparedUpstream,
    upgrade: bool,
) -> Result<Response<pool::Received>, pool::SendError> {
    let connect = Duration::from_millis(upstream.spec.timeouts.connect_ms);
    let mut attempt = 1;
    loop {
        let result = if upgrade {
            // Rare, and its future is large: kept off the common path's state.
            Box::pin(pool::send_upgrade(addr, req, connect))
                .await
                .map(|resp| resp.map(Either::Left))
        } else {
            pool::send(addr, upstream.spec.protocol, req, connect).await
        };
        match result {
            Err(pool::Failed {
                error,
                unsent: Some(unsent),
            }) if attempt < CONNECT_ATTEMPTS => {
                tracing::debug!(upstream = %upstream.spec.id, %error, "trying the next endpoint");
                match upstream.pick() {
                    Some(next) if next != addr => addr = next,
                    _ => return Err(error),
                }
                req = unsent;
                attempt += 1;
            }
            other => return other.map_err(|f| f.error),
        }
    }
}
