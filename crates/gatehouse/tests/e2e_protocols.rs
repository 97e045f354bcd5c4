//! Protocols end to end, as a client sees them: the built `gatehouse run` over a folder
//! of manifests, the testkit echo upstream behind it, and real clients over real
//! sockets. h2c clients (prior knowledge) multiplexed onto an HTTP/1.1 upstream,
//! gRPC-style calls over h2c to a `protocol: HTTP2` upstream with trailers, HTTP/1.1
//! clients to that HTTP/2 upstream, WebSocket passthrough, a DNS-named endpoint across a
//! reload, and a WebSocket upgrade to a route whose Upstream does not exist
//! (`spec/api.md`: Upstream `protocol`, endpoint `host`; `spec/runtime.md`: what a client
//! sees; `docs/standalone.md`: the data plane).
//!
//! The same scenarios against the proxy library are `crates/standalone/tests/protocols.rs`.
//! Each test is a plain `#[test]` that runs its async clients on a runtime of its own:
//! the shared gateway and its upstream runtime are created and dropped outside it.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use common::{
    Gateway, assert_problem, eventually, request, request_head, try_send_raw, upstream_runtime,
};

// === the gateway under test ===

/// The Host every client names; the routes take any host.
const HOST: &str = "gw.test";

/// Upstreams and routes; `@ECHO@` is replaced by the echo upstream's port.
const GATEWAY: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: h1}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: h2}
spec:
  protocol: HTTP2
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: named}
spec:
  endpoints: [{host: localhost, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: protocols}
spec:
  rules:
    - name: grpc
      matches: [{path: {type: Prefix, value: /echo.Echo}}]
      backends: [{upstream: h2}]
    - name: h2
      matches: [{path: {type: Prefix, value: /h2}}]
      backends: [{upstream: h2}]
    - name: named
      matches: [{path: {type: Prefix, value: /named}}]
      backends: [{upstream: named}]
    - name: h1
      matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: h1}]
---
# Its own object, so that whatever the compiler makes of the dangling reference stays
# with this route.
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: missing}
spec:
  rules:
    - name: missing-upstream
      matches: [{path: {type: Prefix, value: /missing}}]
      backends: [{upstream: nowhere}]
"#;

/// A second file, rewritten by the DNS test: a change elsewhere in the folder.
const EXTRA: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: extra}
spec:
  rules:
    - name: one
      matches: [{path: {type: Exact, value: /extra/one}}]
      respond: {status: 200, body: one}
"#;

/// [`EXTRA`] with one more respond rule.
const EXTRA_REWRITTEN: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: extra}
spec:
  rules:
    - name: one
      matches: [{path: {type: Exact, value: /extra/one}}]
      respond: {status: 200, body: one}
    - name: two
      matches: [{path: {type: Exact, value: /extra/two}}]
      respond: {status: 200, body: two}
"#;

/// `gatehouse run` over [`GATEWAY`] and [`EXTRA`], with the echo upstream.
fn start() -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let gateway = GATEWAY.replace("@ECHO@", &echo.port().to_string());
    Gateway::serve(
        upstreams,
        &[("gateway.yaml", gateway), ("extra.yaml", EXTRA.to_string())],
    )
}

/// The gateway, shared by the tests that run at the same time; the last one to finish
/// stops it (a `static` is never dropped, so it holds only a weak reference).
fn gateway() -> Arc<Gateway> {
    static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

// === async clients ===

/// Runs `test` on a runtime of its own (two workers, so a blocked task cannot hide a
/// hang behind another). Keep the gateway's `Arc` outside `test`: it owns a runtime,
/// which must not be dropped inside another.
fn block_on<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime")
        .block_on(test)
}

/// `step`, or a panic naming it if it has not finished after 30 seconds: a guard against
/// hangs, not a measure of speed.
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), step)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// An h2c (prior knowledge) connection to the gateway.
async fn h2c(gateway: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(gateway)
        .await
        .expect("connect to the gateway");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake with the gateway");
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 keep-alive connection to the gateway.
async fn http1(gateway: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(gateway)
        .await
        .expect("connect to the gateway");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake with the gateway");
    tokio::spawn(conn);
    sender
}

/// A response read to its end: head, body and trailers.
struct Collected {
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Collected {
    /// The body as the echo upstream's JSON answer; panics, showing the response, when
    /// it is not one.
    fn echoed(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an echo answer ({e}): {} {:?} {:?}",
                self.status,
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The response's `X-Request-Id`; panics when there is none.
    fn request_id(&self) -> String {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("no X-Request-Id: {} {:?}", self.status, self.headers))
            .to_string()
    }
}

async fn collect(response: Response<Incoming>) -> Collected {
    let (head, body) = response.into_parts();
    let body = within("reading a response body", body.collect())
        .await
        .expect("the response body arrives whole");
    let trailers = body.trailers().cloned();
    Collected {
        status: head.status,
        version: head.version,
        headers: head.headers,
        body: body.to_bytes(),
        trailers,
    }
}

/// `GET target` on a new HTTP/1.1 connection.
async fn get_http1(gateway: SocketAddr, target: &str) -> Collected {
    let mut sender = http1(gateway).await;
    let req = Request::get(target)
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(target, sender.send_request(req))
        .await
        .expect("a response over HTTP/1.1");
    collect(resp).await
}

/// `GET target` on a new h2c connection.
async fn get_h2c(gateway: SocketAddr, target: &str) -> Collected {
    let mut sender = h2c(gateway).await;
    let req = Request::get(format!("http://{HOST}{target}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(target, sender.send_request(req))
        .await
        .expect("a response over h2c");
    collect(resp).await
}

/// A WebSocket session through the gateway, on a connection of its own.
async fn websocket(
    gateway: SocketAddr,
    path: &str,
) -> (
    WebSocketStream<TcpStream>,
    tungstenite::handshake::client::Response,
) {
    let stream = TcpStream::connect(gateway)
        .await
        .expect("connect to the gateway");
    within(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(format!("ws://{HOST}{path}"), stream),
    )
    .await
    .unwrap_or_else(|e| panic!("WebSocket handshake through the gateway on {path}: {e:?}"))
}

/// Sends `message` and expects it back, as it was.
async fn echo_message(ws: &mut WebSocketStream<TcpStream>, message: Message) {
    ws.send(message.clone())
        .await
        .unwrap_or_else(|e| panic!("sending {message:?}: {e}"));
    let back = within("a WebSocket message back", ws.next())
        .await
        .unwrap_or_else(|| panic!("the session ended instead of echoing {message:?}"))
        .unwrap_or_else(|e| panic!("an error instead of {message:?}: {e}"));
    assert_eq!(back, message);
}

/// Closes a session and reads to its end. The echo upstream drops its side as soon as it
/// reads the close frame, without replying with one, so the client's last read is the
/// close reply, the end of the stream, or tungstenite's "reset without closing
/// handshake" (what a client connected to the echo directly sees too); never another
/// message, an I/O error, or a hang.
async fn close(ws: &mut WebSocketStream<TcpStream>) {
    within("sending the close frame", ws.close(None))
        .await
        .expect("close frame sent");
    loop {
        match within("the end of the WebSocket session", ws.next()).await {
            None
            | Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            )) => return,
            Some(Ok(Message::Close(_))) => continue, // then the end of the stream
            other => panic!("after the close frame: {other:?}"),
        }
    }
}

// === blocking helpers ===

/// `GET target` (HTTP/1.1, `Connection: close`), answered `200` by the echo upstream;
/// returns what the echo received.
fn echoed_get(gw: &Gateway, target: &str) -> serde_json::Value {
    let r = request(gw.http, "GET", HOST, target, &[]);
    assert_eq!(r.status, 200, "GET {target}: {r:?} {}", r.text());
    r.json()
}

// === h2c clients ===

#[test]
fn h2c_streams_are_multiplexed_onto_an_http1_upstream() {
    let gw = gateway();
    let http = gw.http;
    block_on(async move {
        let sender = h2c(http).await;
        // Eight streams at once on one connection: every request is handed to the
        // connection before any response is awaited.
        let pending: Vec<_> = (0..8)
            .map(|i| {
                let req = if i % 2 == 0 {
                    Request::get(format!("http://{HOST}/items/{i}?n={i}"))
                        .body(Full::new(Bytes::new()))
                } else {
                    Request::post(format!("http://{HOST}/items/{i}?n={i}"))
                        .body(Full::new(Bytes::from(format!("payload-{i}"))))
                };
                // `send_request` hands the request to the connection when called.
                let sent = sender.clone().send_request(req.expect("request"));
                tokio::spawn(async move { collect(sent.await.expect("a response")).await })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for (i, stream) in pending.into_iter().enumerate() {
            let r = within("an h2c stream", stream).await.expect("stream task");
            assert_eq!(r.status, StatusCode::OK, "stream {i}");
            assert_eq!(r.version, http::Version::HTTP_2, "stream {i}");
            let id = r.request_id();
            let v = r.echoed();
            // The HTTP/1.1 upstream sees HTTP/1.1, an origin-form target, and the
            // client's :authority as Host.
            assert_eq!(v["version"], "HTTP/1.1", "{v}");
            assert_eq!(v["uri"], format!("/items/{i}?n={i}"), "{v}");
            assert_eq!(v["headers"]["host"], HOST, "{v}");
            if i % 2 == 0 {
                assert_eq!(v["method"], "GET", "{v}");
                assert_eq!(v["body"], "", "{v}");
            } else {
                assert_eq!(v["method"], "POST", "{v}");
                assert_eq!(v["body"], format!("payload-{i}"), "{v}");
            }
            // Forwarding headers, and the request id the client got.
            let headers = &v["headers"];
            assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{v}");
            assert_eq!(headers["x-forwarded-proto"], "http", "{v}");
            assert_eq!(headers["x-forwarded-host"], HOST, "{v}");
            let forwarded = headers["forwarded"].as_str().unwrap_or_default();
            let pairs: BTreeSet<&str> = forwarded.split(';').map(str::trim).collect();
            for pair in ["for=127.0.0.1", "proto=http", "host=\"gw.test\""] {
                assert!(pairs.contains(pair), "Forwarded: {forwarded:?}");
            }
            assert_eq!(headers["x-request-id"], id.as_str(), "{v}");
            ids.insert(id);
        }
        assert_eq!(ids.len(), 8, "every stream has its own request id: {ids:?}");
    });
}

#[test]
fn grpc_over_h2c_keeps_the_body_and_trailers_end_to_end() {
    let gw = gateway();
    let http = gw.http;
    block_on(async move {
        let sender = h2c(http).await;
        // Length-prefixed gRPC messages (not compressed): a small one, and some larger
        // than HTTP/2's initial 64 KiB flow-control window, several at once.
        let message = |len: usize| {
            let mut m = vec![0u8];
            m.extend(u32::try_from(len).expect("message length").to_be_bytes());
            m.extend((0..len).map(|i| (i % 251) as u8));
            Bytes::from(m)
        };
        let calls: Vec<_> = [5, 0, 1000, 200 * 1024, 300 * 1024]
            .into_iter()
            .map(|len| {
                let body = if len == 5 {
                    Bytes::from_static(b"\x00\x00\x00\x00\x05hello")
                } else {
                    message(len)
                };
                let req = Request::post(format!("http://{HOST}/echo.Echo/Say"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let sent = sender.clone().send_request(req);
                tokio::spawn(async move { (body, collect(sent.await.expect("a response")).await) })
            })
            .collect();
        for call in calls {
            let (sent, r) = within("a gRPC call", call).await.expect("call task");
            let len = sent.len();
            assert_eq!(r.status, StatusCode::OK, "{len} bytes: {:?}", r.headers);
            assert_eq!(r.headers["content-type"], "application/grpc", "{len} bytes");
            r.request_id();
            assert!(r.body == sent, "{len} bytes sent, {} back", r.body.len());
            let trailers = r
                .trailers
                .unwrap_or_else(|| panic!("{len} bytes: no trailers arrived"));
            assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
            assert_eq!(trailers["grpc-message"], "echo", "{trailers:?}");
        }
    });
}

// === HTTP/2 upstreams ===

#[test]
fn http1_clients_reach_an_http2_upstream_on_one_keep_alive_connection() {
    let gw = gateway();
    let http = gw.http;
    block_on(async move {
        let mut sender = http1(http).await;
        for n in 0..4 {
            let target = format!("/h2/x?y={n}");
            let req = if n == 3 {
                Request::post(&target)
                    .header("host", HOST)
                    .body(Full::new(Bytes::from_static(b"ping")))
            } else {
                Request::get(&target)
                    .header("host", HOST)
                    .body(Full::new(Bytes::new()))
            };
            let req = req.expect("request");
            within("the connection to be ready", sender.ready())
                .await
                .expect("the keep-alive connection stays usable");
            let resp = within(&target, sender.send_request(req))
                .await
                .expect("a response on the same connection");
            let r = collect(resp).await;
            assert_eq!(r.status, StatusCode::OK, "{target}: {:?}", r.headers);
            assert_eq!(r.version, http::Version::HTTP_11);
            r.request_id();
            let v = r.echoed();
            assert_eq!(v["version"], "HTTP/2.0", "{v}");
            // HTTP/2 requests carry the target as :scheme, :authority and :path; the
            // echo shows the URI it was given.
            let uri: http::Uri = v["uri"]
                .as_str()
                .and_then(|u| u.parse().ok())
                .unwrap_or_else(|| panic!("no URI: {v}"));
            assert_eq!(
                uri.path_and_query().map(|pq| pq.as_str()),
                Some(target.as_str()),
                "{v}"
            );
            let authority = uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| v["headers"]["host"].as_str());
            assert_eq!(authority, Some(HOST), "the client's host: {v}");
            assert_eq!(v["headers"]["x-forwarded-host"], HOST, "{v}");
            if n == 3 {
                assert_eq!(v["method"], "POST", "{v}");
                assert_eq!(v["body"], "ping", "{v}");
            } else {
                assert_eq!(v["method"], "GET", "{v}");
            }
        }
    });
}

// === WebSocket ===

#[test]
fn websocket_sessions_pass_through() {
    let gw = gateway();
    let http = gw.http;
    block_on(async move {
        let (mut ws, resp) = websocket(http, "/chat").await;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(
            resp.headers().contains_key("x-request-id"),
            "{:?}",
            resp.headers()
        );
        for text in ["hello", "again"] {
            echo_message(&mut ws, Message::text(text)).await;
        }
        echo_message(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
        // Larger than a single read or write on either side.
        let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
        echo_message(&mut ws, Message::binary(big)).await;
        close(&mut ws).await;
    });
}

#[test]
fn a_websocket_session_does_not_hold_up_other_connections() {
    let gw = gateway();
    let http = gw.http;
    block_on(async move {
        let (mut a, resp) = websocket(http, "/chat/a").await;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let (mut b, resp) = websocket(http, "/chat/b").await;
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        echo_message(&mut a, Message::text("from a")).await;
        echo_message(&mut b, Message::text("from b")).await;

        // Both sessions open: plain requests on other connections are served, over
        // HTTP/1.1 and h2c, to both upstream protocols.
        for i in 0..4 {
            let r = get_http1(http, &format!("/plain/{i}")).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.echoed()["uri"], format!("/plain/{i}"));
            let r = get_h2c(http, &format!("/plain/h2c/{i}")).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.echoed()["uri"], format!("/plain/h2c/{i}"));
            let r = get_http1(http, &format!("/h2/plain/{i}")).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.echoed()["version"], "HTTP/2.0");
        }

        // The sessions are still live, each on its own.
        echo_message(&mut b, Message::text("b again")).await;
        echo_message(&mut a, Message::binary(vec![7u8; 100])).await;
        close(&mut a).await;
        // Closing one leaves the other alone.
        echo_message(&mut b, Message::text("b after a closed")).await;
        close(&mut b).await;
    });
}

#[test]
fn a_websocket_upgrade_to_a_missing_upstream_is_503_problem_json() {
    let gw = gateway();
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    // The raw client's read timeout turns a hang into a failure.
    let r = request(gw.http, "GET", HOST, "/missing/ws", &upgrade);
    assert_problem(&r, 503);
    // The same route without the upgrade, for comparison.
    let r = request(gw.http, "GET", HOST, "/missing/plain", &[]);
    assert_problem(&r, 503);

    // A WebSocket client is refused with that answer too.
    let http = gw.http;
    block_on(async move {
        let stream = TcpStream::connect(http)
            .await
            .expect("connect to the gateway");
        let refused = within(
            "the refused WebSocket handshake",
            tokio_tungstenite::client_async(format!("ws://{HOST}/missing/ws"), stream),
        )
        .await;
        match refused {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{resp:?}");
            }
            Err(e) => panic!("the handshake failed otherwise: {e:?}"),
            Ok((_, resp)) => panic!("the handshake succeeded: {resp:?}"),
        }
    });
}

// === DNS-named endpoints ===

#[test]
fn a_dns_named_endpoint_keeps_serving_across_a_reload() {
    let gw = gateway();
    let v = echoed_get(&gw, "/named/before");
    assert_eq!(v["uri"], "/named/before", "{v}");

    // A change elsewhere in the folder: one more respond rule in another file, written
    // whole under another name and renamed into place.
    let dir = gw.manifests.path();
    let staged = dir.join("extra.yaml.next");
    std::fs::write(&staged, EXTRA_REWRITTEN).expect("write the new extra.yaml");
    std::fs::rename(&staged, dir.join("extra.yaml")).expect("replace extra.yaml");
    let two = request_head("GET", HOST, "/extra/two", &[]);
    assert!(
        eventually(|| try_send_raw(gw.http, two.as_bytes())
            .is_ok_and(|r| r.status == 200 && r.text() == "two")),
        "the new rule never answered"
    );

    // The DNS-backed route still answers, at once and after.
    for i in 0..5 {
        let target = format!("/named/after/{i}");
        let v = echoed_get(&gw, &target);
        assert_eq!(v["uri"], target, "{v}");
    }
    let r = request(gw.http, "GET", HOST, "/extra/one", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "one"), "{r:?}");
}
