//! `cache`: a shared response cache in front of the upstream.
//!
//! One store per process ([`ResponseCache`], `quick_cache`), bounded in bytes by
//! `--cache-capacity`; each rule's [`CachePolicy`] decides what is cacheable and how it
//! is keyed. Entries live for the policy's `ttl` (shortened by the upstream's
//! `s-maxage`/`max-age` when `respectCacheControl` is on) and are keyed by the policy
//! as configured (route, rule, configuration: a changed policy never serves entries
//! stored under the old one), the method (HEAD shares GET's entries), the host, the
//! normalized path and query, the `vary` request headers, and the consumer when
//! `perConsumer` is set.
//!
//! What is stored: responses to a cacheable method whose status is listed, with a body
//! of at most `maxEntryBytes`, without `Set-Cookie`, and — with `respectCacheControl` —
//! without `no-store`, `private` or `no-cache`, and whose `Vary` names only headers the
//! policy keys on. What bypasses the cache (`X-Cache: BYPASS`): other methods, requests
//! with `Authorization` unless `perConsumer` is set, and — with `respectCacheControl` —
//! requests saying `Cache-Control: no-store`. A request saying `no-cache` or
//! `max-age=0` is fetched again (and stored); one with `max-age=N` is not served an
//! entry older than N seconds.
//!
//! Concurrent misses for one key collapse: the first fetches, the others wait for it
//! (at most the request timeout) and are then served from the cache; if the response
//! turned out not to be storable they go to the upstream themselves.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use gatehouse_table::policy as table;

use crate::problem::GatewayError;
use crate::{Body, full};

use std::ops::ControlFlow;

use http::request::Parts;

use crate::metrics::Counter;
use crate::phases::{Ctx, Phase, Step};
use crate::routing::Routed;

/// `X-Cache`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// `X-Cache: HIT`.
pub const HIT: HeaderValue = HeaderValue::from_static("HIT");
/// `X-Cache: MISS`.
pub const MISS: HeaderValue = HeaderValue::from_static("MISS");
/// `X-Cache: BYPASS`.
pub const BYPASS: HeaderValue = HeaderValue::from_static("BYPASS");

/// A prepared `cache` policy.
#[derive(Debug)]
pub struct CachePolicy {
    ttl: Duration,
    methods: Vec<Method>,
    statuses: Vec<u16>,
    /// Lowercase, in configuration order.
    vary: Vec<HeaderName>,
    per_consumer: bool,
    respect: bool,
    max_entry_bytes: usize,
    /// The route id (purge by route).
    route: Arc<str>,
    /// Starts every key: the policy as configured.
    tag: Box<str>,
    store: ResponseCache,
}

/// A cache key: cheap to clone (the miss-collapsing map and its guard hold copies),
/// hashed once when made (the store and the miss-collapsing map each hash it again
/// otherwise, and compare it on every probe).
#[derive(Debug, Clone)]
pub struct Key {
    route: Arc<str>,
    text: Arc<str>,
    hash: u64,
}

impl Key {
    fn new(route: Arc<str>, text: Arc<str>) -> Key {
        // Seeded at random per process (the store's own hasher): keys come from
        // requests, so their hashes must not be predictable.
        static SEED: std::sync::LazyLock<quick_cache::DefaultHashBuilder> =
            std::sync::LazyLock::new(quick_cache::DefaultHashBuilder::default);
        let hash = SEED.hash_one((&*route, &*text));
        Key { route, text, hash }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
            && self.route == other.route
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    /// The upstream's `Age` when stored, in seconds.
    initial_age: u64,
    ttl: Duration,
    /// What it costs the store (set by [`ResponseCache::insert`]).
    weight: u32,
}

impl Entry {
    /// Seconds since the upstream produced the response.
    fn age(&self) -> u64 {
        self.initial_age + self.stored.elapsed().as_secs()
    }

    fn weight(&self, key: &Key) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let total = self.body.len() + headers + key.text.len() + 128;
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// What a request is, for a cached rule.
#[derive(Debug)]
pub enum Lookup {
    /// Not cacheable: straight to the upstream.
    Bypass,
    /// Cacheable under `key`. `read`: whether an entry may answer it (`false` when the
    /// client asked for a fresh one), `max_age`: the oldest entry it accepts, `store`:
    /// whether its response may be stored (not for HEAD, which has no body).
    Cacheable {
        /// The key.
        key: Key,
        /// May an entry answer.
        read: bool,
        /// The client's `max-age`, in seconds.
        max_age: Option<u64>,
        /// May the response be stored.
        store: bool,
    },
}

impl CachePolicy {
    /// Prepares a policy for `route`; `tag` names the policy as configured.
    pub fn prepare(
        c: &table::Cache,
        route: &str,
        tag: &str,
        store: ResponseCache,
    ) -> Result<CachePolicy, String> {
        let methods = c
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| format!("method {m:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let vary = c
            .vary
            .iter()
            .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("vary {h:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(CachePolicy {
            ttl: Duration::from_millis(c.ttl_ms),
            methods,
            statuses: c.statuses.clone(),
            vary,
            per_consumer: c.per_consumer,
            respect: c.respect_cache_control,
            max_entry_bytes: usize::try_from(c.max_entry_bytes).unwrap_or(usize::MAX),
            route: route.into(),
            tag: tag.into(),
            store,
        })
    }

    /// Classifies a request: `host`, `path` (normalized) and `query` as received.
    pub fn lookup(
        &self,
        method: &Method,
        headers: &HeaderMap,
        host: &str,
        path: &str,
        query: Option<&str>,
        consumer: Option<&str>,
    ) -> Lookup {
        if !self.methods.contains(method) {
            return Lookup::Bypass;
        }
        if !self.per_consumer && headers.contains_key(header::AUTHORIZATION) {
            return Lookup::Bypass;
        }
        let directives = if self.respect {
            CacheControl::parse(headers)
        } else {
            CacheControl::default()
        };
        if directives.no_store {
            return Lookup::Bypass;
        }
        let head = *method == Method::HEAD;
        let method_class = if head { "GET" } else { method.as_str() };
        let mut text = String::with_capacity(self.tag.len() + host.len() + path.len() + 64);
        text.push_str(&self.tag);
        text.push('\0');
        text.push_str(method_class);
        text.push('\0');
        text.extend(host.chars().map(|c| c.to_ascii_lowercase()));
        text.push('\0');
        text.push_str(path);
        text.push('\0');
        if let Some(q) = query {
            text.push('?');
            text.push_str(q);
        }
        for name in &self.vary {
            text.push('\0');
            for v in headers.get_all(name) {
                text.push_str(&String::from_utf8_lossy(v.as_bytes()));
                text.push(',');
            }
        }
        if self.per_consumer {
            text.push('\0');
            text.push_str(consumer.unwrap_or("-"));
        }
        Lookup::Cacheable {
            key: Key::new(self.route.clone(), text.into()),
            read: !(directives.no_cache || directives.max_age == Some(0)),
            max_age: directives.max_age,
            store: !head,
        }
    }

    /// The store.
    pub fn store(&self) -> &ResponseCache {
        &self.store
    }

    /// How long the response may be stored; `None` when it may not be.
    fn storable(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body_len: Option<u64>,
    ) -> Option<Duration> {
        if !self.statuses.contains(&status.as_u16()) || headers.contains_key(header::SET_COOKIE) {
            return None;
        }
        if body_len.is_some_and(|n| n > self.max_entry_bytes as u64) {
            return None;
        }
        // A Vary the key does not cover would mix variants.
        for v in headers.get_all(header::VARY) {
            let Ok(v) = v.to_str() else { return None };
            for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*"
                    || !self
                        .vary
                        .iter()
                        .any(|h| h.as_str().eq_ignore_ascii_case(name))
                {
                    return None;
                }
            }
        }
        if !self.respect {
            return Some(self.ttl);
        }
        let cc = CacheControl::parse(headers);
        if cc.no_store || cc.private || cc.no_cache {
            return None;
        }
        let ttl = match cc.s_maxage.or(cc.max_age) {
            Some(secs) => self.ttl.min(Duration::from_secs(secs)),
            None => self.ttl,
        };
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Stores `resp` under `key` when it may be, reading its body (at most
    /// `maxEntryBytes`; a longer one is passed on whole, unstored). Returns the response
    /// to send, and whether it was stored; an upstream that breaks off while its body
    /// is read is a 502 (nothing was sent to the client yet).
    pub async fn store_response(
        &self,
        key: Key,
        resp: Response<Body>,
    ) -> Result<(Response<Body>, bool), GatewayError> {
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let Some(ttl) = self.storable(resp.status(), resp.headers(), declared) else {
            return Ok((resp, false));
        };
        let (parts, body) = resp.into_parts();
        let body = match read_at_most(body, self.max_entry_bytes).await {
            Read::Whole(bytes) => bytes,
            Read::Over(body) => return Ok((Response::from_parts(parts, body), false)),
            Read::Failed => return Err(GatewayError::BadGateway),
        };
        let initial_age = parts
            .headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut headers = compact(&parts.headers);
        crate::headers::strip_hop_by_hop(&mut headers);
        headers.remove(header::AGE);
        let entry = Entry {
            status: parts.status,
            headers,
            body: body.clone(),
            stored: Instant::now(),
            initial_age,
            ttl,
            weight: 0,
        };
        self.store.insert(key, entry);
        Ok((Response::from_parts(parts, full(body)), true))
    }
}

/// `headers` with their values copied into one allocation of their own. Values parsed
/// from a connection share its read buffer: an entry holding them would keep that
/// buffer alive, and the store's byte count would not see it.
fn compact(headers: &HeaderMap) -> HeaderMap {
    let total: usize = headers.iter().map(|(_, v)| v.len()).sum();
    let mut bytes = BytesMut::with_capacity(total);
    for (_, v) in headers {
        bytes.extend_from_slice(v.as_bytes());
    }
    let bytes = bytes.freeze();
    let mut out = HeaderMap::with_capacity(headers.len());
    let mut at = 0;
    for (name, v) in headers {
        let end = at + v.len();
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice(at..end)) {
            out.append(name.clone(), value);
        }
        at = end;
    }
    out
}

/// The answer from an entry (headers only for HEAD), with `Age`.
pub fn answer(entry: &Entry, head: bool) -> Response<Body> {
    let mut resp = Response::new(full(if head {
        Bytes::new()
    } else {
        entry.body.clone()
    }));
    *resp.status_mut() = entry.status;
    *resp.headers_mut() = entry.headers.clone();
    resp.headers_mut()
        .insert(header::AGE, HeaderValue::from(entry.age()));
    resp
}

enum Read {
    Whole(Bytes),
    Over(Body),
    Failed,
}

/// Reads `body` whole when it is at most `max` bytes; otherwise gives back a body that
/// replays what was read, then the rest.
async fn read_at_most(body: Body, max: usize) -> Read {
    let mut streamed = match body {
        Body::Left(whole) => {
            let bytes = match whole.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            return if bytes.len() <= max {
                Read::Whole(bytes)
            } else {
                Read::Over(full(bytes))
            };
        }
        Body::Right(s) => s,
    };
    // Copied into a buffer of its own: a frame may share a connection's read buffer,
    // which a stored entry must not keep alive.
    let mut buf = BytesMut::new();
    loop {
        match streamed.frame().await {
            None => return Read::Whole(buf.freeze()),
            Some(Err(_)) => return Read::Failed,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > max {
                        streamed.replay(buf.freeze());
                        return Read::Over(Body::Right(streamed));
                    }
                }
            }
        }
    }
}

/// The `Cache-Control` directives this cache acts on.
#[derive(Debug, Default, Clone, Copy)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl CacheControl {
    fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for v in headers.get_all(header::CACHE_CONTROL) {
            let Ok(v) = v.to_str() else { continue };
            for d in v.split(',').map(str::trim) {
                let (name, value) = match d.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (d, None),
                };
                let secs = || value.and_then(|v| v.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "max-age" => cc.max_age = secs(),
                    "s-maxage" => cc.s_maxage = secs(),
                    _ => {}
                }
            }
        }
        // HTTP/1.0 clients.
        if headers
            .get(header::PRAGMA)
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"no-cache"))
            && !headers.contains_key(header::CACHE_CONTROL)
        {
            cc.no_cache = true;
        }
        cc
    }
}

/// The process-wide response store: cheap to clone.
///
/// `quick_cache` rather than `moka`: a policy that stores on every miss pays an insert
/// per request, and moka's (a write-op queue, housekeeping run inline, epoch-based
/// reclamation) cost about 0.6 µs of a 15 µs request in `make bench`; quick_cache's is
/// a hash-table insert under one shard's lock. TTLs are checked on read (see
/// [`ResponseCache::get`]), which moka would have done with a timer per entry.
#[derive(Clone)]
pub struct ResponseCache {
    /// Sharded, each shard behind its own lock: the one shared write of a cached rule.
    cache: Arc<quick_cache::sync::Cache<Key, Arc<Entry>, ByWeight>>,
    /// Keys being fetched, for miss collapsing: followers wait until the sender drops.
    filling: Arc<FillLocks>,
}

/// Keys being fetched, in shards by key hash: misses of different keys on different
/// workers rarely take the same lock, and each hold is one map operation.
#[derive(Debug)]
struct FillLocks {
    shards: Box<[Mutex<FillShard>]>,
}

/// Keys being fetched, with what followers wait on.
type FillShard = FxHashMap<Key, Arc<Notify>>;

/// Shards of [`FillLocks`]: a few per core of a large machine.
const FILL_SHARDS: usize = 64;

impl Default for FillLocks {
    fn default() -> FillLocks {
        FillLocks {
            shards: (0..FILL_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl FillLocks {
    /// The shard of `key`, locked. The key is hashed here and again by the shard's map
    /// (a few ns on a miss that will store; not worth a map keyed by a carried hash).
    fn lock(&self, key: &Key) -> std::sync::MutexGuard<'_, FillShard> {
        use std::hash::BuildHasher;
        let h = rustc_hash::FxBuildHasher.hash_one(key);
        self.shards[(h as usize) % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("ResponseCache")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish()
    }
}

/// An entry's weight, computed once when stored (the store asks for it as it evicts).
#[derive(Clone, Debug)]
struct ByWeight;

impl quick_cache::Weighter<Key, Arc<Entry>> for ByWeight {
    fn weight(&self, _: &Key, entry: &Arc<Entry>) -> u64 {
        u64::from(entry.weight)
    }
}

/// Bytes per shard of the store at least: a shard holds whole entries, so one can be no
/// larger than its shard (the default `maxEntryBytes` is 1 MiB).
const MIN_SHARD_BYTES: u64 = 16 * 1024 * 1024;
/// Expected bytes per entry, to size the store's bookkeeping of recent evictions.
const TYPICAL_ENTRY_BYTES: u64 = 4 * 1024;

/// The default `--cache-capacity`: 256 MiB.
pub const DEFAULT_CAPACITY: u64 = 256 * 1024 * 1024;

impl ResponseCache {
    /// A store of at most `capacity` bytes (bodies, headers and keys).
    pub fn new(capacity: u64) -> ResponseCache {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let by_size = usize::try_from(capacity / MIN_SHARD_BYTES).unwrap_or(usize::MAX);
        let shards = (cores * 4).min(by_size).max(1).next_power_of_two();
        let items = usize::try_from(capacity / TYPICAL_ENTRY_BYTES).unwrap_or(usize::MAX);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items.clamp(64, 1 << 20))
            .weight_capacity(capacity)
            .build();
        let cache = match options {
            Ok(options) => quick_cache::sync::Cache::with_options(
                options,
                ByWeight,
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            // The options above are always valid; this keeps a default store if not.
            Err(_) => quick_cache::sync::Cache::with_weighter(64, capacity, ByWeight),
        };
        ResponseCache {
            cache: Arc::new(cache),
            filling: Arc::default(),
        }
    }

    /// A fresh entry for `key` no older than `max_age` seconds.
    pub fn get(&self, key: &Key, max_age: Option<u64>) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        // Each entry has its own TTL, checked here rather than by a timer per entry in
        // the store (which costs every insert): an expired entry is a miss, whose fill
        // replaces it; one never asked for again ages out like any cold entry.
        if entry.stored.elapsed() >= entry.ttl {
            return None;
        }
        if max_age.is_some_and(|max| entry.age() > max) {
            return None;
        }
        Some(entry)
    }

    /// Becomes the one request fetching `key` (`Ok`, holding the guard until its
    /// response is stored or dropped), or gets what completes when the one fetching it
    /// is done (`Err`).
    pub fn begin_fill(&self, key: &Key) -> Result<Fill, Pin<Box<OwnedNotified>>> {
        let mut filling = self.filling.lock(key);
        if let Some(done) = filling.get(key) {
            // Registered before the lock is let go: the leader's wake-up, which comes
            // after it took the key out under this lock, cannot be missed.
            let mut waiting = Box::pin(done.clone().notified_owned());
            waiting.as_mut().enable();
            return Err(waiting);
        }
        let done = Arc::new(Notify::new());
        filling.insert(key.clone(), done.clone());
        Ok(Fill {
            key: key.clone(),
            filling: self.filling.clone(),
            done,
        })
    }

    /// Stores `entry` under `key`, replacing any entry there.
    fn insert(&self, key: Key, mut entry: Entry) {
        entry.weight = entry.weight(&key);
        self.cache.insert(key, Arc::new(entry));
    }

    /// Evicts every entry of `route` (`namespace/name`), or every entry.
    pub fn purge(&self, route: Option<&str>) -> Result<(), String> {
        match route {
            None => self.cache.clear(),
            Some(route) => self.cache.retain(|k, _| &*k.route != route),
        }
        Ok(())
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (u64, u64) {
        (self.cache.len() as u64, self.cache.weight())
    }
}

/// The right to fetch a key for everyone waiting on it; dropping it wakes them.
#[derive(Debug)]
pub struct Fill {
    key: Key,
    filling: Arc<FillLocks>,
    done: Arc<Notify>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.filling.lock(&self.key).remove(&self.key);
        self.done.notify_waiters();
    }
}

/// Waits until the fill `waiting` belongs to is over, at most `timeout`.
pub async fn wait_for_fill(waiting: Pin<Box<OwnedNotified>>, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, waiting).await;
}

// === phases ===

/// A miss whose response is to be stored: the key, and the right to fetch it for every
/// request of the same key that waits (dropped once the response is stored or not).
pub(crate) struct Filling<'p> {
    policy: &'p CachePolicy,
    key: Key,
    _fill: Option<Fill>,
}

/// Phase 4, cache lookup, for upstream-bound and aggregate rules (the others answer
/// without one): a
/// hit answers here; a miss may wait for a fetch of the same key already under way.
pub(crate) fn lookup<'a, 't>(
    cx: &'a mut Ctx<'t>,
    parts: &Parts,
    routed: &Routed<'_>,
) -> Step<'a, Phase<Option<Filling<'t>>>> {
    let Some((rule, c)) = cx.rule.zip(cx.policies().and_then(|p| p.cache.as_ref())) else {
        return Step::now(Ok(ControlFlow::Continue(None)));
    };
    // What the gateway answers itself (respond, redirect) is not cached; upstream and
    // aggregate answers are.
    if !matches!(
        rule.spec().action,
        gatehouse_table::Action::Backends { .. } | gatehouse_table::Action::Aggregate(_)
    ) {
        return Step::now(Ok(ControlFlow::Continue(None)));
    }
    let found = c.lookup(
        &parts.method,
        &parts.headers,
        routed.host.as_str(),
        &routed.path,
        routed.target.query(),
        cx.identity.as_ref().and_then(|i| i.consumer.as_deref()),
    );
    let (key, read, max_age, store) = match found {
        Lookup::Bypass => {
            cx.decor.cache = Some(BYPASS);
            cx.count(Counter::CacheBypass);
            return Step::now(Ok(ControlFlow::Continue(None)));
        }
        Lookup::Cacheable {
            key,
            read,
            max_age,
            store,
        } => (key, read, max_age, store),
    };
    let head = parts.method == Method::HEAD;
    if read && let Some(entry) = c.store().get(&key, max_age) {
        return Step::now(Ok(ControlFlow::Break(hit(cx, &entry, head))));
    }
    if !store {
        return Step::now(Ok(ControlFlow::Continue(miss(cx, None))));
    }
    let fill = match c.store().begin_fill(&key) {
        Ok(fill) => Some(fill),
        Err(under_way) if read => {
            // Another request is fetching this key: wait for it, then read its entry.
            let wait = Duration::from_millis(rule.spec().timeout_ms.unwrap_or(30_000));
            return Step::later(async move {
                wait_for_fill(under_way, wait).await;
                if let Some(entry) = c.store().get(&key, max_age) {
                    return Ok(ControlFlow::Break(hit(cx, &entry, head)));
                }
                let filling = Filling {
                    policy: c,
                    key,
                    _fill: None,
                };
                Ok(ControlFlow::Continue(miss(cx, Some(filling))))
            });
        }
        Err(_) => None,
    };
    let filling = Filling {
        policy: c,
        key,
        _fill: fill,
    };
    Step::now(Ok(ControlFlow::Continue(miss(cx, Some(filling)))))
}

/// Records a miss; passes `filling` on.
fn miss<'t>(cx: &mut Ctx<'t>, filling: Option<Filling<'t>>) -> Option<Filling<'t>> {
    cx.decor.cache = Some(MISS);
    cx.count(Counter::CacheMiss);
    filling
}

fn hit(cx: &mut Ctx<'_>, entry: &Entry, head: bool) -> Response<Body> {
    cx.decor.cache = Some(HIT);
    cx.count(Counter::CacheHit);
    answer(entry, head)
}

/// Phase 6, cache store (when the lookup began a fill), before waiting misses of the
/// same key are woken.
pub(crate) fn store(
    filling: Filling<'_>,
    resp: Response<Body>,
) -> Step<'_, Result<Response<Body>, GatewayError>> {
    Step::later(async move {
        // Taken apart in here: the fill guard must live until the entry is stored
        // (a block capturing only the fields it uses would drop it at once).
        let Filling { policy, key, _fill } = filling;
        Ok(policy.store_response(key, resp).await?.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cache: {ttl: 60s}` as the compiler lowers it (defaults applied).
    fn config() -> table::Cache {
        table::Cache {
            ttl_ms: 60_000,
            methods: vec!["GET".into(), "HEAD".into()],
            statuses: vec![200],
            vary: Vec::new(),
            per_consumer: false,
            respect_cache_control: true,
            max_entry_bytes: 1024 * 1024,
        }
    }

    fn policy(c: table::Cache) -> CachePolicy {
        CachePolicy::prepare(&c, "ns/r", "tag", ResponseCache::new(1 << 20)).expect("prepares")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn key_of(l: Lookup) -> Key {
        match l {
            Lookup::Cacheable { key, .. } => key,
            Lookup::Bypass => panic!("bypassed"),
        }
    }

    #[test]
    fn keys_cover_method_class_path_query_and_vary() {
        let p = policy(table::Cache {
            vary: vec!["accept-language".into()],
            ..config()
        });
        let none = HeaderMap::new();
        let get = p.lookup(&Method::GET, &none, "H", "/a", Some("x=1"), None);
        let head = p.lookup(&Method::HEAD, &none, "h", "/a", Some("x=1"), None);
        let Lookup::Cacheable { store, .. } = &head else {
            panic!("HEAD is cacheable")
        };
        assert!(!store, "HEAD responses have no body to store");
        assert_eq!(key_of(get), key_of(head));
        let fr = p.lookup(
            &Method::GET,
            &headers(&[("accept-language", "fr")]),
            "h",
            "/a",
            Some("x=1"),
            None,
        );
        let other_query = p.lookup(&Method::GET, &none, "h", "/a", Some("x=2"), None);
        let plain = key_of(p.lookup(&Method::GET, &none, "h", "/a", Some("x=1"), None));
        assert_ne!(key_of(fr), plain);
        assert_ne!(key_of(other_query), plain);
        assert!(matches!(
            p.lookup(&Method::POST, &none, "h", "/a", None, None),
            Lookup::Bypass
        ));
        assert!(matches!(
            p.lookup(
                &Method::GET,
                &headers(&[("authorization", "Bearer x")]),
                "h",
                "/a",
                None,
                None
            ),
            Lookup::Bypass
        ));
        assert!(matches!(
            p.lookup(
                &Method::GET,
                &headers(&[("cache-control", "no-store")]),
                "h",
                "/a",
                None,
                None
            ),
            Lookup::Bypass
        ));
        let Lookup::Cacheable { read, .. } = p.lookup(
            &Method::GET,
            &headers(&[("cache-control", "no-cache")]),
            "h",
            "/a",
            None,
            None,
        ) else {
            panic!("no-cache is cacheable")
        };
        assert!(!read);
    }

    #[test]
    fn upstream_cache_control_and_vary_decide_storage() {
        let p = policy(table::Cache {
            vary: vec!["accept-language".into()],
            max_entry_bytes: 10,
            ..config()
        });
        let ok = StatusCode::OK;
        assert_eq!(
            p.storable(ok, &HeaderMap::new(), Some(3)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.storable(
                ok,
                &headers(&[("cache-control", "public, max-age=5")]),
                None
            ),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.storable(
                ok,
                &headers(&[("cache-control", "s-maxage=7, max-age=5")]),
                None
            ),
            Some(Duration::from_secs(7))
        );
        for cc in ["no-store", "private", "no-cache", "max-age=0"] {
            assert_eq!(
                p.storable(ok, &headers(&[("cache-control", cc)]), None),
                None,
                "{cc}"
            );
        }
        assert_eq!(
            p.storable(ok, &headers(&[("set-cookie", "a=b")]), None),
            None
        );
        assert_eq!(
            p.storable(ok, &headers(&[("vary", "Accept-Language")]), None),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.storable(ok, &headers(&[("vary", "Accept-Encoding")]), None),
            None
        );
        assert_eq!(p.storable(ok, &HeaderMap::new(), Some(11)), None);
        assert_eq!(
            p.storable(StatusCode::NOT_FOUND, &HeaderMap::new(), None),
            None
        );
        let ignoring = policy(table::Cache {
            respect_cache_control: false,
            ..config()
        });
        assert_eq!(
            ignoring.storable(ok, &headers(&[("cache-control", "no-store")]), None),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn stored_headers_keep_every_value_in_order_without_the_read_buffer() {
        let head = Bytes::from_static(b"text/plain|a|b|v");
        let mut h = HeaderMap::new();
        let part = |r: std::ops::Range<usize>| {
            HeaderValue::from_maybe_shared(head.slice(r)).expect("value")
        };
        h.insert(header::CONTENT_TYPE, part(0..10));
        h.append("x-multi", part(11..12));
        h.append("x-multi", part(13..14));
        h.insert(header::VARY, part(15..16));
        let stored = compact(&h);
        assert_eq!(stored, h);
        let multi: Vec<_> = stored.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        let inside = |v: &HeaderValue| {
            let p = v.as_bytes().as_ptr() as usize;
            let start = head.as_ptr() as usize;
            (start..start + head.len()).contains(&p)
        };
        assert!(
            stored.values().all(|v| !inside(v)),
            "a stored value still points into the read buffer"
        );
    }

    #[test]
    fn the_store_stays_within_its_capacity() {
        let store = ResponseCache::new(20_000);
        for i in 0..50 {
            let key = Key::new("ns/r".into(), format!("k{i}").into());
            let entry = Entry {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from(vec![b'x'; 1000]),
                stored: Instant::now(),
                initial_age: 0,
                ttl: Duration::from_secs(60),
                weight: 0,
            };
            store.insert(key, entry);
        }
        let (entries, bytes) = store.usage();
        assert!(bytes <= 20_000, "{bytes} bytes held");
        assert!((1..50).contains(&entries), "{entries} entries held");
    }
}
