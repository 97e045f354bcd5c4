//! DNS: names among an upstream's endpoints are looked up by one resolver thread
//! (hickory, the system's `resolv.conf` and hosts file) and looked up again when the
//! answer's TTL runs out (clamped to 1 s..5 min). A failed lookup keeps the last answer
//! and retries in 5 s. Applying a table waits, bounded, for the first answers of its
//! new names, so a table is not served before its names resolve.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::state::UpstreamState;

/// Shortest and longest time an answer is used before it is looked up again.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(300);
/// Wait before retrying a failed lookup.
const RETRY: Duration = Duration::from_secs(5);
/// How long applying a table waits for the first answers of its new names.
const FIRST_LOOKUP: Duration = Duration::from_secs(3);

/// The resolver thread, started when the first name needs it.
#[derive(Debug, Default)]
pub(crate) struct Resolvers {
    thread: Mutex<Option<Resolver>>,
}

impl Resolvers {
    /// Hands states with names to the resolver thread (started on first use) and
    /// waits, bounded, for their first answers.
    pub(crate) fn resolve(&self, states: Vec<Arc<UpstreamState>>) {
        let Ok(mut resolver) = self.thread.lock() else {
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
        crate::runtime_thread("gatehouse-dns", resolve_loop(registrations))?;
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
