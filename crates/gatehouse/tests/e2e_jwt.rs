//! JWT authentication end to end (`spec/api.md`, `authentication.jwt`): the built
//! `gatehouse run` over a folder of manifests, tokens signed in the test with the fixture
//! keys (`tests/fixtures/auth/`), raw HTTP/1.1 requests.
//!
//! Static keys (a JWKS in a Secret, an HMAC secret) are served by one shared gateway.
//! Each `jwksUri` scenario has its own gateway and its own JWKS server, which counts the
//! GETs it receives and is switched at run time (serve keys, fail, hang, not listen):
//! the proxy refetches on an unknown `kid` at most once a minute per JWKS, so scenarios
//! cannot share one. Nothing asserts on speed: waits are bounded generously.

mod auth_support;
mod common;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use auth_support::{
    AUDIENCE, ISSUER, JwksMode, JwksServer, LoggedGateway, assert_401, assert_invalid_token,
    bearer, claims, eventually_within, hs256, jwk_ec1, jwk_ed1, jwk_rsa1, jwk_rsa2, jwks, keys,
    raw_header_values, raw_upstream, request_within, rs256, sign, tampered, unsigned, with,
    yaml_str,
};
use common::{RawResponse, echoed, upstream_runtime};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

const HMAC_SECRET: &str = "jwt-e2e-hmac-secret-fedcba9876543210-xyz";

/// A generous bound for requests that may wait on a key server (a fetch is bounded to
/// 5 s by the contract); never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// `jwt: {...}` fields every route here shares.
fn jwt_common() -> String {
    format!("issuer: {}, audiences: [{AUDIENCE}]", yaml_str(ISSUER))
}

// === static keys: one shared gateway ===

const STATIC: &str = r#"
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
metadata: {name: jwks}
stringData:
  jwks.json: @JWKS@
---
apiVersion: v1
kind: Secret
metadata: {name: jwt-hmac}
stringData:
  secret: @HMAC@
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: jwt}
spec:
  hosts: [jwt.test]
  rules:
    - name: hmac
      matches: [{path: {type: Prefix, value: /hs}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: {@COMMON@, hmacSecretRef: {name: jwt-hmac, key: secret}}}
    - name: keys
      matches: [{path: {type: Prefix, value: /keys}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: {@COMMON@, jwksSecretRef: {name: jwks, key: jwks.json}}}
    - name: eddsa
      matches: [{path: {type: Prefix, value: /eddsa}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: {@COMMON@, jwksSecretRef: {name: jwks, key: jwks.json}, algorithms: [EdDSA]}}
    - name: cookie
      matches: [{path: {type: Prefix, value: /cookie}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: {@COMMON@, jwksSecretRef: {name: jwks, key: jwks.json}, tokenFrom: {cookie: session}}}
    - name: query
      matches: [{path: {type: Prefix, value: /query}}]
      backends: [{upstream: echo}]
      policies:
        authentication: {jwt: {@COMMON@, jwksSecretRef: {name: jwks, key: jwks.json}, tokenFrom: {queryParam: access_token}}}
    - name: claims
      matches: [{path: {type: Prefix, value: /claims}}]
      backends: [{upstream: raw}]
      policies:
        authentication: {jwt: {@COMMON@, jwksSecretRef: {name: jwks, key: jwks.json}, forwardClaims: {sub: X-User-Id}}}
"#;

fn static_manifests(echo: u16, raw: u16) -> String {
    STATIC
        .replace("@ECHO@", &echo.to_string())
        .replace("@RAW@", &raw.to_string())
        .replace(
            "@JWKS@",
            &yaml_str(&jwks(&[jwk_rsa1(), jwk_ec1(), jwk_ed1()])),
        )
        .replace("@HMAC@", &yaml_str(HMAC_SECRET))
        .replace("@COMMON@", &jwt_common())
}

fn start_static() -> LoggedGateway {
    let servers = upstream_runtime();
    let echo = common::spawn_echo(&servers);
    let raw = raw_upstream(&servers);
    let text = static_manifests(echo.port(), raw.port());
    LoggedGateway::serve(servers, &[("jwt.yaml", text)])
}

fn gateway() -> Arc<LoggedGateway> {
    static SHARED: Mutex<Weak<LoggedGateway>> = Mutex::new(Weak::new());
    common::shared(&SHARED, start_static)
}

/// `GET target` on `jwt.test` with `Authorization: Bearer token`.
fn with_token(gw: &LoggedGateway, target: &str, token: &str) -> RawResponse {
    gw.get("jwt.test", target, &[("Authorization", &bearer(token))])
}

fn es256(claims: &serde_json::Value) -> String {
    sign(Algorithm::ES256, Some("ec-1"), &keys().ec1, claims)
}

fn eddsa(claims: &serde_json::Value) -> String {
    sign(Algorithm::EdDSA, Some("ed-1"), &keys().ed1, claims)
}

#[test]
fn the_fixture_tokens_verify_against_their_jwks() {
    // The harness itself: every token the suite calls valid verifies with the JWKS the
    // gateway is given (so a 401 below is the gateway's doing).
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    let set: JwkSet = serde_json::from_str(&jwks(&[jwk_rsa1(), jwk_rsa2(), jwk_ec1(), jwk_ed1()]))
        .expect("a JWK set");
    let c = claims("harness");
    let rsa2 = sign(Algorithm::RS256, Some("rsa-2"), &keys().rsa2, &c);
    for token in [rs256(&c), es256(&c), eddsa(&c), rsa2] {
        let header = decode_header(&token).expect("header");
        let kid = header.kid.clone().expect("kid");
        let jwk = set.find(&kid).expect("kid in the set");
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_jwk(jwk).expect("key"),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    decode::<serde_json::Value>(
        &hs256(HMAC_SECRET, &c),
        &DecodingKey::from_secret(HMAC_SECRET.as_bytes()).expect("an HMAC key"),
        &validation,
    )
    .expect("HS256 verifies");
}

#[test]
fn hs256_rs256_es256_and_eddsa_tokens_are_accepted() {
    let gw = gateway();
    let c = claims("user-1");
    let r = with_token(&gw, "/hs", &hs256(HMAC_SECRET, &c));
    assert_eq!(r.status, 200, "HS256: {r:?}");
    assert_eq!(echoed(&r).uri, "/hs");
    let r = with_token(&gw, "/keys", &rs256(&c));
    assert_eq!(r.status, 200, "RS256: {r:?}");
    let r = with_token(&gw, "/keys", &es256(&c));
    assert_eq!(r.status, 200, "ES256: {r:?}");
    let r = with_token(&gw, "/eddsa", &eddsa(&c));
    assert_eq!(r.status, 200, "EdDSA: {r:?}");
}

#[test]
fn a_missing_token_is_401_with_a_bearer_challenge() {
    let gw = gateway();
    assert_401(&gw.get("jwt.test", "/keys", &[]), &["Bearer"]);
    assert_401(
        &gw.get("jwt.test", "/keys", &[("Authorization", "Basic YTpi")]),
        &["Bearer"],
    );
}

#[test]
fn unsigned_confused_and_forged_tokens_are_refused() {
    let gw = gateway();
    let c = claims("mallory");
    let refused = |target: &str, token: &str, what: &str| {
        let r = with_token(&gw, target, token);
        assert_eq!(r.status, 401, "{what} on {target}: {r:?}");
        assert_401(&r, &["Bearer"]);
        assert_invalid_token(&r);
    };
    // alg none, with and without a known kid.
    refused("/keys", &unsigned(&c, None), "alg none");
    refused("/keys", &unsigned(&c, Some("rsa-1")), "alg none with a kid");
    refused("/hs", &unsigned(&c, None), "alg none");
    // HS256 keyed with the RSA public key (algorithm confusion), with and without kid.
    let confusion =
        EncodingKey::from_secret(keys().rsa1_public_pem.as_bytes()).expect("an HMAC key");
    refused(
        "/keys",
        &sign(Algorithm::HS256, Some("rsa-1"), &confusion, &c),
        "HS256 keyed with the RSA public key",
    );
    refused(
        "/keys",
        &sign(Algorithm::HS256, None, &confusion, &c),
        "HS256 keyed with the RSA public key, no kid",
    );
    // Algorithms outside the allow-list, although the JWKS has their keys.
    refused(
        "/keys",
        &eddsa(&c),
        "EdDSA where [RS256, ES256] is the default",
    );
    refused("/eddsa", &rs256(&c), "RS256 where only EdDSA is allowed");
    // A token not signed by the key its kid names.
    refused(
        "/keys",
        &sign(Algorithm::RS256, Some("rsa-1"), &keys().rsa2, &c),
        "RS256 signed by another key",
    );
    // A payload edited after signing.
    let edited = tampered(&rs256(&c), &with(c.clone(), "sub", json!("admin")));
    refused("/keys", &edited, "a tampered payload");
    refused(
        "/hs",
        &hs256("another-secret-fedcba9876543210-abc", &c),
        "wrong HMAC secret",
    );
    refused("/keys", "not-a-token", "garbage");
}

#[test]
fn expiry_and_not_before_are_checked_with_the_default_clock_skew() {
    let gw = gateway();
    let now = auth_support::now();
    let c = claims("user-1");
    let expired = with(c.clone(), "exp", json!(now - 120));
    let r = with_token(&gw, "/keys", &rs256(&expired));
    assert_401(&r, &["Bearer"]);
    assert_invalid_token(&r);
    let early = with(c.clone(), "nbf", json!(now + 120));
    assert_401(&with_token(&gw, "/keys", &rs256(&early)), &["Bearer"]);
    // Within the default 30 s of skew.
    let just_expired = with(c.clone(), "exp", json!(now - 10));
    let r = with_token(&gw, "/keys", &rs256(&just_expired));
    assert_eq!(r.status, 200, "exp 10 s ago, skew 30 s: {r:?}");
    let nearly_valid = with(c, "nbf", json!(now + 10));
    let r = with_token(&gw, "/keys", &rs256(&nearly_valid));
    assert_eq!(r.status, 200, "nbf in 10 s, skew 30 s: {r:?}");
}

#[test]
fn issuer_and_audience_are_checked() {
    let gw = gateway();
    let c = claims("user-1");
    let foreign = with(c.clone(), "iss", json!("https://evil.test/"));
    assert_401(&with_token(&gw, "/keys", &rs256(&foreign)), &["Bearer"]);
    let other_api = with(c.clone(), "aud", json!("billing-api"));
    assert_401(&with_token(&gw, "/keys", &rs256(&other_api)), &["Bearer"]);
    // `audiences` and `issuer` are required claims: a token without them is refused.
    let no_aud = with(c.clone(), "aud", serde_json::Value::Null);
    let r = with_token(&gw, "/keys", &rs256(&no_aud));
    assert_eq!(
        r.status, 401,
        "a token without aud where audiences are set: {r:?}"
    );
    assert_401(&r, &["Bearer"]);
    let no_iss = with(c.clone(), "iss", serde_json::Value::Null);
    let r = with_token(&gw, "/keys", &rs256(&no_iss));
    assert_eq!(
        r.status, 401,
        "a token without iss where issuer is set: {r:?}"
    );
    assert_401(&r, &["Bearer"]);
    // `aud` as an array that contains one of the audiences.
    let several = with(c, "aud", json!(["billing-api", AUDIENCE]));
    let r = with_token(&gw, "/keys", &rs256(&several));
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn tokens_are_read_from_a_cookie_or_a_query_parameter_when_configured() {
    let gw = gateway();
    let t = rs256(&claims("user-1"));
    let cookie = format!("theme=dark; session={t}; lang=en");
    let r = gw.get("jwt.test", "/cookie", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = gw.get("jwt.test", "/cookie", &[("Cookie", "theme=dark")]);
    assert_eq!(r.status, 401, "{r:?}");
    let r = gw.get("jwt.test", &format!("/query/items?access_token={t}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = gw.get("jwt.test", "/query/items?access_token=nope", &[]);
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn forwarded_claims_replace_a_header_the_client_sent() {
    let gw = gateway();
    let t = rs256(&claims("user-42"));
    let r = gw.get(
        "jwt.test",
        "/claims",
        &[("Authorization", &bearer(&t)), ("X-User-Id", "forged")],
    );
    assert_eq!(
        raw_header_values(&r, "x-user-id"),
        ["user-42"],
        "{}",
        r.text()
    );
}

// === jwksUri: one gateway and one key server per scenario ===

/// Route `jwks` on host `jwks.test`: `/jwt` takes tokens whose keys come from `uri`
/// (`extra` adds fields to its `jwt`), `/open` takes anything; the echo on port `echo`.
fn jwks_manifests(echo: u16, uri: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: echo}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {port}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: jwks}}
spec:
  hosts: [jwks.test]
  rules:
    - name: jwt
      matches: [{{path: {{type: Prefix, value: /jwt}}}}]
      backends: [{{upstream: echo}}]
      policies:
        authentication: {{jwt: {{{common}, jwksUri: {uri}{extra}}}}}
    - name: open
      matches: [{{path: {{type: Prefix, value: /open}}}}]
      backends: [{{upstream: echo}}]
"#,
        port = echo,
        common = jwt_common(),
        uri = yaml_str(uri),
    )
}

/// A gateway over [`jwks_manifests`] and `files` (more manifests); `servers` keeps the
/// key servers alive.
fn jwks_gateway(
    servers: tokio::runtime::Runtime,
    uri: &str,
    extra: &str,
    files: &[(&str, String)],
) -> LoggedGateway {
    let echo = common::spawn_echo(&servers);
    let mut all = vec![("jwks.yaml", jwks_manifests(echo.port(), uri, extra))];
    all.extend(files.iter().cloned());
    LoggedGateway::serve(servers, &all)
}

fn jwt_get(gw: &LoggedGateway, token: &str) -> RawResponse {
    request_within(
        gw.http,
        "jwks.test",
        "/jwt",
        &[("Authorization", &bearer(token))],
        PATIENCE,
    )
}

/// An RS256 token signed with `rsa-1` but naming `kid`.
fn rsa1_as(kid: &str) -> String {
    sign(Algorithm::RS256, Some(kid), &keys().rsa1, &claims("user-1"))
}

/// The statuses of requests sent all at once, one per kid, each with a token of
/// `rsa-1` naming that kid.
fn burst(gw: &LoggedGateway, kids: impl Iterator<Item = String>) -> Vec<u16> {
    std::thread::scope(|s| {
        let handles: Vec<_> = kids
            .map(|kid| s.spawn(move || jwt_get(gw, &rsa1_as(&kid)).status))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

/// Waits for the gateway's first fetch, then for a token of `rsa-1` to pass.
fn wait_for_keys(gw: &LoggedGateway, server: &JwksServer) {
    assert!(
        eventually_within(PATIENCE, || server.gets() >= 1),
        "the gateway never fetched {}",
        server.url()
    );
    assert!(
        eventually_within(PATIENCE, || jwt_get(gw, &rs256(&claims("user-1"))).status
            == 200),
        "a token of rsa-1 never passed: {:?}\nlog:\n{}",
        jwt_get(gw, &rs256(&claims("user-1"))),
        gw.log()
    );
}

#[test]
fn an_unknown_kid_refetches_the_jwks_at_most_once_a_minute() {
    let servers = upstream_runtime();
    let server = JwksServer::spawn(servers.handle(), JwksMode::serve(jwks(&[jwk_rsa1()])), None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    wait_for_keys(&gw, &server);
    let base = server.gets();

    let r = jwt_get(&gw, &rsa1_as("unknown-1"));
    assert_401(&r, &["Bearer"]);
    assert_eq!(
        server.gets(),
        base + 1,
        "an unknown kid makes exactly one refetch, before the answer"
    );

    // Within the minute, more unknown kids, all at once: no more fetches.
    let answers = burst(&gw, (2..22).map(|i| format!("unknown-{i}")));
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    assert_eq!(server.gets(), base + 1, "refetched again within the minute");
    // The known key still works.
    assert_eq!(jwt_get(&gw, &rs256(&claims("user-1"))).status, 200);
}

#[test]
fn concurrent_unknown_kids_share_one_refetch() {
    let servers = upstream_runtime();
    let body = jwks(&[jwk_rsa1()]);
    let server = JwksServer::spawn(servers.handle(), JwksMode::serve(body.clone()), None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    wait_for_keys(&gw, &server);
    let base = server.gets();

    // A slow key server: every request of the burst arrives while the refetch is out.
    server.set(JwksMode::Serve {
        body,
        delay: Duration::from_secs(1),
    });
    let answers = burst(&gw, (0..20).map(|i| format!("burst-{i}")));
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    assert_eq!(
        server.gets(),
        base + 1,
        "20 concurrent unknown kids made {} fetches",
        server.gets() - base
    );
}

#[test]
fn a_rotated_key_is_fetched_on_its_first_use() {
    let servers = upstream_runtime();
    let server = JwksServer::spawn(servers.handle(), JwksMode::serve(jwks(&[jwk_rsa1()])), None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    wait_for_keys(&gw, &server);
    let base = server.gets();

    server.set(JwksMode::serve(jwks(&[jwk_rsa1(), jwk_rsa2()])));
    let t = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &keys().rsa2,
        &claims("user-2"),
    );
    let r = jwt_get(&gw, &t);
    assert_eq!(r.status, 200, "a token of the new key: {r:?}");
    assert_eq!(server.gets(), base + 1, "one refetch");
    // Both keys now pass without more fetches.
    assert_eq!(jwt_get(&gw, &t).status, 200);
    assert_eq!(jwt_get(&gw, &rs256(&claims("user-1"))).status, 200);
    assert_eq!(server.gets(), base + 1);
}

#[test]
fn a_jwks_down_at_start_is_retried_in_the_background() {
    let servers = upstream_runtime();
    let handle = servers.handle().clone();
    let server = JwksServer::unbound(JwksMode::serve(jwks(&[jwk_rsa1()])), false);
    let url = server.url();
    let gw = jwks_gateway(servers, &url, "", &[]);

    let t = rs256(&claims("user-1"));
    assert_401(&jwt_get(&gw, &t), &["Bearer"]);
    // Other routes are served meanwhile.
    assert_eq!(gw.get("jwks.test", "/open", &[]).status, 200);
    let port = format!("127.0.0.1:{}", server.addr.port());
    assert!(
        eventually_within(PATIENCE, || {
            let log = gw.log();
            log.contains(&port) || log.to_ascii_lowercase().contains("jwks")
        }),
        "the log never mentions the failing JWKS fetch of {url}:\n{}",
        gw.log()
    );

    server.listen(&handle);
    assert!(
        eventually_within(PATIENCE, || jwt_get(&gw, &t).status == 200),
        "the keys were never fetched once {url} came up: {:?}",
        jwt_get(&gw, &t)
    );
}

#[test]
fn a_hanging_jwks_fetch_is_bounded_and_retried() {
    let servers = upstream_runtime();
    let server = JwksServer::spawn(servers.handle(), JwksMode::Hang, None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    let t = rs256(&claims("user-1"));

    let answer = std::thread::scope(|s| {
        let pending = s.spawn(|| jwt_get(&gw, &t));
        // The fetch is off the request path of other routes.
        let open = gw.get("jwks.test", "/open", &[]);
        assert_eq!(open.status, 200, "{open:?}");
        pending.join().expect("request thread")
    });
    assert_401(&answer, &["Bearer"]);

    // The hung fetch was given up: a later one gets the keys.
    server.set(JwksMode::serve(jwks(&[jwk_rsa1()])));
    assert!(
        eventually_within(Duration::from_secs(60), || jwt_get(&gw, &t).status == 200),
        "no fetch after the hung one succeeded; {} GETs\nlog:\n{}",
        server.gets(),
        gw.log()
    );
}

#[test]
fn a_failing_refetch_keeps_the_last_good_keys() {
    let servers = upstream_runtime();
    let server = JwksServer::spawn(servers.handle(), JwksMode::serve(jwks(&[jwk_rsa1()])), None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    wait_for_keys(&gw, &server);
    let base = server.gets();

    server.set(JwksMode::Fail);
    assert_401(&jwt_get(&gw, &rsa1_as("unknown-1")), &["Bearer"]);
    assert_eq!(
        server.gets(),
        base + 1,
        "the unknown kid made one (failing) fetch"
    );
    let r = jwt_get(&gw, &rs256(&claims("user-1")));
    assert_eq!(r.status, 200, "the last good keys were dropped: {r:?}");
}

#[test]
fn an_oversized_jwks_is_refused() {
    let servers = upstream_runtime();
    // A valid JWKS followed by 2 MiB of whitespace: still JSON, but past the 1 MiB bound.
    let padded = jwks(&[jwk_rsa1()]) + &" ".repeat(2 << 20);
    let server = JwksServer::spawn(servers.handle(), JwksMode::serve(padded), None);
    let gw = jwks_gateway(servers, &server.url(), "", &[]);
    assert!(
        eventually_within(PATIENCE, || server.gets() >= 1),
        "never fetched"
    );
    let t = rs256(&claims("user-1"));
    assert_401(&jwt_get(&gw, &t), &["Bearer"]);

    server.set(JwksMode::serve(jwks(&[jwk_rsa1()])));
    assert!(
        eventually_within(PATIENCE, || jwt_get(&gw, &t).status == 200),
        "the keys were never fetched once the JWKS was small"
    );
}

#[test]
fn an_https_jwks_is_verified_with_the_ca_from_a_secret() {
    let servers = upstream_runtime();
    let (ca_pem, acceptor) = auth_support::test_ca_and_acceptor();
    let body = jwks(&[jwk_rsa1()]);
    let trusted = JwksServer::spawn(
        servers.handle(),
        JwksMode::serve(body.clone()),
        Some(acceptor.clone()),
    );
    // The same certificate on another server, for a route that does not name the CA.
    let untrusted = JwksServer::spawn(servers.handle(), JwksMode::serve(body), Some(acceptor));
    assert!(trusted.url().starts_with("https://"), "{}", trusted.url());
    let ca_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: jwks-ca}}\nstringData:\n  ca.crt: {}\n",
        yaml_str(&ca_pem)
    );
    let untrusted_route = format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: untrusted}}
spec:
  hosts: [untrusted.test]
  rules:
    - matches: [{{path: {{type: Prefix, value: /}}}}]
      backends: [{{upstream: echo}}]
      policies:
        authentication: {{jwt: {{{}, jwksUri: {}}}}}
"#,
        jwt_common(),
        yaml_str(&untrusted.url())
    );
    let gw = jwks_gateway(
        servers,
        &trusted.url(),
        ", jwksCaSecretRef: {name: jwks-ca, key: ca.crt}",
        &[("ca.yaml", ca_secret), ("untrusted.yaml", untrusted_route)],
    );

    let t = rs256(&claims("user-1"));
    assert!(
        eventually_within(PATIENCE, || jwt_get(&gw, &t).status == 200),
        "never authenticated with keys from {}: {:?}\nlog:\n{}",
        trusted.url(),
        jwt_get(&gw, &t),
        gw.log()
    );
    // Without the CA, the server's certificate is not trusted (the handshake fails, so
    // that server never even sees a GET): no keys.
    let r = request_within(
        gw.http,
        "untrusted.test",
        "/",
        &[("Authorization", &bearer(&t))],
        PATIENCE,
    );
    assert_401(&r, &["Bearer"]);
}

#[test]
fn lint_reports_no_unsupported_value_for_jwt() {
    let (ok, out) = common::lint(&static_manifests(8080, 8081), &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("UnsupportedValue"), "{out}");
    let ca_secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: jwks-ca}}\nstringData:\n  ca.crt: {}\n",
        yaml_str(&auth_support::test_ca_and_acceptor().0)
    );
    let text = jwks_manifests(
        8080,
        "https://keys.test/.well-known/jwks.json",
        ", jwksCaSecretRef: {name: jwks-ca, key: ca.crt}",
    ) + &ca_secret;
    let (ok, out) = common::lint(&text, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("UnsupportedValue"), "{out}");
}
