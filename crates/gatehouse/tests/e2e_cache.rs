//! The `cache` policy end to end: the built `gatehouse run` over a folder of manifests,
//! the echo upstream behind it (its answer repeats the request id the gateway sent it,
//! so two identical bodies mean one upstream request), raw HTTP/1.1 requests.

mod common;

use std::sync::{Arc, Mutex, Weak};

use common::{Gateway, RawResponse, eventually, request, upstream_runtime};

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: cache}
spec:
  hosts: [cache.test]
  rules:
    - name: items
      matches: [{path: {type: Prefix, value: /items}}]
      backends: [{upstream: echo}]
      policies:
        cache: {ttl: 60s, vary: [Accept-Language], maxEntryBytes: 4096}
    - name: slow
      matches: [{path: {type: Prefix, value: /slow}}]
      backends: [{upstream: echo}]
      policies:
        cache: {ttl: 60s}
    - name: short
      matches: [{path: {type: Prefix, value: /short}}]
      backends: [{upstream: echo}]
      policies:
        cache: {ttl: 1s}
    - name: stubborn
      matches: [{path: {type: Prefix, value: /status}}]
      backends: [{upstream: echo}]
      policies:
        cache: {ttl: 60s, respectCacheControl: false, statuses: [200, 404]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: other}
spec:
  hosts: [other.test]
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
      policies:
        cache: {ttl: 60s}
"#;

fn start() -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let text = MANIFESTS.replace("@ECHO@", &echo.port().to_string());
    Gateway::serve(upstreams, &[("cache.yaml", text)])
}

fn gateway() -> Arc<Gateway> {
    static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

fn get(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(gw.http, "GET", host, target, headers)
}

fn x_cache(r: &RawResponse) -> &str {
    r.header("x-cache").unwrap_or("(none)")
}

#[test]
fn a_miss_is_stored_and_the_next_request_is_a_hit_with_age() {
    let gw = gateway();
    let first = get(&gw, "cache.test", "/items/1", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(first.header("age"), None);
    let second = get(&gw, "cache.test", "/items/1", &[]);
    assert_eq!(x_cache(&second), "HIT");
    assert!(
        second
            .header("age")
            .and_then(|a| a.parse::<u64>().ok())
            .is_some()
    );
    // The same upstream answer (it names the first request's id), but the second
    // response has its own request id.
    assert_eq!(second.body, first.body);
    assert_ne!(second.header("x-request-id"), first.header("x-request-id"));
    assert_eq!(
        second
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(second.body.len())
    );
    // HEAD is answered from GET's entry, without a body.
    let head = request(gw.http, "HEAD", "cache.test", "/items/1", &[]);
    assert_eq!(x_cache(&head), "HIT");
    assert!(head.body.is_empty());
    // The query is part of the key.
    assert_eq!(
        x_cache(&get(&gw, "cache.test", "/items/1?page=2", &[])),
        "MISS"
    );
}

#[test]
fn vary_headers_key_separate_entries() {
    let gw = gateway();
    let fr = [("Accept-Language", "fr")];
    let en = [("Accept-Language", "en")];
    assert_eq!(x_cache(&get(&gw, "cache.test", "/items/vary", &fr)), "MISS");
    assert_eq!(x_cache(&get(&gw, "cache.test", "/items/vary", &en)), "MISS");
    let again = get(&gw, "cache.test", "/items/vary", &fr);
    assert_eq!(x_cache(&again), "HIT");
    let echoed: serde_json::Value = again.json();
    assert_eq!(echoed["headers"]["accept-language"], "fr");
}

#[test]
fn uncacheable_requests_bypass_and_are_counted() {
    let gw = gateway();
    let post = request(
        gw.http,
        "POST",
        "cache.test",
        "/items/b",
        &[("Content-Length", "0")],
    );
    assert_eq!(x_cache(&post), "BYPASS");
    let authorized = get(
        &gw,
        "cache.test",
        "/items/b",
        &[("Authorization", "Bearer t")],
    );
    assert_eq!(x_cache(&authorized), "BYPASS");
    let no_store = get(
        &gw,
        "cache.test",
        "/items/b",
        &[("Cache-Control", "no-store")],
    );
    assert_eq!(x_cache(&no_store), "BYPASS");
    // None of them stored anything.
    assert_eq!(x_cache(&get(&gw, "cache.test", "/items/b", &[])), "MISS");
    let metrics = request(gw.admin, "GET", "localhost", "/metrics", &[]).text();
    for result in ["miss", "bypass"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "gatehouse_cache_requests_total{{route=\"default/cache\",result=\"{result}\"}}"
            ))),
            "{result}: {metrics}"
        );
    }
}

#[test]
fn upstream_cache_control_is_honoured_unless_told_otherwise() {
    let gw = gateway();
    for cc in ["no-store", "private", "no-cache"] {
        let target = format!("/items/cc-{cc}?cache-control={cc}");
        assert_eq!(x_cache(&get(&gw, "cache.test", &target, &[])), "MISS");
        assert_eq!(
            x_cache(&get(&gw, "cache.test", &target, &[])),
            "MISS",
            "{cc}"
        );
    }
    // Set-Cookie and an unkeyed Vary are never stored.
    for q in ["set-cookie=session%3D1", "vary=Accept-Encoding"] {
        let target = format!("/items/other?{q}");
        assert_eq!(x_cache(&get(&gw, "cache.test", &target, &[])), "MISS");
        assert_eq!(
            x_cache(&get(&gw, "cache.test", &target, &[])),
            "MISS",
            "{q}"
        );
    }
    // respectCacheControl: false stores regardless, and other statuses when listed.
    let target = "/status/404?cache-control=no-store";
    assert_eq!(x_cache(&get(&gw, "cache.test", target, &[])), "MISS");
    let again = get(&gw, "cache.test", target, &[]);
    assert_eq!((again.status, x_cache(&again)), (404, "HIT"));
}

#[test]
fn a_client_asking_for_a_fresh_copy_refreshes_the_entry() {
    let gw = gateway();
    let first = get(&gw, "cache.test", "/items/fresh", &[]);
    let refreshed = get(
        &gw,
        "cache.test",
        "/items/fresh",
        &[("Cache-Control", "no-cache")],
    );
    assert_eq!(x_cache(&refreshed), "MISS");
    assert_ne!(refreshed.body, first.body);
    let after = get(&gw, "cache.test", "/items/fresh", &[]);
    assert_eq!(x_cache(&after), "HIT");
    assert_eq!(after.body, refreshed.body);
}

#[test]
fn entries_expire_after_their_ttl() {
    let gw = gateway();
    assert_eq!(x_cache(&get(&gw, "cache.test", "/short/1", &[])), "MISS");
    assert_eq!(x_cache(&get(&gw, "cache.test", "/short/1", &[])), "HIT");
    // An upstream max-age shorter than the ttl wins.
    let target = "/items/brief?cache-control=max-age=1";
    assert_eq!(x_cache(&get(&gw, "cache.test", target, &[])), "MISS");
    assert!(
        eventually(|| x_cache(&get(&gw, "cache.test", "/short/1", &[])) == "MISS"),
        "the 1s entry never expired"
    );
    assert!(
        eventually(|| x_cache(&get(&gw, "cache.test", target, &[])) == "MISS"),
        "the max-age=1 entry never expired"
    );
}

#[test]
fn bodies_over_max_entry_bytes_are_passed_on_whole_and_not_stored() {
    let gw = gateway();
    let target = "/items/big?pad=10000";
    for _ in 0..2 {
        let r = get(&gw, "cache.test", target, &[]);
        assert_eq!(x_cache(&r), "MISS");
        assert_eq!(r.json()["pad"].as_str().map(str::len), Some(10000));
    }
}

#[test]
fn purge_evicts_one_route_or_everything() {
    let gw = gateway();
    get(&gw, "cache.test", "/items/purge", &[]);
    get(&gw, "other.test", "/purge", &[]);
    assert_eq!(x_cache(&get(&gw, "cache.test", "/items/purge", &[])), "HIT");
    assert_eq!(x_cache(&get(&gw, "other.test", "/purge", &[])), "HIT");

    let purged = request(
        gw.admin,
        "POST",
        "localhost",
        "/cache/purge?route=default/other",
        &[("Content-Length", "0")],
    );
    assert_eq!(purged.status, 200, "{purged:?}");
    assert_eq!(purged.json()["purged"], "default/other");
    assert!(
        eventually(|| x_cache(&get(&gw, "other.test", "/purge", &[])) == "MISS"),
        "the route's entries were not purged"
    );
    assert_eq!(x_cache(&get(&gw, "cache.test", "/items/purge", &[])), "HIT");

    let all = request(
        gw.admin,
        "POST",
        "localhost",
        "/cache/purge",
        &[("Content-Length", "0")],
    );
    assert_eq!(all.json()["purged"], "all");
    assert_eq!(
        x_cache(&get(&gw, "cache.test", "/items/purge", &[])),
        "MISS"
    );
}

#[test]
fn concurrent_misses_for_one_key_collapse_into_one_upstream_request() {
    let gw = gateway();
    // `/slow...` makes the echo wait two seconds: every request below arrives while the
    // first is still being fetched.
    let answers: Vec<RawResponse> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| get(&gw, "cache.test", "/slow/collapse", &[])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    let misses = answers.iter().filter(|r| x_cache(r) == "MISS").count();
    assert_eq!(misses, 1, "{answers:?}");
    for r in &answers {
        assert_eq!(r.status, 200);
        // One upstream answer for all of them.
        assert_eq!(r.body, answers[0].body);
    }
}

#[test]
fn lint_reports_no_unsupported_value_for_cache() {
    let (ok, text) = common::lint(&MANIFESTS.replace("@ECHO@", "8080"), &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("UnsupportedValue"), "{text}");
}
