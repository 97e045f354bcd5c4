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
const PATH_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
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
