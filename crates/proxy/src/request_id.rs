//! Request ids: kept from the client when present and sane, else generated here. The
//! random words behind them also start trace contexts (`traceparent.rs`).

use std::cell::Cell;

use http::{HeaderMap, HeaderValue};

use crate::headers::X_REQUEST_ID;

/// Longest client-sent request id that is kept.
const MAX_LEN: usize = 128;

/// The request's id: the client's `X-Request-Id` when it is short printable text, else
/// a new one.
pub(crate) fn of(headers: &HeaderMap) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(v) if v.len() <= MAX_LEN && v.to_str().is_ok() => v.clone(),
        _ => generate(),
    }
}

thread_local! {
    static ID_STATE: Cell<u64> = Cell::new({
        // Per-thread seed: time and thread identity; ids only need to be unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let tid = std::thread::current().id();
        let h = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(tid)
        };
        t ^ h
    });
}

/// Three splitmix64 outputs from the per-thread sequence.
pub(crate) fn random_words() -> [u64; 3] {
    ID_STATE.with(|s| {
        let next = || {
            let mut z = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        [next(), next(), next()]
    })
}

/// Writes `v` as 16 lowercase hex digits.
pub(crate) fn hex16(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// A new 32-hex-character request id (splitmix64 over a per-thread sequence).
pub(crate) fn generate() -> HeaderValue {
    let [a, b, _] = random_words();
    let mut buf = [0u8; 32];
    hex16(&mut buf[..16], a);
    hex16(&mut buf[16..], b);
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_hex() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.to_str()
                .expect("ascii")
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
