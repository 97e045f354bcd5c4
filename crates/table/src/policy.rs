//! Policies as the data plane enforces them: the effective value of each top-level
//! policy field of a rule after layering, lowered by the compiler.
//!
//! Lowered means: durations are milliseconds, every default is applied, closed sets
//! are enums, header names are lowercase where the proxy compares them, and `${...}`
//! templates are parsed into [`TemplatePart`]s. The proxy builds its runtime objects
//! (header values, compiled schemas, buckets) from these values and decodes nothing.
//! What stays data is the user's data: a JSON Schema document.
//!
//! A field the data plane would not enforce never gets here: the compiler blocks the
//! rule (`Rule::blocked`) and the proxy answers it 503.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TemplatePart;
pub use crate::auth::{Authentication, Authorization};

/// The top-level policy fields, in request-path order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyField {
    /// `waf`
    Waf,
    /// `cors`
    Cors,
    /// `authentication`
    Authentication,
    /// `authorization`
    Authorization,
    /// `rateLimit`
    RateLimit,
    /// `concurrencyLimit`
    ConcurrencyLimit,
    /// `validation`
    Validation,
    /// `cache`
    Cache,
    /// `requestTransform`
    RequestTransform,
    /// `responseTransform`
    ResponseTransform,
    /// `errors`
    Errors,
}

impl PolicyField {
    /// Every field, in request-path order.
    pub const ALL: [PolicyField; 11] = [
        PolicyField::Waf,
        PolicyField::Cors,
        PolicyField::Authentication,
        PolicyField::Authorization,
        PolicyField::RateLimit,
        PolicyField::ConcurrencyLimit,
        PolicyField::Validation,
        PolicyField::Cache,
        PolicyField::RequestTransform,
        PolicyField::ResponseTransform,
        PolicyField::Errors,
    ];

    /// The field's name in the resources (`rateLimit`).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyField::Waf => "waf",
            PolicyField::Cors => "cors",
            PolicyField::Authentication => "authentication",
            PolicyField::Authorization => "authorization",
            PolicyField::RateLimit => "rateLimit",
            PolicyField::ConcurrencyLimit => "concurrencyLimit",
            PolicyField::Validation => "validation",
            PolicyField::Cache => "cache",
            PolicyField::RequestTransform => "requestTransform",
            PolicyField::ResponseTransform => "responseTransform",
            PolicyField::Errors => "errors",
        }
    }
}

/// The effective policies of a rule after layering: per top-level field, its lowered
/// value and the layer it came from. Unset fields are `None`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulePolicies {
    /// `waf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<Sourced<Waf>>,
    /// `cors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Sourced<Cors>>,
    /// `authentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Sourced<Authentication>>,
    /// `authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Sourced<Authorization>>,
    /// `rateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Sourced<RateLimit>>,
    /// `concurrencyLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<Sourced<ConcurrencyLimit>>,
    /// `validation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Sourced<Validation>>,
    /// `cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Sourced<Cache>>,
    /// `requestTransform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_transform: Option<Sourced<RequestTransform>>,
    /// `responseTransform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_transform: Option<Sourced<ResponseTransform>>,
    /// `errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Sourced<ErrorPolicy>>,
}

impl RulePolicies {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.sources().is_empty()
    }

    /// The fields that are set and the layer each came from, in request-path order.
    pub fn sources(&self) -> Vec<(PolicyField, &str)> {
        fn src<T>(s: &Option<Sourced<T>>) -> Option<&str> {
            s.as_ref().map(|s| s.source.as_str())
        }
        let all = [
            (PolicyField::Waf, src(&self.waf)),
            (PolicyField::Cors, src(&self.cors)),
            (PolicyField::Authentication, src(&self.authentication)),
            (PolicyField::Authorization, src(&self.authorization)),
            (PolicyField::RateLimit, src(&self.rate_limit)),
            (PolicyField::ConcurrencyLimit, src(&self.concurrency_limit)),
            (PolicyField::Validation, src(&self.validation)),
            (PolicyField::Cache, src(&self.cache)),
            (PolicyField::RequestTransform, src(&self.request_transform)),
            (
                PolicyField::ResponseTransform,
                src(&self.response_transform),
            ),
            (PolicyField::Errors, src(&self.errors)),
        ];
        all.into_iter()
            .filter_map(|(f, s)| s.map(|s| (f, s)))
            .collect()
    }
}

/// A policy value and the layer it came from.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sourced<T> {
    /// Which layer it came from: `ApiPolicy ns/name`, `route`, `rule`.
    pub source: String,
    /// The lowered value.
    pub config: T,
}

// === waf ===

/// The web application firewall of a rule.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waf {
    /// What a match does.
    pub mode: WafMode,
    /// The native rule families, sorted, without duplicates; empty when only the CIDR
    /// rules or the Core Rule Set run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<WafRule>,
    /// The request parts the native rules inspect.
    pub inspect: WafParts,
    /// Bytes of each part inspected (the body's first bytes, each header value's, ...).
    pub max_inspect_bytes: u64,
    /// When not empty, only client addresses in these networks are served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Client addresses in these networks are refused (before `allow_cidrs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_cidrs: Vec<ipnet::IpNet>,
    /// The OWASP Core Rule Set, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_rule_set: Option<CoreRuleSet>,
}

/// What a WAF match does.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WafMode {
    /// Refuse the request: 403.
    #[default]
    Block,
    /// Let it through; log and count the match.
    Detect,
}

/// A native rule family.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WafRule {
    /// SQL injection (libinjection).
    SqlInjection,
    /// Cross-site scripting (libinjection).
    CrossSiteScripting,
    /// `../` out of the path, and well-known system files.
    PathTraversal,
    /// Shell commands chained or substituted into a value.
    CommandInjection,
    /// Known attack tools' signatures.
    ScannerDetection,
    /// Malformed encodings, control bytes and methods no API takes.
    ProtocolViolation,
}

impl WafRule {
    /// Every family, in declaration order.
    pub const ALL: [WafRule; 6] = [
        WafRule::SqlInjection,
        WafRule::CrossSiteScripting,
        WafRule::PathTraversal,
        WafRule::CommandInjection,
        WafRule::ScannerDetection,
        WafRule::ProtocolViolation,
    ];

    /// The family's name in the resources.
    pub fn as_str(self) -> &'static str {
        match self {
            WafRule::SqlInjection => "SqlInjection",
            WafRule::CrossSiteScripting => "CrossSiteScripting",
            WafRule::PathTraversal => "PathTraversal",
            WafRule::CommandInjection => "CommandInjection",
            WafRule::ScannerDetection => "ScannerDetection",
            WafRule::ProtocolViolation => "ProtocolViolation",
        }
    }
}

/// The request parts the native rules inspect.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WafParts {
    /// The path.
    pub path: bool,
    /// The query string's names and values.
    pub query: bool,
    /// Header values (cookies one by one).
    pub headers: bool,
    /// The body: JSON and form bodies leaf by leaf, others whole.
    pub body: bool,
}

/// OWASP Core Rule Set settings, defaults applied.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreRuleSet {
    /// 1 to 4.
    pub paranoia_level: u8,
    /// The inbound anomaly score that blocks, at least 1.
    pub anomaly_threshold: u32,
    /// Rules switched off, everywhere or under some path prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<CrsExclusion>,
}

/// A CRS rule switched off.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrsExclusion {
    /// The rule id.
    pub rule_id: u32,
    /// Path prefixes where it is off; empty: everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

// === cors ===

/// Cross-origin resource sharing.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Origins allowed, lowercase: `*`, exact origins (`https://app.example.com`), and
    /// subdomain wildcards (`https://*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Methods allowed, uppercase. Empty: the CORS-safelisted `GET`, `HEAD`, `POST`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Request headers allowed, lowercase; `*` allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// How long a preflight answer may be cached, in milliseconds; `None`: no
    /// `Access-Control-Max-Age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
}

// === rateLimit and concurrencyLimit ===

/// Rate limiting and throttling.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Every limit must allow the request. Never empty.
    pub limits: Vec<Limit>,
    /// What a bucket is counted per.
    pub key: RateLimitKey,
    /// Where the counts live.
    pub scope: RateLimitScope,
    /// What happens to a request over the limit.
    pub mode: RateLimitMode,
    /// The longest wait in [`RateLimitMode::Delay`], in milliseconds; 0 with `Reject`.
    pub max_delay_ms: u64,
    /// What a [`RateLimitScope::Global`] limit does when Redis cannot answer.
    pub failure_mode: FailureMode,
}

/// One limit: `requests` per `period_ms`.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// Requests allowed per period, at least 1.
    pub requests: u64,
    /// The period in milliseconds.
    pub period_ms: u64,
}

/// What a rate-limit bucket is counted per.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "name")]
pub enum RateLimitKey {
    /// The client address.
    #[default]
    ClientIp,
    /// The authenticated consumer (the client address when there is none).
    Consumer,
    /// A request header's value; the name is lowercase.
    Header(String),
    /// A claim of the authenticated JWT (the client address when there is none).
    Claim(String),
    /// One bucket for the whole rule.
    Route,
}

/// Where rate-limit counts live.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateLimitScope {
    /// Per replica, in memory.
    #[default]
    Local,
    /// Shared by every replica through Redis.
    Global,
}

/// What happens to a request over the limit.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateLimitMode {
    /// 429 at once.
    #[default]
    Reject,
    /// Wait up to `max_delay_ms` for capacity, then 429.
    Delay,
}

/// What a global rate limit does when Redis cannot answer.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureMode {
    /// Let the request through (counted in a metric).
    #[default]
    Open,
    /// Answer 503.
    Closed,
}

/// Throttling by concurrency.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyLimit {
    /// Requests served at once.
    pub max_in_flight: u32,
    /// Requests that may wait for a slot.
    pub queue: u32,
    /// The longest wait in the queue, in milliseconds.
    pub queue_timeout_ms: u64,
}

// === validation ===

/// Request and response validation.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Request checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestValidation>,
    /// Response checks; `None` also when the policy names no response schema (there is
    /// nothing to check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseValidation>,
}

/// Request checks.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestValidation {
    /// Media types allowed (essence only, lowercase: `application/json`); `type/*`
    /// allows a whole type. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
    /// The largest body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Headers that must be present, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_headers: Vec<String>,
    /// JSON Schema of the body (the user's document; see [`crate::schema::compile`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// Response checks.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseValidation {
    /// JSON Schema of a successful upstream body.
    pub schema: serde_json::Value,
    /// What an invalid body does.
    pub mode: ResponseValidationMode,
}

/// What an invalid upstream response does.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseValidationMode {
    /// 502.
    #[default]
    Enforce,
    /// A log line and a metric; the response goes through.
    Report,
}

// === cache ===

/// Response caching.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// How long an entry is fresh, in milliseconds.
    pub ttl_ms: u64,
    /// Methods cached, as written (HTTP methods are case-sensitive).
    pub methods: Vec<String>,
    /// Statuses cached.
    pub statuses: Vec<u16>,
    /// Request headers that are part of the key, lowercase, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary: Vec<String>,
    /// Separate entries per consumer.
    pub per_consumer: bool,
    /// Honour upstream `no-store`/`private`/`max-age` and client `no-cache`.
    pub respect_cache_control: bool,
    /// The largest body stored, in bytes.
    pub max_entry_bytes: u64,
}

// === transforms ===

/// Changes to the request before it goes upstream.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestTransform {
    /// Header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderEdits>,
    /// Path rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// The `Host` sent upstream, lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Query edits.
    #[serde(default, skip_serializing_if = "QueryEdits::is_empty")]
    pub query: QueryEdits,
    /// JSON body edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyEdits>,
}

/// Changes to the response before it goes to the client.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTransform {
    /// Header edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderEdits>,
    /// JSON body edits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyEdits>,
}

/// Header edits: remove, then set (replacing), then add (appending).
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderEdits {
    /// Headers replaced or created, in the order written (by name as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderTemplate>,
    /// Headers appended, in the order written (by name as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderTemplate>,
    /// Headers removed, lowercase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header and its value template.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderTemplate {
    /// The header name, lowercase.
    pub name: String,
    /// The value: text and `${...}` variables.
    pub value: Vec<TemplatePart>,
}

/// How the forwarded path is rewritten.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum PathRewrite {
    /// The part of the path the rule's Prefix match covered is replaced by this.
    ReplacePrefixMatch(String),
    /// The whole path is this template (values percent-encoded).
    ReplaceFullPath(Vec<TemplatePart>),
}

/// Query edits.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryEdits {
    /// Parameters replaced or created: name → value template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Vec<TemplatePart>>,
    /// Parameters removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl QueryEdits {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// JSON body edits, by JSON Pointer: rename, then remove, then set.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyEdits {
    /// Pointer → string value template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Vec<TemplatePart>>,
    /// Pointers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Pointer → new pointer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
}

// === errors ===

/// How errors are formatted.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPolicy {
    /// The format of gateway-generated error bodies.
    pub format: ErrorFormat,
    /// Upstream statuses whose bodies are replaced by the gateway's format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_upstream: Vec<u16>,
    /// Fixed bodies per status, in the order written (a later one for the same status
    /// wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ErrorOverride>,
}

/// The format of gateway-generated error bodies.
#[derive(Clone, Copy, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorFormat {
    /// `application/problem+json` (RFC 9457).
    #[default]
    Problem,
    /// `application/json`: `{"status", "error", "message", "requestId"}`.
    Json,
    /// `text/plain`.
    Text,
}

/// The body of every response with one status.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorOverride {
    /// The status whose body is replaced.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// The body.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_policies_serialize_typed_and_list_their_sources() {
        let policies = RulePolicies {
            waf: Some(Sourced {
                source: "ApiPolicy shop/waf".into(),
                config: Waf {
                    mode: WafMode::Detect,
                    rules: vec![WafRule::SqlInjection],
                    inspect: WafParts {
                        query: true,
                        ..WafParts::default()
                    },
                    max_inspect_bytes: 1024,
                    deny_cidrs: vec!["10.0.0.0/8".parse().expect("a network")],
                    ..Waf::default()
                },
            }),
            rate_limit: Some(Sourced {
                source: "rule".into(),
                config: RateLimit {
                    limits: vec![Limit {
                        requests: 10,
                        period_ms: 1_000,
                    }],
                    key: RateLimitKey::Header("x-user".into()),
                    scope: RateLimitScope::Global,
                    mode: RateLimitMode::Delay,
                    max_delay_ms: 250,
                    failure_mode: FailureMode::Closed,
                },
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(&policies).expect("serializes");
        assert_eq!(
            value,
            json!({
                "waf": {"source": "ApiPolicy shop/waf", "config": {
                    "mode": "Detect",
                    "rules": ["SqlInjection"],
                    "inspect": {"path": false, "query": true, "headers": false, "body": false},
                    "maxInspectBytes": 1024,
                    "denyCidrs": ["10.0.0.0/8"],
                }},
                "rateLimit": {"source": "rule", "config": {
                    "limits": [{"requests": 10, "periodMs": 1000}],
                    "key": {"type": "Header", "name": "x-user"},
                    "scope": "Global",
                    "mode": "Delay",
                    "maxDelayMs": 250,
                    "failureMode": "Closed",
                }},
            })
        );
        let back: RulePolicies = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, policies);
        assert_eq!(
            policies.sources(),
            vec![
                (PolicyField::Waf, "ApiPolicy shop/waf"),
                (PolicyField::RateLimit, "rule"),
            ]
        );
        assert!(!policies.is_empty());
        assert!(RulePolicies::default().is_empty());
        assert_eq!(
            serde_json::to_value(RateLimitKey::ClientIp).expect("serializes"),
            json!({"type": "ClientIp"})
        );
    }
}
