//! The proxy over real sockets: a real upstream, the proxy's worker threads, a real
//! HTTP client. Tables come from manifests through the compiler, as in production
//! (which is why these tests live here: the proxy crate knows no manifest or compiler).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_proxy::{Listening, Shared, serve};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn table(manifests: &str) -> gatehouse_table::Table {
    let parsed = gatehouse_api::manifest::parse("test.yaml", manifests);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let (inputs, diags) = gatehouse_compiler::Inputs::from_documents(parsed.documents);
    assert!(diags.is_empty(), "{diags:?}");
    gatehouse_compiler::compile(&inputs).table
}

fn manifests(echo: SocketAddr) -> String {
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: echo}}
spec:
  endpoints: [{{host: "{ip}", port: {port}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: dead}}
spec:
  endpoints: [{{host: 127.0.0.1, port: 1}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: r}}
spec:
  rules:
    - name: users
      matches: [{{path: {{type: Template, value: "/users/{{id}}"}}, methods: [GET]}}]
      backends: [{{upstream: echo}}]
    - name: api
      matches: [{{path: {{type: Prefix, value: /api}}}}]
      backends: [{{upstream: echo}}]
    - name: slow
      matches: [{{path: {{type: Exact, value: /slow}}}}]
      backends: [{{upstream: echo}}]
      timeout: 200ms
    - name: slow-ok
      matches: [{{path: {{type: Exact, value: /slow-ok}}}}]
      backends: [{{upstream: echo}}]
    - name: dead
      matches: [{{path: {{type: Exact, value: /dead}}}}]
      backends: [{{upstream: dead}}]
    - name: missing
      matches: [{{path: {{type: Exact, value: /missing}}}}]
      backends: [{{upstream: nowhere}}]
    - name: status
      matches: [{{path: {{type: Exact, value: /status}}}}]
      respond: {{status: 200, contentType: application/json, body: '{{"ok":true}}'}}
    - name: moved
      matches: [{{path: {{type: Template, value: "/old/{{id}}"}}}}]
      redirect: {{scheme: https, hostname: api.example.com, path: "/v2/items/${{path.id}}", statusCode: 301}}
    - name: guarded
      matches: [{{path: {{type: Exact, value: /guarded}}}}]
      backends: [{{upstream: echo}}]
      policyRefs: [{{name: no-such-policy}}]
"#,
        ip = echo.ip(),
        port = echo.port()
    )
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(proxy: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gw.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("json body")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_with_forwarding_headers_and_request_id() {
    let (listening, _, proxy) = start().await;
    let r = send(
        proxy,
        "GET",
        "/api/items?x=1",
        &[("connection", "keep-alive, x-drop"), ("x-drop", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = json(&r.body);
    assert_eq!(v["uri"], "/api/items?x=1");
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw.test");
    assert_eq!(h["forwarded"], "for=127.0.0.1;proto=http;host=\"gw.test\"");
    assert!(
        h.get("x-drop").is_none(),
        "headers named in Connection are not forwarded"
    );
    let rid = r.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(
        h["x-request-id"],
        rid.as_str(),
        "the upstream sees the same request id"
    );
    assert_eq!(rid.len(), 32);
    let tp = h["traceparent"].as_str().expect("a traceparent is started");
    assert!(
        tp.starts_with("00-") && tp.ends_with("-01") && tp.len() == 55,
        "{tp}"
    );

    // A client's request id is kept; the path forwarded is the normalized one.
    let r = send(
        proxy,
        "GET",
        "/x/../api//a/./b",
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    assert_eq!(json(&r.body)["uri"], "/api/a/b");
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_problem_json() {
    let (listening, _, proxy) = start().await;
    let r = send(proxy, "GET", "/nothing", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let v = json(&r.body);
    assert_eq!(v["status"], 404);
    assert_eq!(
        v["instance"],
        r.headers["x-request-id"].to_str().expect("ascii")
    );

    let r = send(proxy, "DELETE", "/users/7", &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET");

    let r = send(proxy, "GET", "/api/a%2Fb", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&r.body)["status"], 400);
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_and_redirect() {
    let (listening, _, proxy) = start().await;
    let r = send(proxy, "GET", "/status", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.body, r#"{"ok":true}"#);

    let r = send(proxy, "GET", "/old/42?q=1", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers["location"],
        "https://api.example.com/v2/items/42?q=1"
    );
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_502_503_504() {
    let (listening, _, proxy) = start().await;
    let r = send(proxy, "GET", "/dead", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(json(&r.body)["status"], 502);

    let r = send(proxy, "GET", "/missing", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    let r = send(proxy, "GET", "/slow", &[]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);

    // A rule whose policy reference does not resolve is not served open.
    let r = send(proxy, "GET", "/guarded", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_table_applies_and_a_broken_one_is_refused() {
    let (listening, shared, proxy) = start().await;
    assert_eq!(
        send(proxy, "GET", "/status", &[]).await.status,
        StatusCode::OK
    );

    let next = table(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: r}
spec:
  rules:
    - matches: [{path: {type: Exact, value: /v2}}]
      respond: {status: 201}
"#,
    );
    shared.apply(next).expect("applies");
    assert_eq!(
        send(proxy, "GET", "/status", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(proxy, "GET", "/v2", &[]).await.status,
        StatusCode::CREATED
    );

    // A table the data plane cannot build (here a regex no compiler would have let
    // through) is refused whole; the running one keeps serving.
    let mut broken = shared.table().as_ref().clone();
    std::sync::Arc::make_mut(&mut broken.routes[0]).rules[0].matches[0].path =
        gatehouse_table::PathMatch::Regex("(".into());
    assert!(shared.apply(broken).is_err());
    assert_eq!(
        send(proxy, "GET", "/v2", &[]).await.status,
        StatusCode::CREATED
    );
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits() {
    let (listening, _, proxy) = start().await;
    let big = "x".repeat(70 * 1024);
    let r = send(proxy, "GET", "/status", &[("x-big", &big)]).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Limits come before routing: an unknown path does not turn it into a 404.
    let r = send(proxy, "GET", "/nowhere", &[("x-big", &big)]).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let r = send(
        proxy,
        "POST",
        "/api/upload",
        &[("content-length", "11534336")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&r.body)["status"], 413);
    listening.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let (listening, _, proxy) = start().await;
    let in_flight = tokio::spawn(async move { send(proxy, "GET", "/slow-ok", &[]).await.status });
    // Wait until the request has reached the proxy: its connection is accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let drained = tokio::task::spawn_blocking(move || listening.shutdown(Duration::from_secs(10)));
    assert_eq!(in_flight.await.expect("request task"), StatusCode::OK);
    drained.await.expect("shutdown completes");
    assert!(
        TcpStream::connect(proxy).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_per_route_rule_method_and_code() {
    let (listening, shared, proxy) = start().await;
    for _ in 0..3 {
        assert_eq!(
            send(proxy, "GET", "/api/x", &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        send(proxy, "GET", "/nothing", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let text = shared.render_metrics(gatehouse_proxy::metrics::exposition::Format::Prometheus);
    assert!(
        text.contains(
            "gatehouse_requests_total{route=\"default/r\",rule=\"api\",method=\"GET\",code=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "gatehouse_requests_total{route=\"\",rule=\"\",method=\"GET\",code=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "gatehouse_request_duration_seconds_count{route=\"default/r\",rule=\"api\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_config_applies_total{result=\"applied\"} 1"),
        "{text}"
    );
    listening.shutdown(Duration::from_secs(5));
}
