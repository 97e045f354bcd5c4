//! W3C Trace Context: an upstream-bound request carries the client's `traceparent` as
//! received, or one started here; with tracing on (`crate::trace`), each upstream
//! attempt carries its own span id.

use http::{HeaderMap, HeaderValue};

use crate::headers::TRACEPARENT;
use crate::request_id::{hex16, random_words};

/// What a `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub trace_id: u128,
    /// The sender's span (the parent of ours).
    pub span_id: u64,
    /// The `sampled` flag.
    pub sampled: bool,
}

/// Propagates the request's `traceparent`, or starts one. `started` is the one given
/// to a request that came without a valid one as it arrived; it replaces what the
/// client sent.
pub(crate) fn propagate(headers: &mut HeaderMap, started: Option<&TraceContext>) {
    match started {
        Some(t) => {
            headers.insert(TRACEPARENT, format(t.trace_id, t.span_id, t.sampled));
        }
        None if !headers.contains_key(TRACEPARENT) => {
            headers.insert(TRACEPARENT, start());
        }
        None => {}
    }
}

/// `00-<trace id>-<span id>-01` with fresh, non-zero ids.
pub(crate) fn start() -> HeaderValue {
    let t = fresh();
    format(t.trace_id, t.span_id, t.sampled)
}

/// A new trace, marked sampled: fresh, non-zero ids.
pub(crate) fn fresh() -> TraceContext {
    let [a, b, c] = random_words();
    TraceContext {
        trace_id: u128::from(a) << 64 | u128::from(b | 1),
        span_id: c | 1,
        sampled: true,
    }
}

/// A version-00 `traceparent`.
pub(crate) fn format(trace_id: u128, span_id: u64, sampled: bool) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex16(&mut buf[3..19], (trace_id >> 64) as u64);
    hex16(&mut buf[19..35], trace_id as u64);
    hex16(&mut buf[36..52], span_id);
    if sampled {
        buf[54] = b'1';
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(
        "00-00000000000000000000000000000001-0000000000000001-01",
    ))
}

/// Reads a `traceparent` (W3C Trace Context level 1): `None` when it is not valid (the
/// trace then starts here). A later version may add fields after the four known.
pub(crate) fn parse(v: &HeaderValue) -> Option<TraceContext> {
    let b = v.as_bytes();
    if b.len() < 55 || (b.len() > 55 && (b[..2] == *b"00" || b[55] != b'-')) {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' || b[..2] == *b"ff" {
        return None;
    }
    let hex = |s: &[u8]| -> Option<u128> {
        s.iter().try_fold(0u128, |acc, &c| {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            Some(acc << 4 | u128::from(d))
        })
    };
    hex(&b[..2])?;
    let trace_id = hex(&b[3..35])?;
    let span_id = hex(&b[36..52])? as u64;
    let flags = hex(&b[53..55])?;
    (trace_id != 0 && span_id != 0).then_some(TraceContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
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

    #[test]
    fn parse_reads_what_format_writes() {
        let v = format(
            0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
            0xb7ad_6b71_6920_3331,
            true,
        );
        assert_eq!(
            v.to_str().expect("ascii"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let c = parse(&v).expect("valid");
        assert_eq!(c.trace_id, 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c);
        assert_eq!(c.span_id, 0xb7ad_6b71_6920_3331);
        assert!(c.sampled);
        let unsampled = format(1, 2, false);
        assert!(!parse(&unsampled).expect("valid").sampled);
        assert!(parse(&start()).is_some());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(parse(&HeaderValue::from_static(bad)), None, "{bad}");
        }
        // A later version may carry more fields.
        let later =
            HeaderValue::from_static("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ab");
        assert!(parse(&later).is_some());
    }
}
