//! Phase 3, `authentication`: who the caller is.
//!
//! Every configured method that finds its credential in the request is tried, cheapest
//! first: `apiKey` (a digest lookup), `jwt` (a remembered token is a lookup; a new one is
//! verified, see `jwt.rs`), `basic` (bcrypt, see below), then `external` (a call to the
//! check service, which is asked about every request no other method accepted, with or
//! without credentials). The first that accepts authenticates; the rest are not tried.
//!
//! When none accepts, the answer is 401 with one `WWW-Authenticate` challenge per
//! configured method (`Bearer` says `error="invalid_token"` when a token was presented),
//! in the rule's error format, and `gatehouse_auth_failures_total{method}` counts the
//! first method whose credential was refused (`none`: no credential at all). With
//! `optional: true`, a request that presents no credential at all passes without a
//! consumer; one that presents a bad credential is still refused. The check service's
//! own 401/403/3xx goes back to the client as it sent it; a check service that fails
//! is a 503.
//!
//! What the upstream sees: never the credential of `apiKey` (its header and query
//! parameter are removed) nor a `Basic` `Authorization`; the headers `forwardClaims` and
//! `upstreamHeaders` set are removed from the client's request first, so a client can
//! never send its own. A bearer token is forwarded (upstreams may verify it again).
//!
//! bcrypt is slow on purpose (milliseconds per check), so it never runs on a traffic
//! worker: verifications run on the blocking pool, at most [`bcrypt_slots`] at once (a
//! check that waits longer than [`BCRYPT_WAIT`] for a slot is answered 503), and
//! a success is remembered for [`BASIC_REMEMBER`] under a keyed digest of the user, the
//! password and the stored hash (the key is random per process; the password itself is
//! never kept).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse_table::auth::Authentication as Config;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use sha2::{Digest, Sha256};

use super::consumers::Consumer;
use super::external::{Checked, External};
use super::jwks::RemoteJwks;
use super::jwt::{Claims, Jwt, Verified};
use crate::metrics::Counter;
use crate::phases::{Ctx, Phase, Step};
use crate::problem::GatewayError;

/// How long a successful basic-auth check is remembered.
pub const BASIC_REMEMBER: Duration = Duration::from_secs(60);
/// Remembered basic-auth checks, at most.
const BASIC_CAPACITY: usize = 10_000;

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    /// The consumer's name (a consumer Secret's label, or a token's `sub`).
    pub consumer: Option<Arc<str>>,
    /// Its groups (the consumer Secret's, or the token's `groups` claim).
    pub groups: Arc<[String]>,
    /// The token's claims.
    pub claims: Option<Arc<Claims>>,
}

impl Identity {
    fn of_consumer(c: &Consumer) -> Identity {
        Identity {
            consumer: Some(c.name.clone()),
            groups: c.groups.clone(),
            claims: None,
        }
    }

    fn of_token(v: &Verified) -> Identity {
        Identity {
            consumer: v.subject.clone(),
            groups: v.groups.clone(),
            claims: Some(v.claims.clone()),
        }
    }
}

/// The method a failure is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    ApiKey,
    Jwt,
    Basic,
    External,
    None,
}

impl Method {
    fn counter(self) -> Counter {
        match self {
            Method::ApiKey => Counter::AuthApiKey,
            Method::Jwt => Counter::AuthJwt,
            Method::Basic => Counter::AuthBasic,
            Method::External => Counter::AuthExternal,
            Method::None => Counter::AuthNone,
        }
    }
}

#[derive(Debug)]
struct ApiKey {
    header: HeaderName,
    query: Option<String>,
    selector: BTreeMap<String, String>,
}

/// A prepared `authentication` policy.
#[derive(Debug)]
pub struct Authentication {
    namespace: Arc<str>,
    api_key: Option<ApiKey>,
    jwt: Option<Jwt>,
    basic: Option<BTreeMap<String, String>>,
    external: Option<External>,
    /// `external` is configured but cannot be used.
    external_broken: bool,
    optional: bool,
    /// One challenge per method.
    challenges: Arc<[HeaderValue]>,
    /// The same, `Bearer` saying `error="invalid_token"`.
    challenges_bad_token: Arc<[HeaderValue]>,
    /// Headers the client may not send: `forwardClaims` and `upstreamHeaders`.
    reserved: Vec<HeaderName>,
}

const REALM: &str = "gatehouse";

impl Authentication {
    /// The headers only the gateway sets on an admitted request, saying who the caller
    /// is: the forwarded claims and the external check's `upstreamHeaders`.
    pub(crate) fn identity_headers(&self) -> &[HeaderName] {
        &self.reserved
    }

    /// Prepares the policy of a rule of route `route` (`namespace/name`); `remote` gives
    /// the shared key set of a `jwksUri`.
    pub fn prepare(
        route: &str,
        c: &Config,
        remote: impl FnOnce(&str, Option<&str>) -> Result<Arc<RemoteJwks>, String>,
    ) -> Result<Authentication, String> {
        let namespace: Arc<str> = route.split_once('/').map_or("", |(ns, _)| ns).into();
        let api_key = c
            .api_key
            .as_ref()
            .map(|k| {
                Ok::<_, String>(ApiKey {
                    header: HeaderName::from_bytes(k.header.as_bytes())
                        .map_err(|e| format!("apiKey.header: {e}"))?,
                    query: k.query_param.clone(),
                    selector: k.consumer_selector.clone(),
                })
            })
            .transpose()?;
        let jwt = c
            .jwt
            .as_ref()
            .map(|j| Jwt::prepare(j, remote))
            .transpose()?;
        // A check that cannot be set up (a URL the compiler let through but a client
        // cannot use) answers 503 on this rule only; the rest of the table serves.
        let (external, external_broken) = match c.external.as_ref().map(External::prepare) {
            Some(Err(e)) => {
                tracing::error!(route, error = %e, "authentication.external cannot be used; the rule answers 503 where it would be asked");
                (None, true)
            }
            other => (other.and_then(Result::ok), false),
        };
        let mut challenges = Vec::new();
        let mut bad_token = Vec::new();
        let mut both = |plain: String, bad: String| -> Result<(), String> {
            let v = |s: String| HeaderValue::try_from(s).map_err(|e| format!("challenge: {e}"));
            challenges.push(v(plain)?);
            bad_token.push(v(bad)?);
            Ok(())
        };
        if let Some(k) = &c.api_key {
            let mut ch = format!("ApiKey realm=\"{REALM}\", header=\"{}\"", k.header);
            // Named only when it can be quoted as it is.
            if let Some(q) = k.query_param.as_ref().filter(|q| {
                q.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            }) {
                ch.push_str(&format!(", query=\"{q}\""));
            }
            both(ch.clone(), ch)?;
        }
        if c.jwt.is_some() {
            both(
                format!("Bearer realm=\"{REALM}\""),
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            )?;
        }
        if c.basic.is_some() {
            let ch = format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"");
            both(ch.clone(), ch)?;
        }
        let mut reserved: Vec<HeaderName> = jwt
            .iter()
            .flat_map(|j| j.forward_claims.iter().map(|(_, h)| h.clone()))
            .collect();
        reserved.extend(external.iter().flat_map(|e| e.upstream.iter().cloned()));
        Ok(Authentication {
            namespace,
            api_key,
            jwt,
            basic: c.basic.as_ref().map(|b| b.consumer_selector.clone()),
            external,
            external_broken,
            optional: c.optional,
            challenges: challenges.into(),
            challenges_bad_token: bad_token.into(),
            reserved,
        })
    }

    fn refuse(&self, bad_token: bool, detail: &'static str) -> GatewayError {
        GatewayError::Unauthorized {
            challenges: if bad_token {
                self.challenges_bad_token.clone()
            } else {
                self.challenges.clone()
            },
            detail,
        }
    }
}

/// The credentials a request presents, for the methods a rule has.
#[derive(Default)]
struct Presented {
    api_key: Option<String>,
    token: Option<String>,
    basic: Option<(String, String)>,
    external: bool,
}

impl Presented {
    fn any(&self) -> bool {
        self.api_key.is_some() || self.token.is_some() || self.basic.is_some() || self.external
    }

    fn read(a: &Authentication, parts: &Parts) -> Presented {
        let mut p = Presented::default();
        if let Some(k) = &a.api_key {
            p.api_key = parts
                .headers
                .get(&k.header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| k.query.as_deref().and_then(|q| query_value(parts, q)));
        }
        if let Some(j) = &a.jwt {
            p.token = token(&j.from, parts);
        }
        if a.basic.is_some() {
            p.basic = basic_credentials(parts);
        }
        if let Some(e) = &a.external {
            // The check service decides about every request, anonymous ones included,
            // unless the rule is optional: then a request without any of the headers
            // it would be sent counts as presenting nothing.
            p.external = !a.optional || e.presented(parts);
        } else if a.external_broken {
            p.external = !a.optional;
        }
        p
    }
}

fn query_value(parts: &Parts, name: &str) -> Option<String> {
    gatehouse_router::query_pairs(parts.uri.query())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The token, from the first place `from` names that holds one.
fn token(from: &gatehouse_table::auth::TokenFrom, parts: &Parts) -> Option<String> {
    if let Some(h) = &from.header
        && let Some(v) = parts.headers.get(h.as_str()).and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if h == "authorization" {
            // Another scheme (or none) is not a token here: try the other places.
            if let Some((scheme, rest)) = v.split_once(' ')
                && scheme.eq_ignore_ascii_case("bearer")
                && !rest.trim().is_empty()
            {
                return Some(rest.trim().to_string());
            }
        } else if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    if let Some(found) = from
        .cookie
        .as_deref()
        .and_then(|c| crate::headers::cookie(&parts.headers, c))
    {
        return Some(found.to_string());
    }
    from.query_param
        .as_deref()
        .and_then(|q| query_value(parts, q))
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Phase 3, authentication. On success the caller's [`Identity`] is in `cx`, the
/// credentials are gone from `parts`, and a target without the API-key query
/// parameter is returned when one was removed.
pub(crate) fn on_request<'a>(
    cx: &'a mut Ctx<'_>,
    parts: &'a mut Parts,
) -> Step<'a, Phase<Option<PathAndQuery>>> {
    let Some(auth) = cx.policies().and_then(|p| p.authentication.as_ref()) else {
        return Step::now(Ok(ControlFlow::Continue(None)));
    };
    let presented = Presented::read(auth, parts);
    let mut refused: Option<Method> = None;
    if let (Some(key), Some(k)) = (&presented.api_key, &auth.api_key) {
        match cx
            .table
            .consumers
            .by_api_key(key.as_bytes(), &auth.namespace, &k.selector)
        {
            Some(c) => {
                let id = Identity::of_consumer(c);
                return Step::now(Ok(ControlFlow::Continue(admit(cx, auth, parts, id, None))));
            }
            None => refused = Some(Method::ApiKey),
        }
    }
    if let (Some(token), Some(jwt)) = (&presented.token, &auth.jwt)
        && let Some(v) = jwt.remembered(token)
    {
        let id = Identity::of_token(&v);
        return Step::now(Ok(ControlFlow::Continue(admit(cx, auth, parts, id, None))));
    }
    if presented.token.is_none() && presented.basic.is_none() && !presented.external {
        return Step::now(fail(cx, auth, parts, &presented, refused, None));
    }
    Step::later(async move {
        let mut token_refusal = None;
        if let (Some(token), Some(jwt)) = (&presented.token, &auth.jwt) {
            match jwt.verify(token).await {
                Ok(v) => {
                    let id = Identity::of_token(&v);
                    return Ok(ControlFlow::Continue(admit(cx, auth, parts, id, None)));
                }
                Err(why) => {
                    refused.get_or_insert(Method::Jwt);
                    token_refusal = Some(why);
                }
            }
        }
        if let (Some((user, password)), Some(selector)) = (&presented.basic, &auth.basic) {
            let found = cx
                .table
                .consumers
                .by_user(user, &auth.namespace, selector)
                .cloned();
            let checked = match &found {
                Some(c) => verify_basic(c, user, password).await,
                None => Password::Wrong,
            };
            match (checked, found) {
                (Password::Right, Some(c)) => {
                    let id = Identity::of_consumer(&c);
                    return Ok(ControlFlow::Continue(admit(cx, auth, parts, id, None)));
                }
                (Password::Busy, _) => {
                    cx.count(Method::Basic.counter());
                    return Err(GatewayError::AuthUnavailable(
                        "too many password checks are waiting",
                    ));
                }
                _ => {
                    refused.get_or_insert(Method::Basic);
                }
            }
        }
        if auth.external_broken && presented.external {
            cx.count(Method::External.counter());
            return Err(GatewayError::AuthUnavailable(
                "the authentication service is not configured correctly",
            ));
        }
        if let Some(e) = auth.external.as_ref().filter(|_| presented.external) {
            let ip = cx.client.to_string();
            match e.check(parts, &ip, cx.request_id).await {
                Checked::Allowed(headers) => {
                    let id = Identity::default();
                    return Ok(ControlFlow::Continue(admit(
                        cx,
                        auth,
                        parts,
                        id,
                        Some(headers),
                    )));
                }
                Checked::Refused(answer) => {
                    cx.count(Method::External.counter());
                    return Ok(ControlFlow::Break(answer));
                }
                Checked::Failed(why) => {
                    cx.count(Method::External.counter());
                    tracing::warn!(
                        route = cx.rule.map_or("", |r| r.route_id()),
                        request_id = cx.rid(),
                        error = %why,
                        "the forward-authentication check failed; refusing the request (503)"
                    );
                    return Err(GatewayError::AuthUnavailable(
                        "the authentication service did not answer",
                    ));
                }
            }
        }
        fail(cx, auth, parts, &presented, refused, token_refusal)
    })
}

/// No method accepted: pass an optional rule's request that presented nothing, else
/// 401.
fn fail(
    cx: &mut Ctx<'_>,
    auth: &Authentication,
    parts: &mut Parts,
    presented: &Presented,
    refused: Option<Method>,
    token_refusal: Option<&'static str>,
) -> Phase<Option<PathAndQuery>> {
    if auth.optional && !presented.any() {
        strip_reserved(auth, parts);
        return Ok(ControlFlow::Continue(None));
    }
    cx.count(refused.unwrap_or(Method::None).counter());
    let detail = match (refused, token_refusal) {
        (_, Some(why)) => why,
        (None, _) => "This route requires credentials.",
        (Some(Method::ApiKey), _) => "The API key is not valid for this route.",
        (Some(Method::Basic), _) => "The user name or password is not valid for this route.",
        (Some(_), _) => "The credentials are not valid for this route.",
    };
    Err(auth.refuse(token_refusal.is_some(), detail))
}

/// Lets the request in as `id`: credentials removed, claims and check headers set.
fn admit(
    cx: &mut Ctx<'_>,
    auth: &Authentication,
    parts: &mut Parts,
    id: Identity,
    upstream_headers: Option<Vec<(HeaderName, HeaderValue)>>,
) -> Option<PathAndQuery> {
    strip_reserved(auth, parts);
    if let (Some(jwt), Some(claims)) = (&auth.jwt, &id.claims) {
        for (claim, h) in &jwt.forward_claims {
            let text = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                Some(v) => v.to_string(),
                None => continue,
            };
            if let Ok(v) = HeaderValue::try_from(text) {
                parts.headers.insert(h.clone(), v);
            }
        }
    }
    for (name, value) in upstream_headers.into_iter().flatten() {
        parts.headers.append(name, value);
    }
    cx.identity = Some(id);
    strip_credentials(auth, parts)
}

/// Headers only the gateway may set on the upstream request.
fn strip_reserved(auth: &Authentication, parts: &mut Parts) {
    for h in &auth.reserved {
        parts.headers.remove(h);
    }
}

/// Removes the API key (header and query parameter) and a `Basic` `Authorization`;
/// returns the target without the query parameter when it was there.
fn strip_credentials(auth: &Authentication, parts: &mut Parts) -> Option<PathAndQuery> {
    // Any `Basic` credential, well-formed or not: the scheme is enough.
    let basic_scheme = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..6))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"basic "));
    if auth.basic.is_some() && basic_scheme {
        parts.headers.remove(header::AUTHORIZATION);
    }
    let k = auth.api_key.as_ref()?;
    parts.headers.remove(&k.header);
    let q = k.query.as_deref()?;
    let query = parts.uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let raw = pair.split_once('=').map_or(*pair, |(n, _)| n);
            percent_encoding::percent_decode_str(raw).decode_utf8_lossy() != q
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let path = parts.uri.path();
    let target = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    PathAndQuery::try_from(target).ok()
}

/// The number of bcrypt verifications that may run at once: the cores.
pub fn bcrypt_slots() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

struct BasicMemo {
    key: [u8; 32],
    remembered: quick_cache::sync::Cache<[u8; 32], Instant>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// How long a basic-auth check may wait for a bcrypt slot before the request is
/// answered 503.
pub const BCRYPT_WAIT: Duration = Duration::from_secs(2);

fn memo() -> &'static BasicMemo {
    static MEMO: OnceLock<BasicMemo> = OnceLock::new();
    MEMO.get_or_init(|| {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No OS randomness: per-process entropy from the std hasher's random keys.
            use std::hash::BuildHasher;
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                let h = std::collections::hash_map::RandomState::new().hash_one(i);
                chunk.copy_from_slice(&h.to_le_bytes());
            }
        }
        BasicMemo {
            key,
            remembered: quick_cache::sync::Cache::new(BASIC_CAPACITY),
            slots: Arc::new(tokio::sync::Semaphore::new(bcrypt_slots())),
        }
    })
}

/// What a password check found.
enum Password {
    Right,
    Wrong,
    /// No bcrypt slot within [`BCRYPT_WAIT`].
    Busy,
}

/// Whether `password` is `user`'s, by the consumer's bcrypt hash.
async fn verify_basic(c: &Consumer, user: &str, password: &str) -> Password {
    let Some(hash) = c.password_hash.as_ref().and_then(|h| h.reveal()) else {
        return Password::Wrong;
    };
    let m = memo();
    let mut d = Sha256::new();
    d.update(m.key);
    for part in [user, password, hash] {
        d.update((part.len() as u64).to_le_bytes());
        d.update(part.as_bytes());
    }
    let digest: [u8; 32] = d.finalize().into();
    if let Some(at) = m.remembered.get(&digest) {
        if at.elapsed() < BASIC_REMEMBER {
            return Password::Right;
        }
        m.remembered.remove(&digest);
    }
    // The slot goes with the check onto the blocking pool: a request that gives up
    // (its client went away) does not free it while bcrypt still runs.
    let slot = match tokio::time::timeout(BCRYPT_WAIT, m.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) | Err(_) => return Password::Busy,
    };
    let (password, hash) = (password.to_string(), hash.to_string());
    let ok = tokio::task::spawn_blocking(move || {
        let ok = bcrypt::verify(password, &hash).unwrap_or(false);
        drop(slot);
        ok
    })
    .await
    .unwrap_or(false);
    if ok {
        m.remembered.insert(digest, Instant::now());
        Password::Right
    } else {
        Password::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn tokens_are_read_from_bearer_cookie_and_query() {
        use gatehouse_table::auth::TokenFrom;
        let from = TokenFrom {
            header: Some("authorization".into()),
            cookie: Some("jwt".into()),
            query_param: Some("access_token".into()),
        };
        let t = |p: &Parts| token(&from, p);
        assert_eq!(
            t(&parts("/", &[("authorization", "Bearer abc")])),
            Some("abc".into())
        );
        assert_eq!(
            t(&parts("/", &[("authorization", "bearer  abc ")])),
            Some("abc".into())
        );
        assert_eq!(t(&parts("/", &[("authorization", "Basic abc")])), None);
        assert_eq!(
            t(&parts("/", &[("cookie", "a=1; jwt=xyz")])),
            Some("xyz".into())
        );
        assert_eq!(t(&parts("/?access_token=q1", &[])), Some("q1".into()));
        assert_eq!(t(&parts("/?other=1", &[])), None);
        let negotiate = parts("/", &[("authorization", "Negotiate"), ("cookie", "jwt=c1")]);
        assert_eq!(t(&negotiate), Some("c1".into()));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let p = parts("/", &[("authorization", "Basic YWxpY2U6cGE6c3M=")]);
        assert_eq!(
            basic_credentials(&p),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials(&parts("/", &[("authorization", "Basic !!")])),
            None
        );
    }
}
