//! Route certificates: a route's `tls.secretName` names a `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`, PEM). What reaches the table has been checked here: the chain
//! parses, the key parses and is the leaf's, the leaf is within its dates. A problem is
//! the route's diagnostic (and its `ResolvedRefs` condition); the route keeps being
//! served on plain HTTP, and its hosts are not served on HTTPS, so one bad certificate
//! never takes down another host.
//!
//! The dates are checked against the clock when the table is compiled (the only input
//! that is not in the manifests); the proxy refuses nothing by date itself.

use gatehouse_api::consumer::secret_value;
use gatehouse_table::Certificate;
use gatehouse_table::auth::Sealed;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate found usable, and the names its leaf covers (DNS subject alternative
/// names, lowercase; the common name when there are none).
pub(crate) struct Checked {
    pub certificate: Certificate,
    pub names: Vec<String>,
}

/// Checks the Secret `id` (`namespace/name`) as a route certificate at `now` (Unix
/// seconds). The error says what is wrong, in words for a status condition.
pub(crate) fn check(id: &str, secret: &Secret, now: i64) -> Result<Checked, String> {
    let read = |key: &str| {
        secret_value(secret, key)
            .map_err(|e| format!("Secret {id}: {e}"))?
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("Secret {id} has no {key:?}"))
    };
    let chain_pem = read("tls.crt")?;
    let key_pem = read("tls.key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "Secret {id} tls.crt is not PEM certificates: {}",
                pem_reason(&e)
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(format!("Secret {id} tls.crt holds no certificate"));
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        format!(
            "Secret {id} tls.key is not a PEM private key: {}",
            pem_reason(&e)
        )
    })?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("Secret {id} tls.key is not a usable key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    certified.keys_match().map_err(|_| {
        format!("Secret {id}: tls.key is not the key of the certificate in tls.crt")
    })?;

    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("Secret {id} tls.crt: the certificate does not parse: {e}"))?;
    let validity = x509.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if now < not_before {
        return Err(format!(
            "Secret {id}: the certificate is not valid before {}",
            validity.not_before
        ));
    }
    if now > not_after {
        return Err(format!(
            "Secret {id}: the certificate expired at {}",
            validity.not_after
        ));
    }
    let mut names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            x509.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(Checked {
        certificate: Certificate {
            id: id.to_string(),
            chain: chain_pem,
            key: Sealed::new(key_pem),
            not_after,
        },
        names,
    })
}

/// The CA bundle of an Upstream's `caSecretRef` (key `ca.crt`): PEM, at least one
/// certificate, each of which parses.
pub(crate) fn ca_bundle(id: &str, secret: &Secret) -> Result<String, String> {
    let pem = secret_value(secret, "ca.crt")
        .map_err(|e| format!("Secret {id}: {e}"))?
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("Secret {id} has no \"ca.crt\""))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "Secret {id} ca.crt is not PEM certificates: {}",
                pem_reason(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!("Secret {id} ca.crt holds no certificate"));
    }
    for (i, c) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(c).map_err(|e| {
            format!(
                "Secret {id} ca.crt: certificate {} does not parse: {e}",
                i + 1
            )
        })?;
    }
    Ok(pem)
}

/// A PEM error in words (the library's own shows marker lines as byte arrays).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        Error::NoItemsFound => "no PEM section of that kind".into(),
        other => other.to_string(),
    }
}

/// Whether a certificate name (`api.example.com`, `*.example.com`) covers a route's
/// host pattern: the same name, or a wildcard one label deep that covers a name or the
/// same wildcard.
pub(crate) fn covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| label != "*" && rest == suffix),
        None => false,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_name_covers_one_label() {
        assert!(covers("api.example.com", "api.example.com"));
        assert!(covers("*.example.com", "api.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("api.example.com", "*.example.com"));
    }
}
