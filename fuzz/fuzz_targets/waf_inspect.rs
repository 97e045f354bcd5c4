//! The WAF's native rules over arbitrary requests: decoding (percent, double percent,
//! `%u`, HTML references, backslash escapes, overlong UTF-8), the query, cookie, JSON
//! and form splitting, and every detector never panic, and give the same verdict twice
//! (the second time through each worker's memory of clean values). The input's first
//! byte picks the body's media type; the rest is split into the request target, one
//! header value, a cookie and the body.
#![no_main]

use std::sync::OnceLock;

use gatehouse_proxy::policy::waf::Waf;
use gatehouse_table::policy::{Waf as WafConfig, WafParts, WafRule};
use libfuzzer_sys::fuzz_target;

fn waf() -> &'static Waf {
    static WAF: OnceLock<Waf> = OnceLock::new();
    WAF.get_or_init(|| {
        Waf::prepare(
            &WafConfig {
                rules: WafRule::ALL.to_vec(),
                inspect: WafParts {
                    path: true,
                    query: true,
                    headers: true,
                    body: true,
                },
                max_inspect_bytes: 4096,
                ..WafConfig::default()
            },
            None,
            None,
        )
    })
}

const MEDIA: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "application/vnd.api+json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut pieces = rest.splitn(4, |b| *b == 0xff);
    let target = pieces.next().unwrap_or_default();
    let header = pieces.next().unwrap_or_default();
    let cookie = pieces.next().unwrap_or_default();
    let body = pieces.next();
    let mut builder = http::Request::builder()
        .method(if pick & 0x80 == 0 { "POST" } else { "GET" })
        .uri(format!("/{}", String::from_utf8_lossy(target)));
    if let Ok(v) = http::HeaderValue::from_bytes(header) {
        builder = builder.header("x-note", v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(cookie) {
        builder = builder.header("cookie", v);
    }
    builder = builder.header("content-type", MEDIA[usize::from(pick) % MEDIA.len()]);
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let first = waf().native_verdict(&parts, body);
    let second = waf().native_verdict(&parts, body);
    assert_eq!(first, second);
});
