//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when `--otlp-endpoint` is set.
//!
//! ```text
//!  arrival    Traced: the trace (the client's `traceparent`, or started here) and the
//!             server span's id; sampled by ratio now, from the trace id
//!  attempt    a client span id of its own, sent upstream in `traceparent`; noted when
//!             the attempt ends (retries are sibling client spans)
//!  finish()   kept if sampled, or answered 5xx (429 with --otlp-keep-429), or slower
//!             than --otlp-keep-slower-than ── bounded queue ──▶ gatehouse-otlp thread:
//!             spans built (names looked up), batched, exported
//! ```
//!
//! The gateway's server span is the root of what it serves, so the decision to keep a
//! trace can wait for the end of the request: error and slow traces are kept whatever
//! the ratio. Until then a request only holds ids, clock readings and interned label
//! ids; nothing is built for a trace that is not kept, and what is kept is built on the
//! exporter's thread. When the queue is full, the trace is dropped and counted
//! (`gatehouse_trace_spans_total{result="dropped"}`): a request never waits.
//!
//! An upstream only learns a trace is sampled when the ratio (or the client's sampled
//! flag) chose it at arrival: the `sampled` flag of the `traceparent` it receives says
//! so. A trace kept at the end for its error or its duration holds the gateway's spans.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

use crate::access_log::Arrived;
use crate::metrics::{Metrics, Names, RuleLabels, UpstreamLabels};
use crate::request_id::random_words;
use crate::traceparent;

/// Share of traces kept by default, errors and slow requests aside.
pub const DEFAULT_RATIO: f64 = 0.01;
/// Requests slower than this are kept by default.
pub const DEFAULT_KEEP_SLOWER_THAN: Duration = Duration::from_secs(1);
/// Kept traces waiting for the exporter, at most.
const QUEUE: usize = 4096;
/// Spans sent in one export, at most.
const MAX_BATCH: usize = 512;
/// How long the exporter gathers spans before sending what it has.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// An export that takes longer fails.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--otlp-*`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The OTLP/HTTP endpoint: a base (`http://collector:4318`, to which `/v1/traces`
    /// is added) or the full URL of the traces path. `None`: no tracing.
    pub endpoint: Option<String>,
    /// Share of traces kept, 0 to 1, decided from the trace id (errors and slow
    /// requests are kept whatever it is).
    pub ratio: f64,
    /// Requests slower than this (to the response head) are kept; `None`: not for that.
    pub keep_slower_than: Option<Duration>,
    /// Requests answered 429 are kept too.
    pub keep_429: bool,
    /// `service.name` of the spans' resource.
    pub service_name: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            endpoint: None,
            ratio: DEFAULT_RATIO,
            keep_slower_than: Some(DEFAULT_KEEP_SLOWER_THAN),
            keep_429: false,
            service_name: "gatehouse".into(),
        }
    }
}

/// Why `--otlp-endpoint` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not an `http://` or `https://` URL with a host.
    #[error("--otlp-endpoint {0:?}: not an http:// or https:// URL with a host")]
    Endpoint(String),
    /// The exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// Its thread could not be started.
    #[error("OTLP exporter thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Spans exported, dropped (queue full) and failed (the collector refused them or
/// could not be reached): `gatehouse_trace_spans_total`.
#[derive(Debug, Default)]
pub struct SpanCounts {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}

impl SpanCounts {
    /// Exported, dropped, failed, as they are now.
    pub fn snapshot(&self) -> [u64; 3] {
        [&self.exported, &self.dropped, &self.failed].map(|n| n.load(Ordering::Relaxed))
    }
}

/// The process's tracing: off, or a queue to the exporter and what decides what is kept.
#[derive(Debug)]
pub struct Tracer {
    to_exporter: Option<tokio::sync::mpsc::Sender<Kept>>,
    /// Trace ids whose low 64 bits are below this are sampled (`u64::MAX` with ratio 1:
    /// all are).
    threshold: u64,
    keep_slower_than: Option<Duration>,
    keep_429: bool,
    counts: Arc<SpanCounts>,
}

impl Tracer {
    /// No tracing.
    pub fn off() -> Tracer {
        Tracer {
            to_exporter: None,
            threshold: 0,
            keep_slower_than: None,
            keep_429: false,
            counts: Arc::default(),
        }
    }

    /// Builds the exporter and starts its thread; `metrics` names routes, rules and
    /// upstreams.
    pub fn start(options: &Options, metrics: Arc<Metrics>) -> Result<Tracer, TraceError> {
        let Some(endpoint) = &options.endpoint else {
            return Ok(Tracer::off());
        };
        let url = traces_url(endpoint)?;
        let exporter = exporter(&url, &options.service_name)?;
        let counts = Arc::<SpanCounts>::default();
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("gatehouse-otlp".into())
            .spawn(move || export_loop(rx, exporter, &metrics, &thread_counts))?;
        tracing::info!(endpoint = %url, ratio = options.ratio, "exporting traces over OTLP/HTTP");
        Ok(Tracer {
            to_exporter: Some(tx),
            threshold: threshold(options.ratio),
            keep_slower_than: options.keep_slower_than,
            keep_429: options.keep_429,
            counts,
        })
    }

    /// Whether traces are recorded at all.
    pub fn enabled(&self) -> bool {
        self.to_exporter.is_some()
    }

    /// Spans exported, dropped and failed so far.
    pub fn counts(&self) -> &SpanCounts {
        &self.counts
    }

    /// The trace of a request that `arrived`, when tracing is on: the client's (a child
    /// of its span), or the one started for it.
    pub(crate) fn traced(&self, arrived: &Arrived) -> Option<Traced> {
        if !self.enabled() {
            return None;
        }
        let context = arrived.trace;
        let (parent, span_id) = if arrived.trace_started {
            (None, context.span_id)
        } else {
            (Some(context.span_id), random_words()[0] | 1)
        };
        let by_ratio = (context.trace_id as u64) < self.threshold || self.threshold == u64::MAX;
        Some(Traced {
            trace_id: context.trace_id,
            parent,
            span_id,
            sampled: by_ratio || (parent.is_some() && context.sampled),
            attempts: RefCell::new(Vec::new()),
        })
    }

    /// Why the trace of a request answered `status` after `took` is kept, if it is.
    pub(crate) fn keep(
        &self,
        traced: &Traced,
        status: u16,
        took: Duration,
    ) -> Option<&'static str> {
        if status >= 500 {
            Some("error")
        } else if status == 429 && self.keep_429 {
            Some("rate_limited")
        } else if self.keep_slower_than.is_some_and(|s| took >= s) {
            Some("slow")
        } else {
            traced.sampled.then_some("sampled")
        }
    }

    /// Hands a kept trace to the exporter, or drops and counts it when the queue is full.
    pub(crate) fn send(&self, kept: Kept) {
        let Some(tx) = &self.to_exporter else { return };
        if let Err(e) = tx.try_send(kept) {
            let spans = match &e {
                tokio::sync::mpsc::error::TrySendError::Full(k)
                | tokio::sync::mpsc::error::TrySendError::Closed(k) => k.spans(),
            };
            self.counts.dropped.fetch_add(spans, Ordering::Relaxed);
        }
    }
}

/// The sampling threshold on a trace id's low 64 bits for `ratio`.
fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio <= 0.0 || ratio.is_nan() {
        0
    } else {
        (ratio * u64::MAX as f64) as u64
    }
}

/// The URL spans are posted to: `endpoint` itself, or `/v1/traces` on it when it names
/// no path.
fn traces_url(endpoint: &str) -> Result<http::Uri, TraceError> {
    let bad = || TraceError::Endpoint(endpoint.to_owned());
    let uri: http::Uri = endpoint.trim().parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if matches!(uri.path(), "" | "/") {
        let base = endpoint.trim().trim_end_matches('/');
        return format!("{base}/v1/traces").parse().map_err(|_| bad());
    }
    Ok(uri)
}

/// The OTLP/HTTP protobuf exporter, over our own hyper client (HTTP or HTTPS with the
/// Web PKI roots).
fn exporter(
    url: &http::Uri,
    service_name: &str,
) -> Result<opentelemetry_otlp::SpanExporter, TraceError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let connector = crate::policy::client::connector(None).map_err(TraceError::Exporter)?;
    let client = opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None);
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    Ok(exporter)
}

/// A request's trace while it is served.
#[derive(Debug)]
pub(crate) struct Traced {
    trace_id: u128,
    /// The client's span, when it sent a `traceparent`.
    parent: Option<u64>,
    /// The server span's id.
    span_id: u64,
    /// Sampled at arrival (by ratio, or the client's flag): upstreams are told.
    sampled: bool,
    attempts: RefCell<Vec<AttemptSpan>>,
}

impl Traced {
    /// A new client span id and the `traceparent` an attempt carries for it.
    pub(crate) fn attempt(&self) -> (u64, HeaderValue) {
        let id = random_words()[0] | 1;
        (id, traceparent::format(self.trace_id, id, self.sampled))
    }

    /// Notes this (kept) trace as the exemplar of the duration buckets it fell in: the
    /// request's (`labels`, `took`) and each attempt's.
    pub(crate) fn note_exemplars(&self, metrics: &Metrics, labels: &RuleLabels, took: Duration) {
        metrics.exemplar(labels, took, self.trace_id);
        for a in self.attempts.borrow().iter() {
            metrics.upstream_exemplar(a.upstream, a.took, self.trace_id);
        }
    }

    /// Notes an attempt that ended.
    pub(crate) fn attempted(&self, span: AttemptSpan) {
        if let Ok(mut a) = self.attempts.try_borrow_mut() {
            a.push(span);
        }
    }
}

/// An upstream attempt, as its client span shows it.
#[derive(Debug)]
pub(crate) struct AttemptSpan {
    pub span_id: u64,
    pub method: Method,
    pub upstream: UpstreamLabels,
    pub endpoint: SocketAddr,
    /// From the request's arrival to the attempt's start.
    pub offset: Duration,
    /// To its response head, or its failure.
    pub took: Duration,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// How it failed, when it did (`timeout`, `refused`, `reset`).
    pub error: Option<&'static str>,
    /// Attempts of this call before this one (retries).
    pub resend: u32,
}

/// A trace to export: the request's spans, and what the server span says.
#[derive(Debug)]
pub(crate) struct Kept {
    pub traced: Traced,
    pub why: &'static str,
    /// Wall-clock arrival.
    pub at: SystemTime,
    pub took: Duration,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub target: Option<PathAndQuery>,
    pub status: u16,
    pub client: IpAddr,
    pub labels: Option<RuleLabels>,
    pub refused: Option<&'static str>,
    pub request_id: HeaderValue,
}

impl Kept {
    fn spans(&self) -> u64 {
        1 + self.traced.attempts.borrow().len() as u64
    }

    /// The server span and a client span per attempt.
    fn build(self, names: &Names, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let trace_id = TraceId::from(self.traced.trace_id);
        // A finished span of this trace; `parent`: its id, and whether it is remote.
        let span = |id: u64,
                    parent: Option<(u64, bool)>,
                    kind: SpanKind,
                    name: String,
                    (start, end): (SystemTime, SystemTime),
                    attributes: Vec<KeyValue>,
                    status: Status| SpanData {
            span_context: SpanContext::new(
                trace_id,
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent.map_or(SpanId::INVALID, |(p, _)| SpanId::from(p)),
            parent_span_is_remote: parent.is_some_and(|(_, remote)| remote),
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        };
        let (route, rule) = self.labels.map_or(("", ""), |l| names.rule(l));
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method.as_str().to_owned()),
            KeyValue::new("http.response.status_code", i64::from(self.status)),
            KeyValue::new("client.address", self.client.to_string()),
            KeyValue::new("gatehouse.trace.kept", self.why),
        ];
        if let Some(path) = &self.target {
            // The path only: a query may hold a credential.
            attributes.push(KeyValue::new("url.path", path.path().to_owned()));
        }
        if let Some(host) = self.host.as_ref().and_then(|h| h.to_str().ok()) {
            let host = gatehouse_router::normalize_host(host).into_owned();
            attributes.push(KeyValue::new("server.address", host));
        }
        if let Ok(id) = self.request_id.to_str() {
            attributes.push(KeyValue::new("gatehouse.request_id", id.to_owned()));
        }
        if !route.is_empty() {
            attributes.push(KeyValue::new("gatehouse.route", route.to_owned()));
            attributes.push(KeyValue::new("gatehouse.rule", rule.to_owned()));
        }
        if let Some(refused) = self.refused {
            attributes.push(KeyValue::new("gatehouse.refused", refused));
        }
        let name = if route.is_empty() {
            self.method.as_str().to_owned()
        } else {
            format!("{} {route}", self.method)
        };
        let status = if self.status >= 500 {
            Status::error(format!("answered {}", self.status))
        } else {
            Status::Unset
        };
        out.push(span(
            self.traced.span_id,
            self.traced.parent.map(|p| (p, true)),
            SpanKind::Server,
            name,
            (self.at, self.at + self.took),
            attributes,
            status,
        ));
        for a in self.traced.attempts.into_inner() {
            let upstream = names.upstream(a.upstream);
            let mut attributes = vec![
                KeyValue::new("http.request.method", a.method.as_str().to_owned()),
                KeyValue::new("server.address", a.endpoint.ip().to_string()),
                KeyValue::new("server.port", i64::from(a.endpoint.port())),
                KeyValue::new("gatehouse.upstream", upstream.to_owned()),
            ];
            if let Some(s) = a.status {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(s)));
            }
            if let Some(e) = a.error {
                attributes.push(KeyValue::new("error.type", e));
            }
            if a.resend > 0 {
                attributes.push(KeyValue::new(
                    "http.request.resend_count",
                    i64::from(a.resend),
                ));
            }
            let status = match (a.error, a.status) {
                (Some(e), _) => Status::error(e),
                (None, Some(s)) if s >= 500 => Status::error(format!("answered {s}")),
                _ => Status::Unset,
            };
            let start = self.at + a.offset;
            out.push(span(
                a.span_id,
                Some((self.traced.span_id, false)),
                SpanKind::Client,
                format!("{} {upstream}", a.method),
                (start, start + a.took),
                attributes,
                status,
            ));
        }
    }
}

/// The exporter thread: builds the kept traces' spans and exports them in batches until
/// every sender is gone.
fn export_loop(
    mut rx: tokio::sync::mpsc::Receiver<Kept>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: &Metrics,
    counts: &SpanCounts,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the OTLP exporter cannot start: no traces are exported");
            return;
        }
    };
    runtime.block_on(async move {
        let scope = InstrumentationScope::builder("gatehouse")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let mut names = metrics.names();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut warned: Option<Instant> = None;
        while let Some(first) = rx.recv().await {
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            let mut next = Some(first);
            while let Some(kept) = next.take() {
                let upstreams = kept
                    .traced
                    .attempts
                    .borrow()
                    .iter()
                    .map(|a| a.upstream)
                    .collect::<Vec<_>>();
                if upstreams
                    .iter()
                    .any(|u| !names.covers(kept.labels, Some(*u)))
                    || !names.covers(kept.labels, None)
                {
                    names = metrics.names();
                }
                kept.build(&names, &scope, &mut batch);
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten();
            }
            let n = batch.len() as u64;
            match exporter.export(std::mem::take(&mut batch)).await {
                Ok(()) => {
                    counts.exported.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    counts.failed.fetch_add(n, Ordering::Relaxed);
                    // Said once a minute at most: a collector that is down fails every batch.
                    if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                        warned = Some(Instant::now());
                        tracing::warn!(error = %e, spans = n, "OTLP export failed; spans dropped");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gets_the_traces_path_when_it_has_none() {
        let url = |s: &str| traces_url(s).map(|u| u.to_string());
        assert_eq!(
            url("http://collector:4318").ok().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("http://collector:4318/").ok().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("https://c.example/otlp/v1/traces").ok().as_deref(),
            Some("https://c.example/otlp/v1/traces")
        );
        for bad in ["collector:4318", "ftp://c/", "http://", "not a url"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ratio_is_a_share_of_trace_ids() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
        let t = threshold(0.25);
        let kept = (0..100_000u64).filter(|_| random_words()[0] < t).count();
        assert!((20_000..30_000).contains(&kept), "{kept} of 100000 at 0.25");
    }
}
