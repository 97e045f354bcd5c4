//! OpenTelemetry traces end to end (`--otlp-endpoint` and the `--otlp-*` sampling
//! flags): the built `gatehouse run` exports OTLP/HTTP protobuf to a test receiver
//! (`gatehouse_testkit::otlp`) that decodes every request with the OpenTelemetry
//! project's message definitions. A server span per request, a client span per upstream
//! attempt (retries are siblings), the ids sent upstream in `traceparent`, and traces of
//! errors, 429s and slow requests kept whatever the ratio.

mod common;

use common::{LoggedGateway, echoed, eventually, faulty, request, upstream, upstream_runtime};
use gatehouse_testkit::otlp::{Receiver, Span};

fn routes(upstreams: &str) -> String {
    format!(
        "{upstreams}apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: traced}}
spec:
  hosts: [trace.test]
  rules:
    - name: plain
      matches: [{{path: {{type: Prefix, value: /plain}}}}]
      backends: [{{upstream: echo}}]
    - name: flaky
      matches: [{{path: {{type: Prefix, value: /flaky}}}}]
      backends: [{{upstream: flaky}}]
    - name: slow
      matches: [{{path: {{type: Prefix, value: /slow}}}}]
      backends: [{{upstream: echo}}]
    - name: limited
      matches: [{{path: {{type: Prefix, value: /limited}}}}]
      respond: {{status: 200, contentType: text/plain, body: ok}}
      policies:
        rateLimit: {{limits: [{{requests: 1, period: 1m}}]}}
"
    )
}

/// The gateway with the echo upstream (`echo`) and a fault upstream answering 503
/// (`flaky`, retried twice), exporting to a fresh receiver with `flags` added.
fn tracing_gateway(flags: &[&str]) -> (LoggedGateway, Receiver, std::net::SocketAddr) {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let flaky = faulty(&rt, 1);
    flaky[0].fail_percent(100.0, 503);
    let receiver = rt
        .block_on(gatehouse_testkit::otlp::spawn_otlp())
        .expect("OTLP receiver");
    let retries = "  retries: {attempts: 2, on: [GatewayError], backoff: {base: 1ms, max: 5ms}, budget: {percent: 100, minPerSecond: 100}}\n";
    let manifests = routes(&format!(
        "{}{}",
        upstream("echo", &[echo], ""),
        upstream("flaky", &[flaky[0].addr()], retries)
    ));
    let endpoint = format!("http://{}", receiver.addr());
    let mut all = vec!["--otlp-endpoint", endpoint.as_str()];
    all.extend_from_slice(flags);
    let g = LoggedGateway::serve_with(rt, &[("gateway.yaml", manifests)], &all);
    (g, receiver, echo)
}

/// The spans of trace `trace_id` received so far.
fn trace(r: &Receiver, trace_id: &str) -> Vec<Span> {
    r.spans()
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect()
}

/// The spans of the request answered with `X-Request-Id: id`, once its server span and
/// `at_least` spans in all arrived.
fn spans_of(r: &Receiver, id: &str, at_least: usize) -> Vec<Span> {
    let server = || {
        r.spans()
            .into_iter()
            .find(|s| s.kind == "server" && s.attr("gatehouse.request_id") == Some(id))
    };
    assert!(
        eventually(|| server().is_some_and(|s| trace(r, &s.trace_id).len() >= at_least)),
        "no trace for {id}; received {:?}, refused {:?}",
        r.spans(),
        r.refused()
    );
    let s = server().expect("server span");
    trace(r, &s.trace_id)
}

#[test]
fn a_server_span_per_request_and_a_client_span_per_attempt_linked_to_the_client_and_upstream() {
    let (g, r, echo) = tracing_gateway(&["--otlp-sample-ratio", "1"]);
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let sent = format!("00-{client_trace}-{client_span}-01");
    let resp = request(
        g.http,
        "GET",
        "trace.test",
        "/plain/a?api_key=hidden-123",
        &[("traceparent", &sent), ("x-request-id", "r-plain")],
    );
    assert_eq!(resp.status, 200);
    let spans = spans_of(&r, "r-plain", 2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    let client = spans
        .iter()
        .find(|s| s.kind == "client")
        .expect("client span");

    // The client's trace continues: the server span is a child of the client's span,
    // the attempt a child of the server span.
    assert_eq!(server.trace_id, client_trace);
    assert_eq!(server.parent_span_id, client_span);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_ne!(client.span_id, server.span_id);
    // The upstream was sent the attempt's span as its parent.
    let upstream_saw = echoed(&resp);
    let traceparent = upstream_saw
        .header("traceparent")
        .expect("traceparent upstream");
    assert_eq!(
        traceparent,
        format!("00-{client_trace}-{}-01", client.span_id)
    );

    assert_eq!(server.name, "GET default/traced");
    assert_eq!(server.service_name, "gatehouse");
    assert_eq!(server.scope, "gatehouse");
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("url.path"), Some("/plain/a"));
    assert_eq!(server.attr("server.address"), Some("trace.test"));
    assert_eq!(server.attr("gatehouse.route"), Some("default/traced"));
    assert_eq!(server.attr("gatehouse.rule"), Some("plain"));
    assert_eq!(server.attr("gatehouse.trace.kept"), Some("sampled"));
    assert_eq!(server.status, "unset");
    assert_eq!(client.name, "GET default/echo");
    assert_eq!(client.attr("gatehouse.upstream"), Some("default/echo"));
    assert_eq!(
        client.attr("server.address"),
        Some(echo.ip().to_string().as_str())
    );
    assert_eq!(
        client.attr("server.port"),
        Some(echo.port().to_string().as_str())
    );
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
    // The attempt lies within the request.
    assert!(
        client.start_unix_nano >= server.start_unix_nano,
        "{spans:?}"
    );
    assert!(client.end_unix_nano <= server.end_unix_nano, "{spans:?}");
    assert!(client.start_unix_nano <= client.end_unix_nano);
    // The query (which may hold a credential) is in no span.
    assert!(
        !format!("{spans:?}").contains("hidden-123"),
        "a query value reached a span: {spans:?}"
    );

    // A request without a traceparent starts a trace here: the server span is its root.
    let resp = request(
        g.http,
        "GET",
        "trace.test",
        "/plain/b",
        &[("x-request-id", "r-root")],
    );
    assert_eq!(resp.status, 200);
    let spans = spans_of(&r, "r-root", 2);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    let client = spans
        .iter()
        .find(|s| s.kind == "client")
        .expect("client span");
    assert_eq!(server.parent_span_id, "", "a root span has no parent");
    assert_eq!(client.parent_span_id, server.span_id);
    let traceparent = echoed(&resp).header("traceparent").map(str::to_owned);
    assert_eq!(
        traceparent,
        Some(format!("00-{}-{}-01", server.trace_id, client.span_id))
    );
    assert!(r.refused().is_empty(), "{:?}", r.refused());
    assert!(eventually(|| common::metric(
        &g,
        "gatehouse_trace_spans_total{result=\"exported\"}"
    ) >= 4.0));
}

#[test]
fn error_traces_are_kept_at_ratio_zero_with_each_retry_a_sibling_client_span() {
    let (g, r, _) = tracing_gateway(&["--otlp-sample-ratio", "0", "--otlp-keep-429"]);
    // Successes at ratio 0 are not kept.
    for i in 0..20 {
        let id = format!("ok-{i}");
        assert_eq!(
            request(
                g.http,
                "GET",
                "trace.test",
                "/plain",
                &[("x-request-id", &id)]
            )
            .status,
            200
        );
    }
    // Three attempts, all 503: the answer is 503 and its trace is kept.
    let failed = request(
        g.http,
        "GET",
        "trace.test",
        "/flaky",
        &[("x-request-id", "r-flaky")],
    );
    assert_eq!(failed.status, 503);
    let spans = spans_of(&r, "r-flaky", 4);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    assert_eq!(server.attr("gatehouse.trace.kept"), Some("error"));
    assert_eq!(server.attr("http.response.status_code"), Some("503"));
    assert_eq!(server.status, "error");
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == "client").collect();
    attempts.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(attempts.len(), 3, "one client span per attempt: {spans:?}");
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(
            a.parent_span_id, server.span_id,
            "siblings under the server span"
        );
        assert_eq!(a.attr("http.response.status_code"), Some("503"));
        assert_eq!(a.status, "error");
        let resend = (n > 0).then(|| n.to_string());
        assert_eq!(a.attr("http.request.resend_count"), resend.as_deref());
    }
    let ids: std::collections::BTreeSet<&str> =
        attempts.iter().map(|a| a.span_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "each attempt has a span id of its own");

    // A 429 is kept with --otlp-keep-429 (the first request passes, unkept).
    assert_eq!(
        request(
            g.http,
            "GET",
            "trace.test",
            "/limited",
            &[("x-request-id", "r-pass")]
        )
        .status,
        200
    );
    assert_eq!(
        request(
            g.http,
            "GET",
            "trace.test",
            "/limited",
            &[("x-request-id", "r-429")]
        )
        .status,
        429
    );
    let spans = spans_of(&r, "r-429", 1);
    assert_eq!(spans.len(), 1, "no upstream attempt: {spans:?}");
    assert_eq!(spans[0].attr("gatehouse.trace.kept"), Some("rate_limited"));
    assert_eq!(spans[0].attr("gatehouse.refused"), Some("ratelimited"));

    // Nothing else was kept: no success at ratio 0.
    let servers: Vec<String> = r
        .spans()
        .iter()
        .filter(|s| s.kind == "server")
        .filter_map(|s| s.attr("gatehouse.request_id").map(str::to_owned))
        .collect();
    assert_eq!(
        servers,
        ["r-flaky", "r-429"],
        "only the error traces are kept"
    );
}

#[test]
fn slow_requests_are_kept_whatever_the_ratio_and_a_client_sampled_flag_is_honoured() {
    let (g, r, _) = tracing_gateway(&[
        "--otlp-sample-ratio",
        "0",
        "--otlp-keep-slower-than",
        "500ms",
        "--otlp-service-name",
        "edge-gw",
    ]);
    // The echo upstream waits two seconds on `/slow`.
    let slow = request(
        g.http,
        "GET",
        "trace.test",
        "/slow",
        &[("x-request-id", "r-slow")],
    );
    assert_eq!(slow.status, 200);
    let spans = spans_of(&r, "r-slow", 2);
    let server = spans
        .iter()
        .find(|s| s.kind == "server")
        .expect("server span");
    assert_eq!(server.attr("gatehouse.trace.kept"), Some("slow"));
    assert_eq!(server.service_name, "edge-gw");
    assert!(server.end_unix_nano - server.start_unix_nano >= 500_000_000);
    // Sampled at the end only: the upstream was told the trace is not sampled.
    let sent = echoed(&slow)
        .header("traceparent")
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(sent.ends_with("-00"), "{sent}");

    // A client that marks its trace sampled has it kept, and the upstream told so.
    let sampled = "00-11111111111111111111111111111111-2222222222222222-01";
    let resp = request(
        g.http,
        "GET",
        "trace.test",
        "/plain",
        &[("traceparent", sampled), ("x-request-id", "r-sampled")],
    );
    let spans = spans_of(&r, "r-sampled", 2);
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id == "11111111111111111111111111111111")
    );
    let sent = echoed(&resp)
        .header("traceparent")
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(sent.ends_with("-01"), "{sent}");
    // An unsampled one at ratio 0 is not; its trace id still goes upstream.
    let unsampled = "00-33333333333333333333333333333333-4444444444444444-00";
    let resp = request(
        g.http,
        "GET",
        "trace.test",
        "/plain",
        &[("traceparent", unsampled), ("x-request-id", "r-unsampled")],
    );
    let sent = echoed(&resp)
        .header("traceparent")
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        sent.starts_with("00-33333333333333333333333333333333-"),
        "{sent}"
    );
    assert!(
        !sent.contains("4444444444444444"),
        "the gateway's span is the parent: {sent}"
    );
    // A trace kept after it has arrived (the queue is in order); the unsampled one is
    // not among what was exported.
    let after = "00-55555555555555555555555555555555-6666666666666666-01";
    request(
        g.http,
        "GET",
        "trace.test",
        "/plain",
        &[("traceparent", after), ("x-request-id", "r-after")],
    );
    spans_of(&r, "r-after", 2);
    assert!(trace(&r, "33333333333333333333333333333333").is_empty());
}
