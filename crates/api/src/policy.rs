//! `Policies`: one struct used in an ApiRoute's `policies`, a rule's `policies`, and as
//! the whole `spec` of an `ApiPolicy`. Layering (weakest first: route `policyRefs`,
//! route `policies`, rule `policyRefs`, rule `policies`) replaces whole top-level fields.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, SecretKeyRef, any_object_nullable_schema};

/// A named, reusable set of policies (`ApiPolicy`), and the policy block of routes and rules.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "ApiPolicy",
    namespaced,
    status = "ApiPolicyStatus",
    shortname = "ap",
    category = "gatehouse",
    printcolumn = r#"{"name":"Attached","type":"integer","jsonPath":".status.attachedRoutes"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Request-rate limits (rate limiting and throttling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Concurrency limit with a bounded queue; 503 beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyLimit>,
    /// Who the caller is; failure is 401 with `WWW-Authenticate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// What the caller may do, after authentication; failure is 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Cross-origin resource sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Response caching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// Changes to the request before it goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_transform: Option<RequestTransform>,
    /// Changes to the response before it goes to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_transform: Option<ResponseTransform>,
    /// Request and response validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Web application firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<Waf>,
    /// How errors are formatted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorPolicy>,
}

/// Observed state of an ApiPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiPolicyStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of accepted routes that reference this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_routes: Option<u32>,
    /// `Accepted` (False: Invalid, UnsupportedValue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

// === rate and concurrency ===

/// Rate limiting and throttling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.maxDelay) || (has(self.mode) && self.mode == 'Delay')", "message": "maxDelay applies only to mode Delay"},
    {"rule": "!has(self.failureMode) || (has(self.scope) && self.scope == 'Global')", "message": "failureMode applies only to scope Global"}
]))]
pub struct RateLimit {
    /// Every limit must allow the request.
    #[schemars(length(min = 1, max = 8))]
    pub limits: Vec<Limit>,
    /// What a bucket is counted per. Default `ClientIp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RateLimitKey>,
    /// `Local` (per replica) or `Global` (shared through Redis). Default `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RateLimitScope>,
    /// `Reject` at once, or `Delay` up to `maxDelay`. Default `Reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RateLimitMode>,
    /// Longest wait in `Delay` mode. Default `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
    /// `Global` only, when Redis is unreachable or slow. Default `Open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<FailureMode>,
}

/// One limit: `requests` per `period`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// Requests allowed per period.
    #[schemars(range(min = 1))]
    pub requests: u64,
    /// The period.
    pub period: Duration,
}

/// What a rate-limit bucket is counted per.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.type == 'Header' || self.type == 'Claim') == has(self.name)", "message": "name is required by Header and Claim keys and allowed only with them"}
]))]
pub struct RateLimitKey {
    /// The key kind.
    #[serde(rename = "type")]
    pub kind: RateLimitKeyType,
    /// Header or claim name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The kinds of rate-limit key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RateLimitKeyType {
    /// The client IP address.
    #[default]
    ClientIp,
    /// The authenticated consumer.
    Consumer,
    /// A request header's value.
    Header,
    /// A JWT claim's value.
    Claim,
    /// One bucket for the whole route.
    Route,
}

/// Where rate-limit state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RateLimitScope {
    /// Per replica, in memory.
    #[default]
    Local,
    /// Shared by every replica through Redis.
    Global,
}

/// What happens to a request over the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RateLimitMode {
    /// 429 at once.
    #[default]
    Reject,
    /// Wait up to `maxDelay` for capacity, then 429.
    Delay,
}

/// Behaviour when Redis cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureMode {
    /// Allow the request and count it in a metric.
    #[default]
    Open,
    /// Answer 503.
    Closed,
}

/// Throttling by concurrency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyLimit {
    /// Requests served at once.
    #[schemars(range(min = 1))]
    pub max_in_flight: u32,
    /// Requests that may wait for a slot. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Longest wait in the queue. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<Duration>,
}

// === authentication and authorization ===

/// Authentication: any configured method that succeeds authenticates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.apiKey) || has(self.jwt) || has(self.basic) || has(self.external)", "message": "authentication needs at least one of apiKey, jwt, basic, external"}
]))]
pub struct Authentication {
    /// API keys from consumer Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// HTTP Basic with consumers' bcrypt password hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Forward authentication to an external service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAuth>,
    /// Let unauthenticated requests pass, without a consumer. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// API key authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// Header carrying the key. Default `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Query parameter carrying the key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// Narrows the consumer Secrets that count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_selector: Option<LabelSelector>,
}

/// A label selector over consumer Secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// JWT authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.jwksUri) || has(self.jwksSecretRef) || has(self.hmacSecretRef)", "message": "jwt needs keys: jwksUri, jwksSecretRef or hmacSecretRef"},
    {"rule": "!(has(self.jwksUri) && has(self.jwksSecretRef))", "message": "jwksUri and jwksSecretRef are mutually exclusive"}
]))]
pub struct JwtAuth {
    /// Required `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must contain one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// JWKS fetched and refreshed by the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Static JWKS from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_secret_ref: Option<SecretKeyRef>,
    /// HMAC secret; HS256/384/512 are accepted only with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<SecretKeyRef>,
    /// PEM CA certificates that verify an `https` `jwksUri` (instead of the public web
    /// roots): a Secret key holding one or more `CERTIFICATE` blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ca_secret_ref: Option<SecretKeyRef>,
    /// Allowed algorithms. Default `[RS256, ES256]` (plus HS256 with `hmacSecretRef`).
    /// `none` is never accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Allowed clock skew for `exp` and `nbf`. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<Duration>,
    /// Where the token is read. Default: Bearer in `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_from: Option<TokenFrom>,
    /// Claims copied to upstream request headers: claim name → header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forward_claims: BTreeMap<String, String>,
}

/// Where a JWT is read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenFrom {
    /// Header (Bearer scheme for `Authorization`). Default `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Cookie name; empty: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Query parameter; empty: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
}

/// HTTP Basic authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// Narrows the consumer Secrets that count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_selector: Option<LabelSelector>,
}

/// Forward authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// The check endpoint; 2xx allows, anything else denies.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Request headers sent to the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_headers: Vec<String>,
    /// Headers copied from the check's response onto the upstream request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_headers: Vec<String>,
    /// Timeout of the check. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Authorization rules; all given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// Consumers allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
    /// Consumer groups or JWT `groups` claim values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Claims that must contain all listed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRequirement>,
}

/// A claim that must contain all listed values (array or space-separated string).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequirement {
    /// Claim name.
    pub name: String,
    /// Required values.
    #[schemars(length(min = 1))]
    pub values: Vec<String>,
}

// === CORS and cache ===

/// Cross-origin resource sharing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Origins allowed (`*` for any, without credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Methods allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Request headers allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Allow credentials. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// How long a preflight answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// Response caching.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// How long an entry is fresh.
    pub ttl: Duration,
    /// Methods cached. Default `[GET, HEAD]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Statuses cached. Default `[200]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// Request headers that are part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary: Vec<String>,
    /// Separate entries per consumer. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_consumer: Option<bool>,
    /// Honour upstream `no-store`/`private`/`max-age` and client `no-cache`. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respect_cache_control: Option<bool>,
    /// Largest body stored. Default 1048576.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_entry_bytes: Option<u64>,
}

// === transformation ===

/// Changes to the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestTransform {
    /// Header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderEdits>,
    /// Path rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// Host header sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Query edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryEdits>,
    /// JSON body edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyEdits>,
}

/// Changes to the response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTransform {
    /// Header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderEdits>,
    /// JSON body edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyEdits>,
}

/// Header edits; values may hold `${...}` templates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderEdits {
    /// Replace or create.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A path rewrite; exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.replacePrefixMatch) != has(self.replaceFullPath)", "message": "exactly one of replacePrefixMatch or replaceFullPath must be set"}
]))]
pub struct PathRewrite {
    /// Replace the matched Prefix/Template prefix with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
    /// Replace the whole path; `${...}` templates allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
}

/// Query edits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryEdits {
    /// Replace or create.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// JSON body edits (application/json only), keyed by JSON Pointer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BodyEdits {
    /// Pointer → value (strings may hold templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Pointers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Pointer → new pointer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
}

// === validation ===

/// Request and response validation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Request checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestValidation>,
    /// Response checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseValidation>,
}

/// Request checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestValidation {
    /// Allowed `Content-Type`s; else 415.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
    /// Largest body; else 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Headers that must be present; else 400.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_headers: Vec<String>,
    /// JSON Schema 2020-12 of the body; violations are 400 listing each failing pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_nullable_schema")]
    pub schema: Option<serde_json::Value>,
}

/// Response checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseValidation {
    /// JSON Schema 2020-12 of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_nullable_schema")]
    pub schema: Option<serde_json::Value>,
    /// `Enforce` (invalid body = 502) or `Report` (log + metric). Default `Enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ResponseValidationMode>,
}

/// What an invalid upstream response does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ResponseValidationMode {
    /// 502.
    #[default]
    Enforce,
    /// Log and count only.
    Report,
}

// === WAF ===

/// Web application firewall.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Waf {
    /// `Block` (403) or `Detect` (log + metric). Default `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WafMode>,
    /// Built-in rule families. Omitted: all six; `[]`: none (the CIDR rules or the
    /// Core Rule Set alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<WafRule>>,
    /// Request parts inspected. Default: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inspect: Vec<WafTarget>,
    /// Bytes of each part inspected. Default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_inspect_bytes: Option<u64>,
    /// When set, only these client addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<String>,
    /// Client addresses always denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_cidrs: Vec<String>,
    /// The OWASP Core Rule Set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_rule_set: Option<CoreRuleSet>,
}

/// WAF action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WafMode {
    /// 403.
    #[default]
    Block,
    /// Log and count only.
    Detect,
}

/// Built-in WAF rule families.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum WafRule {
    /// SQL injection.
    SqlInjection,
    /// Cross-site scripting.
    CrossSiteScripting,
    /// `../` and friends.
    PathTraversal,
    /// Shell command injection.
    CommandInjection,
    /// Known scanners' signatures.
    ScannerDetection,
    /// Malformed or smuggling-prone requests.
    ProtocolViolation,
}

/// Request parts the WAF inspects.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum WafTarget {
    /// The path.
    Path,
    /// The query string.
    Query,
    /// Header values.
    Headers,
    /// The body, up to `maxInspectBytes`.
    Body,
}

/// OWASP Core Rule Set settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.paranoiaLevel) || (self.paranoiaLevel >= 1 && self.paranoiaLevel <= 4)", "message": "paranoiaLevel must be between 1 and 4"},
    {"rule": "!has(self.anomalyThreshold) || self.anomalyThreshold >= 1", "message": "anomalyThreshold must be at least 1"}
]))]
pub struct CoreRuleSet {
    /// Evaluate the CRS. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// 1 to 4. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4))]
    pub paranoia_level: Option<u32>,
    /// Inbound anomaly score that blocks. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub anomaly_threshold: Option<u32>,
    /// False-positive tuning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<CrsExclusion>,
}

/// A CRS rule switched off, everywhere or on some paths.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrsExclusion {
    /// The CRS rule id.
    pub rule_id: u32,
    /// Path prefixes where it is off. Empty: everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

// === errors ===

/// Error formatting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPolicy {
    /// Format of gateway-generated errors. Default `Problem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ErrorFormat>,
    /// Upstream statuses whose bodies are replaced by the gateway's format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_upstream: Vec<u16>,
    /// Replace the body of every response with that status on the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ErrorOverride>,
}

/// Error body format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ErrorFormat {
    /// `application/problem+json` (RFC 9457).
    #[default]
    Problem,
    /// `{"status": ..., "error": ..., "message": ..., "requestId": ...}`.
    Json,
    /// Plain text.
    Text,
}

/// A per-status body override.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.status >= 400 && self.status <= 599", "message": "status must be between 400 and 599"}
]))]
pub struct ErrorOverride {
    /// The status whose body is replaced.
    pub status: u16,
    /// `Content-Type` of the body. Default `text/plain; charset=utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body.
    pub body: String,
}
