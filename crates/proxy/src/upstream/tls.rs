//! TLS to an upstream's servers (Upstream `spec.tls`): one rustls client configuration
//! per upstream, made when its table is prepared (and kept while its settings do not
//! change), used for each new connection.
//!
//! - The server's chain is verified against the `caSecretRef` bundle, or the webpki
//!   roots without one, for the `sni` name (none: the endpoint's IP address, and no
//!   SNI is sent). `insecureSkipVerify` verifies nothing but the handshake signatures.
//! - A `clientCertificateRef` is presented when the server asks (mutual TLS).
//! - ALPN announces the upstream's protocol: `http/1.1`, or `h2` (then required: a
//!   server that does not select it fails the connection).
//! - Connections are pooled like plaintext ones, under a key that includes these
//!   settings ([`TlsClient::key`]), so two upstreams with different client certificates
//!   never share a connection to the same address.

use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use gatehouse_table::{Protocol, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How one upstream's connections are secured.
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    /// The name verified (and sent in SNI when it is a DNS name); `None`: each
    /// endpoint's IP address.
    name: Option<ServerName<'static>>,
    /// Whether the server must select `h2`.
    h2: bool,
    /// Tells these settings apart in the connection pools (never 0, plaintext's key).
    pub key: u64,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The client for `spec` speaking `protocol`.
    pub fn prepare(spec: &UpstreamTls, protocol: Protocol) -> Result<TlsClient, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = if spec.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &spec.ca {
                Some(pem) => {
                    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                        let cert = cert.map_err(|e| format!("CA bundle: {e}"))?;
                        roots.add(cert).map_err(|e| format!("CA bundle: {e}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &spec.client_certificate {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = CertificateDer::pem_slice_iter(c.chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                let pem = c.key.reveal().ok_or("client certificate key withheld")?;
                let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| format!("client certificate key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
        };
        let h2 = protocol == Protocol::Http2;
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let name = match &spec.sni {
            Some(n) => {
                Some(ServerName::try_from(n.clone()).map_err(|e| format!("sni {n:?}: {e}"))?)
            }
            None => None,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        spec.hash(&mut h);
        protocol.hash(&mut h);
        Ok(TlsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            h2,
            key: h.finish() | 1,
        })
    }

    /// The TLS handshake on a new connection to `addr`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> io::Result<TlsStream<TcpStream>> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let stream = self.connector.connect(name, tcp).await?;
        if self.h2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(io::Error::other(
                "the server did not select HTTP/2 (ALPN h2); set protocol: HTTP1",
            ));
        }
        Ok(stream)
    }
}

/// `insecureSkipVerify`: any certificate is accepted; handshake signatures are still
/// checked, so the connection is at least to whoever holds the presented key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
