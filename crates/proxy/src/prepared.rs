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
    pub rule_counters: Vec<Arc<[AtomicUsize]>>,
    /// Metric labels of each rule, `[route][rule]`.
    pub labels: Vec<Arc<[crate::metrics::RuleLabels]>>,
    /// Policies of each rule, `[route][rule]`; `None` for a rule without any.
    pub policies: Vec<Arc<[Option<Box<crate::policy::RulePolicies>>]>>,
    /// Response headers of each route's API version, `[route]`; `None` for a route
    /// without a version (or one that adds no header).
    pub versions: Vec<Option<Arc<crate::version::VersionHeaders>>>,
    /// Metric labels of requests no rule matched.
    pub unmatched: crate::metrics::RuleLabels,
}

impl Prepared {
    /// Prepares `table`, taking upstream state from `states` and compiled regexes from
    /// `regexes` (the previous table's). Everything that can fail happens before
    /// `states` is touched, so a refused table changes nothing.
    /// Policy state is taken from `policy_states` into `round`, which the caller
    /// commits once the table is in place.
    ///
    /// A route that is the same object (`Arc`) as one of `previous` keeps that route's
    /// prepared parts (policies, version headers, metric labels, round-robin
    /// positions), which depend on nothing else: a one-route change prepares one route.
    /// The router is built on the previous one when the routes keep their places (see
    /// [`Router::build_after`]).
    pub fn new(
        table: Table,
        previous: Option<&Prepared>,
        states: &States,
        regexes: &mut RegexCache,
        policy_states: &crate::policy::PolicyStates,
        round: &mut crate::policy::StatesRound,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Prepared, PrepareError> {
        // All on this thread: building the router on a second one was measured to save
        // nothing at 10,000 routes (its start and its fresh heap cost what it saved).
        let parts = RouteParts::of(&table, previous, policy_states, round, metrics)?;
        let before = previous.map(|p| (&*p.table, &p.router));
        let (router, next_regexes) = Router::build_after(&table, regexes, before)?;
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
        // Nothing below fails: the cache now holds this router's regexes.
        *regexes = next_regexes;
        Ok(Prepared {
            table: Arc::new(table),
            router,
            upstreams,
            rule_counters: parts.counters,
            labels: parts.labels,
            policies: parts.policies,
            versions: parts.versions,
            unmatched: metrics.labels("", ""),
        })
    }
}

/// The parts of a [`Prepared`] that each depend on one route alone, `[route]`.
struct RouteParts {
    counters: Vec<Arc<[AtomicUsize]>>,
    labels: Vec<Arc<[crate::metrics::RuleLabels]>>,
    policies: Vec<Arc<[Option<Box<crate::policy::RulePolicies>>]>>,
    versions: Vec<Option<Arc<crate::version::VersionHeaders>>>,
}

impl RouteParts {
    /// Each route's parts: `previous`'s when it holds the same route object (its policy
    /// state carried into `round` as preparing would), else prepared now.
    fn of(
        table: &Table,
        previous: Option<&Prepared>,
        policy_states: &crate::policy::PolicyStates,
        round: &mut crate::policy::StatesRound,
        metrics: &crate::metrics::Metrics,
    ) -> Result<RouteParts, PrepareError> {
        let n = table.routes.len();
        let mut parts = RouteParts {
            counters: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            policies: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
        };
        let known: rustc_hash::FxHashMap<usize, usize> = previous
            .map(|p| {
                p.table
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (Arc::as_ptr(r) as usize, i))
                    .collect()
            })
            .unwrap_or_default();
        for r in &table.routes {
            let before = previous.zip(known.get(&(Arc::as_ptr(r) as usize)));
            if let Some((p, &i)) = before {
                for rule in &r.rules {
                    crate::policy::keep(&r.id, rule, policy_states, round);
                }
                parts.counters.push(p.rule_counters[i].clone());
                parts.labels.push(p.labels[i].clone());
                parts.policies.push(p.policies[i].clone());
                parts.versions.push(p.versions[i].clone());
                continue;
            }
            let policies = r
                .rules
                .iter()
                .map(|rule| crate::policy::prepare(&r.id, rule, policy_states, round))
                .collect::<Result<Arc<[_]>, _>>()?;
            let version = crate::version::VersionHeaders::prepare(r)?;
            parts.policies.push(policies);
            parts.versions.push(version.map(Arc::new));
            parts
                .counters
                .push(r.rules.iter().map(|_| AtomicUsize::new(0)).collect());
            parts.labels.push(
                r.rules
                    .iter()
                    .map(|rule| metrics.labels(&r.id, &rule.name))
                    .collect(),
            );
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyStates, StatesRound};

    fn table() -> Table {
        let route = |id: &str, path: &str, policies: serde_json::Value| {
            serde_json::json!({
                "id": id, "hosts": [],
                "rules": [{
                    "name": "r",
                    "matches": [{"rank": 1, "path": {"type": "prefix", "value": path}}],
                    "action": {"type": "respond", "status": 200, "contentType": "text/plain", "body": "ok"},
                    "policies": policies,
                }],
            })
        };
        let limit = serde_json::json!({"rateLimit": {"source": "rule", "config": {
            "limits": [{"requests": 10, "periodMs": 1000}], "key": {"type": "ClientIp"},
            "scope": "Local", "mode": "Reject", "maxDelayMs": 0, "failureMode": "Open"}}});
        serde_json::from_value(serde_json::json!({
            "format": gatehouse_table::FORMAT, "version": 1, "hash": "",
            "routes": [route("ns/limited", "/limited", limit), route("ns/other", "/other", serde_json::json!({}))],
            "upstreams": [], "consumers": [],
        }))
        .expect("a table")
    }

    fn prepare(
        table: Table,
        previous: Option<&Prepared>,
        policy_states: &PolicyStates,
        regexes: &mut RegexCache,
    ) -> Prepared {
        let mut round = StatesRound::default();
        let states = States::default();
        let metrics = crate::metrics::Metrics::default();
        let p = Prepared::new(
            table,
            previous,
            &states,
            regexes,
            policy_states,
            &mut round,
            &metrics,
        )
        .expect("prepared");
        policy_states.commit(round);
        p
    }

    #[test]
    fn a_route_kept_from_the_running_table_keeps_its_parts_and_its_limit_state() {
        let policy_states = PolicyStates::default();
        let mut regexes = RegexCache::default();
        let first = prepare(table(), None, &policy_states, &mut regexes);
        assert_eq!(policy_states.rate_states(), 1);

        // "other" changes; "limited" is the same object.
        let mut next = (*first.table).clone();
        Arc::make_mut(&mut next.routes[1]).rules[0].matches[0].path =
            gatehouse_table::PathMatch::Prefix("/moved".into());
        let second = prepare(next, Some(&first), &policy_states, &mut regexes);
        assert!(Arc::ptr_eq(&first.policies[0], &second.policies[0]), "kept");
        assert!(Arc::ptr_eq(&first.labels[0], &second.labels[0]));
        assert!(
            !Arc::ptr_eq(&first.policies[1], &second.policies[1]),
            "prepared again"
        );
        assert_eq!(
            policy_states.rate_states(),
            1,
            "the kept route's limit state is still carried"
        );

        // Without the running table, everything is prepared again.
        let third = prepare((*second.table).clone(), None, &policy_states, &mut regexes);
        assert!(!Arc::ptr_eq(&second.policies[0], &third.policies[0]));
    }
}
