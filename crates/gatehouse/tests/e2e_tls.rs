//! HTTPS end to end (`spec/api.md`: ApiRoute `tls`; `spec/runtime.md`: `--https`): the
//! built `gatehouse run --https` over a folder of routes and `kubernetes.io/tls`
//! Secrets made here by a test CA, clients that verify against that CA.
//!
//! - two hosts with two certificates, chosen by SNI; a wildcard host; no SNI match and
//!   no default → the handshake is refused
//! - the 421 case: a request for a host served with another certificate
//! - ALPN `h2` and `http/1.1`; TLS 1.1 refused (a hand-made 1.1 ClientHello)
//! - rotation: a rewritten Secret is served on the next connection, while an open
//!   connection keeps working
//! - a broken certificate marks only its route; the other hosts stay on HTTPS
//! - `gatehouse_tls_handshakes_total{result}`

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{
    Gateway, RawResponse, assert_problem, echoed, eventually, free_port, lint, read_response,
    upstream_runtime,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};

/// A test CA that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM, and its DER to compare with what a client saw.
struct Leaf {
    chain: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Ca { issuer }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let cert = params.signed_by(&key, &*self.issuer).expect("leaf");
        Leaf {
            chain: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA root");
        roots
    }
}

/// A `kubernetes.io/tls` Secret manifest.
fn tls_secret(name: &str, leaf: &Leaf) -> String {
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n    {}\n  tls.key: |\n    {}\n",
        indent(&leaf.chain),
        indent(&leaf.key)
    )
}

const ROUTES: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo, namespace: default}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: a, namespace: default}
spec:
  hosts: [a.test]
  tls: {secretName: a-tls}
  rules: [{name: all, backends: [{upstream: echo}]}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: b, namespace: default}
spec:
  hosts: [b.test]
  tls: {secretName: b-tls}
  rules: [{name: all, respond: {status: 200, body: "b over tls"}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.test"]
  tls: {secretName: wild-tls}
  rules: [{name: all, respond: {status: 200, body: "wildcard"}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: plain, namespace: default}
spec:
  hosts: [plain.test]
  rules: [{name: all, respond: {status: 200, body: "plain only"}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: broken, namespace: default}
spec:
  hosts: [broken.test]
  tls: {secretName: broken-tls}
  rules: [{name: all, respond: {status: 200, body: "broken"}}]
"#;

/// The gateway with HTTPS, its CA and the leaf certificates it was started with.
struct Fixture {
    gateway: Gateway,
    https: SocketAddr,
    ca: Ca,
    a: Leaf,
    b: Leaf,
    wild: Leaf,
}

fn start() -> Fixture {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let ca = Ca::new("Gatehouse TLS test CA");
    let (a, b, wild) = (
        ca.leaf(&["a.test"]),
        ca.leaf(&["b.test"]),
        ca.leaf(&["*.wild.test"]),
    );
    // broken-tls: a.test's certificate with b.test's key.
    let broken = Leaf {
        chain: a.chain.clone(),
        key: b.key.clone(),
        der: a.der.clone(),
    };
    let https = free_port();
    let gateway = Gateway::serve_with(
        upstreams,
        &[
            (
                "routes.yaml",
                ROUTES.replace("@ECHO@", &echo.port().to_string()),
            ),
            ("a-tls.yaml", tls_secret("a-tls", &a)),
            ("b-tls.yaml", tls_secret("b-tls", &b)),
            ("wild-tls.yaml", tls_secret("wild-tls", &wild)),
            ("broken-tls.yaml", tls_secret("broken-tls", &broken)),
        ],
        &["--https", &https.to_string()],
    );
    Fixture {
        gateway,
        https,
        ca,
        a,
        b,
        wild,
    }
}

/// A client configuration trusting `roots`, offering `alpn`.
fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` asking for `sni`, handshake done.
fn connect(addr: SocketAddr, sni: &str, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET /` with `Host: host` on an open connection (keep-alive), its response.
fn get(tls: &mut Tls, host: &str) -> RawResponse {
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tls.write_all(head.as_bytes()).expect("write request");
    tls.flush().expect("flush");
    read_one(tls)
}

/// Reads one response without over-reading the stream (a byte at a time through the
/// buffer of a fresh `BufReader` would lose what it buffered past the response).
fn read_one(tls: &mut Tls) -> RawResponse {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    // The head, then the body by Content-Length (the gateway's answers here have one).
    while !raw.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("response head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).expect("response body");
    raw.extend_from_slice(&body);
    read_response(&mut BufReader::new(&raw[..]), false).expect("a response")
}

fn served_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

fn handshakes(f: &Fixture, result: &str) -> f64 {
    let text = common::request(f.gateway.admin, "GET", "localhost", "/metrics", &[]).text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "gatehouse_tls_handshakes_total{{result=\"{result}\"}} "
            ))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no handshakes series for {result}:\n{text}"))
}

#[test]
fn each_host_gets_its_certificate_by_sni_and_wildcards_cover_one_label() {
    let f = start();
    let config = client_config(f.ca.roots(), &[b"http/1.1"]);

    let mut a = connect(f.https, "a.test", config.clone()).expect("a.test handshake");
    assert_eq!(served_certificate(&a), f.a.der);
    let r = get(&mut a, "a.test");
    assert_eq!(r.status, 200, "{r:?}");
    let seen = echoed(&r);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{seen:?}");
    assert!(
        seen.header("forwarded")
            .is_some_and(|v| v.contains("proto=https")),
        "{seen:?}"
    );

    let mut b = connect(f.https, "b.test", config.clone()).expect("b.test handshake");
    assert_eq!(served_certificate(&b), f.b.der);
    assert_eq!(get(&mut b, "b.test").text(), "b over tls");

    let mut w = connect(f.https, "api.wild.test", config.clone()).expect("wildcard handshake");
    assert_eq!(served_certificate(&w), f.wild.der);
    assert_eq!(get(&mut w, "api.wild.test").text(), "wildcard");

    // No route serves these names on HTTPS, and none serves every host: refused.
    let before = handshakes(&f, "no_certificate");
    for sni in ["plain.test", "unknown.test", "broken.test"] {
        assert!(
            connect(f.https, sni, config.clone()).is_err(),
            "{sni}: handshake should be refused"
        );
    }
    assert!(
        eventually(|| handshakes(&f, "no_certificate") >= before + 3.0),
        "refused handshakes are counted"
    );
    assert!(handshakes(&f, "success") >= 3.0);

    // The private keys never leave the process: /config shows them withheld.
    let config = common::request(f.gateway.admin, "GET", "localhost", "/config", &[]).text();
    assert!(config.contains("\"withheld\":true"), "{config}");
    for leaf in [&f.a, &f.b, &f.wild] {
        let body = leaf.key.lines().nth(1).expect("a key line");
        assert!(!config.contains(body), "a private key reached /config");
    }

    // Plain HTTP keeps serving every route, the ones with tls included.
    let plain = common::request(f.gateway.http, "GET", "plain.test", "/", &[]);
    assert_eq!(plain.text(), "plain only");
    let b_plain = common::request(f.gateway.http, "GET", "b.test", "/", &[]);
    assert_eq!(b_plain.text(), "b over tls");
}

#[test]
fn a_host_served_with_another_certificate_is_misdirected() {
    let f = start();
    let config = client_config(f.ca.roots(), &[b"http/1.1"]);
    let mut a = connect(f.https, "a.test", config).expect("handshake");
    // Another certificate's host, and a host not served on HTTPS at all: 421.
    for host in ["b.test", "plain.test", "x.wild.test"] {
        let r = get(&mut a, host);
        assert_problem(&r, 421);
    }
    // The connection still serves its own host.
    assert_eq!(get(&mut a, "a.test").status, 200);
}

#[test]
fn alpn_negotiates_h2_and_http1() {
    let f = start();
    let h1 = connect(
        f.https,
        "b.test",
        client_config(f.ca.roots(), &[b"http/1.1"]),
    )
    .expect("handshake");
    assert_eq!(h1.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    let roots = f.ca.roots();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (protocol, status, body) = runtime.block_on(async move {
        let config = client_config(roots, &[b"h2", b"http/1.1"]);
        let tcp = tokio::net::TcpStream::connect(f.https).await.expect("tcp");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("b.test").expect("name"), tcp)
            .await
            .expect("handshake");
        let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        let request = http::Request::get("https://b.test/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = send.send_request(request).await.expect("h2 response");
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        (protocol, status, body)
    });
    assert_eq!(protocol.as_deref(), Some(&b"h2"[..]));
    assert_eq!((status, &body[..]), (200, &b"b over tls"[..]));
}

/// A TLS 1.1 ClientHello (legacy version 0x0302, no `supported_versions`), SNI `b.test`.
fn tls11_client_hello() -> Vec<u8> {
    let name = b"b.test";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = Vec::new();
    extensions.extend_from_slice(&[0, 0]); // server_name
    extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&sni);
    let mut body = vec![0x03, 0x02]; // TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    // TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[0, 4, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls_1_1_is_refused_with_a_protocol_version_alert() {
    let f = start();
    let before = handshakes(&f, "incompatible");
    let mut tcp = TcpStream::connect(f.https).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(&tls11_client_hello()).expect("hello");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    // An alert record (21), fatal (2): protocol_version (70) or handshake_failure (40,
    // nothing the client offers is acceptable: its suites are all TLS 1.1 CBC ones);
    // no ServerHello.
    assert!(answer.len() >= 7, "{answer:?}");
    assert_eq!(answer[0], 21, "an alert, not a handshake: {answer:?}");
    assert_eq!(answer[5], 2, "fatal: {answer:?}");
    assert!(matches!(answer[6], 40 | 70), "{answer:?}");
    assert!(eventually(|| handshakes(&f, "incompatible") > before));
}

#[test]
fn a_rewritten_secret_is_served_on_the_next_connection() {
    let f = start();
    let config = client_config(f.ca.roots(), &[b"http/1.1"]);
    let mut open = connect(f.https, "b.test", config.clone()).expect("handshake");
    assert_eq!(get(&mut open, "b.test").status, 200);

    let rotated = f.ca.leaf(&["b.test"]);
    std::fs::write(
        f.gateway.manifests.path().join("b-tls.yaml"),
        tls_secret("b-tls", &rotated),
    )
    .expect("rewrite the Secret");
    assert!(
        eventually(|| connect(f.https, "b.test", config.clone())
            .is_ok_and(|c| served_certificate(&c) == rotated.der)),
        "the new certificate is served on new connections"
    );
    // The connection opened before keeps working, with the certificate it was given.
    assert_eq!(served_certificate(&open), f.b.der);
    assert_eq!(get(&mut open, "b.test").text(), "b over tls");
}

#[test]
fn a_broken_certificate_is_a_diagnostic_of_its_route_only() {
    let f = start();
    // The route stays served over plain HTTP; its host is not served on HTTPS (the
    // handshake test above), the others are.
    let r = common::request(f.gateway.http, "GET", "broken.test", "/", &[]);
    assert_eq!(r.text(), "broken");
    let config = client_config(f.ca.roots(), &[b"http/1.1"]);
    assert!(connect(f.https, "a.test", config).is_ok());

    let ca = Ca::new("lint CA");
    let (good, other) = (ca.leaf(&["x.test"]), ca.leaf(&["y.test"]));
    let mismatched = Leaf {
        chain: good.chain.clone(),
        key: other.key.clone(),
        der: good.der.clone(),
    };
    let route = |secret: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r, namespace: default}}\nspec:\n  hosts: [x.test, z.test]\n  tls: {{secretName: {secret}}}\n  rules: [{{name: all, respond: {{status: 204}}}}]\n"
        )
    };
    let (ok, out) = lint(
        &format!(
            "{}---\n{}",
            route("x-tls"),
            tls_secret("x-tls", &mismatched)
        ),
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("InvalidCertificate"), "{out}");
    assert!(out.contains("not the key of the certificate"), "{out}");

    let (_, out) = lint(&route("missing-tls"), &[]);
    assert!(out.contains("SecretNotFound"), "{out}");
    assert!(out.contains("not served on HTTPS"), "{out}");

    // A certificate that does not name one of the route's hosts: a warning.
    let (_, out) = lint(
        &format!("{}---\n{}", route("x-tls"), tls_secret("x-tls", &good)),
        &[],
    );
    assert!(out.contains("does not name \"z.test\""), "{out}");
}

// === TLS to upstreams ===

/// An HTTPS upstream on `runtime` with `leaf`, HTTP/1.1 and HTTP/2 by ALPN; when
/// `client_ca` is given it requires a client certificate signed by it. Each answer says
/// the protocol and whether a client certificate was presented.
fn tls_upstream(
    runtime: &tokio::runtime::Runtime,
    leaf: &Leaf,
    client_ca: Option<&Ca>,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = handshakes.clone();
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider,
            )
            .build()
            .expect("client verifier"),
        ),
    };
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key");
    let mut config = builder
        .with_single_cert(vec![leaf.der.clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (_, conn) = tls.get_ref();
                let alpn =
                    String::from_utf8_lossy(conn.alpn_protocol().unwrap_or(b"none")).into_owned();
                let client = if conn.peer_certificates().is_some() {
                    "client-cert"
                } else {
                    "no-client-cert"
                };
                let answer = format!("tls upstream: {alpn} {client}");
                let svc = hyper::service::service_fn(move |_req| {
                    let answer = answer.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(answer)),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (addr, handshakes)
}

/// An `Opaque` Secret with `ca.crt`.
fn ca_secret(name: &str, ca: &Ca) -> String {
    let pem = ca.issuer.pem();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\nstringData:\n  ca.crt: |\n    {}\n",
        pem.trim_end().replace('\n', "\n    ")
    )
}

/// An Upstream to `addr` with `tls` (YAML flow mapping), and a route `/NAME` to it.
fn upstream_route(name: &str, addr: SocketAddr, protocol: &str, tls: &str) -> String {
    format!(
        r#"apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: {name}, namespace: default}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {port}}}]
  protocol: {protocol}
  tls: {tls}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [up.test]
  rules: [{{name: all, matches: [{{path: {{type: Prefix, value: /{name}}}}}], backends: [{{upstream: {name}}}]}}]
---
"#,
        port = addr.port()
    )
}

#[test]
fn upstreams_are_reached_over_tls_verified_by_their_ca_with_client_certificates() {
    let servers = upstream_runtime();
    let server_ca = Ca::new("upstream server CA");
    let other_ca = Ca::new("some other CA");
    let client_ca = Ca::new("upstream client CA");
    let server_leaf = server_ca.leaf(&["upstream.test"]);
    let client_leaf = client_ca.leaf(&["gateway.test"]);
    let (open, handshakes) = tls_upstream(&servers, &server_leaf, None);
    let (mutual, _) = tls_upstream(&servers, &server_leaf, Some(&client_ca));
    let verified = "{sni: upstream.test, caSecretRef: {name: server-ca}}";
    let with_cert = "{sni: upstream.test, caSecretRef: {name: server-ca}, clientCertificateRef: {name: client-cert}}";
    let manifests = [
        upstream_route("good", open, "HTTP1", verified),
        upstream_route("h2", open, "HTTP2", verified),
        upstream_route(
            "wrongca",
            open,
            "HTTP1",
            "{sni: upstream.test, caSecretRef: {name: other-ca}}",
        ),
        upstream_route(
            "wrongname",
            open,
            "HTTP1",
            "{sni: elsewhere.test, caSecretRef: {name: server-ca}}",
        ),
        upstream_route("insecure", open, "HTTP1", "{insecureSkipVerify: true}"),
        upstream_route("nocert", mutual, "HTTP1", verified),
        upstream_route("withcert", mutual, "HTTP1", with_cert),
        ca_secret("server-ca", &server_ca),
        ca_secret("other-ca", &other_ca),
        tls_secret("client-cert", &client_leaf),
    ]
    .join("---\n");
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("gatehouse.log");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("all.yaml"), &manifests).expect("write");
    let (_process, http, _admin) = common::spawn_gatehouse_with(
        dir.path(),
        std::process::Stdio::from(std::fs::File::create(&log).expect("log")),
        &[],
    );
    let get = |path: &str| common::request(http, "GET", "up.test", path, &[]);

    assert_eq!(get("/good").text(), "tls upstream: http/1.1 no-client-cert");
    // Pooled: ten more requests, each answered before the next is sent, reuse the
    // workers' connections (two workers: at most one new connection each).
    let before = handshakes.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(get("/good").status, 200);
    }
    let added = handshakes.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        added <= 1,
        "{added} new TLS connections for 10 sequential requests"
    );
    assert_eq!(get("/h2").text(), "tls upstream: h2 no-client-cert");
    assert_eq!(get("/insecure").status, 200);
    assert_eq!(
        get("/withcert").text(),
        "tls upstream: http/1.1 client-cert"
    );

    for refused in ["/wrongca", "/wrongname", "/nocert"] {
        assert_problem(&get(refused), 502);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for upstream in ["default/wrongca", "default/wrongname", "default/nocert"] {
        assert!(
            text.lines()
                .any(|l| l.contains("upstream TLS handshake failed") && l.contains(upstream)),
            "no log line names {upstream}:\n{text}"
        );
    }
    assert!(
        !text.contains("BEGIN PRIVATE KEY") && !text.contains("PRIVATE KEY-----"),
        "a key reached the log"
    );

    // insecureSkipVerify is a lint warning.
    let (_, out) = lint(
        &upstream_route("insecure", open, "HTTP1", "{insecureSkipVerify: true}"),
        &[],
    );
    assert!(out.contains("insecureSkipVerify"), "{out}");
    assert!(out.contains("not verified"), "{out}");
    // An sni that is no name: the Upstream is invalid.
    let (ok, out) = lint(
        &upstream_route("badsni", open, "HTTP1", "{sni: \"not a name!\"}"),
        &[],
    );
    assert!(!ok && out.contains("spec.tls.sni"), "{out}");
    drop(servers);
}
