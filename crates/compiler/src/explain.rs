//! `gatehouse explain`: which route and rule serve a request, why the closest others do
//! not, the effective policies and the backends. The answer comes from the same
//! [`Router`] the proxy uses; the near misses from [`Router::diagnose`], which evaluates
//! the same predicates one match at a time.

use std::collections::BTreeMap;
use std::fmt::Write;

use gatehouse_router::{HostVerdict, Lookup, MatchReport, Request, Router, Target};
use gatehouse_table::{Action, Blocker, PathMatch, Table, ValueMatchKind, Version};
use serde::Serialize;

/// The request, as explained.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedRequest {
    /// Method.
    pub method: String,
    /// Host, as given.
    pub host: String,
    /// Path, as given.
    pub path: String,
    /// Query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// The router's verdict.
#[derive(Clone, Debug, Serialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    /// A rule serves it.
    Matched {
        /// Route id.
        route: String,
        /// Rule name.
        rule: String,
        /// Which match of the rule.
        match_index: usize,
        /// The path forwarded (normalized; without the version prefix under Path
        /// versioning).
        path: String,
        /// Captured path parameters.
        params: BTreeMap<String, String>,
    },
    /// 405.
    MethodNotAllowed {
        /// The `Allow` header.
        allow: Vec<String>,
    },
    /// 404.
    NotFound,
    /// 400.
    BadRequest {
        /// Why.
        reason: String,
    },
}

/// What the selected rule does.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    /// The rule's action.
    pub action: Action,
    /// Backends with their endpoints; for an aggregate, its calls' upstreams in call order.
    pub backends: Vec<BackendView>,
    /// Effective policies: field → the layer it came from.
    pub policies: BTreeMap<String, String>,
    /// Why the rule answers 503 instead (unsupported fields, missing policies).
    pub blocked: Vec<Blocker>,
    /// Who may call the rule: its authentication and authorization requirements (never
    /// a secret); `None` when it has neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Rule timeout override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The route's API version and the headers its responses carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
}

/// The authentication and authorization requirements of a rule, in words.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// One line per accepted method (any one authenticates).
    pub authentication: Vec<String>,
    /// Requests without credentials pass, without a consumer.
    pub optional: bool,
    /// One line per requirement (every one must hold).
    pub authorization: Vec<String>,
}

impl Access {
    fn of(p: &gatehouse_table::RulePolicies) -> Option<Access> {
        use gatehouse_table::auth::JwtKeys;
        if p.authentication.is_none() && p.authorization.is_none() {
            return None;
        }
        let mut authentication = Vec::new();
        let mut optional = false;
        if let Some(a) = p.authentication.as_ref().map(|s| &s.config) {
            optional = a.optional;
            let selector = |s: &BTreeMap<String, String>| {
                if s.is_empty() {
                    String::new()
                } else {
                    let labels: Vec<String> = s.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!(", consumers labelled {}", labels.join(","))
                }
            };
            if let Some(k) = &a.api_key {
                let mut line = format!("apiKey in header {}", k.header);
                if let Some(q) = &k.query_param {
                    line.push_str(&format!(" or query parameter {q}"));
                }
                line.push_str(&selector(&k.consumer_selector));
                authentication.push(line);
            }
            if let Some(j) = &a.jwt {
                let algs: Vec<&str> = j.algorithms.iter().map(|a| a.as_str()).collect();
                let mut line = format!("jwt ({})", algs.join(", "));
                if let Some(i) = &j.issuer {
                    line.push_str(&format!(", issuer {i}"));
                }
                if !j.audiences.is_empty() {
                    line.push_str(&format!(", audience one of {}", j.audiences.join(", ")));
                }
                match &j.keys {
                    JwtKeys::Remote { uri, .. } => line.push_str(&format!(", keys from {uri}")),
                    JwtKeys::Static { .. } => line.push_str(", keys from a Secret"),
                    JwtKeys::None => {}
                }
                if j.hmac_secret.is_some() {
                    line.push_str(", HMAC key from a Secret");
                }
                authentication.push(line);
            }
            if let Some(b) = &a.basic {
                authentication.push(format!("basic{}", selector(&b.consumer_selector)));
            }
            if let Some(e) = &a.external {
                authentication.push(format!("external check {} ({}ms)", e.url, e.timeout_ms));
            }
        }
        let mut authorization = Vec::new();
        if let Some(z) = p.authorization.as_ref().map(|s| &s.config) {
            if !z.consumers.is_empty() {
                authorization.push(format!("consumer is one of {}", z.consumers.join(", ")));
            }
            if !z.groups.is_empty() {
                authorization.push(format!("in a group of {}", z.groups.join(", ")));
            }
            for c in &z.claims {
                authorization.push(format!("claim {} contains {}", c.name, c.values.join(", ")));
            }
        }
        Some(Access {
            authentication,
            optional,
            authorization,
        })
    }
}

/// A backend of the selected rule.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    /// Upstream id.
    pub upstream: String,
    /// Weight.
    pub weight: u32,
    /// Missing upstream: 503.
    pub missing: bool,
    /// `host:port` of each endpoint.
    pub endpoints: Vec<String>,
}

/// A match that did not serve the request, and why.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearMiss {
    /// Route id.
    pub route: String,
    /// Rule name.
    pub rule: String,
    /// Which match.
    pub match_index: usize,
    /// Its rank.
    pub rank: u32,
    /// Each reason.
    pub why: Vec<String>,
}

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The request.
    pub request: ExplainedRequest,
    /// The verdict.
    pub outcome: Outcome,
    /// What the selected rule does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    /// The closest matches that did not serve it.
    pub near_misses: Vec<NearMiss>,
}

/// Splits `https://host:port/path?query` (or `/path?query`) into host, path, query.
pub fn split_url(url: &str) -> (Option<&str>, &str, Option<&str>) {
    let (host, rest) = match url.split_once("://") {
        Some((_, after)) => match after.find('/') {
            Some(i) => (Some(&after[..i]), &after[i..]),
            None => (Some(after), "/"),
        },
        None => (None, url),
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((p, q)) => (host, p, Some(q)),
        None => (host, rest, None),
    }
}

/// Explains how `table` routes a request. `headers` may carry `Host`, used when the URL
/// has none.
pub fn explain(
    table: &Table,
    router: &Router,
    method: &str,
    url: &str,
    headers: &[(String, String)],
) -> Explanation {
    let (url_host, path, query) = split_url(url);
    let host_header = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str());
    let host = url_host.or(host_header).unwrap_or("");
    let method = method.to_ascii_uppercase();
    let req = Request {
        method: &method,
        host,
        path,
        query,
        headers,
    };
    let (outcome, selected) = outcome_of(table, router.route(&req));
    let effect = selected.map(|t| effect_of(table, t));
    let reports = router.diagnose(table, &req);
    let near_misses = near_misses(table, &reports, selected, &req);
    Explanation {
        request: ExplainedRequest {
            method: method.clone(),
            host: host.to_string(),
            path: path.to_string(),
            query: query.map(String::from),
        },
        outcome,
        effect,
        near_misses,
    }
}

/// The router's verdict, and the match it selected.
fn outcome_of(table: &Table, lookup: Lookup<'_>) -> (Outcome, Option<Target>) {
    match lookup {
        Lookup::Matched(sel) => {
            let route = &table.routes[sel.target.route];
            let rule = &route.rules[sel.target.rule];
            let path = match rule.matches.get(sel.target.matched) {
                Some(m) => m.forwarded_path(&sel.path).into_owned(),
                None => sel.path.into_owned(),
            };
            (
                Outcome::Matched {
                    route: route.id.clone(),
                    rule: rule.name.clone(),
                    match_index: sel.target.matched,
                    path,
                    params: sel.params.into_iter().collect(),
                },
                Some(sel.target),
            )
        }
        Lookup::MethodNotAllowed { allow } => (Outcome::MethodNotAllowed { allow }, None),
        Lookup::NotFound => (Outcome::NotFound, None),
        Lookup::BadPath(e) => (
            Outcome::BadRequest {
                reason: e.to_string(),
            },
            None,
        ),
    }
}

/// A backend's endpoints, in words.
fn endpoints_text(b: &BackendView) -> String {
    if b.missing {
        "MISSING (503)".to_string()
    } else {
        format!(
            "{} endpoint(s) {}",
            b.endpoints.len(),
            b.endpoints.join(" ")
        )
    }
}

/// A template as it was written (`/users/${path.id}`).
fn template_text(parts: &[gatehouse_table::TemplatePart]) -> String {
    use gatehouse_table::TemplatePart as P;
    parts
        .iter()
        .map(|p| match p {
            P::Literal(s) => s.clone(),
            P::PathParam(n) => format!("${{path.{n}}}"),
            P::Query(n) => format!("${{query.{n}}}"),
            P::Header(n) => format!("${{header.{n}}}"),
            P::Claim(n) => format!("${{claim.{n}}}"),
            P::Consumer => "${consumer}".into(),
            P::ClientIp => "${clientIp}".into(),
            P::RequestId => "${requestId}".into(),
        })
        .collect()
}

/// What the selected rule does with the request.
fn effect_of(table: &Table, t: Target) -> Effect {
    let rule = &table.routes[t.route].rules[t.rule];
    let view = |upstream: &str, weight: u32, missing: bool| BackendView {
        upstream: upstream.to_string(),
        weight,
        missing,
        endpoints: table
            .upstream(upstream)
            .map(|u| {
                u.endpoints
                    .iter()
                    .map(|e| format!("{}:{}", e.host, e.port))
                    .collect()
            })
            .unwrap_or_default(),
    };
    // The backends, or an aggregate's calls' upstreams in call order (weight 1).
    let backends = match &rule.action {
        Action::Backends { backends, .. } => backends
            .iter()
            .map(|b| view(&b.upstream, b.weight, b.missing))
            .collect(),
        Action::Aggregate(a) => a
            .calls
            .iter()
            .map(|c| view(&c.upstream, 1, c.missing))
            .collect(),
        _ => Vec::new(),
    };
    let mut blocked = rule.blocked.clone();
    for b in &backends {
        if let Some(u) = table.upstream(&b.upstream) {
            blocked.extend(u.blocked.iter().cloned());
        }
    }
    Effect {
        action: rule.action.clone(),
        backends,
        policies: rule
            .policies
            .sources()
            .into_iter()
            .map(|(f, source)| (f.as_str().to_string(), source.to_string()))
            .collect(),
        blocked,
        access: Access::of(&rule.policies),
        timeout_ms: rule.timeout_ms,
        version: table.routes[t.route].version.clone(),
    }
}

/// The five matches closest to selecting the request, and why each does not.
fn near_misses(
    table: &Table,
    reports: &[MatchReport],
    selected: Option<Target>,
    req: &Request<'_, [(String, String)]>,
) -> Vec<NearMiss> {
    let winner = selected.and_then(|t| reports.iter().find(|r| r.target == t).cloned());
    let mut misses: Vec<(usize, &MatchReport)> = reports
        .iter()
        .filter(|r| Some(r.target) != selected)
        .map(|r| (failures(r), r))
        .collect();
    // Closest first: the right host, then the right path, then fewest failures.
    misses.sort_by_key(|(f, r)| (r.host == HostVerdict::Mismatch, !r.path, *f, r.rank));
    misses
        .into_iter()
        .take(5)
        .map(|(_, r)| {
            let route = &table.routes[r.target.route];
            let rule = &route.rules[r.target.rule];
            NearMiss {
                route: route.id.clone(),
                rule: rule.name.clone(),
                match_index: r.target.matched,
                rank: r.rank,
                why: reasons(table, r, req, winner.as_ref()),
            }
        })
        .collect()
}

fn failures(r: &MatchReport) -> usize {
    [
        r.host != HostVerdict::Mismatch,
        r.path,
        r.method,
        r.headers,
        r.query,
    ]
    .iter()
    .filter(|ok| !**ok)
    .count()
}

fn reasons(
    table: &Table,
    r: &MatchReport,
    req: &Request<'_, [(String, String)]>,
    winner: Option<&MatchReport>,
) -> Vec<String> {
    let route = &table.routes[r.target.route];
    let m = &route.rules[r.target.rule].matches[r.target.matched];
    let mut why = Vec::new();
    if r.host == HostVerdict::Mismatch {
        why.push(format!(
            "host {:?} is not one of {:?}",
            req.host, route.hosts
        ));
    }
    if !r.path {
        let want = match &m.path {
            PathMatch::Any => "any path".to_string(),
            PathMatch::Exact(p) => format!("Exact {p}"),
            PathMatch::Prefix(p) => format!("Prefix {p}"),
            PathMatch::Template(t) => format!("Template {}", t.source),
            PathMatch::Regex(r) => format!("Regex {r}"),
        };
        why.push(format!("path {:?} does not match {want}", req.path));
    }
    if !r.method {
        why.push(format!(
            "method {} is not one of {:?}",
            req.method, m.methods
        ));
    }
    if !r.headers {
        let conds: Vec<String> = m
            .headers
            .iter()
            .map(|h| condition(&h.name, &h.kind))
            .collect();
        why.push(format!("header conditions not met: {}", conds.join(", ")));
    }
    if !r.query {
        let conds: Vec<String> = m
            .query_params
            .iter()
            .map(|h| condition(&h.name, &h.kind))
            .collect();
        why.push(format!("query conditions not met: {}", conds.join(", ")));
    }
    if why.is_empty() {
        why.push(match winner {
            Some(w) if w.host != r.host => {
                "also matches, but a route with a more specific host wins".to_string()
            }
            Some(w) => format!(
                "also matches, but has lower precedence (rank {} after {})",
                r.rank, w.rank
            ),
            None => "also matches".to_string(),
        });
    }
    why
}

fn condition(name: &str, kind: &ValueMatchKind) -> String {
    match kind {
        ValueMatchKind::Exact(v) => format!("{name} = {v:?}"),
        ValueMatchKind::Regex(v) => format!("{name} ~ /{v}/"),
        ValueMatchKind::Present => format!("{name} present"),
    }
}

/// A person-readable rendering.
pub fn render_text(e: &Explanation) -> String {
    let mut s = String::new();
    let q = e
        .request
        .query
        .as_ref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "{} {}{}{}",
        e.request.method, e.request.host, e.request.path, q
    );
    match &e.outcome {
        Outcome::Matched {
            route,
            rule,
            match_index,
            path,
            params,
        } => {
            let _ = writeln!(s, "→ ApiRoute {route}, rule {rule:?} (match {match_index})");
            let _ = writeln!(s, "  forwarded path: {path}");
            if !params.is_empty() {
                let _ = writeln!(s, "  path parameters: {params:?}");
            }
        }
        Outcome::MethodNotAllowed { allow } => {
            let _ = writeln!(s, "→ 405 Method Not Allowed (Allow: {})", allow.join(", "));
        }
        Outcome::NotFound => {
            let _ = writeln!(s, "→ 404 Not Found: no rule matches");
        }
        Outcome::BadRequest { reason } => {
            let _ = writeln!(s, "→ 400 Bad Request: {reason}");
        }
    }
    if let Some(eff) = &e.effect {
        match &eff.action {
            Action::Backends { .. } => {
                for b in &eff.backends {
                    let _ = writeln!(
                        s,
                        "  backend {} weight {}: {}",
                        b.upstream,
                        b.weight,
                        endpoints_text(b)
                    );
                }
            }
            Action::Redirect(r) => {
                let _ = writeln!(s, "  redirect {}", r.status);
            }
            Action::Respond(r) => {
                let _ = writeln!(s, "  respond {} ({})", r.status, r.content_type);
            }
            Action::Aggregate(a) => {
                let _ = write!(
                    s,
                    "  aggregate, merge {:?}, onError {:?}",
                    a.merge, a.on_error
                );
                if let Some(t) = a.timeout_ms {
                    let _ = write!(s, ", timeout {t}ms");
                }
                s.push('\n');
                for (c, b) in a.calls.iter().zip(&eff.backends) {
                    let _ = writeln!(
                        s,
                        "    call {}: {} {} -> {}: {}",
                        c.name,
                        c.method,
                        template_text(&c.path),
                        c.upstream,
                        endpoints_text(b)
                    );
                }
            }
        }
        if let Action::Backends {
            mirror: Some(m), ..
        } = &eff.action
        {
            let missing = if m.missing {
                ": MISSING (nothing is mirrored)"
            } else {
                ""
            };
            let _ = writeln!(s, "  mirror {}% to {}{missing}", m.percent, m.upstream);
        }
        if let Some(t) = eff.timeout_ms {
            let _ = writeln!(s, "  timeout: {t}ms");
        }
        if let Some(v) = &eff.version {
            let _ = write!(s, "  API version {} ({:?} scheme", v.name, v.scheme);
            if v.default {
                s.push_str(", default");
            }
            s.push(')');
            if v.deprecated {
                s.push_str("; responses carry Deprecation: true");
            }
            if let Some(sunset) = &v.sunset {
                let _ = write!(s, "; Sunset: {sunset}");
            }
            if let Some(vary) = &v.vary {
                let _ = write!(s, "; Vary: {vary}");
            }
            s.push('\n');
        }
        for (field, source) in &eff.policies {
            let _ = writeln!(s, "  policy {field} from {source}");
        }
        if let Some(a) = &eff.access {
            for m in &a.authentication {
                let _ = writeln!(s, "  accepts {m}");
            }
            if a.optional {
                let _ = writeln!(s, "  lets requests without credentials through");
            }
            for r in &a.authorization {
                let _ = writeln!(s, "  requires {r}");
            }
        }
        for b in &eff.blocked {
            let _ = writeln!(s, "  answers 503: {} ({})", b.field, b.reason);
        }
    }
    if !e.near_misses.is_empty() {
        let _ = writeln!(s, "closest other matches:");
        for n in &e.near_misses {
            let _ = writeln!(
                s,
                "  ApiRoute {}, rule {:?} (match {}):",
                n.route, n.rule, n.match_index
            );
            for w in &n.why {
                let _ = writeln!(s, "    - {w}");
            }
        }
    }
    s
}
