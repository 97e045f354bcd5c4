//! A test OTLP/HTTP receiver: decodes the protobuf `ExportTraceServiceRequest` bodies
//! posted to `/v1/traces` (with the OpenTelemetry project's own message definitions)
//! and keeps the spans for a test to read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::net::TcpListener;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Attribute values as text.
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The instrumentation scope's name.
    pub scope: String,
}

impl Span {
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Count spans without keeping them (a sink for benchmarks).
    count_only: bool,
    received: u64,
    spans: Vec<Span>,
    /// Bodies that were not a valid request (wrong type, not protobuf).
    refused: Vec<String>,
    exports: u64,
}

/// A running receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.state
            .lock()
            .map(|s| s.spans.clone())
            .unwrap_or_default()
    }

    /// Spans received so far (kept or only counted).
    pub fn received(&self) -> u64 {
        self.state.lock().map(|s| s.received).unwrap_or_default()
    }

    /// Export requests received so far.
    pub fn exports(&self) -> u64 {
        self.state.lock().map(|s| s.exports).unwrap_or_default()
    }

    /// Why requests were refused (a test expects none).
    pub fn refused(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.refused.clone())
            .unwrap_or_default()
    }
}

/// Starts a receiver on a free loopback port.
pub async fn spawn_otlp() -> std::io::Result<Receiver> {
    spawn_otlp_on(SocketAddr::from(([127, 0, 0, 1], 0)), false).await
}

/// Starts a receiver on `addr` (port 0: a free one); with `count_only`, spans are
/// decoded and counted, not kept.
pub async fn spawn_otlp_on(addr: SocketAddr, count_only: bool) -> std::io::Result<Receiver> {
    let listener = TcpListener::bind(addr).await?;
    let receiver = Receiver {
        addr: listener.local_addr()?,
        state: Arc::new(Mutex::new(State {
            count_only,
            ..State::default()
        })),
    };
    let state = receiver.state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(receive(req, &state).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(receiver)
}

async fn receive(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        r
    };
    let refuse = |why: String| {
        if let Ok(mut s) = state.lock() {
            s.refused.push(why);
        }
        answer(StatusCode::BAD_REQUEST, Bytes::new())
    };
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return refuse(format!("{} {}", req.method(), req.uri()));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type != "application/x-protobuf" {
        return refuse(format!("content type {content_type:?}"));
    }
    let Ok(body) = req.into_body().collect().await else {
        return refuse("the body failed".into());
    };
    let decoded = match ExportTraceServiceRequest::decode(body.to_bytes()) {
        Ok(d) => d,
        Err(e) => return refuse(format!("not an ExportTraceServiceRequest: {e}")),
    };
    let mut spans = Vec::new();
    for rs in decoded.resource_spans {
        let service_name = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(value_of)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for s in ss.spans {
                spans.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: match s.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value_of(kv)))
                        .collect(),
                    status: match s.status.map(|st| st.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    service_name: service_name.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    if let Ok(mut s) = state.lock() {
        s.exports += 1;
        s.received += spans.len() as u64;
        if !s.count_only {
            s.spans.extend(spans);
        }
    }
    let body = ExportTraceServiceResponse::default().encode_to_vec();
    answer(StatusCode::OK, Bytes::from(body))
}

fn value_of(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
