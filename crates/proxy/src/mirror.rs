//! Traffic mirroring (rule `mirror`): `percent` of a rule's requests are copied to a
//! shadow upstream, fire-and-forget. The copy is sent from a task of its own, detached
//! from the request: its answer is read and discarded, and it never delays or fails the
//! primary exchange.
//!
//! What bounds it:
//! - copies in flight, for the whole process (`--mirror-max-in-flight`): a copy past
//!   the bound is dropped and counted (`gatehouse_mirror_requests_total{result=
//!   "dropped_in_flight"}`), so a stalled shadow service cannot pile up work here;
//! - the body: a request body is copied when its length is known and at most
//!   [`MAX_MIRRORED_BODY`] (the bytes are shared by both requests, never copied twice);
//!   a larger body, or one of unknown length, is sent to the primary only and the copy
//!   is counted as `dropped_body_too_large`;
//! - time: the shadow upstream's request timeout ends a copy that stalls.
//!
//! A copy goes through the shadow upstream's whole machinery (`upstream::call`:
//! balancer, health, breaker, retries, TLS), so its attempts show in that upstream's
//! `gatehouse_upstream_*` metrics. Upgrades (WebSocket) are never mirrored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::{BodyExt, Either, Full};

use crate::WorkerTable;
use crate::forward;
use crate::metrics::{Metrics, MirrorOutcome};
use crate::phases::Ctx;
use crate::prepared::Mirror;
use crate::problem::GatewayError;
use crate::routing::Host;
use crate::upstream::{self, balance, pool::UpstreamBody};

/// Copies in flight at most, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// The largest request body a copy carries (the retry policy's replay bound).
pub const MAX_MIRRORED_BODY: u64 = upstream::retry::REPLAY_LIMIT;

/// The copies in flight and their bound, for the process; and what a detached copy
/// needs that the table does not hold.
#[derive(Debug)]
pub(crate) struct Mirrors {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Mirrors {
    /// At most `limit` copies in flight.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Mirrors {
        Mirrors {
            limit,
            in_flight: Arc::default(),
            metrics,
        }
    }

    /// A place for one more copy, when there is one.
    fn admit(&self) -> Option<Slot> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.in_flight.clone());
        (before < self.limit).then_some(slot)
    }
}

/// One copy in flight; dropping it frees the place.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether this request of the rule is copied: `percent` of every hundred the worker
/// serves, spread evenly (not the first `percent` of each hundred).
fn chosen(m: &Mirror) -> bool {
    m.next.spread(u64::from(m.percent), 100)
}

/// Sends a copy of `req` (rewritten for the primary upstream) to the rule's mirror when
/// this request is one it copies, and returns the request for the primary. The body is
/// read first when it is copied (known length, at most [`MAX_MIRRORED_BODY`]).
pub(crate) async fn copy(
    cx: &Ctx<'_>,
    m: &Mirror,
    req: Request<UpstreamBody>,
    host: &Host,
) -> Result<Request<UpstreamBody>, GatewayError> {
    let Some(index) = m.upstream else {
        return Ok(req);
    };
    // After the rewrite, an upgrade is the request's `Upgrade` header.
    if !chosen(m) || req.headers().contains_key(http::header::UPGRADE) {
        return Ok(req);
    }
    let Some(shadow) = cx
        .table
        .upstreams
        .get(index as usize)
        .filter(|u| u.spec.blocked.is_empty())
    else {
        return Ok(req);
    };
    let mirrors = cx.mirrors;
    let Some(slot) = mirrors.admit() else {
        cx.metrics
            .mirror(shadow.labels, MirrorOutcome::DroppedInFlight);
        return Ok(req);
    };
    let (parts, body) = req.into_parts();
    let key = balance::request_key(shadow.spec.hash_on.as_ref(), &parts, cx.client);
    let bytes = match upstream::replayable(body, MAX_MIRRORED_BODY).await {
        upstream::Replay::Bytes(b) => b,
        upstream::Replay::No(body) => {
            cx.metrics.mirror(shadow.labels, MirrorOutcome::DroppedBody);
            return Ok(Request::from_parts(parts, body));
        }
        upstream::Replay::Failed(e) => return Err(e),
    };
    let mut copy = upstream::copy(&parts, &bytes);
    if shadow.spec.protocol != protocol_of(&parts) {
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let (mut copy_parts, body) = copy.into_parts();
        forward::set_protocol(&mut copy_parts, target, host, shadow.spec.protocol)?;
        copy = Request::from_parts(copy_parts, body);
    }
    cx.metrics.mirror(shadow.labels, MirrorOutcome::Sent);
    let sent = Sent {
        table: cx.table.clone(),
        index: index as usize,
        metrics: mirrors.metrics.clone(),
        key,
        slot,
    };
    tokio::task::spawn_local(sent.run(copy));
    Ok(Request::from_parts(parts, Either::Right(Full::new(bytes))))
}

/// The protocol `parts` were rewritten for.
fn protocol_of(parts: &http::request::Parts) -> gatehouse_table::Protocol {
    if parts.version == http::Version::HTTP_2 {
        gatehouse_table::Protocol::Http2
    } else {
        gatehouse_table::Protocol::Http1
    }
}

/// A copy on its way: what it needs, owned, since it outlives its request.
struct Sent {
    table: WorkerTable,
    index: usize,
    metrics: Arc<Metrics>,
    key: Option<u64>,
    slot: Slot,
}

impl Sent {
    /// Sends the copy and reads its answer to the end (so the connection can be
    /// reused), within the shadow upstream's request timeout; the answer is dropped.
    async fn run(self, req: Request<UpstreamBody>) {
        let Some(shadow) = self.table.upstreams.get(self.index) else {
            return;
        };
        let timeout = Duration::from_millis(shadow.spec.timeouts.request_ms);
        let how = upstream::Call {
            key: self.key,
            started: Instant::now(),
            timeout,
            metrics: &self.metrics,
            seen: None,
            trace: None,
        };
        let exchange = async {
            if let Ok(resp) = upstream::call(req, shadow, how, None).await {
                let _ = resp.into_body().collect().await;
            }
        };
        let _ = tokio::time::timeout(timeout, exchange).await;
        drop(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(percent: u32) -> Mirror {
        Mirror {
            upstream: Some(0),
            percent,
            next: Arc::default(),
        }
    }

    #[test]
    fn percent_of_every_hundred_are_chosen_spread_out() {
        for percent in [0, 1, 10, 33, 50, 99, 100] {
            let m = mirror(percent);
            let picks: Vec<bool> = (0..200).map(|_| chosen(&m)).collect();
            let n = picks.iter().filter(|c| **c).count();
            assert_eq!(n, 2 * percent as usize, "{percent}%");
            if percent == 50 {
                assert!(
                    picks.windows(2).all(|w| w[0] != w[1]),
                    "every other request"
                );
            }
        }
    }

    #[test]
    fn the_bound_holds_and_frees() {
        let mirrors = Mirrors::new(2, Arc::default());
        let a = mirrors.admit().expect("first");
        let b = mirrors.admit().expect("second");
        assert!(mirrors.admit().is_none(), "a third is over the bound");
        drop(a);
        let c = mirrors.admit().expect("a place was freed");
        drop((b, c));
        assert_eq!(mirrors.in_flight.load(Ordering::Acquire), 0);
    }
}
