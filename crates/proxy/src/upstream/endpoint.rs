//! One server of an upstream as the data plane sees it: its address and weight, and
//! what live traffic and probes taught about it (requests in flight, latency, failures
//! in a row, ejection, probe verdict).
//!
//! An [`Endpoint`] is shared by the workers and the prober, so its fields are atomics.
//! Only the balancers that need them write the load fields (`LeastRequest` and
//! `PeakEwma` the in-flight count, `PeakEwma` the latency), and only upstreams with
//! passive health checks the failure count, so a plain round-robin upstream writes
//! nothing here per request.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time since the process's first look at the clock, in nanoseconds: what the atomics
/// below store instead of an `Instant`.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Latency assumed for an endpoint nothing was measured on yet: low, so a new endpoint
/// is tried soon.
const DEFAULT_RTT_NS: f64 = 1_000_000.0;
/// How fast PeakEwma forgets: an observation's weight halves in about 7 s.
const DECAY_NS: f64 = 10_000_000_000.0;

/// One server of an upstream.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative weight, 1..=1000.
    pub weight: u32,
    /// Requests sent and not yet answered (head received or failed).
    in_flight: AtomicU32,
    /// PeakEwma's latency estimate (f64 nanoseconds, as bits), and when it was updated.
    rtt: AtomicU64,
    rtt_at: AtomicU64,
    /// Failures in a row of live traffic (passive checks).
    failures: AtomicU32,
    /// While ejected: until when ([`now_ns`]); 0 when not ejected.
    pub(crate) ejected_until: AtomicU64,
    /// Ejections so far (the next ejection lasts longer), and when the last one ended.
    pub(crate) ejections: AtomicU32,
    pub(crate) last_ejection_end: AtomicU64,
    /// The active probes' verdict; true until probes say otherwise.
    pub(crate) healthy: AtomicBool,
}

impl Endpoint {
    /// A new endpoint: healthy, idle, nothing measured.
    pub fn new(addr: SocketAddr, weight: u32) -> Endpoint {
        Endpoint {
            addr,
            weight: weight.max(1),
            in_flight: AtomicU32::new(0),
            rtt: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            rtt_at: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            last_ejection_end: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the returned guard drops (also when the
    /// request is abandoned half-way: its client went away).
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Folds an observed latency into the estimate: a slower answer than the estimate
    /// replaces it (the peak); a faster one is averaged in, weighted by how long ago
    /// the estimate was made.
    pub(crate) fn observe(&self, took: Duration, now: u64) {
        let rtt = took.as_nanos() as f64;
        let before = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        let at = self.rtt_at.swap(now, Ordering::Relaxed);
        let next = if rtt > before {
            rtt
        } else {
            let w = (-(now.saturating_sub(at) as f64) / DECAY_NS).exp();
            before * w + rtt * (1.0 - w)
        };
        self.rtt.store(next.to_bits(), Ordering::Relaxed);
    }

    /// PeakEwma's cost: the latency estimate, decayed since it was made (so an endpoint
    /// that was slow once gets tried again), times the requests it would have in
    /// flight, over its weight.
    pub(crate) fn cost(&self, now: u64) -> f64 {
        let rtt = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        let age = now.saturating_sub(self.rtt_at.load(Ordering::Relaxed)) as f64;
        let decayed = (rtt * (-age / DECAY_NS).exp()).max(1.0);
        decayed * f64::from(self.in_flight() + 1) / f64::from(self.weight)
    }

    /// LeastRequest's load: requests in flight over weight, compared without division.
    pub(crate) fn less_loaded_than(&self, other: &Endpoint) -> bool {
        u64::from(self.in_flight()) * u64::from(other.weight)
            <= u64::from(other.in_flight()) * u64::from(self.weight)
    }

    /// Counts a failure of live traffic; returns the failures in a row.
    pub(crate) fn failed(&self) -> u32 {
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// A success of live traffic ends a run of failures.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Whether passive checks have it out of rotation.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Whether the active probes call it healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Its state as `gatehouse_upstream_endpoints` and `/config` name it.
    pub fn state(&self, now: u64) -> EndpointState {
        if !self.is_healthy() {
            EndpointState::Unhealthy
        } else if self.is_ejected(now) {
            EndpointState::Ejected
        } else {
            EndpointState::Healthy
        }
    }
}

/// A request in flight on an endpoint ([`Endpoint::start`]).
#[derive(Debug)]
pub(crate) struct InFlight<'e>(&'e Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Never below zero.
        let _ = self
            .0
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// An endpoint's state for metrics and `/config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// In rotation.
    Healthy,
    /// Out of rotation for a while: passive checks saw it fail.
    Ejected,
    /// Out of rotation until probes succeed again.
    Unhealthy,
}

impl EndpointState {
    /// Every state, in label order.
    pub const ALL: [EndpointState; 3] = [
        EndpointState::Healthy,
        EndpointState::Ejected,
        EndpointState::Unhealthy,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Ejected => "ejected",
            EndpointState::Unhealthy => "unhealthy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::new("127.0.0.1:1".parse().expect("addr"), 1)
    }

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_forgets_them_slowly() {
        let e = ep();
        let t0 = 1_000_000_000;
        e.observe(Duration::from_millis(100), t0);
        assert!(
            (e.cost(t0) - 100e6).abs() < 1.0,
            "a peak replaces the estimate"
        );
        e.observe(Duration::from_millis(1), t0 + 1_000_000);
        assert!(
            e.cost(t0 + 1_000_000) > 99e6,
            "one fast answer barely moves it"
        );
        e.observe(Duration::from_millis(1), t0 + 30_000_000_000);
        assert!(
            e.cost(t0 + 30_000_000_000) < 10e6,
            "30 s later it has decayed"
        );
        let busy = {
            let _in_flight = e.start();
            e.cost(t0 + 30_000_000_000)
        };
        assert!(busy > e.cost(t0 + 30_000_000_000), "load raises the cost");
    }

    #[test]
    fn least_request_compares_load_by_weight() {
        let a = ep();
        let b = Endpoint::new("127.0.0.1:2".parse().expect("addr"), 3);
        let _b: Vec<_> = (0..2).map(|_| b.start()).collect();
        let on_a = a.start();
        assert!(b.less_loaded_than(&a), "2/3 < 1/1");
        drop(on_a);
        assert_eq!(a.in_flight(), 0);
        assert!(a.less_loaded_than(&b));
    }
}
