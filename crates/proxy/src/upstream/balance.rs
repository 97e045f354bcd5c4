//! Load balancing: which of a rule's weighted backends takes a request, then which of
//! that upstream's endpoints.
//!
//! The endpoints in rotation (healthy, not ejected) and the structure the upstream's
//! balancer picks from are built together into one [`Live`] value whenever the
//! endpoints or their health change, and swapped in whole; a pick only reads it.
//!
//! | balancer       | built                                  | per pick                         |
//! |----------------|----------------------------------------|----------------------------------|
//! | `RoundRobin`   | smooth weighted order (as nginx's)     | the worker's next position       |
//! | `Random`       | cumulative weights                     | one random number                |
//! | `LeastRequest` | cumulative weights                     | two weighted random endpoints, the one with fewer requests in flight per weight |
//! | `PeakEwma`     | cumulative weights                     | two weighted random endpoints, the lower latency × load |
//! | `RingHash`     | a ring of 160 points per weight unit   | the first point at or after the key's hash |
//! | `Maglev`       | a lookup table of prime size (≥ 4096 per endpoint), filled by each endpoint's permutation in turn, by weight | the entry at the key's hash |
//!
//! Both hashing balancers place endpoints by their address, so an endpoint leaving
//! rotation moves only the keys it held (RingHash) or few more (Maglev). A request
//! without the key (no such header, cookie or parameter) gets a random endpoint.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use gatehouse_table::LoadBalancer;
use gatehouse_table::resilience::HashOn;
use http::request::Parts;

use super::endpoint::{Endpoint, now_ns};
use crate::prepared::{Backend, PreparedRule};
use crate::problem::GatewayError;
use crate::upstream::PreparedUpstream;
use crate::worker::WorkerCounter;

/// The upstream of the rule's backend that takes this request: weighted round robin
/// over the rule's backends. 503 when that share belongs to a missing upstream.
pub(crate) fn backend<'p>(
    upstreams: &'p [PreparedUpstream],
    rule: &PreparedRule,
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

/// The hash of the request's key for `RingHash` and `Maglev`; `None` when the request
/// does not carry it (or the upstream does not hash).
pub(crate) fn request_key(
    hash_on: Option<&HashOn>,
    parts: &Parts,
    client: std::net::IpAddr,
) -> Option<u64> {
    let hash_on = hash_on?;
    let mut h = std::hash::DefaultHasher::new();
    match hash_on {
        HashOn::Header(name) => parts.headers.get(name.as_str())?.as_bytes().hash(&mut h),
        HashOn::Cookie(name) => crate::headers::cookie(&parts.headers, name)?.hash(&mut h),
        HashOn::QueryParam(name) => gatehouse_router::query_pairs(parts.uri.query())
            .find(|(k, _)| k == name)?
            .1
            .hash(&mut h),
        HashOn::ClientIp => client.hash(&mut h),
    }
    Some(h.finish())
}

/// The endpoints in rotation and the balancer's structure over them.
#[derive(Debug, Default)]
pub struct Live {
    /// In rotation, in the order of the upstream's endpoints.
    pub endpoints: Vec<Arc<Endpoint>>,
    by: By,
    /// Whether picks hand back the endpoint with its counts (`state.rs`).
    pub tracks: bool,
}

#[derive(Debug, Default)]
enum By {
    /// No endpoint in rotation.
    #[default]
    Nothing,
    /// Smooth weighted round robin: positions in `endpoints`, in order.
    Order(Vec<u32>),
    /// Cumulative weights, for weighted random choices.
    Weights { cumulative: Vec<u64>, two: Two },
    /// A hash ring: (point, position), sorted by point.
    Ring(Vec<(u64, u32)>),
    /// Maglev's lookup table: positions.
    Table(Vec<u32>),
}

/// What decides between two random endpoints; `One`: take the first (Random).
#[derive(Debug, Clone, Copy)]
enum Two {
    One,
    FewerInFlight,
    LowerCost,
}

/// Largest smooth round-robin order (weights are scaled down beyond it).
const MAX_ORDER: u64 = 10_000;
/// Ring points per unit of weight (weights relative to the largest).
const RING_POINTS: u64 = 160;
/// Maglev table sizes: primes, the first with at least 4096 entries per endpoint is
/// taken (65521 for up to 15 endpoints: a larger table moves fewer keys when an
/// endpoint leaves; measured ~89.5% kept when one of ten leaves, against ~88% at 128
/// entries per endpoint).
const MAGLEV_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131_071,
];

impl Live {
    /// Builds the structure `policy` picks from over `endpoints`.
    pub fn build(policy: LoadBalancer, endpoints: Vec<Arc<Endpoint>>) -> Live {
        if endpoints.is_empty() {
            return Live::default();
        }
        let by = match policy {
            LoadBalancer::RoundRobin => By::Order(smooth_order(&endpoints)),
            LoadBalancer::Random => weights(&endpoints, Two::One),
            LoadBalancer::LeastRequest => weights(&endpoints, Two::FewerInFlight),
            LoadBalancer::PeakEwma => weights(&endpoints, Two::LowerCost),
            LoadBalancer::RingHash => By::Ring(ring(&endpoints)),
            LoadBalancer::Maglev => By::Table(maglev(&endpoints)),
        };
        Live {
            endpoints,
            by,
            tracks: false,
        }
    }

    /// The endpoint for a request: `position` for round robin, `key` for the hashing
    /// balancers; `avoid` (a retry's last endpoint) is passed over when another one is
    /// in rotation.
    pub fn pick(
        &self,
        position: &WorkerCounter,
        key: Option<u64>,
        avoid: Option<SocketAddr>,
    ) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let i = match &self.by {
            By::Nothing => return None,
            By::Order(order) => order[position.next() % order.len()] as usize,
            By::Weights { cumulative, two } => {
                let first = weighted(cumulative);
                match two {
                    Two::One => first,
                    _ if n == 1 => first,
                    Two::FewerInFlight | Two::LowerCost => {
                        let mut second = weighted(cumulative);
                        if second == first {
                            second = (first + 1 + fastrand::usize(..n - 1)) % n;
                        }
                        let (a, b) = (&self.endpoints[first], &self.endpoints[second]);
                        let a_wins = match two {
                            Two::FewerInFlight => a.less_loaded_than(b),
                            _ => {
                                let now = now_ns();
                                a.cost(now) <= b.cost(now)
                            }
                        };
                        if a_wins { first } else { second }
                    }
                }
            }
            By::Ring(ring) => match key {
                Some(k) => {
                    let at = ring.partition_point(|(point, _)| *point < k);
                    ring[at % ring.len()].1 as usize
                }
                None => fastrand::usize(..n),
            },
            By::Table(table) => match key {
                Some(k) => table[(k % table.len() as u64) as usize] as usize,
                None => fastrand::usize(..n),
            },
        };
        let picked = &self.endpoints[i];
        if n > 1 && avoid == Some(picked.addr) {
            // Another endpoint for a retry: any other, at random.
            return Some(&self.endpoints[(i + 1 + fastrand::usize(..n - 1)) % n]);
        }
        Some(picked)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Weights divided by their greatest common divisor, and scaled down (at least 1 each)
/// when they add up to more than `max`.
fn reduced(endpoints: &[Arc<Endpoint>], max: u64) -> Vec<u64> {
    let g = endpoints
        .iter()
        .fold(0, |g, e| gcd(g, u64::from(e.weight)))
        .max(1);
    let mut w: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight) / g).collect();
    let total: u64 = w.iter().sum();
    if total > max {
        for x in &mut w {
            *x = (*x * max / total).max(1);
        }
    }
    w
}

/// Smooth weighted round robin: each step every endpoint gains its weight, the one
/// with the most is taken and pays the total. Weights 5,1,1 give a a b a c a a, not
/// a a a a a b c.
fn smooth_order(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let w = reduced(endpoints, MAX_ORDER);
    let total: i64 = w.iter().map(|x| *x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, x) in w.iter().enumerate() {
            current[i] += *x as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn weights(endpoints: &[Arc<Endpoint>], two: Two) -> By {
    let mut sum = 0;
    let cumulative = endpoints
        .iter()
        .map(|e| {
            sum += u64::from(e.weight);
            sum
        })
        .collect();
    By::Weights { cumulative, two }
}

/// A position drawn by weight.
fn weighted(cumulative: &[u64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(1);
    let r = fastrand::u64(..total);
    cumulative.partition_point(|c| *c <= r)
}

/// A stable hash of an endpoint's address and a salt.
fn point(addr: SocketAddr, salt: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    addr.hash(&mut h);
    salt.hash(&mut h);
    h.finish()
}

fn ring(endpoints: &[Arc<Endpoint>]) -> Vec<(u64, u32)> {
    let max = endpoints
        .iter()
        .map(|e| u64::from(e.weight))
        .max()
        .unwrap_or(1);
    let mut ring = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let points = (RING_POINTS * u64::from(e.weight)).div_ceil(max).max(1);
        for p in 0..points {
            ring.push((point(e.addr, p), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

/// Maglev (Eisenbud et al., NSDI 2016): each endpoint walks its own permutation of the
/// table's slots (an offset and a skip from its address; the size is prime, so every
/// skip visits every slot) and, in turn, takes the next free slot of it. A heavier
/// endpoint takes turns more often.
fn maglev(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let n = endpoints.len();
    let m = MAGLEV_SIZES
        .iter()
        .copied()
        .find(|m| *m as usize >= 4096 * n)
        .unwrap_or(MAGLEV_SIZES[MAGLEV_SIZES.len() - 1]) as u64;
    let max = endpoints.iter().map(|e| e.weight).max().unwrap_or(1) as f64;
    let perm: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            (
                point(e.addr, 0x6f66) % m,
                point(e.addr, 0x736b) % (m - 1) + 1,
            )
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut credit = vec![0f64; n];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0;
    while filled < m {
        for i in 0..n {
            credit[i] += f64::from(endpoints[i].weight) / max;
            if credit[i] < 1.0 {
                continue;
            }
            credit[i] -= 1.0;
            let (offset, skip) = perm[i];
            loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[slot] == u32::MAX {
                    table[slot] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break;
            }
        }
    }
    table
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

    fn eps(n: usize, weight: impl Fn(usize) -> u32) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    SocketAddr::from(([10, 0, 0, i as u8 + 1], 80)),
                    weight(i),
                ))
            })
            .collect()
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

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let live = Live::build(LoadBalancer::RoundRobin, eps(3, |i| [5, 1, 1][i]));
        let position = WorkerCounter::default();
        let picks: Vec<u8> = (0..7)
            .filter_map(|_| live.pick(&position, None, None))
            .map(|e| match e.addr.ip() {
                std::net::IpAddr::V4(ip) => ip.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect();
        assert_eq!(picks, [1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn random_follows_weights_and_retries_avoid_the_last_endpoint() {
        let live = Live::build(LoadBalancer::Random, eps(2, |i| [3, 1][i]));
        let position = WorkerCounter::default();
        let first = live.endpoints[0].addr;
        let hits = (0..4000)
            .filter(|_| live.pick(&position, None, None).map(|e| e.addr) == Some(first))
            .count();
        assert!(
            (2700..3300).contains(&hits),
            "{hits} of 4000, expected ~3000"
        );
        for _ in 0..50 {
            assert_ne!(
                live.pick(&position, None, Some(first)).map(|e| e.addr),
                Some(first)
            );
        }
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let endpoints = eps(2, |_| 1);
        let busy = endpoints[0].clone();
        let _in_flight: Vec<_> = (0..5).map(|_| busy.start()).collect();
        let idle = endpoints[1].addr;
        let live = Live::build(LoadBalancer::LeastRequest, endpoints);
        let position = WorkerCounter::default();
        for _ in 0..100 {
            assert_eq!(live.pick(&position, None, None).map(|e| e.addr), Some(idle));
        }
    }

    /// Share of 10,000 keys that stay on their endpoint when one of ten leaves.
    fn kept(policy: LoadBalancer) -> f64 {
        let all = eps(10, |_| 1);
        let before = Live::build(policy, all.clone());
        let mut fewer = all.clone();
        fewer.remove(3);
        let after = Live::build(policy, fewer);
        let position = WorkerCounter::default();
        let mut same = 0;
        let keys = 10_000u64;
        for k in 0..keys {
            let key = {
                let mut h = std::hash::DefaultHasher::new();
                k.hash(&mut h);
                h.finish()
            };
            let a = before.pick(&position, Some(key), None).map(|e| e.addr);
            let b = after.pick(&position, Some(key), None).map(|e| e.addr);
            if a == b {
                same += 1;
            }
        }
        f64::from(same) / keys as f64
    }

    #[test]
    fn hashing_balancers_keep_most_keys_when_an_endpoint_leaves() {
        let ring = kept(LoadBalancer::RingHash);
        let maglev = kept(LoadBalancer::Maglev);
        // One of ten leaves: ideally 90% stay.
        assert!(ring >= 0.85, "RingHash kept {ring}");
        assert!(maglev >= 0.85, "Maglev kept {maglev}");
    }

    #[test]
    fn maglev_spreads_keys_by_weight() {
        let live = Live::build(LoadBalancer::Maglev, eps(2, |i| [3, 1][i]));
        let By::Table(table) = &live.by else {
            panic!("a table")
        };
        let first = table.iter().filter(|i| **i == 0).count() as f64 / table.len() as f64;
        assert!((0.7..0.8).contains(&first), "{first}");
    }
}
