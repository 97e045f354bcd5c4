//! Service aggregation and traffic mirroring end to end (`spec/api.md` ApiRoute rule
//! `aggregate` and `mirror`; `spec/runtime.md` `gatehouse_mirror_requests_total`): the
//! built `gatehouse run` in front of the echo upstream and fault-injection upstreams
//! (`gatehouse_testkit::fault`), which answer `{"server", "path"}` and which a test
//! slows down, stalls, fails or resets.
//!
//! Each test runs its own gateway and upstreams. The one comparison of speed (a stalled
//! mirror must not slow the primary) is a ratio of two routes measured in the same run.

mod common;

use std::time::{Duration, Instant};

use common::{
    LoggedGateway, RawResponse, assert_problem, eventually, faulty, metric, request, upstream,
    upstream_runtime,
};
use gatehouse_testkit::fault::dead_addr;
use serde_json::json;

/// An ApiRoute for host `agg.test` with `rules` (YAML, each starting `- name:`,
/// indented four spaces).
fn route(rules: &str) -> String {
    format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: agg}}\nspec:\n  hosts: [agg.test]\n  rules:\n{rules}---\n"
    )
}

fn get(g: &LoggedGateway, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(g.http, "GET", "agg.test", target, headers)
}

/// A 200 JSON answer's document.
fn ok_json(r: &RawResponse) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    r.json()
}

// === aggregate ===

#[test]
fn keyed_and_deep_merges_build_one_answer_from_two_services() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let f = faulty(&rt, 1);
    let files = [
        upstream("users", &[echo], ""),
        upstream("orders", &[f[0].addr()], ""),
        route(
            "    - name: keyed
      matches: [{path: {type: Template, value: \"/profile/{id}\"}}]
      aggregate:
        calls:
          - {name: user, upstream: users, path: \"/users/${path.id}\"}
          - {name: orders, upstream: orders, path: \"/orders/${path.id}\"}
    - name: deep
      matches: [{path: {type: Template, value: \"/merged/{id}\"}}]
      aggregate:
        merge: Deep
        calls:
          - {name: user, upstream: users, path: \"/users/${path.id}\"}
          - {name: orders, upstream: orders, path: \"/orders/${path.id}\"}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);

    let doc = ok_json(&get(&g, "/profile/42", &[]));
    let keys: Vec<&String> = doc.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["user", "orders"], "in call order: {doc}");
    assert_eq!(doc["user"]["uri"], "/users/42", "{doc}");
    assert_eq!(doc["user"]["method"], "GET");
    assert_eq!(doc["orders"]["path"], "/orders/42", "{doc}");
    assert_eq!(doc["orders"]["server"], f[0].addr().to_string());

    // Deep: the echo's keys (method, uri, headers, body) and the fault upstream's
    // (server, path) side by side in one object.
    let doc = ok_json(&get(&g, "/merged/7", &[]));
    assert_eq!(doc["uri"], "/users/7", "{doc}");
    assert_eq!(doc["path"], "/orders/7", "{doc}");
    assert_eq!(doc["server"], f[0].addr().to_string());
    assert!(doc.get("errors").is_none(), "{doc}");
}

#[test]
fn a_deep_merge_follows_call_order_when_the_later_call_answers_first() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    // The first call is slow: it answers after the second every time.
    f[0].latency(Duration::from_millis(150));
    let files = [
        upstream("slow", &[f[0].addr()], ""),
        upstream("fast", &[f[1].addr()], ""),
        route(
            "    - name: deep
      matches: [{path: {type: Exact, value: /deep}}]
      aggregate:
        merge: Deep
        calls:
          - {name: first, upstream: slow, path: /first}
          - {name: second, upstream: fast, path: /second}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    for _ in 0..5 {
        let doc = ok_json(&get(&g, "/deep", &[]));
        // Both answer "server" and "path": the later call in call order wins, though
        // it answered first.
        assert_eq!(doc["server"], f[1].addr().to_string(), "{doc}");
        assert_eq!(doc["path"], "/second", "{doc}");
    }
    assert_eq!((f[0].requests(), f[1].requests()), (5, 5));
}

#[test]
fn partial_lists_a_failed_call_and_fail_answers_502_naming_it() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    f[1].fail_percent(100.0, 500);
    let files = [
        upstream("good", &[f[0].addr()], ""),
        upstream("bad", &[f[1].addr()], ""),
        route(
            "    - name: partial
      matches: [{path: {type: Exact, value: /partial}}]
      aggregate:
        calls:
          - {name: good, upstream: good, path: /g}
          - {name: bad, upstream: bad, path: /b}
    - name: fail
      matches: [{path: {type: Exact, value: /fail}}]
      aggregate:
        onError: Fail
        calls:
          - {name: good, upstream: good, path: /g}
          - {name: bad, upstream: bad, path: /b}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);

    let doc = ok_json(&get(&g, "/partial", &[]));
    assert_eq!(doc["good"]["path"], "/g", "{doc}");
    assert!(doc.get("bad").is_none(), "{doc}");
    let errors = doc["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["call"], "bad");
    assert_eq!(errors[0]["status"], 502);
    assert_eq!(errors[0]["upstreamStatus"], 500);
    assert_eq!(errors[0]["type"], "about:blank");
    assert!(errors[0]["title"].is_string() && errors[0]["detail"].is_string());

    let problem = assert_problem(&get(&g, "/fail", &[]), 502);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bad")),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["call"], "bad", "{problem}");
    assert_eq!(problem["errors"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_call_stalling_past_the_timeout_fails_without_holding_the_answer() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    f[1].stall(true);
    let files = [
        upstream("good", &[f[0].addr()], ""),
        upstream("stuck", &[f[1].addr()], ""),
        route(
            "    - name: partial
      matches: [{path: {type: Exact, value: /partial}}]
      aggregate:
        timeout: 300ms
        calls:
          - {name: good, upstream: good, path: /g}
          - {name: stuck, upstream: stuck, path: /s}
    - name: fail
      matches: [{path: {type: Exact, value: /fail}}]
      aggregate:
        timeout: 300ms
        onError: Fail
        calls:
          - {name: good, upstream: good, path: /g}
          - {name: stuck, upstream: stuck, path: /s}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);

    let doc = ok_json(&get(&g, "/partial", &[]));
    assert_eq!(doc["good"]["path"], "/g", "{doc}");
    assert_eq!(doc["errors"][0]["call"], "stuck", "{doc}");
    assert_eq!(doc["errors"][0]["status"], 504, "{doc}");

    let problem = assert_problem(&get(&g, "/fail", &[]), 502);
    assert_eq!(problem["errors"][0]["call"], "stuck", "{problem}");
    assert_eq!(problem["errors"][0]["status"], 504, "{problem}");
}

#[test]
fn templates_read_path_query_and_header_each_encoded_for_its_place() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let files = [
        upstream("echo", &[echo], ""),
        route(
            "    - name: t
      matches: [{path: {type: Template, value: \"/t/{id}\"}}]
      aggregate:
        calls:
          - name: seen
            upstream: echo
            path: \"/items/${path.id}/${header.x-region}?q=${query.q}&lang=${header.accept-language}\"
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    let doc = ok_json(&get(
        &g,
        "/t/abc?q=a%26b%3Dc",
        &[("x-region", "../eu"), ("accept-language", "fr")],
    ));
    // The header's `/` cannot make a path segment; the query value's `&` and `=` stay
    // inside one parameter.
    assert_eq!(
        doc["seen"]["uri"], "/items/abc/..%2Feu?q=a%26b%3Dc&lang=fr",
        "{doc}"
    );
    // The call carried what says who and where the caller is, not the rest.
    assert_eq!(doc["seen"]["headers"]["accept-language"], "fr", "{doc}");
    assert_eq!(doc["seen"]["headers"]["accept"], "application/json");
    assert!(doc["seen"]["headers"]["x-request-id"].is_string(), "{doc}");
    assert_eq!(doc["seen"]["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(doc["seen"]["headers"].get("x-region").is_none(), "{doc}");
}

#[test]
fn a_call_through_an_upstream_with_retries_hides_a_resetting_and_a_dead_endpoint() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 3);
    let dead = rt.block_on(dead_addr()).expect("dead address");
    f[1].reset(true);
    let retries = "  retries: {attempts: 2, on: [ConnectFailure, Reset], backoff: {base: 1ms, max: 5ms}, budget: {percent: 100, minPerSecond: 100}}\n";
    let files = [
        upstream("flaky", &[f[0].addr(), f[1].addr(), dead], retries),
        upstream("other", &[f[2].addr()], ""),
        route(
            "    - name: a
      matches: [{path: {type: Exact, value: /a}}]
      aggregate:
        onError: Fail
        calls:
          - {name: flaky, upstream: flaky, path: /f}
          - {name: other, upstream: other, path: /o}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    for _ in 0..20 {
        let doc = ok_json(&get(&g, "/a", &[]));
        assert_eq!(doc["flaky"]["server"], f[0].addr().to_string(), "{doc}");
    }
    assert!(f[1].requests() > 0, "the resetting endpoint was tried");
    assert!(
        metric(
            &g,
            "gatehouse_upstream_retries_total{upstream=\"default/flaky\",result=\"sent\"}"
        ) > 0.0
    );
}

#[test]
fn an_aggregate_under_an_api_key_policy_needs_a_key_and_calls_carry_no_key() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let files = [
        upstream("echo", &[echo], ""),
        "apiVersion: v1
kind: Secret
metadata:
  name: alice
  namespace: default
  labels: {gatehouse.dev/consumer: alice}
stringData:
  api-key: k-alice-123
---
"
        .to_string(),
        route(
            "    - name: mine
      matches: [{path: {type: Exact, value: /mine}}]
      policies:
        authentication: {apiKey: {}}
      aggregate:
        calls:
          - {name: me, upstream: echo, path: \"/who/${consumer}\"}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    let r = get(&g, "/mine", &[]);
    assert_problem(&r, 401);
    assert_problem(&get(&g, "/mine", &[("x-api-key", "wrong")]), 401);

    let doc = ok_json(&get(&g, "/mine", &[("x-api-key", "k-alice-123")]));
    assert_eq!(doc["me"]["uri"], "/who/alice", "{doc}");
    assert!(
        doc["me"]["headers"].get("x-api-key").is_none(),
        "the key stays at the gateway: {doc}"
    );
}

#[test]
fn the_merged_answer_goes_through_the_response_phases() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    let files = [
        upstream("u", &[f[0].addr()], ""),
        route(
            "    - name: shaped
      matches: [{path: {type: Exact, value: /shaped}}]
      policies:
        responseTransform: {headers: {set: {X-Shaped: \"yes\"}}, body: {remove: [\"/one/server\"]}}
        cache: {ttl: 60s}
      aggregate:
        calls:
          - {name: one, upstream: u, path: /1}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    let r = get(&g, "/shaped", &[]);
    let doc = ok_json(&r);
    assert_eq!(r.header("x-shaped"), Some("yes"), "{r:?}");
    assert_eq!(doc, json!({"one": {"path": "/1"}}));
    assert_eq!(r.header("x-cache"), Some("MISS"), "{r:?}");
    let again = get(&g, "/shaped", &[]);
    assert_eq!(again.header("x-cache"), Some("HIT"), "{again:?}");
    assert_eq!(f[0].requests(), 1, "the second answer came from the cache");
}

// === mirror ===

#[test]
fn every_request_is_mirrored_while_the_client_gets_the_primary_answer() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    let (primary, shadow) = (&f[0], &f[1]);
    let files = [
        upstream("primary", &[primary.addr()], ""),
        upstream("shadow", &[shadow.addr()], ""),
        route(
            "    - name: m
      matches: [{path: {type: Prefix, value: /m}}]
      backends: [{upstream: primary}]
      mirror: {upstream: shadow}
    - name: half
      matches: [{path: {type: Prefix, value: /half}}]
      backends: [{upstream: primary}]
      mirror: {upstream: shadow, percent: 50}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    for i in 0..20 {
        let r = get(&g, &format!("/m/{i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("x-echo-server"),
            Some(&*primary.addr().to_string())
        );
    }
    // A request with a body is copied with it.
    let raw = "POST /m/post HTTP/1.1\r\nhost: agg.test\r\ncontent-type: application/json\r\ncontent-length: 10\r\nconnection: close\r\n\r\n{\"a\":\"b\"} ";
    let r = common::send_raw(g.http, raw.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        eventually(|| shadow.requests() == 21),
        "the shadow saw {} of 21",
        shadow.requests()
    );
    assert_eq!(primary.requests(), 21);
    assert_eq!(
        metric(
            &g,
            "gatehouse_mirror_requests_total{upstream=\"default/shadow\",result=\"sent\"}"
        ),
        21.0
    );

    // Half of 40 more: each worker copies every other request it serves, so the total
    // is 20 give or take one per worker.
    for i in 0..40 {
        assert_eq!(get(&g, &format!("/half/{i}"), &[]).status, 200);
    }
    // Copies are counted as they leave, so once the shadow saw as many, all arrived.
    let sent = "gatehouse_mirror_requests_total{upstream=\"default/shadow\",result=\"sent\"}";
    assert!(eventually(|| shadow.requests() as f64 == metric(&g, sent)));
    let half = shadow.requests() - 21;
    assert!((18..=22).contains(&half), "{half} of 40 copied at 50%");
}

#[test]
fn a_body_over_the_mirror_bound_goes_to_the_primary_only() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let f = faulty(&rt, 1);
    let shadow = &f[0];
    let files = [
        upstream("primary", &[echo], ""),
        upstream("shadow", &[shadow.addr()], ""),
        route(
            "    - name: m
      backends: [{upstream: primary}]
      mirror: {upstream: shadow}
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    let post = |body: &str| {
        let raw = format!(
            "POST /upload HTTP/1.1\r\nhost: agg.test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        common::send_raw(g.http, raw.as_bytes())
    };
    // 64 KiB is copied; one byte more is not.
    let small = "s".repeat(64 * 1024);
    let large = "l".repeat(64 * 1024 + 1);
    for body in [&small, &large] {
        let r = post(body);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            common::echoed(&r).body.len(),
            body.len(),
            "the primary got it whole"
        );
    }
    let series = |result: &str| {
        format!(
            "gatehouse_mirror_requests_total{{upstream=\"default/shadow\",result=\"{result}\"}}"
        )
    };
    assert!(eventually(|| shadow.requests() == 1));
    assert_eq!(metric(&g, &series("sent")), 1.0);
    assert_eq!(metric(&g, &series("dropped_body_too_large")), 1.0);
}

/// The p99 of `n` sequential GETs of `target`, in microseconds.
fn p99(g: &LoggedGateway, target: &str, n: usize) -> u128 {
    let mut took: Vec<u128> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let r = get(g, target, &[]);
            assert_eq!(r.status, 200, "{r:?}");
            t.elapsed().as_micros()
        })
        .collect();
    took.sort_unstable();
    took[(n * 99 / 100).min(n - 1)]
}

#[test]
fn a_stalled_mirror_neither_slows_the_primary_nor_grows_past_its_bound() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    let (primary, shadow) = (&f[0], &f[1]);
    shadow.stall(true);
    let files = [
        upstream("primary", &[primary.addr()], ""),
        // A long timeout: copies stay stuck for the whole test.
        upstream("shadow", &[shadow.addr()], "  timeouts: {request: 60s}\n"),
        route(
            "    - name: mirrored
      matches: [{path: {type: Prefix, value: /mirrored}}]
      backends: [{upstream: primary}]
      mirror: {upstream: shadow}
    - name: plain
      matches: [{path: {type: Prefix, value: /plain}}]
      backends: [{upstream: primary}]
",
        ),
    ]
    .concat();
    let g = LoggedGateway::serve_with(
        rt,
        &[("gateway.yaml", files)],
        &["--mirror-max-in-flight", "8"],
    );
    // Warm both routes' connections.
    p99(&g, "/plain", 20);
    p99(&g, "/mirrored", 20);
    // Interleaved rounds, so that whatever else the machine does falls on both alike.
    // Measured again (up to three times) when a burst of other work on the machine (the
    // other tests of this binary run beside it) lands on one side: a mirror that really
    // slowed the primary does so every time.
    let mut ratio = f64::INFINITY;
    // Mirrored requests sent: the 20 that warmed the route, then 500 per measurement.
    let mut sent = 20;
    for _ in 0..3 {
        sent += 500;
        let (mut plain, mut mirrored) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            plain.push(p99(&g, "/plain", 100));
            mirrored.push(p99(&g, "/mirrored", 100));
        }
        plain.sort_unstable();
        mirrored.sort_unstable();
        ratio = mirrored[2] as f64 / plain[2].max(1) as f64;
        eprintln!(
            "p99 of the primary, mirrored to a stalled upstream / not mirrored: {ratio:.2} (median of 5 rounds: {} µs / {} µs)",
            mirrored[2], plain[2]
        );
        if ratio < 3.0 {
            break;
        }
    }
    // A copy that held its request would make each one wait for the 60 s timeout.
    assert!(
        ratio < 3.0,
        "the stalled mirror slowed the primary: ×{ratio:.2}"
    );

    // The mirrored requests, 8 copies in flight at most: the rest dropped and counted.
    assert_eq!(shadow.requests(), 8, "copies reaching the stalled shadow");
    assert!(shadow.peak_in_flight() <= 8);
    assert_eq!(
        metric(
            &g,
            "gatehouse_mirror_requests_total{upstream=\"default/shadow\",result=\"sent\"}"
        ),
        8.0
    );
    assert_eq!(
        metric(
            &g,
            "gatehouse_mirror_requests_total{upstream=\"default/shadow\",result=\"dropped_in_flight\"}"
        ),
        f64::from(sent - 8)
    );
}

#[test]
fn explain_shows_the_calls_of_an_aggregate_and_lint_names_a_missing_call_upstream() {
    let text = [
        upstream("users", &["127.0.0.1:9".parse().expect("addr")], ""),
        route(
            "    - name: a
      matches: [{path: {type: Template, value: \"/p/{id}\"}}]
      aggregate:
        calls:
          - {name: user, upstream: users, path: \"/users/${path.id}\"}
          - {name: orders, upstream: nowhere, path: \"/orders?user=${path.id}&who=${consumer}\"}
",
        ),
    ]
    .concat();
    let (ok, out) = common::lint(&text, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("aggregate.calls[1].upstream") && out.contains("default/nowhere not found"),
        "{out}"
    );
    assert!(out.contains("${consumer} is always empty"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), &text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["explain", "-f"])
        .arg(dir.path())
        .args(["GET", "http://agg.test/p/1"])
        .output()
        .expect("explain runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "call user: GET /users/${path.id} -> default/users: 1 endpoint(s) 127.0.0.1:9"
        ),
        "{text}"
    );
    assert!(
        text.contains("call orders: GET /orders?user=${path.id}&who=${consumer} -> default/nowhere: MISSING (503)"),
        "{text}"
    );
}
