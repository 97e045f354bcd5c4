//! JSON Web Key Sets: parsed into verification keys, and, for a `jwksUri`, fetched and
//! kept fresh off the request path.
//!
//! A remote set ([`RemoteJwks`]) is fetched when first used and then refreshed before it
//! expires: after three quarters of its `Cache-Control: max-age`, clamped to
//! [`MIN_REFRESH`]..[`MAX_REFRESH`] ([`DEFAULT_REFRESH`] without one). A fetch is bounded
//! ([`FETCH_TIMEOUT`], [`MAX_JWKS_BYTES`]); one that fails keeps the last good keys and
//! is retried with backoff (from [`FIRST_RETRY`], doubling, up to [`MAX_RETRY`] while
//! there are no keys at all). A token whose `kid` is unknown may ask for one refetch,
//! at most once per [`KID_REFETCH_INTERVAL`] per set; every request that arrives
//! while a fetch is under way waits for that fetch instead of starting another.
//!
//! Fetches run on one thread of their own ([`fetch_runtime`]), so a request that gives
//! up waiting never cancels a fetch others wait for, and a slow key server never holds a
//! traffic worker.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::client::{self, AuxClient};

/// Refresh interval without `Cache-Control: max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Shortest refresh interval, whatever `max-age` says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// Longest refresh interval, whatever `max-age` says.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// At most one refetch for unknown `kid`s per this interval, per set.
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// First retry after a failed fetch.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between retries while there are no keys at all.
pub const MAX_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between retries while the last good keys still serve.
pub const MAX_RETRY_WITH_KEYS: Duration = Duration::from_secs(60);

/// One verification key.
pub struct Key {
    /// The key.
    pub key: DecodingKey,
    /// The JWK's `alg`, when it names one: then only that algorithm verifies with it.
    pub alg: Option<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("alg", &self.alg).finish()
    }
}

/// The keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Bumped on every change, so what was verified with older keys is checked again.
    pub generation: u64,
    by_kid: FxHashMap<String, Vec<Key>>,
    anonymous: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot be used (an unknown `kty`, a key for
    /// encryption only) are skipped; a document with no usable key is an error.
    pub fn parse(text: &[u8], generation: u64) -> Result<KeySet, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("no \"keys\" array")?;
        let mut set = KeySet {
            generation,
            ..KeySet::default()
        };
        let mut skipped = 0usize;
        for k in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                skipped += 1;
                continue;
            };
            let for_signing = !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            );
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                skipped += 1;
                continue;
            };
            if !for_signing {
                continue;
            }
            // A key that names an algorithm verifies only that one; one that names an
            // algorithm that is not a JWS signature algorithm (RSA-OAEP, ...) none.
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match a.to_string().parse::<Algorithm>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        skipped += 1;
                        continue;
                    }
                },
            };
            let key = Key { key, alg };
            match jwk.common.key_id {
                Some(kid) => set.by_kid.entry(kid).or_default().push(key),
                None => set.anonymous.push(key),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(format!(
                "no usable signing key ({} key(s), {skipped} unusable)",
                keys.len()
            ));
        }
        Ok(set)
    }

    /// The keys that may have signed a token with this `kid`: those with that `kid`, or
    /// with none when the token names none.
    pub fn candidates<'a>(&'a self, kid: Option<&str>) -> &'a [Key] {
        match kid {
            Some(kid) => self.by_kid.get(kid).map_or(&[], Vec::as_slice),
            None => &self.anonymous,
        }
    }

    /// Whether a token with this `kid` has a candidate key (a token without one may
    /// also match any key when the set has a single key).
    pub fn knows(&self, kid: Option<&str>) -> bool {
        !self.candidates(kid).is_empty()
    }

    /// Every key (for a token without `kid` against a set whose keys all have one).
    pub fn all(&self) -> impl Iterator<Item = &Key> {
        self.by_kid.values().flatten().chain(&self.anonymous)
    }
}

/// The thread remote key sets are fetched on.
fn fetch_runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the JWKS fetch runtime"))
                .ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("gatehouse-fetch".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the JWKS fetch thread"))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// What one fetch gave: the refresh interval, or why it failed.
type Outcome = Result<Duration, String>;

#[derive(Debug, Default)]
struct FetchState {
    /// The fetch under way, if any.
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    /// When a request last asked for a refetch of an unknown `kid`.
    last_kid_refetch: Option<Instant>,
    generation: u64,
}

/// A JWKS fetched from a URI and kept fresh.
pub struct RemoteJwks {
    uri: String,
    client: AuxClient,
    keys: ArcSwapOption<KeySet>,
    state: Mutex<FetchState>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("uri", &self.uri)
            .finish()
    }
}

impl RemoteJwks {
    /// A set for `uri`, verified against `ca_pem` when given; starts fetching at once,
    /// and keeps refreshing while it is alive.
    pub fn start(uri: &str, ca_pem: Option<&str>) -> Result<Arc<RemoteJwks>, String> {
        let remote = Arc::new(RemoteJwks {
            uri: uri.to_string(),
            client: client::build(ca_pem)?,
            keys: ArcSwapOption::empty(),
            state: Mutex::default(),
        });
        let weak = Arc::downgrade(&remote);
        match fetch_runtime() {
            Some(rt) => {
                rt.spawn(refresh(weak));
            }
            None => return Err("no runtime to fetch keys on".into()),
        }
        Ok(remote)
    }

    /// The current keys; `None` before the first good fetch.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// The current keys' generation (0 before the first good fetch), read without
    /// taking a reference on them: what a remembered token is checked against on every
    /// request.
    pub fn generation(&self) -> u64 {
        self.keys.load().as_ref().map_or(0, |k| k.generation)
    }

    /// Asks for a refetch because a token names a `kid` the keys lack, and waits for
    /// it: joins a fetch under way, or starts one unless one was asked for less than
    /// [`KID_REFETCH_INTERVAL`] ago (then returns at once).
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) {
        if let Some(mut rx) = self.fetch(true) {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fetch under way, or a new one (for a `kid` refetch, only when allowed).
    fn fetch(self: &Arc<Self>, for_kid: bool) -> Option<watch::Receiver<Option<Outcome>>> {
        let mut st = self.lock();
        if let Some(rx) = &st.inflight {
            return Some(rx.clone());
        }
        if for_kid {
            if st
                .last_kid_refetch
                .is_some_and(|t| t.elapsed() < KID_REFETCH_INTERVAL)
            {
                return None;
            }
            st.last_kid_refetch = Some(Instant::now());
        }
        let rt = fetch_runtime()?;
        let (tx, rx) = watch::channel(None);
        st.inflight = Some(rx.clone());
        /// Clears the fetch under way however the fetch ends (a panic included), so a
        /// set can always be fetched again.
        struct Done(Arc<RemoteJwks>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.lock().inflight = None;
            }
        }
        let done = Done(self.clone());
        rt.spawn(async move {
            let outcome = done.0.fetch_once().await;
            drop(done);
            let _ = tx.send(Some(outcome));
        });
        Some(rx)
    }

    async fn fetch_once(&self) -> Outcome {
        let result = self.download().await;
        match result {
            Ok((body, refresh)) => {
                let generation = {
                    let mut st = self.lock();
                    st.generation += 1;
                    st.generation
                };
                match KeySet::parse(&body, generation) {
                    Ok(set) => {
                        tracing::debug!(uri = %self.uri, keys = set.all().count(), "JWKS fetched");
                        self.keys.store(Some(Arc::new(set)));
                        Ok(refresh)
                    }
                    Err(e) => Err(self.failed(&format!("the document is not a usable JWKS: {e}"))),
                }
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn failed(&self, why: &str) -> String {
        if self.keys.load().is_some() {
            tracing::warn!(uri = %self.uri, error = %why, "JWKS fetch failed; the last good keys keep serving");
        } else {
            tracing::error!(uri = %self.uri, error = %why, "JWKS fetch failed; tokens verified with these keys are refused until a fetch succeeds");
        }
        why.to_string()
    }

    async fn download(&self) -> Result<(Bytes, Duration), String> {
        let req = http::Request::get(&self.uri)
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .header(http::header::USER_AGENT, "gatehouse")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad URI: {e}"))?;
        let answer = client::call(&self.client, req, FETCH_TIMEOUT, MAX_JWKS_BYTES).await?;
        if !answer.status.is_success() {
            return Err(format!("the key server answered {}", answer.status));
        }
        if !answer.complete {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let refresh = max_age(&answer.headers).map_or(DEFAULT_REFRESH, |age| {
            (age.min(MAX_REFRESH * 2) * 3 / 4).clamp(MIN_REFRESH, MAX_REFRESH)
        });
        Ok((answer.body, refresh))
    }
}

/// `Cache-Control: max-age` of an answer.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            let (name, value) = d.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .map(Duration::from_secs)
}

/// Keeps a set fresh while it is alive.
async fn refresh(weak: Weak<RemoteJwks>) {
    let mut retry = FIRST_RETRY;
    loop {
        let Some(me) = weak.upgrade() else {
            return;
        };
        let outcome = match me.fetch(false) {
            Some(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or_else(|| Err("no outcome".into())),
                Err(_) => Err("the fetch was dropped".into()),
            },
            None => Err("no fetch runtime".into()),
        };
        let wait = match outcome {
            Ok(refresh) => {
                retry = FIRST_RETRY;
                refresh
            }
            Err(_) => {
                let wait = retry;
                let cap = if me.keys.load().is_some() {
                    MAX_RETRY_WITH_KEYS
                } else {
                    MAX_RETRY
                };
                retry = (retry * 2).min(cap);
                wait
            }
        };
        drop(me);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_index_by_kid_and_skip_what_they_cannot_use() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","kid":"e","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"XYZ","kid":"x"},
            {"kty":"EC","crv":"P-256","kid":"enc","alg":"ECDH-ES",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let set = KeySet::parse(doc, 1).expect("parses");
        assert!(set.knows(Some("e")));
        assert!(set.knows(Some("h")));
        assert!(!set.knows(Some("x")));
        assert!(
            !set.knows(Some("enc")),
            "a key for a non-signature algorithm is skipped"
        );
        assert!(!set.knows(None));
        assert_eq!(set.candidates(Some("e"))[0].alg, Some(Algorithm::ES256));
        assert!(KeySet::parse(br#"{"keys":[]}"#, 1).is_err());
        assert!(KeySet::parse(b"[]", 1).is_err());
        assert!(KeySet::parse(b"not json", 1).is_err());
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=600"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        assert_eq!(max_age(&h), None);
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("max-age=18446744073709551615"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(u64::MAX)));
    }
}
