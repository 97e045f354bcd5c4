//! Phase 5, the backend: what a selected rule does with the request. The gateway
//! answers itself (`respond`, `redirect`), or the request goes upstream: the request
//! transform reads what it needs from the request as received, the request is rewritten
//! for the upstream (`forward.rs`), the balancer picks an upstream and an endpoint, and
//! the upstream call sends it (breaker, attempts, retries: `upstream/`), after a copy
//! went to the rule's mirror when it has one (`mirror.rs`). An `aggregate` builds its
//! answer from several upstream calls (`aggregate.rs`).

use std::future::{Future, ready};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either as OneOf;

use gatehouse_table::Action;
use http::{Request, Response, header};

use crate::body::Body;
use crate::phases::{Ctx, Inbound};
use crate::policy::{transform, validation};
use crate::prepared::PreparedRule;
use crate::problem::GatewayError;
use crate::routing::Routed;
use crate::upstream::pool::UpstreamBody;
use crate::upstream::{self, balance};
use crate::{aggregate, forward, mirror, respond};

/// Who answered.
pub(crate) enum Answer {
    /// The gateway itself: the response phases do not apply.
    Gateway(Response<Body>),
    /// An upstream: the response phases apply.
    Upstream(Response<Body>),
}

/// Serves the request by the rule's action.
///
/// Not an `async fn`, nor is [`upstream`]: what is decided at once is, and the request
/// moves straight into the upstream call's future. Every future on the request path is
/// moved as it starts, and an `async fn` keeps its arguments beside the future it
/// awaits: the request would be carried (and copied) twice at each level.
pub(crate) fn serve<'a>(
    cx: &'a Ctx<'a>,
    req: Inbound,
    routed: &'a Routed<'a>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> impl Future<Output = Result<Answer, GatewayError>> + 'a {
    let Some(rule) = cx.rule else {
        return OneOf::Left(ready(Err(GatewayError::NoRoute)));
    };
    match &rule.spec().action {
        Action::Respond(r) => OneOf::Left(ready(Ok(Answer::Gateway(respond::respond(r))))),
        Action::Redirect(r) => {
            let vars = routed.templates(cx, Some(&req.parts.headers));
            let answer = respond::redirect(r, routed.host.as_str(), &routed.path, &vars);
            OneOf::Left(ready(Ok(Answer::Gateway(answer))))
        }
        // The aggregate's answer is an upstream's for the response phases. Boxed, like
        // the request transform's body edits and the mirror's copy below: their state
        // would otherwise sit in every request's future, whatever its rule does.
        Action::Aggregate(agg) => OneOf::Right(OneOf::Left(Box::pin(async move {
            aggregate::serve(cx, rule, agg, &req.parts, routed)
                .await
                .map(Answer::Upstream)
        }))),
        Action::Backends { .. } => match upstream(cx, rule, req, routed, permit) {
            Ok(call) => OneOf::Right(OneOf::Right(call.map(|r| r.map(Answer::Upstream)))),
            Err(e) => OneOf::Left(ready(Err(e))),
        },
    }
}

/// To an upstream: balance, request transform, rewrite; then the exchange, once the
/// request body was edited and mirrored when the rule says so.
fn upstream<'a>(
    cx: &'a Ctx<'a>,
    rule: &'a PreparedRule,
    mut req: Inbound,
    routed: &'a Routed<'a>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<impl Future<Output = Result<Response<Body>, GatewayError>> + 'a, GatewayError> {
    let upstream = balance::backend(&cx.table.upstreams, rule)?;
    if !upstream.spec.blocked.is_empty() {
        return Err(GatewayError::Blocked);
    }
    // The balancer's key is read from the request as the client sent it.
    let key = balance::request_key(upstream.spec.hash_on.as_ref(), &req.parts, cx.client);
    let timeout = rule
        .spec()
        .timeout_ms
        .unwrap_or(upstream.spec.timeouts.request_ms);
    let protocol = upstream.spec.protocol;
    let tr = cx.policies().and_then(|p| p.request.as_ref());
    let (target, received) = transform::read_request(
        tr,
        &rule.spec().matches[routed.matched],
        routed,
        &routed.templates(cx, Some(&req.parts.headers)),
        &req.parts.headers,
    )?;
    forward::rewrite(&mut req.parts, target, routed.host, cx, protocol)?;
    let body_edits = transform::edit_request(tr, received, &mut req.parts, protocol)?;
    let how = upstream::Call {
        key,
        started: cx.started,
        timeout: Duration::from_millis(timeout),
        metrics: cx.metrics,
        seen: cx.access_log.enabled().then_some(&cx.attempted),
        trace: cx.traced.as_ref(),
    };
    if body_edits.is_none() && rule.mirror.is_none() {
        let body = req.body.into_upstream(req.body_limit);
        let req = for_upstream(cx, req.parts, body);
        return Ok(OneOf::Left(upstream::call(req, upstream, how, permit)));
    }
    Ok(OneOf::Right(Box::pin(async move {
        let body = match body_edits {
            // Templates evaluated from here on see no request headers: those now belong
            // to the upstream request.
            Some(edits) => {
                let vars = routed.templates(cx, None);
                let (parts, limit) = (&mut req.parts, req.body_limit);
                transform::edit_request_body(edits, parts, req.body, limit, &vars).await?
            }
            None => req.body.into_upstream(req.body_limit),
        };
        let mut req = for_upstream(cx, req.parts, body);
        if let Some(m) = &rule.mirror {
            req = mirror::copy(cx, m, req, routed.host).await?;
        }
        upstream::call(req, upstream, how, permit).await
    })))
}

/// The upstream request from its rewritten parts and body.
fn for_upstream(
    cx: &Ctx<'_>,
    mut parts: http::request::Parts,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    if validation::checks_responses(cx) {
        // A schema checks what the upstream meant, not its compression.
        parts.headers.remove(header::ACCEPT_ENCODING);
    }
    Request::from_parts(parts, body)
}
