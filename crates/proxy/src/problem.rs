//! Gateway-generated errors: `application/problem+json` (RFC 9457). The mapping from a
//! gateway error to its status and text lives here and nowhere else.

use http::{HeaderValue, Response, StatusCode, header};

use crate::Body;
use crate::policy::errors::{self, ErrorPolicy, Format};
use crate::policy::validation::{Refusal, Violation};

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No route matched.
    NoRoute,
    /// The path matched, the method did not.
    MethodNotAllowed(Vec<String>),
    /// The path is malformed or holds a refused encoded slash.
    BadPath(String),
    /// The request body is larger than the limit.
    PayloadTooLarge(u64),
    /// Request line and headers are larger than the limit.
    HeadersTooLarge(usize),
    /// More header lines than the limit.
    TooManyHeaders(usize),
    /// The request target is longer than the limit.
    UriTooLong(usize),
    /// The request body arrived too slowly (`body.rs`, `ClientBody`): 408, and the
    /// connection is closed.
    BodyTooSlow,
    /// The HTTP/1.1 message framing is ambiguous (a `Transfer-Encoding` that is not one
    /// plain `chunked`): 400, and the connection is closed.
    Framing(&'static str),
    /// The rule is not served (unsupported field, missing policy or Secret).
    Blocked,
    /// No backend can take the request (missing upstream, no endpoint).
    Unavailable,
    /// Connecting to the upstream failed, or it reset the connection.
    BadGateway,
    /// The upstream did not answer in time.
    Timeout,
    /// A rate limit refused the request.
    RateLimited {
        /// `Retry-After`.
        retry_after: std::time::Duration,
        /// `RateLimit-*` headers.
        quota: crate::policy::limit::Quota,
    },
    /// The rule's concurrency limit and its queue are full.
    Overloaded,
    /// A `scope: Global` rate limit could not reach Redis and its `failureMode` is
    /// `Closed`.
    LimiterUnavailable,
    /// A CORS preflight the rule's policy refuses.
    CorsRefused(&'static str),
    /// The request body cannot be transformed (not valid JSON).
    BadBody(String),
    /// The request fails the rule's `validation.request`.
    Invalid(Refusal),
    /// The upstream's response fails `validation.response` in `Enforce` mode.
    InvalidResponse(Vec<Violation>),
    /// No configured authentication method accepted the request: 401 with a
    /// `WWW-Authenticate` challenge per method.
    Unauthorized {
        /// The challenges, one header line each.
        challenges: std::sync::Arc<[HeaderValue]>,
        /// Why, without the credential.
        detail: &'static str,
    },
    /// The authenticated caller is not allowed by the rule's `authorization`.
    Forbidden(String),
    /// On HTTPS, the route asked for is not served with the connection's certificate
    /// (or not on HTTPS at all): 421, the client retries on a connection of its own.
    Misdirected,
    /// The forward-authentication service failed, timed out or cannot be reached.
    AuthUnavailable(&'static str),
    /// The web application firewall refused the request (which rule is not said).
    Firewall,
    /// The upstream's circuit breaker shed the request (open, half-open with its
    /// trials taken, or a limit reached): 503 with `X-Gatehouse-Reason: circuit-open`.
    CircuitOpen,
    /// Every endpoint of the upstream is unhealthy or ejected.
    NoHealthyEndpoint,
    /// Calls of an aggregate failed (with `onError: Fail`, or all of them): 502 listing
    /// each failed call as a problem object under `errors`.
    AggregateFailed(std::sync::Arc<[crate::aggregate::CallError]>),
}

/// Why the gateway answered itself, where the contract names a reason.
pub const X_GATEHOUSE_REASON: &str = "x-gatehouse-reason";

impl GatewayError {
    /// Whether the connection must close after this answer (HTTP/1.1): the client's
    /// framing cannot be trusted to find where its next request starts.
    pub fn closes_connection(&self) -> bool {
        matches!(self, GatewayError::Framing(_) | GatewayError::BodyTooSlow)
    }

    /// What in the gateway refused the request, for the access log; `None` for an
    /// error that is not a refusal (no route, an upstream failure...).
    pub fn refused_by(&self) -> Option<&'static str> {
        Some(match self {
            GatewayError::RateLimited { .. } => "ratelimited",
            GatewayError::Overloaded => "concurrency",
            GatewayError::Unauthorized { .. } => "authentication",
            GatewayError::Forbidden(_) => "authorization",
            GatewayError::Firewall => "waf",
            GatewayError::CorsRefused(_) => "cors",
            GatewayError::Invalid(_) => "validation",
            GatewayError::CircuitOpen => "circuit-open",
            GatewayError::LimiterUnavailable => "ratelimit-unavailable",
            GatewayError::AuthUnavailable(_) => "authentication-unavailable",
            _ => return None,
        })
    }

    /// Status, title and detail.
    pub(crate) fn describe(&self) -> (StatusCode, &'static str, String) {
        match self {
            GatewayError::NoRoute => (
                StatusCode::NOT_FOUND,
                "Not Found",
                "No route matches this request.".into(),
            ),
            GatewayError::MethodNotAllowed(allow) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                format!("This path accepts {}.", allow.join(", ")),
            ),
            GatewayError::BadPath(why) => (StatusCode::BAD_REQUEST, "Bad Request", why.clone()),
            GatewayError::HeadersTooLarge(limit) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
                format!("The request line and headers exceed {limit} bytes."),
            ),
            GatewayError::TooManyHeaders(limit) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
                format!("The request has more than {limit} header lines."),
            ),
            GatewayError::UriTooLong(limit) => (
                StatusCode::URI_TOO_LONG,
                "URI Too Long",
                format!("The request target is longer than {limit} bytes."),
            ),
            GatewayError::BodyTooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                "Request Timeout",
                "The request body arrived too slowly (under 500 bytes/s after its first 10 s); the connection is closed.".into(),
            ),
            GatewayError::Framing(why) => (
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("{why}; the connection is closed."),
            ),
            GatewayError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Content Too Large",
                format!("The request body is larger than {limit} bytes."),
            ),
            GatewayError::Blocked => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "This route is not served: it uses a feature this gateway does not provide, or a reference that does not resolve.".into(),
            ),
            GatewayError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "No upstream endpoint is available for this route.".into(),
            ),
            GatewayError::BadGateway => (
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                "The upstream could not be reached or closed the connection.".into(),
            ),
            GatewayError::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway Timeout",
                "The upstream did not answer in time.".into(),
            ),
            GatewayError::RateLimited { retry_after, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                format!(
                    "The rate limit of this route is exhausted; retry in {} s.",
                    retry_after.as_millis().div_ceil(1000)
                ),
            ),
            GatewayError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "This route is serving as many requests as it allows; retry later.".into(),
            ),
            GatewayError::LimiterUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "The rate limit of this route cannot be checked right now; retry later.".into(),
            ),
            GatewayError::CorsRefused(why) => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("CORS preflight refused: {why}."),
            ),
            GatewayError::BadBody(why) => (StatusCode::BAD_REQUEST, "Bad Request", why.clone()),
            GatewayError::Invalid(refusal) => match refusal {
                Refusal::MediaType(given) => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    if given.is_empty() {
                        "The request body has no Content-Type; this route requires one.".into()
                    } else {
                        format!("This route does not accept request bodies of type {given}.")
                    },
                ),
                Refusal::TooLarge(max) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Payload Too Large",
                    format!("This route accepts request bodies of at most {max} bytes."),
                ),
                Refusal::MissingHeaders(names) => (
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!("Required request headers are missing: {}.", names.join(", ")),
                ),
                Refusal::NotJson(why) => (StatusCode::BAD_REQUEST, "Bad Request", why.clone()),
                Refusal::Schema(list) => (
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!(
                        "The request body does not match the route's schema ({} error{}; see errors).",
                        list.len(),
                        if list.len() == 1 { "" } else { "s" }
                    ),
                ),
            },
            GatewayError::Unauthorized { detail, .. } => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                (*detail).to_string(),
            ),
            GatewayError::Forbidden(why) => (StatusCode::FORBIDDEN, "Forbidden", why.clone()),
            GatewayError::Firewall => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This request was refused by the gateway's web application firewall.".into(),
            ),
            GatewayError::Misdirected => (
                StatusCode::MISDIRECTED_REQUEST,
                "Misdirected Request",
                "This host is not served on this connection's certificate; open a new connection for it.".into(),
            ),
            GatewayError::AuthUnavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                format!("Authentication cannot be checked right now: {why}."),
            ),
            GatewayError::CircuitOpen => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "The upstream's circuit breaker is open or at its limits; the request was not sent.".into(),
            ),
            GatewayError::NoHealthyEndpoint => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "Every endpoint of the upstream is failing its health checks.".into(),
            ),
            GatewayError::AggregateFailed(calls) => (
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                format!(
                    "Calls of this aggregate failed: {} (see errors).",
                    calls
                        .iter()
                        .map(|c| c.call.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            GatewayError::InvalidResponse(_) => (
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                "The upstream's response does not match the route's response schema.".into(),
            ),
        }
    }

    /// The response in the route's error format (problem+json without one), or its
    /// override for this status; `instance` is the request id.
    pub fn response_as(&self, request_id: &str, policy: Option<&ErrorPolicy>) -> Response<Body> {
        let (status, title, detail) = self.describe();
        let rendered = policy
            .and_then(|p| p.override_for(status))
            .unwrap_or_else(|| {
                let format = policy.map_or(Format::Problem, |p| p.format);
                let listed = match self {
                    GatewayError::Invalid(Refusal::Schema(list)) => {
                        errors::Listed::Violations(list)
                    }
                    GatewayError::AggregateFailed(calls) => errors::Listed::Calls(calls),
                    _ => errors::Listed::Nothing,
                };
                errors::render(format, status, title, &detail, request_id, &listed)
            });
        let mut resp = Response::new(crate::full(rendered.body));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, rendered.content_type);
        if let GatewayError::RateLimited { retry_after, quota } = self {
            quota.write(resp.headers_mut());
            let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let GatewayError::Unauthorized { challenges, .. } = self {
            for c in challenges.iter() {
                resp.headers_mut()
                    .append(header::WWW_AUTHENTICATE, c.clone());
            }
        }
        if let GatewayError::CircuitOpen = self {
            resp.headers_mut()
                .insert(X_GATEHOUSE_REASON, HeaderValue::from_static("circuit-open"));
        }
        if let GatewayError::MethodNotAllowed(allow) = self
            && let Ok(v) = HeaderValue::from_str(&allow.join(", "))
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        resp
    }
}
