//! Lowering `authentication` and `authorization`: defaults applied (`X-Api-Key`, the
//! algorithm allow-list, a 30 s clock skew, Bearer in `Authorization`, a 1 s check
//! timeout), header names lowercase, and the Secrets they reference read here, so the
//! proxy never sees a `SecretKeyRef`.
//!
//! Only validated values get here: `policy::validate` already reported a missing Secret
//! or key, and a policy with one is kept out of the table. What is read from a Secret
//! travels as [`Sealed`] when it is secret (the HMAC key) and as text when it is public
//! (a JWKS document, CA certificates).

use gatehouse_api::consumer::secret_value;
use gatehouse_api::policy as api;
use gatehouse_table::auth::{self as lowered, JwtAlgorithm, JwtKeys, Sealed};

use crate::Index;
use crate::values::parse_duration;

/// `jwt.clockSkew` when not written.
const DEFAULT_CLOCK_SKEW_MS: u64 = 30_000;
/// `external.timeout` when not written.
const DEFAULT_CHECK_TIMEOUT_MS: u64 = 1_000;
/// `apiKey.header` when not written.
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// Where the Secrets a policy names are read: its namespace's.
pub(crate) struct Secrets<'i, 'a> {
    pub ns: &'i str,
    pub index: &'i Index<'a>,
}

impl Secrets<'_, '_> {
    fn read(&self, r: &gatehouse_api::SecretKeyRef) -> Result<String, String> {
        let secret = self
            .index
            .secret(self.ns, &r.name)
            .ok_or_else(|| format!("Secret {}/{} not found", self.ns, r.name))?;
        secret_value(secret, &r.key)
            .map_err(|e| format!("Secret {}/{}: {e}", self.ns, r.name))?
            .ok_or_else(|| format!("Secret {}/{} has no key {:?}", self.ns, r.name, r.key))
    }
}

fn lowercase(list: &[String]) -> Vec<String> {
    list.iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn selector(s: &Option<api::LabelSelector>) -> std::collections::BTreeMap<String, String> {
    s.as_ref()
        .map(|s| s.match_labels.clone())
        .unwrap_or_default()
}

/// Lowers `authentication`.
pub(crate) fn authentication(
    a: &api::Authentication,
    secrets: &Secrets<'_, '_>,
) -> Result<lowered::Authentication, String> {
    Ok(lowered::Authentication {
        api_key: a.api_key.as_ref().map(|k| lowered::ApiKeyAuth {
            header: k
                .header
                .as_deref()
                .map_or(DEFAULT_API_KEY_HEADER.into(), str::to_ascii_lowercase),
            query_param: k.query_param.clone().filter(|q| !q.is_empty()),
            consumer_selector: selector(&k.consumer_selector),
        }),
        jwt: a.jwt.as_ref().map(|j| jwt(j, secrets)).transpose()?,
        basic: a.basic.as_ref().map(|b| lowered::BasicAuth {
            consumer_selector: selector(&b.consumer_selector),
        }),
        external: a
            .external
            .as_ref()
            .map(|e| {
                Ok::<_, String>(lowered::ExternalAuth {
                    url: e.url.clone(),
                    forward_headers: lowercase(&e.forward_headers),
                    upstream_headers: lowercase(&e.upstream_headers),
                    timeout_ms: match &e.timeout {
                        Some(t) => parse_duration(&t.0)?,
                        None => DEFAULT_CHECK_TIMEOUT_MS,
                    },
                })
            })
            .transpose()?,
        optional: a.optional.unwrap_or(false),
    })
}

fn jwt(j: &api::JwtAuth, secrets: &Secrets<'_, '_>) -> Result<lowered::JwtAuth, String> {
    let hmac_secret = j
        .hmac_secret_ref
        .as_ref()
        .map(|r| secrets.read(r).map(Sealed::new))
        .transpose()?;
    let keys = match (&j.jwks_uri, &j.jwks_secret_ref) {
        (Some(uri), _) => JwtKeys::Remote {
            uri: uri.clone(),
            ca_pem: j
                .jwks_ca_secret_ref
                .as_ref()
                .map(|r| secrets.read(r))
                .transpose()?,
        },
        (None, Some(r)) => JwtKeys::Static {
            jwks: secrets.read(r)?,
        },
        (None, None) => JwtKeys::None,
    };
    let mut algorithms = if j.algorithms.is_empty() {
        let mut default = vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256];
        if hmac_secret.is_some() {
            default.push(JwtAlgorithm::HS256);
        }
        default
    } else {
        j.algorithms
            .iter()
            .map(|a| JwtAlgorithm::parse(a).ok_or_else(|| format!("unknown algorithm {a:?}")))
            .collect::<Result<Vec<_>, String>>()?
    };
    algorithms.sort_unstable();
    algorithms.dedup();
    let token_from = match &j.token_from {
        None => lowered::TokenFrom {
            header: Some("authorization".into()),
            ..Default::default()
        },
        Some(t) => {
            let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
            let cookie = set(&t.cookie);
            let query_param = set(&t.query_param);
            // A header is read when named, or by default when nothing else is.
            let header = set(&t.header).map(|h| h.to_ascii_lowercase()).or_else(|| {
                (cookie.is_none() && query_param.is_none()).then(|| "authorization".into())
            });
            lowered::TokenFrom {
                header,
                cookie,
                query_param,
            }
        }
    };
    Ok(lowered::JwtAuth {
        issuer: j.issuer.clone(),
        audiences: j.audiences.clone(),
        keys,
        hmac_secret,
        algorithms,
        clock_skew_ms: match &j.clock_skew {
            Some(d) => parse_duration(&d.0)?,
            None => DEFAULT_CLOCK_SKEW_MS,
        },
        token_from,
        forward_claims: j
            .forward_claims
            .iter()
            .map(|(claim, header)| (claim.clone(), header.to_ascii_lowercase()))
            .collect(),
    })
}

/// Lowers `authorization`.
pub(crate) fn authorization(a: &api::Authorization) -> lowered::Authorization {
    lowered::Authorization {
        consumers: a.consumers.clone(),
        groups: a.groups.clone(),
        claims: a
            .claims
            .iter()
            .map(|c| lowered::ClaimRequirement {
                name: c.name.clone(),
                values: c.values.clone(),
            })
            .collect(),
    }
}
