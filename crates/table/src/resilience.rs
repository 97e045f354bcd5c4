//! How the proxy treats an upstream's servers when they fail: consistent-hash keys,
//! retries, health checks and the circuit breaker. Defaults are applied by the
//! compiler; durations are milliseconds; header and cookie names are as the proxy
//! compares them (headers in lowercase).

use serde::{Deserialize, Serialize};

/// What `RingHash` and `Maglev` hash.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HashOn {
    /// A request header (lowercase name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    QueryParam(String),
    /// The client's address.
    ClientIp,
}

/// A class of failed attempt that is retried.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RetryOn {
    /// No connection could be made.
    ConnectFailure,
    /// The connection broke before a response head arrived.
    Reset,
    /// 502, 503 or 504 from the upstream, or the attempt timed out.
    GatewayError,
    /// Any 5xx from the upstream, or the attempt timed out.
    ServerError,
}

/// Retries, defaults applied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// What is retried, sorted.
    pub on: Vec<RetryOn>,
    /// Statuses retried as well, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_codes: Vec<u16>,
    /// Timeout of one attempt; `None`: only the request timeout bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    /// First backoff interval.
    pub backoff_base_ms: u64,
    /// Largest backoff interval.
    pub backoff_max_ms: u64,
    /// Retries in flight never exceed this percentage of the requests in flight...
    pub budget_percent: u32,
    /// ...except for this many retries per second, always allowed.
    pub budget_min_per_second: u32,
    /// Only methods that are idempotent by definition are retried.
    pub idempotent_only: bool,
}

/// Health checking, defaults applied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveCheck>,
    /// Ejection from live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveCheck>,
}

/// Active probes: `GET path` to every endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveCheck {
    /// Path (and query) probed.
    pub path: String,
    /// Time between probes of one endpoint (jittered by up to 10%).
    pub interval_ms: u64,
    /// Probe timeout.
    pub timeout_ms: u64,
    /// Successes in a row that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Statuses that count as success, sorted.
    pub expected_statuses: Vec<u16>,
}

/// Passive outlier ejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassiveCheck {
    /// Failures in a row (5xx, connect errors, resets, timeouts) that eject.
    pub consecutive_failures: u32,
    /// First ejection time; doubled on each repeat, capped at 10×.
    pub ejection_time_ms: u64,
    /// Most endpoints ejected at once, in percent of the upstream's endpoints.
    pub max_ejection_percent: u32,
}

/// The circuit breaker of an upstream as a whole, defaults applied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Most open connections to the upstream's servers.
    pub max_connections: u32,
    /// Most requests waiting for a new connection.
    pub max_pending_requests: u32,
    /// Most requests in flight.
    pub max_concurrent_requests: u32,
    /// Failures per million requests within `window` that open the circuit.
    pub failure_ratio_ppm: u32,
    /// Requests within `window` before the ratio is judged.
    pub minimum_requests: u32,
    /// Sliding window.
    pub window_ms: u64,
    /// Time open before half-open.
    pub open_duration_ms: u64,
    /// Trial requests while half-open.
    pub half_open_requests: u32,
}
