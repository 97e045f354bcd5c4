//! Load balancing: which of a rule's weighted backends takes a request, then which of
//! that upstream's endpoints. Both positions are per worker ([`WorkerCounter`]).
//!
//! The balancer sees the request, so the hashing balancers to come (RingHash, Maglev)
//! can hash on a header, cookie, query parameter or the client's address.

use http::request::Parts;

use crate::prepared::{Backend, PreparedRule};
use crate::problem::GatewayError;
use crate::upstream::PreparedUpstream;

/// The upstream of the rule's backend that takes this request: weighted round robin
/// over the rule's backends. 503 when that share belongs to a missing upstream.
pub(crate) fn backend<'p>(
    upstreams: &'p [PreparedUpstream],
    rule: &PreparedRule,
    _request: &Parts,
) -> Result<&'p PreparedUpstream, GatewayError> {
    let n = rule.next_backend.as_ref().map_or(0, |c| c.next());
    pick_backend(&rule.backends, n)
        .and_then(|b| upstreams.get(b.upstream? as usize))
        .ok_or(GatewayError::Unavailable)
}

/// Picks a backend by weight: `n` walks the weights in turn (weighted round robin).
pub(crate) fn pick_backend(backends: &[Backend], n: usize) -> Option<&Backend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut at = (n as u64) % total;
    for b in backends {
        if at < u64::from(b.weight) {
            return b.upstream.is_some().then_some(b);
        }
        at -= u64::from(b.weight);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upstream: u32, weight: u32, missing: bool) -> Backend {
        Backend {
            upstream: (!missing).then_some(upstream),
            weight,
        }
    }

    #[test]
    fn weighted_backends_in_proportion() {
        let names = ["a", "b"];
        let list = [b(0, 3, false), b(1, 1, false)];
        let picks: Vec<&str> = (0..8)
            .map(|n| {
                pick_backend(&list, n).map_or("-", |x| names[x.upstream.unwrap_or(0) as usize])
            })
            .collect();
        assert_eq!(picks, ["a", "a", "a", "b", "a", "a", "a", "b"]);
        assert!(pick_backend(&[b(0, 0, false)], 0).is_none());
        assert!(pick_backend(&[b(0, 1, true)], 0).is_none());
    }
}
