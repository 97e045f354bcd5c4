//! A table made ready for the request path, off the request path: the router built,
//! upstreams with their live state (endpoints resolved to socket addresses), and one
//! [`PreparedRule`] per rule holding everything a request to it needs, with its
//! upstreams as indices into [`Prepared::upstreams`]: nothing on the request path is
//! looked up by name. Refused as a whole when anything fails, so the running table is
//! never replaced by a broken one.

use std::sync::Arc;

use gatehouse_router::{RegexCache, Router, RouterError, Target};
use gatehouse_table::{Action, Address, Route, Rule, Table, Upstream};

use crate::metrics::{Metrics, RuleLabels};
use crate::policy::{self, PolicyStates, RulePolicies, StatesRound};
use crate::upstream::PreparedUpstream;
use crate::upstream::state::States;
use crate::version::VersionHeaders;
use crate::worker::WorkerCounter;

/// Why a table cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The router could not be built (a regex over the limits).
    #[error("routing table: {0}")]
    Router(#[from] RouterError),
    /// A policy could not be prepared.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// An upstream's TLS client could not be made (the compiler checked its
    /// certificates: this is a table from elsewhere).
    #[error("upstream {upstream} tls: {why}")]
    UpstreamTls {
        /// The upstream.
        upstream: String,
        /// What is wrong.
        why: String,
    },
    /// A route's API version headers could not be prepared.
    #[error(transparent)]
    Version(#[from] crate::version::VersionError),
    /// The access log's destination could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    /// Traces cannot be exported as configured.
    #[error(transparent)]
    Trace(crate::trace::TraceError),
}

/// The table the request path reads.
#[derive(Debug)]
pub struct Prepared {
    /// The table.
    pub table: Arc<Table>,
    /// The matcher.
    pub router: Router,
    /// Upstreams, in the table's order; rules name them by index.
    pub upstreams: Vec<PreparedUpstream>,
    /// Each route's rules, `[route][rule]`.
    pub routes: Vec<Arc<[PreparedRule]>>,
    /// Metric labels of requests no rule matched.
    pub unmatched: RuleLabels,
    /// The table's consumers, indexed for authentication (the running table's while
    /// they are unchanged).
    pub consumers: Arc<policy::consumers::Consumers>,
    /// The certificates HTTPS serves, by the names their routes serve.
    pub tls: crate::listener::tls::Catalog,
    /// The OpenAPI document of this table, built when first asked for.
    openapi: std::sync::OnceLock<bytes::Bytes>,
}

/// Everything a request to one rule needs, prepared once per table.
#[derive(Debug)]
pub struct PreparedRule {
    /// The table's route.
    route: Arc<Route>,
    /// Which of its rules.
    index: usize,
    /// The rule cannot be served as written (the compiler's blockers): 503.
    pub blocked: bool,
    /// Its metric labels.
    pub labels: RuleLabels,
    /// Its policies; `None` for a rule without any.
    pub policies: Option<Arc<RulePolicies>>,
    /// Response headers of the route's API version.
    pub version: Option<Arc<VersionHeaders>>,
    /// Its weighted backends.
    pub backends: Box<[Backend]>,
    /// Position in the backends' weights, per worker; `None` with one backend or none.
    pub next_backend: Option<Arc<WorkerCounter>>,
    /// Where a share of the requests is copied (`mirror`).
    pub mirror: Option<Mirror>,
    /// The upstream of each `aggregate` call, in call order (empty for other actions);
    /// `None` when it is missing (the call fails).
    pub calls: Box<[Option<u32>]>,
}

/// A rule's mirror, prepared.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Index in [`Prepared::upstreams`]; `None` when the upstream is missing (nothing is
    /// mirrored).
    pub upstream: Option<u32>,
    /// Share of requests copied, 0..=100.
    pub percent: u32,
    /// Which requests are copied: `percent` of every hundred, per worker.
    pub next: Arc<WorkerCounter>,
}

/// One weighted backend of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Index in [`Prepared::upstreams`]; `None` when the upstream is missing (its share
    /// is answered 503).
    pub upstream: Option<u32>,
    /// Share of traffic.
    pub weight: u32,
}

impl PreparedRule {
    /// The table's rule.
    pub fn spec(&self) -> &Rule {
        &self.route.rules[self.index]
    }

    /// The route's id.
    pub fn route_id(&self) -> &str {
        &self.route.id
    }

    /// The id of the certificate the route's hosts are served with on HTTPS.
    pub fn certificate(&self) -> Option<&str> {
        self.route.tls.as_deref()
    }

    /// The same rule over another upstream list.
    fn with_upstreams(&self, upstreams: &[Upstream]) -> PreparedRule {
        PreparedRule {
            route: self.route.clone(),
            index: self.index,
            blocked: self.blocked,
            labels: self.labels,
            policies: self.policies.clone(),
            version: self.version.clone(),
            backends: backends(self.spec(), upstreams),
            next_backend: self.next_backend.clone(),
            mirror: mirror(self.spec(), upstreams, self.mirror.as_ref()),
            calls: calls(self.spec(), upstreams),
        }
    }
}

/// The index of upstream `id` in `upstreams` (sorted by id); `None` when it is missing.
fn index_of(upstreams: &[Upstream], id: &str, missing: bool) -> Option<u32> {
    if missing {
        return None;
    }
    upstreams
        .binary_search_by(|u| u.id.as_str().cmp(id))
        .ok()
        .and_then(|i| u32::try_from(i).ok())
}

/// A rule's mirror with its upstream as an index; the position in the hundred is
/// `kept`'s when the rule had one.
fn mirror(rule: &Rule, upstreams: &[Upstream], kept: Option<&Mirror>) -> Option<Mirror> {
    let Action::Backends {
        mirror: Some(m), ..
    } = &rule.action
    else {
        return None;
    };
    Some(Mirror {
        upstream: index_of(upstreams, &m.upstream, m.missing),
        percent: m.percent.min(100),
        next: kept.map_or_else(Arc::default, |k| k.next.clone()),
    })
}

/// The upstreams of a rule's aggregate calls, as indices into `upstreams`.
fn calls(rule: &Rule, upstreams: &[Upstream]) -> Box<[Option<u32>]> {
    let Action::Aggregate(a) = &rule.action else {
        return Box::default();
    };
    a.calls
        .iter()
        .map(|c| index_of(upstreams, &c.upstream, c.missing))
        .collect()
}

/// A rule's backends, with their upstreams as indices into `upstreams`.
fn backends(rule: &Rule, upstreams: &[Upstream]) -> Box<[Backend]> {
    let Action::Backends { backends, .. } = &rule.action else {
        return Box::default();
    };
    backends
        .iter()
        .map(|b| Backend {
            upstream: index_of(upstreams, &b.upstream, b.missing),
            weight: b.weight,
        })
        .collect()
}

/// What preparing a table reads besides the table.
#[derive(Debug)]
pub struct Context<'a> {
    /// The running table, whose unchanged routes keep their prepared rules.
    pub previous: Option<&'a Prepared>,
    /// Upstream state, kept across tables.
    pub states: &'a States,
    /// Regexes of the previous router.
    pub regexes: &'a mut RegexCache,
    /// Policy state kept across tables; this table's is taken into `round`.
    pub policy_states: &'a PolicyStates,
    /// The policy state this table uses, committed once it is applied.
    pub round: &'a mut StatesRound,
    /// Where label sets are interned.
    pub metrics: &'a Metrics,
}

impl Prepared {
    /// Prepares `table`. Everything that can fail happens before upstream state is
    /// touched, so a refused table changes nothing. Policy state is taken into
    /// `cx.round`, which the caller commits once the table is in place.
    ///
    /// A route that is the same object (`Arc`) as one of the running table keeps that
    /// route's prepared rules (policies, version headers, metric labels, round-robin
    /// positions), which depend on nothing else: a one-route change prepares one route.
    /// The router is built on the previous one when the routes keep their places (see
    /// [`Router::build_after`]).
    pub fn new(table: Table, mut cx: Context<'_>) -> Result<Prepared, PrepareError> {
        // All on this thread: building the router on a second one was measured to save
        // nothing at 10,000 routes (its start and its fresh heap cost what it saved).
        let routes = prepare_routes(&table, &mut cx)?;
        let before = cx.previous.map(|p| (&*p.table, &p.router));
        let (router, next_regexes) = Router::build_after(&table, cx.regexes, before)?;
        let consumers = match cx.previous {
            Some(p) if p.table.consumers == table.consumers => p.consumers.clone(),
            _ => Arc::new(policy::consumers::Consumers::new(&table.consumers)),
        };
        let tls = upstream_tls(&table, cx.previous)?;
        let upstreams = table
            .upstreams
            .iter()
            .zip(cx.states.sync(&table.upstreams))
            .zip(tls)
            .map(|((u, state), tls)| {
                state.set_probe_tls(tls.clone());
                PreparedUpstream {
                    spec: u.clone(),
                    state,
                    tls,
                    labels: cx.metrics.upstream_labels(&u.id),
                }
            })
            .collect();
        let tls = crate::listener::tls::Catalog::prepare(&table, cx.previous.map(|p| &p.tls));
        // Nothing below fails: the cache now holds this router's regexes.
        *cx.regexes = next_regexes;
        Ok(Prepared {
            table: Arc::new(table),
            router,
            upstreams,
            routes,
            unmatched: cx.metrics.labels("", ""),
            consumers,
            tls,
            openapi: std::sync::OnceLock::new(),
        })
    }

    /// The OpenAPI document of this table (`admin/openapi.rs`), built on the first call.
    pub fn openapi(&self) -> bytes::Bytes {
        self.openapi
            .get_or_init(|| {
                let doc = crate::admin::openapi::document(&self.table);
                bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
            })
            .clone()
    }

    /// The rule at `target`.
    pub(crate) fn rule(&self, target: Target) -> &PreparedRule {
        &self.routes[target.route][target.rule]
    }
}

/// Each upstream's TLS client, the running table's when its settings are unchanged.
fn upstream_tls(
    table: &Table,
    previous: Option<&Prepared>,
) -> Result<Vec<Option<Arc<crate::upstream::tls::TlsClient>>>, PrepareError> {
    table
        .upstreams
        .iter()
        .map(|u| {
            let Some(spec) = &u.tls else {
                return Ok(None);
            };
            // Upstreams are sorted by id (as `backends` relies on).
            let kept = previous.and_then(|p| {
                let i = p
                    .upstreams
                    .binary_search_by(|pu| pu.spec.id.as_str().cmp(&u.id))
                    .ok()?;
                let pu = &p.upstreams[i];
                (pu.spec.tls == u.tls && pu.spec.protocol == u.protocol)
                    .then(|| pu.tls.clone())
                    .flatten()
            });
            if let Some(kept) = kept {
                return Ok(Some(kept));
            }
            crate::upstream::tls::TlsClient::prepare(spec, u.protocol)
                .map(|c| Some(Arc::new(c)))
                .map_err(|why| PrepareError::UpstreamTls {
                    upstream: u.id.clone(),
                    why,
                })
        })
        .collect()
}

/// Each route's rules: the running table's when it holds the same route object (its
/// policy state carried into `round` as preparing would), else prepared now.
fn prepare_routes(
    table: &Table,
    cx: &mut Context<'_>,
) -> Result<Vec<Arc<[PreparedRule]>>, PrepareError> {
    let previous = cx.previous;
    let same_upstreams = previous.is_some_and(|p| {
        p.table.upstreams.len() == table.upstreams.len()
            && p.table
                .upstreams
                .iter()
                .zip(&table.upstreams)
                .all(|(a, b)| a.id == b.id)
    });
    // The running table is borrowed throughout, so the addresses name live routes.
    let known: rustc_hash::FxHashMap<Address<'_>, usize> = previous
        .map(|p| {
            p.table
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| (Address::of(r), i))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(table.routes.len());
    for r in &table.routes {
        let kept = previous.zip(known.get(&Address::of(r)));
        let Some((p, &i)) = kept else {
            out.push(prepare_route(r, table, cx)?);
            continue;
        };
        for rule in &r.rules {
            policy::keep(&r.id, rule, cx.policy_states, cx.round);
        }
        if same_upstreams {
            out.push(p.routes[i].clone());
        } else {
            out.push(
                p.routes[i]
                    .iter()
                    .map(|rule| rule.with_upstreams(&table.upstreams))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// One route's rules, prepared.
fn prepare_route(
    r: &Arc<Route>,
    table: &Table,
    cx: &mut Context<'_>,
) -> Result<Arc<[PreparedRule]>, PrepareError> {
    let version = VersionHeaders::prepare(r)?.map(Arc::new);
    r.rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let policies = policy::prepare(&r.id, rule, cx.policy_states, cx.round)?;
            let backends = backends(rule, &table.upstreams);
            Ok(PreparedRule {
                route: r.clone(),
                index,
                blocked: !rule.blocked.is_empty(),
                labels: cx.metrics.labels(&r.id, &rule.name),
                policies,
                version: version.clone(),
                next_backend: (backends.len() > 1).then(Arc::default),
                backends,
                mirror: mirror(rule, &table.upstreams, None),
                calls: calls(rule, &table.upstreams),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Context {
                previous,
                states: &states,
                regexes,
                policy_states,
                round: &mut round,
                metrics: &metrics,
            },
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
        let policies =
            |p: &Prepared, route: usize| p.routes[route][0].policies.clone().expect("policies");
        assert!(
            Arc::ptr_eq(&policies(&first, 0), &policies(&second, 0)),
            "kept"
        );
        assert!(Arc::ptr_eq(&first.routes[0], &second.routes[0]));
        assert_eq!(first.routes[0][0].labels, second.routes[0][0].labels);
        assert!(
            !Arc::ptr_eq(&first.routes[1], &second.routes[1]),
            "prepared again"
        );
        assert_eq!(
            policy_states.rate_states(),
            1,
            "the kept route's limit state is still carried"
        );

        // Without the running table, everything is prepared again.
        let third = prepare((*second.table).clone(), None, &policy_states, &mut regexes);
        assert!(!Arc::ptr_eq(&policies(&second, 0), &policies(&third, 0)));
    }
}
