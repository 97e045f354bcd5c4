//! What every command that serves traffic shares (`run`, `proxy`): the backends
//! policies use, turned into the proxy's [`Options`]; the traffic and admin listeners;
//! `/explain` on the admin listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_proxy::policy::global_limit::GlobalLimiter;
use gatehouse_proxy::policy::limit::GlobalBackend;
use gatehouse_proxy::{AdminListening, AdminState, ExplainFn, Listening, Options};

/// Policy backends of the data plane.
#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// Redis for `scope: Global` rate limits (`redis://[user:password@]host:port[/db]`).
    /// Without it such limits count per replica, and the logs say so.
    #[arg(long, env = "GATEHOUSE_REDIS")]
    pub redis: Option<String>,
    /// How long a global rate-limit check may wait for Redis before the policy's
    /// `failureMode` applies.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// Bytes the response cache holds at most (bodies, headers and keys); least
    /// recently and least frequently used entries go first.
    #[arg(long, env = "GATEHOUSE_CACHE_CAPACITY", default_value_t = gatehouse_proxy::policy::cache::DEFAULT_CAPACITY)]
    pub cache_capacity: u64,
    /// Peers whose `X-Forwarded-For` names the client (comma-separated CIDRs or
    /// addresses): the address the WAF's CIDR rules, `ClientIp` rate limits and
    /// `${clientIp}` see. Without it, the connection's peer is the client.
    #[arg(long, env = "GATEHOUSE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The OWASP Core Rule Set's rule files (`REQUEST-*.conf`), for `waf.coreRuleSet`.
    #[arg(long, env = "GATEHOUSE_CRS_RULES", default_value = gatehouse_proxy::policy::waf::crs::DEFAULT_RULES_DIR)]
    pub crs_rules: std::path::PathBuf,
    /// Copies for `mirror` upstreams in flight at most, for the whole process; a copy
    /// past it is dropped and counted (`gatehouse_mirror_requests_total`).
    #[arg(long, env = "GATEHOUSE_MIRROR_MAX_IN_FLIGHT", default_value_t = gatehouse_proxy::DEFAULT_MIRROR_MAX_IN_FLIGHT)]
    pub mirror_max_in_flight: usize,
    /// A host whose `GET /docs` and `GET /docs/openapi.json` the traffic listeners
    /// answer with the API documentation (the admin listener always does).
    #[arg(long, env = "GATEHOUSE_PUBLIC_DOCS")]
    pub public_docs: Option<String>,
    /// Where the access log goes, one JSON line per request: `stdout`, `stderr`, a file
    /// path (appended to), or `off`.
    #[arg(long, env = "GATEHOUSE_ACCESS_LOG", default_value = "stdout")]
    pub access_log: gatehouse_proxy::access_log::Destination,
    /// Share of requests the access log keeps, 0 to 1 (answers with a 5xx status are
    /// always kept).
    #[arg(long, env = "GATEHOUSE_ACCESS_LOG_SAMPLE", default_value_t = 1.0, value_parser = parse_share)]
    pub access_log_sample: f64,
    /// Export traces over OTLP/HTTP (protobuf) to this collector: a base URL
    /// (`http://otel-collector:4318`, to which `/v1/traces` is added) or the full URL of
    /// its traces path. Without it, no traces are recorded.
    #[arg(long, env = "GATEHOUSE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of traces kept, 0 to 1, decided from the trace id (so every gateway
    /// replica keeps the same ones); a client's `traceparent` marked sampled is kept
    /// too. Errors and slow requests are kept whatever it is.
    #[arg(long, env = "GATEHOUSE_OTLP_SAMPLE_RATIO", default_value_t = gatehouse_proxy::trace::DEFAULT_RATIO, value_parser = parse_share)]
    pub otlp_sample_ratio: f64,
    /// Keep the trace of every request slower than this (to its response head);
    /// `off` keeps none for its duration.
    #[arg(long, env = "GATEHOUSE_OTLP_KEEP_SLOWER_THAN", default_value = "1s", value_parser = parse_optional_duration)]
    pub otlp_keep_slower_than: OptionalDuration,
    /// Keep the trace of every request answered 429 (those answered 5xx always are).
    #[arg(long, env = "GATEHOUSE_OTLP_KEEP_429")]
    pub otlp_keep_429: bool,
    /// `service.name` of the exported spans.
    #[arg(long, env = "GATEHOUSE_OTLP_SERVICE_NAME", default_value = "gatehouse")]
    pub otlp_service_name: String,
}

/// A duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct OptionalDuration(pub Option<Duration>);

fn parse_optional_duration(s: &str) -> Result<OptionalDuration, String> {
    match s.trim() {
        "off" | "none" => Ok(OptionalDuration(None)),
        d => parse_duration(d).map(|d| OptionalDuration(Some(d))),
    }
}

/// A share between 0 and 1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number between 0 and 1")),
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address.
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR or IP address"))
}

impl DataPlaneArgs {
    /// The proxy's options. Connecting to Redis happens in the background: a Redis that
    /// is down at start is retried, and meanwhile `failureMode` applies.
    pub fn options(&self) -> Result<Options> {
        let global_limits = match &self.redis {
            None => None,
            Some(url) => Some(GlobalBackend {
                limiter: GlobalLimiter::new(url, "gatehouse:rl:")
                    .context("--redis: not a usable Redis URL")?,
                timeout: self.redis_timeout,
            }),
        };
        Ok(Options {
            global_limits,
            cache_capacity: self.cache_capacity,
            trusted_proxies: self.trusted_proxies.clone(),
            crs_rules: self.crs_rules.clone(),
            mirror_max_in_flight: self.mirror_max_in_flight,
            public_docs: self.public_docs.clone(),
            access_log: gatehouse_proxy::access_log::Options {
                destination: self.access_log.clone(),
                sample: self.access_log_sample,
            },
            traces: gatehouse_proxy::trace::Options {
                endpoint: self.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()),
                ratio: self.otlp_sample_ratio,
                keep_slower_than: self.otlp_keep_slower_than.0,
                keep_429: self.otlp_keep_429,
                service_name: self.otlp_service_name.clone(),
            },
        })
    }
}

/// Opens the traffic listeners on `http` and `https` when given (`workers` threads,
/// default one per core) and the admin listener on `admin`, all serving `state`'s table.
pub fn listen(
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: SocketAddr,
    workers: Option<usize>,
    state: &Arc<AdminState>,
) -> Result<(Listening, AdminListening)> {
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listening = gatehouse_proxy::serve_on(http, https, state.shared().clone(), workers)
        .with_context(|| match https {
            Some(https) => format!("listening on {http} and {https}"),
            None => format!("listening on {http}"),
        })?;
    let admin = gatehouse_proxy::serve_admin(admin, state.clone())
        .with_context(|| format!("admin listener on {admin}"))?;
    Ok((listening, admin))
}

/// `/explain` on the admin listener: the compiler's explain engine over the running table.
pub fn explain_fn() -> ExplainFn {
    Arc::new(
        |table, method, url, headers| match gatehouse_router::Router::new(table) {
            Ok(router) => serde_json::to_value(gatehouse_compiler::explain::explain(
                table, &router, method, url, headers,
            ))
            .unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        },
    )
}

/// A duration flag (`20s`, `100ms`), as manifests write durations.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    gatehouse_compiler::values::parse_duration(s).map(Duration::from_millis)
}
