//! `docs` of routes and rules, lowered for the API documentation. Docs never change
//! how a request is served: what is wrong in them is a warning, and the part in
//! question is left out of the document.

use gatehouse_api::route::{RouteDocs, RuleDocs};
use gatehouse_table::docs as table;

use crate::diagnostics::{Reason, Sink};

/// A route's `docs`.
pub(crate) fn route(d: &RouteDocs) -> table::RouteDocs {
    table::RouteDocs {
        title: d.title.clone(),
        description: d.description.clone(),
        tags: d.tags.clone(),
    }
}

/// A rule's `docs`, written at `field`.
pub(crate) fn rule(d: &RuleDocs, field: &str, sink: &mut Sink<'_>) -> table::RuleDocs {
    let request_body = d.request_body.as_ref().and_then(|b| {
        let content_type = b
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".into());
        if !is_media_type(&content_type) {
            sink.warning(
                format!("{field}.requestBody.contentType"),
                Reason::Invalid,
                format!("{content_type:?} is not a media type; the request body is not documented"),
            );
            return None;
        }
        Some(table::DocsBody {
            content_type,
            schema: schema(
                b.schema.as_ref(),
                &format!("{field}.requestBody.schema"),
                sink,
            ),
        })
    });
    let mut responses = std::collections::BTreeMap::new();
    for (code, r) in &d.responses {
        let at = format!("{field}.responses[{code:?}]");
        let Some(phrase) = status_key(code) else {
            sink.warning(
                at,
                Reason::Invalid,
                format!("{code:?} is not a status code (200), a range (4XX) or default; the response is not documented"),
            );
            continue;
        };
        responses.insert(
            code.to_ascii_uppercase().replace("DEFAULT", "default"),
            table::DocsResponse {
                description: r.description.clone().unwrap_or_else(|| phrase.into()),
                schema: schema(r.schema.as_ref(), &format!("{at}.schema"), sink),
            },
        );
    }
    table::RuleDocs {
        summary: d.summary.clone(),
        description: d.description.clone(),
        request_body,
        responses,
    }
}

/// A JSON Schema is an object or a boolean; anything else is left out.
fn schema(
    s: Option<&serde_json::Value>,
    field: &str,
    sink: &mut Sink<'_>,
) -> Option<serde_json::Value> {
    let s = s?;
    if s.is_object() || s.is_boolean() {
        return Some(s.clone());
    }
    sink.warning(
        field,
        Reason::Invalid,
        "a JSON Schema is an object or a boolean; the schema is not documented",
    );
    None
}

/// `type/subtype`, each a token.
fn is_media_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or_default().trim();
    let Some((t, sub)) = essence.split_once('/') else {
        return false;
    };
    crate::values::is_token(t) && crate::values::is_token(sub)
}

/// The default description of a response key: `200` and `4XX` (100 to 599), or
/// `default`; `None` for anything else.
fn status_key(code: &str) -> Option<&'static str> {
    if code.eq_ignore_ascii_case("default") {
        return Some("Any other response");
    }
    let b = code.as_bytes();
    if b.len() != 3 || !(b'1'..=b'5').contains(&b[0]) {
        return None;
    }
    if b[1..].eq_ignore_ascii_case(b"XX") {
        return Some(match b[0] {
            b'1' => "Informational",
            b'2' => "Success",
            b'3' => "Redirection",
            b'4' => "Client error",
            _ => "Server error",
        });
    }
    let n: u16 = code.parse().ok()?;
    Some(match n {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Response",
    })
}

#[cfg(test)]
mod tests {
    use super::status_key;

    #[test]
    fn response_keys() {
        assert_eq!(status_key("200"), Some("OK"));
        assert_eq!(status_key("4xx"), Some("Client error"));
        assert_eq!(status_key("default"), Some("Any other response"));
        assert_eq!(status_key("299"), Some("Response"));
        for bad in ["600", "20", "abc", "6XX", "2X0", ""] {
            assert_eq!(status_key(bad), None, "{bad}");
        }
    }
}
