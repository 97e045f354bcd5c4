//! Request paths as clients send them: normalizing never panics, and what it returns is
//! normal: absolute, no empty or dot segment, its escapes upper-case and only for bytes
//! that must stay escaped, and normalizing it again changes nothing (so the path the
//! router matched is the path the upstream receives, and no second decoding on the
//! way can make a different one).
#![no_main]

use gatehouse_router::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(path) else {
        return;
    };
    let p: &str = &normal.path;
    assert!(p.starts_with('/'), "{path:?} → {p:?}");
    assert!(!p.contains("//"), "{path:?} → {p:?}");
    for segment in p.split('/').skip(1) {
        assert!(segment != "." && segment != "..", "{path:?} → {p:?}");
    }
    let bytes = p.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = &bytes[i + 1..i + 3];
            assert!(
                hex.iter().all(|h| h.is_ascii_digit() || h.is_ascii_uppercase()),
                "{path:?} → {p:?}"
            );
            let c = u8::from_str_radix(std::str::from_utf8(hex).expect("hex"), 16).expect("hex");
            assert!(
                !(c.is_ascii_alphanumeric() || b"-._~".contains(&c)),
                "an unreserved byte left escaped: {path:?} → {p:?}"
            );
        }
    }
    let again = normalize(p).expect("a normal path normalizes");
    assert_eq!(again.path, normal.path, "not idempotent: {path:?}");
});
