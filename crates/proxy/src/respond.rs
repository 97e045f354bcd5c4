//! Rules answered by the gateway itself: a fixed response (`respond`) or a redirect.

use bytes::Bytes;
use gatehouse_table::{Redirect, RedirectScheme, Respond};
use http::{HeaderValue, Response, StatusCode, header};

use crate::template::{TemplateCtx, render_path};
use crate::{Body, full};

/// The rule's fixed response.
pub(crate) fn respond(r: &Respond) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(r.body.clone())));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&r.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The rule's redirect for a request to `host` whose normalized path is `normalized`.
pub(crate) fn redirect(
    r: &Redirect,
    host: &str,
    normalized: &str,
    ctx: &TemplateCtx<'_>,
) -> Response<Body> {
    let (req_host, req_port) = split_host_port(host);
    let scheme = r.scheme.unwrap_or(RedirectScheme::Http);
    let hostname = r.hostname.as_deref().unwrap_or(req_host);
    // A changed scheme drops the request's port: it belonged to the other scheme.
    let port = r.port.or(if r.scheme.is_some() { None } else { req_port });
    let default_port = scheme.default_port();
    let path = match &r.path {
        Some(parts) => render_path(parts, ctx),
        None => normalized.to_string(),
    };
    let mut location = format!("{}://{hostname}", scheme.as_str());
    if let Some(p) = port.filter(|p| *p != default_port) {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(&path);
    if let Some(q) = ctx.query {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `example.com:8080` → (`example.com`, 8080); `[::1]:80` → (`[::1]`, 80).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    let (name, rest) = match host.find(']') {
        Some(end) if host.starts_with('[') => (&host[..=end], &host[end + 1..]),
        _ => match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        },
    };
    match rest.strip_prefix(':').map(str::parse::<u16>) {
        Some(Ok(port)) => (name, Some(port)),
        _ if rest.is_empty() => (name, None),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port() {
        assert_eq!(split_host_port("a.com:8080"), ("a.com", Some(8080)));
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
    }
}
