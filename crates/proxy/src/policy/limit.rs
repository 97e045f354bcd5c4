//! Rate limits (GCRA, in memory, per replica) and concurrency limits.
//!
//! **Rate limits.** Each limit `{requests, period}` is a GCRA (generic cell rate
//! algorithm): one "theoretical arrival time" per key and limit, emission interval
//! `period / requests`, burst of `requests`. A request must pass every limit of the
//! policy; when one refuses, none is charged. `mode: Delay` turns refusals into waits:
//! when every limit will have room within `maxDelay`, the request reserves its slot now
//! and is sent when the slot comes, so concurrent waiters are served in order instead of
//! racing. (The `governor` crate checks one quota at a time, so it can neither charge
//! several limits all-or-nothing nor reserve across them: this is why the algorithm,
//! which fits in a screen, is written here.)
//!
//! Keys: `ClientIp` (the connection's address), `Header` (its value; requests without
//! it share one bucket), `Consumer` (the authenticated consumer; requests without one
//! are keyed by client address), `Route` (one bucket for the rule).
//!
//! Buckets live in 16 shards behind short mutexes (no await while held); a shard drops
//! the keys whose buckets are full again when it grows, and is capped, so memory stays
//! bounded under a flood of distinct keys.
//!
//! **Concurrency limits.** A semaphore of `maxInFlight` permits per rule; a request that
//! finds none waits in a queue of at most `queue` requests for at most `queueTimeout`,
//! else 503. The permit is held until the response body has been sent.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use rustc_hash::FxHashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use gatehouse_table::policy::{self as table, FailureMode, RateLimitMode, RateLimitScope};

use super::global_limit::{GlobalError, GlobalLimiter, Limit, MAX_PERIOD};
use http::request::Parts;

use crate::metrics::Counter;
use crate::phases::{Ctx, Step};
use crate::problem::GatewayError;

/// What identifies a client for a rate limit.
#[derive(Debug, Clone)]
pub enum Key {
    /// The connection's address.
    ClientIp,
    /// The consumer (client address when there is none).
    Consumer,
    /// A request header's value.
    Header(HeaderName),
    /// A claim of the authenticated JWT (client address when there is none).
    Claim(String),
    /// The rule as a whole.
    Route,
}

/// Who sent a request, as far as rate-limit keys go.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The client address.
    pub ip: IpAddr,
    /// The authenticated consumer.
    pub consumer: Option<&'a str>,
    /// The authenticated JWT's claims.
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// One limit, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    requests: u64,
    period: u64,
    interval: u64,
}

/// The rate-limit headers of an answer, for the most constrained limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `RateLimit-Limit`: requests per period.
    pub limit: u64,
    /// `RateLimit-Remaining`: requests that would pass right now.
    pub remaining: u64,
    /// `RateLimit-Reset`: until the quota is whole again.
    pub reset: Duration,
}

impl Quota {
    /// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds,
    /// rounded up).
    pub fn write(&self, headers: &mut HeaderMap) {
        let secs = self.reset.as_millis().div_ceil(1000);
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(secs as u64));
    }
}

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go, after `wait` (zero unless throttled).
    Allowed {
        /// How long to hold the request first.
        wait: Duration,
        /// Headers for the response.
        quota: Quota,
    },
    /// 429.
    Rejected {
        /// `Retry-After`.
        retry_after: Duration,
        /// Headers for the response.
        quota: Quota,
    },
}

/// A prepared `rateLimit`.
#[derive(Debug)]
pub struct RateLimit {
    limits: Vec<Gcra>,
    key: Key,
    max_delay: Option<Duration>,
    backend: Backend,
}

/// Where a policy's counts live.
#[derive(Debug)]
enum Backend {
    /// In this process.
    Local(Arc<Buckets>),
    /// In Redis, shared by every replica.
    Global {
        limiter: GlobalLimiter,
        /// The limits as the script takes them.
        limits: Vec<Limit>,
        /// Starts every key of this policy (route, rule and configuration), so two
        /// policies never share counts and replicas with the same table always do.
        tag: Box<[u8]>,
        /// `failureMode: Open`.
        fail_open: bool,
        timeout: Duration,
    },
}

/// Why a rate limit could not decide: a `scope: Global` limit without Redis.
#[derive(Debug)]
pub struct Undecided {
    /// `failureMode: Open`: let the request through.
    pub fail_open: bool,
    /// What went wrong.
    pub error: GlobalError,
}

/// How a `scope: Global` policy reaches Redis: the limiter, and the longest a check may
/// take before `failureMode` applies.
#[derive(Debug, Clone)]
pub struct GlobalBackend {
    /// The shared client.
    pub limiter: GlobalLimiter,
    /// Per check.
    pub timeout: Duration,
}

impl RateLimit {
    /// Prepares a policy. Local policies get their buckets from
    /// `buckets` (carried over from the previous table when the policy is unchanged);
    /// `scope: Global` ones use `global` under the key prefix `tag`, or, without Redis,
    /// fall back to local buckets (the caller says so).
    pub fn prepare(
        c: &table::RateLimit,
        global: Option<&GlobalBackend>,
        tag: &str,
        buckets: impl FnOnce(usize) -> Arc<Buckets>,
    ) -> Result<RateLimit, String> {
        let limits: Vec<Gcra> = c
            .limits
            .iter()
            .map(|l| {
                let period = l.period_ms.saturating_mul(1_000_000).max(1);
                let requests = l.requests.max(1);
                Gcra {
                    requests,
                    period,
                    interval: (period / requests).max(1),
                }
            })
            .collect();
        if limits.is_empty() {
            return Err("no limits".into());
        }
        let key = match &c.key {
            table::RateLimitKey::ClientIp => Key::ClientIp,
            table::RateLimitKey::Consumer => Key::Consumer,
            table::RateLimitKey::Route => Key::Route,
            table::RateLimitKey::Header(name) => Key::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("header {name:?}: {e}"))?,
            ),
            table::RateLimitKey::Claim(name) => Key::Claim(name.clone()),
        };
        let max_delay = match c.mode {
            RateLimitMode::Delay => Some(Duration::from_millis(c.max_delay_ms)),
            RateLimitMode::Reject => None,
        };
        let global = global.filter(|_| c.scope == RateLimitScope::Global);
        let backend = match global {
            Some(g) => {
                let limits = limits
                    .iter()
                    .map(|l| Limit {
                        requests: l.requests,
                        period: Duration::from_nanos(l.period).min(MAX_PERIOD),
                    })
                    .collect();
                Backend::Global {
                    limiter: g.limiter.clone(),
                    limits,
                    tag: format!("{tag}:").into_bytes().into(),
                    fail_open: c.failure_mode == FailureMode::Open,
                    timeout: g.timeout,
                }
            }
            None => Backend::Local(buckets(limits.len())),
        };
        Ok(RateLimit {
            limits,
            key,
            max_delay,
            backend,
        })
    }

    /// The key for a request.
    pub fn key_of(&self, client: Client<'_>, headers: &HeaderMap) -> Vec<u8> {
        let ip = |out: &mut Vec<u8>| match client.ip {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        };
        let mut out = Vec::with_capacity(40);
        if let Backend::Global { tag, .. } = &self.backend {
            out.extend_from_slice(tag);
        }
        match &self.key {
            Key::ClientIp => ip(&mut out),
            Key::Consumer => match client.consumer {
                Some(c) => {
                    out.push(b'c');
                    out.extend_from_slice(c.as_bytes());
                }
                None => {
                    out.push(b'i');
                    ip(&mut out);
                }
            },
            Key::Claim(name) => match client.claims.and_then(|c| c.get(name)) {
                Some(serde_json::Value::String(v)) => {
                    out.push(b'j');
                    out.extend_from_slice(v.as_bytes());
                }
                Some(other) => {
                    out.push(b'j');
                    out.extend_from_slice(other.to_string().as_bytes());
                }
                None => {
                    out.push(b'i');
                    ip(&mut out);
                }
            },
            Key::Header(name) => {
                if let Some(v) = headers.get(name) {
                    out.push(b'h');
                    out.extend_from_slice(v.as_bytes());
                }
            }
            Key::Route => {}
        }
        out
    }

    /// Decides for one request with key `key`, charging the limits when it may go: in
    /// memory at once, or in one round trip to Redis for `scope: Global`.
    pub async fn decide(&self, key: &[u8]) -> Result<Decision, Undecided> {
        match &self.backend {
            Backend::Local(buckets) => {
                Ok(buckets.decide(key, &self.limits, now_ns(), self.max_delay))
            }
            Backend::Global {
                limiter,
                limits,
                fail_open,
                timeout,
                ..
            } => limiter
                .check(key, limits, self.max_delay.unwrap_or_default(), *timeout)
                .await
                .map_err(|error| Undecided {
                    fail_open: *fail_open,
                    error,
                }),
        }
    }

    /// The decision of a local limit, made at once; `None` for a global one.
    pub fn decide_local(&self, key: &[u8]) -> Option<Decision> {
        match &self.backend {
            Backend::Local(buckets) => {
                Some(buckets.decide(key, &self.limits, now_ns(), self.max_delay))
            }
            Backend::Global { .. } => None,
        }
    }
}

/// Nanoseconds on a process-wide monotonic clock.
fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // Starts one hour in, so "an hour ago" is never below zero.
    (epoch.elapsed().as_nanos() as u64).saturating_add(3_600_000_000_000)
}

const SHARDS: usize = 16;
/// Keys one shard holds at most (about 1.6 M per policy in all).
const SHARD_CAP: usize = 100_000;

/// The buckets of one policy: per key, one theoretical arrival time per limit.
#[derive(Debug)]
pub struct Buckets {
    shards: Vec<Mutex<Shard>>,
    limits: usize,
}

#[derive(Debug, Default)]
struct Shard {
    tats: FxHashMap<Box<[u8]>, Box<[u64]>>,
    /// Size after the last sweep; the next sweep happens at twice that.
    swept_at: usize,
}

impl Buckets {
    /// Empty buckets for a policy of `limits` limits.
    pub fn new(limits: usize) -> Buckets {
        Buckets {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            limits,
        }
    }

    fn decide(
        &self,
        key: &[u8],
        limits: &[Gcra],
        now: u64,
        max_delay: Option<Duration>,
    ) -> Decision {
        use std::hash::BuildHasher;
        let hash = rustc_hash::FxBuildHasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let stored: Option<&[u64]> = shard.tats.get(key).map(|t| &t[..]);
        let tat = |i: usize| stored.and_then(|s| s.get(i).copied()).unwrap_or(0);

        // The wait every limit needs before this request fits.
        let wait = (0..limits.len().min(self.limits))
            .map(|i| {
                let l = limits[i];
                let allow_at = (tat(i).max(now) + l.interval).saturating_sub(l.period);
                allow_at.saturating_sub(now)
            })
            .max()
            .unwrap_or(0);
        let max_delay_ns = max_delay.map_or(0, |d| d.as_nanos() as u64);
        if wait > 0 && (max_delay.is_none() || wait > max_delay_ns) {
            let quota = quota(limits, tat, now, true);
            return Decision::Rejected {
                retry_after: Duration::from_nanos(wait),
                quota,
            };
        }
        // Charge every limit as of the moment the request goes: in place for a known
        // key (no allocation on the common path), else a new bucket.
        let at = now + wait;
        let charge = |i: usize, tat: u64| tat.max(at) + limits[i].interval;
        let quota = match shard.tats.get_mut(key) {
            Some(tats) if tats.len() == limits.len() => {
                for (i, t) in tats.iter_mut().enumerate() {
                    *t = charge(i, *t);
                }
                let tats: &[u64] = tats;
                quota(limits, |i| tats[i], at, false)
            }
            // A new key (the buckets are per configuration, so a stored one always has
            // one time per limit).
            _ => {
                let new: Box<[u64]> = (0..limits.len()).map(|i| charge(i, 0)).collect();
                let quota = quota(limits, |i| new[i], at, false);
                if shard.tats.len() >= (shard.swept_at * 2).max(1024) {
                    sweep(&mut shard, now);
                }
                shard.tats.insert(key.into(), new);
                quota
            }
        };
        Decision::Allowed {
            wait: Duration::from_nanos(wait),
            quota,
        }
    }
}

/// Drops buckets that are whole again (their key would start afresh anyway), and if the
/// shard is still over its cap, arbitrary ones.
fn sweep(shard: &mut Shard, now: u64) {
    shard.tats.retain(|_, tats| tats.iter().any(|&t| t > now));
    if shard.tats.len() >= SHARD_CAP {
        let excess = shard.tats.len() + 1 - SHARD_CAP;
        let drop: Vec<Box<[u8]>> = shard.tats.keys().take(excess).cloned().collect();
        for k in drop {
            shard.tats.remove(&k);
        }
    }
    shard.swept_at = shard.tats.len();
}

/// The headers for the most constrained limit, given each limit's arrival time.
fn quota(limits: &[Gcra], tat: impl Fn(usize) -> u64, now: u64, rejected: bool) -> Quota {
    limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let used = tat(i).saturating_sub(now);
            let remaining = if rejected {
                0
            } else {
                l.period.saturating_sub(used) / l.interval
            };
            Quota {
                limit: l.requests,
                remaining: remaining.min(l.requests),
                reset: Duration::from_nanos(used),
            }
        })
        .min_by_key(|q| (q.remaining, std::cmp::Reverse(q.reset)))
        .unwrap_or(Quota {
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
        })
}

/// The in-flight count of one rule, carried across tables.
#[derive(Debug)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl InFlight {
    /// Room for `max` requests at once.
    pub fn new(max: u32) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(max as usize)),
            queued: AtomicUsize::new(0),
        }
    }
}

/// A prepared `concurrencyLimit`.
#[derive(Debug)]
pub struct Concurrency {
    state: Arc<InFlight>,
    queue: usize,
    queue_timeout: Duration,
}

impl Concurrency {
    /// Prepares a policy over its carried state.
    pub fn prepare(c: &table::ConcurrencyLimit, state: Arc<InFlight>) -> Concurrency {
        Concurrency {
            state,
            queue: c.queue as usize,
            queue_timeout: Duration::from_millis(c.queue_timeout_ms),
        }
    }

    /// A permit, at once or after queueing; `None` when the queue is full or the wait
    /// timed out.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.state.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        if self.queue == 0 {
            return None;
        }
        let queued = &self.state.queued;
        if queued.fetch_add(1, Ordering::AcqRel) >= self.queue {
            queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = tokio::time::timeout(
            self.queue_timeout,
            self.state.permits.clone().acquire_owned(),
        )
        .await;
        queued.fetch_sub(1, Ordering::AcqRel);
        permit.ok().and_then(Result::ok)
    }
}

// === phases ===

/// Phase 4, rate limit: every limit must allow the request (429 otherwise, or a wait
/// when throttling). A global limit that cannot reach Redis follows its failure mode.
pub(crate) fn rate_limit<'a>(
    cx: &'a mut Ctx<'_>,
    parts: &Parts,
) -> Step<'a, Result<(), GatewayError>> {
    let Some(limit) = cx.policies().and_then(|p| p.rate_limit.as_ref()) else {
        return Step::now(Ok(()));
    };
    let id = cx.identity.as_ref();
    let client = Client {
        ip: cx.client,
        consumer: id.and_then(|i| i.consumer.as_deref()),
        claims: id.and_then(|i| i.claims.as_deref()),
    };
    let key = limit.key_of(client, &parts.headers);
    // A local limit decides at once; only a wait (throttling) or Redis is waited for.
    if let Some(decided) = limit.decide_local(&key) {
        return match settle(cx, Ok(decided)) {
            Ok(wait) if wait.is_zero() => Step::now(Ok(())),
            Ok(wait) => Step::later(async move {
                tokio::time::sleep(wait).await;
                Ok(())
            }),
            Err(e) => Step::now(Err(e)),
        };
    }
    Step::later(async move {
        let wait = settle(cx, limit.decide(&key).await)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    })
}

/// What a decision means for the request: how long it waits, or its refusal.
fn settle(
    cx: &mut Ctx<'_>,
    decided: Result<Decision, Undecided>,
) -> Result<Duration, GatewayError> {
    match decided {
        Ok(Decision::Allowed { wait, quota }) => {
            cx.decor.quota = Some(quota);
            Ok(wait)
        }
        Ok(Decision::Rejected { retry_after, quota }) => {
            Err(GatewayError::RateLimited { retry_after, quota })
        }
        Err(Undecided { fail_open, error }) => {
            tracing::debug!(%error, fail_open, "global rate limit undecided");
            if fail_open {
                cx.count(Counter::LimiterFailOpen);
                Ok(Duration::ZERO)
            } else {
                cx.count(Counter::LimiterFailClosed);
                Err(GatewayError::LimiterUnavailable)
            }
        }
    }
}

/// Phase 4, concurrency limit: a permit held until the response body is sent; 503 when
/// the limit and its queue are full.
pub(crate) fn concurrency<'a>(
    cx: &Ctx<'a>,
) -> Step<'a, Result<Option<OwnedSemaphorePermit>, GatewayError>> {
    match cx.policies().and_then(|p| p.concurrency.as_ref()) {
        Some(c) => {
            Step::later(async move { c.acquire().await.map(Some).ok_or(GatewayError::Overloaded) })
        }
        None => Step::now(Ok(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn limits(spec: &[(u64, u64)]) -> Vec<Gcra> {
        spec.iter()
            .map(|&(requests, secs)| Gcra {
                requests,
                period: secs * S,
                interval: secs * S / requests,
            })
            .collect()
    }

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allowed { wait, .. } if wait.is_zero())
    }

    #[test]
    fn a_burst_of_n_then_one_per_interval() {
        let l = limits(&[(5, 10)]);
        let b = Buckets::new(1);
        let t0 = 100 * S;
        for i in 0..5 {
            let d = b.decide(b"k", &l, t0, None);
            let Decision::Allowed { quota, .. } = d else {
                panic!("request {i} allowed")
            };
            assert_eq!(quota.remaining, 4 - i);
            assert_eq!(quota.limit, 5);
        }
        let Decision::Rejected { retry_after, quota } = b.decide(b"k", &l, t0, None) else {
            panic!("sixth rejected")
        };
        assert_eq!(retry_after, Duration::from_secs(2));
        assert_eq!(quota.remaining, 0);
        assert_eq!(quota.reset, Duration::from_secs(10));
        // One interval later, exactly one more.
        assert!(allowed(b.decide(b"k", &l, t0 + 2 * S, None)));
        assert!(!allowed(b.decide(b"k", &l, t0 + 2 * S, None)));
        // Other keys are independent.
        assert!(allowed(b.decide(b"other", &l, t0, None)));
    }

    #[test]
    fn every_limit_must_allow_and_a_refusal_charges_none() {
        // 3 per second, 4 per minute.
        let l = limits(&[(3, 1), (4, 60)]);
        let b = Buckets::new(2);
        let t0 = 100 * S;
        for _ in 0..3 {
            assert!(allowed(b.decide(b"k", &l, t0, None)));
        }
        // The per-second limit refuses; the per-minute one must not be charged.
        assert!(!allowed(b.decide(b"k", &l, t0, None)));
        assert!(!allowed(b.decide(b"k", &l, t0, None)));
        // A second later: one more fits the minute (4th), then the minute refuses.
        assert!(allowed(b.decide(b"k", &l, t0 + S, None)));
        let Decision::Rejected { retry_after, quota } = b.decide(b"k", &l, t0 + S, None) else {
            panic!("minute limit reached")
        };
        assert_eq!(quota.limit, 4);
        assert!(retry_after >= Duration::from_secs(14), "{retry_after:?}");
    }

    #[test]
    fn delay_mode_reserves_slots_in_order_up_to_max_delay() {
        let l = limits(&[(2, 1)]);
        let b = Buckets::new(1);
        let t0 = 100 * S;
        let max = Some(Duration::from_millis(1200));
        assert!(allowed(b.decide(b"k", &l, t0, max)));
        assert!(allowed(b.decide(b"k", &l, t0, max)));
        let waits: Vec<Decision> = (0..3).map(|_| b.decide(b"k", &l, t0, max)).collect();
        assert!(
            matches!(waits[0], Decision::Allowed { wait, .. } if wait == Duration::from_millis(500))
        );
        assert!(
            matches!(waits[1], Decision::Allowed { wait, .. } if wait == Duration::from_millis(1000))
        );
        // The next slot is 1.5 s away: beyond maxDelay.
        assert!(matches!(waits[2], Decision::Rejected { .. }));
    }

    #[test]
    fn sweeping_keeps_memory_bounded() {
        let l = limits(&[(1, 1)]);
        let b = Buckets::new(1);
        let mut t = 100 * S;
        for i in 0u32..50_000 {
            t += 1_000_000; // 1 ms apart: each bucket is whole again after 1 s
            let _ = b.decide(&i.to_le_bytes(), &l, t, None);
        }
        let held: usize = b
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.tats.len()).unwrap_or(0))
            .sum();
        assert!(held < 20_000, "{held} keys held");
    }

    #[tokio::test]
    async fn concurrency_queue_and_refusal() {
        let state = Arc::new(InFlight::new(1));
        let c = Concurrency::prepare(
            &table::ConcurrencyLimit {
                max_in_flight: 1,
                queue: 1,
                queue_timeout_ms: 5_000,
            },
            state,
        );
        let first = c.acquire().await.expect("first permit");
        let c = Arc::new(c);
        let queued = tokio::spawn({
            let c = c.clone();
            async move { c.acquire().await.is_some() }
        });
        tokio::task::yield_now().await;
        // The queue (1) is taken: the third is refused at once.
        assert!(c.acquire().await.is_none());
        drop(first);
        assert!(queued.await.expect("join"));
    }
}
