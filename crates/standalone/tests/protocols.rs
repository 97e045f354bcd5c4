//! Protocols through the proxy over real sockets: h2c clients, HTTP/2 (gRPC-style)
//! upstreams with trailers, WebSocket upgrades, DNS-named endpoints, and the body limit
//! on a streamed (chunked) body. Tables come from manifests through the compiler (which is
//! why these tests live here: the proxy crate knows no manifest or compiler).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gatehouse_proxy::{Listening, Shared, serve};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn table(manifests: &str) -> gatehouse_table::Table {
    let parsed = gatehouse_api::manifest::parse("test.yaml", manifests);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let (inputs, diags) = gatehouse_compiler::Inputs::from_documents(parsed.documents);
    assert!(diags.is_empty(), "{diags:?}");
    let out = gatehouse_compiler::compile(&inputs);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    out.table
}

fn manifests(echo: SocketAddr) -> String {
    let port = echo.port();
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: h1}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {port}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: h2}}
spec:
  protocol: HTTP2
  endpoints: [{{host: 127.0.0.1, port: {port}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: named}}
spec:
  endpoints: [{{host: localhost, port: {port}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: r}}
spec:
  rules:
    - name: grpc
      matches: [{{path: {{type: Prefix, value: /echo.Echo}}}}]
      backends: [{{upstream: h2}}]
    - name: h2
      matches: [{{path: {{type: Prefix, value: /h2}}}}]
      backends: [{{upstream: h2}}]
    - name: named
      matches: [{{path: {{type: Prefix, value: /named}}}}]
      backends: [{{upstream: named}}]
    - name: h1
      matches: [{{path: {{type: Prefix, value: /}}}}]
      backends: [{{upstream: h1}}]
"#
    )
}

async fn start() -> (Listening, Arc<Shared>, SocketAddr) {
    let echo = gatehouse_testkit::spawn_echo()
        .await
        .expect("echo upstream");
    let shared = Shared::new(table(&manifests(echo))).expect("table prepares");
    let listening = serve("127.0.0.1:0".parse().expect("addr"), shared.clone(), 2).expect("serve");
    let addr = listening.local_addr;
    (listening, shared, addr)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json body")
}

/// An h2c (prior knowledge) connection to the proxy.
async fn h2c(proxy: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_multiplexed() {
    let (listening, _, proxy) = start().await;
    let sender = h2c(proxy).await;
    // Several streams at once on one connection.
    let mut streams = Vec::new();
    for i in 0..8 {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            let req = Request::get(format!("http://gw.test/items/{i}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = sender.send_request(req).await.expect("response");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, json(&body))
        }));
    }
    for (i, s) in streams.into_iter().enumerate() {
        let (status, v) = s.await.expect("stream task");
        assert_eq!(status, StatusCode::OK);
        // The HTTP/1.1 upstream sees an origin-form request with the client's authority.
        assert_eq!(v["uri"], format!("/items/{i}"));
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["headers"]["host"], "gw.test");
        assert_eq!(v["headers"]["x-forwarded-host"], "gw.test");
    }
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_keeps_trailers_end_to_end() {
    let (listening, _, proxy) = start().await;
    let mut sender = h2c(proxy).await;
    // A length-prefixed gRPC message: not compressed, 5 bytes.
    let message = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let req = Request::post("http://gw.test/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message.clone()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "echo");
    assert_eq!(collected.to_bytes(), message);
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_reach_an_http2_upstream() {
    let (listening, _, proxy) = start().await;
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("/h2/x?y=1")
            .header("host", "gw.test")
            .body(Full::new(Bytes::new()))
            .expect("request");
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        let v = json(&resp.into_body().collect().await.expect("body").to_bytes());
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["uri"], "http://gw.test/h2/x?y=1");
        assert!(v["headers"].get("host").is_none(), ":authority carries it");
    }
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through() {
    let (listening, _, proxy) = start().await;
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://gw.test/chat", stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(resp.headers().contains_key("x-request-id"));
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.expect("send");
        let back = ws.next().await.expect("a message").expect("not an error");
        assert_eq!(back, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let back = ws.next().await.expect("a message").expect("not an error");
    assert_eq!(back, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_named_endpoints_are_resolved() {
    let (listening, shared, proxy) = start().await;
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/named/x")
        .header("host", "gw.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.expect("body");
    // Applying the same table again keeps the resolved state: no lookup gap.
    shared
        .apply(shared.table().as_ref().clone())
        .expect("applies");
    let req = Request::get("/named/y")
        .header("host", "gw.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_413() {
    let (listening, _, proxy) = start().await;
    // 11 MiB in 1 MiB chunks, no Content-Length: sent chunked, on a raw socket read while
    // it is written. The gateway answers 413 and closes as soon as the limit is crossed,
    // so the rest of the upload may fail to send; the answer must arrive all the same.
    let (mut rd, mut wr) = TcpStream::connect(proxy)
        .await
        .expect("connect")
        .into_split();
    let writer = tokio::spawn(async move {
        let head = b"POST /upload HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n";
        if wr.write_all(head).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..11 {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut answer = Vec::new();
    // Ends with EOF, or a reset once the gateway closed; what was read is kept either way.
    let _ = rd.read_to_end(&mut answer).await;
    let _ = writer.await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413 "), "{answer}");
    assert!(
        answer.contains("content-type: application/problem+json"),
        "{answer}"
    );

    // Under the limit, a chunked body is forwarded whole.
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let chunks =
        (0..3).map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"abc"))));
    let req = Request::post("/upload")
        .header("host", "gw.test")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let v = json(&resp.into_body().collect().await.expect("body").to_bytes());
    assert_eq!(v["body"], "abcabcabc");
    listening.shutdown(Duration::from_secs(5));
}
