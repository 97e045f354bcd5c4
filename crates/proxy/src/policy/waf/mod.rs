//! `waf`: the web application firewall, the first policy phase of the request path.
//!
//! In order:
//!
//! 1. **Client address**: `denyCidrs`, then `allowCidrs` (only these), on the client
//!    address (`--trusted-proxies` applied). Always enforced: 403.
//! 2. **Native rules** over the parts `inspect` names, each value decoded first
//!    ([`decode`]) and tested by each family ([`detect`]): the path (each segment, and
//!    whole), each query parameter's name and value, each header value (cookies one by
//!    one; credentials and the standard negotiation headers are not inspected), the body
//!    (JSON: every key and string leaf; forms: every field; text: whole; other media
//!    types are not inspected), each up to `maxInspectBytes`.
//! 3. **The OWASP Core Rule Set** ([`crs`]): the request, its body included when
//!    `inspect` has `Body`, evaluated by libmodsecurity with the rule set loaded when the
//!    table was prepared.
//!
//! `Block` answers 403 problem+json that names no rule; `Detect` lets the request
//! through. Both log the match (rule, field, a truncated value) and count it in
//! `gatehouse_waf_matches_total{route,rule,action}`.
//!
//! **Schema awareness.** On a rule whose request schema (`validation.request.schema`)
//! types a field as a number, boolean, enum, const, or a string of format uuid,
//! date-time, date, time, ipv4 or ipv6 (not email: quoted local parts hold anything),
//! and whose body the schema accepts, the
//! injection families skip that field's value: the schema already rules out any
//! injection in it, and JSON APIs are where generic rules misfire most.

pub mod crs;
pub(crate) mod decode;
pub(crate) mod detect;
mod seen;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_table::policy::{self as table, WafMode, WafParts, WafRule};
use http::{HeaderMap, Method, header};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde_json::Value;

use self::decode::decode;
use self::detect::{Families, Part};
use crate::body::RequestBody;
use crate::metrics::WafAction;
use crate::phases::{Ctx, Inbound, Step};
use crate::problem::GatewayError;

/// What matched, as the metric's `rule` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// A native family.
    Native(WafRule),
    /// The Core Rule Set.
    CoreRuleSet,
    /// The client address is in `denyCidrs`.
    DenyCidrs,
    /// The client address is outside `allowCidrs`.
    AllowCidrs,
}

impl Matched {
    /// Every label, in the metric's order.
    pub const ALL: [Matched; 9] = [
        Matched::Native(WafRule::SqlInjection),
        Matched::Native(WafRule::CrossSiteScripting),
        Matched::Native(WafRule::PathTraversal),
        Matched::Native(WafRule::CommandInjection),
        Matched::Native(WafRule::ScannerDetection),
        Matched::Native(WafRule::ProtocolViolation),
        Matched::CoreRuleSet,
        Matched::DenyCidrs,
        Matched::AllowCidrs,
    ];

    /// The `rule` label.
    pub fn label(self) -> &'static str {
        match self {
            Matched::Native(r) => r.as_str(),
            Matched::CoreRuleSet => "CoreRuleSet",
            Matched::DenyCidrs => "DenyCidrs",
            Matched::AllowCidrs => "AllowCidrs",
        }
    }

    /// Position in [`Matched::ALL`].
    pub fn index(self) -> usize {
        match self {
            Matched::Native(r) => r as usize,
            Matched::CoreRuleSet => 6,
            Matched::DenyCidrs => 7,
            Matched::AllowCidrs => 8,
        }
    }
}

/// Headers whose values are not inspected: credentials (never looked at, never
/// logged), framing HTTP itself parsed, and trace context the gateway validates.
const NOT_INSPECTED: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "content-length",
    "connection",
    "te",
    "traceparent",
    "tracestate",
];

/// A prepared `waf`.
#[derive(Debug)]
pub struct Waf {
    mode: WafMode,
    families: Families,
    parts: WafParts,
    max: usize,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    crs: Option<Arc<crs::RuleSet>>,
    /// What the rule's request schema types, when it has one.
    typed: Option<Typed>,
}

impl Waf {
    /// Prepares a policy; `crs` is the rule set its `coreRuleSet` loaded, `schema` the
    /// rule's request schema.
    pub fn prepare(c: &table::Waf, crs: Option<Arc<crs::RuleSet>>, schema: Option<&Value>) -> Waf {
        Waf {
            mode: c.mode,
            families: Families::of(&c.rules),
            parts: c.inspect,
            max: usize::try_from(c.max_inspect_bytes).unwrap_or(usize::MAX),
            allow: c.allow_cidrs.clone(),
            deny: c.deny_cidrs.clone(),
            crs,
            typed: schema.map(Typed::of),
        }
    }

    /// The native rules' verdict on a request (its head, and its body when given), the
    /// way the request path inspects it, without the client-address rules, the CRS or a
    /// schema: the label of the family that matched. For fuzzing and tests.
    pub fn native_verdict(
        &self,
        parts: &http::request::Parts,
        body: Option<&[u8]>,
    ) -> Option<&'static str> {
        let has_body = crate::policy::validation::has_body(&parts.headers)
            || body.is_some_and(|b| !b.is_empty());
        native_head(self, parts, has_body)
            .or_else(|| body.and_then(|b| native_body(self, &parts.headers, b, &|_| false)))
            .map(|hit| hit.matched.label())
    }

    /// Whether the body is read for a request that has one (`has_body`: it says so, or
    /// its body is not known to be empty; HTTP/2 needs no `Content-Length`).
    fn reads_body(&self, has_body: bool) -> bool {
        self.parts.body && (!self.families.is_empty() || self.crs.is_some()) && has_body
    }
}

/// A match: what, where, and a sample of the value.
struct Hit {
    matched: Matched,
    field: String,
    sample: String,
}

/// Field names whose values are never logged, only their length: what looks like a
/// credential or a session.
const SECRET_NAMES: [&str; 8] = [
    "key",
    "token",
    "secret",
    "passw",
    "session",
    "auth",
    "cookie",
    "credential",
];

/// Whether a field (`header:x-api-key`, `cookie:sid`, `query:token`) holds what
/// [`SECRET_NAMES`] names. Every cookie counts: any may be a session.
fn secret_field(field: &str) -> bool {
    // Names as the client wrote them may be encoded (`api%5Fkey`).
    let lower = decode(field.as_bytes(), true, field.len())
        .text
        .to_ascii_lowercase();
    let lower = String::from_utf8_lossy(&lower);
    lower.starts_with("cookie:") || SECRET_NAMES.iter().any(|n| lower.contains(n))
}

/// At most this many characters of a matched value reach the log.
const SAMPLE_CHARS: usize = 32;

/// The first [`SAMPLE_CHARS`] characters of a value, control characters escaped, and
/// its length: enough to recognise an attack, not enough to leak a document.
fn sample(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut out: String = text
        .chars()
        .take(SAMPLE_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > SAMPLE_CHARS {
        out.push('…');
    }
    format!("{out} ({} bytes)", value.len())
}

/// Phase 3, the WAF.
pub(crate) fn on_request<'a>(
    cx: &'a Ctx<'_>,
    req: &'a mut Inbound,
) -> Step<'a, Result<(), GatewayError>> {
    let Some(waf) = cx.policies().and_then(|p| p.waf.as_ref()) else {
        return Step::now(Ok(()));
    };
    if let Some(hit) = address(waf, cx.client) {
        return Step::now(verdict(cx, waf, hit, true));
    }
    let has_body =
        crate::policy::validation::has_body(&req.parts.headers) || req.body.may_have_data();
    if let Some(hit) = native_head(waf, &req.parts, has_body)
        && let Err(e) = verdict(cx, waf, hit, false)
    {
        return Step::now(Err(e));
    }
    if !waf.reads_body(has_body) {
        return Step::now(crs_verdict(cx, waf, req, None));
    }
    Step::later(async move {
        let limit = crate::policy::validation::body_limit(cx, req.body_limit);
        let body = std::mem::replace(&mut req.body, RequestBody::Buffered(Bytes::new()));
        // Over the rule's own `maxBodyBytes`, the 413 is validation's (and counted so);
        // over the listener's, the listener's.
        let validated = cx
            .policies()
            .and_then(|p| p.validation.as_ref())
            .and_then(|v| v.request.as_ref())
            .and_then(|r| r.max_body_bytes)
            .is_some_and(|m| m == limit);
        let bytes = body.read(limit).await.map_err(|e| match e {
            GatewayError::PayloadTooLarge(max) if validated => {
                GatewayError::Invalid(crate::policy::validation::Refusal::TooLarge(max))
            }
            other => other,
        })?;
        req.body = RequestBody::Buffered(bytes.clone());
        if !waf.families.is_empty()
            && let Some(hit) = native_body(waf, &req.parts.headers, &bytes, &|doc| {
                schema_accepts(cx, doc)
            })
        {
            verdict(cx, waf, hit, false)?;
        }
        crs_verdict(cx, waf, req, Some(&bytes))
    })
}

/// The CIDR rules.
fn address(waf: &Waf, client: IpAddr) -> Option<Hit> {
    let hit = |matched| Hit {
        matched,
        field: "client".into(),
        sample: client.to_string(),
    };
    if waf.deny.iter().any(|n| n.contains(&client)) {
        return Some(hit(Matched::DenyCidrs));
    }
    if !waf.allow.is_empty() && !waf.allow.iter().any(|n| n.contains(&client)) {
        return Some(hit(Matched::AllowCidrs));
    }
    None
}

/// Counts and logs a match; `Err` when it refuses the request (`Block`, and the CIDR
/// rules whatever the mode).
fn verdict(cx: &Ctx<'_>, waf: &Waf, hit: Hit, always: bool) -> Result<(), GatewayError> {
    let block = always || waf.mode == WafMode::Block;
    let action = if block {
        WafAction::Block
    } else {
        WafAction::Detect
    };
    if let Some(rule) = cx.rule {
        cx.metrics.waf_match(&rule.labels, hit.matched, action);
    }
    let value = if hit.matched != Matched::CoreRuleSet && secret_field(&hit.field) {
        match hit.sample.rsplit_once(" (") {
            Some((_, len)) => format!("[redacted] ({len}"),
            None => "[redacted]".into(),
        }
    } else {
        hit.sample
    };
    tracing::warn!(
        request_id = cx.rid(),
        route = cx.rule.map(|r| r.route_id()).unwrap_or_default(),
        rule = cx.rule.map(|r| r.spec().name.as_str()).unwrap_or_default(),
        waf_rule = hit.matched.label(),
        field = %hit.field,
        value = %value,
        action = action.label(),
        "waf match"
    );
    if block {
        Err(GatewayError::Firewall)
    } else {
        Ok(())
    }
}

/// Names logged for a field: at most this many characters of a request-given name.
const NAME_CHARS: usize = 64;

fn field(kind: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    let name: String = name
        .chars()
        .take(NAME_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    format!("{kind}:{name}")
}

/// The native rules over the request head: method and framing, path, query, headers.
fn native_head(waf: &Waf, parts: &http::request::Parts, body: bool) -> Option<Hit> {
    let f = waf.families;
    if f.is_empty() {
        return None;
    }
    let violation = |field: &str, value: &[u8]| Hit {
        matched: Matched::Native(WafRule::ProtocolViolation),
        field: field.to_string(),
        sample: sample(value),
    };
    if f.has(WafRule::ProtocolViolation)
        && let Some(why) = protocol(parts, body)
    {
        return Some(violation("request", why.as_bytes()));
    }
    let check = |part: Part, field: &dyn Fn() -> String, raw: &[u8], plus: bool| {
        inspect(waf, part, field, raw, plus)
    };
    if waf.parts.path {
        // The whole path (traversal, system files), then each segment when the path
        // holds more than names (an injection is in one segment).
        let path = parts.uri.path().as_bytes();
        if let Some(hit) = check(Part::Path, &|| "path".into(), path, false) {
            return Some(hit);
        }
        let plain = path
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/'));
        if !plain {
            for seg in path.split(|b| *b == b'/').filter(|s| !s.is_empty()) {
                if let Some(hit) = check(Part::Path, &|| "path".into(), seg, false) {
                    return Some(hit);
                }
            }
        }
    }
    if waf.parts.query
        && let Some(query) = parts.uri.query()
        && let Some(hit) = fields(query.as_bytes(), &|name, value| {
            check(Part::Query, &|| field("query", name), name, true)
                .or_else(|| check(Part::Query, &|| field("query", name), value, true))
        })
    {
        return Some(hit);
    }
    if waf.parts.headers {
        for (name, value) in &parts.headers {
            let name = name.as_str();
            if f.has(WafRule::ScannerDetection) && detect::scanner_header(name) {
                return Some(Hit {
                    matched: Matched::Native(WafRule::ScannerDetection),
                    field: field("header", name.as_bytes()),
                    sample: sample(value.as_bytes()),
                });
            }
            if NOT_INSPECTED.contains(&name) {
                continue;
            }
            let value = value.as_bytes();
            let hit = if name == "user-agent" {
                check(
                    Part::UserAgent,
                    &|| field("header", b"user-agent"),
                    value,
                    false,
                )
            } else if name == "cookie" {
                // Cookie values are percent-encoded by convention, like a query.
                cookies(value, &|cookie, v| {
                    check(Part::Query, &|| field("cookie", cookie), v, false)
                })
            } else {
                let whole = || field("header", name.as_bytes());
                check(Part::Header, &whole, value, false).or_else(|| {
                    // A URL (`Referer`, a callback): its query too, field by field,
                    // named `header:referer?q` (a credential's name redacts it).
                    fields(url_query(value)?, &|n, v| {
                        let param = || format!("{}?{}", whole(), String::from_utf8_lossy(n));
                        check(Part::Header, &param, n, true)
                            .or_else(|| check(Part::Header, &param, v, true))
                    })
                })
            };
            if hit.is_some() {
                return hit;
            }
        }
    }
    None
}

/// Decodes one value and runs the native families over it. What decoding notices is
/// a `ProtocolViolation` as the part's encoding makes it one: in the path and the query
/// every anomaly (a bad `%` escape, overlong UTF-8, NUL, control bytes, CR); in header
/// values the same but a bad escape (headers are not percent-encoded); in bodies only
/// NUL (text may hold control characters). A value this worker found clean before,
/// tested the same way, is not tested again ([`seen`]).
fn inspect(
    waf: &Waf,
    part: Part,
    field: &dyn Fn() -> String,
    raw: &[u8],
    plus: bool,
) -> Option<Hit> {
    let f = waf.families;
    let raw = &raw[..raw.len().min(waf.max)];
    let tag = u32::from(f.bits()) | (part as u32) << 8 | u32::from(plus) << 12;
    seen::unless_clean(tag, raw, || {
        let d = decode(raw, plus, waf.max);
        let a = d.anomalies;
        let violation = match part {
            Part::Path | Part::Query => a.any(),
            Part::Header | Part::UserAgent => a.overlong || a.nul || a.control || a.carriage_return,
            Part::Body | Part::Markup => a.nul,
        };
        if f.has(WafRule::ProtocolViolation) && violation {
            return Some(Hit {
                matched: Matched::Native(WafRule::ProtocolViolation),
                field: field(),
                sample: sample(raw),
            });
        }
        detect::check(f, part, &d.text).map(|rule| Hit {
            matched: Matched::Native(rule),
            field: field(),
            sample: sample(&d.text),
        })
    })
}

/// Requests no API takes: `TRACE`/`TRACK`/`DEBUG`, a body on `GET`/`HEAD`, more than
/// [`MAX_RANGES`] ranges, several `Host` headers.
fn protocol(parts: &http::request::Parts, body: bool) -> Option<&'static str> {
    const MAX_RANGES: usize = 10;
    match parts.method.as_str() {
        "TRACE" | "TRACK" | "DEBUG" => return Some("method"),
        _ => {}
    }
    if (parts.method == Method::GET || parts.method == Method::HEAD) && body {
        return Some("body on GET or HEAD");
    }
    if let Some(range) = parts.headers.get(header::RANGE) {
        let r = range.as_bytes();
        if r.iter().filter(|b| **b == b',').count() >= MAX_RANGES {
            return Some("too many ranges");
        }
        // A bound no file has (MS15-034 sent 18446744073709551615).
        if r.split(|b| !b.is_ascii_digit()).any(|n| n.len() > 18) {
            return Some("a range beyond any size");
        }
    }
    if parts.headers.get_all(header::HOST).iter().count() > 1 {
        return Some("several Host headers");
    }
    None
}

/// A test over a field's name and value.
type FieldCheck<'a> = dyn Fn(&[u8], &[u8]) -> Option<Hit> + 'a;

/// Calls `each` with every `name=value` of a query string or form body, until it
/// returns a hit.
fn fields(s: &[u8], each: &FieldCheck<'_>) -> Option<Hit> {
    s.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .find_map(|pair| {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            each(name, value)
        })
}

/// The query of a header value that is an absolute `http(s)` URL.
fn url_query(value: &[u8]) -> Option<&[u8]> {
    let lower = |p: &[u8]| value.len() >= p.len() && value[..p.len()].eq_ignore_ascii_case(p);
    if !(lower(b"http://") || lower(b"https://")) {
        return None;
    }
    let q = memchr::memchr(b'?', value)? + 1;
    let end = memchr::memchr(b'#', &value[q..]).map_or(value.len(), |e| q + e);
    Some(&value[q..end])
}

/// Calls `each` with every cookie's name and value, until it returns a hit.
fn cookies(s: &[u8], each: &FieldCheck<'_>) -> Option<Hit> {
    s.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (&b""[..], pair),
        };
        each(name, value.trim_ascii())
    })
}

/// The native rules over the body; `accepts` says whether the rule's request schema
/// accepts a JSON document (then the fields it types are skipped).
fn native_body(
    waf: &Waf,
    headers: &HeaderMap,
    body: &[u8],
    accepts: &dyn Fn(&Value) -> bool,
) -> Option<Hit> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let check = |part: Part, field: &dyn Fn() -> String, raw: &[u8], plus: bool| {
        inspect(waf, part, field, raw, plus)
    };
    let inspected = &body[..body.len().min(waf.max)];
    if media == "application/json" || media.ends_with("+json") {
        if inspected.len() == body.len() {
            // The schema's verdict needs the document; the walk does not.
            let typed = waf
                .typed
                .as_ref()
                .filter(|_| serde_json::from_slice::<Value>(body).is_ok_and(|doc| accepts(&doc)));
            let walked = json(body, typed, &|p, v| {
                check(Part::Body, &|| field("body", p.as_bytes()), v, false)
            });
            if let Ok(hit) = walked {
                return hit;
            }
        }
        // Too large to parse within the bound, or not JSON: its text.
        return check(Part::Body, &|| "body".into(), inspected, false);
    }
    if media == "application/x-www-form-urlencoded" {
        return fields(inspected, &|name, value| {
            check(Part::Body, &|| field("form", name), name, true)
                .or_else(|| check(Part::Body, &|| field("form", name), value, true))
        });
    }
    if media.ends_with("xml") {
        // XML is markup by design: its text is inspected by every family but XSS.
        return check(Part::Markup, &|| "body".into(), inspected, false);
    }
    let textual = media.is_empty() || media.starts_with("text/") || media == "application/graphql";
    if textual {
        return check(Part::Body, &|| "body".into(), inspected, false);
    }
    None
}

/// Whether the rule's request schema accepts `doc` (validation will pass it).
fn schema_accepts(cx: &Ctx<'_>, doc: &Value) -> bool {
    cx.policies()
        .and_then(|p| p.validation.as_ref())
        .and_then(|v| v.request.as_ref())
        .is_some_and(|r| r.accepts(doc))
}

/// Walks a JSON body as it is parsed: every key and string leaf, with its JSON pointer,
/// a repeated key's every value included (a parsed document keeps only one of them,
/// and an upstream may read the other); leaves the schema types (`typed`) are skipped.
/// `Err` when the body is not JSON.
fn json(
    body: &[u8],
    typed: Option<&Typed>,
    each: &dyn Fn(&str, &[u8]) -> Option<Hit>,
) -> Result<Option<Hit>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut pointer = String::new();
    let mut hit = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Walk {
        typed,
        pointer: &mut pointer,
        each,
        hit: &mut hit,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (hit, walked) {
        (Some(hit), _) => Ok(Some(hit)),
        (None, Ok(())) => Ok(None),
        (None, Err(e)) => Err(e),
    }
}

/// One value of a JSON walk (see [`json`]). A hit ends the walk (as an error the
/// parser passes up).
struct Walk<'a, 'b> {
    typed: Option<&'a Typed>,
    pointer: &'b mut String,
    each: &'a dyn Fn(&str, &[u8]) -> Option<Hit>,
    hit: &'b mut Option<Hit>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.typed.is_some_and(|t| t.safe) {
            return <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| ());
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        *self.hit = (self.each)(self.pointer, v.as_bytes());
        if self.hit.is_some() {
            return Err(E::custom("matched"));
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = self.typed.and_then(|t| t.items.as_deref());
        let len = self.pointer.len();
        for i in 0.. {
            self.pointer.truncate(len);
            self.pointer.push('/');
            self.pointer.push_str(&i.to_string());
            let next = seq.next_element_seed(Walk {
                typed: item,
                pointer: &mut *self.pointer,
                each: self.each,
                hit: &mut *self.hit,
            })?;
            if next.is_none() {
                break;
            }
        }
        self.pointer.truncate(len);
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let len = self.pointer.len();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            self.pointer.truncate(len);
            self.pointer.push('/');
            self.pointer
                .push_str(&key.replace('~', "~0").replace('/', "~1"));
            let declared = self.typed.and_then(|t| t.properties.get(key.as_ref()));
            if declared.is_none() {
                // Names the schema does not declare are the client's: inspected too.
                *self.hit = (self.each)(self.pointer, key.as_bytes());
                if self.hit.is_some() {
                    return Err(serde::de::Error::custom("matched"));
                }
            }
            let child = declared.or_else(|| self.typed.and_then(|t| t.additional.as_deref()));
            map.next_value_seed(Walk {
                typed: child,
                pointer: &mut *self.pointer,
                each: self.each,
                hit: &mut *self.hit,
            })?;
        }
        self.pointer.truncate(len);
        Ok(())
    }
}

/// String formats a schema validates strictly enough that no injection fits. Not
/// `email`: its local part may quote almost anything (`"<script>"@example.com` and
/// `x'or'1'='1@example.com` are valid addresses).
const SAFE_FORMATS: [&str; 6] = ["uuid", "date-time", "date", "time", "ipv4", "ipv6"];

/// What a request schema types, as a tree over the document.
#[derive(Debug, Default)]
struct Typed {
    /// Values here are typed: numbers, booleans, enums, consts, strict formats.
    safe: bool,
    properties: FxHashMap<String, Typed>,
    items: Option<Box<Typed>>,
    additional: Option<Box<Typed>>,
}

impl Typed {
    fn of(schema: &Value) -> Typed {
        let Some(obj) = schema.as_object() else {
            return Typed::default();
        };
        let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
        let safe = match obj.get("type") {
            Some(Value::Array(types)) => !types.is_empty() && types.iter().all(scalar),
            Some(t) => scalar(t),
            None => false,
        } || obj.contains_key("enum")
            || obj.contains_key("const")
            || obj
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| SAFE_FORMATS.contains(&f));
        Typed {
            safe,
            properties: obj
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, s)| (k.clone(), Typed::of(s)))
                        .collect()
                })
                .unwrap_or_default(),
            items: obj.get("items").map(|s| Box::new(Typed::of(s))),
            additional: obj
                .get("additionalProperties")
                .filter(|s| s.is_object())
                .map(|s| Box::new(Typed::of(s))),
        }
    }
}

/// The Core Rule Set's verdict on the request (`body` when it was read).
fn crs_verdict(
    cx: &Ctx<'_>,
    waf: &Waf,
    req: &Inbound,
    body: Option<&[u8]>,
) -> Result<(), GatewayError> {
    let Some(rules) = &waf.crs else {
        return Ok(());
    };
    let outcome = rules.evaluate(&crs::Request {
        client: cx.client,
        client_port: cx.peer.addr.port(),
        parts: &req.parts,
        body,
    });
    match outcome {
        crs::Outcome::Pass => Ok(()),
        crs::Outcome::Matched { rules, field } => verdict(
            cx,
            waf,
            Hit {
                matched: Matched::CoreRuleSet,
                field,
                sample: format!("CRS rules {rules}"),
            },
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_types_what_it_constrains() {
        let t = Typed::of(&json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "qty": {"type": "integer"},
                "size": {"enum": ["S", "M"]},
                "note": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string", "format": "date"}},
                "email": {"type": "string", "format": "email"}
            }
        }));
        assert!(!t.safe);
        assert!(t.properties["id"].safe);
        assert!(t.properties["qty"].safe);
        assert!(t.properties["size"].safe);
        assert!(!t.properties["note"].safe);
        assert!(t.properties["tags"].items.as_ref().is_some_and(|i| i.safe));
        assert!(!t.properties["email"].safe);
    }

    #[test]
    fn json_walks_keys_and_string_leaves_and_skips_typed_ones() {
        let doc = br#"{"a": "x", "b": {"c": ["y", 1, true, null]}, "d": "z", "d": "w"}"#;
        let seen = std::cell::RefCell::new(Vec::new());
        let walked = json(doc, None, &|p, v| {
            seen.borrow_mut()
                .push(format!("{p}={}", String::from_utf8_lossy(v)));
            None
        });
        assert!(matches!(walked, Ok(None)));
        // A repeated key's values are both seen.
        assert_eq!(
            seen.into_inner(),
            [
                "/a=a", "/a=x", "/b=b", "/b/c=c", "/b/c/0=y", "/d=d", "/d=z", "/d=d", "/d=w"
            ]
        );
        let typed = Typed::of(&serde_json::json!({"properties": {"a": {"enum": ["x"]}, "b": {}}}));
        let seen = std::cell::RefCell::new(Vec::new());
        let _ = json(doc, Some(&typed), &|p, _| {
            seen.borrow_mut().push(p.to_string());
            None
        });
        assert_eq!(
            seen.into_inner(),
            ["/b/c", "/b/c/0", "/d", "/d", "/d", "/d"]
        );
        // The first hit ends the walk; what is not JSON is an error.
        let hits = std::cell::Cell::new(0);
        let walked = json(br#"{"x": "bad", "y": "bad"}"#, None, &|_, v| {
            (v == b"bad").then(|| {
                hits.set(hits.get() + 1);
                Hit {
                    matched: Matched::CoreRuleSet,
                    field: String::new(),
                    sample: String::new(),
                }
            })
        });
        assert!(matches!(walked, Ok(Some(_))));
        assert_eq!(hits.get(), 1);
        assert!(json(b"{not json", None, &|_, _| None).is_err());
        assert!(json(b"{} trailing", None, &|_, _| None).is_err());
    }

    #[test]
    fn samples_are_truncated_and_escaped() {
        assert_eq!(sample(b"a\nb"), "a\\nb (3 bytes)");
        let long = "x".repeat(100);
        assert_eq!(
            sample(long.as_bytes()),
            format!("{}… (100 bytes)", "x".repeat(32))
        );
    }
}
