//! The access log: one JSON line per request, written off the request path.
//!
//! ```text
//!  worker: finish() ──Entry──▶ its batch (thread-local) ──64 entries, or every 100 ms──▶
//!          bounded queue of batches ──▶ gatehouse-access-log thread: format, write, flush
//! ```
//!
//! A request only copies what its line needs (mostly reference-counted header values and
//! interned label ids) into an [`Entry`]; the JSON is made on the writer's thread, where
//! route, rule and upstream names are looked up. When the queue is full (a destination
//! slower than the traffic), the batch is dropped and counted
//! (`gatehouse_access_log_dropped_total`): a request never waits for the log.
//!
//! What is never logged: the query string (it may hold an API key), request and response
//! headers other than those named below, bodies, credentials.
//!
//! Sampling (`--access-log-sample`): that share of requests is logged, spread evenly per
//! worker; responses with a 5xx status are always logged.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

use crate::metrics::{Metrics, RuleLabels, UpstreamLabels};
use crate::worker::WorkerCounter;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// No access log.
    Off,
    /// Standard output (the default: a container's log).
    Stdout,
    /// Standard error, with the gateway's own log.
    Stderr,
    /// A file, appended to.
    File(std::path::PathBuf),
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        Ok(match s {
            "off" => Destination::Off,
            "stdout" | "-" => Destination::Stdout,
            "stderr" => Destination::Stderr,
            "" => return Err("empty access log destination".into()),
            path => Destination::File(path.into()),
        })
    }
}

/// `--access-log` and `--access-log-sample`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where lines go.
    pub destination: Destination,
    /// Share of requests logged, 0.0 to 1.0 (5xx answers always are).
    pub sample: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            destination: Destination::Stdout,
            sample: 1.0,
        }
    }
}

/// Batches waiting for the writer, at most.
const QUEUE_BATCHES: usize = 256;
/// Entries a worker gathers before handing them over.
const BATCH: usize = 64;
/// How often a worker hands over what it gathered, however little.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The access log of a process.
#[derive(Debug)]
pub struct AccessLog {
    to_writer: Option<SyncSender<Vec<Entry>>>,
    /// Requests logged per million (5xx aside).
    per_million: u64,
    next: WorkerCounter,
    dropped: Arc<AtomicU64>,
}

thread_local! {
    static BATCH_OF_WORKER: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// Opens the destination and starts the writer thread; `metrics` names routes,
    /// rules and upstreams.
    pub fn start(options: &Options, metrics: Arc<Metrics>) -> std::io::Result<AccessLog> {
        let out: Box<dyn std::io::Write + Send> = match &options.destination {
            Destination::Off => return Ok(AccessLog::with(None, 0)),
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::Stderr => Box::new(std::io::stderr()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BATCHES);
        std::thread::Builder::new()
            .name("gatehouse-access-log".into())
            .spawn(move || write_lines(&rx, out, &metrics))?;
        let per_million = (options.sample.clamp(0.0, 1.0) * 1e6).round() as u64;
        Ok(AccessLog::with(Some(tx), per_million))
    }

    fn with(to_writer: Option<SyncSender<Vec<Entry>>>, per_million: u64) -> AccessLog {
        AccessLog {
            to_writer,
            per_million,
            next: WorkerCounter::default(),
            dropped: Arc::default(),
        }
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.to_writer.is_some()
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether a request answered `status` is logged (sampling; 5xx always are).
    pub(crate) fn wanted(&self, status: u16) -> bool {
        status >= 500 || self.next.spread(self.per_million, 1_000_000)
    }

    /// Adds `entry` to this worker's batch, handing the batch over when it is full.
    pub(crate) fn push(&self, entry: Entry) {
        if let Some(tx) = &self.to_writer {
            push(entry, tx, &self.dropped);
        }
    }

    /// The line of a response whose body length is not known at its head: written when
    /// the body ends (or is dropped), with the bytes that went out.
    pub(crate) fn pending(&self, entry: Entry) -> Option<Box<Pending>> {
        let tx = self.to_writer.clone()?;
        Some(Box::new(Pending {
            entry: Some(entry),
            bytes: 0,
            tx,
            dropped: self.dropped.clone(),
        }))
    }

    /// Hands this worker's batch over, however small (the workers' timer).
    pub(crate) fn flush_worker(&self) {
        let batch = BATCH_OF_WORKER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if let Some(tx) = &self.to_writer
            && !batch.is_empty()
        {
            hand_over(batch, tx, &self.dropped);
        }
    }
}

/// Adds `entry` to the calling worker's batch, handing the batch over when it is full.
fn push(entry: Entry, tx: &SyncSender<Vec<Entry>>, dropped: &AtomicU64) {
    let full = BATCH_OF_WORKER.with(|b| {
        let mut b = b.borrow_mut();
        b.push(entry);
        (b.len() >= BATCH).then(|| std::mem::take(&mut *b))
    });
    if let Some(batch) = full {
        hand_over(batch, tx, dropped);
    }
}

fn hand_over(batch: Vec<Entry>, tx: &SyncSender<Vec<Entry>>, dropped: &AtomicU64) {
    match tx.try_send(batch) {
        Ok(()) => {}
        Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
            dropped.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A line waiting for its streamed response body ([`AccessLog::pending`]): the body
/// counts what it sends, and the line goes to the worker's batch when the body is
/// dropped, ended or not.
#[derive(Debug)]
pub(crate) struct Pending {
    entry: Option<Entry>,
    bytes: u64,
    tx: SyncSender<Vec<Entry>>,
    dropped: Arc<AtomicU64>,
}

impl Pending {
    /// `n` more bytes went out.
    pub(crate) fn sent(&mut self, n: usize) {
        self.bytes += n as u64;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.bytes_out = Some(self.bytes);
            push(entry, &self.tx, &self.dropped);
        }
    }
}

/// What the request was, taken when it arrived (cheap clones only).
#[derive(Debug)]
pub(crate) struct Arrived {
    /// Wall-clock time of arrival.
    pub at: SystemTime,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub target: Option<PathAndQuery>,
    /// `Content-Length`, when the request had one.
    pub bytes_in: Option<u64>,
    /// The trace the request carries upstream: the client's `traceparent`, or started
    /// here.
    pub trace: crate::traceparent::TraceContext,
    /// The client sent none (or one not valid): it was started here (and goes upstream
    /// through `Ctx`).
    pub trace_started: bool,
}

impl Arrived {
    /// What `req` is, as it arrived; a request without a valid `traceparent` is given one
    /// here, which the upstream request carries too (the request itself is left as it
    /// is: the listener's limits see what the client sent).
    pub(crate) fn of(req: &http::Request<hyper::body::Incoming>) -> Arrived {
        let headers = req.headers();
        let host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| headers.get(http::header::HOST).cloned());
        let bytes_in = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let (trace, trace_started) = match headers
            .get(crate::headers::TRACEPARENT)
            .and_then(crate::traceparent::parse)
        {
            Some(t) => (t, false),
            // None, or not valid: the trace starts here (W3C Trace Context).
            None => (crate::traceparent::fresh(), true),
        };
        Arrived {
            at: SystemTime::now(),
            method: req.method().clone(),
            host,
            target: req.uri().path_and_query().cloned(),
            bytes_in,
            trace,
            trace_started,
        }
    }
}

/// The last upstream attempt of a request, as the access log shows it.
#[derive(Debug, Clone, Copy)]
pub struct Attempted {
    /// The upstream.
    pub upstream: UpstreamLabels,
    /// The endpoint that answered (or failed).
    pub endpoint: SocketAddr,
    /// Time to its response head (or failure).
    pub took: Duration,
}

/// One line, before it is formatted.
#[derive(Debug)]
pub(crate) struct Entry {
    pub arrived: Arrived,
    pub request_id: HeaderValue,
    pub client: IpAddr,
    pub labels: Option<RuleLabels>,
    pub attempted: Option<Attempted>,
    pub status: u16,
    /// The response body's length: known at its head, or counted as it streamed.
    pub bytes_out: Option<u64>,
    pub duration: Duration,
    pub cache: Option<HeaderValue>,
    pub consumer: Option<std::sync::Arc<str>>,
    /// What refused the request, when the gateway did (`ratelimited`, `auth`, `waf`...).
    pub refused: Option<&'static str>,
}

/// How long the writer rests after writing what it found, so that under load it wakes
/// a few dozen times a second rather than once per batch (a worker never waits for it:
/// the queue holds far more than arrives meanwhile).
const WRITER_PAUSE: Duration = Duration::from_millis(10);

/// The writer thread: formats batches and writes them until every sender is gone.
fn write_lines(rx: &Receiver<Vec<Entry>>, out: Box<dyn std::io::Write + Send>, metrics: &Metrics) {
    let mut out = out;
    let mut text = Vec::with_capacity(64 * 1024);
    let mut clock = Clock::default();
    let mut names = metrics.names();
    while let Ok(first) = rx.recv() {
        // What else is waiting goes in the same write.
        for batch in std::iter::once(first).chain(rx.try_iter()) {
            for e in &batch {
                if !names.covers(e.labels, e.attempted.map(|a| a.upstream)) {
                    names = metrics.names();
                }
                format_line(&mut text, e, &names, &mut clock);
            }
            if text.len() >= 60 * 1024 {
                let _ = out.write_all(&text);
                text.clear();
            }
        }
        let _ = out.write_all(&text);
        let _ = out.flush();
        text.clear();
        // The writer's own thread, never a worker's: resting here delays only lines.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(WRITER_PAUSE);
    }
}

/// The `YYYY-MM-DDTHH:MM:SS` of the last second formatted, kept: lines of the same
/// second share it.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    text: String,
}

impl Clock {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `t`.
    fn write(&mut self, out: &mut Vec<u8>, t: SystemTime) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.second != Some(d.as_secs()) {
            let full = crate::admin::rfc3339(d.as_secs());
            self.text = full[..full.len() - 1].to_owned();
            self.second = Some(d.as_secs());
        }
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'.');
        three_digits(out, d.subsec_millis());
        out.push(b'Z');
    }
}

/// One JSON line for `e`, appended to `out`.
fn format_line(out: &mut Vec<u8>, e: &Entry, names: &crate::metrics::Names, clock: &mut Clock) {
    let a = &e.arrived;
    out.extend_from_slice(b"{\"time\":\"");
    clock.write(out, a.at);
    out.push(b'"');
    field(out, "requestId", e.request_id.to_str().ok());
    let mut trace = [0u8; 32];
    crate::request_id::hex16(&mut trace[..16], (a.trace.trace_id >> 64) as u64);
    crate::request_id::hex16(&mut trace[16..], a.trace.trace_id as u64);
    field(out, "traceId", std::str::from_utf8(&trace).ok());
    let _ = write!(out, ",\"client\":\"{}\"", e.client);
    field(out, "method", Some(a.method.as_str()));
    field(out, "host", a.host.as_ref().and_then(|h| h.to_str().ok()));
    // The path without its query: a query may hold a credential.
    field(out, "path", a.target.as_ref().map(PathAndQuery::path));
    let (route, rule) = e.labels.map_or(("", ""), |l| names.rule(l));
    field(out, "route", Some(route).filter(|r| !r.is_empty()));
    field(out, "rule", Some(rule).filter(|r| !r.is_empty()));
    if let Some(at) = &e.attempted {
        field(out, "upstream", Some(names.upstream(at.upstream)));
        let _ = write!(out, ",\"endpoint\":\"{}\"", at.endpoint);
    }
    number(out, "status", u64::from(e.status));
    if let Some(n) = a.bytes_in {
        number(out, "bytesIn", n);
    }
    if let Some(n) = e.bytes_out {
        number(out, "bytesOut", n);
    }
    millis(out, "durationMs", e.duration);
    if let Some(at) = &e.attempted {
        millis(out, "upstreamMs", at.took);
    }
    field(out, "cache", e.cache.as_ref().and_then(|c| c.to_str().ok()));
    field(out, "consumer", e.consumer.as_deref());
    field(out, "refused", e.refused);
    out.extend_from_slice(b"}\n");
}

/// `,"name":1.234`: milliseconds with three decimals (whole microseconds).
fn millis(out: &mut Vec<u8>, name: &str, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    number(out, name, us / 1000);
    out.push(b'.');
    three_digits(out, (us % 1000) as u32);
}

/// `,"name":n`.
fn number(out: &mut Vec<u8>, name: &str, n: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` (below 1000) as three digits.
fn three_digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// `,"name":"value"` with the value escaped as JSON needs, when there is one.
fn field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    let Some(v) = value else { return };
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    let mut plain = 0;
    for (i, b) in v.bytes().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&v.as_bytes()[plain..i]);
                let _ = write!(out, "\\u{b:04x}");
                plain = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&v.as_bytes()[plain..i]);
        out.extend_from_slice(escaped);
        plain = i + 1;
    }
    out.extend_from_slice(&v.as_bytes()[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: u16) -> Entry {
        Entry {
            arrived: Arrived {
                at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_750_245_123),
                method: Method::GET,
                host: Some(HeaderValue::from_static("api.example.com")),
                target: Some(PathAndQuery::from_static("/users/7?api_key=secret")),
                bytes_in: Some(0),
                trace: crate::traceparent::TraceContext {
                    trace_id: 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
                    span_id: 0xb7ad_6b71_6920_3331,
                    sampled: true,
                },
                trace_started: false,
            },
            request_id: HeaderValue::from_static("rid\"1"),
            client: IpAddr::from([10, 0, 0, 1]),
            labels: None,
            attempted: None,
            status,
            bytes_out: Some(12),
            duration: Duration::from_micros(1500),
            cache: None,
            consumer: Some(std::sync::Arc::from("alice")),
            refused: None,
        }
    }

    #[test]
    fn a_line_is_json_without_the_query() {
        let mut out = Vec::new();
        let mut clock = Clock::default();
        format_line(
            &mut out,
            &entry(200),
            &crate::metrics::Names::default(),
            &mut clock,
        );
        let line = String::from_utf8(out).expect("utf-8");
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["time"], "2026-11-27T03:30:45.123Z");
        assert_eq!(v["requestId"], "rid\"1");
        assert_eq!(v["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["path"], "/users/7");
        assert_eq!(v["status"], 200);
        assert_eq!(v["durationMs"], 1.5);
        assert_eq!(v["consumer"], "alice");
        assert!(!line.contains("secret"));
    }

    #[test]
    fn values_are_escaped_as_json_needs() {
        for v in [
            "plain",
            "quote\" back\\slash",
            "tab\tnew\nline\r",
            "ctl\u{1}\u{1f}",
            "é ✓ 日本",
        ] {
            let mut out = Vec::new();
            field(&mut out, "k", Some(v));
            let text = format!(
                "{{{}}}",
                String::from_utf8(out[1..].to_vec()).expect("utf-8")
            );
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(parsed["k"], v, "{text}");
        }
        let mut out = Vec::new();
        millis(&mut out, "d", Duration::from_micros(12_345_678));
        assert_eq!(out, b",\"d\":12345.678");
        // Lines of the same second share the clock's text; the next second renews it.
        let mut clock = Clock::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_750_245_123);
        let mut out = Vec::new();
        clock.write(&mut out, t);
        clock.write(&mut out, t + Duration::from_millis(900));
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "2026-11-27T03:30:45.123Z2026-11-27T03:30:46.023Z"
        );
    }

    #[test]
    fn sampling_keeps_the_share_and_every_5xx() {
        let log = AccessLog::with(None, 250_000);
        let kept = (0..400).filter(|_| log.wanted(200)).count();
        assert_eq!(kept, 100);
        assert!((0..10).all(|_| log.wanted(503)));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let log = AccessLog::with(Some(tx), 1_000_000);
        for _ in 0..BATCH {
            log.push(entry(200));
        }
        assert_eq!(log.dropped(), 0, "the first batch is queued");
        for _ in 0..BATCH {
            log.push(entry(404));
        }
        assert_eq!(
            log.dropped(),
            BATCH as u64,
            "the second batch found the queue full"
        );
    }

    #[test]
    fn a_pending_line_is_written_with_the_bytes_its_body_sent() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let log = AccessLog::with(Some(tx), 1_000_000);
        let mut line = log.pending(entry(200)).expect("the log is on");
        line.sent(10);
        line.sent(5);
        log.flush_worker();
        assert!(rx.try_recv().is_err(), "nothing before the body ends");
        drop(line);
        log.flush_worker();
        let batch = rx.try_recv().expect("the line, once the body is dropped");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].bytes_out, Some(15));
        assert!(AccessLog::with(None, 0).pending(entry(200)).is_none());
    }
}
