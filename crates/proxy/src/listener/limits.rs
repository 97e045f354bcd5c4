//! The listener's limits, checked before any work on a request: the request head (431)
//! and a declared body (413). A streamed body is cut off at the same limit where it is
//! forwarded; the parser's own bounds are set in `http.rs`.

use http::header;
use http::request::Parts;

use crate::problem::GatewayError;

/// Largest request line + headers. The request path answers 431 (problem+json) beyond
/// it; the parser's buffer is twice as large, and only a head beyond that gets the
/// parser's own bare 431 with the connection closed.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Largest request body accepted unless a route says otherwise: by `Content-Length`
/// before anything is forwarded, and by counting when the body is streamed.
pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Phase 1: the head within [`MAX_REQUEST_HEAD`] (hyper refuses an incomplete head
/// beyond its buffer; a complete one that arrived in one read is measured here), and a
/// declared body within [`MAX_BODY_BYTES`].
pub(crate) fn check(parts: &Parts) -> Result<(), GatewayError> {
    let head: usize = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > MAX_REQUEST_HEAD {
        return Err(GatewayError::HeadersTooLarge(MAX_REQUEST_HEAD));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(GatewayError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    Ok(())
}
