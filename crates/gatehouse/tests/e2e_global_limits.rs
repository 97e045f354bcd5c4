//! `rateLimit` with `scope: Global` end to end: two `gatehouse run` replicas share one
//! limit through a real `redis-server` started by the test (`--redis`), and each
//! `failureMode` is checked with Redis down. Without `redis-server` the tests skip,
//! unless `GATEHOUSE_REQUIRE_REDIS` is set (CI), where they fail.

mod common;

use common::{Gateway, RawResponse, assert_problem, eventually, request, upstream_runtime};
use gatehouse_testkit::redis::RedisServer;

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: global}
spec:
  hosts: [global.test]
  rules:
    - name: shared
      matches: [{path: {type: Prefix, value: /shared}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit:
          limits: [{requests: 4, period: 1h}]
          key: {type: Route}
          scope: Global
    - name: open
      matches: [{path: {type: Prefix, value: /open}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit:
          limits: [{requests: 2, period: 1h}]
          key: {type: Route}
          scope: Global
          failureMode: Open
    - name: closed
      matches: [{path: {type: Prefix, value: /closed}}]
      backends: [{upstream: echo}]
      policies:
        rateLimit:
          limits: [{requests: 2, period: 1h}]
          key: {type: Route}
          scope: Global
          failureMode: Closed
"#;

/// A replica of the gateway over [`MANIFESTS`], with `flags`.
fn replica(flags: &[&str]) -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let text = MANIFESTS.replace("@ECHO@", &echo.port().to_string());
    Gateway::serve_with(upstreams, &[("global.yaml", text)], flags)
}

fn get(gw: &Gateway, target: &str) -> RawResponse {
    request(gw.http, "GET", "global.test", target, &[])
}

fn metrics(gw: &Gateway) -> String {
    request(gw.admin, "GET", "localhost", "/metrics", &[]).text()
}

/// Waits until the replica's limiter reaches Redis (it connects in the background).
fn connected(gw: &Gateway, target: &str) {
    assert!(
        eventually(|| get(gw, target).header("ratelimit-limit").is_some()),
        "the replica never counted through Redis"
    );
}

#[test]
fn two_replicas_share_one_global_limit() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let a = replica(&["--redis", &url]);
    let b = replica(&["--redis", &url]);
    // The first answer through each replica spends one of the four requests.
    connected(&a, "/shared");
    connected(&b, "/shared");
    let r = get(&a, "/shared");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));
    let r = get(&b, "/shared");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // Both replicas now refuse: the count is shared, not per replica.
    for gw in [&a, &b] {
        let r = get(gw, "/shared");
        assert_problem(&r, 429);
        assert!(r.header("retry-after").is_some(), "{r:?}");
        assert_eq!(r.header("ratelimit-limit"), Some("4"));
    }
    assert!(
        metrics(&a).contains("gatehouse_ratelimit_rejected_total{route=\"default/global\"} 1"),
        "{}",
        metrics(&a)
    );
}

#[test]
fn redis_down_fails_open_or_closed_as_configured() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let gw = replica(&["--redis", &url, "--redis-timeout", "200ms"]);
    connected(&gw, "/open");
    redis.stop();

    // Open: requests pass, without quota headers, and are counted.
    assert!(
        eventually(|| {
            let r = get(&gw, "/open");
            r.status == 200 && r.header("ratelimit-limit").is_none()
        }),
        "failureMode Open did not let requests through"
    );
    for _ in 0..3 {
        assert_eq!(get(&gw, "/open").status, 200);
    }
    // Closed: 503 with a problem body.
    let r = get(&gw, "/closed");
    let problem = assert_problem(&r, 503);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rate limit")),
        "{problem}"
    );
    let m = metrics(&gw);
    assert!(
        m.contains(
            "gatehouse_ratelimit_backend_errors_total{route=\"default/global\",failure_mode=\"Open\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "gatehouse_ratelimit_backend_errors_total{route=\"default/global\",failure_mode=\"Closed\"}"
        ),
        "{m}"
    );

    // Redis comes back (empty): limits are enforced again, without a restart.
    redis.restart();
    assert!(
        eventually(|| get(&gw, "/closed").status == 200),
        "the replica did not reconnect"
    );
    let _ = get(&gw, "/closed");
    assert!(
        eventually(|| get(&gw, "/closed").status == 429),
        "the limit is not enforced after Redis came back"
    );
}

#[test]
fn without_redis_global_limits_count_per_replica_and_say_so() {
    // The compiler says so (lint, and the run's log/status)...
    let manifests = MANIFESTS.replace("@ECHO@", "8080");
    let (ok, text) = common::lint(&manifests, &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("UnsupportedValue"), "{text}");
    assert!(
        text.contains("Degraded") && text.contains("rateLimit.scope"),
        "{text}"
    );
    let (_, text) = common::lint(&manifests, &["--redis", "redis://redis.example:6379"]);
    assert!(!text.contains("Degraded"), "{text}");

    // ...and the limit still holds, per replica.
    let gw = replica(&[]);
    for _ in 0..4 {
        assert_eq!(get(&gw, "/shared").status, 200);
    }
    assert_problem(&get(&gw, "/shared"), 429);
}
