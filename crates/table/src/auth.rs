//! Authentication and authorization as the data plane enforces them, lowered by the
//! compiler: header names lowercase, durations in milliseconds, defaults applied, the
//! algorithm allow-list an enum, Secrets already read.
//!
//! Secret material that must reach the proxy (an HMAC key, a consumer's bcrypt hash) is a
//! [`Sealed`]: it travels in a push, but `Debug` never prints it, and
//! [`crate::Table::withhold_secrets`] replaces it by a marker before the table is shown
//! (`/config`) or written to disk. A withheld secret verifies nothing: a proxy restarted
//! from its persisted table refuses what needs it until the controller pushes again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `authentication`: any configured method that succeeds authenticates.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// API keys of consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// HTTP Basic against consumers' bcrypt hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Forward authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAuth>,
    /// Requests that present no credential pass, without a consumer.
    pub optional: bool,
}

/// `apiKey`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// The header carrying the key, lowercase (default `x-api-key`).
    pub header: String,
    /// The query parameter carrying the key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// Labels a consumer's Secret must have (empty: every consumer of the namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer_selector: BTreeMap<String, String>,
}

/// `basic`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// Labels a consumer's Secret must have (empty: every consumer of the namespace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer_selector: BTreeMap<String, String>,
}

/// `jwt`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtAuth {
    /// Required `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must contain one of these (empty: `aud` is not checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the verification keys come from.
    pub keys: JwtKeys,
    /// The HMAC key (`hmacSecretRef`); HS* tokens verify only against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<Sealed>,
    /// Algorithms accepted. Never empty; never `none`.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Allowed clock skew for `exp` and `nbf`, in milliseconds.
    pub clock_skew_ms: u64,
    /// Where the token is read.
    pub token_from: TokenFrom,
    /// Claims copied onto upstream request headers: claim → header name (lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forward_claims: BTreeMap<String, String>,
}

/// The public keys of a `jwt` policy.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum JwtKeys {
    /// Only the HMAC key.
    #[default]
    None,
    /// A JWKS the proxy fetches and refreshes.
    Remote {
        /// `jwksUri`.
        uri: String,
        /// PEM roots that verify an `https` URI (`jwksCaSecretRef`); `None`: the
        /// platform's web roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_pem: Option<String>,
    },
    /// A JWKS document read from a Secret (`jwksSecretRef`): public keys, as written.
    Static {
        /// The JWKS JSON text.
        jwks: String,
    },
}

/// A JWS algorithm a `jwt` policy accepts.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    /// Every algorithm, as written in resources.
    pub const ALL: [JwtAlgorithm; 12] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The name in resources and in a token's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `s` (exact spelling).
    pub fn parse(s: &str) -> Option<JwtAlgorithm> {
        JwtAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// HS256/384/512.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

/// Where a token is read, in this order: header, cookie, query parameter.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenFrom {
    /// The header, lowercase; for `authorization` the `Bearer` scheme is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
}

/// `external` (forward authentication).
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// The check endpoint (`http://` or `https://`).
    pub url: String,
    /// Request headers sent to the check, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
    /// Headers copied from a 2xx check answer onto the upstream request, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_headers: Vec<String>,
    /// How long the check may take, in milliseconds.
    pub timeout_ms: u64,
}

/// `authorization`: every field that is set must hold.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The caller is one of these consumers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// The caller is in at least one of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Each claim contains all its values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRequirement>,
}

/// A claim that must contain every value (an array, or a space-separated string).
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequirement {
    /// Claim name.
    pub name: String,
    /// Values it must contain.
    pub values: Vec<String>,
}

/// Secret text the proxy needs (an HMAC key, a bcrypt hash): serialized as the text for
/// a push, never printed by `Debug`, and withheld (`{"withheld":true}`) where the table
/// is shown or persisted.
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct Sealed(Option<Arc<str>>);

impl Sealed {
    /// Seals `text`.
    pub fn new(text: impl Into<Arc<str>>) -> Sealed {
        Sealed(Some(text.into()))
    }

    /// The text; `None` once withheld.
    pub fn reveal(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Forgets the text.
    pub fn withhold(&mut self) {
        self.0 = None;
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Sealed(..)"
        } else {
            "Sealed(withheld)"
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SealedRepr<'a> {
    Text(std::borrow::Cow<'a, str>),
    Withheld { withheld: bool },
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(text) => SealedRepr::Text(std::borrow::Cow::Borrowed(text)).serialize(s),
            None => SealedRepr::Withheld { withheld: true }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sealed, D::Error> {
        Ok(match SealedRepr::deserialize(d)? {
            SealedRepr::Text(text) => Sealed::new(text.into_owned()),
            SealedRepr::Withheld { .. } => Sealed(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_travels_but_is_never_printed_and_can_be_withheld() {
        let mut s = Sealed::new("hunter2");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"hunter2\"");
        assert!(!format!("{s:?}").contains("hunter2"));
        let back: Sealed = serde_json::from_str("\"hunter2\"").expect("json");
        assert_eq!(back.reveal(), Some("hunter2"));
        s.withhold();
        let text = serde_json::to_string(&s).expect("json");
        assert_eq!(text, r#"{"withheld":true}"#);
        let back: Sealed = serde_json::from_str(&text).expect("json");
        assert_eq!(back.reveal(), None);
    }

    #[test]
    fn algorithms_round_trip_their_names() {
        for a in JwtAlgorithm::ALL {
            assert_eq!(JwtAlgorithm::parse(a.as_str()), Some(a));
        }
        assert_eq!(JwtAlgorithm::parse("none"), None);
        assert!(JwtAlgorithm::HS384.is_hmac() && !JwtAlgorithm::EdDSA.is_hmac());
    }
}
