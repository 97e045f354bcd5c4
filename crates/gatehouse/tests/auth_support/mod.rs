//! What the authentication suites (`e2e_auth.rs`, `e2e_jwt.rs`) share beside `common`:
//! the fixture keys and the JWKS built from them, tokens signed with them, bcrypt hashes,
//! a gateway whose log is kept in a file, small HTTP servers a test steers at run time
//! (a JWKS server, a forward-auth server, an upstream that answers with the raw request
//! head), a test CA, and checks of `WWW-Authenticate` challenges and metrics.

// Each suite uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::BufReader;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Handle;

use crate::common::{self, RawResponse};

// === fixture keys, JWKS, tokens ===

/// `iss` of every token the suites sign (and `issuer` of every jwt route).
pub const ISSUER: &str = "https://issuer.test/";
/// `aud` of every token the suites sign (and `audiences` of every jwt route).
pub const AUDIENCE: &str = "orders-api";

/// A file of `tests/fixtures/auth/`.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The fixture signing keys (generated once with `openssl genpkey`, see the fixtures'
/// README), loaded once.
#[derive(Debug)]
pub struct Keys {
    /// RSA 2048, kid `rsa-1`.
    pub rsa1: EncodingKey,
    /// Another RSA 2048, kid `rsa-2` (rotation; a wrong signer under `rsa-1`).
    pub rsa2: EncodingKey,
    /// EC P-256, kid `ec-1`.
    pub ec1: EncodingKey,
    /// Ed25519, kid `ed-1`.
    pub ed1: EncodingKey,
    /// The public half of `rsa1`, as PEM (the classic algorithm-confusion secret).
    pub rsa1_public_pem: String,
}

/// The fixture keys.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // The same backend as the gateway's (aws-lc-rs), chosen explicitly so signing
        // never has to ask which.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let rsa = |f: &str| EncodingKey::from_rsa_pem(fixture(f).as_bytes()).expect("RSA key");
        Keys {
            rsa1: rsa("rsa-1.key.pem"),
            rsa2: rsa("rsa-2.key.pem"),
            ec1: EncodingKey::from_ec_pem(fixture("ec-1.key.pem").as_bytes()).expect("EC key"),
            ed1: EncodingKey::from_ed_pem(fixture("ed-1.key.pem").as_bytes()).expect("Ed key"),
            rsa1_public_pem: fixture("rsa-1.pub.pem"),
        }
    })
}

/// The public JWK of `key` (a private key) for `alg`, named `kid`.
pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("JWK from the key");
    jwk.common.key_id = Some(kid.to_string());
    let mut value = serde_json::to_value(&jwk).expect("JWK to JSON");
    value["use"] = json!("sig");
    value
}

/// The JWK of `rsa-1`.
pub fn jwk_rsa1() -> Value {
    jwk(&keys().rsa1, Algorithm::RS256, "rsa-1")
}

/// The JWK of `rsa-2`.
pub fn jwk_rsa2() -> Value {
    jwk(&keys().rsa2, Algorithm::RS256, "rsa-2")
}

/// The JWK of `ec-1`.
pub fn jwk_ec1() -> Value {
    jwk(&keys().ec1, Algorithm::ES256, "ec-1")
}

/// The JWK of `ed-1`.
pub fn jwk_ed1() -> Value {
    jwk(&keys().ed1, Algorithm::EdDSA, "ed-1")
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

/// Good claims for `sub`: the suites' issuer and audience, issued now, valid 10 minutes.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600})
}

/// `claims` with `name` set to `value` (`Value::Null` removes it).
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    let object = claims.as_object_mut().expect("claims are an object");
    if value.is_null() {
        object.remove(name);
    } else {
        object.insert(name.to_string(), value);
    }
    claims
}

/// A token over `claims`, signed with `key` under `alg`, with `kid` in its header.
pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    keys(); // installs the crypto provider
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).expect("sign a token")
}

/// RS256 with `rsa-1`, kid `rsa-1`.
pub fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa-1"), &keys().rsa1, claims)
}

/// HS256 with `secret`.
pub fn hs256(secret: &str, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key"),
        claims,
    )
}

/// An unsigned token (`alg: none`, empty signature), built by hand: no library makes one.
pub fn unsigned(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({"alg": "none", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `token` with its payload replaced by `claims` and the original signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// A bcrypt hash of `password`, cost 4 (fast; the gateway reads the cost from the hash).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

/// `text` as a YAML double-quoted scalar (a JSON string is one): for JWKS documents,
/// PEM blocks and bcrypt hashes inside manifests.
pub fn yaml_str(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string")
}

// === a gateway whose log is kept ===

pub use crate::common::LoggedGateway;

/// [`common::request`] that waits up to `timeout` for the answer (the common client
/// gives up after 15 s): for requests that may wait on a slow key or auth server.
pub fn request_within(
    addr: SocketAddr,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> RawResponse {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to gateway");
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    stream
        .write_all(common::request_head("GET", host, target, headers).as_bytes())
        .expect("write request");
    common::read_response(&mut BufReader::new(stream), false)
        .unwrap_or_else(|e| panic!("no answer to GET {target} within {timeout:?}: {e}"))
}

/// Polls until `check` holds or `limit` passes: for what happens in the background on
/// the gateway's own schedule (retries with backoff), longer than `common::eventually`.
pub fn eventually_within(limit: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    false
}

// === challenges and metrics ===

/// The scheme word at the start of each `WWW-Authenticate` line, in order.
pub fn challenge_schemes(r: &RawResponse) -> Vec<String> {
    r.header_values("www-authenticate")
        .iter()
        .map(|v| {
            v.split(|c: char| c.is_whitespace() || c == ',')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A 401: problem+json, one `WWW-Authenticate` line per scheme in `schemes` (any order;
/// schemes compare case-insensitively, as HTTP says). Returns the problem document.
pub fn assert_401(r: &RawResponse, schemes: &[&str]) -> Value {
    let problem = common::assert_problem(r, 401);
    let mut got: Vec<String> = challenge_schemes(r)
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut want: Vec<String> = schemes.iter().map(|s| s.to_ascii_lowercase()).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got,
        want,
        "WWW-Authenticate lines {:?}: {r:?}",
        r.header_values("www-authenticate")
    );
    problem
}

/// A 401 for a presented but refused token: a `Bearer` challenge carrying
/// `error="invalid_token"` (RFC 6750).
pub fn assert_invalid_token(r: &RawResponse) {
    common::assert_problem(r, 401);
    let bearer = r
        .header_values("www-authenticate")
        .iter()
        .find(|v| v.to_ascii_lowercase().starts_with("bearer"))
        .unwrap_or_else(|| panic!("no Bearer challenge: {r:?}"));
    assert!(
        bearer.contains("error=\"invalid_token\""),
        "Bearer challenge without error=\"invalid_token\": {bearer:?}"
    );
}

/// The sum of the samples of metric `name` whose labels include every `labels` pair
/// (other labels may be present): 0 when there is none yet.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// === small HTTP/1.1 servers steered by the tests ===

/// A request as one of the stub servers received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRequest {
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// Header lines (name lowercased, value trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl StubRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a stub server does with a request.
#[derive(Debug, Clone)]
pub enum StubReply {
    /// Writes these bytes (a whole response) and closes the connection.
    Answer(Vec<u8>),
    /// Waits, then writes these bytes and closes.
    After(Duration, Vec<u8>),
    /// Never answers; the connection stays open.
    Hang,
}

/// A whole HTTP/1.1 response with `Content-Length` and `Connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} Stub\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// How a stub server answers.
pub type Handler = Arc<dyn Fn(&StubRequest) -> StubReply + Send + Sync>;

/// A stub server on `addr` (port 0: any), on `handle`, one request per connection,
/// over TLS when `tls` is given. Returns the address it listens on.
pub fn spawn_stub(
    handle: &Handle,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
) -> SocketAddr {
    let listener = handle
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("stub server binds {addr}: {e}"));
    let local = listener.local_addr().expect("stub address");
    handle.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (tls, handler) = (tls.clone(), handler.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_stub(stream, handler).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_stub(stream, handler).await;
                        }
                    }
                }
            });
        }
    });
    local
}

async fn serve_stub<S: AsyncRead + AsyncWrite + Unpin>(stream: S, handler: Handler) {
    let mut reader = tokio::io::BufReader::new(stream);
    let Some(request) = read_stub_request(&mut reader).await else {
        return;
    };
    let reply = handler(&request);
    let mut stream = reader.into_inner();
    let bytes = match reply {
        StubReply::Answer(bytes) => bytes,
        StubReply::After(wait, bytes) => {
            tokio::time::sleep(wait).await;
            bytes
        }
        StubReply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// Reads a request head (requests to the stubs have no body).
async fn read_stub_request<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Option<StubRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Some(StubRequest {
        method,
        target,
        headers,
    })
}

/// What a [`JwksServer`] does with a request.
#[derive(Debug, Clone)]
pub enum JwksMode {
    /// `200` with this document (`Cache-Control: max-age=3600`), after `delay`.
    Serve {
        /// The body.
        body: String,
        /// How long to wait before answering.
        delay: Duration,
    },
    /// `500`.
    Fail,
    /// Accept, read the request, never answer.
    Hang,
}

impl JwksMode {
    /// Serve `body` at once.
    pub fn serve(body: String) -> JwksMode {
        JwksMode::Serve {
            body,
            delay: Duration::ZERO,
        }
    }
}

/// A JWKS endpoint whose answers a test switches at run time; it counts the GETs it
/// received. It may be created before it listens (a key server that is down).
#[derive(Clone)]
pub struct JwksServer {
    /// Where it listens (or will).
    pub addr: SocketAddr,
    tls: bool,
    mode: Arc<Mutex<JwksMode>>,
    gets: Arc<AtomicUsize>,
}

impl std::fmt::Debug for JwksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksServer")
            .field("addr", &self.addr)
            .field("gets", &self.gets())
            .finish_non_exhaustive()
    }
}

impl JwksServer {
    /// A server listening on a fresh port on `handle`, answering as `mode` says.
    pub fn spawn(
        handle: &Handle,
        mode: JwksMode,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> JwksServer {
        let mut server = JwksServer::unbound(mode, tls.is_some());
        server.addr = spawn_stub(
            handle,
            "127.0.0.1:0".parse().expect("address"),
            tls,
            server.handler(),
        );
        server
    }

    /// A server that does not listen yet, on a port that was free a moment ago.
    pub fn unbound(mode: JwksMode, tls: bool) -> JwksServer {
        JwksServer {
            addr: common::free_port(),
            tls,
            mode: Arc::new(Mutex::new(mode)),
            gets: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts listening on [`JwksServer::addr`] (plaintext).
    pub fn listen(&self, handle: &Handle) {
        spawn_stub(handle, self.addr, None, self.handler());
    }

    fn handler(&self) -> Handler {
        let (mode, gets) = (self.mode.clone(), self.gets.clone());
        Arc::new(move |request: &StubRequest| {
            if request.method == "GET" {
                gets.fetch_add(1, Ordering::SeqCst);
            }
            let mode = mode
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match mode {
                JwksMode::Serve { body, delay } => {
                    let bytes = response(
                        200,
                        &[
                            ("content-type", "application/json"),
                            ("cache-control", "max-age=3600"),
                        ],
                        body.as_bytes(),
                    );
                    if delay.is_zero() {
                        StubReply::Answer(bytes)
                    } else {
                        StubReply::After(delay, bytes)
                    }
                }
                JwksMode::Fail => StubReply::Answer(response(
                    500,
                    &[("content-type", "text/plain")],
                    b"key store failure",
                )),
                JwksMode::Hang => StubReply::Hang,
            }
        })
    }

    /// Answers as `mode` from now on.
    pub fn set(&self, mode: JwksMode) {
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    /// GETs received so far.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// The `jwksUri` of this server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}/.well-known/jwks.json",
            self.addr.port()
        )
    }
}

/// An upstream that answers every request `200` with the request's raw head (request
/// line and header lines as received) as a `text/plain` body: shows every line of a
/// repeated header, which the echo upstream folds into one.
pub fn raw_upstream(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let handler: Handler = Arc::new(|request: &StubRequest| {
        let mut body = format!("{} {}\n", request.method, request.target);
        for (name, value) in &request.headers {
            body.push_str(&format!("{name}: {value}\n"));
        }
        StubReply::Answer(response(
            200,
            &[("content-type", "text/plain")],
            body.as_bytes(),
        ))
    });
    spawn_stub(
        runtime.handle(),
        "127.0.0.1:0".parse().expect("address"),
        None,
        handler,
    )
}

/// Every value of header `name` in a [`raw_upstream`] answer.
pub fn raw_header_values(r: &RawResponse, name: &str) -> Vec<String> {
    assert_eq!(r.status, 200, "not a raw upstream answer: {r:?}");
    let name = name.to_ascii_lowercase();
    r.text()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

// === TLS ===

/// A fresh test CA (PEM) and a TLS acceptor whose certificate it signed, for
/// `127.0.0.1` and `localhost`.
pub fn test_ca_and_acceptor() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Gatehouse test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "jwks.test");
    let leaf = leaf_params
        .signed_by(&leaf_key, &*ca)
        .expect("leaf certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server certificate");
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
