//! Resilience and load balancing end to end (`spec/api.md` Upstream `loadBalancer`,
//! `retries`, `healthCheck`, `circuitBreaker`, `timeouts`; `spec/runtime.md`
//! `gatehouse_upstream_*`, `gatehouse_circuit_state`, 503 with
//! `X-Gatehouse-Reason: circuit-open`): the built `gatehouse run` in front of
//! fault-injection upstreams (`gatehouse_testkit::fault`) that a test switches between
//! refusing, resetting, stalling, failing at a rate, answering slowly and failing their
//! health path.
//!
//! Each test runs its own gateway and upstreams. Nothing asserts on how fast anything
//! is: where the contract speaks of time (a probe interval), the tests count probes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    LoggedGateway, RawResponse, eventually, faulty, metric, request, try_send_raw, upstream,
    upstream_runtime,
};
use gatehouse_testkit::fault::{Faults, dead_addr};

/// An ApiRoute sending host `<name>.test` to Upstream `name`, for each name.
fn routes(names: &[&str]) -> String {
    let mut out = String::from(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: resilience}\nspec:\n  rules:\n",
    );
    for n in names {
        out.push_str(&format!(
            "    - name: {n}\n      matches: [{{headers: [{{name: x-to, type: Exact, value: {n}}}]}}]\n      backends: [{{upstream: {n}}}]\n"
        ));
    }
    out
}

fn serve(runtime: tokio::runtime::Runtime, upstreams: &[String], names: &[&str]) -> LoggedGateway {
    let mut text = upstreams.concat();
    text.push_str(&routes(names));
    LoggedGateway::serve(runtime, &[("gateway.yaml", text)])
}

fn send(g: &LoggedGateway, method: &str, to: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut all = vec![("x-to", to)];
    all.extend_from_slice(headers);
    request(g.http, method, "resilience.test", "/r", &all)
}

/// The endpoint that answered.
fn server(r: &RawResponse) -> String {
    r.header("x-echo-server").unwrap_or("-").to_string()
}

/// The state `/config` shows for endpoint `addr` of Upstream `name`.
fn endpoint_state(g: &LoggedGateway, name: &str, addr: SocketAddr) -> String {
    let config: serde_json::Value =
        serde_json::from_str(&g.admin_text("/config")).expect("config is JSON");
    let id = format!("default/{name}");
    config["upstreams"]
        .as_array()
        .and_then(|list| list.iter().find(|u| u["id"] == id.as_str()))
        .and_then(|u| u["endpoints"].as_array())
        .and_then(|eps| eps.iter().find(|e| e["address"] == addr.to_string()))
        .and_then(|e| e["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

#[test]
fn retries_hide_a_dead_endpoint_and_a_resetting_one_where_one_attempt_does_not() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    let dead = rt.block_on(dead_addr()).expect("dead address");
    f[1].reset(true);
    let addrs = [f[0].addr(), f[1].addr(), dead];
    let retries = "  retries: {attempts: 2, on: [ConnectFailure, Reset, GatewayError], backoff: {base: 1ms, max: 5ms}, budget: {percent: 100, minPerSecond: 100}}\n";
    let g = serve(
        rt,
        &[
            upstream("retried", &addrs, retries),
            upstream("once", &addrs, ""),
        ],
        &["retried", "once"],
    );
    for _ in 0..30 {
        let r = send(&g, "GET", "retried", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(server(&r), f[0].addr().to_string());
    }
    // Without retries the resetting endpoint shows (a dead one is skipped while
    // connecting, which is safe for any request: nothing was sent).
    let failed = (0..30)
        .filter(|_| send(&g, "GET", "once", &[]).status == 502)
        .count();
    assert!(failed >= 5, "{failed} of 30 failed without retries");
    assert!(
        metric(
            &g,
            "gatehouse_upstream_requests_total{upstream=\"default/retried\",outcome=\"reset\"}"
        ) >= 5.0
    );
    assert!(
        metric(
            &g,
            "gatehouse_upstream_retries_total{upstream=\"default/retried\",result=\"sent\"}"
        ) >= 5.0
    );
}

#[test]
fn post_is_not_retried_unless_idempotent_only_is_off() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    for x in &f {
        x.fail_percent(100.0, 503);
    }
    let retries = |extra: &str| {
        format!("  retries: {{attempts: 2, backoff: {{base: 1ms, max: 2ms}}{extra}}}\n")
    };
    let g = serve(
        rt,
        &[
            upstream("default-only", &[f[0].addr()], &retries("")),
            upstream("any", &[f[1].addr()], &retries(", idempotentOnly: false")),
        ],
        &["default-only", "any"],
    );
    assert_eq!(send(&g, "GET", "default-only", &[]).status, 503);
    assert_eq!(f[0].requests(), 3, "GET: the first attempt and two retries");
    assert_eq!(
        send(&g, "POST", "default-only", &[("content-length", "0")]).status,
        503
    );
    assert_eq!(f[0].requests(), 4, "POST: one attempt");
    assert_eq!(
        send(&g, "POST", "any", &[("content-length", "0")]).status,
        503
    );
    assert_eq!(
        f[1].requests(),
        3,
        "POST with idempotentOnly: false is retried"
    );
}

#[test]
fn request_bodies_are_replayed_to_the_next_attempt() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    f[0].reset(true);
    let g = serve(
        rt,
        &[upstream(
            "put",
            &[f[0].addr(), f[1].addr()],
            "  loadBalancer: {policy: RoundRobin}\n  retries: {attempts: 1, on: [Reset], backoff: {base: 1ms, max: 1ms}}\n",
        )],
        &["put"],
    );
    for i in 0..6 {
        let body = format!("{{\"n\":{i}}}");
        let head = common::request_head(
            "PUT",
            "resilience.test",
            "/r",
            &[("x-to", "put"), ("content-length", &body.len().to_string())],
        );
        let r = common::send_raw(g.http, format!("{head}{body}").as_bytes());
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(f[0].requests() >= 2, "the resetting endpoint was tried");
    assert_eq!(f[1].requests(), 6);
}

#[test]
fn the_retry_budget_caps_retries() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    f[0].fail_percent(100.0, 503);
    let g = serve(
        rt,
        &[upstream(
            "budget",
            &[f[0].addr()],
            "  retries: {attempts: 3, backoff: {base: 1ms, max: 1ms}, budget: {percent: 0, minPerSecond: 2}}\n",
        )],
        &["budget"],
    );
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(send(&g, "GET", "budget", &[]).status, 503);
    }
    // Requests one at a time and percent 0: only the per-second floor pays for retries.
    let seconds = started.elapsed().as_secs() + 1;
    let retries = f[0].requests() - 20;
    assert!(retries <= 2 * seconds, "{retries} retries in {seconds} s");
    assert!(retries >= 2, "the floor allows some: {retries}");
    assert!(
        metric(
            &g,
            "gatehouse_upstream_retries_total{upstream=\"default/budget\",result=\"budget_exhausted\"}"
        ) >= 1.0
    );
}

#[test]
fn a_request_timeout_bounds_every_attempt_and_per_try_timeouts_move_on() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    f[0].stall(true);
    let g = serve(
        rt,
        &[
            upstream(
                "stall-then-ok",
                &[f[0].addr(), f[1].addr()],
                "  retries: {attempts: 2, perTryTimeout: 200ms, backoff: {base: 1ms, max: 1ms}}\n",
            ),
            upstream(
                "stalled",
                &[f[0].addr()],
                "  timeouts: {request: 1s}\n  retries: {attempts: 9, perTryTimeout: 400ms, backoff: {base: 1ms, max: 1ms}, budget: {minPerSecond: 100}}\n",
            ),
        ],
        &["stall-then-ok", "stalled"],
    );
    for _ in 0..4 {
        let r = send(&g, "GET", "stall-then-ok", &[]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    let before = f[0].requests();
    let r = send(&g, "GET", "stalled", &[]);
    assert_eq!(r.status, 504, "{r:?}");
    let attempts = f[0].requests() - before;
    // 1 s holds at most three 400 ms attempts, whatever `attempts` says.
    assert!((2..=3).contains(&attempts), "{attempts} attempts");
    assert!(
        metric(
            &g,
            "gatehouse_upstream_requests_total{upstream=\"default/stalled\",outcome=\"timeout\"}"
        ) >= 2.0
    );
}

#[test]
fn no_retry_once_the_response_has_started() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    f[0].reset_mid_body(true);
    let g = serve(
        rt,
        &[upstream(
            "mid-body",
            &[f[0].addr()],
            "  retries: {attempts: 2, on: [Reset, ConnectFailure, GatewayError]}\n",
        )],
        &["mid-body"],
    );
    let head = common::request_head("GET", "resilience.test", "/r", &[("x-to", "mid-body")]);
    let r = try_send_raw(g.http, head.as_bytes());
    assert!(
        r.as_ref()
            .map_or(true, |r| r.status != 200 || r.body.len() < 1000),
        "the body cannot arrive whole: {r:?}"
    );
    assert_eq!(f[0].requests(), 1, "the started response was not retried");
    // The gateway goes on serving.
    f[0].reset_mid_body(false);
    assert_eq!(send(&g, "GET", "mid-body", &[]).status, 200);
}

#[test]
fn a_failing_probe_takes_an_endpoint_out_of_rotation_and_recovery_brings_it_back() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    let (a, b) = (f[0].addr(), f[1].addr());
    let g = serve(
        rt,
        &[upstream(
            "probed",
            &[a, b],
            "  healthCheck:\n    active: {path: /healthz, interval: 200ms, timeout: 100ms, healthyThreshold: 2, unhealthyThreshold: 2}\n",
        )],
        &["probed"],
    );
    assert!(
        eventually(|| f[0].probes() >= 1 && f[1].probes() >= 1),
        "both probed"
    );
    f[0].healthy(false);
    let probes_at_flip = f[0].probes();
    assert!(eventually(|| endpoint_state(&g, "probed", a) == "unhealthy"));
    // Out after `unhealthyThreshold` failed probes, that is within interval ×
    // threshold: the log names the failures in a row at the change. (The probe count
    // has a margin for this test's own polling on a busy machine.)
    assert!(
        eventually(|| g
            .log()
            .lines()
            .any(|l| l.contains("failed its health checks") && l.contains("\"failures\":2"))),
        "{}",
        g.log()
    );
    let probes = f[0].probes() - probes_at_flip;
    assert!(probes <= 6, "{probes} probes before it left rotation");
    let before = f[0].requests();
    for _ in 0..10 {
        let r = send(&g, "GET", "probed", &[]);
        assert_eq!((r.status, server(&r)), (200, b.to_string()));
    }
    assert_eq!(
        f[0].requests(),
        before,
        "no traffic to the unhealthy endpoint"
    );
    assert_eq!(
        metric(
            &g,
            "gatehouse_upstream_endpoints{upstream=\"default/probed\",state=\"unhealthy\"}"
        ),
        1.0
    );
    f[0].healthy(true);
    assert!(eventually(|| endpoint_state(&g, "probed", a) == "healthy"));
    let servers: Vec<String> = (0..10)
        .map(|_| server(&send(&g, "GET", "probed", &[])))
        .collect();
    assert!(
        servers.contains(&a.to_string()),
        "back in rotation: {servers:?}"
    );
}

#[test]
fn with_every_endpoint_down_the_answer_is_503_and_probing_goes_on() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    let g = serve(
        rt,
        &[upstream(
            "alone",
            &[f[0].addr()],
            "  healthCheck:\n    active: {path: /healthz, interval: 100ms, timeout: 100ms, healthyThreshold: 1, unhealthyThreshold: 1}\n",
        )],
        &["alone"],
    );
    f[0].healthy(false);
    assert!(eventually(|| send(&g, "GET", "alone", &[]).status == 503));
    let r = send(&g, "GET", "alone", &[]);
    let problem = common::assert_problem(&r, 503);
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("health"),
        "{problem}"
    );
    let probes = f[0].probes();
    assert!(eventually(|| f[0].probes() >= probes + 3), "still probing");
    f[0].healthy(true);
    assert!(eventually(|| send(&g, "GET", "alone", &[]).status == 200));
}

#[test]
fn passive_checks_eject_an_endpoint_that_fails_live_traffic() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 3);
    f[2].fail_percent(100.0, 500);
    let addrs: Vec<SocketAddr> = f.iter().map(Faults::addr).collect();
    let g = serve(
        rt,
        &[upstream(
            "ejecting",
            &addrs,
            "  healthCheck:\n    passive: {consecutiveFailures: 3, ejectionTime: 60s, maxEjectionPercent: 50}\n",
        )],
        &["ejecting"],
    );
    for _ in 0..30 {
        send(&g, "GET", "ejecting", &[]);
    }
    assert_eq!(endpoint_state(&g, "ejecting", addrs[2]), "ejected");
    let seen = f[2].requests();
    assert!(
        (3..=4).contains(&seen),
        "ejected after 3 failures in a row: {seen}"
    );
    for _ in 0..20 {
        assert_eq!(send(&g, "GET", "ejecting", &[]).status, 200);
    }
    assert_eq!(f[2].requests(), seen, "no traffic while ejected");
    assert_eq!(
        metric(
            &g,
            "gatehouse_upstream_endpoints{upstream=\"default/ejecting\",state=\"ejected\"}"
        ),
        1.0
    );
    // maxEjectionPercent: a second failing endpoint of three stays (50% of 3 is 1).
    f[1].fail_percent(100.0, 500);
    for _ in 0..20 {
        send(&g, "GET", "ejecting", &[]);
    }
    assert_eq!(endpoint_state(&g, "ejecting", addrs[1]), "healthy");
}

#[test]
fn the_circuit_opens_sheds_without_touching_the_upstream_and_closes_after_a_good_trial() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    f[0].fail_percent(100.0, 503);
    let g = serve(
        rt,
        &[upstream(
            "breaker",
            &[f[0].addr()],
            "  circuitBreaker: {failureRatio: 0.5, minimumRequests: 4, window: 10s, openDuration: 1s, halfOpenRequests: 1}\n",
        )],
        &["breaker"],
    );
    for _ in 0..4 {
        let r = send(&g, "GET", "breaker", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(
            r.header("x-gatehouse-reason"),
            None,
            "the upstream's own 503"
        );
    }
    assert_eq!(
        metric(&g, "gatehouse_circuit_state{upstream=\"default/breaker\"}"),
        2.0
    );
    let reached = f[0].requests();
    for _ in 0..10 {
        let r = send(&g, "GET", "breaker", &[]);
        common::assert_problem(&r, 503);
        assert_eq!(r.header("x-gatehouse-reason"), Some("circuit-open"));
    }
    assert_eq!(
        f[0].requests(),
        reached,
        "shed requests never reach the upstream"
    );
    // A failed trial re-opens; then the upstream recovers and a good trial closes.
    assert!(eventually(|| send(&g, "GET", "breaker", &[])
        .header("x-gatehouse-reason")
        .is_none()));
    assert_eq!(f[0].requests(), reached + 1, "one trial");
    assert_eq!(
        metric(&g, "gatehouse_circuit_state{upstream=\"default/breaker\"}"),
        2.0
    );
    f[0].fail_percent(0.0, 503);
    assert!(eventually(|| send(&g, "GET", "breaker", &[]).status == 200));
    assert_eq!(
        metric(&g, "gatehouse_circuit_state{upstream=\"default/breaker\"}"),
        0.0
    );
    for _ in 0..5 {
        assert_eq!(send(&g, "GET", "breaker", &[]).status, 200);
    }
}

#[test]
fn breaker_limits_shed_what_is_over_max_concurrent_requests() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 1);
    f[0].latency(Duration::from_millis(800));
    let g = serve(
        rt,
        &[upstream(
            "limited",
            &[f[0].addr()],
            "  circuitBreaker: {maxConcurrentRequests: 2}\n",
        )],
        &["limited"],
    );
    let http = g.http;
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let all: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(move || {
                    let r = request(http, "GET", "resilience.test", "/r", &[("x-to", "limited")]);
                    (r.status, r.header("x-gatehouse-reason").map(str::to_string))
                })
            })
            .collect();
        all.into_iter().map(|h| h.join().expect("client")).collect()
    });
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let shed = answers
        .iter()
        .filter(|a| a.0 == 503 && a.1.as_deref() == Some("circuit-open"))
        .count();
    assert_eq!((ok, shed), (2, 4), "{answers:?}");
    assert!(f[0].peak_in_flight() <= 2);
}

#[test]
fn round_robin_follows_weights_and_random_uses_every_endpoint() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 2);
    let (a, b) = (f[0].addr(), f[1].addr());
    let weighted = format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: weighted}}\nspec:\n  endpoints: [{{host: {}, port: {}, weight: 3}}, {{host: {}, port: {}}}]\n---\n",
        a.ip(),
        a.port(),
        b.ip(),
        b.port()
    );
    let g = serve(
        rt,
        &[
            weighted,
            upstream("random", &[a, b], "  loadBalancer: {policy: Random}\n"),
        ],
        &["weighted", "random"],
    );
    let to_a = (0..40)
        .filter(|_| server(&send(&g, "GET", "weighted", &[])) == a.to_string())
        .count();
    assert!(
        (28..=32).contains(&to_a),
        "{to_a} of 40 on the weight-3 endpoint"
    );
    let random: std::collections::BTreeSet<String> = (0..30)
        .map(|_| server(&send(&g, "GET", "random", &[])))
        .collect();
    assert_eq!(random.len(), 2, "{random:?}");
}

/// Sends each key of `keys` once; the endpoint that answered each.
fn placements(g: &LoggedGateway, to: &str, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| server(&send(g, "GET", to, &[("x-user", k)])))
        .collect()
}

#[test]
fn ring_hash_and_maglev_keep_keys_in_place_when_one_of_ten_endpoints_leaves() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 10);
    let addrs: Vec<SocketAddr> = f.iter().map(Faults::addr).collect();
    let manifests = |addrs: &[SocketAddr]| {
        let mut text = upstream(
            "ring",
            addrs,
            "  loadBalancer: {policy: RingHash, hashOn: {header: x-user}}\n",
        );
        text.push_str(&upstream(
            "maglev",
            addrs,
            "  loadBalancer: {policy: Maglev, hashOn: {header: x-user}}\n",
        ));
        text.push_str(&routes(&["ring", "maglev"]));
        text
    };
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", manifests(&addrs))]);
    let keys: Vec<String> = (0..600).map(|i| format!("user-{i}")).collect();
    let ring = placements(&g, "ring", &keys);
    let maglev = placements(&g, "maglev", &keys);
    assert_eq!(
        ring,
        placements(&g, "ring", &keys),
        "a key sticks to its endpoint"
    );
    assert_eq!(maglev, placements(&g, "maglev", &keys));
    assert!(ring.iter().collect::<std::collections::BTreeSet<_>>().len() >= 8);
    // One of ten leaves the Upstream (live reload).
    let version = metric(&g, "gatehouse_config_version");
    std::fs::write(
        g.manifests.path().join("gateway.yaml"),
        manifests(&addrs[1..]),
    )
    .expect("rewrite manifests");
    assert!(eventually(
        || metric(&g, "gatehouse_config_version") > version
    ));
    for (name, before) in [("ring", ring), ("maglev", maglev)] {
        let after = placements(&g, name, &keys);
        let gone = addrs[0].to_string();
        assert!(
            !after.contains(&gone),
            "{name}: the removed endpoint takes nothing"
        );
        let kept = before.iter().zip(&after).filter(|(x, y)| x == y).count();
        assert!(
            kept * 100 >= 85 * keys.len(),
            "{name} kept {kept} of {}",
            keys.len()
        );
    }
}

#[test]
fn least_request_and_peak_ewma_send_less_to_a_slow_endpoint() {
    let rt = upstream_runtime();
    let f = faulty(&rt, 4);
    f[0].latency(Duration::from_millis(300));
    f[2].latency(Duration::from_millis(300));
    let g = serve(
        rt,
        &[
            upstream(
                "least",
                &[f[0].addr(), f[1].addr()],
                "  loadBalancer: {policy: LeastRequest}\n",
            ),
            upstream(
                "ewma",
                &[f[2].addr(), f[3].addr()],
                "  loadBalancer: {policy: PeakEwma}\n",
            ),
        ],
        &["least", "ewma"],
    );
    let http = g.http;
    for to in ["least", "ewma"] {
        // 40 requests from 4 clients, shared: a client held by the slow endpoint leaves
        // its share to the others, so the load stays concurrent to the end. (With 10
        // each, the last client alone met two idle endpoints, a tie, on every request:
        // a coin flip that sometimes sent it to the slow one 9 times running.)
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let left = AtomicUsize::new(40);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let left = &left;
                s.spawn(move || {
                    while left
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        request(http, "GET", "resilience.test", "/r", &[("x-to", to)]);
                    }
                });
            }
        });
    }
    let (slow, fast) = (f[0].requests(), f[1].requests());
    assert!(slow * 3 < fast, "LeastRequest: slow {slow}, fast {fast}");
    let (slow, fast) = (f[2].requests(), f[3].requests());
    assert!(slow * 3 < fast, "PeakEwma: slow {slow}, fast {fast}");
}
