//! The circuit breaker of an upstream as a whole: limits on connections, requests
//! waiting for a connection and requests in flight, and the failure-ratio state
//! machine.
//!
//! ```text
//!            failures / requests ≥ failureRatio            openDuration elapsed
//!  Closed ─────── (at least minimumRequests in window) ──▶ Open ───────────────▶ HalfOpen
//!    ▲                                                      ▲                      │
//!    └──────────── a trial succeeds ────────────────────────┼──── a trial fails ◀──┘
//! ```
//!
//! Half-open admits `halfOpenRequests` trials and sheds everything else; a trial that
//! never reports (its client went away) counts as failed. A failure is a connect error,
//! a reset, a timeout or a 5xx answer. Shed requests never touch the upstream: 503
//! with `X-Gatehouse-Reason: circuit-open`, as are requests over a limit.
//!
//! Shared by every worker (one breaker per upstream, kept across tables with the
//! upstream's state): the state, the limits' counts and the window are atomics. The
//! window is ten buckets of `window / 10`; a bucket is reset by the first request that
//! finds it stale, so counts are approximate under races, never blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use gatehouse_table::resilience::CircuitBreaker;

use super::window::Window;

/// The breaker's state, as `gatehouse_circuit_state` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests pass.
    Closed = 0,
    /// Trial requests pass.
    HalfOpen = 1,
    /// Requests are shed.
    Open = 2,
}

impl CircuitState {
    fn from(v: u8) -> CircuitState {
        match v {
            1 => CircuitState::HalfOpen,
            2 => CircuitState::Open,
            _ => CircuitState::Closed,
        }
    }

    /// Its name in `/config`.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Open => "open",
        }
    }
}

const BUCKETS: usize = 10;

/// One upstream's breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    /// When it last opened (`endpoint::now_ns`).
    opened_at: AtomicU64,
    /// Trials admitted in this half-open period.
    trials: AtomicU32,
    in_flight: AtomicU32,
    pending: AtomicU32,
    connections: AtomicU32,
    /// Requests (total) and failures (marked), `window / 10` per bucket.
    window: Window<BUCKETS>,
}

/// A request the breaker let through; it reports how the request went with
/// [`Admitted::finish`], or counts as failed if dropped first while a trial.
#[derive(Debug)]
pub struct Admitted {
    breaker: Arc<Breaker>,
    trial: bool,
    done: bool,
}

impl Breaker {
    /// The state now.
    pub fn state(&self) -> CircuitState {
        CircuitState::from(self.state.load(Ordering::Relaxed))
    }

    /// Lets a request through, or `None` to shed it.
    pub fn admit(self: &Arc<Self>, cfg: &CircuitBreaker, now: u64) -> Option<Admitted> {
        let open_ns = cfg.open_duration_ms.saturating_mul(1_000_000);
        let trial = match self.state() {
            CircuitState::Closed => false,
            CircuitState::Open => {
                if now.saturating_sub(self.opened_at.load(Ordering::Relaxed)) < open_ns {
                    return None;
                }
                if self
                    .state
                    .compare_exchange(
                        CircuitState::Open as u8,
                        CircuitState::HalfOpen as u8,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    return None;
                }
                self.trials.store(1, Ordering::Relaxed);
                tracing::info!("circuit half-open: trial requests pass");
                true
            }
            CircuitState::HalfOpen => {
                if self.trials.fetch_add(1, Ordering::Relaxed) >= cfg.half_open_requests {
                    return None;
                }
                true
            }
        };
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= cfg.max_concurrent_requests {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if trial {
                // Not a trial after all: let the next request try.
                self.trials.fetch_sub(1, Ordering::Relaxed);
            }
            return None;
        }
        Some(Admitted {
            breaker: self.clone(),
            trial,
            done: false,
        })
    }

    fn record(&self, cfg: Option<&CircuitBreaker>, failed: bool, trial: bool, now: u64) {
        if trial {
            if failed {
                self.open(now);
            } else {
                self.window.clear();
                self.state
                    .store(CircuitState::Closed as u8, Ordering::Relaxed);
                tracing::info!("circuit closed: a trial request succeeded");
            }
            return;
        }
        let Some(cfg) = cfg else { return };
        if self.state() != CircuitState::Closed {
            return;
        }
        let len = (cfg.window_ms.saturating_mul(1_000_000) / BUCKETS as u64).max(1);
        let period = now / len;
        let bucket = self.window.bucket(period);
        bucket.total.fetch_add(1, Ordering::Relaxed);
        if !failed {
            return;
        }
        bucket.marked.fetch_add(1, Ordering::Relaxed);
        let (requests, failures) = self.window.sums(period);
        if requests >= u64::from(cfg.minimum_requests)
            && failures * 1_000_000 >= u64::from(cfg.failure_ratio_ppm) * requests
        {
            self.open(now);
            tracing::warn!(failures, requests, "circuit opened: too many failures");
        }
    }

    fn open(&self, now: u64) {
        self.opened_at.store(now, Ordering::Relaxed);
        self.state
            .store(CircuitState::Open as u8, Ordering::Relaxed);
    }

    /// Room for one more request waiting for a new connection, and for the connection:
    /// `None` when either limit is reached.
    pub fn connecting(self: &Arc<Self>, cfg: &CircuitBreaker) -> Option<(Waiting, Connection)> {
        let waiting =
            take(&self.pending, cfg.max_pending_requests).then(|| Waiting(self.clone()))?;
        let connection =
            take(&self.connections, cfg.max_connections).then(|| Connection(self.clone()))?;
        Some((waiting, connection))
    }
}

/// Takes one of `max` from `count`.
fn take(count: &AtomicU32, max: u32) -> bool {
    if count.fetch_add(1, Ordering::Relaxed) >= max {
        count.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// A request waiting for a new connection; the count drops with it.
#[derive(Debug)]
pub struct Waiting(Arc<Breaker>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open connection to one of the upstream's servers; the count drops with it.
#[derive(Debug)]
pub struct Connection(Arc<Breaker>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admitted {
    /// Reports how the request went (`failed`: connect error, reset, timeout, 5xx).
    pub fn finish(mut self, cfg: Option<&CircuitBreaker>, failed: bool, now: u64) {
        self.done = true;
        self.breaker.record(cfg, failed, self.trial, now);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.breaker.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done && self.trial {
            // A trial whose client left: no verdict, so the circuit stays open a while.
            self.breaker.open(super::endpoint::now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CircuitBreaker {
        CircuitBreaker {
            max_connections: 2,
            max_pending_requests: 1,
            max_concurrent_requests: 3,
            failure_ratio_ppm: 500_000,
            minimum_requests: 4,
            window_ms: 10_000,
            open_duration_ms: 1_000,
            half_open_requests: 1,
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn opens_on_the_failure_ratio_sheds_then_closes_after_a_good_trial() {
        let b = Arc::new(Breaker::default());
        let c = cfg();
        let t = 100 * MS;
        for failed in [false, true, false] {
            b.admit(&c, t).expect("closed").finish(Some(&c), failed, t);
        }
        assert_eq!(b.state(), CircuitState::Closed, "3 < minimumRequests");
        b.admit(&c, t).expect("closed").finish(Some(&c), true, t);
        assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed");
        assert!(b.admit(&c, t + 500 * MS).is_none(), "shed while open");
        let trial = b.admit(&c, t + 1_001 * MS).expect("a trial");
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.admit(&c, t + 1_002 * MS).is_none(), "one trial at a time");
        trial.finish(Some(&c), false, t + 1_003 * MS);
        assert_eq!(b.state(), CircuitState::Closed);
        b.admit(&c, t + 1_004 * MS)
            .expect("closed")
            .finish(Some(&c), true, t + 1_004 * MS);
        assert_eq!(b.state(), CircuitState::Closed, "the window was reset");
    }

    #[test]
    fn a_failed_or_abandoned_trial_reopens() {
        let b = Arc::new(Breaker::default());
        let c = cfg();
        b.open(0);
        b.admit(&c, 2_000 * MS)
            .expect("trial")
            .finish(Some(&c), true, 2_000 * MS);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.admit(&c, 2_500 * MS).is_none());
        drop(b.admit(&c, 3_100 * MS).expect("trial"));
        assert_eq!(b.state(), CircuitState::Open, "abandoned counts as failed");
    }

    #[test]
    fn limits_hold_and_free_with_their_guards() {
        let b = Arc::new(Breaker::default());
        let c = cfg();
        let held: Vec<_> = (0..3).filter_map(|_| b.admit(&c, 0)).collect();
        assert_eq!(held.len(), 3);
        assert!(b.admit(&c, 0).is_none(), "maxConcurrentRequests");
        drop(held);
        assert!(b.admit(&c, 0).is_some());
        let first = b.connecting(&c).expect("room");
        assert!(b.connecting(&c).is_none(), "maxPendingRequests");
        let (waiting, conn) = first;
        drop(waiting);
        let second = b.connecting(&c).expect("room");
        drop(second.0);
        assert!(b.connecting(&c).is_none(), "maxConnections");
        drop(conn);
        assert!(b.connecting(&c).is_some());
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let b = Arc::new(Breaker::default());
        let c = cfg();
        for _ in 0..3 {
            b.admit(&c, 0).expect("closed").finish(Some(&c), true, 0);
        }
        // 11 s later those failures are out of the window.
        let t = 11_000 * MS;
        b.admit(&c, t).expect("closed").finish(Some(&c), true, t);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
