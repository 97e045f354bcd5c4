//! HTTPS: the `--https` listener terminates TLS (rustls) in front of the same HTTP
//! builder as plain traffic.
//!
//! ```text
//!  Table.certificates ──Catalog::prepare (with the table)──▶ Prepared.tls
//!  ClientHello(SNI) ──Resolver (reads the current table)──▶ CertifiedKey | refused
//!  handshake done ──▶ Peer { https, certificate id } ──▶ request path (421 check)
//! ```
//!
//! - The certificate is chosen per handshake from the table being served, so a changed
//!   Secret is served from the next connection on; open connections keep theirs.
//! - SNI is looked up like the router looks up hosts: the exact name, then wildcard
//!   routes by longest suffix, then the certificate of a route without hosts (the
//!   default, which also answers clients that send no SNI). Nothing found: the handshake
//!   is refused.
//! - TLS 1.2 and 1.3 only, rustls' default suites (all AEAD with forward secrecy);
//!   ALPN `h2` and `http/1.1`.
//! - Each handshake is counted in `gatehouse_tls_handshakes_total{result}`.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_table::Table;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::Shared;

/// A client must finish its handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificates of a table, indexed by the names their routes serve.
#[derive(Debug, Default)]
pub struct Catalog {
    /// The certificates served.
    certificates: Vec<Entry>,
    /// Exact host → certificate.
    exact: HashMap<String, usize>,
    /// Wildcard route hosts by the suffix after `*.` → certificate.
    wildcard: HashMap<String, usize>,
    /// The certificate of a route without hosts: any other name, and no SNI.
    default: Option<usize>,
}

impl Catalog {
    /// The catalog of `table`, reusing the keys of `previous` that did not change (a key
    /// is parsed once, not once per table).
    pub fn prepare(table: &Table, previous: Option<&Catalog>) -> Catalog {
        let mut out = Catalog::default();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let before: HashMap<&str, &Entry> = previous
            .map(|p| p.certificates.iter().map(|e| (&*e.id, e)).collect())
            .unwrap_or_default();
        for c in &table.certificates {
            // Kept when its chain and key are unchanged.
            let kept = before
                .get(c.id.as_str())
                .filter(|e| e.source == *c)
                .map(|e| e.key.clone());
            let key = match kept {
                Some(k) => k,
                None => match certified_key(c) {
                    Ok(k) => Arc::new(k),
                    Err(why) => {
                        // The compiler checked it: this is a table from elsewhere.
                        tracing::warn!(certificate = %c.id, error = %why, "certificate not served");
                        continue;
                    }
                },
            };
            by_id.insert(&c.id, out.certificates.len());
            out.certificates.push(Entry {
                id: Arc::from(c.id.as_str()),
                source: c.clone(),
                key,
            });
        }
        // Routes are sorted by id: the first route naming a host decides its certificate.
        for route in &table.routes {
            let Some(i) = route.tls.as_deref().and_then(|id| by_id.get(id)) else {
                continue;
            };
            if route.hosts.is_empty() {
                out.default.get_or_insert(*i);
            }
            for host in &route.hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => out.wildcard.entry(suffix.to_string()).or_insert(*i),
                    None => out.exact.entry(host.clone()).or_insert(*i),
                };
            }
        }
        out
    }

    /// The certificate for a client asking for `sni` (none: the default).
    fn find(&self, sni: Option<&str>) -> Option<usize> {
        let Some(name) = sni else {
            return self.default;
        };
        // SNI is sent lowercase by conforming clients; others are looked up lowercased.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if let Some(i) = self.exact.get(name) {
            return Some(*i);
        }
        // Longest suffix first, as the router tries wildcard hosts.
        let mut rest = name;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(i) = self.wildcard.get(suffix) {
                return Some(*i);
            }
            rest = suffix;
        }
        self.default
    }

    /// The id and key of the certificate for `sni`.
    pub fn lookup(&self, sni: Option<&str>) -> Option<(&Arc<str>, &Arc<CertifiedKey>)> {
        let e = &self.certificates[self.find(sni)?];
        Some((&e.id, &e.key))
    }
}

/// One certificate served.
#[derive(Debug)]
struct Entry {
    /// The Secret's `namespace/name`, as the table's routes name it.
    id: Arc<str>,
    /// What the table holds (to know a changed certificate from a kept one).
    source: gatehouse_table::Certificate,
    key: Arc<CertifiedKey>,
}

/// Parses a table certificate into a signing key with its chain.
fn certified_key(c: &gatehouse_table::Certificate) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let pem = c.key.reveal().ok_or("the key was withheld")?;
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    let signing = aws_lc_rs::sign::any_supported_type(&der).map_err(|e| format!("key: {e}"))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match()
        .map_err(|_| "the key is not the certificate's".to_string())?;
    Ok(key)
}

/// Chooses the certificate of each handshake from the table being served.
#[derive(Debug)]
struct Resolver {
    shared: Arc<Shared>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.shared.current.load();
        current
            .tls
            .lookup(hello.server_name())
            .map(|(_, key)| key.clone())
    }
}

/// The listener's TLS configuration: certificates from `shared`'s current table.
pub fn server_config(shared: Arc<Shared>) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { shared }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // TLS 1.3 session resumption by tickets (stateless: any worker resumes any session).
    config.ticketer = aws_lc_rs::Ticketer::new().map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

/// How a handshake ended, as `gatehouse_tls_handshakes_total{result}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Completed.
    Success,
    /// No certificate serves the name the client asked for (or no SNI and no default).
    NoCertificate,
    /// The client offers nothing we accept (an old protocol version, weak ciphers, no
    /// common ALPN protocol).
    Incompatible,
    /// The client did not finish within [`HANDSHAKE_TIMEOUT`].
    Timeout,
    /// Anything else: malformed messages, a refused certificate, a closed connection.
    Error,
}

impl Handshake {
    /// Every result, in exposition order.
    pub const ALL: [Handshake; 5] = [
        Handshake::Success,
        Handshake::NoCertificate,
        Handshake::Incompatible,
        Handshake::Timeout,
        Handshake::Error,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Success => "success",
            Handshake::NoCertificate => "no_certificate",
            Handshake::Incompatible => "incompatible",
            Handshake::Timeout => "timeout",
            Handshake::Error => "error",
        }
    }

    /// The result of a failed handshake.
    pub fn of(e: &io::Error) -> Handshake {
        let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return Handshake::Error;
        };
        match tls {
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                Handshake::Incompatible
            }
            rustls::Error::General(m) if m.contains("certificate") => Handshake::NoCertificate,
            _ => Handshake::Error,
        }
    }
}
