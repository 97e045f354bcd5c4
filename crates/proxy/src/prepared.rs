//! A table made ready for the request path, off the request path: the router built,
//! upstreams indexed and their endpoints resolved to socket addresses. Refused as a
//! whole when anything fails, so the running table is never replaced by a broken one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use gatehouse_router::{Router, RouterError};
use gatehouse_table::{Table, Upstream};

/// Why a table cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The router could not be built (a regex over the limits).
    #[error("routing table: {0}")]
    Router(#[from] RouterError),
    /// An endpoint is a DNS name, which this data plane does not resolve yet.
    #[error(
        "upstream {upstream}: endpoint {host:?} is not an IP address (DNS endpoints are not supported yet)"
    )]
    DnsEndpoint {
        /// Upstream id.
        upstream: String,
        /// The name.
        host: String,
    },
}

/// One upstream, ready to pick endpoints from.
#[derive(Debug)]
pub struct PreparedUpstream {
    /// The table's upstream.
    pub spec: Upstream,
    /// Endpoint addresses, each repeated by weight (weights are 1..=1000; typical
    /// lists are short), so a round-robin counter over it is weighted.
    pub schedule: Vec<SocketAddr>,
    /// Round-robin position in `schedule`.
    pub next: AtomicUsize,
}

/// The table the request path reads.
#[derive(Debug)]
pub struct Prepared {
    /// The table.
    pub table: Arc<Table>,
    /// The matcher.
    pub router: Router,
    /// Upstreams by id.
    pub upstreams: HashMap<String, PreparedUpstream>,
    /// Weighted round-robin position of each rule's backends, `[route][rule]`.
    pub rule_counters: Vec<Vec<AtomicUsize>>,
    /// Metric labels of each rule, `[route][rule]`.
    pub labels: Vec<Vec<crate::metrics::RuleLabels>>,
    /// Metric labels of requests no rule matched.
    pub unmatched: crate::metrics::RuleLabels,
}

impl Prepared {
    /// Prepares `table`.
    pub fn new(table: Table) -> Result<Prepared, PrepareError> {
        let router = Router::new(&table)?;
        let mut upstreams = HashMap::with_capacity(table.upstreams.len());
        for u in &table.upstreams {
            let mut schedule = Vec::new();
            for e in &u.endpoints {
                let ip: IpAddr = e.host.parse().map_err(|_| PrepareError::DnsEndpoint {
                    upstream: u.id.clone(),
                    host: e.host.clone(),
                })?;
                for _ in 0..e.weight.max(1) {
                    schedule.push(SocketAddr::new(ip, e.port));
                }
            }
            upstreams.insert(
                u.id.clone(),
                PreparedUpstream {
                    spec: u.clone(),
                    schedule,
                    next: AtomicUsize::new(0),
                },
            );
        }
        let rule_counters = table
            .routes
            .iter()
            .map(|r| r.rules.iter().map(|_| AtomicUsize::new(0)).collect())
            .collect();
        let labels = table
            .routes
            .iter()
            .map(|r| {
                let route: Arc<str> = Arc::from(r.id.as_str());
                r.rules
                    .iter()
                    .map(|rule| (route.clone(), Arc::from(rule.name.as_str())))
                    .collect()
            })
            .collect();
        Ok(Prepared {
            table: Arc::new(table),
            router,
            upstreams,
            rule_counters,
            labels,
            unmatched: (Arc::from(""), Arc::from("")),
        })
    }
}
