//! `validation`: request checks (content type 415, body size 413, required headers 400,
//! JSON Schema 400) and upstream response checks (JSON Schema; `Enforce` 502 or
//! `Report`, a log line and a metric).
//!
//! Schemas are JSON Schema 2020-12 (a schema naming another draft in `$schema` is
//! validated by that draft), compiled once when the table is prepared, with `format`
//! assertions on. References are resolved only inside the schema: nothing is fetched
//! from the network or the file system while a table is prepared.
//!
//! What needs the body (a schema) buffers it, up to `maxBodyBytes` (else the listener's
//! 10 MiB); everything else looks only at the head, and the body streams.

use gatehouse_table::policy::{self as table, ResponseValidationMode};
use gatehouse_table::schema::{Validator, compile};
use http::{HeaderMap, HeaderName, Method, StatusCode, header};
use serde_json::Value;

use http::Response;

use crate::body::{RequestBody, read_whole};
use crate::metrics::Counter;
use crate::phases::{Ctx, Inbound, Step};
use crate::problem::GatewayError;
use crate::{Body, full};

/// One reason a body does not match its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON Pointer of the failing value in the body (`""` for the whole body).
    pub pointer: String,
    /// What is wrong with it.
    pub message: String,
}

/// `pointer: message`, the whole document's pointer (`""`) shown as `/`.
impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {}", self.message)
    }
}

/// Violations listed in one answer at most (a huge invalid array stays a small answer).
const MAX_VIOLATIONS: usize = 20;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 415: the body's media type is not one of `contentTypes`.
    MediaType(String),
    /// 413: the body is larger than `maxBodyBytes`.
    TooLarge(u64),
    /// 400: required headers are missing.
    MissingHeaders(Vec<String>),
    /// 400: the body is not JSON, or is missing.
    NotJson(String),
    /// 400: the body does not match the schema.
    Schema(Vec<Violation>),
}

/// A prepared `validation`.
#[derive(Debug)]
pub struct Validation {
    /// Request checks.
    pub request: Option<RequestChecks>,
    /// Response checks.
    pub response: Option<ResponseChecks>,
}

/// Prepared request checks.
#[derive(Debug)]
pub struct RequestChecks {
    /// Media types (essence, lowercase); `type/*` allows a whole type.
    content_types: Vec<String>,
    /// Largest body.
    pub max_body_bytes: Option<u64>,
    required_headers: Vec<HeaderName>,
    schema: Option<Validator>,
}

/// Prepared response checks.
#[derive(Debug)]
pub struct ResponseChecks {
    schema: Validator,
    /// `Report`: log and count, let the response through.
    pub report_only: bool,
}

impl Validation {
    /// Prepares a policy; `Err` names what does not compile (a schema that is not a
    /// valid 2020-12 schema, a bad header name).
    pub fn prepare(c: &table::Validation) -> Result<Validation, String> {
        let request = match &c.request {
            None => None,
            Some(r) => Some(RequestChecks {
                content_types: r.content_types.clone(),
                max_body_bytes: r.max_body_bytes,
                required_headers: r
                    .required_headers
                    .iter()
                    .map(|h| {
                        HeaderName::from_bytes(h.as_bytes())
                            .map_err(|e| format!("required header {h:?}: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
                schema: r
                    .schema
                    .as_ref()
                    .map(|s| compile(s).map_err(|e| format!("request schema: {e}")))
                    .transpose()?,
            }),
        };
        let response = match &c.response {
            Some(r) => Some(ResponseChecks {
                schema: compile(&r.schema).map_err(|e| format!("response schema: {e}"))?,
                report_only: r.mode == ResponseValidationMode::Report,
            }),
            None => None,
        };
        Ok(Validation { request, response })
    }
}

/// `text/html; charset=utf-8` → `text/html`.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

/// Whether a request carries a body: a non-zero `Content-Length` or any
/// `Transfer-Encoding`.
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

impl RequestChecks {
    /// The checks on the request head, in the order a client fixes them: required
    /// headers, then media type, then the declared size. `body`: whether the request
    /// carries a body (see [`RequestBody::may_have_data`]).
    pub fn check_head(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: bool,
    ) -> Result<(), Refusal> {
        let missing: Vec<String> = self
            .required_headers
            .iter()
            .filter(|h| !headers.contains_key(*h))
            .map(|h| h.as_str().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::MissingHeaders(missing));
        }
        if body && !self.content_types.is_empty() {
            let given = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| essence(v).to_ascii_lowercase())
                .unwrap_or_default();
            let allowed = self
                .content_types
                .iter()
                .any(|t| match t.strip_suffix("/*") {
                    Some(kind) => given.split_once('/').is_some_and(|(k, _)| k == kind),
                    None => *t == given,
                });
            if !allowed {
                return Err(Refusal::MediaType(given));
            }
        }
        if let Some(max) = self.max_body_bytes {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(Refusal::TooLarge(max));
            }
        }
        if self.schema.is_some() && !body && expects_body(method) {
            return Err(Refusal::NotJson("a JSON request body is required".into()));
        }
        Ok(())
    }

    /// Whether the body must be read for [`RequestChecks::check_body`].
    pub fn needs_body(&self, body: bool) -> bool {
        self.schema.is_some() && body
    }

    /// Whether the schema (when there is one) accepts `doc`.
    pub fn accepts(&self, doc: &Value) -> bool {
        self.schema.as_ref().is_some_and(|s| s.is_valid(doc))
    }

    /// Checks a buffered body against the schema; returns the parsed document.
    pub fn check_body(&self, body: &[u8]) -> Result<Option<Value>, Refusal> {
        let Some(schema) = &self.schema else {
            return Ok(None);
        };
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::NotJson(format!("the request body is not valid JSON: {e}")))?;
        let violations = violations(schema, &doc);
        if violations.is_empty() {
            Ok(Some(doc))
        } else {
            Err(Refusal::Schema(violations))
        }
    }
}

/// Methods whose requests carry a body by nature: a schema on them requires one.
fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

impl ResponseChecks {
    /// Whether a response with this status is checked: successful (2xx) ones; errors
    /// have shapes of their own.
    pub fn applies_to(&self, status: StatusCode) -> bool {
        status.is_success() && status != StatusCode::NO_CONTENT
    }

    /// The violations of an upstream body (empty when it is valid).
    pub fn check(&self, body: &[u8]) -> Vec<Violation> {
        match serde_json::from_slice::<Value>(body) {
            Ok(doc) => violations(&self.schema, &doc),
            Err(e) => vec![Violation {
                pointer: String::new(),
                message: format!("the upstream body is not valid JSON: {e}"),
            }],
        }
    }
}

fn violations(schema: &Validator, doc: &Value) -> Vec<Violation> {
    schema
        .iter_errors(doc)
        .take(MAX_VIOLATIONS)
        .map(|e| Violation {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

// === phases ===

/// Phase 4, request validation: content type (415), body size (413), required headers
/// and the JSON Schema (400). A schema reads the body whole, within the rule's limit.
pub(crate) fn on_request<'a>(
    cx: &Ctx<'a>,
    req: &'a mut Inbound,
) -> Step<'a, Result<(), GatewayError>> {
    let Some(checks) = cx
        .policies()
        .and_then(|p| p.validation.as_ref())
        .and_then(|v| v.request.as_ref())
    else {
        return Step::now(Ok(()));
    };
    let body = has_body(&req.parts.headers) || req.body.may_have_data();
    if let Err(refusal) = checks.check_head(&req.parts.method, &req.parts.headers, body) {
        return Step::now(Err(GatewayError::Invalid(refusal)));
    }
    req.body_limit = checks
        .max_body_bytes
        .map_or(req.body_limit, |m| m.min(req.body_limit));
    if !checks.needs_body(body) {
        return Step::now(Ok(()));
    }
    Step::later(async move {
        let body = std::mem::replace(&mut req.body, RequestBody::Buffered(bytes::Bytes::new()));
        let bytes = body.read(req.body_limit).await.map_err(|e| match e {
            GatewayError::PayloadTooLarge(max) => GatewayError::Invalid(Refusal::TooLarge(max)),
            other => other,
        })?;
        checks.check_body(&bytes).map_err(GatewayError::Invalid)?;
        req.body = RequestBody::Buffered(bytes);
        Ok(())
    })
}

/// The largest request body the rule accepts: `current` (the listener's), or the
/// rule's `validation.request.maxBodyBytes` when smaller. For phases that read the body
/// before validation does (the WAF), so that reading it first never lets more through.
pub(crate) fn body_limit(cx: &Ctx<'_>, current: u64) -> u64 {
    cx.policies()
        .and_then(|p| p.validation.as_ref())
        .and_then(|v| v.request.as_ref())
        .and_then(|r| r.max_body_bytes)
        .map_or(current, |m| m.min(current))
}

/// Whether the rule checks upstream responses: then the upstream is asked for an
/// identity-encoded body (a schema checks what the upstream meant, not its compression).
pub(crate) fn checks_responses(cx: &Ctx<'_>) -> bool {
    cx.policies()
        .and_then(|p| p.validation.as_ref())
        .is_some_and(|v| v.response.is_some())
}

/// Phase 6, response validation: an upstream body (of the statuses checked) that fails
/// the schema is a 502 in `Enforce` mode, a log line and a metric in `Report` mode.
pub(crate) fn on_response<'a>(
    cx: &'a Ctx<'_>,
    resp: Response<Body>,
) -> Step<'a, Result<Response<Body>, GatewayError>> {
    match cx
        .policies()
        .and_then(|p| p.validation.as_ref())
        .and_then(|v| v.response.as_ref())
        .filter(|c| c.applies_to(resp.status()))
    {
        Some(checks) => Step::later(check_response(cx, checks, resp)),
        None => Step::now(Ok(resp)),
    }
}

async fn check_response(
    cx: &Ctx<'_>,
    checks: &ResponseChecks,
    resp: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = resp.into_parts();
    let Some(bytes) = read_whole(body).await else {
        // Too large to check, or cut off: nothing valid to send either way.
        cx.count(Counter::ValidationResponse);
        tracing::warn!(
            rid = cx.rid(),
            "upstream response unreadable or over 10 MiB; not validated"
        );
        return Err(GatewayError::InvalidResponse(Vec::new()));
    };
    let violations = if parts.headers.contains_key(header::CONTENT_ENCODING) {
        vec![Violation {
            pointer: String::new(),
            message: "the upstream body is content-encoded".into(),
        }]
    } else {
        checks.check(&bytes)
    };
    if !violations.is_empty() {
        cx.count(Counter::ValidationResponse);
        let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
        tracing::warn!(
            rid = cx.rid(),
            report_only = checks.report_only,
            violations = %listed.join("; "),
            "upstream response does not match its schema"
        );
        if !checks.report_only {
            return Err(GatewayError::InvalidResponse(violations));
        }
    }
    Ok(Response::from_parts(parts, full(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn checks(config: table::Validation) -> Validation {
        Validation::prepare(&config).expect("prepares")
    }

    fn request(r: table::RequestValidation) -> table::Validation {
        table::Validation {
            request: Some(r),
            response: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn head_checks_in_order() {
        // `contentTypes: [application/json, text/*], maxBodyBytes: 10,
        // requiredHeaders: [X-Request-Id]`, lowered.
        let v = checks(request(table::RequestValidation {
            content_types: vec!["application/json".into(), "text/*".into()],
            max_body_bytes: Some(10),
            required_headers: vec!["x-request-id".into()],
            schema: None,
        }));
        let r = v.request.as_ref().expect("request checks");
        let post = Method::POST;
        assert_eq!(
            r.check_head(&post, &headers(&[]), false),
            Err(Refusal::MissingHeaders(vec!["x-request-id".into()]))
        );
        let h = headers(&[
            ("x-request-id", "1"),
            ("content-type", "application/xml"),
            ("content-length", "3"),
        ]);
        assert_eq!(
            r.check_head(&post, &h, true),
            Err(Refusal::MediaType("application/xml".into()))
        );
        let h = headers(&[
            ("x-request-id", "1"),
            ("content-type", "Application/JSON; charset=utf-8"),
            ("content-length", "11"),
        ]);
        assert_eq!(r.check_head(&post, &h, true), Err(Refusal::TooLarge(10)));
        let h = headers(&[
            ("x-request-id", "1"),
            ("content-type", "text/csv"),
            ("content-length", "3"),
        ]);
        assert_eq!(r.check_head(&post, &h, true), Ok(()));
        // No body: no media type to check.
        assert_eq!(
            r.check_head(&Method::GET, &headers(&[("x-request-id", "1")]), false),
            Ok(())
        );
    }

    #[test]
    fn schema_violations_list_each_pointer() {
        let v = checks(request(table::RequestValidation {
            schema: Some(json!({
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "age": {"type": "integer", "minimum": 0},
                    "email": {"type": "string", "format": "email"},
                },
            })),
            ..Default::default()
        }));
        let r = v.request.as_ref().expect("request checks");
        assert!(r.check_body(br#"{"name":"a","age":3}"#).is_ok());
        let Err(Refusal::Schema(list)) = r.check_body(br#"{"age":-1,"email":"nope"}"#) else {
            panic!("expected schema violations");
        };
        let pointers: Vec<&str> = list.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&""), "{list:?}");
        assert!(pointers.contains(&"/age"), "{list:?}");
        assert!(pointers.contains(&"/email"), "{list:?}");
        assert!(matches!(r.check_body(b"{"), Err(Refusal::NotJson(_))));
        // A schema requires a body on methods that carry one.
        assert!(matches!(
            r.check_head(&Method::POST, &headers(&[]), false),
            Err(Refusal::NotJson(_))
        ));
    }

    #[test]
    fn response_checks_and_modes() {
        let v = checks(table::Validation {
            request: None,
            response: Some(table::ResponseValidation {
                schema: json!({"type": "array"}),
                mode: ResponseValidationMode::Report,
            }),
        });
        let r = v.response.as_ref().expect("response checks");
        assert!(r.report_only);
        assert!(r.check(b"[1]").is_empty());
        assert_eq!(r.check(b"{}").len(), 1);
        assert!(r.applies_to(StatusCode::OK));
        assert!(!r.applies_to(StatusCode::NOT_FOUND));
    }

    #[test]
    fn invalid_schemas_do_not_prepare() {
        let c = request(table::RequestValidation {
            schema: Some(json!({"type": 12})),
            ..Default::default()
        });
        assert!(Validation::prepare(&c).is_err());
    }
}
