//! What the data plane knows about an upstream beyond its definition, kept across table
//! swaps: its endpoints with what traffic and probes taught about each (`endpoint.rs`),
//! the balancer's structure over those in rotation (`balance.rs`), the round-robin
//! position, the circuit breaker and the retry budget.
//!
//! One [`UpstreamState`] per upstream id lives in a [`States`] registry owned by
//! `Shared`. Applying a table looks each upstream up there: an unchanged upstream keeps
//! its state as it is; a changed endpoint list is swapped into the same state, and an
//! endpoint that stays keeps its counts, so a config change never resets what the
//! gateway has learned about its upstreams.
//!
//! The endpoints in rotation change when the list, a DNS answer, a probe verdict or an
//! ejection changes; each change rebuilds the balancer's structure under this state's
//! lock and swaps it in ([`Live`]). Requests only read it.
//!
//! DNS names among the endpoints are kept resolved by `resolve.rs`; the first lookup of
//! a new name happens before the table that needs it is served. Probes run on the
//! health thread (`health.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_table::resilience::{HealthCheck, PassiveCheck};
use gatehouse_table::{Endpoint as TableEndpoint, LoadBalancer, Protocol};

use super::balance::Live;
use super::breaker::Breaker;
use super::endpoint::{Endpoint, EndpointState, now_ns};
use super::retry::Budget;
use super::tls::TlsClient;
use super::{health, resolve};
use crate::worker::WorkerCounter;

/// The live state of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// The endpoints in rotation and the balancer's structure over them.
    live: ArcSwap<Live>,
    /// Round-robin position, per worker.
    next: WorkerCounter,
    /// The circuit breaker, shared by the workers.
    pub breaker: Arc<Breaker>,
    /// The retry budget, shared by the workers.
    pub budget: Budget,
    /// Whether the health thread probes this upstream.
    pub(crate) probing: AtomicBool,
    /// The endpoints as the table defines them, the last answer for each name, and
    /// every resolved endpoint.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    endpoints: Vec<TableEndpoint>,
    answers: HashMap<String, Vec<IpAddr>>,
    /// Every resolved endpoint, in rotation or not.
    all: Vec<Arc<Endpoint>>,
    policy: LoadBalancer,
    /// Whether a request's endpoint is handed back with its counts ([`Picked`]).
    tracks: bool,
    health: Option<HealthCheck>,
    /// How probes connect.
    protocol: Protocol,
    tls: Option<Arc<TlsClient>>,
}

/// The endpoint picked for a request: its address, and the endpoint itself when its
/// counts are kept (a load-aware balancer or passive checks).
#[derive(Debug, Clone)]
pub struct Picked {
    /// Where the request goes.
    pub addr: SocketAddr,
    /// The endpoint, when its counts are kept.
    pub endpoint: Option<Arc<Endpoint>>,
}

/// What probes need to know about an upstream (`health.rs`).
#[derive(Debug, Clone)]
pub(crate) struct ProbePlan {
    pub check: gatehouse_table::resilience::ActiveCheck,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub protocol: Protocol,
    pub tls: Option<Arc<TlsClient>>,
}

impl UpstreamState {
    /// The endpoint for a request (see [`Live::pick`]); `None` when none is in
    /// rotation.
    pub fn pick(&self, key: Option<u64>, avoid: Option<SocketAddr>) -> Option<Picked> {
        let live = self.live.load();
        let e = live.pick(&self.next, key, avoid)?;
        Some(Picked {
            addr: e.addr,
            endpoint: live.tracks.then(|| e.clone()),
        })
    }

    /// Whether the upstream has endpoints at all (when none is in rotation: 503 for
    /// "no healthy endpoint" rather than "no endpoint").
    pub fn has_endpoints(&self) -> bool {
        self.inner.lock().is_ok_and(|i| !i.all.is_empty())
    }

    /// The addresses in rotation (for tests).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.live.load().endpoints.iter().map(|e| e.addr).collect()
    }

    /// Every resolved endpoint with its state (metrics, `/config`).
    pub fn endpoints(&self) -> Vec<(Arc<Endpoint>, EndpointState)> {
        let now = now_ns();
        self.inner.lock().map_or_else(
            |_| Vec::new(),
            |i| i.all.iter().map(|e| (e.clone(), e.state(now))).collect(),
        )
    }

    /// How many endpoints are in each state, by [`EndpointState::ALL`] position.
    pub fn counts(&self) -> [usize; EndpointState::ALL.len()] {
        let mut counts = [0; EndpointState::ALL.len()];
        for (_, state) in self.endpoints() {
            counts[state as usize] += 1;
        }
        counts
    }

    /// Names among the endpoints (not IP literals).
    pub(crate) fn names(&self) -> Vec<String> {
        self.inner.lock().map_or_else(
            |_| Vec::new(),
            |inner| {
                let mut names: Vec<String> = inner
                    .endpoints
                    .iter()
                    .filter(|e| e.host.parse::<IpAddr>().is_err())
                    .map(|e| e.host.clone())
                    .collect();
                names.dedup();
                names
            },
        )
    }

    /// Sets the endpoint list and how the upstream balances and checks; returns
    /// whether the endpoint list changed.
    fn configure(&self, u: &gatehouse_table::Upstream) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let passive = u.health_check.as_ref().is_some_and(|h| h.passive.is_some());
        let tracks = passive
            || matches!(
                u.load_balancer,
                LoadBalancer::LeastRequest | LoadBalancer::PeakEwma
            );
        let changed = inner.endpoints != u.endpoints;
        let reshaped = inner.policy != u.load_balancer || inner.tracks != tracks;
        inner.policy = u.load_balancer;
        inner.tracks = tracks;
        inner.protocol = u.protocol;
        let mut rebuild = reshaped;
        if inner.health != u.health_check {
            // Checks removed or changed: verdicts of the old checks do not carry over.
            if u.health_check.as_ref().and_then(|h| h.active.as_ref())
                != inner.health.as_ref().and_then(|h| h.active.as_ref())
            {
                for e in &inner.all {
                    e.healthy.store(true, Ordering::Relaxed);
                }
            }
            if !passive {
                for e in &inner.all {
                    e.ejected_until.store(0, Ordering::Relaxed);
                }
            }
            inner.health = u.health_check.clone();
            rebuild = true;
        }
        if changed {
            inner.endpoints = u.endpoints.clone();
            let keep: Vec<&str> = u.endpoints.iter().map(|e| e.host.as_str()).collect();
            inner
                .answers
                .retain(|name, _| keep.contains(&name.as_str()));
        }
        if changed || rebuild {
            self.rebuild(&mut inner, changed);
        }
        changed
    }

    /// Sets the TLS client probes use.
    pub(crate) fn set_probe_tls(&self, tls: Option<Arc<TlsClient>>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.tls = tls;
        }
    }

    /// Records the answer for `name` and rebuilds.
    pub(crate) fn set_answer(&self, name: &str, ips: Vec<IpAddr>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.answers.get(name) == Some(&ips) {
            return;
        }
        inner.answers.insert(name.to_string(), ips);
        self.rebuild(&mut inner, true);
    }

    pub(crate) fn has_answer(&self, name: &str) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.answers.contains_key(name))
    }

    /// Rebuilds what requests pick from; with `resolve`, the endpoint list from the
    /// table's endpoints and DNS answers first (an endpoint that stays keeps its
    /// counts and verdicts).
    fn rebuild(&self, inner: &mut Inner, resolve: bool) {
        if resolve {
            let mut all = Vec::new();
            for e in &inner.endpoints {
                let ips: &[IpAddr] = match e.host.parse::<IpAddr>() {
                    Ok(ip) => &[ip],
                    Err(_) => inner.answers.get(&e.host).map_or(&[], Vec::as_slice),
                };
                for ip in ips {
                    let addr = SocketAddr::new(*ip, e.port);
                    if all.iter().any(|x: &Arc<Endpoint>| x.addr == addr) {
                        continue;
                    }
                    let kept = inner
                        .all
                        .iter()
                        .find(|x| x.addr == addr && x.weight == e.weight.max(1))
                        .cloned();
                    all.push(kept.unwrap_or_else(|| Arc::new(Endpoint::new(addr, e.weight))));
                }
            }
            inner.all = all;
        }
        let now = now_ns();
        let in_rotation: Vec<Arc<Endpoint>> = inner
            .all
            .iter()
            .filter(|e| e.is_healthy() && !e.is_ejected(now))
            .cloned()
            .collect();
        let mut live = Live::build(inner.policy, in_rotation);
        live.tracks = inner.tracks;
        self.live.store(Arc::new(live));
    }

    /// Rebuilds after a verdict changed.
    pub(crate) fn refresh(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            self.rebuild(&mut inner, false);
        }
    }

    /// What the health thread probes; `None` without active checks.
    pub(crate) fn probe_plan(&self) -> Option<ProbePlan> {
        let inner = self.inner.lock().ok()?;
        let check = inner.health.as_ref()?.active.clone()?;
        Some(ProbePlan {
            check,
            endpoints: inner.all.clone(),
            protocol: inner.protocol,
            tls: inner.tls.clone(),
        })
    }

    /// A connect failure to `addr` (passive checks).
    pub(crate) fn refused(self: &Arc<Self>, addr: SocketAddr, check: &PassiveCheck) {
        let live = self.live.load();
        if let Some(e) = live.endpoints.iter().find(|e| e.addr == addr) {
            self.failed(e, check);
        }
    }

    /// A failure of live traffic on `endpoint` (passive checks): after
    /// `consecutiveFailures` in a row it is ejected, unless `maxEjectionPercent` of the
    /// endpoints already are. Each ejection lasts longer than the last (doubling,
    /// capped at 10× `ejectionTime`); a readmitted endpoint that goes 10× `ejectionTime`
    /// without one starts again from 1×.
    pub(crate) fn failed(self: &Arc<Self>, endpoint: &Endpoint, check: &PassiveCheck) {
        if endpoint.failed() < check.consecutive_failures {
            return;
        }
        let now = now_ns();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if endpoint.is_ejected(now) {
            return;
        }
        let ejected = inner.all.iter().filter(|e| e.is_ejected(now)).count();
        let allowed = inner.all.len() * check.max_ejection_percent as usize / 100;
        if ejected >= allowed {
            return;
        }
        let base = check.ejection_time_ms.saturating_mul(1_000_000);
        let quiet = now.saturating_sub(endpoint.last_ejection_end.load(Ordering::Relaxed));
        if quiet > base.saturating_mul(10) {
            endpoint.ejections.store(0, Ordering::Relaxed);
        }
        let n = endpoint.ejections.fetch_add(1, Ordering::Relaxed);
        let factor = 1u64.checked_shl(n).unwrap_or(u64::MAX).min(10);
        let lasts = base.saturating_mul(factor);
        let until = now.saturating_add(lasts);
        endpoint.ejected_until.store(until, Ordering::Relaxed);
        endpoint.last_ejection_end.store(until, Ordering::Relaxed);
        endpoint.succeeded();
        tracing::warn!(endpoint = %endpoint.addr, seconds = lasts / 1_000_000_000, "endpoint ejected after failures in a row");
        self.rebuild(&mut inner, false);
        drop(inner);
        // Back in rotation when the time is up (the timer holds no strong reference).
        let state = Arc::downgrade(self);
        let addr = endpoint.addr;
        health::after(Duration::from_nanos(lasts), move || {
            if let Some(state) = state.upgrade() {
                tracing::info!(endpoint = %addr, "ejection over: endpoint back in rotation");
                state.refresh();
            }
        });
    }
}

/// Upstream states by id, kept across tables.
#[derive(Debug, Default)]
pub struct States {
    by_id: Mutex<HashMap<String, Arc<UpstreamState>>>,
    resolver: resolve::Resolvers,
    prober: health::Prober,
}

impl States {
    /// The states for `upstreams` (by id), creating or updating them; states of
    /// upstreams no longer in the table are dropped (their probes stop). New DNS names
    /// are looked up before this returns (for up to a few seconds); upstreams with
    /// active checks are handed to the health thread.
    pub fn sync(&self, upstreams: &[gatehouse_table::Upstream]) -> Vec<Arc<UpstreamState>> {
        let Ok(mut by_id) = self.by_id.lock() else {
            return upstreams
                .iter()
                .map(|u| {
                    let s = Arc::new(UpstreamState::default());
                    s.configure(u);
                    s
                })
                .collect();
        };
        let mut next = HashMap::with_capacity(upstreams.len());
        let mut out = Vec::with_capacity(upstreams.len());
        let mut to_resolve = Vec::new();
        let mut to_probe = Vec::new();
        for u in upstreams {
            let state = by_id.get(&u.id).cloned().unwrap_or_default();
            let changed = state.configure(u);
            let names = state.names();
            if changed && !names.is_empty() {
                to_resolve.push(state.clone());
            }
            if u.health_check.as_ref().is_some_and(|h| h.active.is_some())
                && !state.probing.swap(true, Ordering::AcqRel)
            {
                to_probe.push((u.id.clone(), state.clone()));
            }
            next.insert(u.id.clone(), state.clone());
            out.push(state);
        }
        *by_id = next;
        drop(by_id);
        if !to_resolve.is_empty() {
            self.resolver.resolve(to_resolve);
        }
        for (id, state) in to_probe {
            self.prober.watch(id, &state);
        }
        out
    }

    /// Every upstream's state, by id, sorted (metrics, `/config`).
    pub fn all(&self) -> Vec<(String, Arc<UpstreamState>)> {
        let mut all: Vec<_> = self.by_id.lock().map_or_else(
            |_| Vec::new(),
            |m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16, weight: u32) -> TableEndpoint {
        TableEndpoint {
            host: host.into(),
            port,
            weight,
            ..Default::default()
        }
    }

    fn upstream(id: &str, endpoints: Vec<TableEndpoint>) -> gatehouse_table::Upstream {
        gatehouse_table::Upstream {
            id: id.into(),
            endpoints,
            ..Default::default()
        }
    }

    #[test]
    fn weights_share_the_picks() {
        let states = States::default();
        let s = states.sync(&[upstream(
            "a",
            vec![endpoint("10.0.0.1", 80, 3), endpoint("10.0.0.2", 80, 1)],
        )]);
        let picks: Vec<SocketAddr> = (0..4)
            .filter_map(|_| s[0].pick(None, None))
            .map(|p| p.addr)
            .collect();
        let first: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(picks.iter().filter(|a| **a == first).count(), 3);
    }

    #[test]
    fn state_survives_an_unrelated_change_and_follows_its_own() {
        let states = States::default();
        let a = vec![endpoint("10.0.0.1", 80, 1), endpoint("10.0.0.2", 80, 1)];
        let first = states.sync(&[upstream("a", a.clone())]);
        first[0].pick(None, None);
        let second = states.sync(&[upstream("a", a), upstream("b", vec![])]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        // The round-robin position carried over: the next pick is the second endpoint.
        assert_eq!(
            second[0].pick(None, None).map(|p| p.addr),
            "10.0.0.2:80".parse().ok()
        );
        let third = states.sync(&[upstream("a", vec![endpoint("10.0.0.9", 81, 1)])]);
        assert!(Arc::ptr_eq(&first[0], &third[0]));
        assert_eq!(
            third[0].addresses().as_slice(),
            &["10.0.0.9:81".parse().expect("addr")]
        );
    }

    #[test]
    fn names_resolve_before_the_table_is_served() {
        let states = States::default();
        let s = states.sync(&[upstream("a", vec![endpoint("localhost", 8080, 1)])]);
        let addrs = s[0].addresses();
        assert!(!addrs.is_empty(), "localhost resolved");
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080)
        );
    }

    #[test]
    fn failures_in_a_row_eject_within_the_percentage_and_time_doubles() {
        let states = States::default();
        let mut u = upstream(
            "a",
            (1..=4)
                .map(|i| endpoint(&format!("10.0.0.{i}"), 80, 1))
                .collect(),
        );
        let check = PassiveCheck {
            consecutive_failures: 2,
            ejection_time_ms: 60_000,
            max_ejection_percent: 50,
        };
        u.health_check = Some(HealthCheck {
            active: None,
            passive: Some(check.clone()),
        });
        let s = states.sync(std::slice::from_ref(&u)).remove(0);
        let eps: Vec<Arc<Endpoint>> = s.endpoints().into_iter().map(|(e, _)| e).collect();
        assert!(
            s.pick(None, None).and_then(|p| p.endpoint).is_some(),
            "counts are kept"
        );
        s.failed(&eps[0], &check);
        assert_eq!(s.addresses().len(), 4, "one failure is not enough");
        eps[0].succeeded();
        s.failed(&eps[0], &check);
        assert_eq!(s.addresses().len(), 4, "a success ended the run");
        s.failed(&eps[0], &check);
        assert_eq!(s.addresses().len(), 3, "two in a row eject");
        let first = eps[0].ejected_until.load(Ordering::Relaxed) - now_ns();
        for e in &eps[1..] {
            s.failed(e, &check);
            s.failed(e, &check);
        }
        assert_eq!(s.addresses().len(), 2, "at most 50% ejected");
        let states_seen: Vec<EndpointState> = s.endpoints().into_iter().map(|(_, st)| st).collect();
        assert_eq!(
            states_seen
                .iter()
                .filter(|st| **st == EndpointState::Ejected)
                .count(),
            2
        );
        // Readmitted early (as if the time ran out), ejected again: twice as long.
        eps[0].ejected_until.store(0, Ordering::Relaxed);
        s.refresh();
        s.failed(&eps[0], &check);
        s.failed(&eps[0], &check);
        let second = eps[0].ejected_until.load(Ordering::Relaxed) - now_ns();
        assert!(second > first + first / 2, "{second} vs {first}");
        // The same endpoints in the next table keep their counts.
        let again = states.sync(&[u]).remove(0);
        assert!(Arc::ptr_eq(&again.endpoints()[0].0, &eps[0]));
    }
}
