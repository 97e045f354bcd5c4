//! Phase 5, the backend: what a selected rule does with the request. The gateway
//! answers itself (`respond`, `redirect`), or the request goes upstream: the request
//! transform reads what it needs from the request as received, the request is rewritten
//! for the upstream (`forward.rs`), the balancer picks an upstream and an endpoint, and
//! the upstream call sends it (breaker, attempts, retries: `upstream/`), after a copy
//! went to the rule's mirror when it has one (`mirror.rs`). An `aggregate` builds its
//! answer from several upstream calls (`aggregate.rs`).

use std::time::Duration;

use gatehouse_table::Action;
use http::{Request, Response, header};

use crate::body::Body;
use crate::phases::{Ctx, Inbound};
use crate::policy::{transform, validation};
use crate::prepared::PreparedRule;
use crate::problem::GatewayError;
use crate::routing::Routed;
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
pub(crate) async fn serve(
    cx: &Ctx<'_>,
    req: Inbound,
    routed: &Routed<'_>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Answer, GatewayError> {
    let rule = cx.rule.ok_or(GatewayError::NoRoute)?;
    match &rule.spec().action {
        Action::Respond(r) => Ok(Answer::Gateway(respond::respond(r))),
        Action::Redirect(r) => {
            let vars = routed.templates(cx, Some(&req.parts.headers));
            let answer = respond::redirect(r, routed.host.as_str(), &routed.path, &vars);
            Ok(Answer::Gateway(answer))
        }
        // The aggregate's answer is an upstream's for the response phases. Boxed, like
        // the mirror's copy below: their state would otherwise sit in every request's
        // future (and be moved with it), whatever its rule does.
        Action::Aggregate(agg) => Box::pin(aggregate::serve(cx, rule, agg, &req.parts, routed))
            .await
            .map(Answer::Upstream),
        Action::Backends { .. } => upstream(cx, rule, req, routed, permit)
            .await
            .map(Answer::Upstream),
    }
}

/// To an upstream: balance, request transform, rewrite, exchange.
async fn upstream(
    cx: &Ctx<'_>,
    rule: &PreparedRule,
    mut req: Inbound,
    routed: &Routed<'_>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Response<Body>, GatewayError> {
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
    // Templates evaluated from here on (bodies) see no request headers: those now
    // belong to the upstream request.
    let vars = routed.templates(cx, None);
    let body = transform::edit_request(
        tr,
        received,
        &mut req.parts,
        req.body,
        req.body_limit,
        &vars,
        protocol,
    )
    .await?;
    if validation::checks_responses(cx) {
        // A schema checks what the upstream meant, not its compression.
        req.parts.headers.remove(header::ACCEPT_ENCODING);
    }
    let mut req = Request::from_parts(req.parts, body);
    if let Some(m) = &rule.mirror {
        req = Box::pin(mirror::copy(cx, m, req, routed.host)).await?;
    }
    let how = upstream::Call {
        key,
        started: cx.started,
        timeout: Duration::from_millis(timeout),
        metrics: cx.metrics,
        seen: cx.access_log.enabled().then_some(&cx.attempted),
        trace: cx.traced.as_ref(),
    };
    upstream::call(req, upstream, how, permit).await
}
