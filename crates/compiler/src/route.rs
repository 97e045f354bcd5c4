//! ApiRoute → draft `table::Route`: hosts, matches with their ranks, actions,
//! references and policy layering. Conflicts are decided afterwards over all routes
//! (`resolve_conflicts` in `lib.rs`), because they depend on the other routes.

mod action;
mod matches;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gatehouse_api::route::{ApiRouteSpec, RouteMatch, RouteTls, Rule as ApiRule};
use gatehouse_api::{ApiRoute, LocalRef, Policies};
use gatehouse_router::RegexChecker;
use gatehouse_table::{
    self as table, Action, BlockReason, Blocker, PolicyField, RulePolicies, TemplatePart,
};

use crate::diagnostics::{Reason, Sink};
use crate::values::{is_host_pattern, parse_duration};
use crate::{Index, auth, lower, policy, support, version};
use matches::compile_match;

/// A route that compiled, before conflicts. Cheap to clone: what it holds is shared,
/// so a draft remembered by [`crate::Incremental`] is reused without a copy.
#[derive(Clone, Debug)]
pub(crate) struct RouteDraft {
    pub route: Arc<table::Route>,
    /// Per rule, per match: what precedence and conflicts need.
    pub keys: Arc<Vec<Vec<MatchKey>>>,
    /// `namespace/name` of the ApiPolicies it references (resolved or not).
    pub policy_refs: Arc<BTreeSet<String>>,
    /// The certificate of `spec.tls`, when it is usable.
    pub certificate: Option<Arc<table::Certificate>>,
}

/// Precedence facts of one match.
#[derive(Debug, Clone)]
pub(crate) struct MatchKey {
    /// 0 Exact, 1 Template/Prefix, 2 Regex.
    pub class: u8,
    pub literal_len: usize,
    pub conditions: usize,
    /// Canonical form: equal signatures select exactly the same requests.
    pub signature: String,
    /// Index of the match in its rule (as written).
    pub index: usize,
    /// Hash of `signature`, computed here (in parallel) for the conflict pass.
    pub signature_hash: u64,
    /// Carries the route's API version condition (`spec.version`): at otherwise equal
    /// precedence it beats a match without one, so a request naming the version goes to
    /// that version rather than to a `default` one.
    pub versioned: bool,
}

impl MatchKey {
    /// The match's [`table::Match::rank`]: path kind, then longer literal, then more
    /// conditions, then versioned, packed so that lower wins. Literal lengths past
    /// 65,535 and condition counts past 255 compare as those (far beyond what the CRD
    /// admits).
    pub fn rank(&self) -> u32 {
        let literal = 0xFFFF - self.literal_len.min(0xFFFF) as u32;
        let conditions = 0xFF - self.conditions.min(0xFF) as u32;
        (u32::from(self.class) << 25)
            | (literal << 9)
            | (conditions << 1)
            | u32::from(!self.versioned)
    }
}

pub(crate) fn compile(
    r: &ApiRoute,
    index: &Index<'_>,
    regex: &mut RegexChecker,
    sink: &mut Sink<'_>,
) -> Option<RouteDraft> {
    let spec = &r.spec;
    let mut cx = RouteCx {
        ns: r.metadata.namespace.as_deref().unwrap_or("default"),
        id: sink.object().id(),
        index,
        regex,
        sink,
        valid: true,
        policy_refs: BTreeSet::new(),
    };
    let hosts = cx.hosts(&spec.hosts);
    let wide = cx.route_wide(spec);
    let (tls, certificate) = match &spec.tls {
        Some(t) => {
            let (id, c) = cx.tls(t, &hosts);
            (Some(id), c)
        }
        None => (None, None),
    };

    let mut rules = Vec::new();
    let mut keys = Vec::new();
    for (ri, rule) in spec.rules.iter().enumerate() {
        let (compiled, rule_keys) = cx.rule(&wide, ri, rule);
        rules.push(compiled);
        keys.push(rule_keys);
    }
    cx.check_unique(&rules, &keys);

    for (rule, keys) in rules.iter_mut().zip(&keys) {
        for (m, key) in rule.matches.iter_mut().zip(keys) {
            m.rank = key.rank();
        }
    }
    cx.valid.then(|| RouteDraft {
        route: Arc::new(table::Route {
            id: cx.id,
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            hosts: hosts.into_iter().collect(),
            rules,
            version: wide.version.map(|plan| plan.table),
            tls,
            docs: r.spec.docs.as_deref().map(crate::docs::route),
        }),
        keys: Arc::new(keys),
        policy_refs: Arc::new(cx.policy_refs),
        certificate,
    })
}

/// One route being compiled: what its steps read, where they report, and what they
/// gather for the draft.
struct RouteCx<'a, 's> {
    ns: &'a str,
    /// `namespace/name`.
    id: String,
    index: &'a Index<'a>,
    regex: &'a mut RegexChecker,
    sink: &'a mut Sink<'s>,
    /// False once an `Invalid` error is reported: the route stays out of the table.
    valid: bool,
    /// `namespace/name` of the ApiPolicies it references (resolved or not).
    policy_refs: BTreeSet<String>,
}

/// What the route gives each of its rules.
struct RouteWide<'a> {
    /// API versioning, compiled into every match (`version.rs`).
    version: Option<version::Plan>,
    /// The route's policy layers, weakest first: its `policyRefs`, then its `policies`.
    layers: Vec<Layer<'a>>,
    /// Why every rule answers 503 (route-wide fields that cannot be served).
    blocked: Vec<Blocker>,
}

/// One rule being compiled: where it is in the route, and what its steps gather.
struct RuleCx<'a> {
    rule: &'a ApiRule,
    /// Its index in `spec.rules`.
    ri: usize,
    /// As written, or `rule-N`.
    name: String,
    /// Per compiled match, the path parameters it captures.
    captures: Vec<Vec<String>>,
    /// Why the rule answers 503: the route's blockers, then its own.
    blocked: Vec<Blocker>,
}

impl RuleCx<'_> {
    /// The path of a field of this rule (`.timeout` → `spec.rules[2].timeout`).
    fn at(&self, field: &str) -> String {
        format!("spec.rules[{}]{field}", self.ri)
    }
}

/// One layer of policies: where it is written, and the name of its source in the table.
#[derive(Clone)]
struct Layer<'a> {
    source: String,
    field: String,
    policies: &'a Policies,
}

// === impl RouteCx: the route ===

impl<'a> RouteCx<'a, '_> {
    fn invalid(&mut self, field: String, message: String) {
        self.sink.error(field, Reason::Invalid, message);
        self.valid = false;
    }

    /// Host patterns, lowercase, without a trailing dot.
    fn hosts(&mut self, written: &[String]) -> BTreeSet<String> {
        let mut hosts = BTreeSet::new();
        for (i, h) in written.iter().enumerate() {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            if is_host_pattern(&h) {
                hosts.insert(h);
            } else {
                self.invalid(
                    format!("spec.hosts[{i}]"),
                    format!("{h:?} is not a host name or *.wildcard"),
                );
            }
        }
        hosts
    }

    /// The route-wide parts: versioning, the route's policy layers.
    fn route_wide(&mut self, spec: &'a ApiRouteSpec) -> RouteWide<'a> {
        let mut blocked = Vec::new();
        // API versioning: compiled into every match (`version.rs`).
        let version = spec.version.as_deref().and_then(|v| {
            let plan = version::plan(v, self.sink);
            if plan.is_none() {
                self.valid = false;
            }
            plan
        });
        let mut layers = Vec::new();
        self.resolve_refs(
            &spec.policy_refs,
            "spec.policyRefs",
            &mut layers,
            &mut blocked,
        );
        if let Some(p) = &spec.policies {
            layers.push(self.own_layer(p, "route", "spec.policies".into()));
        }
        RouteWide {
            version,
            layers,
            blocked,
        }
    }

    /// `spec.tls`: the certificate's id (the Secret's `namespace/name`), and the
    /// certificate when it is usable. An unusable one is the route's error (its
    /// `ResolvedRefs` condition): its hosts are then not served on HTTPS, and plain HTTP
    /// is served as without `tls`. A host the certificate does not name is a warning.
    fn tls(
        &mut self,
        tls: &RouteTls,
        hosts: &BTreeSet<String>,
    ) -> (String, Option<Arc<table::Certificate>>) {
        let ns = self.ns;
        let id = format!("{ns}/{}", tls.secret_name);
        let Some(secret) = self.index.secret(ns, &tls.secret_name) else {
            self.sink.error(
                "spec.tls.secretName",
                Reason::SecretNotFound,
                format!("Secret {id} not found; the route's hosts are not served on HTTPS"),
            );
            return (id, None);
        };
        match crate::tls::check(&id, secret, crate::tls::now()) {
            Err(why) => {
                self.sink.error(
                    "spec.tls.secretName",
                    Reason::InvalidCertificate,
                    format!("{why}; the route's hosts are not served on HTTPS"),
                );
                (id, None)
            }
            Ok(checked) => {
                for host in hosts {
                    if !checked.names.iter().any(|n| crate::tls::covers(n, host)) {
                        self.sink.warning(
                            "spec.tls.secretName",
                            Reason::InvalidCertificate,
                            format!(
                                "the certificate in Secret {id} does not name {host:?} \
                                 (it names {}); clients will refuse it for that host",
                                checked.names.join(", ")
                            ),
                        );
                    }
                }
                (id, Some(Arc::new(checked.certificate)))
            }
        }
    }

    /// Rule names are unique; no two matches of the route select the same requests.
    fn check_unique(&mut self, rules: &[table::Rule], keys: &[Vec<MatchKey>]) {
        let mut by_name: Vec<(&str, usize)> = rules
            .iter()
            .enumerate()
            .map(|(ri, r)| (r.name.as_str(), ri))
            .collect();
        by_name.sort_unstable();
        for w in by_name.windows(2) {
            if w[0].0 == w[1].0 {
                self.invalid(
                    format!("spec.rules[{}].name", w[1].1),
                    format!("rule name {:?} is used twice", w[1].0),
                );
            }
        }
        let mut by_signature: Vec<(&str, usize, usize)> = keys
            .iter()
            .enumerate()
            .flat_map(|(ri, ks)| ks.iter().map(move |k| (k.signature.as_str(), ri, k.index)))
            .collect();
        by_signature.sort_unstable();
        for w in by_signature.windows(2) {
            if w[0].0 == w[1].0 {
                let (_, r0, m0) = w[0];
                let (_, r1, m1) = w[1];
                self.invalid(
                    format!("spec.rules[{r1}].matches[{m1}]"),
                    format!(
                        "selects exactly the same requests as rule {:?} match {m0}; one of them can never be used",
                        rules[r0].name
                    ),
                );
            }
        }
    }
}

// === impl RouteCx: one rule ===

impl<'a> RouteCx<'a, '_> {
    /// One rule → its table form and the precedence keys of its matches.
    fn rule(
        &mut self,
        wide: &RouteWide<'a>,
        ri: usize,
        rule: &'a ApiRule,
    ) -> (table::Rule, Vec<MatchKey>) {
        let mut rc = RuleCx {
            rule,
            ri,
            name: rule.name.clone().unwrap_or_else(|| format!("rule-{ri}")),
            captures: Vec::new(),
            blocked: wide.blocked.clone(),
        };
        let (matches, keys) = self.matches(&mut rc, wide.version.as_ref());
        let action = self.action(&mut rc);
        let timeout_ms = self.rule_timeout(&rc);
        let policies = self.policies(&mut rc, &wide.layers);
        self.identity_in_calls(&rc, &action, &policies);
        let docs = rule
            .docs
            .as_deref()
            .map(|d| crate::docs::rule(d, &rc.at(".docs"), self.sink));
        rc.blocked.sort();
        rc.blocked.dedup();
        let rule = table::Rule {
            name: rc.name,
            matches,
            action,
            timeout_ms,
            policies,
            blocked: rc.blocked,
            docs,
        };
        (rule, keys)
    }

    /// An aggregate call whose path reads who the caller is (`${consumer}`,
    /// `${claim.x}`) on a rule whose authentication cannot say: a warning, since the
    /// value is always empty.
    fn identity_in_calls(&mut self, rc: &RuleCx<'_>, action: &Action, policies: &RulePolicies) {
        let Action::Aggregate(agg) = action else {
            return;
        };
        let auth = policies.authentication.as_ref().map(|a| &a.config);
        for (i, call) in agg.calls.iter().enumerate() {
            for part in &call.path {
                let why = match part {
                    TemplatePart::Consumer if auth.is_none() => "${consumer}".to_string(),
                    TemplatePart::Claim(c) if auth.is_none_or(|a| a.jwt.is_none()) => {
                        format!("${{claim.{c}}}")
                    }
                    _ => continue,
                };
                let missing = if auth.is_none() {
                    "the rule has no authentication"
                } else {
                    "the rule's authentication has no jwt"
                };
                self.sink.warning(
                    rc.at(&format!(".aggregate.calls[{i}].path")),
                    Reason::Invalid,
                    format!("{why} is always empty here: {missing}"),
                );
            }
        }
    }

    /// The rule's matches (one that matches everything when none is written), each
    /// under the route's version when it has one, and as written too for a `default`
    /// version; records what each captures.
    fn matches(
        &mut self,
        rc: &mut RuleCx<'_>,
        version: Option<&version::Plan>,
    ) -> (Vec<table::Match>, Vec<MatchKey>) {
        let ri = rc.ri;
        let mut matches = Vec::new();
        let mut keys = Vec::new();
        let empty = [RouteMatch::default()];
        let written: &[RouteMatch] = if rc.rule.matches.is_empty() {
            &empty
        } else {
            &rc.rule.matches
        };
        for (mi, m) in written.iter().enumerate() {
            let (tm, key, caps) = match compile_match(m, ri, mi, self.regex) {
                Ok(compiled) => compiled,
                Err((field, msg)) => {
                    self.invalid(field, msg);
                    continue;
                }
            };
            rc.captures.push(caps);
            let Some(plan) = version else {
                matches.push(tm);
                keys.push(key);
                continue;
            };
            // Versioned: the match under the version, then (default) as written.
            plan.lint(
                m,
                &|| format!("spec.rules[{ri}].matches[{mi}].path.value"),
                self.sink,
            );
            match compile_match(&plan.apply(m), ri, mi, self.regex) {
                Ok((mut vm, mut vkey, _)) => {
                    vm.strip_prefix = plan.strip_prefix();
                    vkey.versioned = true;
                    matches.push(vm);
                    keys.push(vkey);
                    if plan.default {
                        matches.push(tm);
                        keys.push(key);
                    }
                }
                Err((field, msg)) => {
                    self.invalid(field, format!("under spec.version: {msg}"));
                }
            }
        }
        (matches, keys)
    }

    /// The rule's `timeout`, in milliseconds.
    fn rule_timeout(&mut self, rc: &RuleCx<'_>) -> Option<u64> {
        let t = rc.rule.timeout.as_ref()?;
        match parse_duration(&t.0) {
            Ok(0) => {
                self.invalid(rc.at(".timeout"), "must be greater than 0".into());
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.invalid(rc.at(".timeout"), e);
                None
            }
        }
    }
}

// === impl RouteCx: policy layering ===

impl<'a> RouteCx<'a, '_> {
    /// The rule's effective policies: the route's layers, then the rule's `policyRefs`
    /// and `policies`; a later layer replaces a whole top-level field. Fields the data
    /// plane does not enforce block the rule.
    fn policies(&mut self, rc: &mut RuleCx<'a>, route_layers: &[Layer<'a>]) -> RulePolicies {
        let mut layers = route_layers.to_vec();
        self.resolve_refs(
            &rc.rule.policy_refs,
            &rc.at(".policyRefs"),
            &mut layers,
            &mut rc.blocked,
        );
        if let Some(p) = &rc.rule.policies {
            layers.push(self.own_layer(p, "rule", rc.at(".policies")));
        }
        let mut effective: BTreeMap<PolicyField, &Layer<'_>> = BTreeMap::new();
        for layer in &layers {
            for field in policy::set_fields(layer.policies) {
                effective.insert(field, layer);
            }
        }
        let mut policies = RulePolicies::default();
        for (field, layer) in effective {
            let path = format!("{}.{}", layer.field, field.as_str());
            self.block_unsupported(rc, field, layer, &path);
            let secrets = auth::Secrets {
                ns: self.ns,
                index: self.index,
            };
            if let Err(e) = lower::field(
                &mut policies,
                field,
                layer.policies,
                &layer.source,
                &secrets,
            ) {
                self.invalid(path, e);
            }
        }
        policies
    }

    /// A layer written in the route itself (`policies` of the route or of a rule),
    /// validated.
    fn own_layer(&mut self, p: &'a Policies, source: &str, field: String) -> Layer<'a> {
        if !policy::validate(p, &field, self.ns, self.index, self.sink) {
            self.valid = false;
        }
        Layer {
            source: source.into(),
            field,
            policies: p,
        }
    }

    /// The parts of an effective field the data plane does not enforce: an error each,
    /// and a blocker on the rule.
    fn block_unsupported(
        &mut self,
        rc: &mut RuleCx<'_>,
        field: PolicyField,
        layer: &Layer<'_>,
        path: &str,
    ) {
        for part in support::unsupported_policy_parts(field, layer.policies) {
            let (sub, what) = if part.is_empty() {
                (String::new(), format!("policy {}", field.as_str()))
            } else {
                (format!(".{part}"), format!("{}.{part}", field.as_str()))
            };
            let where_ = if layer.source.starts_with("ApiPolicy") {
                format!("{} spec.{}{sub}", layer.source, field.as_str())
            } else {
                format!("ApiRoute {} {path}{sub}", self.id)
            };
            rc.blocked.push(Blocker {
                field: where_,
                reason: BlockReason::UnsupportedValue,
            });
            self.sink.error(
                format!("{path}{sub}"),
                Reason::UnsupportedValue,
                format!(
                    "{what} is not enforced by this gateway version yet; rule {:?} answers 503 until it is",
                    rc.name
                ),
            );
        }
    }

    /// The layers of `policyRefs` written at `field`; one that does not resolve blocks
    /// the rules it applies to.
    fn resolve_refs(
        &mut self,
        refs: &[LocalRef],
        field: &str,
        layers: &mut Vec<Layer<'a>>,
        blocked: &mut Vec<Blocker>,
    ) {
        let ns = self.ns;
        for (i, r) in refs.iter().enumerate() {
            let pid = format!("{ns}/{}", r.name);
            self.policy_refs.insert(pid.clone());
            match self.index.policy(ns, &r.name) {
                Some(Some(p)) => layers.push(Layer {
                    source: format!("ApiPolicy {pid}"),
                    field: format!("{field}[{i}]"),
                    policies: p,
                }),
                found => {
                    let msg = if found.is_none() {
                        format!(
                            "ApiPolicy {pid} not found; the rules it applies to answer 503 until it exists"
                        )
                    } else {
                        format!(
                            "ApiPolicy {pid} is not accepted (see its status); the rules it applies to answer 503"
                        )
                    };
                    self.sink
                        .error(format!("{field}[{i}]"), Reason::PolicyNotFound, msg);
                    blocked.push(Blocker {
                        field: format!("ApiRoute {} {field}[{i}]", self.id),
                        reason: BlockReason::PolicyNotFound,
                    });
                }
            }
        }
    }
}
