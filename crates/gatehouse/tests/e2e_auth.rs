//! Authentication and authorization end to end (`spec/api.md`: `authentication`,
//! `authorization`, "Consumers — ordinary Secrets"): the built `gatehouse run` over a
//! folder of manifests (consumer Secrets beside the routes), the echo upstream, a
//! forward-auth server and a raw upstream behind it, raw HTTP/1.1 requests.
//!
//! One gateway serves every test here: each rule of route `default/auth` (host
//! `auth.test`) is one configuration, and each test uses its own rules. JWTs here are
//! HS256 (`hmacSecretRef`); `e2e_jwt.rs` covers the key types and JWKS fetching.

mod auth_support;
mod common;

use std::sync::{Arc, Mutex, Weak};

use auth_support::{
    AUDIENCE, ISSUER, LoggedGateway, StubReply, StubRequest, assert_401, assert_invalid_token,
    basic, bcrypt_hash, bearer, claims, hs256, metric, raw_header_values, raw_upstream, response,
    spawn_stub, with, yaml_str,
};
use common::{RawResponse, assert_problem, echoed, free_port, upstream_runtime};
use serde_json::json;

const ALICE_KEY: &str = "k-alice-123";
const BOB_KEY: &str = "k-bob-456";
const CAROL_KEY: &str = "k-carol-789";
const WRONG_KEY: &str = "k-wrong-000";
const ALICE_PASSWORD: &str = "alice-pw-Zq81";
const BOB_PASSWORD: &str = "bob-pw-Xw27";
const WRONG_PASSWORD: &str = "not-the-pw-Kv55";
const HMAC_SECRET: &str = "hmac-e2e-secret-0123456789abcdef-0123";

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: raw}
spec:
  endpoints: [{host: 127.0.0.1, port: @RAW@}]
---
apiVersion: v1
kind: Secret
metadata:
  name: alice
  namespace: default
  labels: {gatehouse.dev/consumer: alice, team: payments}
stringData:
  api-key: "k-alice-123"
  username: alice
  password-hash: @ALICE_HASH@
  groups: "admins,readers"
---
apiVersion: v1
kind: Secret
metadata:
  name: bob-credentials
  namespace: default
  labels: {gatehouse.dev/consumer: bob, team: logistics}
stringData:
  api-key: "k-bob-456"
  username: bob
  password-hash: @BOB_HASH@
  groups: "readers"
---
apiVersion: v1
kind: Secret
metadata:
  name: carol
  namespace: other
  labels: {gatehouse.dev/consumer: carol, team: payments}
stringData:
  api-key: "k-carol-789"
---
apiVersion: v1
kind: Secret
metadata: {name: jwt-hmac, namespace: default}
stringData:
  secret: @HMAC@
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiPolicy
metadata: {name: key-auth}
spec:
  authentication: {apiKey: {}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: auth}
spec:
  hosts: [auth.test]
  rules:
    - name: key
      matches: [{path: {type: Prefix, value: /key}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}}
    - name: custom-header
      matches: [{path: {type: Prefix, value: /xkey}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {header: X-Key}}
    - name: query
      matches: [{path: {type: Prefix, value: /qkey}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {queryParam: api_key}}
    - name: payments
      matches: [{path: {type: Prefix, value: /payments}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {consumerSelector: {matchLabels: {team: payments}}}}
    - name: basic
      matches: [{path: {type: Prefix, value: /basic}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {basic: {}}
    - name: jwt
      matches: [{path: {type: Prefix, value: /jwt}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: @JWT@}
    - name: either
      matches: [{path: {type: Prefix, value: /either}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}, jwt: @JWT@}
    - name: optional
      matches: [{path: {type: Prefix, value: /optional}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}, optional: true}
        requestTransform: {headers: {set: {X-Consumer: "${consumer}"}}}
    - name: only-alice
      matches: [{path: {type: Prefix, value: /only-alice}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}}
        authorization: {consumers: [alice]}
    - name: admins
      matches: [{path: {type: Prefix, value: /admins}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}, jwt: @JWT@}
        authorization: {groups: [admins]}
    - name: scoped
      matches: [{path: {type: Prefix, value: /scoped}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: @JWT@}
        authorization: {claims: [{name: scope, values: ["orders:read"]}]}
    - name: transform
      matches: [{path: {type: Prefix, value: /transform}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}, jwt: @JWT@}
        requestTransform: {headers: {set: {X-Consumer: "${consumer}", X-Sub: "${claim.sub}"}}}
    - name: limited
      matches: [{path: {type: Prefix, value: /limited}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}}
        rateLimit: {limits: [{requests: 1, period: 1m}], key: {type: Consumer}}
    - name: ext
      matches: [{path: {type: Prefix, value: /ext}}]
      backends: [{upstream: raw}]
      policies:
        authentication:
          external:
            url: http://127.0.0.1:@AUTHZ@/check
            forwardHeaders: [Authorization]
            upstreamHeaders: [X-User-Id]
            timeout: 500ms
    - name: ext-down
      matches: [{path: {type: Prefix, value: /down}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {external: {url: "http://127.0.0.1:@DOWN@/check", forwardHeaders: [Authorization], timeout: 500ms}}
    - name: ext-error
      matches: [{path: {type: Prefix, value: /error}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {external: {url: "http://127.0.0.1:@AUTHZ@/fail", forwardHeaders: [Authorization], timeout: 500ms}}
    - name: ext-slow
      matches: [{path: {type: Prefix, value: /slow-check}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {external: {url: "http://127.0.0.1:@AUTHZ@/hang", forwardHeaders: [Authorization], timeout: 500ms}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: referenced}
spec:
  hosts: [ref.test]
  policyRefs: [{name: key-auth}]
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: route-wide}
spec:
  hosts: [wide.test]
  policies:
    authentication: {basic: {}}
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: echo, namespace: other}
spec:
  endpoints: [{host: 127.0.0.1, port: @ECHO@}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: elsewhere, namespace: other}
spec:
  hosts: [other.test]
  rules:
    - matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {apiKey: {}}
"#;

/// The manifests with their ports and hashes filled in.
fn manifests(ports: [u16; 4], alice_hash: &str, bob_hash: &str) -> String {
    let [echo, raw, authz, down] = ports;
    let jwt = format!(
        "{{issuer: {}, audiences: [{AUDIENCE}], hmacSecretRef: {{name: jwt-hmac, key: secret}}}}",
        yaml_str(ISSUER)
    );
    MANIFESTS
        .replace("@ECHO@", &echo.to_string())
        .replace("@RAW@", &raw.to_string())
        .replace("@AUTHZ@", &authz.to_string())
        .replace("@DOWN@", &down.to_string())
        .replace("@ALICE_HASH@", &yaml_str(alice_hash))
        .replace("@BOB_HASH@", &yaml_str(bob_hash))
        .replace("@HMAC@", &yaml_str(HMAC_SECRET))
        .replace("@JWT@", &jwt)
}

/// The shared gateway, with what its tests need to know about it.
struct Fixture {
    gw: LoggedGateway,
    alice_hash: String,
    bob_hash: String,
    /// Every request the forward-auth server received.
    checks: Arc<Mutex<Vec<StubRequest>>>,
}

/// The forward-auth server: `/check` allows `Authorization: Bearer good` (200 with
/// `X-User-Id: u1`) and denies anything else (401 with its own challenge); `/fail`
/// answers 500; `/hang` never answers.
fn authz_server(runtime: &tokio::runtime::Runtime, seen: Arc<Mutex<Vec<StubRequest>>>) -> u16 {
    let handler: auth_support::Handler = Arc::new(move |request: &StubRequest| {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.clone());
        if request.target.starts_with("/fail") {
            return StubReply::Answer(response(500, &[], b"authz broke"));
        }
        if request.target.starts_with("/hang") {
            return StubReply::Hang;
        }
        if request.header("authorization") == Some("Bearer good") {
            StubReply::Answer(response(200, &[("X-User-Id", "u1")], b""))
        } else {
            StubReply::Answer(response(
                401,
                &[("WWW-Authenticate", "Bearer realm=\"ext\"")],
                b"denied",
            ))
        }
    });
    spawn_stub(
        runtime.handle(),
        "127.0.0.1:0".parse().expect("address"),
        None,
        handler,
    )
    .port()
}

fn start() -> Fixture {
    let servers = upstream_runtime();
    let echo = common::spawn_echo(&servers);
    let raw = raw_upstream(&servers);
    let checks = Arc::new(Mutex::new(Vec::new()));
    let authz = authz_server(&servers, checks.clone());
    let (alice_hash, bob_hash) = (bcrypt_hash(ALICE_PASSWORD), bcrypt_hash(BOB_PASSWORD));
    let text = manifests(
        [echo.port(), raw.port(), authz, free_port().port()],
        &alice_hash,
        &bob_hash,
    );
    Fixture {
        gw: LoggedGateway::serve(servers, &[("auth.yaml", text)]),
        alice_hash,
        bob_hash,
        checks,
    }
}

fn fixture() -> Arc<Fixture> {
    static SHARED: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start)
}

/// `GET target` on `auth.test`.
fn get(f: &Fixture, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    f.gw.get("auth.test", target, headers)
}

fn key(k: &str) -> (&'static str, &str) {
    ("X-Api-Key", k)
}

/// An HS256 token for `sub` with `extra` claims, valid for the suite's routes.
fn token(sub: &str, extra: serde_json::Value) -> String {
    let mut c = claims(sub);
    for (name, value) in extra.as_object().cloned().unwrap_or_default() {
        c = with(c, &name, value);
    }
    hs256(HMAC_SECRET, &c)
}

// === apiKey ===

#[test]
fn api_keys_are_read_from_the_default_header_a_named_header_or_a_query_parameter() {
    let f = fixture();
    // Default header: the key is checked, then kept from the upstream.
    let r = get(&f, "/key/items", &[key(ALICE_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    let e = echoed(&r);
    assert_eq!(
        e.header("x-api-key"),
        None,
        "the key reached the upstream: {e:?}"
    );
    assert_401(&get(&f, "/key/items", &[]), &["ApiKey"]);
    assert_401(&get(&f, "/key/items", &[key(WRONG_KEY)]), &["ApiKey"]);
    assert_401(&get(&f, "/key/items", &[key("")]), &["ApiKey"]);

    // A named header; the default one does not count there.
    let r = get(&f, "/xkey", &[("X-Key", BOB_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r).header("x-key"), None);
    assert_401(&get(&f, "/xkey", &[key(BOB_KEY)]), &["ApiKey"]);
    assert_401(&get(&f, "/xkey", &[("X-Key", WRONG_KEY)]), &["ApiKey"]);

    // A query parameter: removed before the upstream, the rest of the query kept.
    let r = get(&f, &format!("/qkey/items?keep=1&api_key={ALICE_KEY}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let e = echoed(&r);
    assert!(!e.uri.contains("api_key"), "{e:?}");
    assert!(!e.uri.contains(ALICE_KEY), "{e:?}");
    assert!(e.uri.starts_with("/qkey/items"), "{e:?}");
    assert!(e.uri.contains("keep=1"), "{e:?}");
    assert_401(
        &get(&f, &format!("/qkey/items?api_key={WRONG_KEY}"), &[]),
        &["ApiKey"],
    );
    assert_401(&get(&f, "/qkey/items", &[]), &["ApiKey"]);
}

#[test]
fn a_consumer_selector_narrows_the_consumers_that_count() {
    let f = fixture();
    // alice is labelled team=payments, bob team=logistics.
    assert_eq!(get(&f, "/payments", &[key(ALICE_KEY)]).status, 200);
    assert_401(&get(&f, "/payments", &[key(BOB_KEY)]), &["ApiKey"]);
}

#[test]
fn consumers_count_only_in_their_own_namespace() {
    let f = fixture();
    // carol's Secret is in namespace `other`: not a consumer of default/auth ...
    assert_401(&get(&f, "/key", &[key(CAROL_KEY)]), &["ApiKey"]);
    // ... but one of other/elsewhere, where alice in turn is unknown.
    let r = f.gw.get("other.test", "/x", &[key(CAROL_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_401(
        &f.gw.get("other.test", "/x", &[key(ALICE_KEY)]),
        &["ApiKey"],
    );
}

#[test]
fn authentication_applies_from_an_api_policy_and_from_route_policies() {
    let f = fixture();
    // policyRefs: [key-auth]
    assert_401(&f.gw.get("ref.test", "/a", &[]), &["ApiKey"]);
    let r = f.gw.get("ref.test", "/a", &[key(BOB_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    // spec.policies.authentication: basic
    assert_401(&f.gw.get("wide.test", "/a", &[]), &["Basic"]);
    let credentials = basic("alice", ALICE_PASSWORD);
    let r =
        f.gw.get("wide.test", "/a", &[("Authorization", &credentials)]);
    assert_eq!(r.status, 200, "{r:?}");
}

// === basic ===

#[test]
fn basic_credentials_are_checked_against_the_bcrypt_hash() {
    let f = fixture();
    let right = basic("alice", ALICE_PASSWORD);
    let r = get(&f, "/basic", &[("Authorization", &right)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        echoed(&r).header("authorization"),
        None,
        "the credentials reached the upstream"
    );
    let bob = basic("bob", BOB_PASSWORD);
    assert_eq!(get(&f, "/basic", &[("Authorization", &bob)]).status, 200);

    for wrong in [
        basic("alice", WRONG_PASSWORD),
        basic("alice", BOB_PASSWORD),
        basic("bob", ALICE_PASSWORD),
        basic("mallory", ALICE_PASSWORD),
        basic("alice", ""),
        "Basic not-base64!".to_string(),
        format!("Bearer {ALICE_PASSWORD}"),
    ] {
        assert_401(&get(&f, "/basic", &[("Authorization", &wrong)]), &["Basic"]);
    }
    assert_401(&get(&f, "/basic", &[]), &["Basic"]);
}

// === jwt, several methods, optional ===

#[test]
fn an_hs256_token_authenticates_and_a_wrong_one_is_an_invalid_token() {
    let f = fixture();
    let good = bearer(&token("user-1", json!({})));
    assert_eq!(get(&f, "/jwt", &[("Authorization", &good)]).status, 200);
    let forged = bearer(&hs256(
        "some-other-secret-0123456789abcdef",
        &claims("user-1"),
    ));
    let r = get(&f, "/jwt", &[("Authorization", &forged)]);
    assert_401(&r, &["Bearer"]);
    assert_invalid_token(&r);
    assert_401(&get(&f, "/jwt", &[]), &["Bearer"]);
}

#[test]
fn several_methods_on_one_rule_accept_either_credential() {
    let f = fixture();
    assert_eq!(get(&f, "/either", &[key(ALICE_KEY)]).status, 200);
    let jwt = bearer(&token("user-2", json!({})));
    assert_eq!(get(&f, "/either", &[("Authorization", &jwt)]).status, 200);
    // Neither: one challenge per configured method.
    assert_401(&get(&f, "/either", &[]), &["ApiKey", "Bearer"]);
    assert_401(
        &get(&f, "/either", &[key(WRONG_KEY)]),
        &["ApiKey", "Bearer"],
    );
    let bad = bearer(&hs256("some-other-secret-0123456789abcdef", &claims("x")));
    assert_401(
        &get(&f, "/either", &[("Authorization", &bad)]),
        &["ApiKey", "Bearer"],
    );
}

#[test]
fn optional_authentication_lets_anonymous_requests_through_without_a_consumer() {
    let f = fixture();
    let r = get(&f, "/optional", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let e = echoed(&r);
    assert!(
        e.header("x-consumer").unwrap_or_default().is_empty(),
        "an anonymous request has no consumer: {e:?}"
    );
    let r = get(&f, "/optional", &[key(ALICE_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r).header("x-consumer"), Some("alice"));
    // Presenting a wrong credential is not being anonymous.
    assert_401(&get(&f, "/optional", &[key(WRONG_KEY)]), &["ApiKey"]);
}

// === authorization ===

#[test]
fn authorization_by_consumer_name() {
    let f = fixture();
    assert_eq!(get(&f, "/only-alice", &[key(ALICE_KEY)]).status, 200);
    // The consumer's name is its label, not its Secret's name (bob-credentials).
    assert_problem(&get(&f, "/only-alice", &[key(BOB_KEY)]), 403);
    assert_401(&get(&f, "/only-alice", &[]), &["ApiKey"]);
}

#[test]
fn authorization_by_group_from_consumer_secrets_and_jwt_claims() {
    let f = fixture();
    // alice's Secret says groups "admins,readers"; bob's "readers".
    assert_eq!(get(&f, "/admins", &[key(ALICE_KEY)]).status, 200);
    assert_problem(&get(&f, "/admins", &[key(BOB_KEY)]), 403);
    // A JWT's `groups` claim.
    let admin = bearer(&token(
        "jwt-admin",
        json!({"groups": ["readers", "admins"]}),
    ));
    assert_eq!(get(&f, "/admins", &[("Authorization", &admin)]).status, 200);
    let reader = bearer(&token("jwt-reader", json!({"groups": ["readers"]})));
    assert_problem(&get(&f, "/admins", &[("Authorization", &reader)]), 403);
    let nobody = bearer(&token("jwt-nobody", json!({})));
    assert_problem(&get(&f, "/admins", &[("Authorization", &nobody)]), 403);
}

#[test]
fn authorization_by_claim_values_as_a_string_or_an_array() {
    let f = fixture();
    let ok = |scope: serde_json::Value| {
        let t = bearer(&token("svc", json!({ "scope": scope })));
        get(&f, "/scoped", &[("Authorization", &t)])
    };
    let r = ok(json!("orders:read orders:write"));
    assert_eq!(r.status, 200, "space-separated string: {r:?}");
    let r = ok(json!(["orders:write", "orders:read"]));
    assert_eq!(r.status, 200, "array: {r:?}");
    assert_problem(&ok(json!("orders:write")), 403);
    assert_problem(&ok(json!(["orders:write"])), 403);
    // A value that merely contains the wanted one is not it.
    assert_problem(&ok(json!("orders:readonly")), 403);
    let none = bearer(&token("svc", json!({})));
    assert_problem(&get(&f, "/scoped", &[("Authorization", &none)]), 403);
}

// === what waits for the consumer ===

#[test]
fn request_transforms_see_the_consumer_and_its_claims() {
    let f = fixture();
    let r = get(&f, "/transform", &[key(ALICE_KEY)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echoed(&r).header("x-consumer"), Some("alice"));
    // A JWT's consumer is its `sub`.
    let t = bearer(&token("user-42", json!({})));
    let r = get(&f, "/transform", &[("Authorization", &t)]);
    assert_eq!(r.status, 200, "{r:?}");
    let e = echoed(&r);
    assert_eq!(e.header("x-consumer"), Some("user-42"), "{e:?}");
    assert_eq!(e.header("x-sub"), Some("user-42"), "{e:?}");
}

#[test]
fn rate_limits_keyed_by_consumer_count_each_consumer_apart() {
    let f = fixture();
    assert_eq!(get(&f, "/limited", &[key(ALICE_KEY)]).status, 200);
    assert_problem(&get(&f, "/limited", &[key(ALICE_KEY)]), 429);
    // Same client address, another consumer: its own bucket.
    assert_eq!(get(&f, "/limited", &[key(BOB_KEY)]).status, 200);
    // Unauthenticated requests are refused before they are counted.
    assert_401(&get(&f, "/limited", &[]), &["ApiKey"]);
}

// === external ===

#[test]
fn external_auth_allows_with_its_headers_and_denies_with_its_challenge() {
    let f = fixture();
    let r = get(
        &f,
        "/ext/orders?page=2",
        &[
            ("Authorization", "Bearer good"),
            ("X-User-Id", "forged"),
            ("X-Other", "not-forwarded"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        raw_header_values(&r, "x-user-id"),
        ["u1"],
        "the auth service's X-User-Id replaces the client's: {}",
        r.text()
    );

    // What the auth service was asked.
    let check = f
        .checks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|c| {
            c.header("x-forwarded-uri")
                .is_some_and(|u| u.starts_with("/ext/orders"))
        })
        .cloned()
        .expect("the auth service was asked about /ext/orders");
    assert_eq!(check.method, "GET", "{check:?}");
    assert!(check.target.starts_with("/check"), "{check:?}");
    assert_eq!(check.header("authorization"), Some("Bearer good"));
    assert_eq!(check.header("x-forwarded-method"), Some("GET"), "{check:?}");
    assert_eq!(
        check.header("x-forwarded-uri"),
        Some("/ext/orders?page=2"),
        "{check:?}"
    );
    assert_eq!(
        check.header("x-forwarded-host"),
        Some("auth.test"),
        "{check:?}"
    );
    assert_eq!(
        check.header("x-other"),
        None,
        "only forwardHeaders go to the auth service: {check:?}"
    );

    // Denied: the service's challenge is passed on (its body may be too: only the
    // status and the challenge are asserted). Without any forwarded header the service
    // is still the one that decides, and its challenge is the one a client sees.
    for (case, headers) in [
        ("a bad credential", vec![("Authorization", "Bearer bad")]),
        ("no credential", vec![]),
    ] {
        let r = get(&f, "/ext/orders", &headers);
        assert_eq!(r.status, 401, "{case}: {r:?}");
        assert!(
            r.header_values("www-authenticate")
                .iter()
                .any(|v| v == "Bearer realm=\"ext\""),
            "{case}: the auth service's challenge is missing: {:?} {}",
            r.headers,
            r.text()
        );
    }
}

#[test]
fn an_unreachable_failing_or_slow_auth_service_is_503() {
    let f = fixture();
    let good = [("Authorization", "Bearer good")];
    // The same credentials pass where the service answers.
    assert_eq!(get(&f, "/ext", &good).status, 200);
    // Nothing listens.
    assert_problem(&get(&f, "/down", &good), 503);
    // It answers 500.
    assert_problem(&get(&f, "/error", &good), 503);
    // It never answers: the 500ms timeout ends the check.
    assert_problem(&get(&f, "/slow-check", &good), 503);
    // Those 503s came from asking the service.
    let checks = f
        .checks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for target in ["/fail", "/hang"] {
        assert!(
            checks.iter().any(|c| c.target.starts_with(target)),
            "the auth service was never asked at {target}: {checks:?}"
        );
    }
}

// === metrics, explain, secrets, lint ===

#[test]
fn auth_failures_are_counted_by_route_and_method() {
    let f = fixture();
    let failures = |method: &str| {
        metric(
            &f.gw.admin_text("/metrics"),
            "gatehouse_auth_failures_total",
            &[("route", "default/auth"), ("method", method)],
        )
    };
    let methods = ["none", "apiKey", "basic", "jwt", "external"];
    let before: Vec<f64> = methods.iter().map(|m| failures(m)).collect();

    let wrong_basic = basic("alice", WRONG_PASSWORD);
    let wrong_jwt = bearer(&hs256("some-other-secret-0123456789abcdef", &claims("x")));
    for _ in 0..2 {
        assert_401(&get(&f, "/key", &[]), &["ApiKey"]);
        assert_401(&get(&f, "/key", &[key(WRONG_KEY)]), &["ApiKey"]);
        assert_401(
            &get(&f, "/basic", &[("Authorization", &wrong_basic)]),
            &["Basic"],
        );
        assert_401(
            &get(&f, "/jwt", &[("Authorization", &wrong_jwt)]),
            &["Bearer"],
        );
        assert_eq!(
            get(&f, "/ext", &[("Authorization", "Bearer bad")]).status,
            401
        );
    }
    for (method, before) in methods.iter().zip(before) {
        let after = failures(method);
        assert!(
            after >= before + 2.0,
            "gatehouse_auth_failures_total{{route=\"default/auth\",method=\"{method}\"}}: {before} -> {after}\n{}",
            f.gw.admin_text("/metrics")
        );
    }
}

/// The admin `/explain` answer for `GET http://auth.test{path}`.
fn explain(f: &Fixture, path: &str) -> String {
    f.gw.admin_text(&format!("/explain?method=GET&url=http://auth.test{path}"))
}

#[test]
fn explain_shows_the_rules_authentication_and_authorization() {
    let f = fixture();
    let text = explain(&f, "/admins");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("explain answers JSON");
    assert_eq!(answer["outcome"]["rule"], "admins", "{text}");
    assert!(
        answer["effect"]["blocked"]
            .as_array()
            .is_none_or(|b| b.is_empty()),
        "the rule is blocked: {text}"
    );
    let lower = text.to_ascii_lowercase();
    for word in ["authentication", "authorization", "apikey", "jwt"] {
        assert!(lower.contains(word), "{word} missing: {text}");
    }
    let text = explain(&f, "/basic");
    assert!(text.contains("authentication"), "{text}");
    assert!(text.to_ascii_lowercase().contains("basic"), "{text}");
}

#[test]
fn secrets_never_appear_in_the_log_the_config_or_explain() {
    let f = fixture();
    // Use every secret, rightly and wrongly.
    for k in [ALICE_KEY, BOB_KEY, CAROL_KEY, WRONG_KEY] {
        get(&f, "/key", &[key(k)]);
        get(&f, &format!("/qkey?api_key={k}"), &[]);
    }
    for (user, password) in [
        ("alice", ALICE_PASSWORD),
        ("bob", BOB_PASSWORD),
        ("alice", WRONG_PASSWORD),
    ] {
        get(&f, "/basic", &[("Authorization", &basic(user, password))]);
    }
    let t = bearer(&token("user-1", json!({})));
    get(&f, "/jwt", &[("Authorization", &t)]);
    get(&f, "/ext", &[("Authorization", "Bearer bad")]);

    let secrets = [
        ALICE_KEY,
        BOB_KEY,
        CAROL_KEY,
        WRONG_KEY,
        ALICE_PASSWORD,
        BOB_PASSWORD,
        WRONG_PASSWORD,
        &f.alice_hash,
        &f.bob_hash,
        HMAC_SECRET,
    ];
    let mut places = vec![
        ("the log".to_string(), f.gw.log()),
        ("GET /config".to_string(), f.gw.admin_text("/config")),
    ];
    for path in [
        "/key", "/qkey", "/basic", "/jwt", "/either", "/admins", "/scoped",
    ] {
        places.push((format!("/explain {path}"), explain(&f, path)));
    }
    for (place, text) in &places {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{place} shows the secret {secret:?}:\n{text}"
            );
        }
    }
}

#[test]
fn lint_reports_no_unsupported_value_for_authentication() {
    let text = manifests(
        [8080, 8081, 8082, 8083],
        &bcrypt_hash(ALICE_PASSWORD),
        &bcrypt_hash(BOB_PASSWORD),
    );
    let (ok, out) = common::lint(&text, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("UnsupportedValue"), "{out}");
}
