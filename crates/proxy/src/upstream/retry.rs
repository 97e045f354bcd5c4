//! Retries: what failed attempt is retried, the budget that keeps retries from
//! multiplying the load on a struggling upstream, and the backoff between attempts.
//!
//! - **What**: `on` classes (ConnectFailure, Reset, GatewayError = 502/503/504 or an
//!   attempt timeout, ServerError = any 5xx or an attempt timeout) and `statusCodes`.
//!   Only methods idempotent by definition (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are
//!   retried unless `idempotentOnly: false`. A retry goes to another endpoint when one
//!   is in rotation.
//! - **Budget**: a retry is sent while the retries in flight stay under `percent` of the
//!   requests in flight to the upstream, or, beyond that, while fewer than
//!   `minPerSecond` retries were sent this second. Both counts are the upstream's,
//!   shared by the workers.
//! - **Backoff**: before retry n (1, 2, ...) a random wait in
//!   [0, min(max, base × 2^(n-1))] ("full jitter").
//! - **Bodies** are replayed from a buffer of up to [`REPLAY_LIMIT`] bytes; a larger or
//!   unknown-length body is sent once.
//!
//! Never a retry after the response has started: an attempt's answer is judged on its
//! head, before anything of it reaches the client.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_table::resilience::{Retries, RetryOn};
use http::Method;

/// Largest request body kept for replay.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (or none within the connect timeout).
    Refused,
    /// The connection broke before a response head arrived.
    Reset,
    /// The attempt did not get a response head in time.
    Timeout,
    /// The upstream answered with this status (an error status, or one of
    /// `statusCodes`).
    Status(u16),
}

impl Failure {
    /// Whether the breaker and passive checks count it as a failure of the upstream:
    /// all but a status below 500.
    pub fn is_upstream_failure(self) -> bool {
        match self {
            Failure::Status(s) => s >= 500,
            _ => true,
        }
    }
}

/// Whether `failure` is retried by `r`.
pub fn retried(r: &Retries, failure: Failure) -> bool {
    match failure {
        Failure::Status(s) if r.status_codes.binary_search(&s).is_ok() => true,
        Failure::Refused => r.on.contains(&RetryOn::ConnectFailure),
        Failure::Reset => r.on.contains(&RetryOn::Reset),
        Failure::Timeout => {
            r.on.contains(&RetryOn::GatewayError) || r.on.contains(&RetryOn::ServerError)
        }
        Failure::Status(s) => {
            (matches!(s, 502..=504) && r.on.contains(&RetryOn::GatewayError))
                || (s >= 500 && r.on.contains(&RetryOn::ServerError))
        }
    }
}

/// Whether a request with `method` may be retried under `r`.
pub fn method_allows(r: &Retries, method: &Method) -> bool {
    !r.idempotent_only
        || matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
}

/// The wait before retry `n` (1, 2, ...).
pub fn backoff(r: &Retries, n: u32) -> Duration {
    let cap = r
        .backoff_base_ms
        .saturating_mul(1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX))
        .min(r.backoff_max_ms);
    Duration::from_millis(fastrand::u64(..=cap))
}

/// An upstream's retry budget, shared by the workers.
#[derive(Debug, Default)]
pub struct Budget {
    /// Requests in flight to the upstream (on upstreams with retries).
    active: AtomicU32,
    /// Retries in flight.
    retrying: AtomicU32,
    /// The second `this_second` counts, and the retries sent in it beyond the ratio.
    second: AtomicU64,
    this_second: AtomicU32,
}

/// A request in flight, counted in the budget's base until dropped.
#[derive(Debug)]
pub struct Active<'b>(&'b Budget);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry in flight, counted until dropped.
#[derive(Debug)]
pub struct Retrying<'b>(&'b Budget);

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Budget {
    /// Counts a request in flight.
    pub fn start(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }

    /// Room for one more retry now (`now_ns` for the per-second allowance), or `None`:
    /// the budget is spent.
    pub fn retry(&self, r: &Retries, now_ns: u64) -> Option<Retrying<'_>> {
        let active = u64::from(self.active.load(Ordering::Relaxed));
        let retrying = self.retrying.fetch_add(1, Ordering::Relaxed);
        if u64::from(retrying) * 100 < active * u64::from(r.budget_percent) {
            return Some(Retrying(self));
        }
        let second = now_ns / 1_000_000_000;
        let seen = self.second.load(Ordering::Relaxed);
        if seen != second
            && self
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.this_second.store(0, Ordering::Relaxed);
        }
        if self.this_second.fetch_add(1, Ordering::Relaxed) < r.budget_min_per_second {
            return Some(Retrying(self));
        }
        self.retrying.fetch_sub(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Retries {
        Retries {
            attempts: 2,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::GatewayError,
            ],
            status_codes: vec![429],
            per_try_timeout_ms: None,
            backoff_base_ms: 25,
            backoff_max_ms: 250,
            budget_percent: 20,
            budget_min_per_second: 2,
            idempotent_only: true,
        }
    }

    #[test]
    fn classes_and_statuses() {
        let r = r();
        assert!(retried(&r, Failure::Refused));
        assert!(retried(&r, Failure::Status(503)));
        assert!(retried(&r, Failure::Status(429)));
        assert!(retried(&r, Failure::Timeout));
        assert!(
            !retried(&r, Failure::Status(500)),
            "500 is ServerError only"
        );
        let server = Retries {
            on: vec![RetryOn::ServerError],
            ..r.clone()
        };
        assert!(retried(&server, Failure::Status(500)));
        assert!(!retried(&server, Failure::Refused));
        assert!(method_allows(&r, &Method::GET));
        assert!(!method_allows(&r, &Method::POST));
        assert!(method_allows(
            &Retries {
                idempotent_only: false,
                ..r
            },
            &Method::POST
        ));
    }

    #[test]
    fn backoff_is_jittered_under_the_growing_cap() {
        let r = r();
        for _ in 0..100 {
            assert!(backoff(&r, 1) <= Duration::from_millis(25));
            assert!(backoff(&r, 3) <= Duration::from_millis(100));
            assert!(backoff(&r, 30) <= Duration::from_millis(250));
        }
    }

    #[test]
    fn the_budget_holds_retries_to_the_percentage_plus_the_per_second_floor() {
        let b = Budget::default();
        let r = r();
        let active: Vec<_> = (0..10).map(|_| b.start()).collect();
        // 20% of 10 in flight: 2 retries, then 2 more from the per-second floor.
        let t = 5_000_000_000;
        let granted: Vec<_> = (0..10).filter_map(|_| b.retry(&r, t)).collect();
        assert_eq!(granted.len(), 4);
        drop(granted);
        let next_second: Vec<_> = (0..10)
            .filter_map(|_| b.retry(&r, t + 1_000_000_000))
            .collect();
        assert_eq!(next_second.len(), 4, "ratio room again, and a new second");
        drop(active);
    }
}
