//! Phase 2, route lookup: the host index and matchers built when the table was applied
//! select a rule (404, 405 with `Allow`, 400 for a bad path); a rule that cannot be
//! served as written answers 503. A CORS preflight asking about another method of the
//! path is answered by the rule that method selects.

use std::borrow::Cow;
use std::ops::ControlFlow;

use gatehouse_router::{Lookup, Request as RouteRequest, Target};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, header};

use crate::phases::{Ctx, Phase};
use crate::policy::cors::{self, Cors};
use crate::prepared::{Prepared, PreparedRule};
use crate::problem::GatewayError;
use crate::template::TemplateCtx;

/// The request's host: from the URI (HTTP/2 `:authority`, absolute-form) or `Host`.
/// Both are cheap clones of bytes the request already holds.
pub(crate) enum Host {
    Authority(Authority),
    Header(HeaderValue),
    Absent,
}

impl Host {
    fn of(parts: &Parts) -> Host {
        if let Some(a) = parts.uri.authority() {
            return Host::Authority(a.clone());
        }
        match parts.headers.get(header::HOST) {
            Some(h) if h.to_str().is_ok() => Host::Header(h.clone()),
            _ => Host::Absent,
        }
    }

    /// The host as text; empty when the request named none.
    pub fn as_str(&self) -> &str {
        match self {
            Host::Authority(a) => a.as_str(),
            Host::Header(h) => h.to_str().unwrap_or_default(),
            Host::Absent => "",
        }
    }

    /// The host as a header value (`Host`, `X-Forwarded-Host`).
    pub fn header_value(&self) -> Option<HeaderValue> {
        match self {
            Host::Authority(a) => HeaderValue::from_str(a.as_str()).ok(),
            Host::Header(h) => Some(h.clone()),
            Host::Absent => None,
        }
    }
}

/// The host and target (path and query) the client asked for, held apart from the
/// request so routing can borrow them while the request is rewritten.
pub(crate) fn what_was_asked(parts: &Parts) -> (Host, PathAndQuery) {
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    (Host::of(parts), target)
}

/// What routing found: the request as it was asked, and what the selected match made
/// of it.
pub(crate) struct Routed<'a> {
    /// The host asked for.
    pub host: &'a Host,
    /// The target as received.
    pub target: &'a PathAndQuery,
    /// The normalized path.
    pub path: Cow<'a, str>,
    /// Captured path parameters.
    pub params: Vec<(String, String)>,
    /// Which of the rule's matches selected it.
    pub matched: usize,
}

impl<'a> Routed<'a> {
    /// What `${...}` templates read for this request; `headers` are the client's while
    /// they are still theirs.
    pub fn templates<'b>(
        &'b self,
        cx: &'b Ctx<'_>,
        headers: Option<&'b HeaderMap>,
    ) -> TemplateCtx<'b> {
        TemplateCtx {
            params: &self.params,
            query: self.target.query(),
            headers,
            client: cx.client,
            rid: cx.rid(),
            identity: cx.identity.as_ref(),
        }
    }
}

/// With `--public-docs HOST`: `GET /docs` and `GET /docs/openapi.json` on that host
/// are the API documentation, whatever the routes say.
pub(crate) fn public_docs(
    cx: &Ctx<'_>,
    docs_host: &str,
    parts: &Parts,
    host: &Host,
) -> Option<http::Response<crate::body::Body>> {
    if !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
        return None;
    }
    if gatehouse_router::normalize_host(host.as_str()) != docs_host {
        return None;
    }
    match parts.uri.path() {
        "/docs" | "/docs/" => Some(crate::admin::docs_page()),
        "/docs/openapi.json" => {
            let mut r = http::Response::new(crate::body::full(cx.table.openapi()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Some(r)
        }
        _ => None,
    }
}

/// Headers as the router sees them.
struct HeaderView<'a>(&'a HeaderMap);

impl gatehouse_router::Headers for HeaderView<'_> {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.0
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(pred)
    }
}

/// The router's answer for `method` on the asked host and target.
fn route<'r>(
    table: &Prepared,
    method: &'r str,
    host: &'r Host,
    target: &'r PathAndQuery,
    headers: &'r HeaderView<'_>,
) -> Lookup<'r> {
    table.router.route(&RouteRequest {
        method,
        host: host.as_str(),
        path: target.path(),
        query: target.query(),
        headers,
    })
}

/// Selects the rule for the request and records it in `cx`.
pub(crate) fn select<'a>(
    cx: &mut Ctx<'_>,
    parts: &Parts,
    host: &'a Host,
    target: &'a PathAndQuery,
) -> Phase<Routed<'a>> {
    let view = HeaderView(&parts.headers);
    let selected = match route(cx.table, parts.method.as_str(), host, target, &view) {
        Lookup::Matched(selected) => selected,
        Lookup::NotFound => return Err(GatewayError::NoRoute),
        Lookup::MethodNotAllowed { allow } => {
            return preflight_of_another_method(cx, parts, host, target, allow);
        }
        Lookup::BadPath(e) => return Err(GatewayError::BadPath(e.to_string())),
    };
    let rule = cx.table.rule(selected.target);
    cx.rule = Some(rule);
    // On HTTPS, the route must be served with the connection's certificate: a client
    // reusing a connection for another host (HTTP/2 coalescing) is sent to a new one.
    if let Some(tls) = &cx.peer.tls
        && rule.certificate() != tls.certificate.as_deref()
    {
        return Err(GatewayError::Misdirected);
    }
    // Any field the data plane cannot enforce blocks the rule: nothing fails open.
    if rule.blocked {
        return Err(GatewayError::Blocked);
    }
    // The normalized path is the target's own path unless normalizing changed it.
    let path = match selected.path {
        Cow::Borrowed(p) if std::ptr::eq(p, target.path()) => Cow::Borrowed(target.path()),
        p => Cow::Owned(p.into_owned()),
    };
    Ok(ControlFlow::Continue(Routed {
        host,
        target,
        path,
        params: selected.params,
        matched: selected.target.matched,
    }))
}

/// The router answered 405: a CORS preflight about another method is answered by the
/// rule that method selects, when that rule has a CORS policy.
fn preflight_of_another_method<'a>(
    cx: &mut Ctx<'_>,
    parts: &Parts,
    host: &Host,
    target: &PathAndQuery,
    allow: Vec<String>,
) -> Phase<Routed<'a>> {
    let view = HeaderView(&parts.headers);
    let Some((rule, policy)) = preflight_rule(cx.table, parts, host, target, &view, &allow) else {
        return Err(GatewayError::MethodNotAllowed(allow));
    };
    cx.rule = Some(rule);
    match policy.check(&parts.method, &parts.headers) {
        cors::Verdict::Preflight(h) => Ok(ControlFlow::Break(cors::preflight(h))),
        cors::Verdict::Refused(why) => Err(GatewayError::CorsRefused(why)),
        _ => Err(GatewayError::MethodNotAllowed(allow)),
    }
}

/// For a CORS preflight the router answered 405: the rule the requested method selects,
/// when it has a CORS policy.
fn preflight_rule<'p>(
    table: &'p Prepared,
    parts: &Parts,
    host: &Host,
    target: &PathAndQuery,
    view: &HeaderView<'_>,
    allow: &[String],
) -> Option<(&'p PreparedRule, &'p Cors)> {
    if parts.method != http::Method::OPTIONS || !parts.headers.contains_key(header::ORIGIN) {
        return None;
    }
    let wanted = parts
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()?;
    // The rule for the method asked about; when no rule serves that method, the rule
    // of an allowed one, whose policy then refuses the preflight (403, not 405).
    let lookup = |method: &str| -> Option<Target> {
        match route(table, method, host, target, view) {
            Lookup::Matched(s) => Some(s.target),
            _ => None,
        }
    };
    let rule = table.rule(lookup(wanted).or_else(|| lookup(allow.first()?))?);
    if rule.blocked {
        return None;
    }
    let cors = rule.policies.as_deref()?.cors.as_ref()?;
    Some((rule, cors))
}
