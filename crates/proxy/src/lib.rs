//! # gatehouse-proxy: the data plane
//!
//! ```text
//!  Table ──Prepared::new (off the request path)──▶ ArcSwap<Prepared> ──load──▶ request path
//!                                                                   (one per request, no lock)
//!  worker thread × cores: current-thread tokio runtime + SO_REUSEPORT listener + its own
//!  upstream connection pool and counters
//! ```
//!
//! What it owns: listeners, the request path, upstream connections, gateway errors.
//! What it must not know: Kubernetes, manifests and the compiler; it only ever sees a
//! `gatehouse_table::Table`.
//!
//! Where things are:
//!
//! ```text
//!  listener/    the one accept loop (traffic workers, admin, push), limits, HTTP/1.1 + h2c, TLS
//!  phases.rs    the request path: the ordered list of phases over one per-request context
//!  routing.rs   phase 2, route lookup          backend.rs   phase 5, respond | redirect | upstream
//!  aggregate.rs phase 5 for `aggregate`: concurrent calls, merged JSON
//!  mirror.rs    phase 5's detached copies to a `mirror` upstream, bounded in flight
//!  access_log.rs one JSON line per request: per-worker batches, a writer thread
//!  policy/      one file per policy, each holding its phases: waf (decoders, native
//!               detectors, the CRS through gatehouse-modsecurity), cors, authentication
//!               (with consumers, jwt, jwks, external, client), authorization, limit,
//!               validation, cache, transform, errors
//!  upstream/    call (breaker, attempts, retries), balance (six balancers), endpoint, state,
//!               health (probes), breaker, retry, window, resolve (DNS), pool, h1, tls
//!  admin/       health, metrics, config, explain, cache purge; push (the controller's socket)
//!  prepared.rs  a table made ready: the router, upstreams, one PreparedRule per rule
//!  request_id.rs, traceparent.rs, template.rs, respond.rs, forward.rs, tunnel.rs, body.rs
//! ```
//!
//! What is shared between workers, and why: the prepared table (read only, swapped
//! atomically); upstream state kept across tables (`upstream/state.rs`: the endpoints in
//! rotation and the balancer's structure, read per request, rebuilt only when endpoints,
//! DNS answers or health verdicts change; per endpoint, atomics for requests in flight,
//! latency and failures, written only by the balancers and checks that need them; one
//! circuit breaker and one retry budget per upstream, atomics, because they judge the
//! upstream as a whole);
//! policy state that must be one per rule across workers (rate-limit buckets,
//! concurrency permits, the response cache, whose fill locks are sharded by key);
//! authentication's memos (verified tokens per rule, basic-auth successes, both sharded
//! caches written only on a miss) and remote key sets (one per JWKS URI, swapped
//! atomically by the fetch thread, read per request without a lock); the Core Rule Set's
//! rule sets (read only once loaded; each request is a ModSecurity transaction of its
//! own); the count of mirrored copies in flight (one atomic, touched only by requests a
//! mirror copies, because its bound is the process's); the access log's queue to its
//! writer thread (touched once per batch of 64 lines or 100 ms, never per request).
//! Round-robin positions, metrics and the WAF's memory of clean values are per
//! worker.
//!
//! API versions need no phase of their own: the compiler folded them into the table's
//! matches; `version.rs` prepares the response headers a versioned route adds
//! (`Deprecation`, `Sunset`, `Vary`), and the request transform strips a Path
//! version's prefix before forwarding.

pub mod access_log;
pub mod admin;
mod aggregate;
mod backend;
mod body;
mod deadline;
mod forward;
mod headers;
pub mod listener;
pub mod metrics;
mod mirror;
mod phases;
pub mod policy;
pub mod prepared;
mod problem;
mod request_id;
mod respond;
mod routing;
mod template;
pub mod trace;
mod traceparent;
mod tunnel;
pub mod upstream;
pub mod version;
mod worker;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_table::Table;

pub use admin::push::{PushListening, StateDir, serve_push};
pub use admin::{AdminListening, AdminState, ExplainFn, Surface, serve_admin, serve_surface};
pub(crate) use body::full;
pub use body::{Body, Streamed};
pub use listener::{Listening, serve, serve_on};
pub use prepared::{PrepareError, Prepared};

/// A worker's handle on the table: cloning the `Rc` is a plain increment, where
/// cloning the `Arc` would be an atomic one on a line every worker writes.
#[allow(clippy::redundant_allocation)] // the outer `Rc` is the point, see above
pub(crate) type WorkerTable = Rc<Arc<Prepared>>;

thread_local! {
    static WORKER_TABLE: RefCell<Option<WorkerTable>> = const { RefCell::new(None) };
}

/// State shared by every worker: the current table and the metrics.
#[derive(Debug)]
pub struct Shared {
    current: ArcSwap<Prepared>,
    /// Upstream state carried from table to table.
    states: upstream::state::States,
    /// Regexes carried from table to table. Locked only while a table is prepared
    /// (which also keeps two applies from interleaving), never on the request path.
    regexes: std::sync::Mutex<gatehouse_router::RegexCache>,
    /// Policy state (rate-limit buckets, in-flight counts) carried from table to table.
    policy_states: policy::PolicyStates,
    /// Request and config metrics (an `Arc`: mirrored copies, detached from their
    /// request, count their attempts too).
    pub metrics: Arc<metrics::Metrics>,
    /// `--trusted-proxies`.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Mirrored copies in flight, and their bound (`--mirror-max-in-flight`).
    pub(crate) mirrors: mirror::Mirrors,
    /// `--public-docs`: the host (lowercase) whose `/docs` traffic listeners answer.
    pub(crate) public_docs: Option<String>,
    /// The access log (`--access-log`).
    pub(crate) access_log: access_log::AccessLog,
    /// OpenTelemetry traces (`--otlp-endpoint`).
    pub(crate) tracer: trace::Tracer,
    /// Tables replaced, until nothing else holds them (see [`Retired`]).
    retired: Retired,
}

/// Where replaced tables go to be dropped. Freeing a 10,000-route table takes
/// milliseconds: neither the apply (a push waits for it) nor a worker's request (the
/// last holder of an `Arc` frees it) should pay for it. Each replaced table is handed
/// to one background thread, which keeps it until it holds the last reference and then
/// frees it there.
#[derive(Debug)]
struct Retired {
    to_reaper: std::sync::Mutex<Option<std::sync::mpsc::Sender<Arc<Prepared>>>>,
}

/// Starts a thread `name` with a single-threaded runtime of its own, running `main`
/// until it returns (then the thread ends); the runtime's handle spawns more work on
/// it. For work off the workers: DNS answers, health probes.
pub(crate) fn runtime_thread(
    name: &str,
    main: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(main))?;
    Ok(handle)
}

/// Lowers the calling thread's scheduling priority (nice 10; on Linux a thread's own):
/// for work nothing waits on (persisting tables, freeing replaced ones), which then
/// takes the CPU after serving requests and applying tables, not beside them.
pub(crate) fn background_priority() {
    const NICE: i32 = 10;
    // Never raised: a process started nicer than that stays so.
    let lowered = match rustix::process::getpriority_process(None) {
        Ok(now) if now >= NICE => return,
        _ => rustix::process::setpriority_process(None, NICE),
    };
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "a background thread keeps its priority");
    }
}

/// How often the reaper looks for tables nothing else holds any more.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Retired {
    fn new() -> Retired {
        Retired {
            to_reaper: std::sync::Mutex::new(None),
        }
    }

    fn retire(&self, table: Arc<Prepared>) {
        let mut to_reaper = self
            .to_reaper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sender = to_reaper.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Prepared>>();
            let spawned = std::thread::Builder::new()
                .name("gatehouse-reaper".into())
                .spawn(move || reap(rx));
            if let Err(e) = spawned {
                // Without the thread, the sends below fail and tables drop in place.
                tracing::warn!(error = %e, "no thread to free replaced tables");
            }
            tx
        });
        if let Err(std::sync::mpsc::SendError(table)) = sender.send(table) {
            *to_reaper = None;
            drop(table);
        }
    }
}

fn reap(rx: std::sync::mpsc::Receiver<Arc<Prepared>>) {
    // Freeing a 10,000-route table is milliseconds of CPU that nothing waits for.
    background_priority();
    let mut held: Vec<Arc<Prepared>> = Vec::new();
    loop {
        match rx.recv_timeout(REAP_EVERY) {
            Ok(table) => held.push(table),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Only this thread holds these: no one can take a new reference to them.
        held.retain(|t| Arc::strong_count(t) > 1);
    }
}

pub use mirror::DEFAULT_MAX_IN_FLIGHT as DEFAULT_MIRROR_MAX_IN_FLIGHT;

/// What a proxy process is given besides its table: the command-line choices.
#[derive(Debug)]
pub struct Options {
    /// `--redis`: where `scope: Global` rate limits count.
    pub global_limits: Option<policy::limit::GlobalBackend>,
    /// `--cache-capacity`: bytes the response cache holds at most.
    pub cache_capacity: u64,
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--crs-rules`: the directory of the OWASP Core Rule Set's rule files.
    pub crs_rules: std::path::PathBuf,
    /// `--mirror-max-in-flight`: mirrored copies in flight at most (the process's);
    /// more are dropped and counted.
    pub mirror_max_in_flight: usize,
    /// `--public-docs`: a host whose `GET /docs` and `GET /docs/openapi.json` the
    /// traffic listeners answer with the API documentation.
    pub public_docs: Option<String>,
    /// `--access-log`, `--access-log-sample`.
    pub access_log: access_log::Options,
    /// `--otlp-*`: trace export.
    pub traces: trace::Options,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            global_limits: None,
            cache_capacity: policy::cache::DEFAULT_CAPACITY,
            trusted_proxies: Vec::new(),
            crs_rules: policy::waf::crs::DEFAULT_RULES_DIR.into(),
            mirror_max_in_flight: mirror::DEFAULT_MAX_IN_FLIGHT,
            public_docs: None,
            access_log: access_log::Options::default(),
            traces: trace::Options::default(),
        }
    }
}

impl Shared {
    /// Starts with `table` and default options.
    pub fn new(table: Table) -> Result<Arc<Shared>, PrepareError> {
        Shared::with_options(table, Options::default())
    }

    /// Starts with `table`.
    pub fn with_options(table: Table, options: Options) -> Result<Arc<Shared>, PrepareError> {
        let started = std::time::Instant::now();
        let version = table.version;
        let states = upstream::state::States::default();
        let metrics = Arc::new(metrics::Metrics::default());
        let mut regexes = gatehouse_router::RegexCache::default();
        let policy_states =
            policy::PolicyStates::new(options.global_limits, options.cache_capacity)
                .with_crs_rules(options.crs_rules);
        let mut round = policy::StatesRound::default();
        let prepared = Prepared::new(
            table,
            prepared::Context {
                previous: None,
                states: &states,
                regexes: &mut regexes,
                policy_states: &policy_states,
                round: &mut round,
                metrics: &metrics,
            },
        )?;
        policy_states.commit(round);
        let mirrors = mirror::Mirrors::new(options.mirror_max_in_flight, metrics.clone());
        let access_log = access_log::AccessLog::start(&options.access_log, metrics.clone())
            .map_err(PrepareError::AccessLog)?;
        let tracer =
            trace::Tracer::start(&options.traces, metrics.clone()).map_err(PrepareError::Trace)?;
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(prepared),
            states,
            regexes: std::sync::Mutex::new(regexes),
            policy_states,
            metrics,
            trusted_proxies: options.trusted_proxies,
            mirrors,
            public_docs: options.public_docs.map(|h| h.to_ascii_lowercase()),
            access_log,
            tracer,
            retired: Retired::new(),
        });
        shared
            .metrics
            .config_applied(version, true, started.elapsed());
        Ok(shared)
    }

    /// The client's address for a request from `peer`: the peer's own, unless it is a
    /// trusted proxy (`--trusted-proxies`); then `X-Forwarded-For` is read from the
    /// right, past every trusted proxy, to the first address that is not one. A value
    /// that is not an address stops the walk at the last trusted hop.
    pub(crate) fn client_of(
        &self,
        peer: &headers::Peer,
        headers: &http::HeaderMap,
    ) -> std::net::IpAddr {
        // `::ffff:192.0.2.1` (an IPv4 client of a dual-stack listener) is 192.0.2.1.
        let mut client = peer.addr.ip().to_canonical();
        let trusted = |ip: &std::net::IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if self.trusted_proxies.is_empty() || !trusted(&client) {
            return client;
        }
        let hops = headers
            .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else {
                break;
            };
            let ip = ip.to_canonical();
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        client
    }

    /// Prepares `table` and, if that works, makes it the one requests see, atomically.
    /// On error the running table is untouched.
    pub fn apply(&self, table: Table) -> Result<(), PrepareError> {
        let started = std::time::Instant::now();
        let version = table.version;
        // A panic while preparing leaves no half-updated cache behind (the cache only
        // changes on success), so a poisoned lock is safe to keep using.
        let mut regexes = self
            .regexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut round = policy::StatesRound::default();
        let previous = self.current.load_full();
        let result = Prepared::new(
            table,
            prepared::Context {
                previous: Some(&previous),
                states: &self.states,
                regexes: &mut regexes,
                policy_states: &self.policy_states,
                round: &mut round,
                metrics: &self.metrics,
            },
        )
        .map(|p| {
            let old = self.current.swap(Arc::new(p));
            self.retired.retire(old);
            self.policy_states.commit(round);
        });
        drop(regexes);
        self.metrics
            .config_applied(version, result.is_ok(), started.elapsed());
        result
    }

    /// The served table's OpenAPI document (built once per table).
    pub fn openapi(&self) -> bytes::Bytes {
        self.current.load().openapi()
    }

    /// The prepared table for a request on this worker. Each worker keeps the last one
    /// it saw and takes a new one only when the table changed, so a request costs no
    /// atomic reference-count traffic on a cache line other workers also write.
    pub(crate) fn prepared(&self) -> WorkerTable {
        let current = self.current.load();
        WORKER_TABLE.with(|cached| {
            let mut cached = cached.borrow_mut();
            match &*cached {
                Some(p) if Arc::ptr_eq(p, &current) => p.clone(),
                _ => {
                    let p = Rc::new(arc_swap::Guard::into_inner(current));
                    *cached = Some(p.clone());
                    p
                }
            }
        })
    }

    /// The response cache.
    pub fn cache(&self) -> &policy::cache::ResponseCache {
        &self.policy_states.cache
    }

    /// The table being served.
    pub fn table(&self) -> Arc<Table> {
        self.current.load().table.clone()
    }

    /// `/metrics` in `format`: the counters, and the live gauges of the served table's
    /// upstreams.
    pub fn render_metrics(&self, format: metrics::exposition::Format) -> String {
        let process = metrics::exposition::Process {
            access_log_dropped: self.access_log.enabled().then(|| self.access_log.dropped()),
            trace_spans: self
                .tracer
                .enabled()
                .then(|| self.tracer.counts().snapshot()),
            upstreams: self
                .current
                .load()
                .upstreams
                .iter()
                .map(|u| metrics::exposition::UpstreamGauges {
                    id: u.spec.id.clone(),
                    endpoints: u.state.counts(),
                    breaker: u
                        .spec
                        .circuit_breaker
                        .as_ref()
                        .map(|_| u.state.breaker.state() as u8),
                })
                .collect(),
        };
        self.metrics.expose(process, format)
    }

    /// For each upstream with health checks, the endpoints in rotation now (the push
    /// socket's `GET /config`: the controller writes them to the Upstream's status).
    pub fn ready_endpoints(&self) -> std::collections::BTreeMap<String, u32> {
        let current = self.current.load();
        current
            .upstreams
            .iter()
            .filter(|u| u.spec.health_check.is_some())
            .map(|u| {
                let ready = u.state.counts()[upstream::endpoint::EndpointState::Healthy as usize];
                (u.spec.id.clone(), u32::try_from(ready).unwrap_or(u32::MAX))
            })
            .collect()
    }

    /// What the served table's upstreams look like now (`/config`, and the
    /// controller's status): each endpoint's state and requests in flight, the
    /// breaker's state.
    pub fn upstream_health(&self) -> Vec<UpstreamHealth> {
        let current = self.current.load();
        current
            .upstreams
            .iter()
            .map(|u| UpstreamHealth {
                id: u.spec.id.clone(),
                circuit: u
                    .spec
                    .circuit_breaker
                    .as_ref()
                    .map(|_| u.state.breaker.state().name()),
                endpoints: u
                    .state
                    .endpoints()
                    .into_iter()
                    .map(|(e, state)| EndpointHealth {
                        address: e.addr.to_string(),
                        state: state.label(),
                        in_flight: e.in_flight(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One upstream's live health ([`Shared::upstream_health`]).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamHealth {
    /// `namespace/name`.
    pub id: String,
    /// `closed`, `half-open` or `open`; absent without a breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<&'static str>,
    /// Every resolved endpoint.
    pub endpoints: Vec<EndpointHealth>,
}

/// One endpoint's live health.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    /// `ip:port`.
    pub address: String,
    /// `healthy`, `ejected` or `unhealthy`.
    pub state: &'static str,
    /// Requests in flight (counted only by LeastRequest, PeakEwma and passive checks).
    pub in_flight: u32,
}

#[cfg(test)]
mod background_tests {
    #[test]
    fn background_priority_lowers_only_the_calling_thread() {
        let before = rustix::process::getpriority_process(None).expect("own priority");
        let inside = std::thread::spawn(|| {
            super::background_priority();
            rustix::process::getpriority_process(None).expect("own priority")
        })
        .join()
        .expect("thread");
        assert!(inside >= 10, "nice {inside}");
        assert_eq!(
            rustix::process::getpriority_process(None).expect("own priority"),
            before,
            "the caller's thread is untouched"
        );
    }
}
