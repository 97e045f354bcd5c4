//! `Upstream`: where traffic goes and how the gateway treats those servers.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, PortRef, SecretRef};

/// Where traffic goes and how the gateway treats those servers.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "Upstream",
    namespaced,
    status = "UpstreamStatus",
    shortname = "ups",
    category = "gatehouse",
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyEndpoints"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.totalEndpoints"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"ResolvedRefs","type":"string","jsonPath":".status.conditions[?(@.type==\"ResolvedRefs\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.service) != has(self.endpoints)", "message": "exactly one of service or endpoints must be set"}
]))]
pub struct UpstreamSpec {
    /// Server-side discovery: the ready endpoints of this Service's EndpointSlices.
    /// Exactly one of `service` and `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Static endpoints: standalone mode, or servers outside the cluster.
    /// Exactly one of `service` and `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub endpoints: Option<Vec<StaticEndpoint>>,
    /// Protocol spoken to the servers. Default `HTTP1`. `HTTP2` without `tls` is h2c
    /// with prior knowledge; gRPC needs `HTTP2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UpstreamProtocol>,
    /// Originate TLS to the servers. Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<UpstreamTls>>,
    /// How a server is picked for each request. Absent: `RoundRobin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Connect, request and idle timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<UpstreamTimeouts>,
    /// Retries of failed attempts. Absent: no retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Box<Retries>>,
    /// Active probes and passive outlier ejection. Absent: every endpoint is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Box<HealthCheck>>,
    /// Limits and failure-ratio circuit that protect the upstream as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<Box<CircuitBreaker>>,
}

/// A Service whose EndpointSlices give the endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// Service name, in the Upstream's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Service port number or port name.
    pub port: PortRef,
}

/// One static server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticEndpoint {
    /// IP address or DNS name. Names are re-resolved on their TTL.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Relative share of traffic, 1 to 1000. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: Option<u32>,
}

/// Protocol spoken to the servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    #[serde(rename = "HTTP1")]
    Http1,
    /// HTTP/2 (h2c with prior knowledge without `tls`).
    #[serde(rename = "HTTP2")]
    Http2,
}

/// TLS originated by the gateway towards the servers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.insecureSkipVerify) && self.insecureSkipVerify && has(self.caSecretRef))",
     "message": "caSecretRef and insecureSkipVerify: true are mutually exclusive"}
]))]
pub struct UpstreamTls {
    /// Server name sent in SNI and verified. Default: the endpoint host when it is a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Secret whose key `ca.crt` holds the CA bundle. Absent: the webpki roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretRef>,
    /// A `kubernetes.io/tls` Secret presented as client certificate (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretRef>,
    /// Skip server certificate verification. Default false. For tests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Load-balancing policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.policy) && (self.policy == 'RingHash' || self.policy == 'Maglev')) == has(self.hashOn)",
     "message": "hashOn is required by RingHash and Maglev and allowed only with them"}
]))]
pub struct LoadBalancer {
    /// The algorithm. Default `RoundRobin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LoadBalancerPolicy>,
    /// The request attribute hashed by `RingHash` and `Maglev`; exactly one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

/// Load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoadBalancerPolicy {
    /// Each endpoint in turn, weighted.
    #[default]
    RoundRobin,
    /// The less loaded of two random endpoints (power of two choices).
    LeastRequest,
    /// A random endpoint, weighted.
    Random,
    /// Consistent hashing on a ring (`hashOn`).
    RingHash,
    /// Maglev consistent hashing (`hashOn`).
    Maglev,
    /// Peak exponentially-weighted moving average of latency.
    PeakEwma,
}

/// What consistent hashing hashes; exactly one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.header) ? 1 : 0) + (has(self.cookie) ? 1 : 0) + (has(self.queryParam) ? 1 : 0) + (has(self.clientIp) && self.clientIp ? 1 : 0) == 1",
     "message": "hashOn takes exactly one of header, cookie, queryParam, clientIp"}
]))]
pub struct HashOn {
    /// Hash this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Hash this cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Hash this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// Hash the client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<bool>,
}

/// Upstream timeouts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTimeouts {
    /// TCP (and TLS) connect. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    /// The whole downstream request, retries included. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// How long a pooled keep-alive connection may sit unused. Default `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
}

/// Retry policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Extra attempts after the first. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: Option<u32>,
    /// Failure classes that are retried. Default `[ConnectFailure, Reset, GatewayError]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<RetryOn>>,
    /// Response statuses that are retried as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<Vec<u16>>,
    /// Timeout of each attempt. Absent: only the request timeout applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Exponential backoff with full jitter between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Retries never exceed this share of active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
    /// Retry only idempotent methods (not POST/PATCH). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_only: Option<bool>,
}

/// A class of failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetryOn {
    /// The connection could not be established.
    ConnectFailure,
    /// The connection was reset before a response.
    Reset,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx.
    ServerError,
}

/// Exponential backoff bounds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First interval. Default `25ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Duration>,
    /// Largest interval. Default `250ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
}

/// Retry budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries as a percentage of active requests, 0 to 100. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,
    /// Retries always allowed per second regardless of the percentage. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
}

/// Health checking.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Probe every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Eject endpoints that fail live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Active HTTP probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheck {
    /// Path probed with GET.
    pub path: String,
    /// Time between probes. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Probe timeout. Default `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Successes in a row that make an endpoint healthy. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: Option<u32>,
    /// Failures in a row that make an endpoint unhealthy. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: Option<u32>,
    /// Statuses that count as success. Default `[200]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<Vec<u16>>,
}

/// Passive outlier ejection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// 5xx, connect errors or resets in a row that eject an endpoint. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: Option<u32>,
    /// Base ejection time; doubles on each repeat ejection, capped at 10x. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection_time: Option<Duration>,
    /// Most endpoints that may be ejected at once, in percent. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<u32>,
}

/// Circuit breaker for the upstream as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.failureRatio) || (self.failureRatio > 0.0 && self.failureRatio <= 1.0)",
     "message": "failureRatio must be greater than 0 and at most 1"}
]))]
pub struct CircuitBreaker {
    /// Most open connections. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
    /// Most requests waiting for a connection. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pending_requests: Option<u32>,
    /// Most requests in flight. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_requests: Option<u32>,
    /// Failures / requests within `window` that open the circuit. Default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    /// Requests within `window` before the ratio is judged. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub minimum_requests: Option<u32>,
    /// Sliding window. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// How long the circuit stays open before half-open. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_duration: Option<Duration>,
    /// Trial requests while half-open. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub half_open_requests: Option<u32>,
}

/// Observed state of an Upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Endpoints that receive traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_endpoints: Option<u32>,
    /// All known endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_endpoints: Option<u32>,
    /// `Accepted` (False: Invalid, UnsupportedValue) and `ResolvedRefs` (False:
    /// ServiceNotFound, PortNotFound, SecretNotFound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}
