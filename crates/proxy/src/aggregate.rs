//! Service aggregation (rule `aggregate`): one answer built from several upstream calls.
//!
//! The calls run concurrently on the request's own task, each through its upstream's
//! whole machinery ([`upstream::call`]: breaker, balancer, health, retries, TLS,
//! timeouts). Each call is a new request: its method, its target rendered from the
//! call's `path` template (each value percent-encoded for its place, see
//! [`render_target`]), no body, and of the client's headers only those that say who the
//! caller is, as the route's policies left them (see [`passed_headers`]).
//!
//! A call succeeds with a 2xx answer whose body is JSON of at most [`MAX_CALL_BYTES`];
//! anything else (another status, another encoding, a larger or broken body, not JSON,
//! a `Deep` part that is not an object, no answer before the deadline) is a failed call,
//! described as an RFC 9457 problem object naming it.
//!
//! The results are merged in **call order**, whatever order they arrive in: `Keyed`
//! makes `{"<call>": <its JSON>, ...}`; `Deep` merges the objects, a later call's value
//! winning a conflicting one, objects merging recursively, anything else (arrays
//! included) replaced whole. With failures, `Partial` answers 200 with the successful
//! parts and `errors`, the failed calls' problems; `Fail`, or `Partial` when every call
//! failed, answers 502 problem+json listing them.
//!
//! `timeout` (else the rule's) bounds all calls, bodies included: calls still running
//! then fail. Without either, each call has its upstream's request timeout.
//!
//! The merged answer then goes through the response phases like an upstream's.

use std::time::Duration;

use bytes::Bytes;
use gatehouse_table::{Aggregate, AggregateCall, AggregateMerge, AggregateOnError};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::body::Body;
use crate::forward;
use crate::phases::Ctx;
use crate::prepared::PreparedRule;
use crate::problem::GatewayError;
use crate::routing::Routed;
use crate::template::render_target;
use crate::upstream::{self, PreparedUpstream, balance};

/// The largest answer a call may give.
pub const MAX_CALL_BYTES: usize = 1024 * 1024;

/// A failed call, as the problem object that names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallError {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's phrase.
    pub title: &'static str,
    /// The status the call's failure stands for (502, 503, 504).
    pub status: u16,
    /// What went wrong.
    pub detail: String,
    /// The call's `name`.
    pub call: String,
    /// The upstream's own status, when it answered one that is not 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
}

impl CallError {
    fn new(call: &AggregateCall, status: StatusCode, detail: String) -> CallError {
        CallError {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            call: call.name.clone(),
            upstream_status: None,
        }
    }

    fn bad_gateway(call: &AggregateCall, detail: String) -> CallError {
        CallError::new(call, StatusCode::BAD_GATEWAY, detail)
    }

    fn of(call: &AggregateCall, e: &GatewayError) -> CallError {
        let (status, _, detail) = e.describe();
        CallError::new(call, status, detail)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call {}: {} {}", self.call, self.status, self.detail)
    }
}

/// Serves the rule's aggregate for the request whose (authenticated) parts are `parts`.
pub(crate) async fn serve(
    cx: &Ctx<'_>,
    rule: &PreparedRule,
    agg: &Aggregate,
    parts: &Parts,
    routed: &Routed<'_>,
) -> Result<Response<Body>, GatewayError> {
    let vars = routed.templates(cx, Some(&parts.headers));
    let deadline = agg
        .timeout_ms
        .or(rule.spec().timeout_ms)
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let passed = passed_headers(cx, &parts.headers);
    let calls = agg.calls.iter().zip(rule.calls.iter()).map(|(call, up)| {
        let target = render_target(&call.path, &vars);
        let upstream = up.and_then(|i| cx.table.upstreams.get(i as usize));
        let req = Sent {
            cx,
            call,
            target,
            passed: &passed,
            client: parts,
            routed,
        };
        req.run(upstream, deadline, agg.merge)
    });
    let results = futures_util::future::join_all(calls).await;
    answer(agg, results)
}

/// Of the client's headers, those a call carries: who the caller is (`Authorization`
/// when the route's authentication left it on the request, and the headers
/// authentication set: forwarded claims, the external check's), where the request came
/// from (`X-Forwarded-For`, `Forwarded`), its trace context and preferred language.
/// Cookies, bodies' headers and the rest stay with the client.
fn passed_headers(cx: &Ctx<'_>, client: &HeaderMap) -> HeaderMap {
    const PASSED: [&str; 6] = [
        "authorization",
        "x-forwarded-for",
        "forwarded",
        "traceparent",
        "tracestate",
        "accept-language",
    ];
    let identity = cx
        .policies()
        .and_then(|p| p.authentication.as_ref())
        .map_or(&[][..], |a| a.identity_headers());
    let mut out = HeaderMap::new();
    let names = PASSED
        .iter()
        .map(|n| HeaderName::from_static(n))
        .chain(identity.iter().cloned());
    for name in names {
        for v in client.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    out
}

/// One call on its way.
struct Sent<'a, 'c> {
    cx: &'a Ctx<'c>,
    call: &'a AggregateCall,
    target: String,
    passed: &'a HeaderMap,
    client: &'a Parts,
    routed: &'a Routed<'a>,
}

impl Sent<'_, '_> {
    /// Makes the call, reads its answer; fails at `deadline` (else the upstream's
    /// request timeout).
    async fn run(
        self,
        upstream: Option<&PreparedUpstream>,
        deadline: Option<tokio::time::Instant>,
        merge: AggregateMerge,
    ) -> Result<Value, CallError> {
        let call = self.call;
        let upstream = upstream.ok_or_else(|| CallError::of(call, &GatewayError::Unavailable))?;
        if !upstream.spec.blocked.is_empty() {
            return Err(CallError::of(call, &GatewayError::Blocked));
        }
        let limit = Duration::from_millis(upstream.spec.timeouts.request_ms);
        let now = tokio::time::Instant::now();
        let deadline = deadline.unwrap_or(now + limit);
        let req = self.request(upstream)?;
        let how = upstream::Call {
            key: balance::request_key(upstream.spec.hash_on.as_ref(), self.client, self.cx.client),
            started: self.cx.started,
            timeout: limit.min(deadline.saturating_duration_since(now)),
            metrics: self.cx.metrics,
            seen: None,
            trace: self.cx.traced.as_ref(),
        };
        let work = async {
            let resp = upstream::call(req, upstream, how, None)
                .await
                .map_err(|e| CallError::of(call, &e))?;
            read(call, resp, merge).await
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(CallError::new(
                    call,
                    StatusCode::GATEWAY_TIMEOUT,
                    "The call did not finish before the aggregate's deadline.".into(),
                ))
            })
    }

    /// The call's request, for an upstream that speaks `upstream.spec.protocol`.
    fn request(
        &self,
        upstream: &PreparedUpstream,
    ) -> Result<Request<upstream::pool::UpstreamBody>, CallError> {
        let call = self.call;
        let method = http::Method::from_bytes(call.method.as_bytes()).map_err(|_| {
            CallError::bad_gateway(call, format!("{:?} is not an HTTP method.", call.method))
        })?;
        let target = PathAndQuery::try_from(self.target.as_str()).map_err(|_| {
            CallError::bad_gateway(
                call,
                "The call's path is not a valid request target.".into(),
            )
        })?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.headers = self.passed.clone();
        if !matches!(
            method,
            http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
        ) {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        parts.method = method;
        let cx = self.cx;
        forward::rewrite(
            &mut parts,
            target,
            self.routed.host,
            cx,
            upstream.spec.protocol,
        )
        .map_err(|e| CallError::of(call, &e))?;
        Ok(Request::from_parts(
            parts,
            Either::Right(Full::new(Bytes::new())),
        ))
    }
}

/// A call's answer as JSON: 2xx, not content-encoded, at most [`MAX_CALL_BYTES`], an
/// object for a `Deep` merge.
async fn read(
    call: &AggregateCall,
    resp: Response<Body>,
    merge: AggregateMerge,
) -> Result<Value, CallError> {
    let status = resp.status();
    if !status.is_success() {
        let mut e = CallError::bad_gateway(call, format!("The upstream answered {status}."));
        e.upstream_status = Some(status.as_u16());
        return Err(e);
    }
    if let Some(enc) = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        let enc = String::from_utf8_lossy(enc.as_bytes()).into_owned();
        return Err(CallError::bad_gateway(
            call,
            format!("The answer is encoded ({enc}); calls ask for none."),
        ));
    }
    let body = match Limited::new(resp.into_body(), MAX_CALL_BYTES)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(CallError::bad_gateway(
                call,
                format!("The answer is larger than {MAX_CALL_BYTES} bytes."),
            ));
        }
        Err(_) => {
            return Err(CallError::bad_gateway(
                call,
                "The upstream broke off its answer.".into(),
            ));
        }
    };
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| CallError::bad_gateway(call, format!("The answer is not JSON: {e}.")))?;
    if merge == AggregateMerge::Deep && !value.is_object() {
        return Err(CallError::bad_gateway(
            call,
            "The answer is not a JSON object, which a Deep merge needs.".into(),
        ));
    }
    Ok(value)
}

/// The merged answer, or 502 (see the module doc).
fn answer(
    agg: &Aggregate,
    results: Vec<Result<Value, CallError>>,
) -> Result<Response<Body>, GatewayError> {
    let mut errors = Vec::new();
    let mut doc = Map::new();
    for (call, result) in agg.calls.iter().zip(results) {
        match (result, agg.merge) {
            (Err(e), _) => errors.push(e),
            (Ok(v), AggregateMerge::Keyed) => {
                doc.insert(call.name.clone(), v);
            }
            (Ok(Value::Object(part)), AggregateMerge::Deep) => deep_merge(&mut doc, part),
            (Ok(_), AggregateMerge::Deep) => {}
        }
    }
    let all_failed = errors.len() == agg.calls.len();
    if !errors.is_empty() && (agg.on_error == AggregateOnError::Fail || all_failed) {
        return Err(GatewayError::AggregateFailed(errors.into()));
    }
    if !errors.is_empty() {
        doc.insert("errors".into(), serde_json::json!(errors));
    }
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let mut resp = Response::new(crate::body::full(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Merges `part` into `into`: objects recursively, any other value replaced whole.
fn deep_merge(into: &mut Map<String, Value>, part: Map<String, Value>) {
    for (k, v) in part {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => deep_merge(mine, theirs),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn deep_merge_merges_objects_and_replaces_the_rest() {
        let mut doc = obj(json!({"a": {"x": 1, "y": [1, 2]}, "b": "first"}));
        deep_merge(
            &mut doc,
            obj(json!({"a": {"y": [3], "z": true}, "b": {"now": "object"}})),
        );
        assert_eq!(
            Value::Object(doc),
            json!({"a": {"x": 1, "y": [3], "z": true}, "b": {"now": "object"}})
        );
    }

    fn agg(merge: AggregateMerge, on_error: AggregateOnError) -> Aggregate {
        let call = |name: &str| AggregateCall {
            name: name.into(),
            upstream: "ns/u".into(),
            method: "GET".into(),
            ..Default::default()
        };
        Aggregate {
            calls: vec![call("a"), call("b")],
            merge,
            on_error,
            timeout_ms: None,
        }
    }

    fn body(resp: Response<Body>) -> Value {
        let Either::Left(full) = resp.into_body() else {
            panic!("a generated body")
        };
        let bytes = futures_util::FutureExt::now_or_never(full.collect())
            .expect("ready")
            .expect("no error")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn the_later_call_wins_in_call_order() {
        let a = agg(AggregateMerge::Deep, AggregateOnError::Partial);
        let resp = answer(
            &a,
            vec![Ok(json!({"v": 1, "only_a": 1})), Ok(json!({"v": 2}))],
        )
        .expect("200");
        assert_eq!(body(resp), json!({"v": 2, "only_a": 1}));
    }

    #[test]
    fn partial_lists_failures_and_fail_refuses() {
        let failed = CallError::bad_gateway(
            &agg(AggregateMerge::Keyed, AggregateOnError::Fail).calls[1],
            "x".into(),
        );
        let partial = agg(AggregateMerge::Keyed, AggregateOnError::Partial);
        let resp = answer(&partial, vec![Ok(json!(1)), Err(failed.clone())]).expect("200");
        let doc = body(resp);
        assert_eq!(doc["a"], json!(1));
        assert_eq!(doc["errors"][0]["call"], json!("b"));
        assert_eq!(doc["errors"][0]["status"], json!(502));

        let fail = agg(AggregateMerge::Keyed, AggregateOnError::Fail);
        let e = answer(&fail, vec![Ok(json!(1)), Err(failed.clone())]).expect_err("502");
        assert!(matches!(e, GatewayError::AggregateFailed(ref l) if l.len() == 1));

        let e = answer(&partial, vec![Err(failed.clone()), Err(failed)]).expect_err("502");
        assert!(matches!(e, GatewayError::AggregateFailed(ref l) if l.len() == 2));
    }
}
