//! HTTP on an accepted connection: HTTP/1.1 and h2c (prior knowledge) with the
//! listener's bounds for traffic, plain HTTP/1.1 for the admin surfaces. On TLS with
//! ALPN `h2`, HTTP/2 is the only protocol spoken ([`Builders`]).

use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

use super::limits::MAX_REQUEST_HEAD;

/// The parser's buffer: twice [`MAX_REQUEST_HEAD`], so a head between the two gets the
/// request path's problem+json 431.
const PARSER_BUFFER: usize = 2 * MAX_REQUEST_HEAD;
/// A client must send its whole request head within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams a client may open on one HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 streams reset by the client before being served, at once, per connection.
const MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams we reset for the client's protocol errors, per connection.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Runs hyper's background tasks (HTTP/2 streams, upstream connections) on the
/// thread's `LocalSet`, so they stay on the thread that owns their connection.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// A traffic worker's connection builders.
pub(crate) struct Builders {
    /// Either protocol, by the first bytes: plain connections, TLS without ALPN `h2`.
    pub any: auto::Builder<LocalExec>,
    /// HTTP/2 only: TLS with ALPN `h2` (an HTTP/1.1 request line there is a protocol
    /// error, not a request).
    pub http2: auto::Builder<LocalExec>,
}

impl Builders {
    /// The builders, each with the limits.
    pub fn new() -> Builders {
        Builders {
            any: traffic(),
            http2: traffic().http2_only(),
        }
    }
}

/// The connection builder of a traffic worker: HTTP/1.1 and h2c, with the limits.
fn traffic() -> auto::Builder<LocalExec> {
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        // The header-read timeout is armed for every request: on the worker's wheel.
        .timer(crate::deadline::Timer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(2 * super::limits::MAX_HEADERS)
        .max_buf_size(PARSER_BUFFER)
        .writev(false)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(PARSER_BUFFER as u32)
        // Rapid reset (CVE-2023-44487): streams the client resets before they are
        // served; and streams we reset for the client's errors (a flood of malformed
        // requests). Beyond either: GOAWAY ENHANCE_YOUR_CALM.
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    builder
}
