//! `/metrics`: what the workers counted, summed, encoded by the `prometheus-client`
//! crate.
//!
//! A scrape sums the workers' blocks into a [`Scrape`], registers it as the one
//! collector of a fresh registry and lets the crate write the exposition: the
//! Prometheus text format (0.0.4) by default, OpenMetrics 1.0 when the scraper's
//! `Accept` asks for it ([`Format::negotiate`]).
//!
//! OpenMetrics carries exemplars: each bucket of `gatehouse_request_duration_seconds`
//! and `gatehouse_upstream_duration_seconds` names the latest kept trace that fell in
//! it (`# {trace_id="…"} value timestamp`). The crate writes exemplars only for its own
//! histogram type, whose counts live behind a lock shared by every thread, which the
//! request path must not take; and it offers no public way to build an exemplar for a
//! collector. So the encoded text gets them here, after the bucket lines, in the syntax
//! of the OpenMetrics specification (`exemplars_of_buckets`). The Prometheus format has
//! no exemplars.

use std::collections::HashMap;
use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar as CrateExemplar;
use prometheus_client::registry::Registry;

use super::{
    BUCKETS, COUNTER_FAMILIES, Counter, Exemplars, Histogram, Matched, MirrorOutcome, Names,
    RuleLabels, Series, UpstreamLabels, UpstreamOutcome, UpstreamSeries, WafAction,
};
use crate::listener::tls::Handshake;

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `accept` lists `application/openmetrics-text` (with a non-zero
    /// `q`), as Prometheus does; else the Prometheus text format.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Format {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
            return Format::Prometheus;
        };
        let wanted = accept.split(',').any(|item| {
            let mut params = item.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        });
        if wanted {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Series the process knows outside the workers' blocks.
#[derive(Debug, Default)]
pub struct Process {
    /// `gatehouse_access_log_dropped_total`, when the access log is on.
    pub access_log_dropped: Option<u64>,
    /// `gatehouse_trace_spans_total` (exported, dropped, failed), when tracing is on.
    pub trace_spans: Option<[u64; 3]>,
    /// The served table's upstreams, for their gauges.
    pub upstreams: Vec<UpstreamGauges>,
}

/// The live gauges of one upstream.
#[derive(Debug)]
pub struct UpstreamGauges {
    /// `namespace/name`.
    pub id: String,
    /// Endpoints healthy, ejected (passive checks) and unhealthy (active checks).
    pub endpoints: [usize; 3],
    /// The breaker's state (0 closed, 1 half-open, 2 open), when it has one.
    pub breaker: Option<u8>,
}

/// Every worker's counts summed, ready to encode.
#[derive(Debug)]
pub(super) struct Scrape {
    pub names: Names,
    /// By rule label id.
    pub rules: Vec<Series>,
    /// By upstream label id.
    pub upstreams: Vec<UpstreamSeries>,
    pub version: u64,
    pub applied: u64,
    pub rejected: u64,
    pub apply_durations: Histogram,
    pub handshakes: [u64; Handshake::ALL.len()],
    pub process: Process,
}

/// The histogram families that carry exemplars.
const REQUEST_DURATIONS: &str = "gatehouse_request_duration_seconds";
const UPSTREAM_DURATIONS: &str = "gatehouse_upstream_duration_seconds";

impl Scrape {
    /// The exposition in `format`.
    pub(super) fn encode(self, format: Format) -> String {
        // Exemplars by the labels of their series, before the registry takes the data.
        let exemplars = match format {
            Format::OpenMetrics => self.exemplars(),
            Format::Prometheus => HashMap::new(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        if encoded.is_err() {
            // Writing to a String only fails if an encoder refuses a value; say so
            // rather than serve half an exposition.
            tracing::error!("the metrics could not be encoded");
            return String::new();
        }
        if exemplars.is_empty() {
            out
        } else {
            exemplars_of_buckets(&out, &exemplars)
        }
    }

    /// `{family}_bucket{labels}` → the series' exemplars.
    fn exemplars(&self) -> HashMap<String, Exemplars> {
        let mut all = HashMap::new();
        for (i, s) in self.rules.iter().enumerate() {
            if let Some(e) = &s.exemplars {
                let (route, rule) = self.rule_names(i);
                let key = format!(
                    "{REQUEST_DURATIONS}_bucket{{route=\"{}\",rule=\"{}\"}}",
                    escape(route),
                    escape(rule)
                );
                all.insert(key, **e);
            }
        }
        for (i, s) in self.upstreams.iter().enumerate() {
            if let Some(e) = &s.exemplars {
                let id = self.names.upstream(UpstreamLabels(i as u32));
                all.insert(
                    format!("{UPSTREAM_DURATIONS}_bucket{{upstream=\"{}\"}}", escape(id)),
                    **e,
                );
            }
        }
        all
    }

    /// Route and rule of the series with label id `i`.
    fn rule_names(&self, i: usize) -> (&str, &str) {
        self.names.rule(RuleLabels(i as u32))
    }

    /// Upstream series with their names, sorted by name.
    fn upstream_rows(&self) -> Vec<(&str, &UpstreamSeries)> {
        let mut rows: Vec<(&str, &UpstreamSeries)> = self
            .names
            .upstreams
            .iter()
            .map(String::as_str)
            .zip(&self.upstreams)
            .collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Requests by route, rule, method, code.
        let mut requests = Vec::new();
        for (i, s) in self.rules.iter().enumerate() {
            let (route, rule) = self.rule_names(i);
            for (method, code, n) in &s.requests {
                requests.push(((route, rule, *method, *code), *n));
            }
        }
        requests.sort_by(|a, b| a.0.cmp(&b.0));
        let mut f = counter(
            &mut enc,
            "gatehouse_requests_total",
            "Requests by route, rule, method and status code.",
        )?;
        for ((route, rule, method, code), n) in requests {
            let code = code.to_string();
            let labels = [
                ("route", route),
                ("rule", rule),
                ("method", method),
                ("code", code.as_str()),
            ];
            f.encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
        }

        let mut durations: Vec<((&str, &str), &Histogram)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, s)| s.durations.count > 0)
            .map(|(i, s)| (self.rule_names(i), &s.durations))
            .collect();
        durations.sort_by(|a, b| a.0.cmp(&b.0));
        let mut f = enc.encode_descriptor(
            REQUEST_DURATIONS,
            "Time from request to response head.",
            None,
            MetricType::Histogram,
        )?;
        for ((route, rule), h) in durations {
            histogram(
                &mut f.encode_family(&[("route", route), ("rule", rule)])?,
                h,
            )?;
        }

        // Policy outcomes per route, summed over its rules.
        let mut counted: std::collections::BTreeMap<(&str, usize), u64> = Default::default();
        let mut waf: std::collections::BTreeMap<(&str, &'static str, &'static str), u64> =
            Default::default();
        for (i, s) in self.rules.iter().enumerate() {
            let (route, _) = self.rule_names(i);
            for (c, n) in s.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                *counted.entry((route, c)).or_default() += n;
            }
            for (matched, by_action) in Matched::ALL.iter().zip(&s.waf) {
                for (action, n) in [WafAction::Block, WafAction::Detect].iter().zip(by_action) {
                    if *n > 0 {
                        *waf.entry((route, matched.label(), action.label()))
                            .or_default() += n;
                    }
                }
            }
        }
        for (family, help) in COUNTER_FAMILIES {
            let mut f = counter(&mut enc, family, help)?;
            for ((route, i), n) in &counted {
                let (name, extra) = Counter::ALL[*i].series();
                if name != family {
                    continue;
                }
                let mut labels = vec![("route", *route)];
                labels.extend(extra);
                f.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
            }
        }
        let mut f = counter(
            &mut enc,
            "gatehouse_waf_matches_total",
            "WAF matches (in Detect mode one request may match more than once), by route, WAF rule (a native family, CoreRuleSet, DenyCidrs, AllowCidrs) and action (block, detect).",
        )?;
        for ((route, rule, action), n) in &waf {
            f.encode_family(&[("route", *route), ("rule", *rule), ("action", *action)])?
                .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
        }

        self.encode_upstreams(&mut enc)?;

        let mut f = enc.encode_descriptor(
            "gatehouse_config_version",
            "Version of the table being served.",
            None,
            MetricType::Gauge,
        )?;
        f.encode_gauge(&self.version)?;
        let mut f = counter(
            &mut enc,
            "gatehouse_config_applies_total",
            "Tables applied or rejected.",
        )?;
        for (result, n) in [("applied", self.applied), ("rejected", self.rejected)] {
            f.encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, u64, u64>(&n, None)?;
        }
        let mut f = enc.encode_descriptor(
            "gatehouse_config_apply_duration_seconds",
            "Time to prepare and swap a table.",
            None,
            MetricType::Histogram,
        )?;
        histogram(&mut f, &self.apply_durations)?;
        let mut f = counter(
            &mut enc,
            "gatehouse_tls_handshakes_total",
            "TLS handshakes on the HTTPS listener by result.",
        )?;
        for (h, n) in Handshake::ALL.iter().zip(&self.handshakes) {
            f.encode_family(&[("result", h.label())])?
                .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
        }
        self.encode_process(&mut enc)
    }
}

impl Scrape {
    /// The upstream families counted per worker.
    fn encode_upstreams(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.upstream_rows();
        let mut f = counter(
            enc,
            "gatehouse_upstream_requests_total",
            "Attempts sent to upstreams (retries included), by outcome: success (below 500), error (5xx), timeout, reset (broken before the response head), refused (no connection).",
        )?;
        for (name, s) in &rows {
            for (o, n) in UpstreamOutcome::ALL.iter().zip(&s.outcomes) {
                if *n > 0 {
                    f.encode_family(&[("upstream", *name), ("outcome", o.label())])?
                        .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
                }
            }
        }
        let mut f = enc.encode_descriptor(
            UPSTREAM_DURATIONS,
            "Time from sending an attempt to its response head (or failure).",
            None,
            MetricType::Histogram,
        )?;
        for (name, s) in &rows {
            if s.durations.count > 0 {
                histogram(&mut f.encode_family(&[("upstream", *name)])?, &s.durations)?;
            }
        }
        let mut f = counter(
            enc,
            "gatehouse_upstream_retries_total",
            "Retries sent, and retries the retry budget refused.",
        )?;
        for (name, s) in &rows {
            for (result, n) in ["sent", "budget_exhausted"].iter().zip(&s.retries) {
                if *n > 0 {
                    f.encode_family(&[("upstream", *name), ("result", *result)])?
                        .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
                }
            }
        }
        let mut f = counter(
            enc,
            "gatehouse_mirror_requests_total",
            "Copies of requests for mirror upstreams: sent, or dropped because too many were in flight or the body was too large to copy.",
        )?;
        for (name, s) in &rows {
            for (o, n) in MirrorOutcome::ALL.iter().zip(&s.mirrors) {
                if *n > 0 {
                    f.encode_family(&[("upstream", *name), ("result", o.label())])?
                        .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
                }
            }
        }
        Ok(())
    }

    /// What the process knows outside the blocks: the access log's and the exporter's
    /// drops, the upstreams' live gauges.
    fn encode_process(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.process;
        if let Some(dropped) = p.access_log_dropped {
            counter(
                enc,
                "gatehouse_access_log_dropped_total",
                "Access log lines dropped because the writer fell behind (requests never wait for the log).",
            )?
            .encode_counter::<NoLabelSet, u64, u64>(&dropped, None)?;
        }
        if let Some(spans) = p.trace_spans {
            let mut f = counter(
                enc,
                "gatehouse_trace_spans_total",
                "Spans of kept traces: exported, dropped because the exporter's queue was full, or failed (the collector refused them or could not be reached).",
            )?;
            for (result, n) in ["exported", "dropped", "failed"].iter().zip(&spans) {
                f.encode_family(&[("result", *result)])?
                    .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
            }
        }
        let mut f = enc.encode_descriptor(
            "gatehouse_upstream_endpoints",
            "Endpoints of each upstream by state: healthy (in rotation), ejected (passive checks), unhealthy (active checks).",
            None,
            MetricType::Gauge,
        )?;
        for u in &p.upstreams {
            for (state, n) in ["healthy", "ejected", "unhealthy"].iter().zip(u.endpoints) {
                f.encode_family(&[("upstream", u.id.as_str()), ("state", *state)])?
                    .encode_gauge(&(n as u64))?;
            }
        }
        let mut f = enc.encode_descriptor(
            "gatehouse_circuit_state",
            "Circuit breaker state of each upstream with a breaker: 0 closed, 1 half-open, 2 open.",
            None,
            MetricType::Gauge,
        )?;
        for u in &p.upstreams {
            if let Some(state) = u.breaker {
                f.encode_family(&[("upstream", u.id.as_str())])?
                    .encode_gauge(&u64::from(state))?;
            }
        }
        Ok(())
    }
}

/// The descriptor of counter family `name` (the encoder adds `_total` to the samples).
fn counter<'s>(
    enc: &'s mut DescriptorEncoder,
    name: &'s str,
    help: &str,
) -> Result<prometheus_client::encoding::MetricEncoder<'s>, std::fmt::Error> {
    let name = name.strip_suffix("_total").unwrap_or(name);
    enc.encode_descriptor(name, help, None, MetricType::Counter)
}

/// One histogram series: the buckets of [`BUCKETS`], then `+Inf` with what is above.
fn histogram(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    h: &Histogram,
) -> Result<(), std::fmt::Error> {
    let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.counts).collect();
    let below: u64 = h.counts.iter().sum();
    buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
    m.encode_histogram::<NoLabelSet>(
        h.sum,
        h.count,
        &buckets,
        None::<&HashMap<usize, CrateExemplar<NoLabelSet, f64>>>,
    )
}

/// `text` with each bucket line of a series in `exemplars` followed by its bucket's
/// exemplar, when it has one: ` # {trace_id="<32 hex>"} <seconds> <unix time>`.
fn exemplars_of_buckets(text: &str, exemplars: &HashMap<String, Exemplars>) -> String {
    let mut out = String::with_capacity(text.len() + exemplars.len() * 256);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if let Some((series, bucket)) = bucket_of(body)
            && let Some(Some(e)) = exemplars.get(&series).and_then(|e| e.get(bucket))
        {
            let at =
                e.at.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
            let _ = writeln!(
                out,
                "{body} # {{trace_id=\"{:032x}\"}} {} {}.{:03}",
                e.trace_id,
                e.value,
                at.as_secs(),
                at.subsec_millis()
            );
        } else {
            out.push_str(line);
        }
    }
    out
}

/// For a bucket line of a histogram with exemplars: its series key
/// (`{family}_bucket{labels but le}`) and its bucket's index in [`Exemplars`]. The
/// OpenMetrics encoder writes `le` first; the bound is looked up, not assumed.
fn bucket_of(line: &str) -> Option<(String, usize)> {
    if !line.starts_with(REQUEST_DURATIONS) && !line.starts_with(UPSTREAM_DURATIONS) {
        return None;
    }
    let (name, rest) = line.split_once('{')?;
    if !name.ends_with("_bucket") {
        return None;
    }
    let labels = &rest[..rest.rfind('}')?];
    // `le` at the start, or after the closing quote of another label's value.
    let start = if labels.starts_with("le=\"") {
        0
    } else {
        labels
            .match_indices(",le=\"")
            .find(|(i, _)| labels[..*i].ends_with('"') && !labels[..*i].ends_with("\\\""))?
            .0
            + 1
    };
    let value_at = start + "le=\"".len();
    let len = labels[value_at..].find('"')?;
    let le = &labels[value_at..value_at + len];
    let end = value_at + len + 1;
    let others = match (&labels[..start], labels[end..].strip_prefix(',')) {
        (before, Some(after)) => format!("{before}{after}"),
        (before, None) => before.trim_end_matches(',').to_owned(),
    };
    let i = if le == "+Inf" {
        BUCKETS.len()
    } else {
        let v: f64 = le.parse().ok()?;
        BUCKETS.iter().position(|b| *b == v)?
    };
    Some((format!("{name}{{{others}}}"), i))
}

/// A label value as the exposition formats escape it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_chosen_when_the_scraper_lists_it() {
        let f = |a: &'static str| Format::negotiate(Some(&http::HeaderValue::from_static(a)));
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(f("text/plain"), Format::Prometheus);
        assert_eq!(f("*/*"), Format::Prometheus);
        assert_eq!(
            f(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            ),
            Format::OpenMetrics
        );
        assert_eq!(
            f("application/openmetrics-text; q=0, text/plain"),
            Format::Prometheus
        );
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert!(
            Format::Prometheus
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }

    #[test]
    fn bucket_lines_are_found_by_series_and_bound() {
        let key = |s: &str| Some(s.to_owned());
        let of = bucket_of;
        assert_eq!(
            of("gatehouse_request_duration_seconds_bucket{route=\"a\",rule=\"b\",le=\"0.005\"} 3"),
            key("gatehouse_request_duration_seconds_bucket{route=\"a\",rule=\"b\"}")
                .map(|k| (k, 2))
        );
        assert_eq!(
            of("gatehouse_request_duration_seconds_bucket{le=\"1.0\",route=\"a\",rule=\"b\"} 3"),
            key("gatehouse_request_duration_seconds_bucket{route=\"a\",rule=\"b\"}")
                .map(|k| (k, 9))
        );
        assert_eq!(
            of("gatehouse_upstream_duration_seconds_bucket{le=\"+Inf\",upstream=\"u\"} 3"),
            key("gatehouse_upstream_duration_seconds_bucket{upstream=\"u\"}")
                .map(|k| (k, BUCKETS.len()))
        );
        // A value that only looks like a bound is not one.
        assert_eq!(
            of(
                "gatehouse_upstream_duration_seconds_bucket{upstream=\"x,le=\\\"1\",le=\"0.001\"} 3"
            ),
            key("gatehouse_upstream_duration_seconds_bucket{upstream=\"x,le=\\\"1\"}")
                .map(|k| (k, 0))
        );
        assert_eq!(
            of("gatehouse_request_duration_seconds_count{route=\"a\",rule=\"b\"} 3"),
            None
        );
        assert_eq!(of("gatehouse_requests_total{route=\"a\"} 1"), None);
    }
}
