//! The request path: a fixed list of named phases over one per-request context, in the
//! order `DESIGN.md` fixes. [`serve`] is that list, one call per phase; each phase's
//! body lives in the file of its behaviour. A phase that may answer early returns a
//! [`Phase`]: `Break(response)` ends the request there.
//!
//! ```text
//!  1. listener limits        listener/limits.rs   414, 431, 400 (framing), 413
//!  2. route lookup           routing.rs           404, 405 + Allow, 400; 503 for a blocked rule
//!  3. WAF                    policy/waf/          403 (CIDR rules, native rules, CRS)
//!     CORS                   policy/cors.rs       preflights answered here
//!     authentication         policy/authentication.rs 401 + WWW-Authenticate (503 when
//!                                                 the check service fails)
//!     authorization          policy/authorization.rs  403
//!  4. rate limit             policy/limit.rs      429, or a wait when throttling
//!     concurrency limit      policy/limit.rs      503
//!     request validation     policy/validation.rs 415, 413, 400
//!     cache lookup           policy/cache.rs      a hit answers
//!  5. backend                backend.rs           respond | redirect | upstream:
//!                                                 request transform (policy/transform.rs),
//!                                                 balance → exchange (upstream/)
//!  6. response               policy/validation.rs → policy/errors.rs → policy/transform.rs
//!                            → policy/cache.rs (store); then [`finish`]: decorations
//!                            (CORS, RateLimit-*, X-Cache, version headers), hop-by-hop
//!                            headers stripped, X-Request-Id, metrics
//! ```
//!
//! Phases 3, 4 and 6 are the rule's policies: a rule without any goes from 2 to 5.
//!
//! The request is taken apart once (`into_parts`); routing borrows from it, and the
//! parts are then rewritten in place for the upstream, so a plain proxied request
//! copies no header, path or query.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::access_log::{self, AccessLog};
use crate::body::{Body, RequestBody};
use crate::headers::{self, Peer, X_REQUEST_ID};
use crate::metrics::{Counter, Metrics};
use crate::policy::authentication::{self, Identity};
use crate::policy::{
    RulePolicies, authorization, cache, cors, errors, limit, transform, validation, waf,
};
use crate::prepared::PreparedRule;
use crate::problem::GatewayError;
use crate::routing;
use crate::{Shared, backend, listener, request_id};
use http_body_util::Either;

/// What a phase that may answer early returns: `Break` with the answer, or `Continue`
/// with what the next phases need.
pub(crate) type Phase<T = ()> = Result<ControlFlow<Response<Body>, T>, GatewayError>;

/// What a phase returns when it may have to wait: its result now (most requests, most
/// phases), or the waiting part, boxed. Boxed because an `async fn` phase's whole state
/// would otherwise sit in every request's future and be moved each time the phase
/// starts, whether or not the rule has the policy.
pub(crate) enum Step<'a, T> {
    /// Done: the result.
    Now(Option<T>),
    /// Still to do.
    Later(Pin<Box<dyn Future<Output = T> + 'a>>),
}

impl<'a, T> Step<'a, T> {
    /// The result, now.
    pub fn now(value: T) -> Step<'a, T> {
        Step::Now(Some(value))
    }

    /// The result, once `work` is done.
    pub fn later(work: impl Future<Output = T> + 'a) -> Step<'a, T> {
        Step::Later(Box::pin(work))
    }
}

impl<T: Unpin> Future for Step<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.get_mut() {
            // Taken once; a poll after completion stays pending.
            Step::Now(value) => value
                .take()
                .map_or(std::task::Poll::Pending, std::task::Poll::Ready),
            Step::Later(work) => work.as_mut().poll(cx),
        }
    }
}

/// One request's context: what every phase reads, and what phases leave for the
/// response.
pub(crate) struct Ctx<'t> {
    /// The table this request is served by, start to end (the worker's handle on it,
    /// which a mirrored copy, outliving the request, clones).
    pub table: &'t crate::WorkerTable,
    /// Where outcomes are counted.
    pub metrics: &'t Metrics,
    /// The client end of the connection.
    pub peer: &'t Peer,
    /// The client's address: the peer's, or with `--trusted-proxies`, the one the
    /// trusted proxies in front of us name in `X-Forwarded-For`.
    pub client: std::net::IpAddr,
    /// `X-Request-Id`: the client's, or generated.
    pub request_id: &'t HeaderValue,
    /// The rule routing selected; `None` until then (or when none matched).
    pub rule: Option<&'t PreparedRule>,
    /// Headers the response carries whatever it is.
    pub decor: Decor<'t>,
    /// When the request arrived: the time the request path reads, rather than the
    /// clock again (what is only compared against seconds-long limits).
    pub started: Instant,
    /// Who the caller is, once authentication accepted it.
    pub identity: Option<Identity>,
    /// Mirrored copies in flight and their bound.
    pub mirrors: &'t crate::mirror::Mirrors,
    /// `--public-docs`: the host whose `/docs` this listener answers.
    pub public_docs: Option<&'t str>,
    /// The access log.
    pub access_log: &'t AccessLog,
    /// The last upstream attempt, noted for the access log when it is on.
    pub attempted: std::cell::Cell<Option<access_log::Attempted>>,
    /// The `traceparent` started for a request that came without a valid one, when the
    /// access log or tracing is on (so that its line, its spans and the upstream see the
    /// same trace).
    pub trace: Option<crate::traceparent::TraceContext>,
    /// Trace export.
    pub tracer: &'t crate::trace::Tracer,
    /// The request's trace, when tracing is on: where upstream attempts are noted.
    pub traced: Option<crate::trace::Traced>,
}

impl<'t> Ctx<'t> {
    /// The selected rule's policies; `None` before routing or for a rule without any.
    pub fn policies(&self) -> Option<&'t RulePolicies> {
        self.rule.and_then(|r| r.policies.as_deref())
    }

    /// The request id as text.
    pub fn rid(&self) -> &'t str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// Counts `counter` for the selected rule.
    pub fn count(&self, counter: Counter) {
        if let Some(rule) = self.rule {
            self.metrics.count(&rule.labels, counter);
        }
    }
}

/// Headers policies add to the response, whatever it is (a 429 must carry CORS headers
/// too, or the page cannot read it), and those of the route's API version.
#[derive(Default)]
pub(crate) struct Decor<'t> {
    /// CORS response headers.
    pub cors: Option<HeaderMap>,
    /// `RateLimit-*`.
    pub quota: Option<limit::Quota>,
    /// `X-Cache`.
    pub cache: Option<HeaderValue>,
    /// `Deprecation`, `Sunset`, `Vary` of a versioned route.
    pub version: Option<&'t crate::version::VersionHeaders>,
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

/// Serves one request.
pub async fn handle(req: Request<Incoming>, peer: &Peer, shared: &Shared) -> Response<Body> {
    let started = Instant::now();
    let table = shared.prepared();
    let arrived = (shared.access_log.enabled() || shared.tracer.enabled())
        .then(|| access_log::Arrived::of(&req));
    let traced = arrived.as_ref().and_then(|a| shared.tracer.traced(a));
    let method = req.method().clone();
    let request_id = request_id::of(req.headers());
    let client = shared.client_of(peer, req.headers());
    let mut cx = Ctx {
        table: &table,
        metrics: &shared.metrics,
        peer,
        client,
        request_id: &request_id,
        rule: None,
        decor: Decor::default(),
        started,
        identity: None,
        mirrors: &shared.mirrors,
        public_docs: shared.public_docs.as_deref(),
        access_log: &shared.access_log,
        attempted: std::cell::Cell::new(None),
        trace: arrived
            .as_ref()
            .filter(|a| a.trace_started)
            .map(|a| a.trace),
        tracer: &shared.tracer,
        traced,
    };
    let http1 = req.version() < http::Version::HTTP_2;
    let (resp, close, refused) = match serve(req, &mut cx).await {
        Ok(resp) => (resp, false, None),
        Err(e) => {
            let close = http1 && e.closes_connection();
            let refused = e.refused_by();
            (error_response(&cx, e), close, refused)
        }
    };
    let mut resp = finish(cx, resp, &method, arrived.map(|a| (a, refused)));
    if close {
        // Set after hop-by-hop headers are stripped; hyper then closes after it.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The phases, in order.
async fn serve(req: Request<Incoming>, cx: &mut Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();
    let mut req = Inbound {
        parts,
        body: RequestBody::Streamed(crate::body::ClientBody::new(body)),
        body_limit: listener::limits::MAX_BODY_BYTES,
    };
    // 1. Listener limits, before any work on the request.
    listener::limits::check(&req.parts)?;
    // 2. Route lookup (a CORS preflight for another method of the path answers here;
    // so does the API documentation, on the `--public-docs` host).
    let (host, target) = routing::what_was_asked(&req.parts);
    if let Some(docs) = cx.public_docs
        && let Some(answer) = routing::public_docs(cx, docs, &req.parts, &host)
    {
        return Ok(answer);
    }
    // The target without the API-key query parameter, when authentication removed it.
    let mut stripped = None;
    let mut routed = match routing::select(cx, &req.parts, &host, &target)? {
        ControlFlow::Continue(routed) => routed,
        ControlFlow::Break(answer) => return Ok(answer),
    };
    if cx.policies().is_none() {
        // Phases 3, 4 and 6 are policies', and this rule has none: only 5 applies.
        let (backend::Answer::Gateway(resp) | backend::Answer::Upstream(resp)) =
            backend::serve(cx, req, &routed, None).await?;
        return Ok(resp);
    }
    // 3. WAF → CORS → authentication → authorization.
    waf::on_request(cx, &mut req).await?;
    if let ControlFlow::Break(answer) = cors::on_request(cx, &req.parts)? {
        return Ok(answer);
    }
    match authentication::on_request(cx, &mut req.parts).await? {
        ControlFlow::Break(answer) => return Ok(answer),
        ControlFlow::Continue(None) => {}
        ControlFlow::Continue(Some(target)) => routed.target = stripped.insert(target),
    }
    authorization::check(cx)?;
    // 4. Rate limit → concurrency limit → request validation → cache lookup.
    limit::rate_limit(cx, &req.parts).await?;
    let permit = limit::concurrency(cx).await?;
    validation::on_request(cx, &mut req).await?;
    let fill = match cache::lookup(cx, &req.parts, &routed).await? {
        ControlFlow::Continue(fill) => fill,
        ControlFlow::Break(hit) => return Ok(hit),
    };
    // 5. Backend: respond | redirect | upstream (request transform, balance, exchange).
    let resp = match backend::serve(cx, req, &routed, permit).await? {
        backend::Answer::Gateway(resp) => return Ok(resp),
        backend::Answer::Upstream(resp) => resp,
    };
    // 6. Response: validation → error formatting, or the response transform → cache store
    // (each only when the rule has it).
    let resp = if cx.policies().is_some_and(RulePolicies::acts_on_responses) {
        let vars = routed.templates(cx, None);
        let resp = validation::on_response(cx, resp).await?;
        match errors::replace_upstream(cx, resp) {
            ControlFlow::Break(replaced) => replaced,
            ControlFlow::Continue(resp) => transform::on_response(cx, resp, &vars).await?,
        }
    } else {
        resp
    };
    match fill {
        Some(fill) => cache::store(fill, resp).await,
        None => Ok(resp),
    }
}

/// The client's request as the phases rewrite it for the upstream.
pub(crate) struct Inbound {
    /// Method, target, headers: rewritten in place for the upstream.
    pub parts: http::request::Parts,
    /// Streamed until a phase needs it whole.
    pub body: RequestBody,
    /// Largest body accepted: the listener's, or a rule's smaller one.
    pub body_limit: u64,
}

/// The answer for a request that failed: the gateway's error, in the rule's format.
fn error_response(cx: &Ctx<'_>, e: GatewayError) -> Response<Body> {
    match e {
        GatewayError::RateLimited { .. } => cx.count(Counter::RateLimited),
        GatewayError::Invalid(_) => cx.count(Counter::ValidationRequest),
        _ => {}
    }
    let format = cx.policies().and_then(|p| p.errors.as_ref());
    e.response_as(cx.rid(), format)
}

/// Decorates the response (policies' headers, the version's, hop-by-hop headers
/// stripped, `X-Request-Id`), counts it, logs it when the access log is on and hands
/// its trace to the exporter when it is kept (`logged`: what the request was, and what
/// refused it).
fn finish(
    mut cx: Ctx<'_>,
    mut resp: Response<Body>,
    method: &http::Method,
    logged: Option<(access_log::Arrived, Option<&'static str>)>,
) -> Response<Body> {
    let cache = logged.as_ref().and_then(|_| cx.decor.cache.clone());
    // A versioned route marks each of its responses (Deprecation, Sunset, Vary).
    cx.decor.version = cx.rule.and_then(|r| r.version.as_deref());
    cx.decor.apply(resp.headers_mut());
    // A `101 Switching Protocols` keeps the headers that say which protocol the
    // connection now speaks.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop_except_upgrade(resp.headers_mut());
    } else {
        headers::strip_hop_by_hop(resp.headers_mut());
    }
    resp.headers_mut()
        .insert(X_REQUEST_ID, cx.request_id.clone());
    // Counted when the response head is ready.
    let labels = cx.rule.map_or(&cx.table.unmatched, |r| &r.labels);
    let (status, took) = (resp.status().as_u16(), cx.started.elapsed());
    cx.metrics.record(labels, method, status, took);
    let Some((arrived, refused)) = logged else {
        return resp;
    };
    if let Some(traced) = cx.traced.take()
        && let Some(why) = cx.tracer.keep(&traced, status, took)
    {
        traced.note_exemplars(cx.metrics, labels, took);
        cx.tracer.send(crate::trace::Kept {
            traced,
            why,
            at: arrived.at,
            took,
            method: method.clone(),
            host: arrived.host.clone(),
            target: arrived.target.clone(),
            status,
            client: cx.client,
            labels: cx.rule.map(|r| r.labels),
            refused,
            request_id: cx.request_id.clone(),
        });
    }
    if cx.access_log.enabled() && cx.access_log.wanted(status) {
        use hyper::body::Body as _;
        let entry = access_log::Entry {
            arrived,
            request_id: cx.request_id.clone(),
            client: cx.client,
            labels: cx.rule.map(|r| r.labels),
            attempted: cx.attempted.get(),
            status,
            bytes_out: resp.body().size_hint().exact(),
            duration: took,
            cache,
            consumer: cx.identity.as_ref().and_then(|i| i.consumer.clone()),
            refused,
        };
        // A body of unknown length is counted as it streams; its line waits for its end.
        match resp.body_mut() {
            Either::Right(streamed) if entry.bytes_out.is_none() => {
                if let Some(line) = cx.access_log.pending(entry) {
                    streamed.log_at_end(line);
                }
            }
            _ => cx.access_log.push(entry),
        }
    }
    resp
}
