//! Policies: each rule's effective policies (from the table, typed and lowered by the
//! compiler) built, when a table is prepared, into ready-to-run objects; the request path
//! (`phases.rs`) calls
//! them in the order `DESIGN.md` fixes:
//!
//! ```text
//! request:  WAF → CORS (preflight answered here) → rate limit → concurrency limit
//!           → request validation → cache lookup → request transform → backend
//! response: response validation → response transform → cache store
//!           → error formatting → CORS, RateLimit-* and X-Cache headers
//! ```
//!
//! Process-wide backends live in [`PolicyStates`] too: the Redis client of global rate
//! limits (`--redis`), the response cache (`--cache-capacity`), and the Core Rule Set
//! rule sets loaded (`--crs-rules`), one per configuration, shared by the rules using it.
//!
//! A rule without policies carries `None` and pays nothing. Nothing here parses text,
//! per request or per table: the compiler already turned durations into milliseconds,
//! applied defaults and parsed templates. What is built here is what the runtime needs
//! (header names and values, compiled schemas, buckets); a value that cannot be built
//! (a header value with a control character, say) refuses the whole table.
//!
//! State that must outlive a table swap (rate-limit buckets, in-flight counts) lives in
//! [`PolicyStates`], keyed by route, rule, the policy's layer and its configuration (its
//! canonical JSON): an unchanged policy keeps its counters across configuration changes;
//! a changed one starts afresh.

pub mod authentication;
pub mod authorization;
pub mod cache;
pub mod client;
pub mod consumers;
pub mod cors;
pub mod errors;
pub mod external;
pub mod global_limit;
pub mod jwks;
pub mod jwt;
pub mod limit;
pub mod transform;
pub mod validation;
pub mod waf;

use std::sync::{Arc, Mutex, PoisonError};

use gatehouse_table::Rule;
use gatehouse_table::policy::{PolicyField, RateLimitScope, Sourced};
use rustc_hash::FxHashMap;

/// A policy slot that cannot be prepared.
#[derive(Debug, thiserror::Error)]
#[error("{route} rule {rule:?} policy {field}: {message}")]
pub struct PolicyError {
    /// Route id.
    pub route: String,
    /// Rule name.
    pub rule: String,
    /// Which policy.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// The prepared policies of one rule.
#[derive(Debug, Default)]
pub struct RulePolicies {
    /// `waf`.
    pub waf: Option<waf::Waf>,
    /// `cors`.
    pub cors: Option<cors::Cors>,
    /// `authentication`.
    pub authentication: Option<authentication::Authentication>,
    /// `authorization`.
    pub authorization: Option<authorization::Authorization>,
    /// `rateLimit`.
    pub rate_limit: Option<limit::RateLimit>,
    /// `concurrencyLimit`.
    pub concurrency: Option<limit::Concurrency>,
    /// `requestTransform`.
    pub request: Option<transform::RequestTransform>,
    /// `responseTransform`.
    pub response: Option<transform::ResponseTransform>,
    /// `errors`.
    pub errors: Option<errors::ErrorPolicy>,
    /// `validation`.
    pub validation: Option<validation::Validation>,
    /// `cache`.
    pub cache: Option<cache::CachePolicy>,
}

impl RulePolicies {
    /// Whether a response phase before the cache store (validation, error formatting,
    /// the response transform) has anything to do for this rule.
    pub fn acts_on_responses(&self) -> bool {
        self.response.is_some()
            || self.errors.is_some()
            || self
                .validation
                .as_ref()
                .is_some_and(|v| v.response.is_some())
    }
}

/// State carried from table to table, by (route, rule, field, configuration), and the
/// process-wide backends policies use (Redis for global limits).
#[derive(Debug)]
pub struct PolicyStates {
    rate: Mutex<FxHashMap<String, Arc<limit::Buckets>>>,
    concurrency: Mutex<FxHashMap<String, Arc<limit::InFlight>>>,
    /// Remote key sets, by URI and CA: one fetcher per set, whichever rules use it.
    jwks: Mutex<FxHashMap<String, Arc<jwks::RemoteJwks>>>,
    /// `--redis`: where `scope: Global` limits count. `None`: they count locally.
    pub global: Option<limit::GlobalBackend>,
    /// The response cache (`--cache-capacity`).
    pub cache: cache::ResponseCache,
    /// Core Rule Set rule sets, by configuration.
    crs: Mutex<FxHashMap<String, Arc<waf::crs::RuleSet>>>,
    /// `--crs-rules`: where the CRS's rule files are.
    crs_rules: std::path::PathBuf,
}

impl Default for PolicyStates {
    fn default() -> PolicyStates {
        PolicyStates::new(None, cache::DEFAULT_CAPACITY)
    }
}

impl PolicyStates {
    /// States for a process whose global limits use `global`, with a response cache of
    /// `cache_capacity` bytes.
    pub fn new(global: Option<limit::GlobalBackend>, cache_capacity: u64) -> PolicyStates {
        PolicyStates {
            rate: Mutex::default(),
            concurrency: Mutex::default(),
            jwks: Mutex::default(),
            global,
            cache: cache::ResponseCache::new(cache_capacity),
            crs: Mutex::default(),
            crs_rules: waf::crs::DEFAULT_RULES_DIR.into(),
        }
    }

    /// The same, with the Core Rule Set's rule files in `dir`.
    pub fn with_crs_rules(mut self, dir: std::path::PathBuf) -> PolicyStates {
        self.crs_rules = dir;
        self
    }
}

/// A short, stable name for a policy as configured: FNV-1a (64 bit) of its state key, in
/// hex. Stable across processes and builds, so every replica serving the same table
/// names a global limit's Redis keys alike.
fn stable_tag(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One prepare's view of [`PolicyStates`]: takes the previous states, and keeps only
/// what the new table uses once it is applied.
#[derive(Debug, Default)]
pub struct StatesRound {
    rate: FxHashMap<String, Arc<limit::Buckets>>,
    concurrency: FxHashMap<String, Arc<limit::InFlight>>,
    jwks: FxHashMap<String, Arc<jwks::RemoteJwks>>,
    crs: FxHashMap<String, Arc<waf::crs::RuleSet>>,
}

/// The state under `key`: the previous table's when it had one, else `fresh()`; the
/// new table's map (`next`) records it either way.
fn carry<T>(
    prev: &Mutex<FxHashMap<String, Arc<T>>>,
    next: &mut FxHashMap<String, Arc<T>>,
    key: String,
    fresh: impl FnOnce() -> T,
) -> Arc<T> {
    let state = prev
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned()
        .unwrap_or_else(|| Arc::new(fresh()));
    next.insert(key, state.clone());
    state
}

impl PolicyStates {
    /// How many rate-limit states are kept.
    #[cfg(test)]
    pub(crate) fn rate_states(&self) -> usize {
        self.rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Keeps exactly the states of the table just applied.
    pub fn commit(&self, round: StatesRound) {
        *self.rate.lock().unwrap_or_else(PoisonError::into_inner) = round.rate;
        *self
            .concurrency
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = round.concurrency;
        *self.jwks.lock().unwrap_or_else(PoisonError::into_inner) = round.jwks;
        *self.crs.lock().unwrap_or_else(PoisonError::into_inner) = round.crs;
    }
}

/// The key of a policy's state: the rule and the policy as configured (its source
/// included, so two layers with equal values still count apart). The configuration is
/// the typed value's JSON, which is canonical (fields in declaration order, maps sorted),
/// so every replica and process serving the same table computes the same key.
fn state_key<T: serde::Serialize>(route: &str, rule: &Rule, slot: &Sourced<T>) -> String {
    let config = serde_json::to_string(&slot.config).unwrap_or_default();
    format!("{route}\0{}\0{}\0{config}", rule.name, slot.source)
}

/// Carries a rule's policy state into `round` as [`prepare`] would, for a rule whose
/// prepared policies are kept from the previous table (the same route object).
pub fn keep(route: &str, rule: &Rule, states: &PolicyStates, round: &mut StatesRound) {
    let policies = &rule.policies;
    if let Some(slot) = &policies.rate_limit {
        keep_state(&states.rate, &mut round.rate, state_key(route, rule, slot));
    }
    if let Some(slot) = &policies.concurrency_limit {
        keep_state(
            &states.concurrency,
            &mut round.concurrency,
            state_key(route, rule, slot),
        );
    }
    if let Some(key) = policies
        .authentication
        .as_ref()
        .and_then(|a| jwks_key(&a.config))
    {
        keep_state(&states.jwks, &mut round.jwks, key);
    }
    if let Some(key) = policies.waf.as_ref().and_then(|w| crs_key(&w.config)) {
        keep_state(&states.crs, &mut round.crs, key);
    }
}

/// The key of a rule's Core Rule Set configuration, when it enables the CRS: what its
/// rule set is loaded from (the settings and how much body it sees).
fn crs_key(w: &gatehouse_table::policy::Waf) -> Option<String> {
    let crs = w.core_rule_set.as_ref()?;
    let settings = serde_json::to_string(crs).unwrap_or_default();
    Some(format!("{settings}\0{}", w.max_inspect_bytes))
}

/// The Core Rule Set rule set of `w`: the one already loaded for the same settings,
/// else loaded now. `Ok(None)` when the rule does not enable the CRS.
fn crs_rules(
    states: &PolicyStates,
    round: &mut StatesRound,
    w: &gatehouse_table::policy::Waf,
) -> Result<Option<Arc<waf::crs::RuleSet>>, String> {
    let (Some(key), Some(crs)) = (crs_key(w), w.core_rule_set.as_ref()) else {
        return Ok(None);
    };
    if let Some(found) = round.crs.get(&key) {
        return Ok(Some(found.clone()));
    }
    let loaded = states
        .crs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    let set = match loaded {
        Some(set) => set,
        None => {
            let max = usize::try_from(w.max_inspect_bytes).unwrap_or(usize::MAX);
            Arc::new(waf::crs::RuleSet::load(crs, &states.crs_rules, max)?)
        }
    };
    round.crs.insert(key, set.clone());
    Ok(Some(set))
}

/// The key of a remote key set: its URI and CA.
fn jwks_key_of(uri: &str, ca: Option<&str>) -> String {
    format!("{uri}\0{}", ca.unwrap_or(""))
}

/// The key of a rule's remote key set, when it has one.
fn jwks_key(a: &gatehouse_table::auth::Authentication) -> Option<String> {
    match &a.jwt.as_ref()?.keys {
        gatehouse_table::auth::JwtKeys::Remote { uri, ca_pem } => {
            Some(jwks_key_of(uri, ca_pem.as_deref()))
        }
        _ => None,
    }
}

/// The remote key set of `uri` (and `ca`): the running one, else a new one, which
/// starts fetching at once.
fn remote_jwks(
    states: &PolicyStates,
    round: &mut StatesRound,
    uri: &str,
    ca: Option<&str>,
) -> Result<Arc<jwks::RemoteJwks>, String> {
    let key = jwks_key_of(uri, ca);
    if let Some(found) = round.jwks.get(&key) {
        return Ok(found.clone());
    }
    let running = states
        .jwks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    let set = match running {
        Some(set) => set,
        None => jwks::RemoteJwks::start(uri, ca)?,
    };
    round.jwks.insert(key, set.clone());
    Ok(set)
}

/// The previous table's state under `key`, recorded in `next` too, when it had one.
fn keep_state<T>(
    prev: &Mutex<FxHashMap<String, Arc<T>>>,
    next: &mut FxHashMap<String, Arc<T>>,
    key: String,
) {
    let state = prev
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(state) = state {
        next.insert(key, state);
    }
}

/// Prepares a rule's policies; `None` when it has none the request path acts on.
pub fn prepare(
    route: &str,
    rule: &Rule,
    states: &PolicyStates,
    round: &mut StatesRound,
) -> Result<Option<Arc<RulePolicies>>, PolicyError> {
    let policies = &rule.policies;
    if policies.is_empty() {
        return Ok(None);
    }
    let fail = |field: PolicyField| {
        move |message: String| PolicyError {
            route: route.to_string(),
            rule: rule.name.clone(),
            field: field.as_str(),
            message,
        }
    };
    let mut out = RulePolicies {
        cors: policies
            .cors
            .as_ref()
            .map(|s| cors::Cors::prepare(&s.config)),
        authorization: policies
            .authorization
            .as_ref()
            .map(|s| authorization::Authorization::prepare(&s.config)),
        ..RulePolicies::default()
    };
    if let Some(slot) = &policies.waf {
        let crs = crs_rules(states, round, &slot.config).map_err(fail(PolicyField::Waf))?;
        let schema = policies
            .validation
            .as_ref()
            .and_then(|v| v.config.request.as_ref())
            .and_then(|r| r.schema.as_ref());
        out.waf = Some(waf::Waf::prepare(&slot.config, crs, schema));
    }
    if let Some(slot) = &policies.authentication {
        out.authentication = Some(
            authentication::Authentication::prepare(route, &slot.config, |uri, ca| {
                remote_jwks(states, round, uri, ca)
            })
            .map_err(fail(PolicyField::Authentication))?,
        );
    }
    if let Some(slot) = &policies.rate_limit {
        if slot.config.scope == RateLimitScope::Global && states.global.is_none() {
            tracing::warn!(
                route,
                rule = %rule.name,
                "rateLimit scope Global counts per replica: no --redis is configured"
            );
        }
        let key = state_key(route, rule, slot);
        let tag = stable_tag(&key);
        let prepared = limit::RateLimit::prepare(&slot.config, states.global.as_ref(), &tag, |n| {
            carry(&states.rate, &mut round.rate, key, || {
                limit::Buckets::new(n)
            })
        })
        .map_err(fail(PolicyField::RateLimit))?;
        out.rate_limit = Some(prepared);
    }
    if let Some(slot) = &policies.concurrency_limit {
        let config = &slot.config;
        let key = state_key(route, rule, slot);
        let in_flight = carry(&states.concurrency, &mut round.concurrency, key, || {
            limit::InFlight::new(config.max_in_flight)
        });
        out.concurrency = Some(limit::Concurrency::prepare(config, in_flight));
    }
    if let Some(slot) = &policies.validation {
        out.validation = Some(
            validation::Validation::prepare(&slot.config).map_err(fail(PolicyField::Validation))?,
        );
    }
    if let Some(slot) = &policies.cache {
        let tag = stable_tag(&state_key(route, rule, slot));
        out.cache = Some(
            cache::CachePolicy::prepare(&slot.config, route, &tag, states.cache.clone())
                .map_err(fail(PolicyField::Cache))?,
        );
    }
    if let Some(slot) = &policies.request_transform {
        out.request = Some(
            transform::RequestTransform::prepare(&slot.config)
                .map_err(fail(PolicyField::RequestTransform))?,
        );
    }
    if let Some(slot) = &policies.response_transform {
        out.response = Some(
            transform::ResponseTransform::prepare(&slot.config)
                .map_err(fail(PolicyField::ResponseTransform))?,
        );
    }
    out.errors = policies
        .errors
        .as_ref()
        .map(|s| errors::ErrorPolicy::prepare(&s.config));
    Ok(Some(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::policy::{ConcurrencyLimit, Sourced};

    #[test]
    fn state_keys_name_the_policy_as_configured() {
        let rule = Rule {
            name: "r".into(),
            ..Default::default()
        };
        let slot = |source: &str, max_in_flight| Sourced {
            source: source.into(),
            config: ConcurrencyLimit {
                max_in_flight,
                queue: 0,
                queue_timeout_ms: 1_000,
            },
        };
        let key = state_key("ns/a", &rule, &slot("rule", 5));
        assert_eq!(
            key,
            "ns/a\0r\0rule\0{\"maxInFlight\":5,\"queue\":0,\"queueTimeoutMs\":1000}"
        );
        assert_eq!(key, state_key("ns/a", &rule, &slot("rule", 5)));
        assert_ne!(key, state_key("ns/a", &rule, &slot("rule", 6)));
        assert_ne!(key, state_key("ns/a", &rule, &slot("route", 5)));
        assert_eq!(stable_tag(&key), stable_tag(&key.clone()));
    }
}
