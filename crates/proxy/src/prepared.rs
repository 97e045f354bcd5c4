//! A table made ready for the request path, off the request path: the router built,
//! upstreams indexed with their live state (endpoints resolved to socket addresses).
//! Refused as a whole when anything fails, so the running table is never replaced by a
//! broken one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use gatehouse_router::{RegexCache, Router, RouterError};
use gatehouse_table::{Table, Upstream};

use crate::upstream_state::{States, UpstreamState};

/// Why a table cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The router could not be built (a regex over the limits).
    #[error("routing table: {0}")]
    Router(#[from] RouterError),
    /// A policy could not be prepared.
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// A route's API version headers could not be prepared.
    #[error(transparent)]
    Version(#[from] crate::version::VersionError),
}

/// One upstream, ready to pick endpoints from.
#[derive(Debug)]
pub struct PreparedUpstream {
    /// The table's upstream.
    pub spec: Upstream,
    /// Its live state, shared with the tables before and after this one.
    pub state: Arc<UpstreamState>,
}

impl PreparedUpstream {
    /// The next endpoint (weighted round robin); `None` when there is none.
    pub fn pick(&self) -> Option<SocketAddr> {
        self.state.pick()
    }
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
    /// Policies of each rule, `[route][rule]`; `None` for a rule without any.
    pub policies: Vec<Vec<Option<Box<crate::policy::RulePolicies>>>>,
    /// Response headers of each route's API version, `[route]`; `None` for a route
    /// without a version (or one that adds no header).
    pub versions: Vec<Option<crate::version::VersionHeaders>>,
    /// Metric labels of requests no rule matched.
    pub unmatched: crate::metrics::RuleLabels,
}

impl Prepared {
    /// Prepares `table`, taking upstream state from `states` and compiled regexes from
    /// `regexes` (the previous table's). Everything that can fail happens before
    /// `states` is touched, so a refused table changes nothing.
    /// Policy state is taken from `policy_states` into `round`, which the caller
    /// commits once the table is in place.
    pub fn new(
        table: Table,
        states: &States,
        regexes: &mut RegexCache,
        policy_states: &crate::policy::PolicyStates,
        round: &mut crate::policy::StatesRound,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Prepared, PrepareError> {
        // The router (most of the work) is built beside the rest, on a second thread.
        let (router, policies, versions) = std::thread::scope(|scope| {
            let previous: &RegexCache = regexes;
            let router = scope.spawn(|| Router::build_from(&table, previous));
            let policies = table
                .routes
                .iter()
                .map(|r| {
                    r.rules
                        .iter()
                        .map(|rule| crate::policy::prepare(&r.id, rule, policy_states, round))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>();
            let versions = table
                .routes
                .iter()
                .map(|r| crate::version::VersionHeaders::prepare(r))
                .collect::<Result<Vec<_>, _>>();
            let router = match router.join() {
                Ok(built) => built,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (router, policies, versions)
        });
        // Errors in the order they were checked before the router had its own thread.
        let (policies, versions, (router, next_regexes)) = (policies?, versions?, router?);
        let upstreams = table
            .upstreams
            .iter()
            .zip(states.sync(&table.upstreams))
            .map(|(u, state)| {
                (
                    u.id.clone(),
                    PreparedUpstream {
                        spec: u.clone(),
                        state,
                    },
                )
            })
            .collect();
        let rule_counters = table
            .routes
            .iter()
            .map(|r| r.rules.iter().map(|_| AtomicUsize::new(0)).collect())
            .collect();
        let labels = table
            .routes
            .iter()
            .map(|r| {
                r.rules
                    .iter()
                    .map(|rule| metrics.labels(&r.id, &rule.name))
                    .collect()
            })
            .collect();
        // Nothing below fails: the cache now holds exactly this table's regexes.
        *regexes = next_regexes;
        Ok(Prepared {
            table: Arc::new(table),
            router,
            upstreams,
            rule_counters,
            labels,
            policies,
            versions,
            unmatched: metrics.labels("", ""),
        })
    }
}
