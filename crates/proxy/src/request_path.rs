//! The request path, top to bottom, in the order `DESIGN.md` fixes. Each step reads
//! objects prepared when the table was applied; nothing is parsed or compiled here.
//!
//! 1. request id (kept from the client when present and sane, else generated), then the
//!    listener limits (431 for a head over 64 KiB, 413 for a declared body over 10 MiB)
//! 2. route lookup: host index → matcher (404, 405 + `Allow`, 400 on a bad path)
//! 3. policies: WAF → CORS → authentication → authorization → limits → validation →
//!    cache → request transform. None is implemented yet; a rule that sets any of them
//!    (or anything else unsupported) is `blocked` by the compiler and answered 503 here.
//! 4. backend: respond | redirect | upstream (weighted backend, round-robin endpoint,
//!    pooled connection, timeout)
//! 5. response: hop-by-hop stripped, `X-Request-Id` set

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_router::{Lookup, Request as RouteRequest, Selected, query_pairs};
use gatehouse_table::{Action, BackendRef, Redirect, Respond, TemplatePart};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use crate::prepared::Prepared;
use crate::problem::GatewayError;
use crate::{Body, Shared, full, headers, pool};

/// Largest request body accepted (by `Content-Length`) unless a route says otherwise.
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
pub async fn handle(req: Request<Incoming>, client: SocketAddr, shared: &Shared) -> Response<Body> {
    let started = std::time::Instant::now();
    let prepared = shared.current.load_full();
    let method = req.method().clone();
    let mut target = None;

    // 1. Request id.
    let request_id = match req.headers().get("x-request-id") {
        Some(v) if v.len() <= 128 && v.to_str().is_ok() => v.clone(),
        _ => new_request_id(),
    };
    let rid = request_id.to_str().unwrap_or_default().to_string();

    let mut resp = match serve(req, client, &prepared, &rid, &mut target).await {
        Ok(r) => r,
        Err(e) => e.response(&rid),
    };

    // 5. Response decoration.
    headers::strip_hop_by_hop(resp.headers_mut());
    resp.headers_mut().insert("x-request-id", request_id);

    // Metrics: counted when the response head is ready.
    let labels = target.map_or(&prepared.unmatched, |t: gatehouse_router::Target| {
        &prepared.labels[t.route][t.rule]
    });
    shared
        .metrics
        .record(labels, &method, resp.status().as_u16(), started.elapsed());
    resp
}

async fn serve(
    req: Request<Incoming>,
    client: SocketAddr,
    prepared: &Prepared,
    rid: &str,
    target: &mut Option<gatehouse_router::Target>,
) -> Result<Response<Body>, GatewayError> {
    // Listener limits come before any work on the request.
    // Head: hyper refuses an incomplete head beyond its buffer; a complete one
    // that arrived in one read is measured here.
    let head: usize = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > crate::server::MAX_REQUEST_HEAD {
        return Err(GatewayError::HeadersTooLarge(
            crate::server::MAX_REQUEST_HEAD,
        ));
    }

    // Body limit, before anything reads the body.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES));
    }

    // 2. Route lookup.
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
        .to_string();
    let query = req.uri().query().map(String::from);
    let view = HeaderView(req.headers());
    let lookup = prepared.router.route(&RouteRequest {
        method: req.method().as_str(),
        host: &host,
        path: req.uri().path(),
        query: query.as_deref(),
        headers: &view,
    });
    let selected = match lookup {
        Lookup::Matched(Selected {
            target,
            path,
            params,
        }) => Matched {
            target,
            path: path.into_owned(),
            params,
        },
        Lookup::NotFound => return Err(GatewayError::NoRoute),
        Lookup::MethodNotAllowed { allow } => return Err(GatewayError::MethodNotAllowed(allow)),
        Lookup::BadPath(e) => return Err(GatewayError::BadPath(e.to_string())),
    };
    let t = selected.target;
    *target = Some(t);
    let rule = &prepared.table.routes[t.route].rules[t.rule];

    // 3. Policies: any the data plane cannot enforce block the rule.
    if !rule.blocked.is_empty() {
        return Err(GatewayError::Blocked);
    }

    // 4. Backend.
    match &rule.action {
        Action::Respond(r) => Ok(respond(r)),
        Action::Redirect(r) => {
            let ctx = TemplateCtx {
                selected: &selected,
                query: query.as_deref(),
                headers: req.headers(),
                client,
                rid,
            };
            Ok(redirect(r, &host, &ctx))
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
            if upstream.schedule.is_empty() {
                return Err(GatewayError::Unavailable);
            }
            let n = upstream.next.fetch_add(1, Ordering::Relaxed);
            let addr = upstream.schedule[n % upstream.schedule.len()];
            let timeout = rule.timeout_ms.unwrap_or(upstream.spec.timeouts.request_ms);
            let path = selected.path;
            forward(
                req,
                addr,
                &path,
                query.as_deref(),
                &host,
                client,
                rid,
                upstream,
                timeout,
            )
            .await
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

#[allow(clippy::too_many_arguments)] // the parts of one exchange; a struct would only rename them
async fn forward(
    req: Request<Incoming>,
    addr: SocketAddr,
    path: &str,
    query: Option<&str>,
    host: &str,
    client: SocketAddr,
    rid: &str,
    upstream: &crate::prepared::PreparedUpstream,
    timeout_ms: u64,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    parts.uri =
        Uri::try_from(target).map_err(|_| GatewayError::BadPath("unforwardable path".into()))?;
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarding(
        &mut parts.headers,
        client,
        (!host.is_empty()).then_some(host),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        parts.headers.insert("x-request-id", v);
    }
    // W3C Trace Context: propagated as received, or started here.
    if !parts.headers.contains_key("traceparent") {
        parts.headers.insert("traceparent", new_traceparent());
    }
    if !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(host)
    {
        parts.headers.insert(header::HOST, v);
    }
    let connect = Duration::from_millis(upstream.spec.timeouts.connect_ms);
    let exchange = pool::send(addr, Request::from_parts(parts, body), connect);
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Err(_) => Err(GatewayError::Timeout),
        Ok(Err(pool::SendError::ConnectTimeout(_))) => Err(GatewayError::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.spec.id, error = %e, "upstream exchange failed");
            Err(GatewayError::BadGateway)
        }
        Ok(Ok(resp)) => Ok(resp.map(http_body_util::Either::Right)),
    }
}

fn respond(r: &Respond) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(r.body.clone())));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&r.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The router's answer, owned, so the request can move on to the upstream.
struct Matched {
    target: gatehouse_router::Target,
    path: String,
    params: Vec<(String, String)>,
}

/// What `${...}` templates read.
struct TemplateCtx<'a> {
    selected: &'a Matched,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    client: SocketAddr,
    rid: &'a str,
}

fn render(parts: &[TemplatePart], ctx: &TemplateCtx<'_>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::PathParam(n) => {
                if let Some((_, v)) = ctx.selected.params.iter().find(|(k, _)| k == n) {
                    out.push_str(v);
                }
            }
            TemplatePart::Query(n) => {
                if let Some((_, v)) = query_pairs(ctx.query).find(|(k, _)| k == n) {
                    out.push_str(&v);
                }
            }
            TemplatePart::Header(n) => {
                if let Some(v) = ctx.headers.get(n.as_str()).and_then(|v| v.to_str().ok()) {
                    out.push_str(v);
                }
            }
            TemplatePart::ClientIp => out.push_str(&ctx.client.ip().to_string()),
            TemplatePart::RequestId => out.push_str(ctx.rid),
            // Set by authentication, which is not implemented yet: empty.
            TemplatePart::Claim(_) | TemplatePart::Consumer => {}
        }
    }
    out
}

fn redirect(r: &Redirect, host: &str, ctx: &TemplateCtx<'_>) -> Response<Body> {
    let (req_host, req_port) = split_host_port(host);
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let hostname = r.hostname.as_deref().unwrap_or(req_host);
    // A changed scheme drops the request's port: it belonged to the other scheme.
    let port = r.port.or(if r.scheme.is_some() { None } else { req_port });
    let default_port = if scheme == "https" { 443 } else { 80 };
    let path = match &r.path {
        Some(parts) => render(parts, ctx),
        None => ctx.selected.path.clone(),
    };
    let mut location = format!("{scheme}://{hostname}");
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

/// `00-<trace id>-<span id>-01` with fresh, non-zero ids.
fn new_traceparent() -> HeaderValue {
    let [a, b, c] = random_words();
    let (a, c) = (a | 1, c | 1);
    HeaderValue::from_str(&format!("00-{a:016x}{b:016x}-{c:016x}-01")).unwrap_or(
        HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-01"),
    )
}

/// A new 32-hex-character request id (splitmix64 over a per-thread sequence).
fn new_request_id() -> HeaderValue {
    let [a, b, _] = random_words();
    HeaderValue::from_str(&format!("{a:016x}{b:016x}")).unwrap_or(HeaderValue::from_static("0"))
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
