//! Tokens as a client might send them, against a rule that accepts HS256 (an HMAC key)
//! and ES256/RS256/EdDSA (a static JWKS): verifying never panics, and nothing but a
//! token signed with those keys is accepted. The input's first byte picks where the
//! rest goes: as the token itself, or as the header and payload of an otherwise
//! well-formed token (so the fuzzer reaches claim and key checks, not only base64).
#![no_main]

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64_url::encode;
use gatehouse_proxy::policy::jwt::Jwt;
use gatehouse_table::auth::{JwtAlgorithm, JwtAuth, JwtKeys, Sealed, TokenFrom};
use libfuzzer_sys::fuzz_target;

mod base64_url {
    /// Unpadded base64url, enough to build token parts.
    pub fn encode(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

const JWKS: &str = r#"{"keys":[
  {"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256",
   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
  {"kty":"OKP","crv":"Ed25519","kid":"k2","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
]}"#;

fn policy() -> &'static Jwt {
    static JWT: OnceLock<Jwt> = OnceLock::new();
    JWT.get_or_init(|| {
        let config = JwtAuth {
            issuer: Some("https://issuer.test/".into()),
            audiences: vec!["api".into()],
            keys: JwtKeys::Static { jwks: JWKS.into() },
            hmac_secret: Some(Sealed::new("fuzz-hmac-secret")),
            algorithms: vec![
                JwtAlgorithm::HS256,
                JwtAlgorithm::RS256,
                JwtAlgorithm::ES256,
                JwtAlgorithm::EdDSA,
            ],
            clock_skew_ms: 30_000,
            token_from: TokenFrom::default(),
            forward_claims: Default::default(),
        };
        Jwt::prepare(&config, |_, _| Err("no remote keys".into())).expect("the policy prepares")
    })
}

/// Runs a future that never waits (static keys need no fetch) to completion.
fn now<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("verifying with static keys waited"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let jwt = policy();
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let cut = usize::from(mode) % (rest.len() + 1);
        let (header, payload) = rest.split_at(cut);
        format!("{}.{}.{}", encode(header), encode(payload), encode(b"not a signature"))
    };
    // No signature from the fuzzer verifies against these keys: anything accepted is a
    // bug (remembered tokens included).
    let verified = now(jwt.verify(&token));
    assert!(verified.is_err(), "a forged token was accepted: {token:?}");
    assert!(jwt.remembered(&token).is_none());
});
