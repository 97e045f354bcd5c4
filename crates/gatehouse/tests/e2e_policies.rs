//! Traffic policies end to end (`spec/api.md`, Policies): the built `gatehouse run` over
//! a folder of manifests, real upstreams behind it, raw HTTP/1.1 requests. Each group
//! of routes has its own host (`cors.test`, `limits.test`, ...).

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::{
    Gateway, RawResponse, assert_problem, echoed, free_port, read_response, request, request_head,
    send_raw, status, upstream_runtime,
};

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: failing}
spec:
  endpoints: [{host: 127.0.0.1, port: @FAILING@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: closed}
spec:
  endpoints: [{host: 127.0.0.1, port: @CLOSED@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: cors}
spec:
  hosts: [cors.test]
  policies:
    cors:
      allowOrigins: ["https://app.example.com", "https://*.example.org"]
      allowMethods: [GET, PUT]
      allowHeaders: [Content-Type, X-Tenant]
      exposeHeaders: [X-Total]
      allowCredentials: true
      maxAge: 10m
  rules:
    - name: items
      matches: [{path: {type: Prefix, value: /items}, methods: [GET, PUT]}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: limits}
spec:
  hosts: [limits.test]
  rules:
    - name: per-client
      matches: [{path: {type: Prefix, value: /per-client}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit: {limits: [{requests: 3, period: 1h}]}
    - name: per-tenant
      matches: [{path: {type: Prefix, value: /per-tenant}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit: {limits: [{requests: 1, period: 1h}], key: {type: Header, name: X-Tenant}}
    - name: throttled
      matches: [{path: {type: Prefix, value: /throttled}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit: {limits: [{requests: 2, period: 2s}], mode: Delay, maxDelay: 5s, key: {type: Route}}
    - name: one-at-a-time
      matches: [{path: {type: Prefix, value: /one-at-a-time}}]
      backends: [{upstream: echo}]
      policies:
        concurrencyLimit: {maxInFlight: 1}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiPolicy
metadata: {name: stamp}
spec:
  requestTransform:
    headers: {set: {X-Stamped: "yes"}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: transform}
spec:
  hosts: [transform.test]
  policyRefs: [{name: stamp}]
  rules:
    - name: headers
      matches: [{path: {type: Prefix, value: /headers}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform:
          headers:
            set: {X-Env: prod, X-Client: "${clientIp}", X-Tenant-Copy: "${header.x-tenant}"}
            add: {X-Via: gatehouse}
            remove: [X-Internal]
          hostname: users.internal
          query: {set: {region: eu}, remove: [debug]}
    - name: stamped
      matches: [{path: {type: Prefix, value: /stamped}}]
      backends: [{upstream: echo}]
    - name: prefix
      matches: [{path: {type: Prefix, value: /public/v1}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform: {path: {replacePrefixMatch: /internal}}
    - name: full
      matches: [{path: {type: Template, value: "/users/{id}/profile"}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform: {path: {replaceFullPath: "/api/v2/profiles/${path.id}"}}
    - name: body
      matches: [{path: {type: Prefix, value: /body}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform:
          body:
            set: {"/meta/source": gateway}
            remove: ["/password"]
            rename: {"/userName": "/username"}
        responseTransform:
          headers: {set: {X-Edited: "true"}, remove: [X-Echo-Server]}
          body: {remove: ["/headers"], set: {"/request": "${requestId}"}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: errors}
spec:
  hosts: [errors.test]
  rules:
    - name: text
      matches: [{path: {type: Prefix, value: /text}}]
      backends: [{upstream: closed}]
      policies:
        errors: {format: Text}
    - name: json
      matches: [{path: {type: Prefix, value: /json}}]
      backends: [{upstream: closed}]
      policies:
        errors: {format: Json}
    - name: hidden
      matches: [{path: {type: Prefix, value: /hidden}}]
      backends: [{upstream: failing}]
      policies:
        errors: {replaceUpstream: [500]}
    - name: override
      matches: [{path: {type: Prefix, value: /override}}]
      backends: [{upstream: closed}]
      policies:
        errors:
          overrides: [{status: 502, contentType: application/json, body: '{"message":"try later"}'}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: validation}
spec:
  hosts: [validation.test]
  rules:
    - name: create
      matches: [{path: {type: Exact, value: /users}, methods: [POST]}]
      backends: [{upstream: echo}]
      policies:
        validation:
          request:
            contentTypes: [application/json]
            maxBodyBytes: 200
            requiredHeaders: [X-Tenant]
            schema:
              type: object
              required: [name]
              properties:
                name: {type: string, minLength: 1}
                age: {type: integer, minimum: 0}
                email: {type: string, format: email}
          response:
            schema: {type: object, required: [method, uri]}
    - name: enforced
      matches: [{path: {type: Prefix, value: /enforced}}]
      backends: [{upstream: echo}]
      policies:
        validation:
          response: {schema: {type: object, required: [total]}}
    - name: reported
      matches: [{path: {type: Prefix, value: /reported}}]
      backends: [{upstream: echo}]
      policies:
        validation:
          response: {schema: {type: object, required: [total]}, mode: Report}
"#;

/// An upstream that answers every request `500` with an HTML body that must not leak.
fn failing_upstream(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    runtime.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "<html>stack trace: secret.rs:42</html>";
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

/// `gatehouse run` over [`MANIFESTS`], with its upstreams.
fn start() -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let failing = failing_upstream(&upstreams);
    let closed = free_port();
    let text = MANIFESTS
        .replace("@ECHO@", &echo.port().to_string())
        .replace("@FAILING@", &failing.port().to_string())
        .replace("@CLOSED@", &closed.port().to_string());
    Gateway::serve(upstreams, &[("policies.yaml", text)])
}

fn gateway() -> Arc<Gateway> {
    static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

fn get(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(gw.http, "GET", host, target, headers)
}

// === lint ===

#[test]
fn lint_reports_no_unsupported_value_for_these_policies() {
    let text = MANIFESTS
        .replace("@ECHO@", "8080")
        .replace("@FAILING@", "8081")
        .replace("@CLOSED@", "8082");
    let (ok, text) = common::lint(&text, &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("UnsupportedValue"), "{text}");
}

// === CORS ===

#[test]
fn cors_preflight_is_answered_by_the_gateway() {
    let gw = gateway();
    // The rule takes GET and PUT only: the preflight (OPTIONS) is still answered.
    let r = request(
        gw.http,
        "OPTIONS",
        "cors.test",
        "/items/1",
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "content-type, x-tenant"),
        ],
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, x-tenant")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(
        r.header("x-echo-server").is_none(),
        "preflight reached the upstream: {r:?}"
    );

    // A method, a header or an origin the policy does not allow: 403, no CORS headers.
    for (origin, method, headers) in [
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "GET", "x-secret"),
        ("https://evil.example.com", "GET", ""),
    ] {
        let mut h = vec![
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
        ];
        if !headers.is_empty() {
            h.push(("Access-Control-Request-Headers", headers));
        }
        let r = request(gw.http, "OPTIONS", "cors.test", "/items/1", &h);
        assert_problem(&r, 403);
        assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    }
}

#[test]
fn cors_decorates_allowed_origins_and_not_foreign_ones() {
    let gw = gateway();
    let r = get(
        gw.as_ref(),
        "cors.test",
        "/items/1",
        &[("Origin", "https://a.b.example.org")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://a.b.example.org")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
    assert!(
        r.header_values("vary").iter().any(|v| v.contains("Origin")),
        "{r:?}"
    );
    // Foreign: served (CORS is enforced by the browser), but without CORS headers.
    let r = get(
        gw.as_ref(),
        "cors.test",
        "/items/1",
        &[("Origin", "https://example.org")],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    // No Origin: not a CORS request.
    let r = get(gw.as_ref(), "cors.test", "/items/1", &[]);
    assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
}

// === rate and concurrency limits ===

#[test]
fn rate_limit_rejects_beyond_the_limit_with_headers_and_a_metric() {
    let gw = gateway();
    for remaining in ["2", "1", "0"] {
        let r = get(gw.as_ref(), "limits.test", "/per-client", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(r.header("ratelimit-remaining"), Some(remaining));
        assert!(r.header("ratelimit-reset").is_some());
    }
    let r = get(gw.as_ref(), "limits.test", "/per-client", &[]);
    let problem = assert_problem(&r, 429);
    assert_eq!(problem["title"], "Too Many Requests");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=1200).contains(&retry), "{retry}");
    let metrics = request(gw.admin, "GET", "localhost", "/metrics", &[]).text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gatehouse_ratelimit_rejected_total{route=\"default/limits\"}")),
        "{metrics}"
    );
}

#[test]
fn header_keys_count_each_value_apart() {
    let gw = gateway();
    let tenant = |t| {
        get(
            gw.as_ref(),
            "limits.test",
            "/per-tenant",
            &[("X-Tenant", t)],
        )
        .status
    };
    assert_eq!(tenant("acme"), 200);
    assert_eq!(tenant("acme"), 429);
    assert_eq!(tenant("globex"), 200);
    assert_eq!(tenant("globex"), 429);
}

#[test]
fn delay_mode_throttles_instead_of_rejecting() {
    let gw = gateway();
    // 2 per 2 s, served in order: the 3rd and 4th wait for their slots (about 1 s
    // apart) instead of being refused.
    let started = Instant::now();
    for _ in 0..4 {
        let r = get(gw.as_ref(), "limits.test", "/throttled", &[]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "4 requests at 1 per second after a burst of 2 were not held: {:?}",
        started.elapsed()
    );
}

#[test]
fn concurrency_limit_answers_503_while_the_slot_is_taken() {
    let gw = gateway();
    // Hold the only slot: a request whose chunked body is not finished yet. A probe
    // sent before the gateway has read that request can take the slot itself, and the
    // held request is then the one refused: let that attempt end and start over.
    let mut held = None;
    for _ in 0..20 {
        let mut conn = TcpStream::connect(gw.http).expect("connect");
        conn.write_all(
            b"POST /one-at-a-time HTTP/1.1\r\nHost: limits.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n",
        )
        .expect("write");
        conn.flush().expect("flush");
        if get(gw.as_ref(), "limits.test", "/one-at-a-time", &[]).status == 503 {
            held = Some(conn);
            break;
        }
        // Let this attempt end (served or refused) so that it holds nothing.
        conn.write_all(b"0\r\n\r\n").expect("finish the body");
        let _ = read_response(&mut BufReader::new(conn), false);
    }
    let mut held = held.expect("the second request was not refused while the first held the slot");
    let r = get(gw.as_ref(), "limits.test", "/one-at-a-time", &[]);
    if r.status == 503 {
        assert_problem(&r, 503);
    }
    held.write_all(b"0\r\n\r\n").expect("finish the body");
    let mut reader = BufReader::new(held);
    let first = read_response(&mut reader, false).expect("first response");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(echoed(&first).body, "hello");
    // The slot is free again.
    assert!(common::eventually(|| get(
        gw.as_ref(),
        "limits.test",
        "/one-at-a-time",
        &[]
    )
    .status
        == 200));
}

// === transformation ===

#[test]
fn request_headers_host_and_query_are_rewritten() {
    let gw = gateway();
    let r = get(
        gw.as_ref(),
        "transform.test",
        "/headers?debug=1&keep=a%2Fb&region=us",
        &[
            ("X-Internal", "secret"),
            ("X-Tenant", "acme"),
            ("X-Via", "edge"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let e = echoed(&r);
    assert_eq!(e.header("x-internal"), None);
    assert_eq!(e.header("x-env"), Some("prod"));
    assert_eq!(e.header("x-client"), Some("127.0.0.1"));
    assert_eq!(e.header("x-tenant-copy"), Some("acme"));
    // A layer replaces a whole field: this rule's requestTransform replaces the
    // ApiPolicy's (which applies on /stamped, below).
    assert_eq!(e.header("x-stamped"), None, "{e:?}");
    assert_eq!(e.header("host"), Some("users.internal"));
    assert_eq!(e.header("x-forwarded-host"), Some("transform.test"));
    assert_eq!(e.uri, "/headers?keep=a%2Fb&region=eu");
}

#[test]
fn paths_are_rewritten_by_prefix_and_by_template() {
    let gw = gateway();
    let e = echoed(&get(
        gw.as_ref(),
        "transform.test",
        "/public/v1/users/7?x=1",
        &[],
    ));
    assert_eq!(e.uri, "/internal/users/7?x=1");
    let e = echoed(&get(gw.as_ref(), "transform.test", "/public/v1", &[]));
    assert_eq!(e.uri, "/internal");
    let e = echoed(&get(
        gw.as_ref(),
        "transform.test",
        "/users/a%20b/profile",
        &[],
    ));
    assert_eq!(e.uri, "/api/v2/profiles/a%20b");
}

#[test]
fn json_bodies_are_edited_both_ways_with_correct_lengths() {
    let gw = gateway();
    let body = r#"{"userName":"ann","password":"hunter2","age":7}"#;
    let mut raw = request_head(
        "POST",
        "transform.test",
        "/body",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &body.len().to_string()),
        ],
    )
    .into_bytes();
    raw.extend_from_slice(body.as_bytes());
    let r = send_raw(gw.http, &raw);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-edited"), Some("true"));
    assert_eq!(r.header("x-echo-server"), None);
    assert_eq!(
        r.header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(r.body.len())
    );
    let answer = r.json();
    // The response edits: headers removed, the request id set.
    assert!(answer.get("headers").is_none(), "{answer}");
    assert_eq!(answer["request"].as_str(), r.header("x-request-id"));
    // The request edits, as the upstream received them.
    let sent: serde_json::Value =
        serde_json::from_str(answer["body"].as_str().expect("echoed body")).expect("JSON body");
    assert_eq!(
        sent,
        serde_json::json!({"age": 7, "username": "ann", "meta": {"source": "gateway"}})
    );

    // Not JSON: 400, and the upstream sees nothing.
    let bad = "{not json";
    let mut raw = request_head(
        "POST",
        "transform.test",
        "/body",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &bad.len().to_string()),
        ],
    )
    .into_bytes();
    raw.extend_from_slice(bad.as_bytes());
    assert_problem(&send_raw(gw.http, &raw), 400);
}

#[test]
fn an_api_policy_applies_where_no_closer_layer_sets_the_field() {
    let gw = gateway();
    let e = echoed(&get(gw.as_ref(), "transform.test", "/stamped", &[]));
    assert_eq!(e.header("x-stamped"), Some("yes"), "{e:?}");
}

// === error handling ===

#[test]
fn error_formats_replacement_and_overrides() {
    let gw = gateway();
    let r = get(gw.as_ref(), "errors.test", "/text", &[]);
    assert_eq!(r.status, 502);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert!(r.text().starts_with("502 Bad Gateway: "), "{}", r.text());

    let r = get(gw.as_ref(), "errors.test", "/json", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["status"], 502);
    assert_eq!(v["requestId"].as_str(), r.header("x-request-id"));

    // The upstream's 500 body is hidden behind the gateway's problem document.
    let r = get(gw.as_ref(), "errors.test", "/hidden", &[]);
    let problem = assert_problem(&r, 500);
    assert!(!r.text().contains("secret.rs"), "{}", r.text());
    assert_eq!(problem["title"], "Internal Server Error");

    let r = get(gw.as_ref(), "errors.test", "/override", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"message":"try later"}"#);

    // Routes without an errors policy keep problem+json.
    assert_eq!(status(gw.http, "/nowhere"), 404);
}

// === validation ===

fn post(
    gw: &Gateway,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Content-Length", &length));
    let mut raw = request_head("POST", host, target, &all).into_bytes();
    raw.extend_from_slice(body.as_bytes());
    send_raw(gw.http, &raw)
}

#[test]
fn request_validation_answers_415_413_and_400_with_each_failing_pointer() {
    let gw = gateway();
    let json = ("Content-Type", "application/json");
    let tenant = ("X-Tenant", "acme");
    // Valid: forwarded, and the echo's answer passes the response schema.
    let r = post(
        &gw,
        "validation.test",
        "/users",
        &[json, tenant],
        r#"{"name":"ann","age":3}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r).body, r#"{"name":"ann","age":3}"#);

    // A required header is missing.
    let r = post(
        &gw,
        "validation.test",
        "/users",
        &[json],
        r#"{"name":"ann"}"#,
    );
    let problem = assert_problem(&r, 400);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("x-tenant")),
        "{problem}"
    );
    // Not an accepted media type.
    let r = post(
        &gw,
        "validation.test",
        "/users",
        &[("Content-Type", "text/plain"), tenant],
        "hi",
    );
    assert_problem(&r, 415);
    // Too large (declared).
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(300));
    assert_problem(
        &post(&gw, "validation.test", "/users", &[json, tenant], &big),
        413,
    );
    // Too large (chunked, no declared length): counted while read.
    let mut raw = request_head(
        "POST",
        "validation.test",
        "/users",
        &[json, tenant, ("Transfer-Encoding", "chunked")],
    )
    .into_bytes();
    raw.extend_from_slice(format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes());
    assert_problem(&send_raw(gw.http, &raw), 413);
    // Not JSON.
    assert_problem(
        &post(&gw, "validation.test", "/users", &[json, tenant], "{nope"),
        400,
    );
    // Schema violations: each failing pointer listed.
    let r = post(
        &gw,
        "validation.test",
        "/users",
        &[json, tenant],
        r#"{"age":-1,"email":"not-an-email"}"#,
    );
    let problem = assert_problem(&r, 400);
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors listed")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    for expected in ["", "/age", "/email"] {
        assert!(
            pointers.contains(&expected),
            "{expected:?} missing in {problem}"
        );
    }
    let metrics = request(gw.admin, "GET", "localhost", "/metrics", &[]).text();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "gatehouse_validation_failures_total{route=\"default/validation\",direction=\"request\"}"
        )),
        "{metrics}"
    );
}

#[test]
fn response_validation_enforces_with_502_or_reports() {
    let gw = gateway();
    // The echo's answer has no `total`: Enforce hides it behind a 502.
    let r = get(gw.as_ref(), "validation.test", "/enforced", &[]);
    let problem = assert_problem(&r, 502);
    assert!(
        problem.get("errors").is_none(),
        "upstream details stay private: {problem}"
    );
    // Report lets it through.
    let r = get(gw.as_ref(), "validation.test", "/reported", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r).method, "GET");
    let metrics = request(gw.admin, "GET", "localhost", "/metrics", &[]).text();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with(
            "gatehouse_validation_failures_total{route=\"default/validation\",direction=\"response\"}"
        ))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 2), "{metrics}");
}
