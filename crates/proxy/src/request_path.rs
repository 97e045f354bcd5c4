//! The request path, top to bottom, in the order `DESIGN.md` fixes. Each step reads
//! objects prepared when the table was applied; nothing is parsed or compiled here.
//!
//! 1. request id (kept from the client when present and sane, else generated), then the
//!    listener limits (431 for a head over 64 KiB, 413 for a declared body over 10 MiB;
//!    a streamed body is cut off at the same limit)
//! 2. route lookup: host index → matcher (404, 405 + `Allow`, 400 on a bad path)
//! 3. policies (`policy/`): WAF → CORS (preflights answered here) → authentication →
//!    authorization → rate limit (429, or a wait when throttling) → concurrency limit
//!    (503) → request validation (415, 413, 400; a schema buffers the body) → cache
//!    lookup (a hit answers; concurrent misses of one key wait for one fetch) → request
//!    transform. A rule that sets a policy this version does not enforce (WAF,
//!    authentication, authorization) is `blocked` by the compiler and answered 503 here:
//!    nothing fails open.
//! 4. backend: respond | redirect | upstream (weighted backend, round-robin endpoint,
//!    pooled HTTP/1.1 or HTTP/2 connection, timeout; upgrades become a tunnel)
//! 5. response: response validation (2xx bodies; `Enforce` 502, `Report` logs) →
//!    response transform → cache store → error formatting (the rule's `errors` format for
//!    gateway errors; `replaceUpstream` and `overrides` for upstream ones) → CORS and
//!    `RateLimit-*` headers → hop-by-hop stripped, `X-Request-Id` set
//!
//! The request is taken apart once (`into_parts`); routing borrows from it, and the
//! parts are then rewritten in place for the upstream, so a plain proxied request
//! copies no header, path or query.

use std::borrow::Cow;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_router::{Lookup, Request as RouteRequest, query_pairs};
use gatehouse_table::{
    Action, BackendRef, Protocol, Redirect, RedirectScheme, Respond, TemplatePart,
};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use http_body_util::{BodyExt, Either};

use crate::headers::{Peer, TRACEPARENT, X_REQUEST_ID};
use crate::metrics::{Counter, Metrics};
use crate::policy::RulePolicies;
use crate::policy::cache::{self, Lookup as CacheLookup};
use crate::policy::cors::{Cors, Verdict};
use crate::policy::errors;
use crate::policy::limit::{Client, Decision, Undecided};
use crate::policy::transform::{PathRewrite, RequestTransform, is_json};
use crate::policy::validation::{Refusal, Violation};
use crate::prepared::{Prepared, PreparedUpstream};
use crate::problem::GatewayError;
use crate::{Body, Shared, Streamed, full, headers, pool};

/// Largest request body accepted unless a route says otherwise: by `Content-Length`
/// before anything is forwarded, and by counting when the body is streamed.
pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

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

/// Serves one request.
pub async fn handle(req: Request<Incoming>, peer: &Peer, shared: &Shared) -> Response<Body> {
    let started = std::time::Instant::now();
    let prepared = shared.prepared();
    let method = req.method().clone();
    let mut target = None;

    // 1. Request id.
    let request_id = match req.headers().get(X_REQUEST_ID) {
        Some(v) if v.len() <= 128 && v.to_str().is_ok() => v.clone(),
        _ => new_request_id(),
    };

    let mut decor = Decor::default();
    let served = serve(
        req,
        peer,
        &prepared,
        &shared.metrics,
        &request_id,
        &mut target,
        &mut decor,
    )
    .await;
    let mut resp = match served {
        Ok(r) => r,
        Err(e) => {
            let counted = match e {
                GatewayError::RateLimited { .. } => Some(Counter::RateLimited),
                GatewayError::Invalid(_) => Some(Counter::ValidationRequest),
                _ => None,
            };
            if let (Some(counter), Some(t)) = (counted, target) {
                shared
                    .metrics
                    .count(&prepared.labels[t.route][t.rule], counter);
            }
            let errors = target
                .and_then(|t| prepared.policies[t.route][t.rule].as_deref())
                .and_then(|p| p.errors.as_ref());
            e.response_as(request_id.to_str().unwrap_or_default(), errors)
        }
    };
    // A versioned route marks each of its responses (Deprecation, Sunset, Vary).
    decor.version = target.and_then(|t| prepared.versions[t.route].as_deref());
    decor.apply(resp.headers_mut());

    // 5. Response decoration. A `101 Switching Protocols` keeps the headers that say
    // which protocol the connection now speaks.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop_except_upgrade(resp.headers_mut());
    } else {
        headers::strip_hop_by_hop(resp.headers_mut());
    }
    resp.headers_mut().insert(X_REQUEST_ID, request_id);

    // Metrics: counted when the response head is ready.
    let labels = target.map_or(&prepared.unmatched, |t: gatehouse_router::Target| {
        &prepared.labels[t.route][t.rule]
    });
    shared
        .metrics
        .record(labels, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// Headers policies add to the response, whatever it is (a 429 must carry CORS headers
/// too, or the page cannot read it), and those of the route's API version.
#[derive(Default)]
struct Decor<'p> {
    cors: Option<HeaderMap>,
    quota: Option<crate::policy::limit::Quota>,
    /// `X-Cache`.
    cache: Option<HeaderValue>,
    version: Option<&'p crate::version::VersionHeaders>,
}

impl Decor<'_> {
    fn apply(self, headers: &mut HeaderMap) {
        if let Some(cors) = self.cors {
            // Only `Vary` has several values here; it adds to the response's own.
            for (name, value) in &cors {
                if name == header::VARY {
                    headers.append(header::VARY, value.clone());
                } else {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        if let Some(q) = self.quota {
            q.write(headers);
        }
        if let Some(c) = self.cache {
            headers.insert(cache::X_CACHE, c);
        }
        if let Some(v) = self.version {
            v.apply(headers);
        }
    }
}

/// The request's host: from the URI (HTTP/2 `:authority`, absolute-form) or `Host`.
/// Both are cheap clones of bytes the request already holds.
enum Host {
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

    fn as_str(&self) -> &str {
        match self {
            Host::Authority(a) => a.as_str(),
            Host::Header(h) => h.to_str().unwrap_or_default(),
            Host::Absent => "",
        }
    }
}

async fn serve(
    req: Request<Incoming>,
    peer: &Peer,
    prepared: &Prepared,
    metrics: &Metrics,
    request_id: &HeaderValue,
    target: &mut Option<gatehouse_router::Target>,
    decor: &mut Decor<'_>,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = req.into_parts();

    // Listener limits come before any work on the request.
    // Head: hyper refuses an incomplete head beyond its buffer; a complete one
    // that arrived in one read is measured here.
    let head: usize = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > crate::server::MAX_REQUEST_HEAD {
        return Err(GatewayError::HeadersTooLarge(
            crate::server::MAX_REQUEST_HEAD,
        ));
    }

    // Body limit, before anything reads the body.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES));
    }

    // 2. Route lookup.
    let host = Host::of(&parts);
    let original = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let view = HeaderView(&parts.headers);
    let lookup = prepared.router.route(&RouteRequest {
        method: parts.method.as_str(),
        host: host.as_str(),
        path: original.path(),
        query: original.query(),
        headers: &view,
    });
    let selected = match lookup {
        Lookup::Matched(selected) => selected,
        Lookup::NotFound => return Err(GatewayError::NoRoute),
        Lookup::MethodNotAllowed { allow } => {
            // A CORS preflight asks about another method: the rule that method selects
            // answers it, when that rule has a CORS policy.
            return match preflight_rule(prepared, &parts, host.as_str(), &original, &view, &allow) {
                Some((t, cors)) => {
                    *target = Some(t);
                    match cors.check(&parts.method, &parts.headers) {
                        Verdict::Preflight(h) => Ok(preflight(h)),
                        Verdict::Refused(why) => Err(GatewayError::CorsRefused(why)),
                        _ => Err(GatewayError::MethodNotAllowed(allow)),
                    }
                }
                None => Err(GatewayError::MethodNotAllowed(allow)),
            };
        }
        Lookup::BadPath(e) => return Err(GatewayError::BadPath(e.to_string())),
    };
    let t = selected.target;
    *target = Some(t);
    let rule = &prepared.table.routes[t.route].rules[t.rule];
    // Owned apart from the borrowed path, so the request can be rewritten later.
    let (normalized, params) = (selected.path, selected.params);

    // 3. Policies: any the data plane cannot enforce block the rule.
    if !rule.blocked.is_empty() {
        return Err(GatewayError::Blocked);
    }
    let policies = prepared.policies[t.route][t.rule].as_deref();
    let mut permit = None;
    if let Some(p) = policies {
        if let Some(cors) = &p.cors {
            match cors.check(&parts.method, &parts.headers) {
                Verdict::None | Verdict::Foreign => {}
                Verdict::Preflight(h) => return Ok(preflight(h)),
                Verdict::Refused(why) => return Err(GatewayError::CorsRefused(why)),
                Verdict::Decorate(h) => decor.cors = Some(h),
            }
        }
        if let Some(limit) = &p.rate_limit {
            let client = Client {
                ip: peer.addr.ip(),
                consumer: None,
                claims: None,
            };
            let key = limit.key_of(client, &parts.headers);
            let decided = match limit.decide(&key).await {
                Ok(d) => Some(d),
                Err(Undecided { fail_open, error }) => {
                    let labels = &prepared.labels[t.route][t.rule];
                    tracing::debug!(%error, fail_open, "global rate limit undecided");
                    if fail_open {
                        metrics.count(labels, Counter::LimiterFailOpen);
                        None
                    } else {
                        metrics.count(labels, Counter::LimiterFailClosed);
                        return Err(GatewayError::LimiterUnavailable);
                    }
                }
            };
            match decided {
                None => {}
                Some(Decision::Allowed { wait, quota }) => {
                    decor.quota = Some(quota);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                Some(Decision::Rejected { retry_after, quota }) => {
                    return Err(GatewayError::RateLimited { retry_after, quota });
                }
            }
        }
        if let Some(c) = &p.concurrency {
            permit = Some(c.acquire().await.ok_or(GatewayError::Overloaded)?);
        }
    }
    let mut body = RequestBody::Streamed(body);
    let mut body_limit = MAX_BODY_BYTES;
    if let Some(checks) = policies
        .and_then(|p| p.validation.as_ref())
        .and_then(|v| v.request.as_ref())
    {
        checks
            .check_head(&parts.method, &parts.headers)
            .map_err(GatewayError::Invalid)?;
        body_limit = checks
            .max_body_bytes
            .map_or(body_limit, |m| m.min(body_limit));
        if checks.needs_body(&parts.headers) {
            let bytes = body.read(body_limit).await.map_err(|e| match e {
                GatewayError::PayloadTooLarge(max) => GatewayError::Invalid(Refusal::TooLarge(max)),
                other => other,
            })?;
            checks.check_body(&bytes).map_err(GatewayError::Invalid)?;
            body = RequestBody::Buffered(bytes);
        }
    }

    // Cache lookup, for upstream-bound rules (the others answer without one). A hit
    // answers here; a miss may wait for a fetch of the same key already under way.
    let cached = policies
        .and_then(|p| p.cache.as_ref())
        .filter(|_| matches!(rule.action, Action::Backends { .. }));
    let mut store_key = None;
    let mut _filling = None;
    if let Some(c) = cached {
        let labels = &prepared.labels[t.route][t.rule];
        let looked_up = c.lookup(
            &parts.method,
            &parts.headers,
            host.as_str(),
            &normalized,
            original.query(),
            None,
        );
        match looked_up {
            CacheLookup::Bypass => {
                decor.cache = Some(cache::BYPASS);
                metrics.count(labels, Counter::CacheBypass);
            }
            CacheLookup::Cacheable {
                key,
                read,
                max_age,
                store,
            } => {
                let head = parts.method == http::Method::HEAD;
                let hit = |entry: &cache::Entry, decor: &mut Decor| {
                    decor.cache = Some(cache::HIT);
                    metrics.count(labels, Counter::CacheHit);
                    Ok(cache::answer(entry, head))
                };
                if read && let Some(entry) = c.store().get(&key, max_age) {
                    return hit(&entry, decor);
                }
                if store {
                    match c.store().begin_fill(&key) {
                        Ok(fill) => _filling = Some(fill),
                        Err(under_way) if read => {
                            let wait = Duration::from_millis(rule.timeout_ms.unwrap_or(30_000));
                            cache::wait_for_fill(under_way, wait).await;
                            if let Some(entry) = c.store().get(&key, max_age) {
                                return hit(&entry, decor);
                            }
                        }
                        Err(_) => {}
                    }
                    store_key = Some(key);
                }
                decor.cache = Some(cache::MISS);
                metrics.count(labels, Counter::CacheMiss);
            }
        }
    }

    // 4. Backend.
    match &rule.action {
        Action::Respond(r) => Ok(respond(r)),
        Action::Redirect(r) => {
            let ctx = TemplateCtx {
                params: &params,
                query: original.query(),
                headers: &parts.headers,
                client: peer.addr,
                rid: request_id.to_str().unwrap_or_default(),
            };
            Ok(redirect(r, host.as_str(), &normalized, &ctx))
        }
        Action::Aggregate(_) => Err(GatewayError::Blocked),
        Action::Backends { backends, .. } => {
            let counter = &prepared.rule_counters[t.route][t.rule];
            let backend = pick_backend(backends, counter.fetch_add(1, Ordering::Relaxed))
                .ok_or(GatewayError::Unavailable)?;
            let upstream = prepared
                .upstreams
                .get(&backend.upstream)
                .ok_or(GatewayError::Unavailable)?;
            if !upstream.spec.blocked.is_empty() {
                return Err(GatewayError::Blocked);
            }
            let addr = upstream.pick().ok_or(GatewayError::Unavailable)?;
            let timeout = rule.timeout_ms.unwrap_or(upstream.spec.timeouts.request_ms);

            // Path versioning: the upstream sees the path without the version prefix.
            let matched = &rule.matches[t.matched];
            let normalized = match matched.strip_prefix {
                Some(_) => Cow::Owned(matched.forwarded_path(&normalized).into_owned()),
                None => normalized,
            };
            let transform = policies.and_then(|p| p.request.as_ref());
            // What the request transform reads, as the client sent it: the forwarded
            // target (the normalized path with the query as received, unless a
            // transform rewrites them) and header values (`${header.x}`), both computed
            // before the request is rewritten.
            let (path_and_query, header_values) = {
                let received = TemplateCtx {
                    params: &params,
                    query: original.query(),
                    headers: &parts.headers,
                    client: peer.addr,
                    rid: request_id.to_str().unwrap_or_default(),
                };
                let path_and_query = match transform {
                    Some(tr) if tr.path.is_some() || tr.edits_query() => {
                        transformed_target(tr, matched, &normalized, &original, &received)?
                    }
                    _ => match &normalized {
                        Cow::Borrowed(_) => original.clone(),
                        Cow::Owned(path) => {
                            let joined = match original.query() {
                                Some(q) => format!("{path}?{q}"),
                                None => path.clone(),
                            };
                            PathAndQuery::try_from(joined)
                                .map_err(|_| GatewayError::BadPath("unforwardable path".into()))?
                        }
                    },
                };
                let header_values = transform
                    .and_then(|tr| tr.headers.as_ref())
                    .map(|edits| (edits, edits.render(&|p, out| received.var(p, out))));
                (path_and_query, header_values)
            };
            let json_body = transform
                .and_then(|tr| tr.body.as_ref())
                .filter(|_| is_json(&parts.headers));
            rewrite_for_upstream(
                &mut parts,
                path_and_query,
                host,
                peer,
                request_id,
                upstream.spec.protocol,
            )?;
            if let Some((edits, values)) = header_values {
                edits.apply(&mut parts.headers, values);
            }
            if let Some(hostname) = transform.and_then(|tr| tr.hostname.as_ref()) {
                set_upstream_host(&mut parts, hostname, upstream.spec.protocol)?;
            }
            // Templates evaluated after the rewrite (bodies, the response) see no
            // request headers: those now belong to the upstream request.
            let no_headers = HeaderMap::new();
            let late = TemplateCtx {
                params: &params,
                query: original.query(),
                headers: &no_headers,
                client: peer.addr,
                rid: request_id.to_str().unwrap_or_default(),
            };
            let body = match (json_body, body) {
                (None, RequestBody::Streamed(b)) => {
                    Either::Left(http_body_util::Limited::new(b, body_limit as usize))
                }
                (None, RequestBody::Buffered(b)) => Either::Right(http_body_util::Full::new(b)),
                (Some(edits), body) => {
                    let bytes = body.read(body_limit).await?;
                    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                        GatewayError::BadBody(format!("the request body is not valid JSON: {e}"))
                    })?;
                    let edited = Bytes::from(
                        serde_json::to_vec(&edits.apply(doc, &|p, out| late.var(p, out)))
                            .unwrap_or_default(),
                    );
                    parts.headers.remove(header::TRANSFER_ENCODING);
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(edited.len()));
                    Either::Right(http_body_util::Full::new(edited))
                }
            };
            let response_checks = policies
                .and_then(|p| p.validation.as_ref())
                .and_then(|v| v.response.as_ref());
            if response_checks.is_some() {
                // A schema checks what the upstream meant, not its compression.
                parts.headers.remove(header::ACCEPT_ENCODING);
            }
            let req = Request::from_parts(parts, body);
            let resp = exchange(req, addr, upstream, timeout, permit).await?;
            let resp = match policies {
                Some(p)
                    if p.response.is_some() || p.errors.is_some() || response_checks.is_some() =>
                {
                    let labels = &prepared.labels[t.route][t.rule];
                    respond_with_policies(resp, p, &late, &|c| metrics.count(labels, c)).await?
                }
                _ => resp,
            };
            // Cache store, before waiting misses of the same key are woken.
            match (cached, store_key) {
                (Some(c), Some(key)) => Ok(c.store_response(key, resp).await?.0),
                _ => Ok(resp),
            }
        }
    }
}

/// Picks a backend by weight: `n` walks the weights in turn (weighted round robin).
fn pick_backend(backends: &[BackendRef], n: usize) -> Option<&BackendRef> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut at = (n as u64) % total;
    for b in backends {
        if at < u64::from(b.weight) {
            return (!b.missing).then_some(b);
        }
        at -= u64::from(b.weight);
    }
    None
}

/// Whether the client asks to switch protocols (HTTP/1.1 `Upgrade`, e.g. WebSocket).
fn upgrade_requested(parts: &Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Turns the client's request into the upstream's, in place: target, version, hop-by-hop
/// headers, forwarding headers, request id and trace context.
fn rewrite_for_upstream(
    parts: &mut Parts,
    path_and_query: PathAndQuery,
    host: Host,
    peer: &Peer,
    request_id: &HeaderValue,
    protocol: Protocol,
) -> Result<(), GatewayError> {
    let upgrade = upgrade_requested(parts)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    // gRPC needs `te: trailers` end to end; it is the one TE value an HTTP/2 hop keeps.
    let te_trailers = protocol == Protocol::Http2
        && parts
            .headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    headers::strip_hop_by_hop(&mut parts.headers);
    let host_value = host_header(&host);
    headers::add_forwarding(&mut parts.headers, peer, host_value.as_ref());
    parts.headers.insert(X_REQUEST_ID, request_id.clone());
    // W3C Trace Context: propagated as received, or started here.
    if !parts.headers.contains_key(TRACEPARENT) {
        parts.headers.insert(TRACEPARENT, new_traceparent());
    }
    match protocol {
        Protocol::Http1 => {
            parts.version = http::Version::HTTP_11;
            parts.uri = Uri::from(path_and_query);
            if !parts.headers.contains_key(header::HOST)
                && let Some(v) = host_value
            {
                parts.headers.insert(header::HOST, v);
            }
            if let Some(protocol) = upgrade {
                parts.headers.insert(header::UPGRADE, protocol);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        }
        Protocol::Http2 => {
            parts.version = http::Version::HTTP_2;
            let authority = match &host {
                Host::Authority(a) => Some(a.clone()),
                Host::Header(h) => Authority::try_from(h.as_bytes()).ok(),
                Host::Absent => None,
            }
            .unwrap_or_else(|| Authority::from_static("localhost"));
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            uri.path_and_query = Some(path_and_query);
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| GatewayError::BadPath("unforwardable path".into()))?;
            // `:authority` carries the host on HTTP/2.
            parts.headers.remove(header::HOST);
            if te_trailers {
                parts
                    .headers
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    Ok(())
}

fn host_header(host: &Host) -> Option<HeaderValue> {
    match host {
        Host::Authority(a) => HeaderValue::from_str(a.as_str()).ok(),
        Host::Header(h) => Some(h.clone()),
        Host::Absent => None,
    }
}

/// Endpoints tried for one request when connecting fails (nothing was sent, so trying
/// another endpoint is safe for any method).
const CONNECT_ATTEMPTS: usize = 3;

/// Sends the request to `addr` (or, when no connection can be made, to the next
/// endpoints) within the timeout; an accepted upgrade becomes a tunnel between the
/// two connections.
async fn exchange(
    mut req: Request<pool::UpstreamBody>,
    addr: SocketAddr,
    upstream: &PreparedUpstream,
    timeout_ms: u64,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Response<Body>, GatewayError> {
    let connect = Duration::from_millis(upstream.spec.timeouts.connect_ms);
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let sent = async {
        let mut addr = addr;
        let mut attempt = 1;
        loop {
            let result = if upgrade {
                // Rare, and its future is large: kept off the common path's state.
                Box::pin(pool::send_upgrade(addr, req, connect)).await
            } else {
                pool::send(addr, upstream.spec.protocol, req, connect).await
            };
            match result {
                Err(pool::Failed {
                    error,
                    unsent: Some(unsent),
                }) if attempt < CONNECT_ATTEMPTS => {
                    tracing::debug!(upstream = %upstream.spec.id, %error, "trying the next endpoint");
                    match upstream.pick() {
                        Some(next) if next != addr => addr = next,
                        _ => return Err(error),
                    }
                    req = unsent;
                    attempt += 1;
                }
                other => return other.map_err(|f| f.error),
            }
        }
    };
    let mut resp = match tokio::time::timeout(Duration::from_millis(timeout_ms), sent).await {
        Err(_) => return Err(GatewayError::Timeout),
        Ok(Err(pool::SendError::ConnectTimeout(_))) => return Err(GatewayError::Timeout),
        Ok(Err(e)) if e.body_too_large() => {
            return Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream exchange failed");
            return Err(GatewayError::BadGateway);
        }
        Ok(Ok(resp)) => resp,
    };
    if let Some(client_side) = client_side
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_side = hyper::upgrade::on(&mut resp);
        let id = upstream.spec.id.clone();
        tokio::task::spawn_local(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((a, b)) => {
                    let (mut a, mut b) = (
                        hyper_util::rt::TokioIo::new(a),
                        hyper_util::rt::TokioIo::new(b),
                    );
                    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                        tracing::debug!(upstream = %id, error = %e, "upgraded connection ended");
                    }
                }
                Err(e) => tracing::debug!(upstream = %id, error = %e, "upgrade failed"),
            }
        });
    }
    Ok(resp.map(|b| Either::Right(Streamed::new(b, permit))))
}

/// For a CORS preflight the router answered 405: the rule the requested method selects,
/// when it has a CORS policy.
fn preflight_rule<'p>(
    prepared: &'p Prepared,
    parts: &Parts,
    host: &str,
    original: &PathAndQuery,
    view: &HeaderView<'_>,
    allow: &[String],
) -> Option<(gatehouse_router::Target, &'p Cors)> {
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
    let lookup = |method: &str| match prepared.router.route(&RouteRequest {
        method,
        host,
        path: original.path(),
        query: original.query(),
        headers: view,
    }) {
        Lookup::Matched(s) => Some(s.target),
        _ => None,
    };
    let t = lookup(wanted).or_else(|| lookup(allow.first()?))?;
    let rule = &prepared.table.routes[t.route].rules[t.rule];
    if !rule.blocked.is_empty() {
        return None;
    }
    let cors = prepared.policies[t.route][t.rule]
        .as_deref()?
        .cors
        .as_ref()?;
    Some((t, cors))
}

/// The answer to an allowed preflight.
fn preflight(h: HeaderMap) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    *resp.headers_mut() = h;
    resp
}

/// The forwarded path and query under a request transform. `normalized` is the path
/// already without any version prefix, so a rewrite works as if the route had none.
fn transformed_target(
    tr: &RequestTransform,
    matched: &gatehouse_table::Match,
    normalized: &str,
    original: &PathAndQuery,
    ctx: &TemplateCtx<'_>,
) -> Result<PathAndQuery, GatewayError> {
    let path: Cow<'_, str> = match &tr.path {
        None => Cow::Borrowed(normalized),
        Some(PathRewrite::Full(parts)) => Cow::Owned(render_path(parts, ctx)),
        Some(PathRewrite::Prefix(replacement)) => {
            // What the match covered: its prefix for Prefix, the whole path for the
            // others (Exact, Template, Regex), nothing for a match-everything rule;
            // a version prefix (already stripped) does not count.
            let stripped = matched.strip_prefix.as_ref().map_or(0, String::len);
            let covered = match &matched.path {
                gatehouse_table::PathMatch::Prefix(p) => {
                    p.trim_end_matches('/').len().saturating_sub(stripped)
                }
                gatehouse_table::PathMatch::Any => 0,
                _ => normalized.len(),
            };
            let rest = normalized.get(covered..).unwrap_or("");
            let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
                (true, true) => format!("{replacement}{}", &rest[1..]),
                (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
                _ => format!("{replacement}{rest}"),
            };
            Cow::Owned(if joined.is_empty() {
                "/".into()
            } else {
                joined
            })
        }
    };
    let query = if tr.edits_query() {
        tr.query(original.query(), &|p, out| ctx.var(p, out))
    } else {
        original.query().map(str::to_string)
    };
    let joined = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    PathAndQuery::try_from(joined).map_err(|_| GatewayError::BadPath("unforwardable path".into()))
}

/// Sends `hostname` as the upstream's `Host` (HTTP/1.1) or `:authority` (HTTP/2).
fn set_upstream_host(
    parts: &mut Parts,
    hostname: &HeaderValue,
    protocol: Protocol,
) -> Result<(), GatewayError> {
    match protocol {
        Protocol::Http1 => {
            parts.headers.insert(header::HOST, hostname.clone());
        }
        Protocol::Http2 => {
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.authority = Authority::try_from(hostname.as_bytes()).ok();
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| GatewayError::BadPath("unforwardable host".into()))?;
        }
    }
    Ok(())
}

/// Reads a whole request body within the body limit.
/// The client's request body: streamed as it arrives, or already read by a policy.
enum RequestBody {
    Streamed(Incoming),
    Buffered(Bytes),
}

impl RequestBody {
    /// The whole body, at most `limit` bytes (else 413).
    async fn read(self, limit: u64) -> Result<Bytes, GatewayError> {
        let body = match self {
            RequestBody::Buffered(b) => return Ok(b),
            RequestBody::Streamed(body) => body,
        };
        match http_body_util::Limited::new(body, limit as usize)
            .collect()
            .await
        {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(GatewayError::PayloadTooLarge(limit))
            }
            Err(_) => Err(GatewayError::BadBody(
                "the request body could not be read".into(),
            )),
        }
    }
}

/// Largest upstream response body a response policy reads whole.
const MAX_RESPONSE_EDIT_BYTES: usize = 10 * 1024 * 1024;

/// The response phase for an upstream answer: validation, response transform, then
/// error handling. `count` records policy outcomes.
async fn respond_with_policies(
    resp: Response<Body>,
    p: &RulePolicies,
    ctx: &TemplateCtx<'_>,
    count: &dyn Fn(Counter),
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, mut body) = resp.into_parts();
    if let Some(checks) = p.validation.as_ref().and_then(|v| v.response.as_ref())
        && checks.applies_to(parts.status)
    {
        let violations = match http_body_util::Limited::new(body, MAX_RESPONSE_EDIT_BYTES)
            .collect()
            .await
        {
            Ok(b) => {
                let bytes = b.to_bytes();
                let found = if parts.headers.contains_key(header::CONTENT_ENCODING) {
                    vec![Violation {
                        pointer: String::new(),
                        message: "the upstream body is content-encoded".into(),
                    }]
                } else {
                    checks.check(&bytes)
                };
                body = full(bytes);
                found
            }
            Err(_) => {
                // Too large to check, or cut off: nothing valid to send either way.
                count(Counter::ValidationResponse);
                tracing::warn!(
                    rid = ctx.rid,
                    "upstream response unreadable or over 10 MiB; not validated"
                );
                return Err(GatewayError::InvalidResponse(Vec::new()));
            }
        };
        if !violations.is_empty() {
            count(Counter::ValidationResponse);
            let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
            tracing::warn!(
                rid = ctx.rid,
                report_only = checks.report_only,
                violations = %listed.join("; "),
                "upstream response does not match its schema"
            );
            if !checks.report_only {
                return Err(GatewayError::InvalidResponse(violations));
            }
        }
    }
    // Errors: a fixed body for this status, or the gateway's format instead of the
    // upstream's body. The upstream body is dropped unread.
    if let Some(e) = &p.errors
        && e.replaces(parts.status)
    {
        let rendered = e.override_for(parts.status).unwrap_or_else(|| {
            errors::render(
                e.format,
                parts.status,
                parts.status.canonical_reason().unwrap_or("Error"),
                &format!("The upstream answered {}.", parts.status.as_u16()),
                ctx.rid,
                &[],
            )
        });
        parts.headers.remove(header::CONTENT_ENCODING);
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_TYPE, rendered.content_type);
        parts.headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(rendered.body.len()),
        );
        return Ok(Response::from_parts(parts, full(rendered.body)));
    }
    let Some(tr) = &p.response else {
        return Ok(Response::from_parts(parts, body));
    };
    if let Some(edits) = &tr.headers {
        let values = edits.render(&|v, out| ctx.var(v, out));
        edits.apply(&mut parts.headers, values);
    }
    let Some(body_edits) = &tr.body else {
        return Ok(Response::from_parts(parts, body));
    };
    // Only identity-encoded JSON is edited; anything else streams through.
    if !is_json(&parts.headers) || parts.headers.contains_key(header::CONTENT_ENCODING) {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = match http_body_util::Limited::new(body, MAX_RESPONSE_EDIT_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(GatewayError::BadGateway),
    };
    let edited = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(doc) => Bytes::from(
            serde_json::to_vec(&body_edits.apply(doc, &|v, out| ctx.var(v, out)))
                .unwrap_or_default(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "upstream JSON body does not parse; sent unchanged");
            bytes
        }
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(edited.len()));
    Ok(Response::from_parts(parts, full(edited)))
}

fn respond(r: &Respond) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(r.body.clone())));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&r.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// What `${...}` templates read.
struct TemplateCtx<'a> {
    params: &'a [(String, String)],
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    client: SocketAddr,
    rid: &'a str,
}

impl TemplateCtx<'_> {
    /// The raw (unencoded) value of one variable.
    fn var(&self, p: &TemplatePart, out: &mut String) {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::PathParam(n) => {
                if let Some((_, v)) = self.params.iter().find(|(k, _)| k == n) {
                    out.push_str(v);
                }
            }
            TemplatePart::Query(n) => {
                if let Some((_, v)) = query_pairs(self.query).find(|(k, _)| k == n) {
                    out.push_str(&v);
                }
            }
            TemplatePart::Header(n) => {
                if let Some(v) = self.headers.get(n.as_str()).and_then(|v| v.to_str().ok()) {
                    out.push_str(v);
                }
            }
            TemplatePart::ClientIp => out.push_str(&self.client.ip().to_string()),
            TemplatePart::RequestId => out.push_str(self.rid),
            // Set by authentication, which is not implemented yet: empty.
            TemplatePart::Claim(_) | TemplatePart::Consumer => {}
        }
    }
}

/// Bytes a value interpolated into a path must not carry as they are: controls, space,
/// delimiters that would end the path (`?`, `#`), `%` (values are decoded, so a `%` is
/// data) and characters URIs exclude. `/` stays: `{*rest}` captures span segments.
const PATH_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Renders a path template: literals as written, values percent-encoded, so the
/// result is always a valid URI path whatever the request carried.
fn render_path(parts: &[TemplatePart], ctx: &TemplateCtx<'_>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut value = String::new();
    for p in parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            var => {
                value.clear();
                ctx.var(var, &mut value);
                let _ = write!(
                    out,
                    "{}",
                    percent_encoding::utf8_percent_encode(&value, PATH_VALUE)
                );
            }
        }
    }
    out
}

fn redirect(r: &Redirect, host: &str, normalized: &str, ctx: &TemplateCtx<'_>) -> Response<Body> {
    let (req_host, req_port) = split_host_port(host);
    let scheme = r.scheme.unwrap_or(RedirectScheme::Http);
    let hostname = r.hostname.as_deref().unwrap_or(req_host);
    // A changed scheme drops the request's port: it belonged to the other scheme.
    let port = r.port.or(if r.scheme.is_some() { None } else { req_port });
    let default_port = scheme.default_port();
    let path = match &r.path {
        Some(parts) => render_path(parts, ctx),
        None => normalized.to_string(),
    };
    let mut location = format!("{}://{hostname}", scheme.as_str());
    if let Some(p) = port.filter(|p| *p != default_port) {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(&path);
    if let Some(q) = ctx.query {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `example.com:8080` → (`example.com`, 8080); `[::1]:80` → (`[::1]`, 80).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    let (name, rest) = match host.find(']') {
        Some(end) if host.starts_with('[') => (&host[..=end], &host[end + 1..]),
        _ => match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        },
    };
    match rest.strip_prefix(':').map(str::parse::<u16>) {
        Some(Ok(port)) => (name, Some(port)),
        _ if rest.is_empty() => (name, None),
        _ => (host, None),
    }
}

thread_local! {
    static ID_STATE: Cell<u64> = Cell::new({
        // Per-thread seed: time and thread identity; ids only need to be unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let tid = std::thread::current().id();
        let h = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(tid)
        };
        t ^ h
    });
}

/// Three splitmix64 outputs from the per-thread sequence.
fn random_words() -> [u64; 3] {
    ID_STATE.with(|s| {
        let next = || {
            let mut z = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        [next(), next(), next()]
    })
}

/// Writes `v` as 16 lowercase hex digits.
fn hex16(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// `00-<trace id>-<span id>-01` with fresh, non-zero ids.
fn new_traceparent() -> HeaderValue {
    let [a, b, c] = random_words();
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex16(&mut buf[3..19], a | 1);
    hex16(&mut buf[19..35], b);
    hex16(&mut buf[36..52], c | 1);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(
        "00-00000000000000000000000000000001-0000000000000001-01",
    ))
}

/// A new 32-hex-character request id (splitmix64 over a per-thread sequence).
fn new_request_id() -> HeaderValue {
    let [a, b, _] = random_words();
    let mut buf = [0u8; 32];
    hex16(&mut buf[..16], a);
    hex16(&mut buf[16..], b);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(upstream: &str, weight: u32, missing: bool) -> BackendRef {
        BackendRef {
            upstream: upstream.into(),
            weight,
            missing,
        }
    }

    #[test]
    fn weighted_backends_in_proportion() {
        let list = [b("a", 3, false), b("b", 1, false)];
        let picks: Vec<&str> = (0..8)
            .map(|n| pick_backend(&list, n).map_or("-", |x| x.upstream.as_str()))
            .collect();
        assert_eq!(picks, ["a", "a", "a", "b", "a", "a", "a", "b"]);
        assert!(pick_backend(&[b("a", 0, false)], 0).is_none());
        assert!(pick_backend(&[b("gone", 1, true)], 0).is_none());
    }

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("a.com:8080"), ("a.com", Some(8080)));
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    }

    #[test]
    fn traceparents_are_well_formed() {
        let t = new_traceparent();
        let t = t.to_str().expect("ascii");
        assert_eq!(t.len(), 55);
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(
            parts[1]
                .bytes()
                .chain(parts[2].bytes())
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_ne!(parts[1], "0".repeat(32));
        let mut buf = [0u8; 16];
        hex16(&mut buf, 0x0123_4567_89ab_cdef);
        assert_eq!(&buf, b"0123456789abcdef");
    }

    #[test]
    fn request_ids_are_unique_and_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.to_str()
                .expect("ascii")
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
