//! The HTTP client of calls the gateway makes for itself, not for a request's upstream:
//! JWKS fetches and forward-authentication checks (and the connector of the trace
//! exporter, `crate::trace`). HTTP/1.1, `http` or `https` (rustls
//! with the `aws-lc-rs` provider), pooled keep-alive connections; verified against the public
//! web roots, or against the PEM CA certificates a policy names.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client for the gateway's own calls.
pub type AuxClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting `ca_pem` (PEM certificates) when given, else the web roots.
pub fn build(ca_pem: Option<&str>) -> Result<AuxClient, String> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .build(connector(ca_pem)?))
}

/// An `http` or `https` connector (HTTP/1.1) trusting `ca_pem` (PEM certificates) when
/// given, else the web roots; connecting gives up after 5 s.
pub fn connector(
    ca_pem: Option<&str>,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("CA certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("CA certificates: no PEM CERTIFICATE block".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// A response read whole, its body bounded.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, or its first `max_body` bytes.
    pub body: Bytes,
    /// Whether `body` is all of it.
    pub complete: bool,
}

/// Sends `req` and reads the answer, at most `max_body` bytes of its body (`complete`
/// says whether that was all), all within `timeout`.
pub async fn call(
    client: &AuxClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, String> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| {
            use std::error::Error;
            // The connect error's cause says what happened (refused, DNS, TLS).
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let (parts, mut body) = resp.into_parts();
        // Read up to `max_body`; what is beyond is not read (the connection is dropped).
        let mut out = bytes::BytesMut::new();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max_body {
                    let room = max_body - out.len();
                    out.extend_from_slice(&data[..room]);
                    complete = false;
                    break;
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: out.freeze(),
            complete,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}
