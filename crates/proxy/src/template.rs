//! `${...}` templates: what they read from a request, and paths rendered from them.
//! The templates themselves were parsed by the compiler into [`TemplatePart`]s.

use gatehouse_router::query_pairs;
use gatehouse_table::TemplatePart;
use http::HeaderMap;

/// What `${...}` templates read.
pub(crate) struct TemplateCtx<'a> {
    /// `${path.<name>}`: the captured path parameters.
    pub params: &'a [(String, String)],
    /// `${query.<name>}`: the query as received.
    pub query: Option<&'a str>,
    /// `${header.<name>}`: the client's headers (empty once they became the upstream's).
    pub headers: Option<&'a HeaderMap>,
    /// `${clientIp}`.
    pub client: std::net::IpAddr,
    /// `${requestId}`.
    pub rid: &'a str,
    /// `${consumer}`, `${claim.<name>}`: who authentication said the caller is.
    pub identity: Option<&'a crate::policy::authentication::Identity>,
}

impl TemplateCtx<'_> {
    /// The raw (unencoded) value of one variable.
    pub fn var(&self, p: &TemplatePart, out: &mut String) {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::PathParam(n) => {
                if let Some((_, v)) = self.params.iter().find(|(k, _)| k == n) {
                    out.push_str(v);
                }
            }
            TemplatePart::Query(n) => {
                if let Some((_, v)) = query_pairs(self.query).find(|(k, _)| k == n) {
                    out.push_str(&v);
                }
            }
            TemplatePart::Header(n) => {
                if let Some(v) = self
                    .headers
                    .and_then(|h| h.get(n.as_str()))
                    .and_then(|v| v.to_str().ok())
                {
                    out.push_str(v);
                }
            }
            TemplatePart::ClientIp => out.push_str(&self.client.to_string()),
            TemplatePart::RequestId => out.push_str(self.rid),
            TemplatePart::Consumer => {
                if let Some(c) = self.identity.and_then(|i| i.consumer.as_deref()) {
                    out.push_str(c);
                }
            }
            TemplatePart::Claim(name) => {
                match self
                    .identity
                    .and_then(|i| i.claims.as_ref())
                    .and_then(|c| c.get(name.as_str()))
                {
                    Some(serde_json::Value::String(s)) => out.push_str(s),
                    Some(serde_json::Value::Null) | None => {}
                    Some(v) => out.push_str(&v.to_string()),
                }
            }
        }
    }
}

/// Bytes a value interpolated into a path must not carry as they are: controls, space,
/// delimiters that would end the path (`?`, `#`), `%` (values are decoded, so a `%` is
/// data) and characters URIs exclude. `/` stays: `{*rest}` captures span segments.
const PATH_SET: percent_encoding::AsciiSet = percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
const PATH_VALUE: &percent_encoding::AsciiSet = &PATH_SET;
/// A value that is not a captured path parameter (a query parameter, a header, a
/// claim...) is one path segment: its `/` is encoded too.
const SEGMENT_VALUE: &percent_encoding::AsciiSet = &PATH_SET.add(b'/');
/// A value in the query: also its delimiters (`&`, `=`, `+`, `;`), so that a value
/// stays one parameter's value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &PATH_SET.add(b'&').add(b'=').add(b'+').add(b';');

/// Renders a path template: literals as written, values percent-encoded, so the
/// result is always a valid URI path whatever the request carried.
pub(crate) fn render_path(parts: &[TemplatePart], ctx: &TemplateCtx<'_>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut value = String::new();
    for p in parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            var => {
                value.clear();
                ctx.var(var, &mut value);
                let _ = write!(
                    out,
                    "{}",
                    percent_encoding::utf8_percent_encode(&value, PATH_VALUE)
                );
            }
        }
    }
    out
}

/// Renders a request target (path and query) template: literals as written, each value
/// percent-encoded for its place. In the path, a captured path parameter keeps its `/`
/// (a `{*rest}` capture spans segments) and any other value is one segment; a value
/// that would make a `.` or `..` segment has its dots encoded, so no value can climb
/// the path. After the literal `?`, values are encoded as query values.
pub(crate) fn render_target(parts: &[TemplatePart], ctx: &TemplateCtx<'_>) -> String {
    let mut out = String::new();
    let mut value = String::new();
    let mut in_query = false;
    for p in parts {
        if let TemplatePart::Literal(s) = p {
            out.push_str(s);
            in_query |= s.contains('?');
            continue;
        }
        value.clear();
        ctx.var(p, &mut value);
        let set = match p {
            _ if in_query => QUERY_VALUE,
            TemplatePart::PathParam(_) => PATH_VALUE,
            _ => SEGMENT_VALUE,
        };
        let encoded = percent_encoding::utf8_percent_encode(&value, set).to_string();
        if in_query {
            out.push_str(&encoded);
            continue;
        }
        for (i, segment) in encoded.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            match segment {
                "." => out.push_str("%2E"),
                ".." => out.push_str("%2E%2E"),
                s => out.push_str(s),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(params: &'a [(String, String)], query: Option<&'a str>) -> TemplateCtx<'a> {
        TemplateCtx {
            params,
            query,
            headers: None,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            rid: "rid",
            identity: None,
        }
    }

    fn lit(s: &str) -> TemplatePart {
        TemplatePart::Literal(s.into())
    }

    #[test]
    fn each_value_is_encoded_for_its_place() {
        let params = [("rest".to_string(), "a/b c".to_string())];
        let parts = [
            lit("/users/"),
            TemplatePart::PathParam("rest".into()),
            lit("/"),
            TemplatePart::Query("q".into()),
            lit("?user="),
            TemplatePart::Query("q".into()),
            lit("&x=1"),
        ];
        let rendered = render_target(&parts, &ctx(&params, Some("q=x%2Fy%26admin%3D1")));
        assert_eq!(
            rendered,
            "/users/a/b%20c/x%2Fy&admin=1?user=x/y%26admin%3D1&x=1"
        );
    }

    #[test]
    fn no_value_makes_a_dot_segment() {
        let params = [("p".to_string(), "../../admin".to_string())];
        let parts = [
            lit("/a/"),
            TemplatePart::PathParam("p".into()),
            lit("/"),
            TemplatePart::Query("q".into()),
        ];
        let rendered = render_target(&parts, &ctx(&params, Some("q=..")));
        assert_eq!(rendered, "/a/%2E%2E/%2E%2E/admin/%2E%2E");
    }
}
