//! Bodies: every response body the gateway sends ([`Body`]), an upstream's streamed
//! one ([`Streamed`]), and the client's request body as the phases see it
//! ([`RequestBody`]: streamed until a policy needs it whole), held to a minimum rate
//! ([`ClientBody`]).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;

use crate::problem::GatewayError;
use crate::upstream::pool::Received;

/// Every response body: generated (`Full`) or streamed from an upstream.
pub type Body = Either<Full<Bytes>, Streamed>;

/// A generated body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Either::Left(Full::new(bytes))
}

/// An upstream's response body, streamed to the client, holding whatever must live as
/// long as the response does (a concurrency-limit permit). A policy that read the start
/// of it (the cache, finding it too large to store) puts that part back to be sent first.
#[derive(Debug)]
pub struct Streamed {
    replay: Option<Bytes>,
    body: Received,
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The access log line that waits for this body's end, counting its bytes.
    logged: Option<Box<crate::access_log::Pending>>,
}

impl Streamed {
    /// Keeps `held` (a concurrency permit) until the body ends, when the body was made
    /// before it was known which response would be answered (retries).
    pub(crate) fn hold(&mut self, held: Option<tokio::sync::OwnedSemaphorePermit>) {
        if held.is_some() {
            self._held = held;
        }
    }

    pub(crate) fn new(body: Received, held: Option<tokio::sync::OwnedSemaphorePermit>) -> Streamed {
        Streamed {
            replay: None,
            body,
            _held: held,
            logged: None,
        }
    }

    /// Counts the bytes of this body for `line`, written when the body is dropped.
    pub(crate) fn log_at_end(&mut self, line: Box<crate::access_log::Pending>) {
        self.logged = Some(line);
    }

    /// Sends `bytes` before the rest of the body.
    pub(crate) fn replay(&mut self, bytes: Bytes) {
        self.replay = Some(bytes);
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match this.replay.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            None => std::pin::Pin::new(&mut this.body).poll_frame(cx),
        };
        if let (Some(line), std::task::Poll::Ready(Some(Ok(frame)))) = (&mut this.logged, &polled)
            && let Some(data) = frame.data_ref()
        {
            line.sent(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let inner = self.body.size_hint();
        let Some(r) = &self.replay else {
            return inner;
        };
        let n = r.len() as u64;
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower() + n);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + n);
        }
        hint
    }
}

/// A client's body must arrive within this time, plus [`BODY_GRACE_PER_BYTE`] for each
/// byte received: a client dribbling its body (slowloris on the body) is cut off
/// without holding an upstream exchange open (Apache's `mod_reqtimeout` rule).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// More time for each byte received: 2 ms, a minimum rate of 500 bytes/s on average.
pub const BODY_GRACE_PER_BYTE: Duration = Duration::from_micros(2000);

/// The client's body was too slow.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than 500 bytes/s after its first 10 s")]
pub struct BodyTooSlow;

/// The client's request body, cut off when it arrives too slowly. The clock starts when
/// the body is first read (a request may wait in a throttling or concurrency queue
/// before that), and the deadline is armed only when the body is not all there yet, so
/// most requests pay nothing.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    started: Option<tokio::time::Instant>,
    received: u64,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl ClientBody {
    /// The client's body.
    pub(crate) fn new(inner: Incoming) -> ClientBody {
        ClientBody {
            inner,
            started: None,
            received: 0,
            deadline: None,
        }
    }

    fn due(&mut self) -> tokio::time::Instant {
        let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
        let grace =
            BODY_GRACE_PER_BYTE.saturating_mul(u32::try_from(self.received).unwrap_or(u32::MAX));
        started + BODY_TIMEOUT + grace
    }
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let due = this.due();
                    if let Some(d) = &mut this.deadline {
                        d.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let due = this.due();
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` (or what caused it) is [`BodyTooSlow`].
pub(crate) fn too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The client's request body: streamed as it arrives, or already read by a policy.
pub(crate) enum RequestBody {
    Streamed(ClientBody),
    Buffered(Bytes),
}

impl RequestBody {
    /// Whether the body may hold data: not known to be empty. Over HTTP/2 a request
    /// may carry a body without `Content-Length`, so the headers alone cannot say.
    pub fn may_have_data(&self) -> bool {
        match self {
            RequestBody::Streamed(b) => !hyper::body::Body::is_end_stream(b),
            RequestBody::Buffered(b) => !b.is_empty(),
        }
    }

    /// The whole body, at most `limit` bytes (else 413).
    pub async fn read(self, limit: u64) -> Result<Bytes, GatewayError> {
        let body = match self {
            RequestBody::Buffered(b) => return Ok(b),
            RequestBody::Streamed(body) => body,
        };
        match http_body_util::Limited::new(body, limit as usize)
            .collect()
            .await
        {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(GatewayError::PayloadTooLarge(limit))
            }
            Err(e) if too_slow(&*e) => Err(GatewayError::BodyTooSlow),
            Err(_) => Err(GatewayError::BadBody(
                "the request body could not be read".into(),
            )),
        }
    }

    /// The body as sent upstream: streamed within `limit`, or the bytes read.
    pub fn into_upstream(self, limit: u64) -> crate::upstream::pool::UpstreamBody {
        match self {
            RequestBody::Streamed(b) => {
                Either::Left(http_body_util::Limited::new(b, limit as usize))
            }
            RequestBody::Buffered(b) => Either::Right(Full::new(b)),
        }
    }
}

/// Largest upstream response body a response policy reads whole.
pub(crate) const MAX_RESPONSE_EDIT_BYTES: usize = 10 * 1024 * 1024;

/// A response body read whole, up to [`MAX_RESPONSE_EDIT_BYTES`]; `None` when it is
/// larger or breaks off.
pub(crate) async fn read_whole(body: Body) -> Option<Bytes> {
    http_body_util::Limited::new(body, MAX_RESPONSE_EDIT_BYTES)
        .collect()
        .await
        .ok()
        .map(http_body_util::Collected::to_bytes)
}
