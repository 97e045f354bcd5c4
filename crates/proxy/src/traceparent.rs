//! W3C Trace Context: an upstream-bound request carries the client's `traceparent` as
//! received, or one started here.

use http::{HeaderMap, HeaderValue};

use crate::headers::TRACEPARENT;
use crate::request_id::{hex16, random_words};

/// Propagates the request's `traceparent`, or starts one (`started`, when the request
/// was given one as it arrived).
pub(crate) fn propagate(headers: &mut HeaderMap, started: Option<&HeaderValue>) {
    if !headers.contains_key(TRACEPARENT) {
        headers.insert(TRACEPARENT, started.cloned().unwrap_or_else(start));
    }
}

/// `00-<trace id>-<span id>-01` with fresh, non-zero ids.
pub(crate) fn start() -> HeaderValue {
    let [a, b, c] = random_words();
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex16(&mut buf[3..19], a | 1);
    hex16(&mut buf[19..35], b);
    hex16(&mut buf[36..52], c | 1);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(
        "00-00000000000000000000000000000001-0000000000000001-01",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_well_formed() {
        let t = start();
        let t = t.to_str().expect("ascii");
        assert_eq!(t.len(), 55);
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(
            parts[1]
                .bytes()
                .chain(parts[2].bytes())
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_ne!(parts[1], "0".repeat(32));
        let mut buf = [0u8; 16];
        hex16(&mut buf, 0x0123_4567_89ab_cdef);
        assert_eq!(&buf, b"0123456789abcdef");
    }
}
