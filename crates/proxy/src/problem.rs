//! Gateway-generated errors: `application/problem+json` (RFC 9457). The mapping from a
//! gateway error to its status and text lives here and nowhere else.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::Body;

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
    /// The rule is not served (unsupported field, missing policy or Secret).
    Blocked,
    /// No backend can take the request (missing upstream, no endpoint).
    Unavailable,
    /// Connecting to the upstream failed, or it reset the connection.
    BadGateway,
    /// The upstream did not answer in time.
    Timeout,
}

impl GatewayError {
    /// Status, title and detail.
    fn parts(&self) -> (StatusCode, &'static str, String) {
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
        }
    }

    /// The problem+json response; `instance` is the request id.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        let (status, title, detail) = self.parts();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "instance": request_id,
        });
        let mut resp = Response::new(crate::full(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let GatewayError::MethodNotAllowed(allow) = self
            && let Ok(v) = HeaderValue::from_str(&allow.join(", "))
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        resp
    }
}
