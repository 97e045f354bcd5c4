//! `/metrics` checked by Prometheus' own parser and linter (`promtool check metrics`,
//! built from the Go module by `e2e/tools/install.sh`) after a scripted mix of traffic
//! that fills every family the mix can reach; label values come from route, rule and
//! upstream names only, never from a request's path or credentials.
//!
//! Without `target/tools/bin/promtool` the test says so and passes, unless
//! `GATEHOUSE_REQUIRE_PROMTOOL=1` (`.ci/run` sets it).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{LoggedGateway, eventually, faulty, request, upstream, upstream_runtime};

fn promtool() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/promtool");
    if p.exists() {
        return Some(p);
    }
    let required = std::env::var("GATEHOUSE_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    assert!(!required, "promtool is missing: run e2e/tools/install.sh");
    eprintln!("skipping: promtool is not installed (e2e/tools/install.sh builds it)");
    None
}

/// What `program args` answers with `text` on its standard input.
fn pipe(program: &Path, args: &[&str], text: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    child.wait_with_output().expect("it ends")
}

#[test]
fn metrics_after_a_mix_of_traffic_pass_promtool_and_carry_no_request_data() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let f = faulty(&rt, 2);
    f[1].fail_percent(100.0, 503);
    let mut files = String::new();
    files.push_str(&upstream("echo", &[echo], ""));
    files.push_str(&upstream(
        "flaky",
        &[f[0].addr(), f[1].addr()],
        "  retries: {attempts: 1, on: [GatewayError], backoff: {base: 1ms, max: 2ms}}\n  circuitBreaker: {failureRatio: 0.9, minimumRequests: 100}\n  healthCheck: {passive: {consecutiveFailures: 100}}\n",
    ));
    files.push_str(
        "apiVersion: v1
kind: Secret
metadata:
  name: alice
  labels: {gatehouse.dev/consumer: alice}
stringData: {api-key: k-alice-123}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: mix}
spec:
  hosts: [metrics.test]
  rules:
    - name: plain
      matches: [{path: {type: Prefix, value: /plain}}]
      backends: [{upstream: echo}]
      mirror: {upstream: flaky}
    - name: flaky
      matches: [{path: {type: Prefix, value: /flaky}}]
      backends: [{upstream: flaky}]
    - name: keyed
      matches: [{path: {type: Prefix, value: /keyed}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}}
        rateLimit: {limits: [{requests: 2, period: 1m}], key: {type: Consumer}}
    - name: cached
      matches: [{path: {type: Prefix, value: /cached}}]
      backends: [{upstream: echo}]
      policies: {cache: {ttl: 1m}}
    - name: guarded
      matches: [{path: {type: Prefix, value: /guarded}}]
      backends: [{upstream: echo}]
      policies:
        waf: {}
        validation: {request: {requiredHeaders: [x-needed]}}
",
    );
    let g = LoggedGateway::serve(rt, &[("gateway.yaml", files)]);
    let get = |target: &str, headers: &[(&str, &str)]| {
        request(g.http, "GET", "metrics.test", target, headers).status
    };
    for i in 0..5 {
        assert_eq!(get(&format!("/plain/{i}?secret-query=1"), &[]), 200);
        get("/flaky/x", &[]);
        get("/cached/c", &[]);
    }
    assert_eq!(get("/keyed/k", &[]), 401);
    assert_eq!(get("/keyed/k", &[("x-api-key", "not-a-key")]), 401);
    for _ in 0..3 {
        get("/keyed/k", &[("x-api-key", "k-alice-123")]);
    }
    assert_eq!(get("/guarded/g?q=1'+OR+'1'='1", &[("x-needed", "1")]), 403);
    assert_eq!(get("/guarded/g", &[]), 400);
    assert_eq!(get("/no/such/path-abc", &[]), 404);
    assert_eq!(
        request(g.http, "DELETE", "other.test", "/x", &[]).status,
        404
    );

    let text = g.admin_text("/metrics");
    for family in [
        "gatehouse_requests_total",
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_ratelimit_rejected_total",
        "gatehouse_cache_requests_total",
        "gatehouse_validation_failures_total",
        "gatehouse_auth_failures_total",
        "gatehouse_waf_matches_total",
        "gatehouse_upstream_requests_total",
        "gatehouse_upstream_duration_seconds_bucket",
        "gatehouse_upstream_retries_total",
        "gatehouse_upstream_endpoints",
        "gatehouse_circuit_state",
        "gatehouse_mirror_requests_total",
        "gatehouse_config_version",
        "gatehouse_config_applies_total",
        "gatehouse_config_apply_duration_seconds_bucket",
        "gatehouse_access_log_dropped_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "no {family} sample:\n{text}"
        );
    }
    // Label values are names from the table, never what a request carried.
    for data in [
        "secret-query",
        "/no/such",
        "path-abc",
        "k-alice-123",
        "not-a-key",
        "other.test",
        "OR",
    ] {
        assert!(!text.contains(data), "{data:?} in /metrics");
    }
    assert!(eventually(|| f[0].requests() + f[1].requests() >= 10));

    let Some(promtool) = promtool() else {
        return;
    };
    let out = pipe(&promtool, &["check", "metrics"], &text);
    assert!(
        out.status.success(),
        "promtool check metrics refused /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's Python with `prometheus_client` (its OpenMetrics parser), when installed.
fn openmetrics_parser() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/venv/bin/python");
    let ok = p.exists()
        && Command::new(&p)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(p);
    }
    let required = std::env::var("GATEHOUSE_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "prometheus_client is missing: run e2e/tools/install.sh"
    );
    eprintln!("skipping: prometheus_client is not installed (e2e/tools/install.sh)");
    None
}

/// Reads an OpenMetrics exposition on stdin with the reference parser of the Prometheus
/// Python client (strict: it refuses what the specification does not allow) and prints
/// its samples and exemplars as JSON.
const PARSE_OPENMETRICS: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        e = s.exemplar
        out.append({
            "family": f.name, "type": f.type, "name": s.name, "labels": s.labels,
            "value": s.value,
            "exemplar": None if e is None else {"labels": e.labels, "value": e.value, "timestamp": None if e.timestamp is None else float(e.timestamp)},
        })
print(json.dumps(out))
"#;

#[test]
fn openmetrics_is_served_when_asked_and_its_duration_buckets_name_kept_traces() {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let receiver = rt
        .block_on(gatehouse_testkit::otlp::spawn_otlp())
        .expect("OTLP receiver");
    let files = format!(
        "{}apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: om}}
spec:
  hosts: [om.test]
  rules:
    - name: plain
      matches: [{{path: {{type: Prefix, value: /}}}}]
      backends: [{{upstream: echo}}]
",
        upstream("echo", &[echo], "")
    );
    let endpoint = format!("http://{}", receiver.addr());
    let g = LoggedGateway::serve_with(
        rt,
        &[("gateway.yaml", files)],
        &["--otlp-endpoint", &endpoint, "--otlp-sample-ratio", "1"],
    );
    for i in 0..5 {
        assert_eq!(
            request(g.http, "GET", "om.test", &format!("/{i}"), &[]).status,
            200
        );
    }
    assert!(
        eventually(|| receiver.spans().len() >= 10),
        "{:?}",
        receiver.spans()
    );
    let trace_ids: std::collections::BTreeSet<String> =
        receiver.spans().into_iter().map(|s| s.trace_id).collect();

    let om = request(
        g.admin,
        "GET",
        "localhost",
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )],
    );
    assert_eq!(om.status, 200);
    assert!(
        om.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text; version=1.0.0")),
        "{:?}",
        om.header("content-type")
    );
    let text = om.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Without asking, the Prometheus text format, which has no exemplars.
    let plain = g.admin_text("/metrics");
    assert!(
        !plain.contains("# EOF") && !plain.contains("trace_id"),
        "{plain}"
    );

    let Some(python) = openmetrics_parser() else {
        return;
    };
    let out = pipe(&python, &["-c", PARSE_OPENMETRICS], &text);
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    let of = |family: &str| -> Vec<&serde_json::Value> {
        samples.iter().filter(|s| s["family"] == family).collect()
    };
    let requests = of("gatehouse_requests");
    assert!(
        requests.iter().any(|s| s["type"] == "counter"
            && s["labels"]["route"] == "default/om"
            && s["value"] == 5.0),
        "{requests:?}"
    );
    assert!(
        of("gatehouse_trace_spans")
            .iter()
            .any(|s| s["labels"]["result"] == "exported")
    );
    for family in [
        "gatehouse_request_duration_seconds",
        "gatehouse_upstream_duration_seconds",
    ] {
        let exemplars: Vec<&serde_json::Value> = of(family)
            .into_iter()
            .filter(|s| !s["exemplar"].is_null())
            .collect();
        assert!(!exemplars.is_empty(), "no exemplar on {family}: {text}");
        for s in exemplars {
            let e = &s["exemplar"];
            let id = e["labels"]["trace_id"].as_str().unwrap_or_default();
            assert!(
                trace_ids.contains(id),
                "{id} is no exported trace ({trace_ids:?})"
            );
            // The exemplar's value falls in its bucket.
            let le = s["labels"]["le"].as_str().unwrap_or_default();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            assert!(e["value"].as_f64().is_some_and(|v| v <= bound), "{s}");
            assert!(e["timestamp"].as_f64().is_some_and(|t| t > 1.7e9), "{s}");
        }
    }
}
