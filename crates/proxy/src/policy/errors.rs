//! Error handling per route: the format of gateway-generated errors (`Problem`, the
//! default RFC 9457 problem+json; `Json`; `Text`), upstream error bodies hidden behind
//! that format (`replaceUpstream`), and fixed bodies per status (`overrides`, which win
//! over both, whoever produced the status). The status code itself is never changed.

use bytes::Bytes;

use super::validation::Violation;
use gatehouse_table::policy as table;
use http::{HeaderValue, StatusCode};
use rustc_hash::FxHashMap;

use std::ops::ControlFlow;

use http::{Response, header};

use crate::phases::Ctx;
use crate::{Body, full};

/// The format of gateway-generated error bodies: the table's, as the compiler lowered it.
pub use gatehouse_table::policy::ErrorFormat as Format;

/// A prepared `errors` policy.
#[derive(Debug, Default)]
pub struct ErrorPolicy {
    /// Body format.
    pub format: Format,
    replace_upstream: Vec<u16>,
    overrides: FxHashMap<u16, (HeaderValue, Bytes)>,
}

/// A rendered error body.
#[derive(Debug)]
pub struct Rendered {
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// Body.
    pub body: Bytes,
}

impl ErrorPolicy {
    /// Prepares a policy. A content type that is not a valid header value falls back
    /// to `text/plain; charset=utf-8`.
    pub fn prepare(c: &table::ErrorPolicy) -> ErrorPolicy {
        let overrides = c
            .overrides
            .iter()
            .map(|o| {
                let ct = HeaderValue::from_str(&o.content_type)
                    .unwrap_or_else(|_| HeaderValue::from_static("text/plain; charset=utf-8"));
                (o.status, (ct, Bytes::from(o.body.clone())))
            })
            .collect();
        ErrorPolicy {
            format: c.format,
            replace_upstream: c.replace_upstream.clone(),
            overrides,
        }
    }

    /// Whether an upstream response with `status` has its body replaced.
    pub fn replaces(&self, status: StatusCode) -> bool {
        self.overrides.contains_key(&status.as_u16())
            || self.replace_upstream.contains(&status.as_u16())
    }

    /// The fixed body for `status`, if one is configured.
    pub fn override_for(&self, status: StatusCode) -> Option<Rendered> {
        self.overrides
            .get(&status.as_u16())
            .map(|(ct, body)| Rendered {
                content_type: ct.clone(),
                body: body.clone(),
            })
    }
}

/// What an error lists under `errors`.
#[derive(Debug)]
pub enum Listed<'a> {
    /// Nothing.
    Nothing,
    /// Where the request body fails its schema.
    Violations(&'a [Violation]),
    /// The failed calls of an aggregate, as problem objects.
    Calls(&'a [crate::aggregate::CallError]),
}

impl Listed<'_> {
    fn json(&self) -> Option<serde_json::Value> {
        match self {
            Listed::Nothing => None,
            Listed::Violations([]) => None,
            Listed::Violations(v) => Some(serde_json::json!(v)),
            Listed::Calls(c) => Some(serde_json::json!(c)),
        }
    }

    fn lines(&self) -> Vec<String> {
        match self {
            Listed::Nothing => Vec::new(),
            Listed::Violations(v) => v.iter().map(ToString::to_string).collect(),
            Listed::Calls(c) => c.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Renders an error body in `format`. `detail` is for people; `instance` is the
/// request id.
pub fn render(
    format: Format,
    status: StatusCode,
    title: &str,
    detail: &str,
    instance: &str,
    listed: &Listed<'_>,
) -> Rendered {
    match format {
        Format::Problem => {
            let mut doc = serde_json::json!({
                "type": "about:blank",
                "title": title,
                "status": status.as_u16(),
                "detail": detail,
                "instance": instance,
            });
            if let Some(list) = listed.json() {
                doc["errors"] = list;
            }
            Rendered {
                content_type: HeaderValue::from_static("application/problem+json"),
                body: Bytes::from(doc.to_string()),
            }
        }
        Format::Json => {
            let mut doc = serde_json::json!({
                "status": status.as_u16(),
                "error": title,
                "message": detail,
                "requestId": instance,
            });
            if let Some(list) = listed.json() {
                doc["errors"] = list;
            }
            Rendered {
                content_type: HeaderValue::from_static("application/json"),
                body: Bytes::from(doc.to_string()),
            }
        }
        Format::Text => {
            let mut text = format!(
                "{} {title}: {detail} (request {instance})\n",
                status.as_u16()
            );
            for line in listed.lines() {
                text.push_str(&format!("  {line}\n"));
            }
            Rendered {
                content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
                body: Bytes::from(text),
            }
        }
    }
}

// === phase ===

/// Phase 6, error formatting of an upstream answer: a fixed body for its status
/// (`overrides`), or the gateway's format instead of the upstream's body
/// (`replaceUpstream`). `Break` holds the replaced response, whose upstream body is
/// dropped unread; `Continue` the response as it was.
pub(crate) fn replace_upstream(
    cx: &Ctx<'_>,
    resp: Response<Body>,
) -> ControlFlow<Response<Body>, Response<Body>> {
    let Some(e) = cx
        .policies()
        .and_then(|p| p.errors.as_ref())
        .filter(|e| e.replaces(resp.status()))
    else {
        return ControlFlow::Continue(resp);
    };
    let (mut parts, _) = resp.into_parts();
    let rendered = e.override_for(parts.status).unwrap_or_else(|| {
        render(
            e.format,
            parts.status,
            parts.status.canonical_reason().unwrap_or("Error"),
            &format!("The upstream answered {}.", parts.status.as_u16()),
            cx.rid(),
            &Listed::Nothing,
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
    ControlFlow::Break(Response::from_parts(parts, full(rendered.body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_overrides() {
        let p = ErrorPolicy::prepare(&table::ErrorPolicy {
            format: Format::Json,
            replace_upstream: vec![500],
            overrides: vec![table::ErrorOverride {
                status: 503,
                content_type: "application/json".into(),
                body: r#"{"message":"try later"}"#.into(),
            }],
        });
        assert_eq!(p.format, Format::Json);
        assert!(p.replaces(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(p.replaces(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!p.replaces(StatusCode::NOT_FOUND));
        let o = p
            .override_for(StatusCode::SERVICE_UNAVAILABLE)
            .expect("override");
        assert_eq!(o.body, r#"{"message":"try later"}"#);
        let r = render(
            Format::Json,
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            "down",
            "rid",
            &Listed::Nothing,
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["status"], 502);
        assert_eq!(v["requestId"], "rid");
        let t = render(
            Format::Text,
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            "down",
            "rid",
            &Listed::Violations(&[Violation {
                pointer: "/a".into(),
                message: "wrong".into(),
            }]),
        );
        assert_eq!(t.body, "502 Bad Gateway: down (request rid)\n  /a: wrong\n");
    }
}
