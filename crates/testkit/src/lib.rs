//! # gatehouse-testkit: real upstreams for tests and demos
//!
//! [`echo`] answers every request with a JSON description of what it received (method,
//! URI, HTTP version, headers, body), so tests can assert on what the gateway forwarded.
//! A path that starts with `/slow` waits two seconds first (timeouts); `/status/NNN`
//! answers with that status.
//!
//! Every answer names the server in `x-echo-server` (its listening address). Query
//! parameters shape the answer for cache tests: `cache-control=V`, `vary=V` and
//! `set-cookie=V` set those response headers (values taken as written, `+` for a
//! space), `pad=N` adds N bytes to the JSON body (field `pad`).
//!
//! It speaks HTTP/1.1 and h2c (prior knowledge) on the same port, like the gateway. Two
//! more behaviours make it a stand-in for the upstreams users proxy to:
//! - a `Content-Type: application/grpc*` request is answered gRPC-style: the request
//!   body echoed as the response body, then the trailers `grpc-status: 0` and
//!   `grpc-message: echo`;
//! - a WebSocket upgrade (`Upgrade: websocket`) is accepted, and every message is sent
//!   back as it came.
//!
//! [`redis::RedisServer`] runs a real `redis-server` for the global rate-limit tests.
//! [`fault::spawn_faulty`] starts an upstream whose failures a test switches on and off
//! (refuse, reset, stall, 5xx at a rate, latency, a failing health path).
//! [`otlp::spawn_otlp`] receives OTLP/HTTP trace exports and decodes their spans.

pub mod fault;
pub mod otlp;
pub mod redis;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type EchoBody = BoxBody<Bytes, Infallible>;

fn boxed(bytes: Bytes) -> EchoBody {
    Full::new(bytes).boxed()
}

/// What the echo server answers for `req`.
async fn reply(req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    if req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return Ok(websocket(req));
    }
    if req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"))
    {
        return Ok(grpc(req).await);
    }
    let path = req.uri().path().to_string();
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut json = json;
    let mut extra = Vec::new();
    for pair in uri.split_once('?').map_or("", |(_, q)| q).split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = v.replace('+', " ");
        match k {
            "cache-control" => extra.push((header::CACHE_CONTROL, v)),
            "vary" => extra.push((header::VARY, v)),
            "set-cookie" => extra.push((header::SET_COOKIE, v)),
            "pad" => {
                json["pad"] = "x"
                    .repeat(v.parse::<usize>().unwrap_or(0).min(1 << 24))
                    .into()
            }
            _ => {}
        }
    }
    let mut resp = Response::new(boxed(Bytes::from(json.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    Ok(resp)
}

/// A gRPC-style answer: the body back, then `grpc-status: 0` as a trailer.
async fn grpc(req: Request<Incoming>) -> Response<EchoBody> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("echo"));
    let body = Full::new(body)
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// Accepts a WebSocket upgrade and echoes every message on the new connection.
fn websocket(mut req: Request<Incoming>) -> Response<EchoBody> {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        let mut resp = Response::new(boxed(Bytes::from_static(b"missing Sec-WebSocket-Key")));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                // Reading on sends tungstenite's close reply and then ends the stream.
                continue;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(boxed(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

/// Serves the echo upstream on `listener` until the runtime stops. Every answer
/// carries `x-echo-server: <address it listens on>`, so tests can tell endpoints apart.
pub async fn echo(listener: TcpListener) {
    let me = listener
        .local_addr()
        .ok()
        .and_then(|a| HeaderValue::from_str(&a.to_string()).ok())
        .unwrap_or(HeaderValue::from_static("unknown"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let me = me.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let me = me.clone();
                async move {
                    let mut resp = reply(req).await?;
                    resp.headers_mut().insert("x-echo-server", me);
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Starts an echo upstream on a free loopback port; returns its address.
pub async fn spawn_echo() -> std::io::Result<SocketAddr> {
    spawn_echo_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
}

/// Starts an echo upstream on `addr` (port 0: a free one); returns its address.
pub async fn spawn_echo_on(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(echo(listener));
    Ok(addr)
}
