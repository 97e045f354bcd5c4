//! The listener's limits, checked before any work on a request: the target (414), the
//! head and its header count (431), the framing of an HTTP/1.1 body (400, then the
//! connection closes), and a declared body (413). A streamed body is cut off at the
//! same limit where it is forwarded; the parser's own bounds are set in `http.rs`.
//!
//! What the parser (hyper, httparse) already refused never gets here: an unparseable
//! request line or header (CR, LF or NUL in a value, obs-fold, a malformed or
//! conflicting `Content-Length`, a coding other than chunked last, `Transfer-Encoding`
//! in HTTP/1.0), each a 400 that closes the connection.

use http::header;
use http::request::Parts;

use crate::problem::GatewayError;

/// Largest request line + headers. The request path answers 431 (problem+json) beyond
/// it; the parser's buffer is twice as large, and only a head beyond that gets the
/// parser's own bare 431 with the connection closed.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Longest request target (path and query): 414 beyond it.
pub const MAX_URI: usize = 8 * 1024;

/// Most header lines in a request: 431 beyond it. The HTTP/1.1 parser is given room
/// for twice as many, so the answer here is the request path's problem+json.
pub const MAX_HEADERS: usize = 100;

/// Largest request body accepted unless a route says otherwise: by `Content-Length`
/// before anything is forwarded, and by counting when the body is streamed.
pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Phase 1: the target within [`MAX_URI`], at most [`MAX_HEADERS`] header lines, a
/// plain chunked `Transfer-Encoding` if any, the head within [`MAX_REQUEST_HEAD`] (hyper refuses an incomplete head
/// beyond its buffer; a complete one that arrived in one read is measured here), and a
/// declared body within [`MAX_BODY_BYTES`].
pub(crate) fn check(parts: &Parts) -> Result<(), GatewayError> {
    // The path and query: what HTTP/1.1's origin form and HTTP/2's `:path` both carry.
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return Err(GatewayError::UriTooLong(MAX_URI));
    }
    if parts.headers.len() > MAX_HEADERS {
        return Err(GatewayError::TooManyHeaders(MAX_HEADERS));
    }
    // HTTP/1.1 framing: the parser decodes a body whose last coding is chunked and, when
    // `Content-Length` came too, drops it. Anything but one plain `chunked` is a
    // message another hop may frame differently: refused, and the connection closed.
    let mut codings = parts.headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next()
        && (!first.as_bytes().eq_ignore_ascii_case(b"chunked") || codings.next().is_some())
    {
        return Err(GatewayError::Framing(
            "Transfer-Encoding other than a single \"chunked\" is refused",
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::get(target);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).expect("request").into_parts().0
    }

    #[test]
    fn a_long_target_is_414_and_many_headers_431() {
        let long = format!("/{}", "a".repeat(MAX_URI));
        assert_eq!(
            check(&parts(&long, &[])),
            Err(GatewayError::UriTooLong(MAX_URI))
        );
        assert!(check(&parts(&long[..MAX_URI], &[])).is_ok());
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
        assert_eq!(
            check(&parts("/", &many)),
            Err(GatewayError::TooManyHeaders(MAX_HEADERS))
        );
        assert!(check(&parts("/", &many[..MAX_HEADERS])).is_ok());
    }

    #[test]
    fn only_one_plain_chunked_coding_is_accepted() {
        assert!(check(&parts("/", &[("transfer-encoding", "chunked")])).is_ok());
        assert!(check(&parts("/", &[("transfer-encoding", "Chunked")])).is_ok());
        for bad in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "identity")],
            &[("transfer-encoding", " chunked")],
        ] {
            let e = check(&parts("/", bad)).expect_err("refused");
            assert!(e.closes_connection(), "{bad:?}");
        }
    }
}
