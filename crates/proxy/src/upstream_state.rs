//! What the data plane knows about an upstream beyond its definition, kept across table
//! swaps: the endpoint schedule (with DNS answers), the round-robin position, and, as
//! later issues add them, health and breaker state.
//!
//! One [`UpstreamState`] per upstream id lives in a [`States`] registry owned by
//! `Shared`. Applying a table looks each upstream up there: an unchanged upstream keeps
//! its state as it is; a changed endpoint list is swapped into the same state, so a
//! config change never resets what the gateway has learned about its upstreams.
//!
//! DNS endpoints are resolved by a `Resolver` thread (hickory, the system's
//! `resolv.conf` and hosts file) and re-resolved when the answer's TTL runs out
//! (clamped to 1 s..5 min). A failed lookup keeps the last answer and retries in 5 s.
//! The first lookup of a new name happens before the table that needs it is served.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gatehouse_table::Endpoint;
use tokio::sync::mpsc;

/// Shortest and longest time an answer is used before it is looked up again.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(300);
/// Wait before retrying a failed lookup.
const RETRY: Duration = Duration::from_secs(5);
/// How long applying a table waits for the first answers of its new names.
const FIRST_LOOKUP: Duration = Duration::from_secs(3);

/// The live state of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// Endpoint addresses, each repeated by weight (weights are 1..=1000; typical
    /// lists are short), so a round-robin counter over it is weighted.
    schedule: ArcSwap<Vec<SocketAddr>>,
    /// Round-robin position in `schedule`.
    next: AtomicUsize,
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
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(schedule[n % schedule.len()])
    }

    /// The current schedule (for tests and `/config`).
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.schedule.load_full()
    }

    /// Names among the endpoints (not IP literals).
    fn names(&self) -> Vec<String> {
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
    fn set_answer(&self, name: &str, ips: Vec<IpAddr>) {
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

    fn has_answer(&self, name: &str) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| inner.answers.contains_key(name))
    }
}

/// Upstream states by id, kept across tables.
#[derive(Debug, Default)]
pub struct States {
    by_id: Mutex<HashMap<String, Arc<UpstreamState>>>,
    resolver: Mutex<Option<Resolver>>,
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
            self.resolve(to_resolve);
        }
        out
    }

    /// Hands states with names to the resolver thread (started on first use) and
    /// waits, bounded, for their first answers.
    fn resolve(&self, states: Vec<Arc<UpstreamState>>) {
        let Ok(mut resolver) = self.resolver.lock() else {
            return;
        };
        let resolver = match &mut *resolver {
            Some(r) => r,
            None => match Resolver::start() {
                Ok(r) => resolver.insert(r),
                Err(e) => {
                    tracing::error!(error = %e, "DNS resolver thread did not start");
                    return;
                }
            },
        };
        let deadline = Instant::now() + FIRST_LOOKUP;
        for state in states {
            let (done, wait) = std::sync::mpsc::channel();
            if resolver
                .register
                .send((Arc::downgrade(&state), done))
                .is_err()
            {
                tracing::error!("DNS resolver thread is gone");
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = wait.recv_timeout(left);
        }
    }
}

type Registration = (Weak<UpstreamState>, std::sync::mpsc::Sender<()>);

/// The thread that keeps DNS answers fresh.
#[derive(Debug)]
struct Resolver {
    register: mpsc::UnboundedSender<Registration>,
}

impl Resolver {
    fn start() -> std::io::Result<Resolver> {
        let (register, registrations) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("gatehouse-dns".into())
            .spawn(move || runtime.block_on(resolve_loop(registrations)))?;
        Ok(Resolver { register })
    }
}

/// Looks up a name: the IPs and how long they may be used.
struct Lookup(Option<hickory_resolver::TokioResolver>);

impl Lookup {
    fn new() -> Lookup {
        match hickory_resolver::Resolver::builder_tokio().and_then(|b| b.build()) {
            Ok(r) => Lookup(Some(r)),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS configuration; using the system resolver without TTLs");
                Lookup(None)
            }
        }
    }

    async fn ips(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let (mut ips, ttl) = match &self.0 {
            Some(r) => {
                let answer = r.lookup_ip(name).await.map_err(|e| e.to_string())?;
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                (answer.iter().collect::<Vec<_>>(), ttl)
            }
            None => {
                let addrs = tokio::net::lookup_host((name, 0))
                    .await
                    .map_err(|e| e.to_string())?;
                (addrs.map(|a| a.ip()).collect(), Duration::from_secs(30))
            }
        };
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            return Err("no addresses".into());
        }
        Ok((ips, ttl.clamp(MIN_TTL, MAX_TTL)))
    }
}

async fn resolve_loop(mut registrations: mpsc::UnboundedReceiver<Registration>) {
    let lookup = Lookup::new();
    // Each watched state with the time its names are next due.
    let mut watched: Vec<(Weak<UpstreamState>, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        watched.retain(|(w, _)| w.strong_count() > 0);
        for (weak, due) in &mut watched {
            if *due > now {
                continue;
            }
            let Some(state) = weak.upgrade() else {
                continue;
            };
            *due = refresh(&lookup, &state).await;
        }
        let wake = watched
            .iter()
            .map(|(_, due)| *due)
            .min()
            .unwrap_or(now + MAX_TTL);
        tokio::select! {
            registered = registrations.recv() => {
                let Some((weak, done)) = registered else { return };
                if let Some(state) = weak.upgrade() {
                    let due = refresh(&lookup, &state).await;
                    // Already watched (a changed endpoint list): just reschedule.
                    match watched.iter_mut().find(|(w, _)| w.ptr_eq(&weak)) {
                        Some(entry) => entry.1 = due,
                        None => watched.push((weak, due)),
                    }
                }
                let _ = done.send(());
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Looks up every name of `state`; returns when it is next due.
async fn refresh(lookup: &Lookup, state: &UpstreamState) -> Instant {
    let mut next = MAX_TTL;
    for name in state.names() {
        match lookup.ips(&name).await {
            Ok((ips, ttl)) => {
                state.set_answer(&name, ips);
                next = next.min(ttl);
            }
            Err(e) => {
                let kept = if state.has_answer(&name) {
                    "keeping the last answer"
                } else {
                    "no address yet"
                };
                tracing::warn!(name = %name, error = %e, "DNS lookup failed; {kept}");
                next = next.min(RETRY);
            }
        }
    }
    Instant::now() + next
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
