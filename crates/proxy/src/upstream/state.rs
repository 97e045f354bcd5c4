//! What the data plane knows about an upstream beyond its definition, kept across table
//! swaps: the endpoint schedule (with DNS answers), the round-robin position, and, as
//! later issues add them, health and breaker state.
//!
//! One [`UpstreamState`] per upstream id lives in a [`States`] registry owned by
//! `Shared`. Applying a table looks each upstream up there: an unchanged upstream keeps
//! its state as it is; a changed endpoint list is swapped into the same state, so a
//! config change never resets what the gateway has learned about its upstreams.
//!
//! DNS names among the endpoints are kept resolved by `resolve.rs`; the first lookup of
//! a new name happens before the table that needs it is served.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gatehouse_table::Endpoint;

use super::resolve;
use crate::worker::WorkerCounter;

/// The live state of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// Endpoint addresses, each repeated by weight (weights are 1..=1000; typical
    /// lists are short), so a round-robin counter over it is weighted.
    schedule: ArcSwap<Vec<SocketAddr>>,
    /// Round-robin position in `schedule`, per worker.
    next: WorkerCounter,
    /// The endpoints as the table defines them, and the last answer for each name.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    endpoints: Vec<Endpoint>,
    answers: HashMap<String, Vec<IpAddr>>,
}

impl UpstreamState {
    /// The next endpoint, round robin by weight; `None` when there is none.
    pub fn pick(&self) -> Option<SocketAddr> {
        let schedule = self.schedule.load();
        if schedule.is_empty() {
            return None;
        }
        let n = self.next.next();
        Some(schedule[n % schedule.len()])
    }

    /// The current schedule (for tests and `/config`).
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.schedule.load_full()
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

    /// Sets the endpoint list; returns whether it changed.
    fn set_endpoints(&self, endpoints: &[Endpoint]) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        if inner.endpoints == endpoints {
            return false;
        }
        inner.endpoints = endpoints.to_vec();
        let keep: Vec<&str> = endpoints.iter().map(|e| e.host.as_str()).collect();
        inner
            .answers
            .retain(|name, _| keep.contains(&name.as_str()));
        self.rebuild(&inner);
        true
    }

    /// Records the answer for `name` and rebuilds the schedule.
    pub(crate) fn set_answer(&self, name: &str, ips: Vec<IpAddr>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.answers.get(name) == Some(&ips) {
            return;
        }
        inner.answers.insert(name.to_string(), ips);
        self.rebuild(&inner);
    }

    fn rebuild(&self, inner: &Inner) {
        let mut schedule = Vec::new();
        for e in &inner.endpoints {
            let ips: &[IpAddr] = match e.host.parse::<IpAddr>() {
                Ok(ip) => &[ip],
                Err(_) => inner.answers.get(&e.host).map_or(&[], Vec::as_slice),
            };
            for ip in ips {
                for _ in 0..e.weight.max(1) {
                    schedule.push(SocketAddr::new(*ip, e.port));
                }
            }
        }
        self.schedule.store(Arc::new(schedule));
    }

    pub(crate) fn has_answer(&self, name: &str) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.answers.contains_key(name))
    }
}

/// Upstream states by id, kept across tables.
#[derive(Debug, Default)]
pub struct States {
    by_id: Mutex<HashMap<String, Arc<UpstreamState>>>,
    resolver: resolve::Resolvers,
}

impl States {
    /// The states for `upstreams` (by id), creating or updating them; states of
    /// upstreams no longer in the table are dropped. New DNS names are looked up
    /// before this returns (for up to a few seconds).
    pub fn sync(&self, upstreams: &[gatehouse_table::Upstream]) -> Vec<Arc<UpstreamState>> {
        let Ok(mut by_id) = self.by_id.lock() else {
            return upstreams
                .iter()
                .map(|u| {
                    let s = Arc::new(UpstreamState::default());
                    s.set_endpoints(&u.endpoints);
                    s
                })
                .collect();
        };
        let mut next = HashMap::with_capacity(upstreams.len());
        let mut out = Vec::with_capacity(upstreams.len());
        let mut to_resolve = Vec::new();
        for u in upstreams {
            let state = by_id.get(&u.id).cloned().unwrap_or_default();
            let changed = state.set_endpoints(&u.endpoints);
            let names = state.names();
            if changed && !names.is_empty() {
                to_resolve.push(state.clone());
            }
            next.insert(u.id.clone(), state.clone());
            out.push(state);
        }
        *by_id = next;
        drop(by_id);
        if !to_resolve.is_empty() {
            self.resolver.resolve(to_resolve);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16, weight: u32) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            weight,
            ..Default::default()
        }
    }

    fn upstream(id: &str, endpoints: Vec<Endpoint>) -> gatehouse_table::Upstream {
        gatehouse_table::Upstream {
            id: id.into(),
            endpoints,
            ..Default::default()
        }
    }

    #[test]
    fn weights_repeat_addresses_in_the_schedule() {
        let states = States::default();
        let s = states.sync(&[upstream(
            "a",
            vec![endpoint("10.0.0.1", 80, 3), endpoint("10.0.0.2", 80, 1)],
        )]);
        let picks: Vec<SocketAddr> = (0..4).filter_map(|_| s[0].pick()).collect();
        let first: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(picks.iter().filter(|a| **a == first).count(), 3);
    }

    #[test]
    fn state_survives_an_unrelated_change_and_follows_its_own() {
        let states = States::default();
        let a = vec![endpoint("10.0.0.1", 80, 1), endpoint("10.0.0.2", 80, 1)];
        let first = states.sync(&[upstream("a", a.clone())]);
        first[0].pick();
        let second = states.sync(&[upstream("a", a), upstream("b", vec![])]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        // The round-robin position carried over: the next pick is the second endpoint.
        assert_eq!(second[0].pick(), "10.0.0.2:80".parse().ok());
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
}
