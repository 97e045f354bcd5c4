//! API versioning end to end (`spec/api.md`, ApiRoute `spec.version`;
//! `docs/routing.md`, "Versioning"): the built `gatehouse run` over a folder of
//! manifests, the echo upstream behind it, raw HTTP/1.1 requests. Each scheme has its
//! own host (`path.test`, `header.test`, `query.test`, `media.test`), each with a
//! `default` v1 and a v2 side by side on the same paths. Every route's
//! `requestTransform` sets `X-Served-By`, so the echoed request says which version
//! served it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

use common::{
    Gateway, RawResponse, assert_problem, canned_upstream, echoed, free_port, request,
    upstream_runtime,
};

const SUNSET: &str = "Wed, 30 Jun 2027 00:00:00 GMT";

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: closed}
spec:
  endpoints: [{host: 127.0.0.1, port: @CLOSED@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: varying}
spec:
  endpoints: [{host: 127.0.0.1, port: @VARYING@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: path-v1}
spec:
  hosts: [path.test]
  version: {name: v1, scheme: Path, default: true, deprecated: true, sunset: "2027-06-30T02:00:00+02:00"}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v1}}}
  rules:
    - name: users
      matches: [{path: {type: Prefix, value: /users}}]
      backends: [{upstream: echo}]
    - name: down
      matches: [{path: {type: Prefix, value: /down}}]
      backends: [{upstream: closed}]
    - name: drained
      matches: [{path: {type: Prefix, value: /drained}}]
      backends: [{upstream: echo, weight: 0}]
    - name: moved
      matches: [{path: {type: Exact, value: /moved}}]
      redirect: {path: /v1/users, statusCode: 301}
    - name: fixed
      matches: [{path: {type: Exact, value: /fixed}}]
      respond: {status: 200, body: fixed}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: path-v2}
spec:
  hosts: [path.test]
  version: {name: v2, scheme: Path}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v2}}}
  rules:
    - name: user
      matches: [{path: {type: Template, value: "/users/{id}"}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform: {headers: {set: {X-Served-By: v2, X-User: "${path.id}"}}}
    - name: root
      matches: [{path: {type: Exact, value: /}}]
      backends: [{upstream: echo}]
    - name: legacy
      matches: [{path: {type: Prefix, value: /legacy}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform:
          headers: {set: {X-Served-By: v2}}
          path: {replacePrefixMatch: /internal}
    - name: items
      matches: [{path: {type: Regex, value: "/items/(?P<id>[0-9]+)"}}]
      backends: [{upstream: echo}]
      policies:
        requestTransform: {headers: {set: {X-Served-By: v2, X-Item: "${path.id}"}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: header-v1}
spec:
  hosts: [header.test]
  version: {name: v1, scheme: Header, default: true}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v1}}}
  rules:
    - name: orders
      matches: [{path: {type: Prefix, value: /orders}, methods: [GET]}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: header-v2}
spec:
  hosts: [header.test]
  version: {name: v2, scheme: Header}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v2}}}
  rules:
    - name: orders
      matches: [{path: {type: Prefix, value: /orders}}]
      backends: [{upstream: echo}]
    - name: varying
      matches: [{path: {type: Prefix, value: /varying}}]
      backends: [{upstream: varying}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: query-v1}
spec:
  hosts: [query.test]
  version: {name: v1, scheme: Query, queryParam: api, default: true}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v1}}}
  rules:
    - matches: [{path: {type: Prefix, value: /search}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: query-v2}
spec:
  hosts: [query.test]
  version: {name: v2, scheme: Query, queryParam: api}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v2}}}
  rules:
    - matches: [{path: {type: Prefix, value: /search}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: media-v1}
spec:
  hosts: [media.test]
  version: {name: v1, scheme: MediaType, default: true}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v1}}}
  rules:
    - matches: [{path: {type: Prefix, value: /media}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: media-v2}
spec:
  hosts: [media.test]
  version: {name: v2, scheme: MediaType, deprecated: true}
  policies:
    requestTransform: {headers: {set: {X-Served-By: v2}}}
  rules:
    - matches: [{path: {type: Prefix, value: /media}}]
      backends: [{upstream: echo}]
"#;

/// The manifests with `@ECHO@`, `@CLOSED@` and `@VARYING@` replaced by ports.
fn manifests(echo: u16, closed: u16, varying: u16) -> String {
    MANIFESTS
        .replace("@ECHO@", &echo.to_string())
        .replace("@CLOSED@", &closed.to_string())
        .replace("@VARYING@", &varying.to_string())
}

/// `gatehouse run` over [`MANIFESTS`], with its upstreams.
fn start() -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let varying = canned_upstream(&upstreams, "vary: Origin\r\n", "varying");
    let text = manifests(echo.port(), free_port().port(), varying.port());
    Gateway::serve(upstreams, &[("versions.yaml", text)])
}

fn gateway() -> Arc<Gateway> {
    static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

fn get(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(gw.http, "GET", host, target, headers)
}

/// Which version served `target` (the `X-Served-By` the route's transform set) and the
/// target the upstream received.
fn served(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> (String, String) {
    let r = get(gw, host, target, headers);
    assert_eq!(
        r.status,
        200,
        "{host}{target} {headers:?}: {r:?} {}",
        r.text()
    );
    let e = echoed(&r);
    let by = e.header("x-served-by").unwrap_or("none").to_string();
    (by, e.uri)
}

fn pair(by: &str, uri: &str) -> (String, String) {
    (by.to_string(), uri.to_string())
}

// === Path ===

#[test]
fn path_scheme_serves_each_version_under_its_prefix_and_strips_it_upstream() {
    let gw = gateway();
    let at = |target: &str| served(&gw, "path.test", target, &[]);
    assert_eq!(at("/v2/users/7?x=1"), pair("v2", "/users/7?x=1"));
    assert_eq!(at("/v1/users/7?x=1"), pair("v1", "/users/7?x=1"));
    // The default: no version in the path, nothing stripped.
    assert_eq!(at("/users/7"), pair("v1", "/users/7"));
    assert_eq!(at("/v1/users"), pair("v1", "/users"));
    // Exact `/` under v2 is `/v2`, forwarded as `/`.
    assert_eq!(at("/v2"), pair("v2", "/"));
    // Normalized before matching: `/v2/./users/../users/8` is `/v2/users/8`.
    assert_eq!(at("/v2/./users/../users/8"), pair("v2", "/users/8"));

    // Template captures still work under the prefix.
    let r = get(&gw, "path.test", "/v2/users/42", &[]);
    assert_eq!(echoed(&r).header("x-user"), Some("42"), "{r:?}");
    // So do named regex groups; the regex is matched after the prefix.
    let r = get(&gw, "path.test", "/v2/items/9", &[]);
    let e = echoed(&r);
    assert_eq!(
        (e.uri.as_str(), e.header("x-item")),
        ("/items/9", Some("9"))
    );

    // Not a version this gateway serves, a segment that only starts with one, a
    // version in another case: nothing matches.
    for target in ["/v3/users/7", "/v2x/users/7", "/V2/users/7", "/v2/unknown"] {
        let r = get(&gw, "path.test", target, &[]);
        assert_problem(&r, 404);
        // Not a response of any route: no version headers.
        assert_eq!(r.header("deprecation"), None, "{target}: {r:?}");
        assert_eq!(r.header("sunset"), None, "{target}: {r:?}");
    }
}

#[test]
fn path_prefix_is_stripped_before_the_request_transform_rewrites_the_path() {
    let gw = gateway();
    let at = |target: &str| served(&gw, "path.test", target, &[]);
    // replacePrefixMatch works on `/legacy/...`, as if the route had no version.
    assert_eq!(at("/v2/legacy/a/b?q=1"), pair("v2", "/internal/a/b?q=1"));
    assert_eq!(at("/v2/legacy"), pair("v2", "/internal"));
}

// === Header ===

#[test]
fn header_scheme_selects_the_version_and_defaults_to_v1() {
    let gw = gateway();
    let at = |headers: &[(&str, &str)]| served(&gw, "header.test", "/orders/1", headers);
    assert_eq!(at(&[("Api-Version", "v2")]), pair("v2", "/orders/1"));
    // Header names compare case-insensitively; values exactly.
    assert_eq!(at(&[("api-version", "v2")]), pair("v2", "/orders/1"));
    assert_eq!(at(&[("Api-Version", "v1")]), pair("v1", "/orders/1"));
    assert_eq!(at(&[]), pair("v1", "/orders/1"));
    // An unknown version (or another case) is served as if none was named.
    assert_eq!(at(&[("Api-Version", "v9")]), pair("v1", "/orders/1"));
    assert_eq!(at(&[("Api-Version", "V2")]), pair("v1", "/orders/1"));

    // The header reaches the upstream unchanged.
    let r = get(&gw, "header.test", "/orders/1", &[("Api-Version", "v2")]);
    assert_eq!(echoed(&r).header("api-version"), Some("v2"));

    // v1's rule takes GET only: a POST naming no version finds no rule of v1 for
    // its method (405), while naming v2 reaches v2, which takes any method.
    let r = request(gw.http, "POST", "header.test", "/orders/1", &[]);
    assert_problem(&r, 405);
    let r = request(
        gw.http,
        "POST",
        "header.test",
        "/orders/1",
        &[("Api-Version", "v2"), ("Content-Length", "0")],
    );
    assert_eq!(echoed(&r).header("x-served-by"), Some("v2"), "{r:?}");
}

#[test]
fn header_and_media_type_schemes_vary_on_the_selecting_header() {
    let gw = gateway();
    for headers in [&[][..], &[("Api-Version", "v2")][..]] {
        let r = get(&gw, "header.test", "/orders/1", headers);
        assert_eq!(
            r.header_values("vary"),
            ["Api-Version"],
            "{headers:?}: {r:?}"
        );
    }
    // Added to the upstream's own Vary, not replacing it.
    let r = get(&gw, "header.test", "/varying", &[("Api-Version", "v2")]);
    assert_eq!(r.text(), "varying");
    assert_eq!(r.header_values("vary"), ["Origin", "Api-Version"], "{r:?}");

    let r = get(
        &gw,
        "media.test",
        "/media",
        &[("Accept", "application/json")],
    );
    assert_eq!(r.header_values("vary"), ["Accept"], "{r:?}");
    // Path and Query versions are in the URL: no Vary.
    let r = get(&gw, "path.test", "/v2/users/1", &[]);
    assert_eq!(r.header("vary"), None, "{r:?}");
    let r = get(&gw, "query.test", "/search?api=v2", &[]);
    assert_eq!(r.header("vary"), None, "{r:?}");
}

// === Query ===

#[test]
fn query_scheme_selects_the_version_by_parameter() {
    let gw = gateway();
    let at = |target: &str| served(&gw, "query.test", target, &[]);
    // The parameter stays in the forwarded query.
    assert_eq!(at("/search?api=v2&q=x"), pair("v2", "/search?api=v2&q=x"));
    assert_eq!(at("/search?q=x&api=v1"), pair("v1", "/search?q=x&api=v1"));
    assert_eq!(at("/search?q=x"), pair("v1", "/search?q=x"));
    assert_eq!(at("/search?api=v3"), pair("v1", "/search?api=v3"));
    // Values are compared percent-decoded: `v%32` is `v2`.
    assert_eq!(at("/search?api=v%32"), pair("v2", "/search?api=v%32"));
}

// === MediaType ===

#[test]
fn media_type_scheme_reads_the_accept_header() {
    let gw = gateway();
    let at = |accept: &str| served(&gw, "media.test", "/media/a", &[("Accept", accept)]).0;
    for v2 in [
        "application/vnd.acme.v2+json",
        "application/json; version=v2",
        "text/html, application/json;Version=\"v2\";q=0.9",
    ] {
        assert_eq!(at(v2), "v2", "{v2}");
    }
    for v1 in [
        "application/json",
        "application/vnd.acme.v1+json",
        "application/json; version=v22",
        "*/*",
    ] {
        assert_eq!(at(v1), "v1", "{v1}");
    }
    assert_eq!(served(&gw, "media.test", "/media/a", &[]).0, "v1");
    // v2 is deprecated, v1 is not.
    let r = get(
        &gw,
        "media.test",
        "/media",
        &[("Accept", "application/vnd.acme.v2+json")],
    );
    assert_eq!(r.header("deprecation"), Some("true"));
    let r = get(&gw, "media.test", "/media", &[]);
    assert_eq!(r.header("deprecation"), None);
}

// === Deprecation and Sunset ===

#[test]
fn deprecation_and_sunset_mark_every_response_of_the_route() {
    let gw = gateway();
    let marked = |r: &RawResponse, what: &str| {
        assert_eq!(r.header_values("deprecation"), ["true"], "{what}: {r:?}");
        assert_eq!(r.header_values("sunset"), [SUNSET], "{what}: {r:?}");
    };
    // Upstream answers, versioned and default.
    marked(&get(&gw, "path.test", "/v1/users", &[]), "upstream, /v1");
    marked(&get(&gw, "path.test", "/users", &[]), "upstream, default");
    // Gateway-generated errors of the route: connection refused, no backend.
    let r = get(&gw, "path.test", "/v1/down", &[]);
    assert_problem(&r, 502);
    marked(&r, "502");
    let r = get(&gw, "path.test", "/drained", &[]);
    assert_problem(&r, 503);
    marked(&r, "503");
    // A redirect keeps the client's path (here the rule's) and is marked.
    let r = get(&gw, "path.test", "/v1/moved", &[]);
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("http://path.test/v1/users"));
    marked(&r, "redirect");
    // A fixed response.
    let r = get(&gw, "path.test", "/fixed", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "fixed"));
    marked(&r, "respond");

    // v2 is neither deprecated nor sunset.
    let r = get(&gw, "path.test", "/v2/users/1", &[]);
    assert_eq!(r.status, 200);
    assert_eq!((r.header("deprecation"), r.header("sunset")), (None, None));
}

// === lint and explain ===

fn gatehouse(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("-f")
        .arg(dir)
        .output()
        .expect("gatehouse runs")
}

fn manifest_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("routes.yaml"), text).expect("write manifests");
    dir
}

#[test]
fn lint_accepts_versioned_routes() {
    let (ok, text) = common::lint(&manifests(8080, 8081, 8082), &[]);
    // One warning: the rule whose only backend has weight 0.
    assert!(ok, "{text}");
    assert!(!text.contains("UnsupportedValue"), "{text}");
    assert!(!text.contains("spec.version"), "{text}");
}

#[test]
fn lint_reports_two_defaults_on_the_same_matches_as_a_conflict() {
    let route = |name: &str, version: &str, created: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\"}}\nspec:\n  version: {{name: {version}, scheme: Header, default: true}}\n  rules:\n    - matches: [{{path: {{type: Prefix, value: /orders}}}}]\n      respond: {{status: 200}}\n---\n"
        )
    };
    let dir = manifest_dir(
        &[
            route("orders-v2", "v2", "2025-01-01T00:00:00Z"),
            route("orders-v1", "v1", "2024-01-01T00:00:00Z"),
            "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: bad, namespace: shop}\nspec:\n  version: {name: v2/beta}\n  rules: [{respond: {status: 200}}]\n".to_string(),
        ]
        .concat(),
    );
    let out = gatehouse(&["lint", "--output", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let diags: Vec<(String, String, String, String)> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            let object = format!(
                "{}/{}",
                d["object"]["namespace"].as_str().unwrap_or_default(),
                d["object"]["name"].as_str().unwrap_or_default()
            );
            (object, s("field"), s("reason"), s("message"))
        })
        .collect();
    assert_eq!(diags.len(), 2, "{diags:#?}");
    let conflict = diags
        .iter()
        .find(|d| d.2 == "Conflicted")
        .unwrap_or_else(|| panic!("{diags:#?}"));
    assert_eq!(
        conflict.0, "shop/orders-v2",
        "the newer loses: {conflict:?}"
    );
    assert_eq!(conflict.1, "spec.rules[0].matches[0]");
    assert!(
        conflict
            .3
            .contains("ApiRoute shop/orders-v1, which is older and wins"),
        "{conflict:?}"
    );
    let invalid = diags
        .iter()
        .find(|d| d.2 == "Invalid")
        .unwrap_or_else(|| panic!("{diags:#?}"));
    assert_eq!(
        (invalid.0.as_str(), invalid.1.as_str()),
        ("shop/bad", "spec.version.name"),
        "{invalid:?}"
    );
    assert!(invalid.3.contains("single path segment"), "{invalid:?}");
}

#[test]
fn explain_shows_the_effective_match_and_the_stripped_path() {
    let dir = manifest_dir(&manifests(8080, 8081, 8082));
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["explain", "-f"])
        .arg(dir.path())
        .args(["GET", "http://path.test/v2/users/42"])
        .output()
        .expect("explain runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ApiRoute default/path-v2, rule \"user\""),
        "{text}"
    );
    assert!(text.contains("forwarded path: /users/42"), "{text}");
    assert!(text.contains("API version v2 (Path scheme)"), "{text}");
}
