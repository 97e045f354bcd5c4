//! The access log end to end (`--access-log`, `--access-log-sample`): the built
//! `gatehouse run` writes one JSON line per request to a file, with the fields operators
//! filter on, and never a credential.

mod common;

use std::collections::BTreeMap;

use common::{LoggedGateway, eventually, request, upstream_runtime};
use serde_json::Value;

fn manifests(echo: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: echo}}
spec:
  endpoints: [{{host: {ip}, port: {port}}}]
---
apiVersion: v1
kind: Secret
metadata:
  name: alice
  labels: {{gatehouse.dev/consumer: alice}}
stringData: {{api-key: k-alice-123}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: logged}}
spec:
  hosts: [log.test]
  rules:
    - name: plain
      matches: [{{path: {{type: Prefix, value: /plain}}}}]
      backends: [{{upstream: echo}}]
    - name: keyed
      matches: [{{path: {{type: Prefix, value: /keyed}}}}]
      backends: [{{upstream: echo}}]
      policies:
        authentication: {{apiKey: {{queryParam: api_key}}}}
    - name: limited
      matches: [{{path: {{type: Prefix, value: /limited}}}}]
      respond: {{status: 200, contentType: text/plain, body: ok}}
      policies:
        rateLimit: {{limits: [{{requests: 1, period: 1m}}]}}
    - name: cached
      matches: [{{path: {{type: Prefix, value: /cached}}}}]
      backends: [{{upstream: echo}}]
      policies:
        cache: {{ttl: 1m}}
    - name: guarded
      matches: [{{path: {{type: Prefix, value: /guarded}}}}]
      backends: [{{upstream: echo}}]
      policies:
        waf: {{}}
    - name: down
      matches: [{{path: {{type: Prefix, value: /down}}}}]
      respond: {{status: 503, contentType: text/plain, body: down}}
",
        ip = echo.ip(),
        port = echo.port()
    )
}

/// The lines written so far, by request id.
fn lines(path: &std::path::Path) -> BTreeMap<String, Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .map(|v| (v["requestId"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

/// The gateway over [`manifests`] logging to a file of its own, with `flags` added; the
/// folder holding the file, the file, and the echo upstream's address.
fn logging(
    flags: &[&str],
) -> (
    LoggedGateway,
    tempfile::TempDir,
    std::path::PathBuf,
    std::net::SocketAddr,
) {
    let rt = upstream_runtime();
    let echo = common::spawn_echo(&rt);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let mut all = vec!["--access-log", log.to_str().expect("utf-8 path")];
    all.extend_from_slice(flags);
    let g = LoggedGateway::serve_with(rt, &[("gateway.yaml", manifests(echo))], &all);
    (g, dir, log, echo)
}

#[test]
fn one_line_per_request_with_its_outcome_and_no_secret() {
    let (g, _dir, log, echo) = logging(&[]);
    let send = |id: &str, target: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("x-request-id", id)];
        headers.extend_from_slice(extra);
        request(g.http, "GET", "log.test", target, &headers)
    };
    let plain = send("r-plain", "/plain/a?x=1", &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(
        send("r-key", "/keyed/b?api_key=k-alice-123&y=2", &[]).status,
        200
    );
    assert_eq!(
        send("r-nokey", "/keyed/b", &[("x-api-key", "wrong-key-456")]).status,
        401
    );
    assert_eq!(send("r-limit-1", "/limited", &[]).status, 200);
    assert_eq!(send("r-limit-2", "/limited", &[]).status, 429);
    assert_eq!(send("r-miss", "/cached", &[]).status, 200);
    assert_eq!(send("r-hit", "/cached", &[]).status, 200);
    assert_eq!(send("r-waf", "/guarded?q=1'+OR+'1'='1", &[]).status, 403);
    assert_eq!(send("r-none", "/nowhere", &[]).status, 404);
    let ids = [
        "r-plain",
        "r-key",
        "r-nokey",
        "r-limit-1",
        "r-limit-2",
        "r-miss",
        "r-hit",
        "r-waf",
        "r-none",
    ];
    assert!(
        eventually(|| lines(&log).len() == ids.len()),
        "{:?}",
        lines(&log).keys().collect::<Vec<_>>()
    );
    let all = lines(&log);
    for id in ids {
        assert!(all.contains_key(id), "no line for {id}");
    }

    let p = &all["r-plain"];
    assert_eq!(p["method"], "GET");
    assert_eq!(p["host"], "log.test");
    assert_eq!(p["path"], "/plain/a", "no query: {p}");
    assert_eq!(p["client"], "127.0.0.1");
    assert_eq!(p["route"], "default/logged");
    assert_eq!(p["rule"], "plain");
    assert_eq!(p["upstream"], "default/echo");
    assert_eq!(p["endpoint"], echo.to_string());
    assert_eq!(p["status"], 200);
    assert!(
        p["durationMs"].as_f64().is_some() && p["upstreamMs"].as_f64().is_some(),
        "{p}"
    );
    assert!(p["bytesOut"].as_u64().is_some_and(|n| n > 0), "{p}");
    assert!(p["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{p}");
    // The trace id is the one the upstream received.
    let seen = common::echoed(&plain);
    let traceparent = seen.header("traceparent").expect("traceparent upstream");
    assert_eq!(p["traceId"], traceparent[3..35], "{p}");

    assert_eq!(all["r-key"]["consumer"], "alice");
    assert_eq!(all["r-nokey"]["refused"], "authentication");
    assert_eq!(all["r-nokey"]["status"], 401);
    assert!(all["r-limit-1"].get("refused").is_none());
    assert_eq!(all["r-limit-2"]["refused"], "ratelimited");
    assert_eq!(all["r-miss"]["cache"], "MISS");
    assert_eq!(all["r-hit"]["cache"], "HIT");
    assert!(
        all["r-hit"].get("upstream").is_none(),
        "a hit reached no upstream"
    );
    assert_eq!(all["r-waf"]["refused"], "waf");
    assert_eq!(all["r-none"]["status"], 404);
    assert!(all["r-none"].get("route").is_none());

    let text = std::fs::read_to_string(&log).expect("log");
    for secret in ["k-alice-123", "wrong-key-456"] {
        assert!(!text.contains(secret), "{secret} in the access log");
    }
}

#[test]
fn sampling_keeps_a_share_and_every_server_error() {
    let (g, _dir, log, _) = logging(&["--access-log-sample", "0"]);
    for i in 0..10 {
        let id = format!("ok-{i}");
        assert_eq!(
            request(
                g.http,
                "GET",
                "log.test",
                "/plain",
                &[("x-request-id", &id)]
            )
            .status,
            200
        );
    }
    let r = request(
        g.http,
        "GET",
        "log.test",
        "/down",
        &[("x-request-id", "the-503")],
    );
    assert_eq!(r.status, 503);
    assert!(eventually(|| lines(&log).contains_key("the-503")));
    assert_eq!(
        lines(&log).keys().collect::<Vec<_>>(),
        ["the-503"],
        "at 0, only the 5xx is kept"
    );
}

#[test]
fn a_destination_that_cannot_be_opened_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = manifests("127.0.0.1:9".parse().expect("addr"));
    std::fs::write(dir.path().join("gateway.yaml"), text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-f"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--access-log", "/nonexistent-dir/x/access.log"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access log"), "{err}");
}

/// An upstream that answers every request with a chunked body of `chunks` (no length
/// known at the head), one response per connection.
fn chunked_upstream(
    rt: &tokio::runtime::Runtime,
    chunks: &'static [&'static str],
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                );
                for c in chunks {
                    out.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
                }
                out.push_str("0\r\n\r\n");
                let _ = s.write_all(out.as_bytes()).await;
            });
        }
    });
    addr
}

#[test]
fn a_streamed_body_of_unknown_length_is_counted_as_it_goes_out() {
    let rt = upstream_runtime();
    let chunked = chunked_upstream(&rt, &["hello ", "streamed ", "world"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let manifests = format!(
        "{}apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: streamed}}
spec:
  hosts: [stream.test]
  rules:
    - name: all
      matches: [{{path: {{type: Prefix, value: /}}}}]
      backends: [{{upstream: chunked}}]
",
        common::upstream("chunked", &[chunked], "")
    );
    let g = LoggedGateway::serve_with(
        rt,
        &[("gateway.yaml", manifests)],
        &["--access-log", log.to_str().expect("utf-8 path")],
    );
    let r = request(
        g.http,
        "GET",
        "stream.test",
        "/s",
        &[("x-request-id", "r-stream")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello streamed world");
    assert!(eventually(|| lines(&log).contains_key("r-stream")));
    let line = &lines(&log)["r-stream"];
    assert_eq!(line["bytesOut"], 20, "{line}");
    assert_eq!(line["upstream"], "default/chunked", "{line}");
}
