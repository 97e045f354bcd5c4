//! `authentication.jwt`: verifying a bearer token.
//!
//! A token is checked in this order: its header parses and names an algorithm of the
//! rule's allow-list (`none` is no algorithm at all here, so it never parses); an HMAC
//! algorithm verifies only against the rule's HMAC key, any other only against the
//! public keys of its family (so an RSA public key can never serve as an HMAC secret);
//! the keys are those of the token's `kid` (a `kid` the keys lack asks the key set for
//! one refetch, see `jwks.rs`); then the signature, `exp` (required), `nbf`, `iss` and
//! `aud`, with the rule's clock skew.
//!
//! Verifying a signature costs tens of microseconds (RSA, ECDSA), so a verified token is
//! remembered, by its exact text, until it expires: a repeated token costs one hash
//! lookup and a clock comparison. An entry is checked again when the keys it was
//! verified with have changed since.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_table::auth::{JwtAlgorithm, JwtAuth, JwtKeys};
use http::HeaderName;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use quick_cache::sync::Cache;
use serde_json::{Map, Value};

use super::jwks::{KeySet, RemoteJwks};

/// Verified tokens remembered per rule.
const VERIFIED_CAPACITY: usize = 10_000;
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token's claims.
pub type Claims = Map<String, Value>;

/// What a verified token says about its caller.
#[derive(Debug)]
pub struct Verified {
    /// Its claims.
    pub claims: Arc<Claims>,
    /// `sub`: the caller's consumer name.
    pub subject: Option<Arc<str>>,
    /// The `groups` claim (an array, or a comma- or space-separated string).
    pub groups: Arc<[String]>,
    exp: Option<u64>,
    nbf: Option<u64>,
    /// The key set generation it was verified with (0: static keys).
    generation: u64,
}

/// Why a token is refused (the problem's detail; never the token).
pub type Refusal = &'static str;

/// Where the keys are.
enum Keys {
    None,
    /// The keys could not be loaded (a JWKS without a usable key, CA certificates that
    /// do not parse): every token that needs them is refused, the rest of the table
    /// serves.
    Unavailable,
    Static(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
}

/// A prepared `jwt` policy.
pub struct Jwt {
    keys: Keys,
    hmac: Option<DecodingKey>,
    algorithms: Vec<Algorithm>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway_s: u64,
    /// Claim → upstream header.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Where the token is read.
    pub from: gatehouse_table::auth::TokenFrom,
    verified: Cache<Box<str>, Arc<Verified>>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.algorithms)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Jwt {
    /// Prepares a `jwt` policy; `remote` gives the shared key set of a `jwksUri`.
    pub fn prepare(
        c: &JwtAuth,
        remote: impl FnOnce(&str, Option<&str>) -> Result<Arc<RemoteJwks>, String>,
    ) -> Result<Jwt, String> {
        let unavailable = |what: &str, e: String| {
            tracing::error!(error = %e, "jwt {what}: the keys cannot be used; tokens that need them are refused");
            Keys::Unavailable
        };
        let keys = match &c.keys {
            JwtKeys::None => Keys::None,
            JwtKeys::Static { jwks } => match KeySet::parse(jwks.as_bytes(), 0) {
                Ok(set) => Keys::Static(Arc::new(set)),
                Err(e) => unavailable("jwksSecretRef", e),
            },
            JwtKeys::Remote { uri, ca_pem } => match remote(uri, ca_pem.as_deref()) {
                Ok(r) => Keys::Remote(r),
                Err(e) => unavailable(uri, e),
            },
        };
        // A withheld key (a table read back from disk) verifies nothing.
        // A key that cannot be used (empty) refuses HS tokens on this rule only.
        let hmac = match c.hmac_secret.as_ref().and_then(|s| s.reveal()) {
            Some(secret) => DecodingKey::from_secret(secret.as_bytes())
                .inspect_err(|e| {
                    tracing::error!(error = %e, "jwt hmacSecretRef: the key cannot be used; HS tokens are refused");
                })
                .ok(),
            None => None,
        };
        let forward_claims = c
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim.clone(), h))
                    .map_err(|e| format!("forwardClaims {claim}: {e}"))
            })
            .collect::<Result<_, String>>()?;
        Ok(Jwt {
            keys,
            hmac,
            algorithms: c.algorithms.iter().copied().map(algorithm).collect(),
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            leeway_s: c.clock_skew_ms.div_ceil(1000),
            forward_claims,
            from: c.token_from.clone(),
            verified: Cache::new(VERIFIED_CAPACITY),
        })
    }

    fn generation(&self) -> u64 {
        match &self.keys {
            Keys::Remote(r) => r.generation(),
            _ => 0,
        }
    }

    /// A token verified before, still within its times and verified with the current
    /// keys.
    pub fn remembered(&self, token: &str) -> Option<Arc<Verified>> {
        let v = self.verified.get(token)?;
        let now = now_s();
        // `exp` is required: an entry without one is never fresh.
        let fresh = v
            .exp
            .is_some_and(|exp| now <= exp.saturating_add(self.leeway_s))
            && v.nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(self.leeway_s))
            && v.generation == self.generation();
        if fresh {
            Some(v)
        } else {
            self.verified.remove(token);
            None
        }
    }

    /// Verifies `token` (after [`Jwt::remembered`] missed).
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("The token is too long.");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "The token is malformed.")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("The token's algorithm is not accepted.");
        }
        let validation = self.validation(header.alg);
        if is_hmac(header.alg) {
            let key = self
                .hmac
                .as_ref()
                .ok_or("No HMAC key verifies this token.")?;
            return self.check(token, key, &validation, self.generation());
        }
        let kid = header.kid.as_deref();
        let set = match &self.keys {
            Keys::None => return Err("No key verifies this token."),
            Keys::Unavailable => return Err("The signing keys are not available."),
            Keys::Static(set) => set.clone(),
            Keys::Remote(remote) => {
                let known = remote.keys().filter(|k| k.knows(kid) || kid.is_none());
                match known {
                    Some(set) => set,
                    None => {
                        remote.refetch_for_unknown_kid().await;
                        remote.keys().ok_or("The signing keys are not available.")?
                    }
                }
            }
        };
        let family = header.alg.family();
        let usable = |k: &&super::jwks::Key| {
            k.key.family() == family && k.alg.is_none_or(|a| a == header.alg)
        };
        let mut candidates: Vec<&super::jwks::Key> =
            set.candidates(kid).iter().filter(usable).collect();
        if candidates.is_empty() && kid.is_none() {
            candidates = set.all().filter(usable).collect();
        }
        if candidates.is_empty() {
            return Err("No key matches the token's kid.");
        }
        let mut last = "The signature is invalid.";
        for k in candidates {
            match self.check(token, &k.key, &validation, set.generation) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_s;
        v.validate_nbf = true;
        // `exp` always; `iss` and `aud` when the rule names them (a token without
        // them is refused, not waved through).
        v.required_spec_claims = HashSet::from(["exp".to_string()]);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            v.required_spec_claims.insert("aud".into());
        }
        v
    }

    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
        generation: u64,
    ) -> Result<Arc<Verified>, Refusal> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "The token has expired.",
                ErrorKind::ImmatureSignature => "The token is not valid yet.",
                ErrorKind::InvalidIssuer => "The token's issuer is not accepted.",
                ErrorKind::InvalidAudience => "The token's audience is not accepted.",
                ErrorKind::MissingRequiredClaim(_) => {
                    "The token lacks a required claim (exp, or iss and aud when required)."
                }
                ErrorKind::InvalidSignature => "The signature is invalid.",
                ErrorKind::InvalidAlgorithm => "The token's algorithm does not match the key.",
                _ => "The token is malformed.",
            })?;
        let claims = data.claims;
        // As jsonwebtoken reads them (a decimal is accepted): `exp` rounded down and
        // `nbf` up, so a remembered token is never held longer than verified.
        let time = |name: &str, up: bool| {
            claims.get(name).and_then(Value::as_f64).map(|t| {
                let t = if up { t.ceil() } else { t.floor() };
                t.clamp(0.0, u64::MAX as f64) as u64
            })
        };
        let verified = Arc::new(Verified {
            subject: claims.get("sub").and_then(Value::as_str).map(Arc::from),
            groups: groups(claims.get("groups")),
            exp: time("exp", false),
            nbf: time("nbf", true),
            generation,
            claims: Arc::new(claims),
        });
        self.verified.insert(token.into(), verified.clone());
        Ok(verified)
    }
}

/// A `groups` claim: an array of strings, or one string of comma- or space-separated
/// names.
fn groups(v: Option<&Value>) -> Arc<[String]> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect(),
        _ => Arc::from([]),
    }
}

/// Whether a claim holds `value`: equal to it, one of an array's strings, or one word
/// of a space-separated string.
pub fn claim_contains(claim: &Value, value: &str) -> bool {
    match claim {
        Value::String(s) => s == value || s.split(' ').any(|w| w == value),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(value)),
        Value::Bool(b) => value == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == value,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::auth::{Sealed, TokenFrom};
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn hs_policy() -> JwtAuth {
        JwtAuth {
            issuer: Some("https://issuer.test/".into()),
            audiences: vec!["orders".into()],
            keys: JwtKeys::None,
            hmac_secret: Some(Sealed::new("s3cr3t-hmac-key")),
            algorithms: vec![JwtAlgorithm::HS256],
            clock_skew_ms: 30_000,
            token_from: TokenFrom {
                header: Some("authorization".into()),
                ..TokenFrom::default()
            },
            forward_claims: Default::default(),
        }
    }

    fn no_remote(_: &str, _: Option<&str>) -> Result<Arc<RemoteJwks>, String> {
        Err("no remote".into())
    }

    fn sign(claims: serde_json::Value, key: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key).expect("key"),
        )
        .expect("signs")
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn hmac_tokens_verify_and_their_claims_are_checked() {
        let jwt = Jwt::prepare(&hs_policy(), no_remote).expect("prepares");
        let now = now_s();
        let good = json!({"iss": "https://issuer.test/", "aud": "orders", "sub": "alice",
                          "exp": now + 60, "groups": ["admins"]});
        let token = sign(good.clone(), b"s3cr3t-hmac-key");
        let v = run(jwt.verify(&token)).expect("valid");
        assert_eq!(v.subject.as_deref(), Some("alice"));
        assert_eq!(&*v.groups, ["admins".to_string()]);
        assert!(jwt.remembered(&token).is_some());

        let mut c = good.clone();
        c["iss"] = json!("https://other/");
        assert_eq!(
            run(jwt.verify(&sign(c, b"s3cr3t-hmac-key"))).err(),
            Some("The token's issuer is not accepted.")
        );
        let mut c = good.clone();
        c["exp"] = json!(now - 120);
        assert_eq!(
            run(jwt.verify(&sign(c, b"s3cr3t-hmac-key"))).err(),
            Some("The token has expired.")
        );
        let mut c = good.clone();
        c["exp"] = json!(now - 10);
        assert!(run(jwt.verify(&sign(c, b"s3cr3t-hmac-key"))).is_ok());
        assert_eq!(
            run(jwt.verify(&sign(good.clone(), b"wrong"))).err(),
            Some("The signature is invalid.")
        );
        let mut c = good;
        c.as_object_mut().map(|m| m.remove("exp"));
        assert!(run(jwt.verify(&sign(c, b"s3cr3t-hmac-key"))).is_err());
    }

    #[test]
    fn a_decimal_exp_is_remembered_until_it_passes() {
        let jwt = Jwt::prepare(&hs_policy(), no_remote).expect("prepares");
        let claims = |exp: f64| json!({"iss": "https://issuer.test/", "aud": "orders", "sub": "a", "exp": exp});
        let now = now_s() as f64;
        let live = sign(claims(now + 60.5), b"s3cr3t-hmac-key");
        assert!(run(jwt.verify(&live)).is_ok());
        assert!(jwt.remembered(&live).is_some());
        // Verified while within the skew, then remembered only while it still is: a
        // remembered entry is never fresher than its `exp`.
        let v =
            run(jwt.verify(&sign(claims(now - 29.5), b"s3cr3t-hmac-key"))).expect("within skew");
        assert!(v.exp.is_some_and(|e| e <= now_s()));
    }

    #[test]
    fn unsigned_and_foreign_algorithm_tokens_are_refused() {
        let jwt = Jwt::prepare(&hs_policy(), no_remote).expect("prepares");
        // {"alg":"none","typ":"JWT"} . {"sub":"x","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(run(jwt.verify(none)).is_err());
        assert!(run(jwt.verify("a.b")).is_err());
        assert!(run(jwt.verify("")).is_err());
        assert!(run(jwt.verify(&"x".repeat(MAX_TOKEN_BYTES + 1))).is_err());
    }

    #[test]
    fn claims_contain_values_of_arrays_and_space_separated_strings() {
        assert!(claim_contains(
            &json!("orders:read orders:write"),
            "orders:read"
        ));
        assert!(claim_contains(&json!(["a", "b"]), "b"));
        assert!(!claim_contains(&json!(["a", "b"]), "c"));
        assert!(!claim_contains(&json!("orders:readx"), "orders:read"));
        assert_eq!(
            &*groups(Some(&json!("a,b c"))),
            ["a", "b", "c"].map(String::from)
        );
    }
}
