//! The API documentation: one OpenAPI 3.1 document built from the table, and the page
//! that renders it (`GET /docs/openapi.json`, `GET /docs`).
//!
//! What becomes an operation: each rule that is served (not blocked), for each of its
//! matches whose path is `Exact` or a `Template` (`Prefix`, `Regex` and "any path" name
//! no one path and are left out), for each of the match's methods (a match without
//! methods is documented as `GET`, and `POST` too when its rule documents or validates a
//! request body). From the table:
//!
//! - the path, with template segments as path parameters (`{*rest}` as one parameter
//!   that may hold `/`); the match's header and query conditions as required
//!   parameters (an API version's `Header` or `Query` condition among them); the route's
//!   hosts as the operation's servers;
//! - `summary`, `description`, request body and responses from the rule's `docs`, else
//!   from its `validation` schemas; the route's `docs` tags (else its title, else its
//!   name) as tags;
//! - `security` from the rule's `authentication` (API key, JWT bearer, Basic; any one
//!   is enough), with the schemes under `components.securitySchemes`;
//! - the answers the gateway itself gives on that rule, as RFC 9457 problem responses:
//!   400 (validation), 401 (authentication), 403 (authorization, WAF), 429 (rate
//!   limit), 502/503/504 (upstream-bound rules); rate limits are described in words and
//!   under `x-gatehouse-rate-limits`;
//! - `deprecated` and the `Sunset` date of a deprecated API version.
//!
//! Two operations for the same path and method (routes of different hosts): the first
//! (table order) is kept, and its description names the hosts of the others.
//!
//! The document is built once per table, when first asked for (see
//! `Prepared::openapi`), never per request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use gatehouse_table::auth::Authentication;
use gatehouse_table::{
    Action, Match, PathMatch, RateLimitKey, Route, Rule, Segment, Table, ValueMatchKind,
};
use serde_json::{Map, Value, json};

/// The document for `table`.
pub fn document(table: &Table) -> Value {
    let mut b = Builder::default();
    for route in &table.routes {
        for rule in &route.rules {
            if rule.blocked.is_empty() {
                b.rule(route, rule);
            }
        }
    }
    b.finish(table)
}

#[derive(Default)]
struct Builder {
    /// path → method → operation.
    paths: BTreeMap<String, BTreeMap<&'static str, Map<String, Value>>>,
    /// Security scheme name → scheme.
    schemes: BTreeMap<String, Value>,
    /// Tag name → description.
    tags: BTreeMap<String, Option<String>>,
    operation_ids: BTreeSet<String>,
}

/// The methods OpenAPI names, and their keys.
const METHODS: [(&str, &str); 8] = [
    ("GET", "get"),
    ("PUT", "put"),
    ("POST", "post"),
    ("DELETE", "delete"),
    ("OPTIONS", "options"),
    ("HEAD", "head"),
    ("PATCH", "patch"),
    ("TRACE", "trace"),
];

impl Builder {
    fn rule(&mut self, route: &Route, rule: &Rule) {
        for m in &rule.matches {
            let Some((path, mut parameters)) = path_of(&m.path) else {
                continue;
            };
            parameters.extend(conditions(m));
            for method in methods(m, rule) {
                let op = self.operation(route, rule, method, &parameters);
                let entry = self.paths.entry(path.clone()).or_default();
                match entry.get_mut(method) {
                    None => {
                        entry.insert(method, op);
                    }
                    // Another route serves the same path and method on other hosts.
                    Some(first) => also_on(first, &route.hosts),
                }
            }
        }
    }

    fn operation(
        &mut self,
        route: &Route,
        rule: &Rule,
        method: &'static str,
        parameters: &[Value],
    ) -> Map<String, Value> {
        let mut op = Map::new();
        let docs = rule.docs.as_ref();
        if let Some(s) = docs.and_then(|d| d.summary.as_ref()) {
            op.insert("summary".into(), json!(s));
        }
        let mut description = docs.and_then(|d| d.description.clone()).unwrap_or_default();
        op.insert(
            "operationId".into(),
            json!(self.operation_id(route, rule, method)),
        );
        op.insert("tags".into(), json!(self.tags_of(route)));
        if !parameters.is_empty() {
            op.insert("parameters".into(), json!(parameters));
        }
        if let Some(body) = request_body(rule) {
            op.insert("requestBody".into(), body);
        }
        let policies = &rule.policies;
        let auth = policies.authentication.as_ref().map(|a| &a.config);
        if let Some(auth) = auth {
            op.insert("security".into(), json!(self.security(auth)));
            if auth.external.is_some() {
                paragraph(
                    &mut description,
                    "Credentials are also checked by an external authorization service.",
                );
            }
        }
        let limits = policies.rate_limit.as_ref().map(|r| &r.config);
        if let Some(rl) = limits {
            let words: Vec<String> = rl
                .limits
                .iter()
                .map(|l| format!("{} requests per {}", l.requests, period(l.period_ms)))
                .collect();
            paragraph(
                &mut description,
                &format!(
                    "Rate limited: {} ({}); over the limit the gateway answers 429 with `Retry-After`.",
                    words.join(", "),
                    key_words(&rl.key)
                ),
            );
            op.insert(
                "x-gatehouse-rate-limits".into(),
                json!(
                    rl.limits
                        .iter()
                        .map(|l| json!({"requests": l.requests, "periodMs": l.period_ms}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        if let Some(v) = route.version.as_ref().filter(|v| v.deprecated) {
            op.insert("deprecated".into(), json!(true));
            let mut words = format!("API version {} is deprecated", v.name);
            if let Some(sunset) = &v.sunset {
                let _ = write!(words, "; it is withdrawn after {sunset} (`Sunset`)");
                op.insert("x-sunset".into(), json!(sunset));
            }
            words.push('.');
            paragraph(&mut description, &words);
        }
        if !description.is_empty() {
            op.insert("description".into(), json!(description));
        }
        op.insert("responses".into(), Value::Object(responses(rule)));
        if let Some(servers) = servers(route) {
            op.insert("servers".into(), servers);
        }
        op.insert("x-gatehouse-route".into(), json!(route.id));
        op.insert("x-gatehouse-rule".into(), json!(rule.name));
        op
    }

    /// A unique id: `<namespace>.<name>.<rule>.<method>`.
    fn operation_id(&mut self, route: &Route, rule: &Rule, method: &str) -> String {
        let base = name_safe(&format!(
            "{}.{}.{method}",
            route.id.replace('/', "."),
            rule.name
        ));
        let mut id = base.clone();
        let mut n = 2;
        while !self.operation_ids.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }

    fn tags_of(&mut self, route: &Route) -> Vec<String> {
        let docs = route.docs.as_ref();
        if let Some(d) = docs.filter(|d| !d.tags.is_empty()) {
            for t in &d.tags {
                self.tags.entry(t.clone()).or_insert(None);
            }
            return d.tags.clone();
        }
        let name = docs
            .and_then(|d| d.title.clone())
            .unwrap_or_else(|| route.id.clone());
        let description = docs.and_then(|d| d.description.clone());
        let entry = self.tags.entry(name.clone()).or_insert(None);
        if entry.is_none() {
            *entry = description;
        }
        vec![name]
    }

    /// The requirements of `auth` (any one is enough), adding their schemes.
    fn security(&mut self, auth: &Authentication) -> Vec<Value> {
        let mut any = Vec::new();
        let mut scheme = |b: &mut Builder, name: String, value: Value| {
            let name = name_safe(&name);
            b.schemes.insert(name.clone(), value);
            any.push(json!({ name: [] }));
        };
        if let Some(k) = &auth.api_key {
            scheme(
                self,
                format!("apiKey.header.{}", k.header),
                json!({"type": "apiKey", "in": "header", "name": k.header,
                       "description": "An API key of a consumer (a labelled Secret)."}),
            );
            if let Some(q) = &k.query_param {
                scheme(
                    self,
                    format!("apiKey.query.{q}"),
                    json!({"type": "apiKey", "in": "query", "name": q,
                           "description": "An API key of a consumer, as a query parameter."}),
                );
            }
        }
        if let Some(j) = &auth.jwt {
            let mut words = String::from("A JSON Web Token");
            if let Some(iss) = &j.issuer {
                let _ = write!(words, " issued by {iss}");
            }
            if !j.audiences.is_empty() {
                let _ = write!(words, " for {}", j.audiences.join(", "));
            }
            words.push('.');
            let from = &j.token_from;
            match (&from.header, &from.cookie, &from.query_param) {
                (Some(h), _, _) if h != "authorization" => scheme(
                    self,
                    format!("jwt.header.{h}"),
                    json!({"type": "apiKey", "in": "header", "name": h, "description": words}),
                ),
                (_, Some(c), _) => scheme(
                    self,
                    format!("jwt.cookie.{c}"),
                    json!({"type": "apiKey", "in": "cookie", "name": c, "description": words}),
                ),
                (_, _, Some(q)) => scheme(
                    self,
                    format!("jwt.query.{q}"),
                    json!({"type": "apiKey", "in": "query", "name": q, "description": words}),
                ),
                _ => scheme(
                    self,
                    "jwt.bearer".into(),
                    json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": words}),
                ),
            }
        }
        if auth.basic.is_some() {
            scheme(
                self,
                "basic".into(),
                json!({"type": "http", "scheme": "basic",
                       "description": "A consumer's user name and password."}),
            );
        }
        if auth.optional {
            any.push(json!({}));
        }
        any
    }

    fn finish(self, table: &Table) -> Value {
        let paths: Map<String, Value> = self
            .paths
            .into_iter()
            .map(|(path, ops)| {
                let item: Map<String, Value> = ops
                    .into_iter()
                    .map(|(m, op)| (m.to_string(), Value::Object(op)))
                    .collect();
                (path, Value::Object(item))
            })
            .collect();
        let tags: Vec<Value> = self
            .tags
            .into_iter()
            .map(|(name, description)| match description {
                Some(d) => json!({"name": name, "description": d}),
                None => json!({"name": name}),
            })
            .collect();
        let mut components = json!({
            "schemas": {"Problem": problem_schema()},
            "responses": problem_responses(),
        });
        if !self.schemes.is_empty() {
            components["securitySchemes"] = json!(self.schemes);
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "APIs served by Gatehouse",
                "version": table.version.to_string(),
                "description": "Every route the gateway serves, built from its ApiRoutes: paths, methods, parameters, schemas, authentication and the answers the gateway gives itself (RFC 9457 problem documents).",
            },
            "tags": tags,
            "paths": paths,
            "components": components,
        })
    }
}

/// An OpenAPI path and its path parameters, for an `Exact` or `Template` path.
fn path_of(p: &PathMatch) -> Option<(String, Vec<Value>)> {
    match p {
        PathMatch::Exact(path) => Some((path.clone(), Vec::new())),
        PathMatch::Template(t) => {
            let mut path = String::new();
            let mut params = Vec::new();
            for s in &t.segments {
                path.push('/');
                match s {
                    Segment::Literal(l) => path.push_str(l),
                    Segment::Param(name) => {
                        let _ = write!(path, "{{{name}}}");
                        params.push(json!({"name": name, "in": "path", "required": true,
                                           "schema": {"type": "string"}}));
                    }
                }
            }
            if let Some(rest) = &t.rest {
                let _ = write!(path, "/{{{rest}}}");
                params.push(json!({"name": rest, "in": "path", "required": true,
                                   "description": "The rest of the path: zero or more segments, `/` included.",
                                   "schema": {"type": "string"}}));
            }
            if path.is_empty() {
                path.push('/');
            }
            Some((path, params))
        }
        PathMatch::Any | PathMatch::Prefix(_) | PathMatch::Regex(_) => None,
    }
}

/// The match's header and query conditions, as required parameters.
fn conditions(m: &Match) -> Vec<Value> {
    let one = |place: &str, v: &gatehouse_table::ValueMatch| {
        let schema = match &v.kind {
            ValueMatchKind::Exact(x) => json!({"type": "string", "const": x}),
            ValueMatchKind::Regex(r) => json!({"type": "string", "pattern": format!("^(?:{r})$")}),
            ValueMatchKind::Present => json!({"type": "string"}),
        };
        json!({"name": v.name, "in": place, "required": true, "schema": schema})
    };
    m.headers
        .iter()
        .map(|h| one("header", h))
        .chain(m.query_params.iter().map(|q| one("query", q)))
        .collect()
}

/// The methods documented for a match.
fn methods(m: &Match, rule: &Rule) -> Vec<&'static str> {
    if m.methods.is_empty() {
        let body = rule.docs.as_ref().is_some_and(|d| d.request_body.is_some())
            || rule
                .policies
                .validation
                .as_ref()
                .is_some_and(|v| v.config.request.is_some());
        return if body {
            vec!["get", "post"]
        } else {
            vec!["get"]
        };
    }
    m.methods
        .iter()
        .filter_map(|name| METHODS.iter().find(|(n, _)| n == name).map(|(_, k)| *k))
        .collect()
}

/// The request body: the rule's `docs`, else its request validation.
fn request_body(rule: &Rule) -> Option<Value> {
    if let Some(b) = rule.docs.as_ref().and_then(|d| d.request_body.as_ref()) {
        let schema = b.schema.clone().unwrap_or_else(|| json!({}));
        return Some(json!({"content": {b.content_type.clone(): {"schema": schema}}}));
    }
    let v = rule.policies.validation.as_ref()?.config.request.as_ref()?;
    let schema = v.schema.clone().unwrap_or_else(|| json!({}));
    let types: Vec<String> = if v.content_types.is_empty() {
        vec!["application/json".into()]
    } else {
        v.content_types.clone()
    };
    let content: Map<String, Value> = types
        .into_iter()
        .map(|t| (t, json!({"schema": schema.clone()})))
        .collect();
    Some(json!({"content": content, "required": v.schema.is_some()}))
}

/// The rule's responses: its `docs`, its response schema, what its action answers, and
/// the gateway's own answers.
fn responses(rule: &Rule) -> Map<String, Value> {
    let mut out = Map::new();
    let docs = rule.docs.as_ref();
    for (code, r) in docs.map(|d| &d.responses).into_iter().flatten() {
        let mut resp = json!({"description": r.description});
        if let Some(s) = &r.schema {
            resp["content"] = json!({"application/json": {"schema": s}});
        }
        out.insert(code.clone(), resp);
    }
    let success = out.keys().any(|k| k.starts_with('2') || k == "default");
    let upstream_bound = matches!(rule.action, Action::Backends { .. } | Action::Aggregate(_));
    match &rule.action {
        Action::Respond(r) if !out.contains_key(&r.status.to_string()) => {
            out.insert(
                r.status.to_string(),
                json!({"description": "Answered by the gateway.",
                       "content": {r.content_type.clone(): {"schema": {}}}}),
            );
        }
        Action::Redirect(r) if !out.contains_key(&r.status.to_string()) => {
            out.insert(
                r.status.to_string(),
                json!({"description": "A redirect.",
                       "headers": {"Location": {"schema": {"type": "string"}}}}),
            );
        }
        _ if !success && upstream_bound => {
            let mut ok = json!({"description": "The upstream's answer."});
            let schema = rule
                .policies
                .validation
                .as_ref()
                .and_then(|v| v.config.response.as_ref())
                .map(|r| r.schema.clone());
            if let Action::Aggregate(_) = rule.action {
                ok["description"] = json!("The calls' answers, merged.");
            }
            if let Some(s) = schema {
                ok["content"] = json!({"application/json": {"schema": s}});
            }
            out.insert("200".into(), ok);
        }
        _ => {}
    }
    let p = &rule.policies;
    let mut gateway = Vec::new();
    if p.validation
        .as_ref()
        .is_some_and(|v| v.config.request.is_some())
    {
        gateway.push(("400", "BadRequest"));
    }
    if p.authentication.is_some() {
        gateway.push(("401", "Unauthorized"));
    }
    if p.authorization.is_some() || p.waf.is_some() {
        gateway.push(("403", "Forbidden"));
    }
    if p.rate_limit.is_some() {
        gateway.push(("429", "TooManyRequests"));
    }
    if upstream_bound {
        gateway.extend([
            ("502", "BadGateway"),
            ("503", "ServiceUnavailable"),
            ("504", "GatewayTimeout"),
        ]);
    }
    for (code, name) in gateway {
        if !out.contains_key(code) {
            out.insert(
                code.into(),
                json!({"$ref": format!("#/components/responses/{name}")}),
            );
        }
    }
    out
}

/// The operation's servers: the route's hosts (a wildcard's first label a variable).
fn servers(route: &Route) -> Option<Value> {
    if route.hosts.is_empty() {
        return None;
    }
    let scheme = if route.tls.is_some() { "https" } else { "http" };
    let list: Vec<Value> = route
        .hosts
        .iter()
        .map(|h| match h.strip_prefix("*.") {
            Some(suffix) => json!({
                "url": format!("{scheme}://{{subdomain}}.{suffix}"),
                "variables": {"subdomain": {"default": "www"}},
            }),
            None => json!({"url": format!("{scheme}://{h}")}),
        })
        .collect();
    Some(json!(list))
}

/// Notes on an operation kept for its path and method that another route also serves.
fn also_on(first: &mut Map<String, Value>, hosts: &[String]) {
    let hosts = if hosts.is_empty() {
        "any host".to_string()
    } else {
        hosts.join(", ")
    };
    let mut d = first
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    paragraph(
        &mut d,
        &format!("Another route serves this path and method on {hosts}."),
    );
    first.insert("description".into(), json!(d));
}

/// `s` with every character OpenAPI names may not hold (`[A-Za-z0-9._-]`) as `_`.
fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn paragraph(text: &mut String, p: &str) {
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(p);
}

fn period(ms: u64) -> String {
    match ms {
        1000 => "second".into(),
        60_000 => "minute".into(),
        3_600_000 => "hour".into(),
        86_400_000 => "day".into(),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

fn key_words(key: &RateLimitKey) -> String {
    match key {
        RateLimitKey::ClientIp => "per client address".into(),
        RateLimitKey::Consumer => "per consumer".into(),
        RateLimitKey::Header(h) => format!("per value of the {h} header"),
        RateLimitKey::Claim(c) => format!("per value of the token's {c} claim"),
        RateLimitKey::Route => "for all callers together".into(),
    }
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "An RFC 9457 problem document, answered by the gateway itself.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string", "description": "The request's X-Request-Id."},
            "errors": {"type": "array", "items": {}},
        },
        "required": ["type", "title", "status", "detail", "instance"],
    })
}

fn problem_responses() -> Value {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    };
    let mut limited = problem("A rate limit is exhausted.");
    limited["headers"] = json!({
        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
        "RateLimit-Limit": {"schema": {"type": "integer"}},
        "RateLimit-Remaining": {"schema": {"type": "integer"}},
        "RateLimit-Reset": {"schema": {"type": "integer"}},
    });
    let mut unauthorized = problem("No accepted credentials.");
    unauthorized["headers"] = json!({
        "WWW-Authenticate": {"description": "One challenge per accepted method.", "schema": {"type": "string"}},
    });
    json!({
        "BadRequest": problem("The request fails the route's validation (also 413 and 415)."),
        "Unauthorized": unauthorized,
        "Forbidden": problem("Refused by authorization or the web application firewall."),
        "TooManyRequests": limited,
        "BadGateway": problem("The upstream could not be reached, broke off, or answered outside its schema."),
        "ServiceUnavailable": problem("No endpoint can take the request (none healthy, circuit open, overloaded)."),
        "GatewayTimeout": problem("The upstream did not answer in time."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::Template;

    #[test]
    fn a_template_becomes_a_path_with_parameters() {
        let t = PathMatch::Template(Template {
            source: "/users/{id}/files/{*rest}".into(),
            segments: vec![
                Segment::Literal("users".into()),
                Segment::Param("id".into()),
                Segment::Literal("files".into()),
            ],
            rest: Some("rest".into()),
        });
        let (path, params) = path_of(&t).expect("documented");
        assert_eq!(path, "/users/{id}/files/{rest}");
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["id", "rest"]);
        assert!(path_of(&PathMatch::Prefix("/api".into())).is_none());
        assert_eq!(
            path_of(&PathMatch::Exact("/x".into())).map(|p| p.0),
            Some("/x".into())
        );
    }

    #[test]
    fn names_and_periods() {
        assert_eq!(
            name_safe("apiKey.header.x-api key"),
            "apiKey.header.x-api_key"
        );
        assert_eq!(period(1000), "second");
        assert_eq!(period(90_000), "90 s");
        assert_eq!(period(1500), "1500 ms");
    }
}
