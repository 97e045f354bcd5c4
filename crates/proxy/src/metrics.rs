//! Metrics, recorded per worker thread and summed when scraped.
//!
//! Each worker owns one block; recording locks only that block's mutex, which nothing
//! else takes except a scrape, so the request path never waits on another thread.
//! Label sets (route, rule) are interned when a table is applied and get a dense id, so
//! recording indexes a vector instead of hashing strings, and a series keeps its slot
//! across tables. Names follow `spec/runtime.md`.

use crate::listener::tls::Handshake;
use crate::policy::waf::Matched;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
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

    fn label(self) -> &'static str {
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
    fn series(self) -> (&'static str, &'static str) {
        match self {
            Counter::RateLimited => ("gatehouse_ratelimit_rejected_total", ""),
            Counter::LimiterFailOpen => (
                "gatehouse_ratelimit_backend_errors_total",
                "failure_mode=\"Open\"",
            ),
            Counter::LimiterFailClosed => (
                "gatehouse_ratelimit_backend_errors_total",
                "failure_mode=\"Closed\"",
            ),
            Counter::CacheHit => ("gatehouse_cache_requests_total", "result=\"hit\""),
            Counter::CacheMiss => ("gatehouse_cache_requests_total", "result=\"miss\""),
            Counter::CacheBypass => ("gatehouse_cache_requests_total", "result=\"bypass\""),
            Counter::ValidationRequest => (
                "gatehouse_validation_failures_total",
                "direction=\"request\"",
            ),
            Counter::ValidationResponse => (
                "gatehouse_validation_failures_total",
                "direction=\"response\"",
            ),
            Counter::AuthApiKey => ("gatehouse_auth_failures_total", "method=\"apiKey\""),
            Counter::AuthJwt => ("gatehouse_auth_failures_total", "method=\"jwt\""),
            Counter::AuthBasic => ("gatehouse_auth_failures_total", "method=\"basic\""),
            Counter::AuthExternal => ("gatehouse_auth_failures_total", "method=\"external\""),
            Counter::AuthNone => ("gatehouse_auth_failures_total", "method=\"none\""),
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

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let names = self
            .labels
            .lock()
            .map(|i| i.names.clone())
            .unwrap_or_default();
        let mut requests: HashMap<(&(String, String), &'static str, u16), u64> = HashMap::new();
        let mut durations: HashMap<&(String, String), Histogram> = HashMap::new();
        let mut counted: std::collections::BTreeMap<(&str, usize), u64> = Default::default();
        let mut waf: std::collections::BTreeMap<(&str, &'static str, &'static str), u64> =
            Default::default();
        let upstream_names = self
            .upstream_names
            .lock()
            .map(|n| n.0.clone())
            .unwrap_or_default();
        let mut upstreams = vec![UpstreamSeries::default(); upstream_names.len()];
        if let Ok(blocks) = self.blocks.lock() {
            for block in blocks.iter() {
                let Ok(block) = block.lock() else { continue };
                for (sum, s) in upstreams.iter_mut().zip(&block.upstreams) {
                    for (a, b) in sum.outcomes.iter_mut().zip(s.outcomes) {
                        *a += b;
                    }
                    for (a, b) in sum.retries.iter_mut().zip(s.retries) {
                        *a += b;
                    }
                    for (a, b) in sum.mirrors.iter_mut().zip(s.mirrors) {
                        *a += b;
                    }
                    sum.durations.merge(&s.durations);
                }
                for (labels, series) in names.iter().zip(&block.series) {
                    for (method, code, n) in &series.requests {
                        *requests.entry((labels, method, *code)).or_default() += n;
                    }
                    for (i, n) in series.counts.iter().enumerate() {
                        if *n > 0 {
                            *counted.entry((labels.0.as_str(), i)).or_default() += n;
                        }
                    }
                    for (matched, by_action) in Matched::ALL.iter().zip(&series.waf) {
                        for (action, n) in
                            [WafAction::Block, WafAction::Detect].iter().zip(by_action)
                        {
                            if *n > 0 {
                                *waf.entry((labels.0.as_str(), matched.label(), action.label()))
                                    .or_default() += n;
                            }
                        }
                    }
                    if series.durations.count > 0 {
                        durations
                            .entry(labels)
                            .or_default()
                            .merge(&series.durations);
                    }
                }
            }
        }
        let mut out = String::new();
        out.push_str(
            "# HELP gatehouse_requests_total Requests by route, rule, method and status code.\n",
        );
        out.push_str("# TYPE gatehouse_requests_total counter\n");
        let mut rows: Vec<_> = requests.into_iter().collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (((route, rule), method, code), n) in rows {
            let _ = writeln!(
                out,
                "gatehouse_requests_total{{route=\"{}\",rule=\"{}\",method=\"{method}\",code=\"{code}\"}} {n}",
                escape(route),
                escape(rule)
            );
        }
        out.push_str(
            "# HELP gatehouse_request_duration_seconds Time from request to response head.\n",
        );
        out.push_str("# TYPE gatehouse_request_duration_seconds histogram\n");
        let mut rows: Vec<_> = durations.into_iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        for ((route, rule), h) in rows {
            let labels = format!("route=\"{}\",rule=\"{}\"", escape(route), escape(rule));
            histogram(&mut out, "gatehouse_request_duration_seconds", &labels, &h);
        }
        for (family, help) in COUNTER_FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            for ((route, i), n) in &counted {
                let (name, extra) = Counter::ALL[*i].series();
                if name == family {
                    let sep = if extra.is_empty() { "" } else { "," };
                    let _ = writeln!(
                        out,
                        "{family}{{route=\"{}\"{sep}{extra}}} {n}",
                        escape(route)
                    );
                }
            }
        }
        out.push_str("# HELP gatehouse_waf_matches_total WAF matches (in Detect mode one request may match more than once), by route, WAF rule (a native family, CoreRuleSet, DenyCidrs, AllowCidrs) and action (block, detect).\n# TYPE gatehouse_waf_matches_total counter\n");
        for ((route, rule, action), n) in &waf {
            let _ = writeln!(
                out,
                "gatehouse_waf_matches_total{{route=\"{}\",rule=\"{rule}\",action=\"{action}\"}} {n}",
                escape(route)
            );
        }
        render_upstreams(&mut out, &upstream_names, &upstreams);
        let _ = writeln!(
            out,
            "# HELP gatehouse_config_version Version of the table being served.\n# TYPE gatehouse_config_version gauge\ngatehouse_config_version {}",
            self.version.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_config_applies_total Tables applied or rejected.\n# TYPE gatehouse_config_applies_total counter\ngatehouse_config_applies_total{{result=\"applied\"}} {}\ngatehouse_config_applies_total{{result=\"rejected\"}} {}",
            self.applied.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP gatehouse_config_apply_duration_seconds Time to prepare and swap a table.\n",
        );
        out.push_str("# TYPE gatehouse_config_apply_duration_seconds histogram\n");
        let h = self
            .apply_durations
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        histogram(&mut out, "gatehouse_config_apply_duration_seconds", "", &h);
        out.push_str("# HELP gatehouse_tls_handshakes_total TLS handshakes on the HTTPS listener by result.\n# TYPE gatehouse_tls_handshakes_total counter\n");
        for (h, n) in Handshake::ALL.iter().zip(&self.handshakes) {
            let _ = writeln!(
                out,
                "gatehouse_tls_handshakes_total{{result=\"{}\"}} {}",
                h.label(),
                n.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// The upstream families counted per worker.
fn render_upstreams(out: &mut String, names: &[String], series: &[UpstreamSeries]) {
    let rows: Vec<(&String, &UpstreamSeries)> = {
        let mut rows: Vec<_> = names.iter().zip(series).collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows
    };
    out.push_str("# HELP gatehouse_upstream_requests_total Attempts sent to upstreams (retries included), by outcome: success (below 500), error (5xx), timeout, reset (broken before the response head), refused (no connection).\n# TYPE gatehouse_upstream_requests_total counter\n");
    for (name, s) in &rows {
        for (o, n) in UpstreamOutcome::ALL.iter().zip(s.outcomes) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "gatehouse_upstream_requests_total{{upstream=\"{}\",outcome=\"{}\"}} {n}",
                    escape(name),
                    o.label()
                );
            }
        }
    }
    out.push_str("# HELP gatehouse_upstream_duration_seconds Time from sending an attempt to its response head (or failure).\n# TYPE gatehouse_upstream_duration_seconds histogram\n");
    for (name, s) in &rows {
        if s.durations.count > 0 {
            let labels = format!("upstream=\"{}\"", escape(name));
            histogram(
                out,
                "gatehouse_upstream_duration_seconds",
                &labels,
                &s.durations,
            );
        }
    }
    out.push_str("# HELP gatehouse_upstream_retries_total Retries sent, and retries the retry budget refused.\n# TYPE gatehouse_upstream_retries_total counter\n");
    for (name, s) in &rows {
        for (result, n) in ["sent", "budget_exhausted"].iter().zip(s.retries) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "gatehouse_upstream_retries_total{{upstream=\"{}\",result=\"{result}\"}} {n}",
                    escape(name)
                );
            }
        }
    }
    out.push_str("# HELP gatehouse_mirror_requests_total Copies of requests for mirror upstreams: sent, or dropped because too many were in flight or the body was too large to copy.\n# TYPE gatehouse_mirror_requests_total counter\n");
    for (name, s) in &rows {
        for (o, n) in MirrorOutcome::ALL.iter().zip(s.mirrors) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "gatehouse_mirror_requests_total{{upstream=\"{}\",result=\"{}\"}} {n}",
                    escape(name),
                    o.label()
                );
            }
        }
    }
}

/// The live gauges of upstreams: endpoints by state and the breaker's state, for
/// `(id, [healthy, ejected, unhealthy], breaker state or None without a breaker)`.
pub fn render_upstream_gauges(out: &mut String, upstreams: &[(String, [usize; 3], Option<u8>)]) {
    out.push_str("# HELP gatehouse_upstream_endpoints Endpoints of each upstream by state: healthy (in rotation), ejected (passive checks), unhealthy (active checks).\n# TYPE gatehouse_upstream_endpoints gauge\n");
    for (id, counts, _) in upstreams {
        for (state, n) in ["healthy", "ejected", "unhealthy"].iter().zip(counts) {
            let _ = writeln!(
                out,
                "gatehouse_upstream_endpoints{{upstream=\"{}\",state=\"{state}\"}} {n}",
                escape(id)
            );
        }
    }
    out.push_str("# HELP gatehouse_circuit_state Circuit breaker state of each upstream with a breaker: 0 closed, 1 half-open, 2 open.\n# TYPE gatehouse_circuit_state gauge\n");
    for (id, _, state) in upstreams {
        if let Some(state) = state {
            let _ = writeln!(
                out,
                "gatehouse_circuit_state{{upstream=\"{}\"}} {state}",
                escape(id)
            );
        }
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in BUCKETS.iter().zip(h.counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// Label values escape `\`, `"` and newlines.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_and_renders_prometheus_text() {
        let m = Arc::new(Metrics::default());
        let labels = m.labels("shop/users", "get");
        assert_eq!(m.labels("shop/users", "get"), labels, "interned");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    m.register_worker();
                    m.record(&labels, &http::Method::GET, 200, Duration::from_millis(3));
                    m.record(&labels, &http::Method::GET, 200, Duration::from_millis(30));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("worker");
        }
        m.config_applied(7, true, Duration::from_millis(2));
        m.config_applied(8, false, Duration::from_millis(2));
        let text = m.render();
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
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
