//! `authentication.external`: forward authentication. The gateway asks a check service
//! whether to let the request in:
//!
//! - `GET url`, with the request's `forwardHeaders`, and `X-Forwarded-Method`,
//!   `X-Forwarded-Uri` (path and query), `X-Forwarded-Host`, `X-Forwarded-For` and
//!   `X-Request-Id`; no body;
//! - a 2xx answer lets it in: its `upstreamHeaders` are copied onto the upstream
//!   request (the client's own headers of those names were removed first);
//! - a 401, 403 or redirect (3xx) goes back to the client as the service sent it:
//!   status, `WWW-Authenticate`, `Location`, `Set-Cookie`, `Content-Type`, and the body
//!   when it is at most 64 KiB (a larger one is dropped; a 2xx's body is never used);
//! - anything else, no answer within `timeout`, or no connection: 503, fail closed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode, Uri};
use http_body_util::Full;

use super::client::{self, AuxClient};
use crate::Body;

/// The largest check answer body passed back to the client.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Headers of a refusal passed back to the client.
const PASSED_BACK: [HeaderName; 4] = [
    header::WWW_AUTHENTICATE,
    header::LOCATION,
    header::SET_COOKIE,
    header::CONTENT_TYPE,
];

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A prepared `external` policy.
pub struct External {
    url: Uri,
    client: AuxClient,
    forward: Vec<HeaderName>,
    /// Copied from an allowing answer.
    pub upstream: Vec<HeaderName>,
    timeout: Duration,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What the check said.
pub(crate) enum Checked {
    /// Let in, with these headers for the upstream.
    Allowed(Vec<(HeaderName, HeaderValue)>),
    /// Refused: the service's answer, for the client.
    Refused(Response<Body>),
    /// No usable answer.
    Failed(String),
}

fn names(list: &[String]) -> Result<Vec<HeaderName>, String> {
    list.iter()
        .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("header {h:?}: {e}")))
        .collect()
}

impl External {
    /// Prepares a check.
    pub fn prepare(c: &gatehouse_table::auth::ExternalAuth) -> Result<External, String> {
        Ok(External {
            url: c.url.parse().map_err(|e| format!("url {:?}: {e}", c.url))?,
            client: client::build(None)?,
            forward: names(&c.forward_headers)?,
            upstream: names(&c.upstream_headers)?,
            timeout: Duration::from_millis(c.timeout_ms.max(1)),
        })
    }

    /// Whether the request carries any header the check is sent (with none listed,
    /// every request is checked).
    pub fn presented(&self, parts: &Parts) -> bool {
        self.forward.is_empty() || self.forward.iter().any(|h| parts.headers.contains_key(h))
    }

    /// Asks the service about the request.
    pub(crate) async fn check(&self, parts: &Parts, client_ip: &str, rid: &HeaderValue) -> Checked {
        let mut req = http::Request::get(self.url.clone());
        if let Some(h) = req.headers_mut() {
            for name in &self.forward {
                for v in parts.headers.get_all(name) {
                    h.append(name.clone(), v.clone());
                }
            }
            h.insert(
                X_FORWARDED_METHOD.clone(),
                HeaderValue::from_str(parts.method.as_str())
                    .unwrap_or(HeaderValue::from_static("GET")),
            );
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            if let Ok(v) = HeaderValue::from_str(target) {
                h.insert(X_FORWARDED_URI.clone(), v);
            }
            let host = parts.headers.get(header::HOST).cloned().or_else(|| {
                parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
            if let Some(host) = host {
                h.insert(X_FORWARDED_HOST.clone(), host);
            }
            if let Ok(v) = HeaderValue::from_str(client_ip) {
                h.insert(X_FORWARDED_FOR.clone(), v);
            }
            h.insert(crate::headers::X_REQUEST_ID, rid.clone());
        }
        let req = match req.body(Full::new(Bytes::new())) {
            Ok(r) => r,
            Err(e) => return Checked::Failed(e.to_string()),
        };
        let answer = match client::call(&self.client, req, self.timeout, MAX_ANSWER_BYTES).await {
            Ok(a) => a,
            Err(e) => return Checked::Failed(e),
        };
        let status = answer.status;
        if status.is_success() {
            let mut out = Vec::new();
            for name in &self.upstream {
                for v in answer.headers.get_all(name) {
                    out.push((name.clone(), v.clone()));
                }
            }
            return Checked::Allowed(out);
        }
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status.is_redirection()
        {
            // A body over the bound is not passed back in part: the status and headers
            // still are.
            let body = if answer.complete {
                answer.body
            } else {
                Bytes::new()
            };
            let mut resp = Response::new(crate::full(body));
            *resp.status_mut() = status;
            for name in &PASSED_BACK {
                for v in answer.headers.get_all(name) {
                    resp.headers_mut().append(name.clone(), v.clone());
                }
            }
            return Checked::Refused(resp);
        }
        Checked::Failed(format!("the check service answered {status}"))
    }
}
