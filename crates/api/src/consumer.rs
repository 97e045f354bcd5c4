//! Consumers are ordinary Secrets labelled `gatehouse.dev/consumer`. This module turns
//! such a Secret into a [`Consumer`]: API keys are reduced to a SHA-256 digest at once,
//! so the plaintext key never leaves this function.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

/// The highest bcrypt cost a consumer's `password-hash` may have (cost 14 is about a
/// second per check on one core; each step doubles it).
pub const MAX_BCRYPT_COST: u32 = 14;

/// The label that makes a Secret a consumer; its value is the consumer's name.
pub const CONSUMER_LABEL: &str = "gatehouse.dev/consumer";

/// A consumer, as read from its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Namespace of the Secret; a consumer counts in its own namespace only.
    pub namespace: String,
    /// The consumer's name (the label value, else the Secret's name).
    pub name: String,
    /// Name of the Secret it came from.
    pub secret_name: String,
    /// The Secret's labels (for `consumerSelector`).
    pub labels: BTreeMap<String, String>,
    /// Lowercase hex SHA-256 of the API key, if the Secret has `api-key`.
    pub api_key_sha256: Option<String>,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// bcrypt hash of the basic-auth password.
    pub password_hash: Option<String>,
    /// Groups, from the comma-separated `groups` key.
    pub groups: Vec<String>,
}

/// Why a consumer Secret could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsumerError {
    /// A key holds bytes that are not UTF-8.
    #[error("key {key:?} is not valid UTF-8")]
    NotUtf8 {
        /// The offending key.
        key: String,
    },
    /// `password-hash` is not a bcrypt hash.
    #[error("key \"password-hash\" is not a bcrypt hash ($2a$, $2b$ or $2y$)")]
    NotBcrypt,
    /// A bcrypt cost above [`MAX_BCRYPT_COST`]: each check would hold a core for seconds.
    #[error("the bcrypt cost {0} is above {MAX_BCRYPT_COST}: every check would take seconds")]
    CostTooHigh(u32),
    /// `username` without `password-hash`, or the reverse.
    #[error("\"username\" and \"password-hash\" must be given together")]
    HalfBasic,
}

/// Whether this Secret is a consumer Secret.
pub fn is_consumer(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CONSUMER_LABEL))
}

/// Reads one key of a Secret, from `stringData` (as written in manifests) or `data`.
pub fn secret_value(secret: &Secret, key: &str) -> Result<Option<String>, ConsumerError> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Some(v.clone()));
    }
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.0.clone())
            .map(Some)
            .map_err(|_| ConsumerError::NotUtf8 { key: key.into() }),
    }
}

/// Lowercase hex SHA-256 of `input`: how API keys are held and compared.
pub fn sha256_hex(input: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(input)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Turns a consumer Secret into a [`Consumer`].
pub fn consumer_from_secret(secret: &Secret) -> Result<Consumer, ConsumerError> {
    let meta = &secret.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let secret_name = meta.name.clone().unwrap_or_default();
    let name = labels
        .get(CONSUMER_LABEL)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| secret_name.clone());
    let api_key_sha256 = secret_value(secret, "api-key")?
        .filter(|k| !k.is_empty())
        .map(|k| sha256_hex(k.as_bytes()));
    let username = secret_value(secret, "username")?.filter(|u| !u.is_empty());
    let password_hash = secret_value(secret, "password-hash")?.filter(|h| !h.is_empty());
    if username.is_some() != password_hash.is_some() {
        return Err(ConsumerError::HalfBasic);
    }
    if let Some(hash) = &password_hash {
        let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if !bcrypt || hash.len() != 60 {
            return Err(ConsumerError::NotBcrypt);
        }
        let cost = hash
            .get(4..6)
            .and_then(|c| c.parse::<u32>().ok())
            .ok_or(ConsumerError::NotBcrypt)?;
        if cost > MAX_BCRYPT_COST {
            return Err(ConsumerError::CostTooHigh(cost));
        }
    }
    let groups = secret_value(secret, "groups")?
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Consumer {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name,
        secret_name,
        labels,
        api_key_sha256,
        username,
        password_hash,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(string_data: &[(&str, &str)], data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("alice-secret".into()),
                namespace: Some("shop".into()),
                labels: Some(BTreeMap::from([
                    (CONSUMER_LABEL.to_string(), "alice".to_string()),
                    ("team".to_string(), "payments".to_string()),
                ])),
                ..Default::default()
            },
            string_data: (!string_data.is_empty()).then(|| {
                string_data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            data: (!data.is_empty()).then(|| {
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect()
            }),
            ..Default::default()
        }
    }

    const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

    #[test]
    fn reads_string_data_and_hashes_the_key() {
        let s = secret(
            &[
                ("api-key", "s3cr3t-key"),
                ("username", "alice"),
                ("password-hash", HASH),
                ("groups", "admins, readers,"),
            ],
            &[],
        );
        let c = consumer_from_secret(&s).expect("valid consumer");
        assert_eq!(c.name, "alice");
        assert_eq!(c.namespace, "shop");
        assert_eq!(c.groups, vec!["admins", "readers"]);
        let digest = c.api_key_sha256.expect("key present");
        assert_eq!(digest, sha256_hex(b"s3cr3t-key"));
        assert_ne!(digest, "s3cr3t-key");
        assert_eq!(digest.len(), 64);
    }

    #[test]
    fn reads_base64_data_as_the_api_server_returns_it() {
        let s = secret(&[], &[("api-key", b"k1")]);
        let c = consumer_from_secret(&s).expect("valid consumer");
        assert_eq!(c.api_key_sha256, Some(sha256_hex(b"k1")));
    }

    #[test]
    fn rejects_half_basic_and_non_bcrypt() {
        let s = secret(&[("username", "alice")], &[]);
        assert_eq!(consumer_from_secret(&s), Err(ConsumerError::HalfBasic));
        let s = secret(&[("username", "alice"), ("password-hash", "plain")], &[]);
        assert_eq!(consumer_from_secret(&s), Err(ConsumerError::NotBcrypt));
        // A well-formed hash of cost 31: days per check.
        let slow = format!("$2b$31${}", "a".repeat(53));
        let s = secret(&[("username", "alice"), ("password-hash", &slow)], &[]);
        assert_eq!(
            consumer_from_secret(&s),
            Err(ConsumerError::CostTooHigh(31))
        );
        let s = secret(&[], &[("api-key", &[0xff, 0xfe])]);
        assert!(matches!(
            consumer_from_secret(&s),
            Err(ConsumerError::NotUtf8 { .. })
        ));
    }
}
