//! ApiRoute → draft `table::Route`: hosts, matches with their ranks, actions,
//! references and policy layering. Conflicts are decided afterwards over all routes
//! (`resolve_conflicts` in `lib.rs`), because they depend on the other routes.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use gatehouse_api::route::{
    Aggregate, AggregateOnError, MergeStrategy, PathMatchType, RouteMatch,
    ValueMatch as ApiValueMatch, ValueMatchType,
};
use gatehouse_api::{ApiRoute, LocalRef, Policies};
use gatehouse_router::RegexChecker;
use gatehouse_table::{
    self as table, Action, AggregateMerge, BackendRef, BlockReason, Blocker, MirrorRef, PathMatch,
    PolicyField, RedirectScheme, RulePolicies, Segment, Template, TemplatePart, ValueMatch,
    ValueMatchKind,
};

use crate::diagnostics::{Reason, Sink};
use crate::values::{
    is_host_pattern, is_token, parse_duration, parse_template, path_params, valid_ident,
};
use crate::{Index, lower, policy, support, version};

/// A route that compiled, before conflicts. Cheap to clone: what it holds is shared,
/// so a draft remembered by [`crate::Incremental`] is reused without a copy.
#[derive(Clone, Debug)]
pub(crate) struct RouteDraft {
    pub route: std::sync::Arc<table::Route>,
    /// Per rule, per match: what precedence and conflicts need.
    pub keys: std::sync::Arc<Vec<Vec<MatchKey>>>,
    /// `namespace/name` of the ApiPolicies it references (resolved or not).
    pub policy_refs: std::sync::Arc<BTreeSet<String>>,
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
    let ns = r.metadata.namespace.as_deref().unwrap_or("default");
    let id = sink.object().id();
    let spec = &r.spec;
    let valid = Cell::new(true);
    let invalid = |sink: &mut Sink<'_>, field: String, msg: String| {
        sink.error(field, Reason::Invalid, msg);
        valid.set(false);
    };

    // Hosts.
    let mut hosts = BTreeSet::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if is_host_pattern(&h) {
            hosts.insert(h);
        } else {
            invalid(
                sink,
                format!("spec.hosts[{i}]"),
                format!("{h:?} is not a host name or *.wildcard"),
            );
        }
    }

    // Route-wide blockers.
    let mut route_blocked = Vec::new();
    if let Some(tls) = &spec.tls {
        if index.secret(ns, &tls.secret_name).is_none() {
            sink.error(
                "spec.tls.secretName",
                Reason::SecretNotFound,
                format!(
                    "Secret {ns}/{} not found; the route answers 503",
                    tls.secret_name
                ),
            );
            route_blocked.push(Blocker {
                field: format!("ApiRoute {id} spec.tls.secretName"),
                reason: BlockReason::SecretNotFound,
            });
        }
        if !support::ROUTE_TLS {
            unsupported(
                sink,
                &mut route_blocked,
                &id,
                "spec.tls",
                "serving routes over HTTPS",
                "route",
            );
        }
    }
    // API versioning: compiled into every match below (`version.rs`).
    let version = spec.version.as_deref().and_then(|v| {
        let plan = version::plan(v, sink);
        if plan.is_none() {
            valid.set(false);
        }
        plan
    });
    if spec.docs.is_some() && !support::DOCS {
        sink.warning(
            "spec.docs",
            Reason::UnsupportedValue,
            "the docs portal is not implemented yet; docs are not served",
        );
    }

    // Route-level policy layers.
    let mut policy_refs = BTreeSet::new();
    let mut route_layers = Vec::new();
    resolve_refs(
        &spec.policy_refs,
        "spec.policyRefs",
        ns,
        index,
        sink,
        &mut route_layers,
        &mut route_blocked,
        &mut policy_refs,
        &id,
    );
    if let Some(p) = &spec.policies {
        if !policy::validate(p, "spec.policies", ns, index, sink) {
            valid.set(false);
        }
        route_layers.push(Layer {
            source: "route".into(),
            field: "spec.policies".into(),
            policies: p,
        });
    }

    // Rules.
    let mut rules = Vec::new();
    let mut keys = Vec::new();
    for (ri, rule) in spec.rules.iter().enumerate() {
        let at = |f: &str| format!("spec.rules[{ri}]{f}");
        let name = rule.name.clone().unwrap_or_else(|| format!("rule-{ri}"));

        // Matches.
        let mut matches = Vec::new();
        let mut rule_keys = Vec::new();
        let mut captures: Vec<Vec<String>> = Vec::new();
        let empty = [RouteMatch::default()];
        let written: &[RouteMatch] = if rule.matches.is_empty() {
            &empty
        } else {
            &rule.matches
        };
        for (mi, m) in written.iter().enumerate() {
            let (tm, key, caps) = match compile_match(m, ri, mi, regex) {
                Ok(compiled) => compiled,
                Err((field, msg)) => {
                    invalid(sink, field, msg);
                    continue;
                }
            };
            captures.push(caps);
            let Some(plan) = &version else {
                matches.push(tm);
                rule_keys.push(key);
                continue;
            };
            // Versioned: the match under the version, then (default) as written.
            plan.lint(
                m,
                &|| format!("spec.rules[{ri}].matches[{mi}].path.value"),
                sink,
            );
            match compile_match(&plan.apply(m), ri, mi, regex) {
                Ok((mut vm, mut vkey, _)) => {
                    vm.strip_prefix = plan.strip_prefix();
                    vkey.versioned = true;
                    matches.push(vm);
                    rule_keys.push(vkey);
                    if plan.default {
                        matches.push(tm);
                        rule_keys.push(key);
                    }
                }
                Err((field, msg)) => {
                    invalid(sink, field, format!("under spec.version: {msg}"));
                }
            }
        }

        // Action.
        let mut blocked = route_blocked.clone();
        let action = compile_action(
            rule,
            ri,
            ns,
            &id,
            &captures,
            index,
            sink,
            &mut blocked,
            &valid,
        );

        let timeout_ms = rule
            .timeout
            .as_ref()
            .and_then(|t| match parse_duration(&t.0) {
                Ok(0) => {
                    invalid(sink, at(".timeout"), "must be greater than 0".into());
                    None
                }
                Ok(v) => Some(v),
                Err(e) => {
                    invalid(sink, at(".timeout"), e);
                    None
                }
            });

        // Policy layering: route refs < route policies < rule refs < rule policies.
        let mut layers: Vec<Layer<'_>> = route_layers.clone();
        resolve_refs(
            &rule.policy_refs,
            &at(".policyRefs"),
            ns,
            index,
            sink,
            &mut layers,
            &mut blocked,
            &mut policy_refs,
            &id,
        );
        if let Some(p) = &rule.policies {
            if !policy::validate(p, &at(".policies"), ns, index, sink) {
                valid.set(false);
            }
            layers.push(Layer {
                source: "rule".into(),
                field: at(".policies"),
                policies: p,
            });
        }
        let mut effective: BTreeMap<PolicyField, &Layer<'_>> = BTreeMap::new();
        for layer in &layers {
            for field in policy::set_fields(layer.policies) {
                effective.insert(field, layer);
            }
        }
        let mut policies = RulePolicies::default();
        for (field, layer) in &effective {
            let path = format!("{}.{}", layer.field, field.as_str());
            for part in support::unsupported_policy_parts(*field, layer.policies) {
                let (sub, what) = if part.is_empty() {
                    (String::new(), format!("policy {}", field.as_str()))
                } else {
                    (format!(".{part}"), format!("{}.{part}", field.as_str()))
                };
                let where_ = if layer.source.starts_with("ApiPolicy") {
                    format!("{} spec.{}{sub}", layer.source, field.as_str())
                } else {
                    format!("ApiRoute {id} {path}{sub}")
                };
                blocked.push(Blocker {
                    field: where_,
                    reason: BlockReason::UnsupportedValue,
                });
                sink.error(
                    format!("{path}{sub}"),
                    Reason::UnsupportedValue,
                    format!("{what} is not enforced by this gateway version yet; rule {name:?} answers 503 until it is"),
                );
            }
            if let Err(e) = lower::field(&mut policies, *field, layer.policies, &layer.source) {
                invalid(sink, path, e);
            }
        }
        if rule.docs.is_some() && !support::DOCS {
            sink.warning(
                at(".docs"),
                Reason::UnsupportedValue,
                "the docs portal is not implemented yet; docs are not served",
            );
        }
        blocked.sort();
        blocked.dedup();

        rules.push(table::Rule {
            name,
            matches,
            action,
            timeout_ms,
            policies,
            blocked,
        });
        keys.push(rule_keys);
    }

    // Rule names are unique; no two matches of the route select the same requests.
    let mut by_name: Vec<(&str, usize)> = rules
        .iter()
        .enumerate()
        .map(|(ri, r)| (r.name.as_str(), ri))
        .collect();
    by_name.sort_unstable();
    for w in by_name.windows(2) {
        if w[0].0 == w[1].0 {
            invalid(
                sink,
                format!("spec.rules[{}].name", w[1].1),
                format!("rule name {:?} is used twice", w[1].0),
            );
        }
    }
    let mut by_signature: Vec<(&str, usize, usize)> = keys
        .iter()
        .enumerate()
        .flat_map(|(ri, ks): (usize, &Vec<MatchKey>)| {
            ks.iter().map(move |k| (k.signature.as_str(), ri, k.index))
        })
        .collect();
    by_signature.sort_unstable();
    for w in by_signature.windows(2) {
        if w[0].0 == w[1].0 {
            let (_, r0, m0) = w[0];
            let (_, r1, m1) = w[1];
            invalid(
                sink,
                format!("spec.rules[{r1}].matches[{m1}]"),
                format!(
                    "selects exactly the same requests as rule {:?} match {m0}; one of them can never be used",
                    rules[r0].name
                ),
            );
        }
    }

    for (rule, keys) in rules.iter_mut().zip(&keys) {
        for (m, key) in rule.matches.iter_mut().zip(keys) {
            m.rank = key.rank();
        }
    }
    valid.get().then(|| RouteDraft {
        route: std::sync::Arc::new(table::Route {
            id,
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            hosts: hosts.into_iter().collect(),
            rules,
            version: version.map(|plan| plan.table),
        }),
        keys: std::sync::Arc::new(keys),
        policy_refs: std::sync::Arc::new(policy_refs),
    })
}

#[derive(Clone)]
struct Layer<'a> {
    source: String,
    field: String,
    policies: &'a Policies,
}

fn unsupported(
    sink: &mut Sink<'_>,
    blocked: &mut Vec<Blocker>,
    id: &str,
    field: &str,
    what: &str,
    scope: &str,
) {
    sink.error(
        field,
        Reason::UnsupportedValue,
        format!("{what} is not implemented by this gateway version yet; the {scope} answers 503 until it is"),
    );
    blocked.push(Blocker {
        field: format!("ApiRoute {id} {field}"),
        reason: BlockReason::UnsupportedValue,
    });
}

#[allow(clippy::too_many_arguments)] // one call site per layer; a struct would only rename these
fn resolve_refs<'a>(
    refs: &[LocalRef],
    field: &str,
    ns: &str,
    index: &'a Index<'_>,
    sink: &mut Sink<'_>,
    layers: &mut Vec<Layer<'a>>,
    blocked: &mut Vec<Blocker>,
    policy_refs: &mut BTreeSet<String>,
    id: &str,
) {
    for (i, r) in refs.iter().enumerate() {
        let pid = format!("{ns}/{}", r.name);
        policy_refs.insert(pid.clone());
        match index.policy(ns, &r.name) {
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
                sink.error(format!("{field}[{i}]"), Reason::PolicyNotFound, msg);
                blocked.push(Blocker {
                    field: format!("ApiRoute {id} {field}[{i}]"),
                    reason: BlockReason::PolicyNotFound,
                });
            }
        }
    }
}

type MatchError = (String, String);

/// One match → table match, precedence key and the path parameters it captures.
fn compile_match(
    m: &RouteMatch,
    ri: usize,
    mi: usize,
    regex: &mut RegexChecker,
) -> Result<(table::Match, MatchKey, Vec<String>), MatchError> {
    // Field paths are only built when something is wrong.
    let at = || format!("spec.rules[{ri}].matches[{mi}]");
    let err = |f: &str, msg: String| (format!("{}{f}", at()), msg);
    let mut caps = Vec::new();
    let (path, class, literal_len, sig) = match &m.path {
        None => (PathMatch::Any, 1, 1, "Prefix:/".to_string()),
        Some(p) => match p.kind {
            PathMatchType::Exact | PathMatchType::Prefix => {
                let n = gatehouse_router::normalize(&p.value)
                    .map_err(|e| err(".path.value", format!("{:?}: {e}", p.value)))?;
                let mut v = n.path.into_owned();
                if p.kind == PathMatchType::Prefix {
                    while v.len() > 1 && v.ends_with('/') {
                        v.pop();
                    }
                    (
                        PathMatch::Prefix(v.clone()),
                        1,
                        v.len(),
                        ["Prefix:", v.as_str()].concat(),
                    )
                } else {
                    (
                        PathMatch::Exact(v.clone()),
                        0,
                        v.len(),
                        ["Exact:", v.as_str()].concat(),
                    )
                }
            }
            PathMatchType::Template => {
                let t = parse_path_template(&p.value).map_err(|m| err(".path.value", m))?;
                let mut len = 0;
                let mut canon = String::new();
                for s in &t.segments {
                    match s {
                        Segment::Literal(l) => {
                            len += 1 + l.len();
                            canon.push('/');
                            canon.push_str(l);
                        }
                        Segment::Param(n) => {
                            len += 1;
                            canon.push_str("/{}");
                            caps.push(n.clone());
                        }
                    }
                }
                if let Some(r) = &t.rest {
                    canon.push_str("/{*}");
                    caps.push(r.clone());
                }
                (
                    PathMatch::Template(t),
                    1,
                    len,
                    ["Template:", canon.as_str()].concat(),
                )
            }
            PathMatchType::Regex => {
                let names = regex
                    .check(&p.value)
                    .map_err(|e| err(".path.value", regex_message(&p.value, &e)))?;
                caps.extend(names);
                (
                    PathMatch::Regex(p.value.clone()),
                    2,
                    0,
                    ["Regex:", p.value.as_str()].concat(),
                )
            }
        },
    };

    let mut methods = Vec::new();
    for (i, meth) in m.methods.iter().enumerate() {
        let up = meth.to_ascii_uppercase();
        if !is_token(&up) {
            return Err(err(
                &format!(".methods[{i}]"),
                format!("{meth:?} is not an HTTP method"),
            ));
        }
        methods.push(up);
    }
    methods.sort();
    methods.dedup();
    let headers = value_matches(&m.headers, true, &|| format!("{}.headers", at()), regex)?;
    let query_params = value_matches(
        &m.query_params,
        false,
        &|| format!("{}.queryParams", at()),
        regex,
    )?;
    let conditions = usize::from(!methods.is_empty()) + headers.len() + query_params.len();
    let mut signature = sig;
    {
        signature.push_str("|m=");
        for (i, m) in methods.iter().enumerate() {
            if i > 0 {
                signature.push(',');
            }
            signature.push_str(m);
        }
        signature.push_str("|h=");
        canon_values(&mut signature, &headers);
        signature.push_str("|q=");
        canon_values(&mut signature, &query_params);
        signature.push_str(if m.allow_encoded_slashes.unwrap_or(false) {
            "|e=1"
        } else {
            "|e=0"
        });
    }
    Ok((
        table::Match {
            rank: 0,
            path,
            methods,
            headers,
            query_params,
            allow_encoded_slashes: m.allow_encoded_slashes.unwrap_or(false),
            strip_prefix: None,
        },
        MatchKey {
            class,
            literal_len,
            conditions,
            signature_hash: crate::fx_hash(&signature),
            signature,
            index: mi,
            versioned: false,
        },
        caps,
    ))
}

/// One line for a status condition: the regex crate's last line says what is wrong.
fn regex_message(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let what = text
        .lines()
        .last()
        .unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ");
    format!("invalid regular expression {pattern:?}: {what}")
}

/// Appends the conditions in a canonical (sorted) form.
fn canon_values(out: &mut String, list: &[ValueMatch]) {
    use std::fmt::Write;
    let mut sorted: Vec<&ValueMatch> = list.iter().collect();
    sorted.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| format!("{:?}", a.kind).cmp(&format!("{:?}", b.kind)))
    });
    for (i, m) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let _ = write!(out, "{}={:?}", m.name, m.kind);
    }
}

fn value_matches(
    list: &[ApiValueMatch],
    header: bool,
    at: &dyn Fn() -> String,
    regex: &mut RegexChecker,
) -> Result<Vec<ValueMatch>, MatchError> {
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let field = || format!("{}[{i}]", at());
        if header && !is_token(&v.name) {
            return Err((
                format!("{}.name", field()),
                format!("{:?} is not a header name", v.name),
            ));
        }
        let name = if header {
            v.name.to_ascii_lowercase()
        } else {
            v.name.clone()
        };
        let kind = match (v.kind.unwrap_or_default(), &v.value) {
            (ValueMatchType::Present, None) => ValueMatchKind::Present,
            (ValueMatchType::Exact, Some(val)) => ValueMatchKind::Exact(val.clone()),
            (ValueMatchType::Regex, Some(val)) => {
                regex
                    .check(val)
                    .map_err(|e| (format!("{}.value", field()), regex_message(val, &e)))?;
                ValueMatchKind::Regex(val.clone())
            }
            (ValueMatchType::Present, Some(_)) => {
                return Err((
                    format!("{}.value", field()),
                    "not allowed with type Present".into(),
                ));
            }
            (_, None) => {
                return Err((
                    format!("{}.value", field()),
                    "required by Exact and Regex".into(),
                ));
            }
        };
        out.push(ValueMatch { name, kind });
    }
    Ok(out)
}

/// `/users/{id}/files/{*rest}` → segments and rest.
pub(crate) fn parse_path_template(src: &str) -> Result<Template, String> {
    if !src.starts_with('/') {
        return Err(format!("{src:?} must start with /"));
    }
    let mut segments = Vec::new();
    let mut rest = None;
    let mut seen = BTreeSet::new();
    let parts: Vec<&str> = gatehouse_router::normalize::segments(src).collect();
    for (i, s) in parts.iter().enumerate() {
        if rest.is_some() {
            return Err(format!("{src:?}: {{*rest}} must be the last segment"));
        }
        if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (is_rest, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if !valid_ident(name) {
                return Err(format!(
                    "{src:?}: {{{inner}}} is not a parameter name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            if !seen.insert(name.to_string()) {
                return Err(format!("{src:?}: parameter {name:?} appears twice"));
            }
            if is_rest {
                rest = Some(name.to_string());
            } else {
                segments.push(Segment::Param(name.to_string()));
            }
        } else if s.contains(['{', '}']) {
            return Err(format!(
                "{src:?}: segment {s:?} mixes text and a parameter; a parameter is a whole segment"
            ));
        } else if s.is_empty() && i + 1 != parts.len() || *s == "." || *s == ".." {
            return Err(format!("{src:?}: empty or dot segment"));
        } else if !s.is_empty() {
            let literal = if s.contains('%') {
                // Decode escaped unreserved characters, as request paths are.
                let seg = format!("/{s}");
                let n = gatehouse_router::normalize(&seg).map_err(|e| format!("{src:?}: {e}"))?;
                n.path[1..].to_string()
            } else {
                (*s).to_string()
            };
            segments.push(Segment::Literal(literal));
        }
    }
    Ok(Template {
        source: src.to_string(),
        segments,
        rest,
    })
}

#[allow(clippy::too_many_arguments)] // the parts of one rule that an action reads
fn compile_action(
    rule: &gatehouse_api::route::Rule,
    ri: usize,
    ns: &str,
    id: &str,
    captures: &[Vec<String>],
    index: &Index<'_>,
    sink: &mut Sink<'_>,
    blocked: &mut Vec<Blocker>,
    valid: &Cell<bool>,
) -> Action {
    let at = |f: &str| format!("spec.rules[{ri}]{f}");
    // `field` builds the path only when there is something to report.
    let mut upstream =
        |field: &dyn Fn() -> String, name: &str, sink: &mut Sink<'_>| -> (String, bool) {
            let uid = [ns, "/", name].concat();
            let missing = match index.upstream(&uid) {
                Some(true) => false,
                Some(false) => {
                    sink.error(
                    field(),
                    Reason::UpstreamNotFound,
                    format!(
                        "Upstream {uid} is not accepted (see its status); its share is answered 503"
                    ),
                );
                    true
                }
                None => {
                    sink.error(
                        field(),
                        Reason::UpstreamNotFound,
                        format!("Upstream {uid} not found; its share is answered 503"),
                    );
                    true
                }
            };
            (uid, missing)
        };
    let check_template = |field: String, s: &str, sink: &mut Sink<'_>| -> Vec<TemplatePart> {
        match parse_template(s) {
            Ok(parts) => {
                for p in path_params(&parts) {
                    if let Some(mi) = captures.iter().position(|c| !c.iter().any(|n| n == p)) {
                        sink.error(
                            field.clone(),
                            Reason::Invalid,
                            format!("${{path.{p}}} is not captured by match {mi} of this rule"),
                        );
                        valid.set(false);
                    }
                }
                parts
            }
            Err(e) => {
                sink.error(field, Reason::Invalid, e);
                valid.set(false);
                Vec::new()
            }
        }
    };

    if let Some(backends) = &rule.backends {
        let refs: Vec<BackendRef> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (uid, missing) = upstream(
                    &|| at(&format!(".backends[{i}].upstream")),
                    &b.upstream,
                    sink,
                );
                BackendRef {
                    upstream: uid,
                    weight: b.weight.unwrap_or(1),
                    missing,
                }
            })
            .collect();
        if !refs.is_empty() && refs.iter().all(|b| b.weight == 0) {
            sink.warning(
                at(".backends"),
                Reason::Invalid,
                "every backend has weight 0: requests are answered 503",
            );
        }
        let mirror = rule.mirror.as_ref().map(|m| {
            let (uid, missing) = upstream(&|| at(".mirror.upstream"), &m.upstream, sink);
            if !support::RULE_MIRROR {
                unsupported(
                    sink,
                    blocked,
                    id,
                    &at(".mirror"),
                    "request mirroring",
                    "rule",
                );
            }
            MirrorRef {
                upstream: uid,
                percent: m.percent.unwrap_or(100).min(100),
                missing,
            }
        });
        return Action::Backends {
            backends: refs,
            mirror,
        };
    }
    if let Some(agg) = &rule.aggregate {
        return Action::Aggregate(compile_aggregate(
            agg,
            ri,
            &mut upstream,
            &check_template,
            sink,
            blocked,
            id,
            valid,
        ));
    }
    if let Some(r) = &rule.redirect {
        let path = r
            .path
            .as_ref()
            .map(|p| check_template(at(".redirect.path"), p, sink));
        let status = r.status_code.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            sink.error(
                at(".redirect.statusCode"),
                Reason::Invalid,
                "must be one of 301, 302, 303, 307, 308",
            );
            valid.set(false);
        }
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some("http") => Some(RedirectScheme::Http),
            Some("https") => Some(RedirectScheme::Https),
            Some(_) => {
                sink.error(
                    at(".redirect.scheme"),
                    Reason::Invalid,
                    "scheme must be http or https",
                );
                valid.set(false);
                None
            }
        };
        return Action::Redirect(table::Redirect {
            scheme,
            hostname: r.hostname.clone().map(|h| h.to_ascii_lowercase()),
            port: r.port,
            path,
            status,
        });
    }
    if let Some(r) = &rule.respond {
        if !(200..=599).contains(&r.status) {
            sink.error(
                at(".respond.status"),
                Reason::Invalid,
                "must be between 200 and 599",
            );
            valid.set(false);
        }
        return Action::Respond(table::Respond {
            status: r.status,
            content_type: r
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            body: r.body.clone().unwrap_or_default(),
        });
    }
    sink.error(
        at(""),
        Reason::Invalid,
        "exactly one of backends, aggregate, redirect, respond must be set",
    );
    valid.set(false);
    Action::default()
}

#[allow(clippy::too_many_arguments)] // see compile_action
fn compile_aggregate(
    agg: &Aggregate,
    ri: usize,
    upstream: &mut impl FnMut(&dyn Fn() -> String, &str, &mut Sink<'_>) -> (String, bool),
    check_template: &impl Fn(String, &str, &mut Sink<'_>) -> Vec<TemplatePart>,
    sink: &mut Sink<'_>,
    blocked: &mut Vec<Blocker>,
    id: &str,
    valid: &Cell<bool>,
) -> table::Aggregate {
    let at = |f: &str| format!("spec.rules[{ri}].aggregate{f}");
    let mut names = BTreeSet::new();
    let mut calls = Vec::new();
    for (i, c) in agg.calls.iter().enumerate() {
        if !names.insert(c.name.clone()) {
            sink.error(
                at(&format!(".calls[{i}].name")),
                Reason::Invalid,
                format!("call name {:?} is used twice", c.name),
            );
            valid.set(false);
        }
        let method = c
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !is_token(&method) {
            sink.error(
                at(&format!(".calls[{i}].method")),
                Reason::Invalid,
                format!("{method:?} is not an HTTP method"),
            );
            valid.set(false);
        }
        let (uid, missing) = upstream(&|| at(&format!(".calls[{i}].upstream")), &c.upstream, sink);
        let path = check_template(at(&format!(".calls[{i}].path")), &c.path, sink);
        if !c.path.starts_with('/') {
            sink.error(
                at(&format!(".calls[{i}].path")),
                Reason::Invalid,
                "must start with /",
            );
            valid.set(false);
        }
        calls.push(table::AggregateCall {
            name: c.name.clone(),
            upstream: uid,
            missing,
            method,
            path,
        });
    }
    let timeout_ms = agg
        .timeout
        .as_ref()
        .and_then(|t| match parse_duration(&t.0) {
            Ok(v) if v > 0 => Some(v),
            Ok(_) => {
                sink.error(at(".timeout"), Reason::Invalid, "must be greater than 0");
                valid.set(false);
                None
            }
            Err(e) => {
                sink.error(at(".timeout"), Reason::Invalid, e);
                valid.set(false);
                None
            }
        });
    if !support::RULE_AGGREGATE {
        unsupported(
            sink,
            blocked,
            id,
            &format!("spec.rules[{ri}].aggregate"),
            "service aggregation",
            "rule",
        );
    }
    table::Aggregate {
        calls,
        merge: match agg.merge.unwrap_or_default() {
            MergeStrategy::Keyed => AggregateMerge::Keyed,
            MergeStrategy::Deep => AggregateMerge::Deep,
        },
        on_error: match agg.on_error.unwrap_or_default() {
            AggregateOnError::Partial => table::AggregateOnError::Partial,
            AggregateOnError::Fail => table::AggregateOnError::Fail,
        },
        timeout_ms,
    }
}
