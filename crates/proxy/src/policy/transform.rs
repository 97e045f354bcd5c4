//! Request and response transformation: headers (set, add, remove, with `${...}`
//! templates), path (`replacePrefixMatch`, `replaceFullPath`), hostname, query
//! (set, remove) and JSON bodies (set, remove, rename by JSON Pointer).
//!
//! Templates come parsed in the table; a value that is plain text is turned into its
//! `HeaderValue` once, when the table is prepared. A rendered header value that is not a valid
//! header value (a control character from a request header, say) is not sent, rather
//! than failing the request.
//!
//! Body edits apply to `application/json` (and `+json`) bodies only; others pass
//! untouched. Such a body is read whole (within the request body limit), edited, and
//! sent with a correct `Content-Length`; a body that is not valid JSON is answered 400
//! (request) or passed through unchanged and logged (response).

use gatehouse_table::TemplatePart;
use gatehouse_table::policy as table;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::Value;

use std::borrow::Cow;

use bytes::Bytes;
use gatehouse_table::{Match, PathMatch, Protocol};
use http::Response;
use http::request::Parts;
use http::uri::PathAndQuery;

use crate::body::{RequestBody, read_whole};
use crate::phases::{Ctx, Step};
use crate::problem::GatewayError;
use crate::routing::Routed;
use crate::template::{TemplateCtx, render_path};
use crate::upstream::pool::UpstreamBody;
use crate::{Body, full};

/// A header value: fixed, or rendered per request.
#[derive(Debug)]
enum Text {
    Fixed(HeaderValue),
    Template(Vec<TemplatePart>),
}

/// Writes the value of one template variable into `out`.
pub type Vars<'a> = dyn Fn(&TemplatePart, &mut String) + 'a;

fn render(parts: &[TemplatePart], vars: &Vars<'_>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            other => vars(other, &mut out),
        }
    }
    out
}

impl Text {
    fn prepare(parts: &[TemplatePart]) -> Result<Text, String> {
        match parts {
            [] => Ok(Text::Fixed(HeaderValue::from_static(""))),
            [TemplatePart::Literal(l)] => HeaderValue::from_str(l)
                .map(Text::Fixed)
                .map_err(|_| format!("{l:?} is not a valid header value")),
            _ => Ok(Text::Template(parts.to_vec())),
        }
    }

    fn value(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        match self {
            Text::Fixed(v) => Some(v.clone()),
            Text::Template(parts) => HeaderValue::from_str(&render(parts, vars)).ok(),
        }
    }
}

/// Prepared header edits.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, Text)>,
    add: Vec<(HeaderName, Text)>,
}

fn header_name(n: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
}

impl HeaderEdits {
    fn prepare(c: &table::HeaderEdits) -> Result<HeaderEdits, String> {
        let pairs = |list: &[table::HeaderTemplate]| -> Result<Vec<(HeaderName, Text)>, String> {
            list.iter()
                .map(|h| Ok((header_name(&h.name)?, Text::prepare(&h.value)?)))
                .collect()
        };
        Ok(HeaderEdits {
            remove: c
                .remove
                .iter()
                .map(|n| header_name(n))
                .collect::<Result<_, _>>()?,
            set: pairs(&c.set)?,
            add: pairs(&c.add)?,
        })
    }

    /// The values of `set` then `add`, rendered (`None`: not a valid header value).
    /// Rendering comes first so templates read the headers as they were received.
    pub fn render(&self, vars: &Vars<'_>) -> Vec<Option<HeaderValue>> {
        self.set
            .iter()
            .chain(&self.add)
            .map(|(_, t)| t.value(vars))
            .collect()
    }

    /// Remove, then set (replacing every value), then add (appending), with the values
    /// [`HeaderEdits::render`] returned.
    pub fn apply(&self, headers: &mut HeaderMap, values: Vec<Option<HeaderValue>>) {
        for n in &self.remove {
            headers.remove(n);
        }
        let mut values = values.into_iter();
        for (n, _) in &self.set {
            match values.next().flatten() {
                Some(v) => {
                    headers.insert(n.clone(), v);
                }
                None => {
                    headers.remove(n);
                }
            }
        }
        for (n, _) in &self.add {
            if let Some(v) = values.next().flatten() {
                headers.append(n.clone(), v);
            }
        }
    }
}

/// How the forwarded path is rewritten.
#[derive(Debug)]
pub enum PathRewrite {
    /// The part of the path the rule's Prefix match covered is replaced by this.
    Prefix(String),
    /// The whole path is this template (values percent-encoded).
    Full(Vec<TemplatePart>),
}

/// Prepared JSON body edits.
#[derive(Debug, Default)]
pub struct BodyEdits {
    set: Vec<(String, Vec<TemplatePart>)>,
    remove: Vec<String>,
    rename: Vec<(String, String)>,
}

impl BodyEdits {
    fn prepare(c: &table::BodyEdits) -> BodyEdits {
        BodyEdits {
            set: c.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            remove: c.remove.clone(),
            rename: c
                .rename
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Renames, then removes, then sets. Returns the edited document.
    pub fn apply(&self, mut doc: Value, vars: &Vars<'_>) -> Value {
        for (from, to) in &self.rename {
            if let Some(v) = pointer_remove(&mut doc, from) {
                pointer_set(&mut doc, to, v);
            }
        }
        for p in &self.remove {
            pointer_remove(&mut doc, p);
        }
        for (p, t) in &self.set {
            pointer_set(&mut doc, p, Value::String(render(t, vars)));
        }
        doc
    }
}

/// Whether a `Content-Type` is JSON (`application/json`, `application/*+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Removes what the pointer names; `None` when it names nothing.
fn pointer_remove(doc: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let last = unescape(last);
    match doc.pointer_mut(parent)? {
        Value::Object(m) => m.shift_remove(&last),
        Value::Array(a) => {
            let i: usize = last.parse().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

/// Sets the member the pointer names, creating missing objects on the way. A pointer
/// through a scalar, or an array index out of range, changes nothing.
fn pointer_set(doc: &mut Value, pointer: &str, value: Value) {
    let Some(path) = pointer.strip_prefix('/') else {
        return;
    };
    let tokens: Vec<String> = path.split('/').map(unescape).collect();
    let mut at = doc;
    for (i, t) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        at = match at {
            Value::Object(m) => {
                if last {
                    m.insert(t.clone(), value);
                    return;
                }
                m.entry(t.clone())
                    .or_insert_with(|| Value::Object(Default::default()))
            }
            Value::Array(a) => {
                let idx = if t == "-" {
                    Some(a.len())
                } else {
                    t.parse().ok()
                };
                match idx {
                    Some(i) if last && i == a.len() => {
                        a.push(value);
                        return;
                    }
                    Some(i) if last && i < a.len() => {
                        a[i] = value;
                        return;
                    }
                    Some(i) if i < a.len() => &mut a[i],
                    _ => return,
                }
            }
            _ => return,
        };
    }
}

/// A prepared `requestTransform`.
#[derive(Debug, Default)]
pub struct RequestTransform {
    /// Header edits.
    pub headers: Option<HeaderEdits>,
    /// Path rewrite.
    pub path: Option<PathRewrite>,
    /// The `Host` sent upstream.
    pub hostname: Option<HeaderValue>,
    /// Query parameters set (name, template), replacing any with that name.
    pub query_set: Vec<(String, Vec<TemplatePart>)>,
    /// Query parameters removed.
    pub query_remove: Vec<String>,
    /// JSON body edits.
    pub body: Option<BodyEdits>,
}

impl RequestTransform {
    /// Prepares a policy.
    pub fn prepare(c: &table::RequestTransform) -> Result<RequestTransform, String> {
        Ok(RequestTransform {
            headers: c.headers.as_ref().map(HeaderEdits::prepare).transpose()?,
            path: c.path.as_ref().map(|p| match p {
                table::PathRewrite::ReplacePrefixMatch(prefix) => {
                    PathRewrite::Prefix(prefix.clone())
                }
                table::PathRewrite::ReplaceFullPath(parts) => PathRewrite::Full(parts.clone()),
            }),
            hostname: c
                .hostname
                .as_deref()
                .map(HeaderValue::from_str)
                .transpose()
                .map_err(|_| "hostname is not a valid host".to_string())?,
            query_set: c
                .query
                .set
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            query_remove: c.query.remove.clone(),
            body: c.body.as_ref().map(BodyEdits::prepare),
        })
    }

    /// Whether the query changes.
    pub fn edits_query(&self) -> bool {
        !self.query_set.is_empty() || !self.query_remove.is_empty()
    }

    /// The edited query string (`None` when empty), as sent upstream.
    pub fn query(&self, query: Option<&str>, vars: &Vars<'_>) -> Option<String> {
        const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let mut out = String::new();
        let mut push = |k: &str, v: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.extend(percent_encoding::utf8_percent_encode(k, VALUE));
            out.push('=');
            out.extend(percent_encoding::utf8_percent_encode(v, VALUE));
        };
        // Pairs the transform does not touch are kept as they were sent.
        let mut kept = String::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let raw_name = pair.split_once('=').map_or(pair, |(k, _)| k);
            let name = percent_encoding::percent_decode_str(&raw_name.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            if self.query_remove.contains(&name) || self.query_set.iter().any(|(k, _)| *k == name) {
                continue;
            }
            if !kept.is_empty() {
                kept.push('&');
            }
            kept.push_str(pair);
        }
        for (k, t) in &self.query_set {
            push(k, &render(t, vars));
        }
        let joined = match (kept.is_empty(), out.is_empty()) {
            (true, _) => out,
            (false, true) => kept,
            (false, false) => format!("{kept}&{out}"),
        };
        (!joined.is_empty()).then_some(joined)
    }
}

/// A prepared `responseTransform`.
#[derive(Debug, Default)]
pub struct ResponseTransform {
    /// Header edits.
    pub headers: Option<HeaderEdits>,
    /// JSON body edits.
    pub body: Option<BodyEdits>,
}

impl ResponseTransform {
    /// Prepares a policy.
    pub fn prepare(c: &table::ResponseTransform) -> Result<ResponseTransform, String> {
        Ok(ResponseTransform {
            headers: c.headers.as_ref().map(HeaderEdits::prepare).transpose()?,
            body: c.body.as_ref().map(BodyEdits::prepare),
        })
    }
}

// === phases ===

/// What the request transform takes from the request as the client sent it, before
/// the request is rewritten for the upstream.
pub(crate) struct Received<'p> {
    /// Header edits with their values rendered (`${header.x}` reads the client's).
    headers: Option<(&'p HeaderEdits, Vec<Option<HeaderValue>>)>,
    /// JSON body edits, when the client sent JSON.
    body: Option<&'p BodyEdits>,
}

/// Phase 5, request transform, first half: what it reads from the request as received,
/// and the upstream's target: the normalized path (without a version prefix) and the
/// query as received, unless the transform rewrites them.
pub(crate) fn read_request<'p>(
    tr: Option<&'p RequestTransform>,
    matched: &Match,
    routed: &Routed<'_>,
    vars: &TemplateCtx<'_>,
    headers: &HeaderMap,
) -> Result<(PathAndQuery, Received<'p>), GatewayError> {
    // Path versioning: the upstream sees the path without the version prefix.
    let stripped = matched
        .strip_prefix
        .as_ref()
        .map(|_| matched.forwarded_path(&routed.path).into_owned());
    let path: &str = stripped.as_deref().unwrap_or(&routed.path);
    let target = match tr {
        Some(tr) if tr.path.is_some() || tr.edits_query() => {
            transformed_target(tr, matched, path, routed.target, vars)?
        }
        // The path as received, already normalized: the target is forwarded as it came.
        _ if stripped.is_none() && matches!(routed.path, Cow::Borrowed(_)) => routed.target.clone(),
        _ => joined_target(path.to_string(), routed.target.query())?,
    };
    let received = Received {
        headers: tr
            .and_then(|tr| tr.headers.as_ref())
            .map(|edits| (edits, edits.render(&|p, out| vars.var(p, out)))),
        body: tr
            .and_then(|tr| tr.body.as_ref())
            .filter(|_| is_json(headers)),
    };
    Ok((target, received))
}

/// Phase 5, request transform, second half, on the request rewritten for the upstream:
/// header edits and the upstream's host, at once; then the JSON body edits, which read
/// the body whole ([`edit_request_body`]), when the client sent JSON to a rule that has
/// them (returned here). Any other body streams on within the limit.
pub(crate) fn edit_request<'p>(
    tr: Option<&RequestTransform>,
    received: Received<'p>,
    parts: &mut Parts,
    protocol: Protocol,
) -> Result<Option<&'p BodyEdits>, GatewayError> {
    if let Some((edits, values)) = received.headers {
        edits.apply(&mut parts.headers, values);
    }
    if let Some(hostname) = tr.and_then(|tr| tr.hostname.as_ref()) {
        set_upstream_host(parts, hostname, protocol)?;
    }
    Ok(received.body)
}

/// The request body with the JSON body `edits` applied: read whole (within `limit`),
/// edited, and sent with its new length.
pub(crate) async fn edit_request_body(
    edits: &BodyEdits,
    parts: &mut Parts,
    body: RequestBody,
    limit: u64,
    vars: &TemplateCtx<'_>,
) -> Result<UpstreamBody, GatewayError> {
    let bytes = body.read(limit).await?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::BadBody(format!("the request body is not valid JSON: {e}")))?;
    let edited = Bytes::from(
        serde_json::to_vec(&edits.apply(doc, &|p, out| vars.var(p, out))).unwrap_or_default(),
    );
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(edited.len()));
    Ok(RequestBody::Buffered(edited).into_upstream(limit))
}

/// `path?query` as a target.
fn joined_target(path: String, query: Option<&str>) -> Result<PathAndQuery, GatewayError> {
    let joined = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    PathAndQuery::try_from(joined).map_err(|_| GatewayError::BadPath("unforwardable path".into()))
}

/// The forwarded path and query under a request transform. `normalized` is the path
/// already without any version prefix, so a rewrite works as if the route had none.
fn transformed_target(
    tr: &RequestTransform,
    matched: &Match,
    normalized: &str,
    original: &PathAndQuery,
    vars: &TemplateCtx<'_>,
) -> Result<PathAndQuery, GatewayError> {
    let path: Cow<'_, str> = match &tr.path {
        None => Cow::Borrowed(normalized),
        Some(PathRewrite::Full(parts)) => Cow::Owned(render_path(parts, vars)),
        Some(PathRewrite::Prefix(replacement)) => {
            Cow::Owned(replace_prefix(replacement, matched, normalized))
        }
    };
    let query = if tr.edits_query() {
        tr.query(original.query(), &|p, out| vars.var(p, out))
    } else {
        original.query().map(str::to_string)
    };
    joined_target(path.into_owned(), query.as_deref())
}

/// `replacePrefixMatch`: what the match covered replaced by `replacement`.
fn replace_prefix(replacement: &str, matched: &Match, normalized: &str) -> String {
    // What the match covered: its prefix for Prefix, the whole path for the others
    // (Exact, Template, Regex), nothing for a match-everything rule; a version prefix
    // (already stripped) does not count.
    let stripped = matched.strip_prefix.as_ref().map_or(0, String::len);
    let covered = match &matched.path {
        PathMatch::Prefix(p) => p.trim_end_matches('/').len().saturating_sub(stripped),
        PathMatch::Any => 0,
        _ => normalized.len(),
    };
    let rest = normalized.get(covered..).unwrap_or("");
    let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{replacement}{}", &rest[1..]),
        (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
        _ => format!("{replacement}{rest}"),
    };
    if joined.is_empty() {
        "/".into()
    } else {
        joined
    }
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
            uri.authority = http::uri::Authority::try_from(hostname.as_bytes()).ok();
            parts.uri = http::Uri::from_parts(uri)
                .map_err(|_| GatewayError::BadPath("unforwardable host".into()))?;
        }
    }
    Ok(())
}

/// Phase 6, response transform: header edits, then edits of an identity-encoded JSON
/// body (anything else streams through).
pub(crate) fn on_response<'a>(
    cx: &'a Ctx<'_>,
    resp: Response<Body>,
    vars: &'a TemplateCtx<'_>,
) -> Step<'a, Result<Response<Body>, GatewayError>> {
    match cx.policies().and_then(|p| p.response.as_ref()) {
        Some(tr) => Step::later(edit_response(tr, resp, vars)),
        None => Step::now(Ok(resp)),
    }
}

async fn edit_response(
    tr: &ResponseTransform,
    resp: Response<Body>,
    vars: &TemplateCtx<'_>,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = resp.into_parts();
    if let Some(edits) = &tr.headers {
        let values = edits.render(&|v, out| vars.var(v, out));
        edits.apply(&mut parts.headers, values);
    }
    let Some(body_edits) = &tr.body else {
        return Ok(Response::from_parts(parts, body));
    };
    if !is_json(&parts.headers) || parts.headers.contains_key(header::CONTENT_ENCODING) {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = read_whole(body).await.ok_or(GatewayError::BadGateway)?;
    let edited = match serde_json::from_slice::<Value>(&bytes) {
        Ok(doc) => Bytes::from(
            serde_json::to_vec(&body_edits.apply(doc, &|v, out| vars.var(v, out)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_vars(_: &TemplatePart, _: &mut String) {}

    fn literal(s: &str) -> Vec<TemplatePart> {
        vec![TemplatePart::Literal(s.into())]
    }

    #[test]
    fn json_pointer_edits() {
        let edits = BodyEdits::prepare(&table::BodyEdits {
            set: [("/meta/source".to_string(), literal("gateway"))].into(),
            remove: vec!["/password".into(), "/missing/deep".into()],
            rename: [("/userName".to_string(), "/username".to_string())].into(),
        });
        let out = edits.apply(
            json!({"userName": "ann", "password": "x", "keep": [1, 2]}),
            &no_vars,
        );
        assert_eq!(
            out,
            json!({"keep": [1, 2], "username": "ann", "meta": {"source": "gateway"}})
        );
        let mut doc = json!({"a": [1, 2, 3], "b~c/d": 1});
        assert_eq!(pointer_remove(&mut doc, "/a/1"), Some(json!(2)));
        assert_eq!(pointer_remove(&mut doc, "/b~0c~1d"), Some(json!(1)));
        pointer_set(&mut doc, "/a/-", json!(9));
        pointer_set(&mut doc, "/a/0/x", json!(9)); // through a scalar: nothing
        assert_eq!(doc, json!({"a": [1, 3, 9]}));
    }

    #[test]
    fn query_edits_keep_untouched_pairs_verbatim() {
        let t = RequestTransform::prepare(&table::RequestTransform {
            query: table::QueryEdits {
                set: [("region".to_string(), literal("eu west"))].into(),
                remove: vec!["debug".into()],
            },
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            t.query(Some("a=%2F1&debug=1&region=us&b"), &no_vars)
                .as_deref(),
            Some("a=%2F1&b&region=eu%20west")
        );
        assert_eq!(
            t.query(Some("debug"), &no_vars).as_deref(),
            Some("region=eu%20west")
        );
    }

    #[test]
    fn header_edits_remove_set_add_and_templates() {
        // `set: {X-Env: prod, X-Client: "${clientIp}"}, add: {X-Via: gatehouse},
        // remove: [X-Internal]`, lowered: names lowercase, in the written map's order.
        let header = |name: &str, value: Vec<TemplatePart>| table::HeaderTemplate {
            name: name.into(),
            value,
        };
        let edits = HeaderEdits::prepare(&table::HeaderEdits {
            set: vec![
                header("x-client", vec![TemplatePart::ClientIp]),
                header("x-env", literal("prod")),
            ],
            add: vec![header("x-via", literal("gatehouse"))],
            remove: vec!["x-internal".into()],
        })
        .expect("valid");
        let mut h = HeaderMap::new();
        h.insert("x-internal", HeaderValue::from_static("secret"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        h.insert("x-via", HeaderValue::from_static("edge"));
        let vars = |p: &TemplatePart, out: &mut String| {
            if *p == TemplatePart::ClientIp {
                out.push_str("192.0.2.7");
            }
        };
        let values = edits.render(&vars);
        edits.apply(&mut h, values);
        assert!(!h.contains_key("x-internal"));
        assert_eq!(h["x-env"], "prod");
        assert_eq!(h["x-client"], "192.0.2.7");
        let via: Vec<_> = h.get_all("x-via").iter().collect();
        assert_eq!(via, vec!["edge", "gatehouse"]);
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }
}
