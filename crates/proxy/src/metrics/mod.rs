//! Metrics, recorded per worker thread and summed when scraped.
//!
//! Each worker owns one block; recording locks only that block's mutex, which nothing
//! else takes except a scrape, so the request path never waits on another thread.
//! Label sets (route, rule) are interned when a table is applied and get a dense id, so
//! recording indexes a vector instead of hashing strings, and a series keeps its slot
//! across tables. Names follow `spec/runtime.md`.
//!
//! A scrape sums the blocks and encodes them with the `prometheus-client` crate
//! ([`exposition`]): Prometheus text, or OpenMetrics (with trace-id exemplars on the
//! duration histograms) when the scraper asks for it.

pub mod exposition;

use crate::listener::tls::Handshake;
use crate::policy::waf::Matched;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `upstream` label, interned by [`Metrics::upstream_labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamLabels(u32);

/// How an attempt to an upstream went: the `outcome` label of
/// `gatehouse_upstream_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// A response below 500.
    Success = 0,
    /// A 5xx response.
    Error = 1,
    /// No response head in time.
    Timeout = 2,
    /// The connection broke before a response head.
    Reset = 3,
    /// No connection could be made.
    Refused = 4,
}

impl UpstreamOutcome {
    const ALL: [UpstreamOutcome; 5] = [
        UpstreamOutcome::Success,
        UpstreamOutcome::Error,
        UpstreamOutcome::Timeout,
        UpstreamOutcome::Reset,
        UpstreamOutcome::Refused,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            UpstreamOutcome::Success => "success",
            UpstreamOutcome::Error => "error",
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::Reset => "reset",
            UpstreamOutcome::Refused => "refused",
        }
    }
}

/// One upstream's counts on one worker.
#[derive(Debug, Default, Clone)]
struct UpstreamSeries {
    /// Attempts by [`UpstreamOutcome`].
    outcomes: [u64; UpstreamOutcome::ALL.len()],
    /// Attempt durations (to the response head).
    durations: Histogram,
    /// Retries sent, and retries the budget refused.
    retries: [u64; 2],
    /// Mirrored copies by [`MirrorOutcome`].
    mirrors: [u64; MirrorOutcome::ALL.len()],
    /// Exemplars of `durations`, once a kept trace noted one.
    exemplars: Option<Box<Exemplars>>,
}

impl UpstreamSeries {
    fn merge(&mut self, other: &UpstreamSeries) {
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        for (a, b) in self.retries.iter_mut().zip(other.retries) {
            *a += b;
        }
        for (a, b) in self.mirrors.iter_mut().zip(other.mirrors) {
            *a += b;
        }
        self.durations.merge(&other.durations);
        merge_exemplars(&mut self.exemplars, other.exemplars.as_deref());
    }
}

/// What became of a copy for a mirror upstream: the `result` label of
/// `gatehouse_mirror_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// Sent (its answer is discarded; the attempt counts under the upstream's
    /// `gatehouse_upstream_requests_total`).
    Sent = 0,
    /// Dropped: `--mirror-max-in-flight` copies were in flight.
    DroppedInFlight = 1,
    /// Dropped: the request body is larger than the mirror's bound, or of unknown length.
    DroppedBody = 2,
}

impl MirrorOutcome {
    const ALL: [MirrorOutcome; 3] = [
        MirrorOutcome::Sent,
        MirrorOutcome::DroppedInFlight,
        MirrorOutcome::DroppedBody,
    ];

    fn label(self) -> &'static str {
        match self {
            MirrorOutcome::Sent => "sent",
            MirrorOutcome::DroppedInFlight => "dropped_in_flight",
            MirrorOutcome::DroppedBody => "dropped_body_too_large",
        }
    }
}

/// A snapshot of the interned label names ([`Metrics::names`]).
#[derive(Debug, Default)]
pub struct Names {
    rules: Vec<(String, String)>,
    upstreams: Vec<String>,
}

impl Names {
    /// Route and rule of `labels` (empty when unknown).
    pub fn rule(&self, labels: RuleLabels) -> (&str, &str) {
        self.rules
            .get(labels.0 as usize)
            .map_or(("", ""), |(r, n)| (r.as_str(), n.as_str()))
    }

    /// The upstream of `labels` (empty when unknown).
    pub fn upstream(&self, labels: UpstreamLabels) -> &str {
        self.upstreams
            .get(labels.0 as usize)
            .map_or("", String::as_str)
    }

    /// Whether the snapshot names `rule` and `upstream`.
    pub fn covers(&self, rule: Option<RuleLabels>, upstream: Option<UpstreamLabels>) -> bool {
        rule.is_none_or(|l| (l.0 as usize) < self.rules.len())
            && upstream.is_none_or(|l| (l.0 as usize) < self.upstreams.len())
    }
}

/// `route` and `rule` labels, interned by [`Metrics::labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLabels(u32);

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// One label set's counts on one worker.
#[derive(Debug, Default, Clone)]
struct Series {
    /// (method, code) → requests; a handful of entries, scanned.
    requests: Vec<(&'static str, u16, u64)>,
    durations: Histogram,
    /// Policy outcomes, by [`Counter`].
    counts: [u64; Counter::ALL.len()],
    /// WAF matches, by [`Matched::index`] and [`WafAction`].
    waf: [[u64; 2]; Matched::ALL.len()],
    /// Exemplars of `durations`, once a kept trace noted one.
    exemplars: Option<Box<Exemplars>>,
}

impl Series {
    fn merge(&mut self, other: &Series) {
        for (method, code, n) in &other.requests {
            match self
                .requests
                .iter_mut()
                .find(|(m, c, _)| c == code && m == method)
            {
                Some((_, _, sum)) => *sum += n,
                None => self.requests.push((method, *code, *n)),
            }
        }
        self.durations.merge(&other.durations);
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        for (a, b) in self.waf.iter_mut().zip(other.waf) {
            a[0] += b[0];
            a[1] += b[1];
        }
        merge_exemplars(&mut self.exemplars, other.exemplars.as_deref());
    }
}

/// A kept trace's id on a histogram bucket: its duration and when it was noted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exemplar {
    pub trace_id: u128,
    pub value: f64,
    pub at: std::time::SystemTime,
}

/// The latest exemplar of each bucket, `+Inf` last.
pub(crate) type Exemplars = [Option<Exemplar>; BUCKETS.len() + 1];

/// Keeps, bucket by bucket, the later of the two exemplars.
fn merge_exemplars(into: &mut Option<Box<Exemplars>>, from: Option<&Exemplars>) {
    let Some(from) = from else { return };
    let into = into.get_or_insert_default();
    for (a, b) in into.iter_mut().zip(from) {
        if let Some(b) = b
            && a.is_none_or(|a| a.at < b.at)
        {
            *a = Some(*b);
        }
    }
}

/// What a WAF match did: the `action` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafAction {
    /// The request was refused.
    Block = 0,
    /// The request went through (`mode: Detect`).
    Detect = 1,
}

impl WafAction {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            WafAction::Block => "block",
            WafAction::Detect => "detect",
        }
    }
}

/// A policy outcome counted per route: each is one series of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A rate limit refused the request.
    RateLimited,
    /// A `scope: Global` limit could not reach Redis and `failureMode: Open` let the
    /// request through.
    LimiterFailOpen,
    /// Same, and `failureMode: Closed` refused it.
    LimiterFailClosed,
    /// Served from the cache.
    CacheHit,
    /// Cacheable, not in the cache: fetched (and stored when the response allows it).
    CacheMiss,
    /// On a cached rule, but not cacheable (method, `Cache-Control`, size).
    CacheBypass,
    /// A request refused by `validation.request`.
    ValidationRequest,
    /// An upstream response that failed `validation.response`.
    ValidationResponse,
    /// Authentication refused an API key.
    AuthApiKey,
    /// Authentication refused a token.
    AuthJwt,
    /// Authentication refused basic credentials.
    AuthBasic,
    /// The forward-authentication check refused or failed.
    AuthExternal,
    /// Authentication found no credential.
    AuthNone,
}

impl Counter {
    const ALL: [Counter; 13] = [
        Counter::RateLimited,
        Counter::LimiterFailOpen,
        Counter::LimiterFailClosed,
        Counter::CacheHit,
        Counter::CacheMiss,
        Counter::CacheBypass,
        Counter::ValidationRequest,
        Counter::ValidationResponse,
        Counter::AuthApiKey,
        Counter::AuthJwt,
        Counter::AuthBasic,
        Counter::AuthExternal,
        Counter::AuthNone,
    ];

    /// (family, extra label) of this counter's series.
    fn series(self) -> (&'static str, Option<(&'static str, &'static str)>) {
        let auth = "gatehouse_auth_failures_total";
        match self {
            Counter::RateLimited => ("gatehouse_ratelimit_rejected_total", None),
            Counter::LimiterFailOpen => (
                "gatehouse_ratelimit_backend_errors_total",
                Some(("failure_mode", "Open")),
            ),
            Counter::LimiterFailClosed => (
                "gatehouse_ratelimit_backend_errors_total",
                Some(("failure_mode", "Closed")),
            ),
            Counter::CacheHit => ("gatehouse_cache_requests_total", Some(("result", "hit"))),
            Counter::CacheMiss => ("gatehouse_cache_requests_total", Some(("result", "miss"))),
            Counter::CacheBypass => ("gatehouse_cache_requests_total", Some(("result", "bypass"))),
            Counter::ValidationRequest => (
                "gatehouse_validation_failures_total",
                Some(("direction", "request")),
            ),
            Counter::ValidationResponse => (
                "gatehouse_validation_failures_total",
                Some(("direction", "response")),
            ),
            Counter::AuthApiKey => (auth, Some(("method", "apiKey"))),
            Counter::AuthJwt => (auth, Some(("method", "jwt"))),
            Counter::AuthBasic => (auth, Some(("method", "basic"))),
            Counter::AuthExternal => (auth, Some(("method", "external"))),
            Counter::AuthNone => (auth, Some(("method", "none"))),
        }
    }
}

/// HELP text of each policy counter family, in exposition order.
const COUNTER_FAMILIES: [(&str, &str); 5] = [
    (
        "gatehouse_ratelimit_rejected_total",
        "Requests refused by a rate limit.",
    ),
    (
        "gatehouse_ratelimit_backend_errors_total",
        "Global rate-limit checks that could not reach Redis, by the failureMode applied.",
    ),
    (
        "gatehouse_cache_requests_total",
        "Requests on cached rules, by result (hit, miss, bypass).",
    ),
    (
        "gatehouse_validation_failures_total",
        "Requests refused and upstream responses that failed validation, by direction.",
    ),
    (
        "gatehouse_auth_failures_total",
        "Requests refused by authentication, by the method whose credential was refused (none: no credential).",
    ),
];

#[derive(Debug, Default)]
struct Block {
    /// By label id.
    series: Vec<Series>,
    /// By upstream label id.
    upstreams: Vec<UpstreamSeries>,
}

#[derive(Debug, Default)]
struct Interner {
    /// Route → rule → id, so that a lookup borrows its strings.
    ids: rustc_hash::FxHashMap<String, rustc_hash::FxHashMap<String, u32>>,
    names: Vec<(String, String)>,
}

/// All metrics of a process.
#[derive(Debug, Default)]
pub struct Metrics {
    blocks: Mutex<Vec<Arc<Mutex<Block>>>>,
    labels: Mutex<Interner>,
    /// Upstream ids by label id, and back.
    upstream_names: Mutex<(Vec<String>, rustc_hash::FxHashMap<String, u32>)>,
    applied: AtomicU64,
    rejected: AtomicU64,
    version: AtomicU64,
    apply_durations: Mutex<Histogram>,
    /// TLS handshakes by [`Handshake::ALL`] position: per connection, not per request.
    handshakes: [AtomicU64; Handshake::ALL.len()],
}

thread_local! {
    static BLOCK: RefCell<Option<Arc<Mutex<Block>>>> = const { RefCell::new(None) };
}

/// Methods as label values without allocating; others count as `OTHER`.
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    /// The label set `route`, `rule` (the same id every time it is asked for).
    pub fn labels(&self, route: &str, rule: &str) -> RuleLabels {
        let Ok(mut interner) = self.labels.lock() else {
            return RuleLabels(0);
        };
        if let Some(id) = interner.ids.get(route).and_then(|r| r.get(rule)) {
            return RuleLabels(*id);
        }
        let id = u32::try_from(interner.names.len()).unwrap_or(u32::MAX);
        interner.names.push((route.to_string(), rule.to_string()));
        interner
            .ids
            .entry(route.to_string())
            .or_default()
            .insert(rule.to_string(), id);
        RuleLabels(id)
    }

    /// The label of upstream `id` (the same every time it is asked for).
    pub fn upstream_labels(&self, id: &str) -> UpstreamLabels {
        let Ok(mut names) = self.upstream_names.lock() else {
            return UpstreamLabels(0);
        };
        let (list, ids) = &mut *names;
        if let Some(i) = ids.get(id) {
            return UpstreamLabels(*i);
        }
        let i = u32::try_from(list.len()).unwrap_or(u32::MAX);
        list.push(id.to_string());
        ids.insert(id.to_string(), i);
        UpstreamLabels(i)
    }

    /// Runs `f` on the calling worker's series for upstream `labels`.
    fn with_upstream(&self, labels: UpstreamLabels, f: impl FnOnce(&mut UpstreamSeries)) {
        BLOCK.with(|b| {
            let b = b.borrow();
            let Some(block) = b.as_ref() else { return };
            let Ok(mut block) = block.lock() else { return };
            let i = labels.0 as usize;
            if block.upstreams.len() <= i {
                block.upstreams.resize(i + 1, UpstreamSeries::default());
            }
            f(&mut block.upstreams[i]);
        });
    }

    /// Records one attempt to an upstream.
    pub fn upstream(&self, labels: UpstreamLabels, outcome: UpstreamOutcome, took: Duration) {
        self.with_upstream(labels, |s| {
            s.outcomes[outcome as usize] += 1;
            s.durations.observe(took.as_secs_f64());
        });
    }

    /// Counts a retry sent (`true`) or refused by the budget.
    pub fn retry(&self, labels: UpstreamLabels, sent: bool) {
        self.with_upstream(labels, |s| s.retries[usize::from(!sent)] += 1);
    }

    /// Counts a copy for mirror upstream `labels`.
    pub fn mirror(&self, labels: UpstreamLabels, outcome: MirrorOutcome) {
        self.with_upstream(labels, |s| s.mirrors[outcome as usize] += 1);
    }

    /// Gives the calling worker thread its own block.
    pub fn register_worker(&self) {
        let block = Arc::new(Mutex::new(Block::default()));
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.push(block.clone());
        }
        BLOCK.with(|b| *b.borrow_mut() = Some(block));
    }

    /// Runs `f` on the calling worker's series for `labels`.
    fn with_series(&self, labels: &RuleLabels, f: impl FnOnce(&mut Series)) {
        BLOCK.with(|b| {
            let b = b.borrow();
            let Some(block) = b.as_ref() else { return };
            let Ok(mut block) = block.lock() else { return };
            let i = labels.0 as usize;
            if block.series.len() <= i {
                block.series.resize(i + 1, Series::default());
            }
            f(&mut block.series[i]);
        });
    }

    /// Records one request on the calling worker.
    pub fn record(&self, labels: &RuleLabels, method: &http::Method, code: u16, took: Duration) {
        self.with_series(labels, |series| {
            let method = method_label(method);
            match series
                .requests
                .iter_mut()
                .find(|(m, c, _)| *c == code && std::ptr::eq(*m, method))
            {
                Some((_, _, n)) => *n += 1,
                None => series.requests.push((method, code, 1)),
            }
            series.durations.observe(took.as_secs_f64());
        });
    }

    /// Counts a request refused by a rate limit, on the calling worker.
    pub fn count(&self, labels: &RuleLabels, counter: Counter) {
        self.with_series(labels, |series| series.counts[counter as usize] += 1);
    }

    /// Counts a WAF match on the calling worker.
    pub fn waf_match(&self, labels: &RuleLabels, matched: Matched, action: WafAction) {
        self.with_series(labels, |series| {
            series.waf[matched.index()][action as usize] += 1;
        });
    }

    /// Records a table apply.
    pub fn config_applied(&self, version: u64, ok: bool, took: Duration) {
        if ok {
            self.applied.fetch_add(1, Ordering::Relaxed);
            self.version.store(version, Ordering::Relaxed);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut h) = self.apply_durations.lock() {
            h.observe(took.as_secs_f64());
        }
    }

    /// Counts a TLS handshake.
    pub fn tls_handshake(&self, result: Handshake) {
        if let Some(i) = Handshake::ALL.iter().position(|h| *h == result) {
            self.handshakes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The names behind the interned labels so far (ids only ever grow, so a snapshot
    /// stays right for the ids it holds).
    pub fn names(&self) -> Names {
        Names {
            rules: self
                .labels
                .lock()
                .map(|i| i.names.clone())
                .unwrap_or_default(),
            upstreams: self
                .upstream_names
                .lock()
                .map(|n| n.0.clone())
                .unwrap_or_default(),
        }
    }

    /// Notes `trace_id` as the exemplar of the bucket `took` falls in, on `labels`'
    /// request durations (a kept trace; the calling worker's block).
    pub fn exemplar(&self, labels: &RuleLabels, took: Duration, trace_id: u128) {
        self.with_series(labels, |s| note(&mut s.exemplars, took, trace_id));
    }

    /// Same for an upstream attempt of a kept trace.
    pub fn upstream_exemplar(&self, labels: UpstreamLabels, took: Duration, trace_id: u128) {
        self.with_upstream(labels, |s| note(&mut s.exemplars, took, trace_id));
    }

    /// Every worker's counts summed, with the names behind the labels.
    fn scrape(&self) -> exposition::Scrape {
        let names = self.names();
        let mut rules = vec![Series::default(); names.rules.len()];
        let mut upstreams = vec![UpstreamSeries::default(); names.upstreams.len()];
        if let Ok(blocks) = self.blocks.lock() {
            for block in blocks.iter() {
                let Ok(block) = block.lock() else { continue };
                for (sum, s) in upstreams.iter_mut().zip(&block.upstreams) {
                    sum.merge(s);
                }
                for (sum, s) in rules.iter_mut().zip(&block.series) {
                    sum.merge(s);
                }
            }
        }
        exposition::Scrape {
            names,
            rules,
            upstreams,
            version: self.version.load(Ordering::Relaxed),
            applied: self.applied.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            apply_durations: self
                .apply_durations
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default(),
            handshakes: std::array::from_fn(|i| self.handshakes[i].load(Ordering::Relaxed)),
            process: exposition::Process::default(),
        }
    }

    /// `/metrics` in `format`, with the process's own series (`process`).
    pub fn expose(&self, process: exposition::Process, format: exposition::Format) -> String {
        let mut scrape = self.scrape();
        scrape.process = process;
        scrape.encode(format)
    }
}

/// Keeps the latest exemplar of the bucket `took` falls in.
fn note(exemplars: &mut Option<Box<Exemplars>>, took: Duration, trace_id: u128) {
    let seconds = took.as_secs_f64();
    let i = BUCKETS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(BUCKETS.len());
    exemplars.get_or_insert_default()[i] = Some(Exemplar {
        trace_id,
        value: seconds,
        at: std::time::SystemTime::now(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use exposition::{Format, Process};

    fn two_workers(m: &Arc<Metrics>, work: impl Fn(&Metrics) + Send + Sync + Copy + 'static) {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    m.register_worker();
                    work(&m);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("worker");
        }
    }

    #[test]
    fn sums_workers_and_exposes_prometheus_text() {
        let m = Arc::new(Metrics::default());
        let labels = m.labels("shop/users", "get");
        assert_eq!(m.labels("shop/users", "get"), labels, "interned");
        two_workers(&m, move |m| {
            let labels = m.labels("shop/users", "get");
            m.record(&labels, &http::Method::GET, 200, Duration::from_millis(3));
            m.record(&labels, &http::Method::GET, 200, Duration::from_millis(30));
        });
        m.config_applied(7, true, Duration::from_millis(2));
        m.config_applied(8, false, Duration::from_millis(2));
        let text = m.expose(Process::default(), Format::Prometheus);
        assert!(
            text.contains("# TYPE gatehouse_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("gatehouse_requests_total{route=\"shop/users\",rule=\"get\",method=\"GET\",code=\"200\"} 4"), "{text}");
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{route=\"shop/users\",rule=\"get\",le=\"0.005\"} 2"), "{text}");
        assert!(
            text.contains(
                "gatehouse_request_duration_seconds_count{route=\"shop/users\",rule=\"get\"} 4"
            ),
            "{text}"
        );
        assert!(text.contains("gatehouse_config_version 7"), "{text}");
        assert!(
            text.contains("gatehouse_config_applies_total{result=\"rejected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_config_apply_duration_seconds_count 2"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            !text.contains("trace_id"),
            "no exemplar in the Prometheus format: {text}"
        );
    }

    #[test]
    fn openmetrics_carries_the_latest_trace_of_each_bucket_as_its_exemplar() {
        let m = Arc::new(Metrics::default());
        let labels = m.labels("shop/users", "get");
        let up = m.upstream_labels("shop/users-svc");
        two_workers(&m, move |m| {
            let labels = m.labels("shop/users", "get");
            let up = m.upstream_labels("shop/users-svc");
            m.record(&labels, &http::Method::GET, 200, Duration::from_millis(3));
            m.upstream(up, UpstreamOutcome::Success, Duration::from_millis(2));
        });
        m.register_worker();
        m.exemplar(&labels, Duration::from_millis(3), 0xabc);
        m.upstream_exemplar(up, Duration::from_millis(2), 0xabc);
        m.exemplar(&labels, Duration::from_secs(20), 0xdef);
        let text = m.expose(Process::default(), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE gatehouse_requests counter\n"),
            "{text}"
        );
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {text}"))
                .to_owned()
        };
        let bucket = line(
            "gatehouse_request_duration_seconds_bucket{le=\"0.005\",route=\"shop/users\",rule=\"get\"}",
        );
        assert!(
            bucket.contains(" # {trace_id=\"00000000000000000000000000000abc\"} 0.003 "),
            "{bucket}"
        );
        let inf = line(
            "gatehouse_request_duration_seconds_bucket{le=\"+Inf\",route=\"shop/users\",rule=\"get\"}",
        );
        assert!(
            inf.contains("{trace_id=\"00000000000000000000000000000def\"} 20"),
            "{inf}"
        );
        let other = line(
            "gatehouse_request_duration_seconds_bucket{le=\"0.001\",route=\"shop/users\",rule=\"get\"}",
        );
        assert!(!other.contains('#'), "{other}");
        let upstream = line(
            "gatehouse_upstream_duration_seconds_bucket{le=\"0.0025\",upstream=\"shop/users-svc\"}",
        );
        assert!(upstream.contains("trace_id"), "{upstream}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.register_worker();
        let labels = m.labels("odd\"ns\\/r", "x");
        m.record(&labels, &http::Method::GET, 200, Duration::from_millis(3));
        let text = m.expose(Process::default(), Format::Prometheus);
        assert!(text.contains("route=\"odd\\\"ns\\\\/r\""), "{text}");
    }
}
