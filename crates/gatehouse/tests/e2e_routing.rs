//! Routing end to end, as a client sees it: the built `gatehouse run` over a folder of
//! manifests with many routes, real upstreams behind it, and raw HTTP/1.1 requests
//! written byte for byte. Each test asserts one part of the contract
//! (`spec/api.md`: ApiRoute matches, precedence, redirect, respond; `spec/runtime.md`:
//! errors, headers, limits; `docs/routing.md`: hosts, paths, normalization).
//!
//! Every group of routes lives under its own host name (`paths.test`, `prec.test`, ...)
//! so the groups cannot select each other's rules; the few any-host routes use paths no
//! other test requests.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use common::{
    Gateway, RawResponse, assert_problem, canned_upstream, closing_upstream, echoed, free_port,
    request, request_head, send_raw, send_streaming, upstream_runtime,
};

// === the gateway under test ===

/// Upstreams every route can use; `@NAME@` is replaced by that upstream's port.
const UPSTREAMS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo-short}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
  timeouts: {request: 300ms}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: alpha}
spec:
  endpoints: [{host: 127.0.0.1, port: @ALPHA@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: beta}
spec:
  endpoints: [{host: 127.0.0.1, port: @BETA@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: hop}
spec:
  endpoints: [{host: 127.0.0.1, port: @HOP@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: refused}
spec:
  endpoints: [{host: 127.0.0.1, port: @CLOSED@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: reset}
spec:
  endpoints: [{host: 127.0.0.1, port: @RESET@}]
"#;

/// Exact host vs wildcard vs any host.
const HOSTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: host-exact}
spec:
  hosts: [api.example.test]
  rules:
    - name: whoami
      matches: [{path: {type: Prefix, value: /whoami}}]
      respond: {status: 200, body: exact}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: host-wildcard}
spec:
  hosts: ["*.example.test"]
  rules:
    - name: whoami
      matches: [{path: {type: Prefix, value: /whoami}}]
      respond: {status: 200, body: wildcard}
    - name: deeper
      matches: [{path: {type: Exact, value: /whoami/deeper}}]
      respond: {status: 200, body: wildcard-exact-path}
    - name: only-wildcard
      matches: [{path: {type: Exact, value: /only-wildcard}}]
      respond: {status: 200, body: wildcard-fallthrough}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: host-wildcard-longer}
spec:
  hosts: ["*.eu.example.test"]
  rules:
    - name: whoami
      matches: [{path: {type: Prefix, value: /whoami}}]
      respond: {status: 200, body: wildcard-longer}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: host-any}
spec:
  rules:
    - name: whoami
      matches: [{path: {type: Prefix, value: /whoami}}]
      respond: {status: 200, body: any}
    - name: only-any
      matches: [{path: {type: Exact, value: /only-any}}]
      respond: {status: 200, body: any-fallthrough}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: host-only}
spec:
  hosts: [only.test]
  rules:
    - name: only-here
      matches: [{path: {type: Exact, value: /only-here}}]
      respond: {status: 200, body: only}
"#;

/// The four path types; captures are shown through redirect paths.
const PATHS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: paths}
spec:
  hosts: [paths.test]
  rules:
    - name: exact
      matches: [{path: {type: Exact, value: /exact}}]
      respond: {status: 200, body: exact}
    - name: prefix
      matches: [{path: {type: Prefix, value: /api}}]
      respond: {status: 200, body: prefix}
    - name: template
      matches: [{path: {type: Template, value: "/users/{id}"}}]
      redirect: {path: "/captured/${path.id}"}
    - name: template-rest
      matches: [{path: {type: Template, value: "/files/{owner}/{*rest}"}}]
      redirect: {path: "/captured/${path.owner}/rest/${path.rest}"}
    - name: regex
      matches: [{path: {type: Regex, value: "/re/[0-9]+"}}]
      respond: {status: 200, body: regex}
    - name: regex-group
      matches: [{path: {type: Regex, value: "/items/(?P<id>[0-9]+)\\.json"}}]
      redirect: {path: "/captured/${path.id}"}
"#;

/// Methods, and 405.
const METHODS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: methods}
spec:
  hosts: [methods.test]
  rules:
    - name: read
      matches: [{path: {type: Template, value: "/things/{id}"}, methods: [get, HEAD]}]
      respond: {status: 200, body: read}
    - name: write
      matches: [{path: {type: Template, value: "/things/{id}"}, methods: [POST]}]
      respond: {status: 201, body: written}
    - name: any-method
      matches: [{path: {type: Exact, value: /anything}}]
      respond: {status: 200, body: any-method}
"#;

/// Header and query conditions.
const CONDITIONS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: conditions}
spec:
  hosts: [cond.test]
  rules:
    - name: h-plain
      matches: [{path: {type: Prefix, value: /h}}]
      respond: {status: 200, body: h-plain}
    - name: h-exact
      matches: [{path: {type: Prefix, value: /h}, headers: [{name: X-Tenant, type: Exact, value: acme}]}]
      respond: {status: 200, body: h-exact}
    - name: h-regex
      matches: [{path: {type: Prefix, value: /h}, headers: [{name: x-tenant, type: Regex, value: "beta-[0-9]+"}]}]
      respond: {status: 200, body: h-regex}
    - name: h-present
      matches: [{path: {type: Prefix, value: /h}, headers: [{name: x-debug, type: Present}]}]
      respond: {status: 200, body: h-present}
    - name: q-plain
      matches: [{path: {type: Prefix, value: /q}}]
      respond: {status: 200, body: q-plain}
    - name: q-present
      matches: [{path: {type: Prefix, value: /q}, queryParams: [{name: debug, type: Present}]}]
      respond: {status: 200, body: q-present}
    - name: q-exact
      matches: [{path: {type: Prefix, value: /q}, queryParams: [{name: version, type: Exact, value: "2"}]}]
      respond: {status: 200, body: q-exact}
    - name: q-regex
      matches: [{path: {type: Prefix, value: /q}, queryParams: [{name: id, type: Regex, value: "[a-f]{3}"}]}]
      respond: {status: 200, body: q-regex}
    - name: q-decoded
      matches: [{path: {type: Prefix, value: /q}, queryParams: [{name: city, type: Exact, value: "new york"}]}]
      respond: {status: 200, body: q-decoded}
    - name: all-plain
      matches: [{path: {type: Prefix, value: /all}}]
      respond: {status: 200, body: all-plain}
    - name: all-of
      matches:
        - path: {type: Prefix, value: /all}
          headers: [{name: x-a, type: Exact, value: "1"}]
          queryParams: [{name: b, type: Present}]
      respond: {status: 200, body: all-of}
"#;

/// Precedence, step by step as `api.md` lists it, and a conflict.
const PRECEDENCE: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: prec}
spec:
  hosts: [prec.test]
  rules:
    # Path class: Exact, then Template/Prefix, then Regex, whatever the conditions.
    - name: class-exact
      matches: [{path: {type: Exact, value: /p/exact}}]
      respond: {status: 200, body: class-exact}
    - name: class-template
      matches: [{path: {type: Template, value: "/p/{x}"}, methods: [GET], headers: [{name: x-a, type: Present}]}]
      respond: {status: 200, body: class-template}
    - name: class-prefix
      matches: [{path: {type: Prefix, value: /p}}]
      respond: {status: 200, body: class-prefix}
    - name: class-regex
      matches: [{path: {type: Regex, value: "(/p|/r)/.*"}, methods: [GET], headers: [{name: x-a, type: Present}]}]
      respond: {status: 200, body: class-regex}
    # Literal characters: the template /p1/{a}/path has 9, the prefix /p1/long 8 ...
    - name: lit-template-9
      matches: [{path: {type: Template, value: "/p1/{a}/path"}}]
      respond: {status: 200, body: lit-template-9}
    - name: lit-prefix-8
      matches: [{path: {type: Prefix, value: /p1/long}}]
      respond: {status: 200, body: lit-prefix-8}
    # ... the prefix /p2/long/path 13, the template /p2/{a}/path 9.
    - name: lit-prefix-13
      matches: [{path: {type: Prefix, value: /p2/long/path}}]
      respond: {status: 200, body: lit-prefix-13}
    - name: lit-template-9b
      matches: [{path: {type: Template, value: "/p2/{a}/path"}}]
      respond: {status: 200, body: lit-template-9b}
    - name: lit-short
      matches: [{path: {type: Prefix, value: /p3}}]
      respond: {status: 200, body: lit-short}
    - name: lit-long
      matches: [{path: {type: Prefix, value: /p3/sub}}]
      respond: {status: 200, body: lit-long}
    # Conditions: more first; a methods list counts one.
    - name: cond-0
      matches: [{path: {type: Prefix, value: /c}}]
      respond: {status: 200, body: cond-0}
    - name: cond-1
      matches: [{path: {type: Prefix, value: /c}, headers: [{name: x-a, type: Present}]}]
      respond: {status: 200, body: cond-1}
    - name: cond-2
      matches: [{path: {type: Prefix, value: /c}, methods: [GET, PUT], headers: [{name: x-a, type: Present}]}]
      respond: {status: 200, body: cond-2}
    - name: cond-3
      matches:
        - path: {type: Prefix, value: /c}
          methods: [GET]
          headers: [{name: x-a, type: Present}]
          queryParams: [{name: q, type: Present}]
      respond: {status: 200, body: cond-3}
    - name: cond-deeper
      matches: [{path: {type: Prefix, value: /c/deep}}]
      respond: {status: 200, body: cond-deeper}
---
# Age: the older object wins; objects without a creationTimestamp come last. Names are
# chosen so that name order alone would pick differently.
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: zz-old, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /age}, headers: [{name: x-a, type: Present}]}]
      respond: {status: 200, body: zz-old}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: aa-new, creationTimestamp: "2024-06-01T00:00:00Z"}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /age}, headers: [{name: x-b, type: Present}]}]
      respond: {status: 200, body: aa-new}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: aa-untimed}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /age}, headers: [{name: x-c, type: Present}]}]
      respond: {status: 200, body: aa-untimed}
---
# Same age (none): namespace, then name.
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: a-first, namespace: beta}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /ns}, headers: [{name: x-b, type: Present}]}]
      respond: {status: 200, body: beta/a-first}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: z-last, namespace: alpha}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /ns}, headers: [{name: x-z, type: Present}]}]
      respond: {status: 200, body: alpha/z-last}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: m-mid, namespace: alpha}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /ns}, headers: [{name: x-m, type: Present}]}]
      respond: {status: 200, body: alpha/m-mid}
---
# Same object: rule order, then match order.
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: order}
spec:
  hosts: [prec.test]
  rules:
    - name: first
      matches:
        - {path: {type: Prefix, value: /order}, headers: [{name: x-b, type: Present}]}
        - {path: {type: Prefix, value: /order}, headers: [{name: x-a, type: Present}]}
      respond: {status: 200, body: first}
    - name: second
      matches: [{path: {type: Prefix, value: /order}, headers: [{name: x-c, type: Present}]}]
      respond: {status: 200, body: second}
---
# A conflict: the newer route is not accepted, as a whole; the older one serves.
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: conflict-old, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /conflict}}]
      respond: {status: 200, body: conflict-old}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: conflict-new, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [prec.test]
  rules:
    - matches: [{path: {type: Prefix, value: /conflict/}}]
      respond: {status: 200, body: conflict-new}
    - matches: [{path: {type: Exact, value: /conflict-extra}}]
      respond: {status: 200, body: conflict-new-extra}
"#;

/// Weighted backends.
const WEIGHTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: weights}
spec:
  hosts: [weights.test]
  rules:
    - name: split
      matches: [{path: {type: Exact, value: /split}}]
      backends: [{upstream: alpha, weight: 3}, {upstream: beta, weight: 1}]
    - name: drained
      matches: [{path: {type: Exact, value: /drained}}]
      backends: [{upstream: alpha, weight: 1}, {upstream: beta, weight: 0}]
"#;

/// Redirects.
const REDIRECTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: redirects}
spec:
  hosts: [redir.test]
  rules:
    - name: moved
      matches: [{path: {type: Template, value: "/r1/{id}"}}]
      redirect: {scheme: https, hostname: api.example.com, path: "/v2/users/${path.id}", statusCode: 301}
    - name: port
      matches: [{path: {type: Exact, value: /r-port}}]
      redirect: {hostname: other.test, port: 8443}
    - name: https-default-port
      matches: [{path: {type: Exact, value: /r-443}}]
      redirect: {scheme: https, hostname: secure.test, port: 443, statusCode: 308}
    - name: http-default-port
      matches: [{path: {type: Exact, value: /r-80}}]
      redirect: {scheme: http, port: 80, path: /plain}
    - name: scheme-only
      matches: [{path: {type: Exact, value: /r-https}}]
      redirect: {scheme: https}
    - name: s302
      matches: [{path: {type: Exact, value: /r302}}]
      redirect: {path: /dest}
    - name: s301
      matches: [{path: {type: Exact, value: /r301}}]
      redirect: {path: /dest, statusCode: 301}
    - name: s303
      matches: [{path: {type: Exact, value: /r303}}]
      redirect: {path: /dest, statusCode: 303}
    - name: s307
      matches: [{path: {type: Exact, value: /r307}}]
      redirect: {path: /dest, statusCode: 307}
    - name: s308
      matches: [{path: {type: Exact, value: /r308}}]
      redirect: {path: /dest, statusCode: 308}
    - name: templates
      matches: [{path: {type: Template, value: "/r-tpl/{id}"}}]
      redirect: {path: "/t/${path.id}/${query.name}/${header.x-user}/${clientIp}/${requestId}"}
    - name: rest
      matches: [{path: {type: Template, value: "/r-rest/{*rest}"}}]
      redirect: {path: "/new/${path.rest}", statusCode: 308}
    - name: regex-group
      matches: [{path: {type: Regex, value: "/legacy/(?P<id>[0-9]+)"}}]
      redirect: {path: "/items/${path.id}", statusCode: 308}
"#;

/// Fixed responses.
const RESPONDS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: responds}
spec:
  hosts: [respond.test]
  rules:
    - name: json
      matches: [{path: {type: Exact, value: /json}}]
      respond: {status: 200, contentType: application/json, body: '{"status":"ok"}'}
    - name: maintenance
      matches: [{path: {type: Exact, value: /maintenance}}]
      respond: {status: 503, contentType: application/json, body: '{"message":"maintenance"}'}
    - name: teapot
      matches: [{path: {type: Exact, value: /teapot}}]
      respond: {status: 418, body: short and stout}
    - name: empty
      matches: [{path: {type: Exact, value: /empty}}]
      respond: {status: 202}
"#;

/// Error statuses, forwarding and normalization (routes to the upstreams).
const PROXIED: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: errors}
spec:
  hosts: [errors.test]
  rules:
    - name: echo
      matches: [{path: {type: Prefix, value: /echo}}]
      backends: [{upstream: echo}]
    - name: respond-ok
      matches: [{path: {type: Exact, value: /respond-ok}}]
      respond: {status: 200, body: ok}
    - name: refused
      matches: [{path: {type: Exact, value: /refused}}]
      backends: [{upstream: refused}]
    - name: reset
      matches: [{path: {type: Exact, value: /reset}}]
      backends: [{upstream: reset}]
    - name: rule-timeout
      matches: [{path: {type: Prefix, value: /slow}}]
      backends: [{upstream: echo}]
      timeout: 200ms
    - name: upstream-timeout
      matches: [{path: {type: Prefix, value: /slowly}}]
      backends: [{upstream: echo-short}]
    - name: missing-upstream
      matches: [{path: {type: Exact, value: /missing}}]
      backends: [{upstream: nowhere}]
    - name: blocked
      matches: [{path: {type: Exact, value: /blocked}}]
      backends: [{upstream: echo}]
      policyRefs: [{name: no-such-policy}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: forwarding}
spec:
  hosts: [fwd.test]
  rules:
    - name: hop-response
      matches: [{path: {type: Exact, value: /hop-response}}]
      backends: [{upstream: hop}]
    - name: echo
      matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: normalization}
spec:
  hosts: [norm.test]
  rules:
    - name: echo
      matches: [{path: {type: Prefix, value: /n}}]
      backends: [{upstream: echo}]
    - name: public
      matches: [{path: {type: Prefix, value: /public}}]
      backends: [{upstream: echo}]
    - name: secret
      matches: [{path: {type: Exact, value: /secret}}]
      respond: {status: 403, body: secret}
    - name: abc
      matches: [{path: {type: Exact, value: /abc}}]
      respond: {status: 200, body: abc}
    - name: encoded-slashes
      matches: [{path: {type: Prefix, value: /enc}, allowEncodedSlashes: true}]
      backends: [{upstream: echo}]
"#;

/// The manifest files, by name.
const FILES: [(&str, &str); 10] = [
    ("upstreams.yaml", UPSTREAMS),
    ("hosts.yaml", HOSTS),
    ("paths.yaml", PATHS),
    ("methods.yaml", METHODS),
    ("conditions.yaml", CONDITIONS),
    ("precedence.yaml", PRECEDENCE),
    ("weights.yaml", WEIGHTS),
    ("redirects.yaml", REDIRECTS),
    ("responds.yaml", RESPONDS),
    ("proxied.yaml", PROXIED),
];

/// `gatehouse run` over [`FILES`], with its upstreams.
fn start() -> Gateway {
    let upstreams = upstream_runtime();
    let echo = common::spawn_echo(&upstreams);
    let alpha = canned_upstream(&upstreams, "", "alpha");
    let beta = canned_upstream(&upstreams, "", "beta");
    let hop = canned_upstream(
        &upstreams,
        "connection: x-up-secret\r\nx-up-secret: 1\r\nkeep-alive: timeout=5\r\n\
         proxy-authenticate: Basic realm=\"up\"\r\nx-up-kept: yes\r\n",
        "hop",
    );
    let reset = closing_upstream(&upstreams);
    let closed = free_port();
    let files: Vec<(&str, String)> = FILES
        .iter()
        .map(|(name, text)| {
            let text = text
                .replace("@ECHO@", &echo.port().to_string())
                .replace("@ALPHA@", &alpha.port().to_string())
                .replace("@BETA@", &beta.port().to_string())
                .replace("@HOP@", &hop.port().to_string())
                .replace("@RESET@", &reset.port().to_string())
                .replace("@CLOSED@", &closed.port().to_string());
            (*name, text)
        })
        .collect();
    Gateway::serve(upstreams, &files)
}

/// The gateway, shared by the tests that run at the same time; the last one to finish
/// stops it (a `static` is never dropped, so it holds only a weak reference).
fn gateway() -> Arc<Gateway> {
    static SHARED: Mutex<Weak<Gateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

// === request helpers ===

fn get(gw: &Gateway, host: &str, target: &str) -> RawResponse {
    request(gw.http, "GET", host, target, &[])
}

fn get_with(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(gw.http, "GET", host, target, headers)
}

/// The body of a `200` answer to `GET target` on `host`: the name of the rule that
/// served it, for the `respond` rules above.
fn served_by(gw: &Gateway, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let r = get_with(gw, host, target, headers);
    assert_eq!(
        r.status,
        200,
        "GET {host}{target} {headers:?}: {r:?} {}",
        r.text()
    );
    r.text()
}

/// `Location` of a redirect, checking its status.
fn location(r: &RawResponse, status: u16) -> &str {
    assert_eq!(r.status, status, "{r:?}");
    r.header("location")
        .unwrap_or_else(|| panic!("a redirect without Location: {r:?}"))
}

/// The methods an `Allow` header lists.
fn allowed(r: &RawResponse) -> BTreeSet<String> {
    r.header_values("allow")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A `traceparent` value: `00-<32 hex, not all 0>-<16 hex, not all 0>-<2 hex>`; returns
/// the trace id.
fn trace_id(traceparent: &str) -> &str {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2)
            && parts[1].bytes().any(|b| b != b'0')
            && parts[2].bytes().any(|b| b != b'0'),
        "not a W3C traceparent: {traceparent:?}"
    );
    parts[1]
}

// === hosts ===

#[test]
fn exact_host_beats_wildcard_and_the_longer_wildcard_suffix_wins() {
    let gw = gateway();
    let who = |host: &str| served_by(&gw, host, "/whoami", &[]);
    assert_eq!(who("api.example.test"), "exact");
    // Compared lowercase, without port and trailing dot.
    assert_eq!(who("API.Example.TEST:8080"), "exact");
    assert_eq!(who("api.example.test."), "exact");
    // A wildcard matches one or more extra labels...
    assert_eq!(who("foo.example.test"), "wildcard");
    assert_eq!(who("a.b.example.test"), "wildcard");
    // ... the longest suffix first ...
    assert_eq!(who("x.eu.example.test"), "wildcard-longer");
    assert_eq!(who("a.b.eu.example.test"), "wildcard-longer");
    assert_eq!(who("eu.example.test"), "wildcard");
    // ... never the bare suffix; routes without hosts take any host.
    assert_eq!(who("example.test"), "any");
    assert_eq!(who("elsewhere.test"), "any");
    assert_eq!(who("localhost:1234"), "any");
    // An absolute-form target names the host; `Host` is then ignored (RFC 9112 3.2.2).
    let r = get(&gw, "elsewhere.test", "http://api.example.test/whoami");
    assert_eq!((r.status, r.text().as_str()), (200, "exact"), "{r:?}");
}

#[test]
fn a_more_specific_host_wins_over_a_better_path_and_falls_through_when_it_has_no_match() {
    let gw = gateway();
    // The wildcard route has an Exact path for this, but the exact host's Prefix wins.
    assert_eq!(
        served_by(&gw, "api.example.test", "/whoami/deeper", &[]),
        "exact"
    );
    assert_eq!(
        served_by(&gw, "foo.example.test", "/whoami/deeper", &[]),
        "wildcard-exact-path"
    );
    // Nothing under the exact host: the wildcard, then any host, are tried.
    assert_eq!(
        served_by(&gw, "api.example.test", "/only-wildcard", &[]),
        "wildcard-fallthrough"
    );
    assert_eq!(
        served_by(&gw, "api.example.test", "/only-any", &[]),
        "any-fallthrough"
    );
    // A route for named hosts serves no other host.
    assert_eq!(served_by(&gw, "only.test", "/only-here", &[]), "only");
    assert_problem(&get(&gw, "elsewhere.test", "/only-here"), 404);
    assert_problem(&get(&gw, "example.test", "/only-wildcard"), 404);
}

// === paths ===

#[test]
fn exact_is_the_whole_path() {
    let gw = gateway();
    assert_eq!(served_by(&gw, "paths.test", "/exact", &[]), "exact");
    assert_eq!(
        served_by(&gw, "paths.test", "/exact?x=1", &[]),
        "exact",
        "the query is not part of the path"
    );
    for miss in ["/exact/", "/exact/x", "/exactly", "/"] {
        assert_problem(&get(&gw, "paths.test", miss), 404);
    }
}

#[test]
fn prefix_matches_on_segment_boundaries() {
    let gw = gateway();
    for hit in ["/api", "/api/", "/api/x", "/api/x/y", "/api?q=1"] {
        assert_eq!(served_by(&gw, "paths.test", hit, &[]), "prefix", "{hit}");
    }
    for miss in ["/apix", "/ap", "/xapi", "/apix/y"] {
        assert_problem(&get(&gw, "paths.test", miss), 404);
    }
}

#[test]
fn template_captures_whole_segments_and_a_trailing_rest() {
    let gw = gateway();
    let r = get(&gw, "paths.test", "/users/42");
    assert_eq!(location(&r, 302), "http://paths.test/captured/42");
    for miss in ["/users", "/users/", "/users/42/x"] {
        assert_problem(&get(&gw, "paths.test", miss), 404);
    }
    let r = get(&gw, "paths.test", "/files/alice/a/b/c.txt");
    assert_eq!(
        location(&r, 302),
        "http://paths.test/captured/alice/rest/a/b/c.txt"
    );
    // {*rest} is zero or more segments.
    let r = get(&gw, "paths.test", "/files/alice");
    assert_eq!(location(&r, 302), "http://paths.test/captured/alice/rest/");
}

#[test]
fn regex_is_an_anchored_full_match_with_named_groups() {
    let gw = gateway();
    assert_eq!(served_by(&gw, "paths.test", "/re/123", &[]), "regex");
    for miss in ["/re/12a", "/re/", "/re/123/x", "/x/re/123"] {
        assert_problem(&get(&gw, "paths.test", miss), 404);
    }
    let r = get(&gw, "paths.test", "/items/7.json");
    assert_eq!(location(&r, 302), "http://paths.test/captured/7");
    assert_problem(&get(&gw, "paths.test", "/items/7.jsonx"), 404);
    assert_problem(&get(&gw, "paths.test", "/items/7xjson"), 404);
}

// === methods ===

#[test]
fn methods_select_rules_and_a_wrong_method_is_405_with_allow() {
    let gw = gateway();
    assert_eq!(served_by(&gw, "methods.test", "/things/1", &[]), "read");
    let head = request(gw.http, "HEAD", "methods.test", "/things/1", &[]);
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty());
    let post = request(gw.http, "POST", "methods.test", "/things/1", &[]);
    assert_eq!((post.status, post.text().as_str()), (201, "written"));
    let patch = request(gw.http, "PATCH", "methods.test", "/anything", &[]);
    assert_eq!((patch.status, patch.text().as_str()), (200, "any-method"));

    let delete = request(gw.http, "DELETE", "methods.test", "/things/1", &[]);
    assert_problem(&delete, 405);
    assert_eq!(allowed(&delete), set(&["GET", "HEAD", "POST"]));
    // No rule has the path: 404, not 405.
    assert_problem(
        &request(gw.http, "DELETE", "methods.test", "/things", &[]),
        404,
    );
}

// === conditions ===

#[test]
fn header_conditions_exact_regex_present() {
    let gw = gateway();
    let h = |headers: &[(&str, &str)]| served_by(&gw, "cond.test", "/h", headers);
    assert_eq!(h(&[]), "h-plain");
    assert_eq!(h(&[("X-Tenant", "acme")]), "h-exact");
    assert_eq!(
        h(&[("X-TENANT", "acme")]),
        "h-exact",
        "names are case-insensitive"
    );
    assert_eq!(h(&[("x-tenant", "ACME")]), "h-plain", "values are exact");
    assert_eq!(h(&[("x-tenant", "acme2")]), "h-plain");
    assert_eq!(h(&[("x-tenant", "beta-42")]), "h-regex");
    assert_eq!(
        h(&[("x-tenant", "beta-42x")]),
        "h-plain",
        "regex is anchored"
    );
    assert_eq!(
        h(&[("x-tenant", "xbeta-42")]),
        "h-plain",
        "regex is anchored"
    );
    assert_eq!(h(&[("x-debug", "")]), "h-present");
    assert_eq!(h(&[("X-Debug", "anything")]), "h-present");
}

#[test]
fn query_conditions_exact_regex_present_and_decoded() {
    let gw = gateway();
    let q = |target: &str| served_by(&gw, "cond.test", target, &[]);
    assert_eq!(q("/q"), "q-plain");
    assert_eq!(q("/q?debug"), "q-present");
    assert_eq!(q("/q?debug="), "q-present");
    assert_eq!(q("/q?x=1&debug=yes"), "q-present");
    assert_eq!(q("/q?version=2"), "q-exact");
    assert_eq!(q("/q?version=22"), "q-plain");
    assert_eq!(q("/q?id=abc"), "q-regex");
    assert_eq!(q("/q?id=abcd"), "q-plain", "regex is anchored");
    assert_eq!(q("/q?city=new%20york"), "q-decoded", "values are decoded");
    assert_eq!(q("/q?ci%74y=new%20york"), "q-decoded", "names are decoded");
}

#[test]
fn every_condition_of_a_match_must_hold() {
    let gw = gateway();
    let all = |target: &str, headers: &[(&str, &str)]| served_by(&gw, "cond.test", target, headers);
    assert_eq!(all("/all?b", &[("x-a", "1")]), "all-of");
    assert_eq!(all("/all?b", &[("x-a", "2")]), "all-plain");
    assert_eq!(all("/all", &[("x-a", "1")]), "all-plain");
    assert_eq!(all("/all?b", &[]), "all-plain");
}

// === precedence ===

#[test]
fn precedence_exact_then_template_or_prefix_then_regex() {
    let gw = gateway();
    let p = |target: &str| served_by(&gw, "prec.test", target, &[("x-a", "1")]);
    // Exact beats a Template with more conditions.
    assert_eq!(p("/p/exact"), "class-exact");
    assert_eq!(p("/p/other"), "class-template");
    // A Prefix beats a Regex with more conditions ...
    assert_eq!(p("/p/other/deeper"), "class-prefix");
    // ... which serves where no Exact/Template/Prefix matches.
    assert_eq!(p("/r/anything"), "class-regex");
}

#[test]
fn precedence_more_literal_characters_among_template_and_prefix() {
    let gw = gateway();
    let p = |target: &str| served_by(&gw, "prec.test", target, &[]);
    assert_eq!(p("/p1/long/path"), "lit-template-9");
    assert_eq!(p("/p1/long/other"), "lit-prefix-8");
    assert_eq!(p("/p2/long/path"), "lit-prefix-13");
    assert_eq!(p("/p2/short/path"), "lit-template-9b");
    assert_eq!(p("/p3/sub/x"), "lit-long");
    assert_eq!(p("/p3/other"), "lit-short");
}

#[test]
fn precedence_more_conditions_first() {
    let gw = gateway();
    let c = |method: &str, target: &str, headers: &[(&str, &str)]| {
        let r = request(gw.http, method, "prec.test", target, headers);
        assert_eq!(r.status, 200, "{method} {target}: {r:?}");
        r.text()
    };
    assert_eq!(c("GET", "/c?q", &[("x-a", "1")]), "cond-3");
    assert_eq!(c("GET", "/c", &[("x-a", "1")]), "cond-2");
    assert_eq!(c("PUT", "/c?q", &[("x-a", "1")]), "cond-2");
    assert_eq!(c("POST", "/c?q", &[("x-a", "1")]), "cond-1");
    assert_eq!(c("GET", "/c?q", &[]), "cond-0");
    // Literal characters come before conditions.
    assert_eq!(c("GET", "/c/deep/x?q", &[("x-a", "1")]), "cond-deeper");
}

#[test]
fn precedence_older_object_then_namespace_and_name_then_rule_order() {
    let gw = gateway();
    let p = |target: &str, headers: &[(&str, &str)]| served_by(&gw, "prec.test", target, headers);
    // The older object wins over name order; objects without a timestamp come last.
    let abc = [("x-a", "1"), ("x-b", "1"), ("x-c", "1")];
    assert_eq!(p("/age", &abc), "zz-old");
    assert_eq!(p("/age", &abc[1..]), "aa-new");
    assert_eq!(p("/age", &abc[2..]), "aa-untimed");
    // Same age: namespace, then name.
    let bzm = [("x-b", "1"), ("x-z", "1"), ("x-m", "1")];
    assert_eq!(p("/ns", &bzm), "alpha/m-mid");
    assert_eq!(p("/ns", &bzm[..2]), "alpha/z-last");
    assert_eq!(p("/ns", &bzm[..1]), "beta/a-first");
    // Same object: rule order, then match order.
    assert_eq!(p("/order", &[("x-a", "1"), ("x-c", "1")]), "first");
    assert_eq!(p("/order", &[("x-c", "1")]), "second");
}

#[test]
fn a_conflicting_newer_route_is_not_served_and_the_older_one_is() {
    let gw = gateway();
    assert_eq!(
        served_by(&gw, "prec.test", "/conflict", &[]),
        "conflict-old"
    );
    assert_eq!(
        served_by(&gw, "prec.test", "/conflict/x", &[]),
        "conflict-old"
    );
    assert_problem(&get(&gw, "prec.test", "/conflict-extra"), 404);
}

// === backends ===

#[test]
fn weighted_backends_split_traffic_in_proportion() {
    let gw = gateway();
    let (mut alpha, mut beta) = (0, 0);
    for _ in 0..400 {
        match served_by(&gw, "weights.test", "/split", &[]).as_str() {
            "alpha" => alpha += 1,
            "beta" => beta += 1,
            other => panic!("served by neither upstream: {other:?}"),
        }
    }
    // 3:1 is 300:100; the bands are wide on purpose (a random split is fine too).
    assert!((240..=360).contains(&alpha), "alpha {alpha}, beta {beta}");
    assert!((40..=160).contains(&beta), "alpha {alpha}, beta {beta}");

    // Weight 0: a drained backend gets nothing.
    for _ in 0..40 {
        assert_eq!(served_by(&gw, "weights.test", "/drained", &[]), "alpha");
    }
}

// === redirect ===

#[test]
fn redirect_scheme_hostname_port_and_path_template_keep_the_query() {
    let gw = gateway();
    let r = get(&gw, "redir.test", "/r1/42?q=1&x=a%20b");
    assert_eq!(
        location(&r, 301),
        "https://api.example.com/v2/users/42?q=1&x=a%20b"
    );
    assert!(r.header("x-request-id").is_some(), "{r:?}");

    // A port other than the scheme's default is written; the path is kept.
    let r = get(&gw, "redir.test", "/r-port?a=1");
    assert_eq!(location(&r, 302), "http://other.test:8443/r-port?a=1");
    // The scheme's default port is omitted.
    let r = get(&gw, "redir.test", "/r-443");
    assert_eq!(location(&r, 308), "https://secure.test/r-443");
    let r = get(&gw, "redir.test", "/r-80");
    assert_eq!(location(&r, 302), "http://redir.test/plain");
    // Absent parts keep the request's, port included ...
    let r = get(&gw, "redir.test:8080", "/r302?keep=1");
    assert_eq!(location(&r, 302), "http://redir.test:8080/dest?keep=1");
    // ... except that a changed scheme takes that scheme's port (Gateway API's rule).
    let r = get(&gw, "redir.test:8080", "/r-https");
    assert_eq!(location(&r, 302), "https://redir.test/r-https");
}

/// Whether `s` is made only of characters a URI may hold (RFC 3986: unreserved,
/// reserved, and `%` of percent-encodings).
fn is_uri(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b))
}

#[test]
fn redirect_locations_are_uris_whatever_the_captured_values() {
    let gw = gateway();
    for target in ["/r1/a%20b", "/r1/a%0D%0Ab", "/r1/%22q%22"] {
        let r = get(&gw, "redir.test", target);
        let to = location(&r, 301);
        assert!(
            to.starts_with("https://api.example.com/v2/users/") && is_uri(to),
            "{target} -> Location {to:?}"
        );
    }
    let r = get_with(
        &gw,
        "redir.test",
        "/r-tpl/1?name=a%20b",
        &[("X-User", "x y")],
    );
    let to = location(&r, 302);
    assert!(is_uri(to), "Location {to:?}");
}

#[test]
fn redirect_status_codes() {
    let gw = gateway();
    for (target, status) in [
        ("/r302", 302),
        ("/r301", 301),
        ("/r303", 303),
        ("/r307", 307),
        ("/r308", 308),
    ] {
        let r = get(&gw, "redir.test", target);
        assert_eq!(location(&r, status), "http://redir.test/dest", "{target}");
    }
}

#[test]
fn redirect_templates_read_path_query_header_client_and_request_id() {
    let gw = gateway();
    let r = get_with(
        &gw,
        "redir.test",
        "/r-tpl/42?name=bob",
        &[("X-User", "alice"), ("X-Request-Id", "rid-tpl-1")],
    );
    assert_eq!(
        location(&r, 302),
        "http://redir.test/t/42/bob/alice/127.0.0.1/rid-tpl-1?name=bob"
    );
    let r = get(&gw, "redir.test", "/r-rest/a/b/c");
    assert_eq!(location(&r, 308), "http://redir.test/new/a/b/c");
    let r = get(&gw, "redir.test", "/legacy/17");
    assert_eq!(location(&r, 308), "http://redir.test/items/17");
}

// === respond ===

#[test]
fn respond_answers_status_body_and_content_type() {
    let gw = gateway();
    let r = get(&gw, "respond.test", "/json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"status":"ok"}"#);
    assert!(r.header("x-request-id").is_some(), "{r:?}");

    // A configured 503 is the route's answer, not a gateway error.
    let r = get(&gw, "respond.test", "/maintenance");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"message":"maintenance"}"#);

    // Defaults: text/plain; charset=utf-8, and an empty body.
    let r = get(&gw, "respond.test", "/teapot");
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "short and stout");
    let r = get(&gw, "respond.test", "/empty");
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty(), "{r:?}");
}

// === errors ===

#[test]
fn routing_errors_are_problem_json_with_the_request_id() {
    let gw = gateway();
    assert_problem(&get(&gw, "errors.test", "/nothing"), 404);
    let r = get_with(
        &gw,
        "errors.test",
        "/nothing",
        &[("X-Request-Id", "client-rid-404")],
    );
    let problem = assert_problem(&r, 404);
    assert_eq!(problem["instance"], "client-rid-404");

    let r = request(gw.http, "DELETE", "methods.test", "/things/9", &[]);
    assert_problem(&r, 405);
    assert!(!allowed(&r).is_empty(), "405 without Allow: {r:?}");

    assert_problem(&get(&gw, "errors.test", "/echo/a%2Fb"), 400);
    assert_problem(&get(&gw, "errors.test", "/echo/a%zz"), 400);
}

#[test]
fn a_declared_body_over_10_mib_is_413() {
    let gw = gateway();
    let limit = (10 * 1024 * 1024).to_string();
    let over = (10 * 1024 * 1024 + 1).to_string();
    // Only the head is sent: the gateway must answer from Content-Length alone.
    let r = request(
        gw.http,
        "POST",
        "errors.test",
        "/echo/upload",
        &[("Content-Length", &over)],
    );
    assert_problem(&r, 413);
    // Limits come before routing: an unknown path is still 413.
    let r = request(
        gw.http,
        "POST",
        "errors.test",
        "/nothing",
        &[("Content-Length", &over)],
    );
    assert_problem(&r, 413);
    // Exactly 10 MiB is within the limit.
    let r = request(
        gw.http,
        "POST",
        "errors.test",
        "/respond-ok",
        &[("Content-Length", &limit)],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
}

#[test]
fn a_streamed_body_over_10_mib_is_413() {
    let gw = gateway();
    let head = request_head(
        "POST",
        "errors.test",
        "/echo/stream",
        &[("Transfer-Encoding", "chunked")],
    );
    // 11 MiB in 64 KiB chunks, then the last chunk.
    let chunk = {
        let mut c = format!("{:x}\r\n", 64 * 1024).into_bytes();
        c.extend(std::iter::repeat_n(b'x', 64 * 1024));
        c.extend(b"\r\n");
        c
    };
    let body = std::iter::repeat_n(chunk, 11 * 16).chain(std::iter::once(b"0\r\n\r\n".to_vec()));
    let r = send_streaming(gw.http, head.as_bytes(), body).expect("a response");
    assert_problem(&r, 413);
}

#[test]
fn a_request_head_over_64_kib_is_431() {
    let gw = gateway();
    // Under the limit: served.
    let fits = "x".repeat(60 * 1024);
    let r = get_with(&gw, "errors.test", "/echo/fits", &[("X-Big", &fits)]);
    assert_eq!(r.status, 200, "{r:?}");
    // Beyond it: 431, whatever the path.
    let big = "x".repeat(70 * 1024);
    let r = get_with(&gw, "errors.test", "/echo/big", &[("X-Big", &big)]);
    assert_problem(&r, 431);
}

#[test]
fn a_request_that_is_not_http_is_400_and_closed() {
    // The HTTP parser refuses it before there is a request to route: a bare 400 and
    // the connection closed (documented in docs/standalone.md), never a routed request.
    let gw = gateway();
    let r = send_raw(
        gw.http,
        b"GET /echo/a b HTTP/1.1\r\nHost: errors.test\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
}

#[test]
fn upstream_refused_or_reset_is_502() {
    let gw = gateway();
    // Nothing listens on the Upstream's port.
    assert_problem(&get(&gw, "errors.test", "/refused"), 502);
    // The Upstream reads the request and closes the connection without answering.
    assert_problem(&get(&gw, "errors.test", "/reset"), 502);
}

#[test]
fn upstream_timeouts_are_504() {
    let gw = gateway();
    // The rule's timeout (200ms) against the echo's two-second /slow.
    assert_problem(&get(&gw, "errors.test", "/slow"), 504);
    // The Upstream's request timeout (300ms) when the rule sets none.
    assert_problem(&get(&gw, "errors.test", "/slowly"), 504);
}

#[test]
fn unservable_rules_are_503() {
    let gw = gateway();
    // A policy reference that does not resolve: the compiler blocks the rule; it is
    // never served open.
    assert_problem(&get(&gw, "errors.test", "/blocked"), 503);
    // A backend naming an Upstream that does not exist.
    assert_problem(&get(&gw, "errors.test", "/missing"), 503);
}

// === forwarding headers ===

#[test]
fn the_upstream_sees_forwarding_headers() {
    let gw = gateway();
    let r = get(&gw, "fwd.test", "/fwd/x?a=1");
    assert_eq!(r.status, 200, "{r:?}");
    let seen = echoed(&r);
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/fwd/x?a=1");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("fwd.test"));
    let forwarded = seen.header("forwarded").unwrap_or_default();
    let pairs: BTreeSet<&str> = forwarded.split(';').map(str::trim).collect();
    for pair in ["for=127.0.0.1", "proto=http", "host=\"fwd.test\""] {
        assert!(pairs.contains(pair), "Forwarded: {forwarded:?}");
    }

    // An earlier proxy's X-Forwarded-For: this hop's client is last.
    let r = get_with(
        &gw,
        "fwd.test",
        "/fwd/x",
        &[("X-Forwarded-For", "203.0.113.7")],
    );
    let xff = echoed(&r).headers["x-forwarded-for"].clone();
    assert_eq!(
        xff.rsplit(',').next().map(str::trim),
        Some("127.0.0.1"),
        "{xff}"
    );
}

#[test]
fn the_request_id_is_kept_or_generated_and_reaches_the_upstream() {
    let gw = gateway();
    let r = get_with(&gw, "fwd.test", "/rid", &[("X-Request-Id", "abc-123")]);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(echoed(&r).header("x-request-id"), Some("abc-123"));

    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = get(&gw, "fwd.test", "/rid");
            let id = r
                .header("x-request-id")
                .unwrap_or_else(|| panic!("no X-Request-Id: {r:?}"))
                .to_string();
            assert!(!id.is_empty());
            assert_eq!(echoed(&r).header("x-request-id"), Some(id.as_str()));
            id
        })
        .collect();
    assert_ne!(ids[0], ids[1], "generated ids are unique");
}

#[test]
fn traceparent_is_propagated_when_sent_and_started_when_not() {
    let gw = gateway();
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_with(&gw, "fwd.test", "/trace", &[("traceparent", sent)]);
    let seen = echoed(&r);
    let tp = seen.header("traceparent").expect("traceparent forwarded");
    assert_eq!(trace_id(tp), "4bf92f3577b34da6a3ce929d0e0e4736", "{tp}");

    let started: Vec<String> = (0..2)
        .map(|_| {
            let seen = echoed(&get(&gw, "fwd.test", "/trace"));
            let tp = seen
                .header("traceparent")
                .expect("a traceparent is started");
            trace_id(tp).to_string()
        })
        .collect();
    assert_ne!(started[0], started[1], "each request starts its own trace");
}

#[test]
fn hop_by_hop_headers_are_stripped_both_ways() {
    let gw = gateway();
    let r = get_with(
        &gw,
        "fwd.test",
        "/hop",
        &[
            ("Connection", "close, X-Secret"),
            ("X-Secret", "s"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "yes"),
        ],
    );
    let seen = echoed(&r);
    assert_eq!(seen.header("x-kept"), Some("yes"));
    for name in [
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    let connection = seen.header("connection").unwrap_or_default();
    assert!(
        !connection.to_ascii_lowercase().contains("x-secret"),
        "{connection}"
    );

    // The upstream's hop-by-hop headers do not reach the client.
    let r = get(&gw, "fwd.test", "/hop-response");
    assert_eq!((r.status, r.text().as_str()), (200, "hop"), "{r:?}");
    assert_eq!(r.header("x-up-kept"), Some("yes"));
    for name in ["x-up-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(r.header(name), None, "{name} reached the client: {r:?}");
    }
    let connection = r.header_values("connection").join(",");
    assert!(
        !connection.to_ascii_lowercase().contains("x-up-secret"),
        "{connection}"
    );
}

// === normalization ===

/// The path and query the echo upstream received for `target` on `norm.test`.
fn forwarded_uri(gw: &Gateway, target: &str) -> String {
    let r = get(gw, "norm.test", target);
    assert_eq!(r.status, 200, "{target}: {r:?} {}", r.text());
    echoed(&r).uri
}

#[test]
fn the_upstream_receives_the_normalized_path() {
    let gw = gateway();
    for (sent, received) in [
        ("/n/a/../b", "/n/b"),
        ("/n/./a/./b", "/n/a/b"),
        ("/n//a///b", "/n/a/b"),
        ("//n/a", "/n/a"),
        ("/../../n/x", "/n/x"),
        ("/x/../n/y", "/n/y"),
        ("/n/%61%62c", "/n/abc"),
        ("/%6E/x", "/n/x"),
        ("/n/x/%2e%2e/y", "/n/y"),
        // Other escapes are kept, with upper-case hex; the query is not normalized.
        ("/n/a%20b", "/n/a%20b"),
        ("/n/a%3fb", "/n/a%3Fb"),
        ("/n/x?a=%61&b=../c", "/n/x?a=%61&b=../c"),
    ] {
        assert_eq!(forwarded_uri(&gw, sent), received, "sent {sent}");
    }
}

#[test]
fn matching_runs_on_the_normalized_path() {
    let gw = gateway();
    assert_eq!(served_by(&gw, "norm.test", "/%61bc", &[]), "abc");
    assert_eq!(served_by(&gw, "norm.test", "/x/..//abc", &[]), "abc");
    // A prefix cannot be used to reach another rule's path.
    for sneaky in [
        "/public/../secret",
        "/public/%2e%2e/secret",
        "/public/%2E%2E/secret",
    ] {
        let r = get(&gw, "norm.test", sneaky);
        assert_eq!((r.status, r.text().as_str()), (403, "secret"), "{sneaky}");
    }
}

#[test]
fn an_encoded_slash_is_400_unless_the_match_allows_it() {
    let gw = gateway();
    for target in ["/n/a%2Fb", "/n/a%2fb", "/n/a%5Cb", "/n/a%5cb"] {
        assert_problem(&get(&gw, "norm.test", target), 400);
    }
    assert_eq!(forwarded_uri(&gw, "/enc/a%2Fb"), "/enc/a%2Fb");
    assert_eq!(forwarded_uri(&gw, "/enc/a%5cb"), "/enc/a%5Cb");
}
