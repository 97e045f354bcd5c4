//! # gatehouse-table: the compiled routing table
//!
//! The one value that crosses from the control plane to the data plane:
//!
//! ```text
//!  gatehouse-compiler ──Table──▶ (serde JSON over the admin socket / state dir) ──▶ proxy
//! ```
//!
//! It owns the shape of that value and nothing else. It knows no Kubernetes type (no
//! `ObjectMeta`, no `Secret`): names are plain `namespace/name` ids, durations are
//! milliseconds, defaults are already applied, references are resolved, and every
//! precedence fact is in the table: [`Match::rank`] and [`Route::created`]. The proxy
//! never has to re-derive a decision the compiler made.
//!
//! Every collection is ordered (vectors sorted by id, `BTreeMap`s), so the same inputs
//! serialize to byte-identical JSON. [`Table::hash`] identifies the content: the
//! compiler computes it as a SHA-256 over the canonical encoding that the derived
//! `Hash` impls give (see [`Table::hash_content`]).
//!
//! Policies travel lowered ([`policy`]): per rule, the effective value of each
//! top-level policy field after layering ([`RulePolicies`]), with the layer it came
//! from, in typed form: enums for closed sets, milliseconds, defaults applied, header
//! names lowercase, `${...}` templates parsed. The proxy builds its runtime objects
//! from them when it prepares a table, off the request path, and decodes nothing.
//!
//! Also here, because both sides of the push speak them: the controller↔proxy push
//! messages ([`push`]), and [`ByAddress`] keys, which know a shared object by its
//! identity while holding it (so an address is never mistaken for a newer object's).

pub mod auth;
pub mod docs;
pub mod identity;
pub mod patch;
pub mod policy;
pub mod push;
pub mod resilience;
pub mod schema;
pub mod text;

pub use identity::{Address, ByAddress};
pub use patch::{PatchError, TablePatch};
pub use policy::{
    BodyEdits, Cache, ConcurrencyLimit, Cors, ErrorFormat, ErrorOverride, ErrorPolicy, FailureMode,
    HeaderEdits, HeaderTemplate, Limit, PathRewrite, PolicyField, QueryEdits, RateLimit,
    RateLimitKey, RateLimitMode, RateLimitScope, RequestTransform, RequestValidation,
    ResponseTransform, ResponseValidation, ResponseValidationMode, RulePolicies, Sourced,
    Validation, Waf, WafMode, WafParts, WafRule,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Schema version of the table format itself; bumped on incompatible changes.
/// 2: [`Match::rank`] is the match's own precedence, and ties go to the older route
/// ([`Route::created`]); in 1 it was a position among all matches of the table.
/// 3: [`Rule::policies`] holds typed, lowered policy values ([`RulePolicies`]) instead
/// of each field's configuration as written (JSON); the load balancer, redirect scheme,
/// aggregate merge and error handling, and blocker reasons are enums.
/// 4: `authentication` and `authorization` are typed ([`auth`]); secret material is
/// [`auth::Sealed`], and a consumer's password hash is sealed too.
/// 5: [`Table::certificates`] and [`Route::tls`]: routes served over HTTPS.
/// 6: `waf` is typed ([`policy::Waf`]) and enforced.
/// 7: an upstream's `hashOn`, `retries`, `healthCheck` and `circuitBreaker` are typed
/// ([`resilience`]) and enforced.
/// 8: [`Route::docs`] and [`Rule::docs`] ([`docs`]): the API documentation.
pub const FORMAT: u32 = 8;

/// The whole compiled configuration.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// [`FORMAT`] of the producer.
    pub format: u32,
    /// Monotonic version assigned by whoever pushes the table (controller, file
    /// provider); 0 straight out of the compiler.
    pub version: u64,
    /// Lowercase hex SHA-256 of the table's content (everything but `version` and `hash`).
    pub hash: String,
    /// Routes, sorted by id. Shared: a table made from another (a patch, a compilation
    /// that reused unchanged routes) holds the same routes, not copies.
    pub routes: Vec<Arc<Route>>,
    /// Upstreams, sorted by id.
    pub upstreams: Vec<Upstream>,
    /// Consumers, sorted by id.
    pub consumers: Vec<Consumer>,
    /// The certificates routes serve HTTPS with, sorted by id; only valid ones (the
    /// compiler checked the chain, the key, and the dates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
}

/// A certificate and its private key, from a `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The Secret's `namespace/name`: what [`Route::tls`] names.
    pub id: String,
    /// The chain (`tls.crt`), PEM, leaf first.
    pub chain: String,
    /// The private key (`tls.key`), PEM: withheld where the table is shown or stored.
    pub key: auth::Sealed,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
}

impl Table {
    /// Feeds the content (everything but `version` and `hash`) to `state`, in a
    /// canonical, unambiguous encoding (lengths before sequences, terminated strings).
    pub fn hash_content<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.format.hash(state);
        self.routes.hash(state);
        self.upstreams.hash(state);
        self.consumers.hash(state);
        self.certificates.hash(state);
    }

    /// The table with every [`auth::Sealed`] value withheld (consumers' password hashes,
    /// JWT HMAC keys): what `/config` shows and what the proxy persists. Only the routes
    /// that hold a secret are copied.
    ///
    /// When anything is withheld, the copy's `hash` is `withheld-` and the SHA-256 of the
    /// withheld content: it names no table a controller compiled (so one that compares
    /// hashes pushes the whole table to a proxy restarted from its persisted copy), and,
    /// unlike the compiled hash, it cannot be used to test guesses of a secret.
    pub fn withhold_secrets(&self) -> Table {
        let mut out = self.clone();
        let mut withheld = false;
        for c in &mut out.certificates {
            c.key.withhold();
            withheld = true;
        }
        for u in &mut out.upstreams {
            if let Some(c) = u.tls.as_mut().and_then(|t| t.client_certificate.as_mut()) {
                c.key.withhold();
                withheld = true;
            }
        }
        for c in &mut out.consumers {
            if let Some(h) = &mut c.password_hash {
                h.withhold();
                withheld = true;
            }
        }
        for route in &mut out.routes {
            let holds = |r: &Route| {
                r.rules.iter().any(|rule| {
                    rule.policies
                        .authentication
                        .as_ref()
                        .and_then(|a| a.config.jwt.as_ref())
                        .is_some_and(|j| j.hmac_secret.is_some())
                })
            };
            if holds(route) {
                withheld = true;
                let r = Arc::make_mut(route);
                for rule in &mut r.rules {
                    if let Some(jwt) = rule
                        .policies
                        .authentication
                        .as_mut()
                        .and_then(|a| a.config.jwt.as_mut())
                        && let Some(k) = &mut jwt.hmac_secret
                    {
                        k.withhold();
                    }
                }
            }
        }
        if withheld {
            use sha2::Digest;
            struct Sha(sha2::Sha256);
            impl std::hash::Hasher for Sha {
                fn write(&mut self, bytes: &[u8]) {
                    self.0.update(bytes);
                }
                fn finish(&self) -> u64 {
                    0
                }
            }
            let mut h = Sha(sha2::Sha256::new());
            out.hash_content(&mut h);
            let digest = h.0.finalize();
            out.hash = digest.iter().fold(String::from("withheld-"), |mut s, b| {
                use std::fmt::Write;
                let _ = write!(s, "{b:02x}");
                s
            });
        }
        out
    }

    /// The upstream with this id.
    pub fn upstream(&self, id: &str) -> Option<&Upstream> {
        self.upstreams
            .binary_search_by(|u| u.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.upstreams[i])
    }

    /// The route with this id.
    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes
            .binary_search_by(|r| r.id.as_str().cmp(id))
            .ok()
            .map(|i| &*self.routes[i])
    }
}

// === routes ===

/// An accepted ApiRoute.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `namespace/name`.
    pub id: String,
    /// When the ApiRoute was created (Unix seconds); `None` for one without a creation
    /// time (a file in standalone mode). Among matches of equal [`Match::rank`], the
    /// older route's wins, then the one first by namespace, then name; `None` comes
    /// after every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Host patterns, lowercase: exact names and `*.suffix` wildcards. Empty: any host.
    pub hosts: Vec<String>,
    /// The rules, in the order written.
    pub rules: Vec<Rule>,
    /// API versioning (`spec.version`). The version's request condition is already
    /// compiled into the matches (a path prefix, a header or query condition); what is
    /// left here is what every response of the route carries, and what `explain` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// `spec.tls`: the [`Certificate`] (by id, the Secret's `namespace/name`) its hosts
    /// are served with on HTTPS. A route without it is not served on HTTPS, nor is one
    /// whose certificate is not in [`Table::certificates`] (it was found unusable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// `spec.docs`, for the API documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<docs::RouteDocs>,
}

/// The API version a route serves, with its response headers ready to send.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    /// The version's name, e.g. `v2`.
    pub name: String,
    /// How a request names it.
    pub scheme: VersionScheme,
    /// The route also serves requests that name no version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Every response carries `Deprecation: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// The `Sunset` header value (RFC 8594): an IMF-fixdate, converted by the compiler
    /// from the RFC 3339 instant written (`Wed, 30 Jun 2027 00:00:00 GMT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<String>,
    /// The request header that selects the version, added to every response's `Vary`
    /// (Header scheme: that header; MediaType: `Accept`), so caches key on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vary: Option<String>,
}

/// How a request names the API version.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionScheme {
    /// The first path segment (`/v2/users`), removed before the upstream.
    #[default]
    Path,
    /// A request header (`Api-Version: v2`).
    Header,
    /// A query parameter (`?version=v2`).
    Query,
    /// The `Accept` header: a `version=v2` parameter or a `vnd.*.v2` vendor type.
    MediaType,
}

/// One rule of a route.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Unique within the route (`rule-N` when not named).
    pub name: String,
    /// Any one selects the rule. Never empty: "match everything" is one [`Match`] with
    /// [`PathMatch::Any`].
    pub matches: Vec<Match>,
    /// What is done with a selected request.
    pub action: Action,
    /// Overrides the upstream request timeout, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Effective policies after layering, lowered.
    #[serde(default, skip_serializing_if = "RulePolicies::is_empty")]
    pub policies: RulePolicies,
    /// Why this rule cannot be served as written: a field the data plane does not
    /// implement yet, or a `policyRefs` entry that does not resolve. When non-empty the
    /// proxy answers 503 instead of serving the rule without them: nothing fails open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<Blocker>,
    /// `docs`, for the API documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<docs::RuleDocs>,
}

/// One reason a rule or upstream is not served.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// The object and field, e.g. `ApiRoute shop/users spec.rules[0].policies.cache`.
    pub field: String,
    /// The status reason.
    pub reason: BlockReason,
}

/// Why a rule or upstream is not served; serialized as the status reason it comes with.
/// Declared in alphabetical order, so blockers sort as their reasons read.
#[derive(
    Clone, Copy, Debug, Hash, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum BlockReason {
    /// A `policyRefs` entry names a missing or unaccepted ApiPolicy.
    PolicyNotFound,
    /// A referenced Secret is missing.
    SecretNotFound,
    /// A referenced certificate or CA Secret is unusable.
    InvalidCertificate,
    /// A field whose behaviour the data plane does not implement yet.
    #[default]
    UnsupportedValue,
}

impl BlockReason {
    /// The reason as serialized (`UnsupportedValue`).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::PolicyNotFound => "PolicyNotFound",
            BlockReason::SecretNotFound => "SecretNotFound",
            BlockReason::InvalidCertificate => "InvalidCertificate",
            BlockReason::UnsupportedValue => "UnsupportedValue",
        }
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compiled request condition.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// This match's own precedence, from the match alone: path kind (Exact, then
    /// Prefix and Template, then Regex), longer literal path, more conditions, carrying
    /// the route's API version; lower wins. Host specificity is applied before it (the
    /// router's host index); equal ranks go by the route's age ([`Route::created`],
    /// then namespace/name), then rule and match order. Because it depends on nothing
    /// else, a change to one route never changes another route.
    pub rank: u32,
    /// The path condition.
    pub path: PathMatch,
    /// Methods, uppercase, sorted. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions, names lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// Accept `%2F` / `%5C` in the path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_encoded_slashes: bool,
    /// Path versioning: the version prefix (`/v2`) this match's path starts with. It is
    /// removed from the path forwarded upstream; see [`Match::forwarded_path`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
}

impl Match {
    /// The path sent upstream for a normalized request path this match selected: the
    /// path itself, or without the version prefix when the match has one (`/v2/users/7`
    /// → `/users/7`, `/v2` → `/`). A path that does not start with the prefix (never
    /// the case for a path this match selected) is returned unchanged.
    pub fn forwarded_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let Some(rest) = self
            .strip_prefix
            .as_deref()
            .and_then(|prefix| path.strip_prefix(prefix))
        else {
            return Cow::Borrowed(path);
        };
        if rest.is_empty() {
            Cow::Borrowed("/")
        } else if rest.starts_with('/') {
            Cow::Borrowed(rest)
        } else {
            // Only a Regex that can match text not starting with `/` gets here
            // (`/v2(?:.*)` on `/v2x`); the upstream still gets a path.
            Cow::Owned(format!("/{rest}"))
        }
    }
}

/// A path condition, on the normalized path.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum PathMatch {
    /// Any path.
    #[default]
    Any,
    /// The whole path.
    Exact(String),
    /// Segment-aware prefix, without trailing slash (`/` matches everything).
    Prefix(String),
    /// A path template.
    Template(Template),
    /// An anchored regular expression (`regex` crate syntax, checked by the compiler).
    Regex(String),
}

/// A parsed path template: `/users/{id}/orders/{*rest}`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// The template as written.
    pub source: String,
    /// Its segments, in order.
    pub segments: Vec<Segment>,
    /// Name of a trailing `{*rest}` capture, which takes zero or more segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<String>,
}

/// One segment of a template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Captures one non-empty segment under this name.
    Param(String),
}

/// A header or query parameter condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatch {
    /// Header names are lowercase; query names as written.
    pub name: String,
    /// How the value is compared.
    pub kind: ValueMatchKind,
}

/// How a header or query value is compared.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum ValueMatchKind {
    /// Equal.
    Exact(String),
    /// Anchored full match.
    Regex(String),
    /// Present with any value.
    Present,
}

/// What a rule does with a request.
#[derive(Clone, Debug, Hash, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// Proxy to upstreams.
    Backends {
        /// Weighted upstreams.
        backends: Vec<BackendRef>,
        /// Shadow traffic.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mirror: Option<MirrorRef>,
    },
    /// Fan out and merge JSON.
    Aggregate(Aggregate),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Respond(Respond),
}

impl Default for Action {
    fn default() -> Self {
        Action::Respond(Respond::default())
    }
}

/// A weighted reference to an upstream.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Upstream id, `namespace/name`.
    pub upstream: String,
    /// Share of traffic; 0 sends none.
    pub weight: u32,
    /// The upstream does not exist (or is not accepted): its share is answered 503.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// Mirroring.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorRef {
    /// Upstream id.
    pub upstream: String,
    /// Share of requests mirrored, 0..=100.
    pub percent: u32,
    /// The upstream does not exist: nothing is mirrored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// Service aggregation.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    /// Calls made in parallel.
    pub calls: Vec<AggregateCall>,
    /// How the results are merged.
    pub merge: AggregateMerge,
    /// What a failed call does.
    pub on_error: AggregateOnError,
    /// Deadline in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// How aggregated results are merged.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregateMerge {
    /// `{"<call name>": <its body>, ...}`.
    #[default]
    Keyed,
    /// The bodies' objects deep-merged in call order.
    Deep,
}

/// What a failed aggregated call does.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregateOnError {
    /// 200, with the failed calls listed under `errors`.
    #[default]
    Partial,
    /// 502.
    Fail,
}

/// One aggregated call.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateCall {
    /// Result key.
    pub name: String,
    /// Upstream id.
    pub upstream: String,
    /// Whether the upstream is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    /// Method.
    pub method: String,
    /// Path and query template.
    pub path: Vec<TemplatePart>,
}

/// A redirect.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// The scheme; absent keeps the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<RedirectScheme>,
    /// Host name; absent keeps the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port; absent keeps the request's (or the scheme's default when the scheme changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path template; absent keeps the request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<TemplatePart>>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// The scheme of a redirect target.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectScheme {
    /// `http`.
    #[default]
    Http,
    /// `https`.
    Https,
}

impl RedirectScheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectScheme::Http => "http",
            RedirectScheme::Https => "https",
        }
    }

    /// The port a URL of this scheme leaves out.
    pub fn default_port(self) -> u16 {
        match self {
            RedirectScheme::Http => 80,
            RedirectScheme::Https => 443,
        }
    }
}

/// A fixed response.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Respond {
    /// Status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: String,
}

/// A piece of a `${...}` template string.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// `${path.<name>}`.
    PathParam(String),
    /// `${query.<name>}`.
    Query(String),
    /// `${header.<name>}` (name lowercase).
    Header(String),
    /// `${claim.<name>}`.
    Claim(String),
    /// `${consumer}`.
    Consumer,
    /// `${clientIp}`.
    ClientIp,
    /// `${requestId}`.
    RequestId,
}

// === upstreams ===

/// An accepted Upstream.
#[derive(Clone, Debug, Hash, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// `namespace/name`.
    pub id: String,
    /// Protocol to the servers.
    pub protocol: Protocol,
    /// Where the endpoints come from.
    pub discovery: Discovery,
    /// The endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
    /// Timeouts, defaults applied.
    pub timeouts: Timeouts,
    /// Load-balancing policy.
    pub load_balancer: LoadBalancer,
    /// What `RingHash` and `Maglev` hash; `None` for the other balancers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<resilience::HashOn>,
    /// Retries; `None`: one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<resilience::Retries>,
    /// Health checking; `None`: every endpoint the table names takes traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<resilience::HealthCheck>,
    /// The circuit breaker; `None`: no limits, never open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<resilience::CircuitBreaker>,
    /// TLS to the servers; `None`: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Fields the data plane does not implement yet; when non-empty every request to
    /// this upstream is answered 503.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<Blocker>,
}

/// How the proxy speaks TLS to an upstream's servers.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// The name sent in SNI and verified against the servers' certificates; `None`:
    /// no SNI, and the certificate is verified for the endpoint's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM CA certificates the servers' chains must lead to; `None`: the webpki roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The client certificate presented (mutual TLS); its key is withheld where the
    /// table is shown or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<Certificate>,
    /// The servers' certificates are not verified at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// How an endpoint is picked for a request.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancer {
    /// Each endpoint in turn, weighted.
    #[default]
    RoundRobin,
    /// The less loaded of two random endpoints (power of two choices).
    LeastRequest,
    /// A random endpoint, weighted.
    Random,
    /// Consistent hashing on a ring.
    RingHash,
    /// Maglev consistent hashing.
    Maglev,
    /// Peak exponentially-weighted moving average of latency.
    PeakEwma,
}

/// Protocol to the servers.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    #[serde(rename = "HTTP1")]
    Http1,
    /// HTTP/2 (h2c with prior knowledge in plaintext).
    #[serde(rename = "HTTP2")]
    Http2,
}

/// Where endpoints come from.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Discovery {
    /// Written in the Upstream.
    #[default]
    Static,
    /// A Service's EndpointSlices.
    Service {
        /// Service name.
        name: String,
        /// The port as written (number or name).
        port: String,
    },
}

/// One server.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// IP address or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Relative weight, 1..=1000.
    pub weight: u32,
    /// False for serving-but-terminating endpoints used only because none is ready.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ready: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Upstream timeouts in milliseconds.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Connect.
    pub connect_ms: u64,
    /// Whole request, retries included.
    pub request_ms: u64,
    /// Idle pooled connection.
    pub idle_ms: u64,
}

// === consumers ===

/// A consumer, from a Secret.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// `namespace/name` of the consumer (its name is the label value).
    pub id: String,
    /// Namespace; a consumer counts in its own namespace only.
    pub namespace: String,
    /// Consumer name.
    pub name: String,
    /// Labels of its Secret, for `consumerSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Lowercase hex SHA-256 of the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_sha256: Option<String>,
    /// Basic-auth user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// bcrypt password hash (sealed: withheld where the table is shown or persisted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<auth::Sealed>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let table = Table {
            format: FORMAT,
            routes: vec![Arc::new(Route {
                id: "shop/users".into(),
                created: Some(1_790_000_000),
                hosts: vec!["api.example.com".into()],
                tls: Some("shop/api-example-tls".into()),
                docs: None,
                rules: vec![Rule {
                    name: "get-user".into(),
                    matches: vec![Match {
                        rank: 3,
                        path: PathMatch::Template(Template {
                            source: "/users/{id}".into(),
                            segments: vec![
                                Segment::Literal("users".into()),
                                Segment::Param("id".into()),
                            ],
                            rest: None,
                        }),
                        methods: vec!["GET".into()],
                        ..Default::default()
                    }],
                    action: Action::Backends {
                        backends: vec![BackendRef {
                            upstream: "shop/users".into(),
                            weight: 1,
                            missing: false,
                        }],
                        mirror: None,
                    },
                    ..Default::default()
                }],
                version: Some(Version {
                    name: "v2".into(),
                    scheme: VersionScheme::Header,
                    default: true,
                    deprecated: true,
                    sunset: Some("Wed, 30 Jun 2027 00:00:00 GMT".into()),
                    vary: Some("Api-Version".into()),
                }),
            })],
            upstreams: vec![Upstream {
                id: "shop/users".into(),
                endpoints: vec![Endpoint {
                    host: "10.0.0.1".into(),
                    port: 8080,
                    weight: 1,
                    ready: true,
                }],
                ..Default::default()
            }],
            certificates: vec![Certificate {
                id: "shop/api-example-tls".into(),
                chain: "-----BEGIN CERTIFICATE-----\n...".into(),
                key: auth::Sealed::new("-----BEGIN PRIVATE KEY-----\n..."),
                not_after: 1_900_000_000,
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&table).expect("serializes");
        let back: Table = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, table);
        assert!(back.upstream("shop/users").is_some());
        assert!(back.route("shop/users").is_some());
        assert!(back.route("shop/nope").is_none());
    }

    #[test]
    fn forwarded_paths_lose_the_version_prefix() {
        let versioned = Match {
            path: PathMatch::Prefix("/v2".into()),
            strip_prefix: Some("/v2".into()),
            ..Default::default()
        };
        assert_eq!(versioned.forwarded_path("/v2/users/7"), "/users/7");
        assert_eq!(versioned.forwarded_path("/v2"), "/");
        assert_eq!(versioned.forwarded_path("/v2/"), "/");
        assert_eq!(versioned.forwarded_path("/v2x"), "/x");
        assert_eq!(versioned.forwarded_path("/other"), "/other");
        let plain = Match::default();
        assert_eq!(plain.forwarded_path("/v2/users"), "/v2/users");
    }

    #[test]
    fn withheld_tables_hold_no_sealed_value_and_do_not_claim_the_compiled_hash() {
        let jwt_rule = |secret: &str| Rule {
            name: "r".into(),
            policies: policy::RulePolicies {
                authentication: Some(policy::Sourced {
                    source: "rule".into(),
                    config: auth::Authentication {
                        jwt: Some(auth::JwtAuth {
                            hmac_secret: Some(auth::Sealed::new(secret)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let plain = Arc::new(Route {
            id: "ns/plain".into(),
            ..Default::default()
        });
        let table = Table {
            format: FORMAT,
            hash: "abc".into(),
            routes: vec![
                Arc::new(Route {
                    id: "ns/jwt".into(),
                    rules: vec![jwt_rule("hmac-key-1")],
                    ..Default::default()
                }),
                plain.clone(),
            ],
            consumers: vec![Consumer {
                id: "ns/alice".into(),
                password_hash: Some(auth::Sealed::new("$2b$04$hash")),
                ..Default::default()
            }],
            certificates: vec![Certificate {
                id: "ns/tls".into(),
                chain: "CHAIN".into(),
                key: auth::Sealed::new("PRIVATE-KEY-PEM"),
                not_after: 0,
            }],
            ..Default::default()
        };
        let shown = table.withhold_secrets();
        let text = serde_json::to_string(&shown).expect("serializes");
        assert!(
            !text.contains("hmac-key-1")
                && !text.contains("$2b$04$hash")
                && !text.contains("PRIVATE-KEY-PEM"),
            "{text}"
        );
        assert!(text.contains("CHAIN"), "the chain is public: {text}");
        assert!(shown.hash.starts_with("withheld-") && shown.hash.len() == 9 + 64);
        // The withheld hash depends on nothing withheld: another key, the same hash.
        let mut other = table.clone();
        Arc::make_mut(&mut other.routes[0]).rules = vec![jwt_rule("hmac-key-2")];
        assert_eq!(other.withhold_secrets().hash, shown.hash);
        // The original keeps its secrets; a route without one is shared, not copied.
        assert!(
            serde_json::to_string(&table)
                .expect("serializes")
                .contains("hmac-key-1")
        );
        assert!(Arc::ptr_eq(&shown.routes[1], &plain));
        // Nothing to withhold: the same hash.
        let open = Table {
            hash: "def".into(),
            ..Default::default()
        };
        assert_eq!(open.withhold_secrets().hash, "def");
    }
}
