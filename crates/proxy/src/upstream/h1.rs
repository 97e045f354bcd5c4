//! HTTP/1.1 to an upstream on the request's own task, for a request whose body is known
//! before it is sent: none (most API calls) or one a policy already read, up to
//! [`MAX_INLINE_BODY`]. Head and body leave in one write; the response head is read and
//! parsed here, and the body is read from the connection by whoever polls it. There is
//! no connection task, channel or hand-off per request: in `make bench` those were the
//! largest user-space share of a proxied request through hyper's client. Streamed
//! request bodies (which may need sending and receiving at once), upgrades and HTTP/2
//! go through hyper's client (`pool.rs`).
//!
//! Response framing (RFC 9112 §6.3): no body for HEAD, 1xx, 204 and 304; chunked when
//! `Transfer-Encoding` ends in `chunked` (its `Content-Length`, if any, is dropped);
//! another transfer coding, or neither header, reads until the upstream closes;
//! otherwise `Content-Length`, whose values must agree. Interim 1xx answers are skipped.
//! A connection goes back to the worker's idle list once its response was read to the
//! end with nothing after it, and the upstream did not ask to close; it waits there at
//! most the upstream's `timeouts.idle`. A response body dropped before its end takes
//! its connection with it.
//!
//! Keep-alive races: an idle connection is probed (without a system call while it is
//! quiet) before reuse. If a reused connection still fails before any byte of an answer
//! came back, the request goes once more on a new connection when that is safe: it was
//! not written at all, or its method is idempotent (it may have reached the upstream).

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http::{header, request};
use http_body_util::Either;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::pool::{self, Idle, IdleLists, SendError, UpstreamBody};
use gatehouse_table::Timeouts;

/// Largest already-read request body sent this way; a larger one goes through hyper.
pub const MAX_INLINE_BODY: u64 = 64 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers (or trailers) accepted.
const MAX_HEADERS: usize = 128;
/// Response headers whose places in the head are noted on the stack; more spill to
/// the heap.
const INLINE_HEADERS: usize = 24;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Room made in the read buffer before each read.
const READ_AHEAD: usize = 16 * 1024;

thread_local! {
    static IDLE: IdleLists<Conn> = IdleLists::new(judge);
}

/// Why an exchange or a response body failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream closed the connection before its response head was complete.
    #[error("the upstream closed the connection before its response")]
    Closed,
    /// The response head does not parse.
    #[error("malformed response head: {0}")]
    Head(#[from] httparse::Error),
    /// The response head parses but cannot be framed or used.
    #[error("unusable response: {0}")]
    Framing(&'static str),
    /// The response head is over [`MAX_HEAD`] bytes.
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The connection ended before the body did.
    #[error("the upstream closed the connection before the end of its body")]
    Truncated,
    /// The chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Whether `req` can go this way: no upgrade is asked, and its body is known (none, or
/// read and small enough).
pub fn carries(req: &Request<UpstreamBody>) -> bool {
    if req.headers().contains_key(header::UPGRADE) {
        return false;
    }
    match req.body() {
        Either::Left(streamed) => streamed.is_end_stream(),
        Either::Right(read) => read
            .size_hint()
            .exact()
            .is_some_and(|n| n <= MAX_INLINE_BODY),
    }
}

/// A connection and what was read from it but not yet used.
#[derive(Debug)]
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// Its count in the upstream breaker's limits, if it has a breaker.
    _slot: Option<super::breaker::Connection>,
}

impl Conn {
    fn new(io: TcpStream, slot: Option<super::breaker::Connection>) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            _slot: slot,
        }
    }

    /// Whether an idle connection is still open and quiet. Tokio knows, from the last
    /// poll, that nothing arrived since: then there is no system call.
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        self.buf.reserve(READ_AHEAD);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
            .map_err(Error::from)
    }
}

fn take_idle(addr: SocketAddr, now: Instant) -> Option<Conn> {
    IDLE.with(|idle| idle.take(addr, now))
}

/// An idle connection is usable while it is open and quiet.
fn judge(conn: &mut Conn) -> Idle {
    if conn.is_quiet() {
        Idle::Use
    } else {
        Idle::Discard
    }
}

fn give_back(addr: SocketAddr, conn: Conn, idle: (Instant, Duration)) {
    IDLE.with(|lists| lists.give_back(addr, conn, idle));
}

/// A request as it goes on the wire, with what decides whether it may be sent again.
pub struct Wire {
    bytes: Vec<u8>,
    head_only: bool,
    idempotent: bool,
    /// The request's header map, emptied: the response's headers go in it. It keeps
    /// its capacity, and the client's connection then reuses it for its next request,
    /// so a map is not allocated, grown and freed for each request.
    spare: std::cell::Cell<Option<HeaderMap>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("bytes", &self.bytes.len())
            .field("head_only", &self.head_only)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Wire {
    /// Writes out `req` (see [`carries`]).
    pub fn new(req: Request<UpstreamBody>) -> Wire {
        let (mut parts, body) = req.into_parts();
        let bytes = encode(&parts, &known_body(body));
        parts.headers.clear();
        Wire {
            bytes,
            head_only: parts.method == Method::HEAD,
            idempotent: parts.method.is_idempotent(),
            spare: std::cell::Cell::new(Some(parts.headers)),
        }
    }
}

/// A failed [`send`].
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: SendError,
    /// No connection could be made: the request may go to another endpoint.
    pub unsent: bool,
}

/// Sends `wire` to `addr` on an idle connection, or a new one.
///
/// `to`: the endpoint, and the time the request arrived (compared with idle deadlines).
pub async fn send(
    wire: &Wire,
    to: (SocketAddr, Instant),
    timeouts: &Timeouts,
    limits: Option<pool::Limits<'_>>,
) -> Result<Response<Body>, Failed> {
    let (addr, now) = to;
    let idle = (now, Duration::from_millis(timeouts.idle_ms));
    let failed = |source| Failed {
        error: SendError::Http1 { addr, source },
        unsent: false,
    };
    if let Some(conn) = take_idle(addr, now) {
        match exchange(conn, wire, addr, idle).await {
            Ok(resp) => return Ok(resp),
            Err(Attempt::Unsent(e)) => {
                tracing::debug!(%addr, error = %e, "idle upstream connection was closed; sending on a new one");
            }
            Err(Attempt::Unanswered(e)) if wire.idempotent => {
                tracing::debug!(%addr, error = %e, "idle upstream connection closed unanswered; sending again on a new one");
            }
            Err(Attempt::Unanswered(e) | Attempt::Failed(e)) => return Err(failed(e)),
        }
    }
    let unsent = |error| Failed {
        error,
        unsent: true,
    };
    let (waiting, slot) = pool::counted(limits).map_err(unsent)?;
    let io = pool::connect(addr, Duration::from_millis(timeouts.connect_ms))
        .await
        .map_err(unsent)?;
    drop(waiting);
    match exchange(Conn::new(io, slot), wire, addr, idle).await {
        Ok(resp) => Ok(resp),
        Err(Attempt::Unsent(e) | Attempt::Unanswered(e) | Attempt::Failed(e)) => Err(failed(e)),
    }
}

/// The request body's bytes: it is known to be complete (see [`carries`]).
fn known_body(body: UpstreamBody) -> Bytes {
    match body {
        Either::Left(_) => Bytes::new(),
        Either::Right(mut read) => {
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(&mut read).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
                _ => Bytes::new(),
            }
        }
    }
}

/// The request as written: head, then body. `Content-Length` is the body's real
/// length (kept at 0 when the client sent one with no body); no transfer coding.
fn encode(parts: &request::Parts, body: &Bytes) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(target.len() + headers + body.len() + 64);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if had_length || !body.is_empty() {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How one try on one connection ended, when it did not end in a response.
enum Attempt {
    /// Not a byte of the request could be written.
    Unsent(Error),
    /// Written, but the connection ended before any byte of an answer.
    Unanswered(Error),
    /// Anything else.
    Failed(Error),
}

async fn exchange(
    mut conn: Conn,
    wire: &Wire,
    addr: SocketAddr,
    idle: (Instant, Duration),
) -> Result<Response<Body>, Attempt> {
    let (head_only, wire_spare, wire) = (wire.head_only, &wire.spare, &wire.bytes[..]);
    let mut written = 0;
    while written < wire.len() {
        match conn.io.write(&wire[written..]).await {
            Ok(0) if written == 0 => return Err(Attempt::Unsent(Error::Closed)),
            Ok(0) => return Err(Attempt::Unanswered(Error::Closed)),
            Ok(n) => written += n,
            // Nothing of it left: safe to send anywhere. Part of it: the upstream may
            // have acted on the head, so it is as good as sent.
            Err(e) if written == 0 => return Err(Attempt::Unsent(e.into())),
            Err(e) => return Err(Attempt::Unanswered(e.into())),
        }
    }
    let mut answered = false;
    let head = loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf, wire_spare) {
                Ok(Head::Final(head)) => break head,
                Ok(Head::Interim) => continue,
                Ok(Head::Partial) if conn.buf.len() >= MAX_HEAD => {
                    return Err(Attempt::Failed(Error::HeadTooLarge));
                }
                Ok(Head::Partial) => {}
                Err(e) => return Err(Attempt::Failed(e)),
            }
        }
        match std::future::poll_fn(|cx| conn.poll_fill(cx)).await {
            Ok(0) if answered => return Err(Attempt::Failed(Error::Closed)),
            Ok(0) => return Err(Attempt::Unanswered(Error::Closed)),
            Ok(_) => answered = true,
            Err(e) if !answered => return Err(Attempt::Unanswered(e)),
            Err(e) => return Err(Attempt::Failed(e)),
        }
    };
    respond(conn, head, head_only, (addr, idle)).map_err(Attempt::Failed)
}

/// A parsed final response head.
struct Parsed {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

enum Head {
    /// More bytes are needed.
    Partial,
    /// A 1xx answer, consumed.
    Interim,
    /// The response head, consumed.
    Final(Parsed),
}

/// Parses the response head at the start of `buf`, consuming it when complete. Header
/// values share the head's bytes; they are not copied. The headers go in the `spare`
/// map when there is one.
fn parse_head(
    buf: &mut BytesMut,
    spare: &std::cell::Cell<Option<HeaderMap>>,
) -> Result<Head, Error> {
    // Left uninitialized: zeroing the slots cost more than parsing a short head.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    )? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(Head::Partial),
    };
    let code = parsed.code.unwrap_or_default();
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each name and value sits in the head, so the head can be frozen and shared.
    // On the stack for a usual head (zeroing room for all of MAX_HEADERS would cost
    // more than the parse); offsets fit in u32, a head being at most MAX_HEAD bytes.
    let base = buf.as_ptr() as usize;
    let offset = |p: *const u8| (p as usize - base) as u32;
    let (mut inline, mut spilled) = ([(0, 0, 0, 0); INLINE_HEADERS], Vec::new());
    let spans: &mut [(u32, u32, u32, u32)] = match parsed.headers.len() {
        n if n <= INLINE_HEADERS => &mut inline[..n],
        n => {
            spilled.resize(n, (0, 0, 0, 0));
            &mut spilled
        }
    };
    for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
        let (name, value) = (offset(h.name.as_ptr()), offset(h.value.as_ptr()));
        *span = (
            name,
            name + h.name.len() as u32,
            value,
            value + h.value.len() as u32,
        );
    }
    let head = buf.split_to(len).freeze();
    if (100..200).contains(&code) {
        if code == 101 {
            return Err(Error::Framing(
                "101 Switching Protocols to a request without Upgrade",
            ));
        }
        return Ok(Head::Interim);
    }
    let status = StatusCode::from_u16(code).map_err(|_| Error::Framing("status code"))?;
    let mut headers = spare.take().unwrap_or_default();
    headers.reserve(spans.len());
    for &(n0, n1, v0, v1) in &*spans {
        let (n0, n1, v0, v1) = (n0 as usize, n1 as usize, v0 as usize, v1 as usize);
        let name =
            HeaderName::from_bytes(&head[n0..n1]).map_err(|_| Error::Framing("header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0..v1))
            .map_err(|_| Error::Framing("header value"))?;
        headers.append(name, value);
    }
    Ok(Head::Final(Parsed {
        status,
        version,
        headers,
    }))
}

/// The response for `head`, its body read from `conn` (or already read with the head,
/// then `conn` is given back at once).
/// `pool`: where the connection goes back to, from when, and for how long at most.
fn respond(
    mut conn: Conn,
    head: Parsed,
    head_only: bool,
    pool: (SocketAddr, (Instant, Duration)),
) -> Result<Response<Body>, Error> {
    let (addr, idle) = pool;
    let Parsed {
        status,
        version,
        mut headers,
    } = head;
    let (framing, reusable) = framing(status, version, &mut headers, head_only)?;
    let body = match framing {
        Framing::Length(n) if conn.buf.len() as u64 >= n => {
            let whole = conn.buf.split_to(n as usize).freeze();
            if reusable && conn.buf.is_empty() {
                give_back(addr, conn, idle);
            }
            State::Whole(Some(whole).filter(|b| !b.is_empty()))
        }
        framing => State::Reading(Box::new(Reader {
            conn,
            addr,
            idle,
            framing,
            reusable,
        })),
    };
    let mut resp = Response::new(Body { state: body });
    *resp.status_mut() = status;
    // The upstream's version is the upstream hop's: the client is answered in its own
    // (an HTTP/1.0 upstream would otherwise make the client's connection close).
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// How the body is delimited, and whether the connection may carry another request
/// once it has been read.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    head_only: bool,
) -> Result<(Framing, bool), Error> {
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .fold(None, |seen, token| {
            if token.eq_ignore_ascii_case(b"close") {
                Some(true)
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                seen.or(Some(false))
            } else {
                seen
            }
        });
    // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when told to keep.
    let mut reusable = match version {
        Version::HTTP_10 => close == Some(false),
        _ => close != Some(true),
    };
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), reusable));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Only `chunked`, once, is decoded; another coding would reach the client as
        // bytes nothing describes (nginx answers 502 too).
        let mut codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty());
        let chunked = codings
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        if !chunked {
            return Err(Error::Framing("a transfer coding other than chunked"));
        }
        // Both framings in one message: another hop may have framed it by the other one
        // (a response smuggled into the connection); refused, like nginx and HAProxy.
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Error::Framing("both Content-Length and Transfer-Encoding"));
        }
        // A coding in HTTP/1.0: read it by the coding, then close (RFC 9112 §6.1).
        if version == Version::HTTP_10 {
            reusable = false;
        }
        return Ok((Framing::Chunked(Chunk::Size), reusable));
    }
    let mut length = None;
    let mut repeated = false;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for n in value.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(n.trim_ascii())
                .ok()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or(Error::Framing("Content-Length is not a number"))?;
            repeated |= length.is_some();
            if length.is_some_and(|l| l != n) {
                return Err(Error::Framing("Content-Length values differ"));
            }
            length = Some(n);
        }
    }
    let Some(n) = length else {
        return Ok((Framing::Close, false));
    };
    if repeated {
        // Agreeing repeats, passed on as the one value they agree on.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    Ok((Framing::Length(n), reusable))
}

/// A response body from [`send`].
#[derive(Debug)]
pub struct Body {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Read with the head (`None`: empty).
    Whole(Option<Bytes>),
    /// Read from the connection as it is polled.
    Reading(Box<Reader>),
    /// Ended.
    Done,
}

#[derive(Debug)]
struct Reader {
    conn: Conn,
    addr: SocketAddr,
    /// The request's arrival and the upstream's `timeouts.idle`: until when the
    /// connection may then wait in the pool.
    idle: (Instant, Duration),
    framing: Framing,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of the coding.
    Chunked(Chunk),
    /// Until the upstream closes.
    Close,
    /// Read to the end.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// The trailer section is next.
    Trailers,
}

impl Reader {
    /// The next frame, or `None` at the end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame<Bytes>>, Error>> {
        loop {
            let buf = &mut self.conn.buf;
            match self.framing {
                Framing::Ended | Framing::Length(0) => {
                    self.framing = Framing::Ended;
                    return Poll::Ready(Ok(None));
                }
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) if !buf.is_empty() => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.framing = match self.framing {
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::Chunked(Chunk::DataEnd),
                        _ => Framing::Chunked(Chunk::Data(left)),
                    };
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                Framing::Close if !buf.is_empty() => {
                    return Poll::Ready(Ok(Some(Frame::data(buf.split().freeze()))));
                }
                Framing::Close => {
                    if ready!(self.conn.poll_fill(cx))? == 0 {
                        self.framing = Framing::Ended;
                        return Poll::Ready(Ok(None));
                    }
                    continue;
                }
                Framing::Chunked(Chunk::Size) => {
                    if let Some(end) = line_end(buf, MAX_CHUNK_LINE)? {
                        let size = chunk_size(&buf[..end - 2])?;
                        buf.advance(end);
                        self.framing = Framing::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                        continue;
                    }
                }
                Framing::Chunked(Chunk::DataEnd) if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return Poll::Ready(Err(Error::Chunked("chunk data not followed by CRLF")));
                    }
                    buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                    continue;
                }
                Framing::Chunked(Chunk::Trailers) => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.framing = Framing::Ended;
                        return Poll::Ready(Ok(None));
                    }
                    if let Some(trailers) = trailers(buf)? {
                        self.framing = Framing::Ended;
                        return Poll::Ready(Ok(Some(Frame::trailers(trailers))));
                    }
                }
                Framing::Length(_) | Framing::Chunked(Chunk::Data(_) | Chunk::DataEnd) => {}
            }
            // More bytes are needed, and the body is not over.
            if ready!(self.conn.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(Error::Truncated));
            }
        }
    }
}

/// Where the line at the start of `buf` ends (after its CRLF); `None` when incomplete.
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, Error> {
    match buf.iter().take(max).position(|&b| b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some(i + 1)),
        Some(_) => Err(Error::Chunked("line not ended by CRLF")),
        None if buf.len() >= max => Err(Error::Chunked("chunk-size line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line's size: hex digits, then nothing or extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    if digits == 0 || digits > 16 || !(rest.is_empty() || matches!(rest[0], b';' | b' ' | b'\t')) {
        return Err(Error::Chunked("chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| Error::Chunked("chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| Error::Chunked("chunk size"))
}

/// The trailer section at the start of `buf` (consumed), once complete.
fn trailers(buf: &mut BytesMut) -> Result<Option<HeaderMap>, Error> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= MAX_TRAILERS {
            return Err(Error::Chunked("trailer section too large"));
        }
        return Ok(None);
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut map = HeaderMap::new();
    match httparse::parse_headers(&buf[..end + 4], &mut slots)? {
        httparse::Status::Complete((_, fields)) => {
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| Error::Chunked("trailer name"))?;
                let value = HeaderValue::from_bytes(f.value)
                    .map_err(|_| Error::Chunked("trailer value"))?;
                map.append(name, value);
            }
        }
        httparse::Status::Partial => return Err(Error::Chunked("trailer section")),
    }
    buf.advance(end + 4);
    Ok(Some(map))
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let reader = match &mut this.state {
            State::Whole(whole) => {
                let data = whole.take();
                this.state = State::Done;
                return Poll::Ready(data.map(|d| Ok(Frame::data(d))));
            }
            State::Done => return Poll::Ready(None),
            State::Reading(reader) => reader,
        };
        let next = ready!(reader.poll_next(cx));
        // Over once the last byte is out: whoever polls may stop at `is_end_stream`,
        // and the connection goes back to the pool now, not when the body is dropped.
        let over = matches!(reader.framing, Framing::Ended | Framing::Length(0));
        if (over || !matches!(next, Ok(Some(_))))
            && let State::Reading(reader) = std::mem::replace(&mut this.state, State::Done)
            && next.is_ok()
            && over
            && reader.reusable
            && reader.conn.buf.is_empty()
        {
            give_back(reader.addr, reader.conn, reader.idle);
        }
        Poll::Ready(next.transpose())
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Whole(w) => w.is_none(),
            State::Done => true,
            State::Reading(r) => matches!(r.framing, Framing::Ended | Framing::Length(0)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Whole(Some(b)) => SizeHint::with_exact(b.len() as u64),
            State::Whole(None) | State::Done => SizeHint::with_exact(0),
            State::Reading(r) => match r.framing {
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Ended => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, Error> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_head(&mut buf, &std::cell::Cell::new(None))
    }

    fn framed(text: &str, head_only: bool) -> Result<(Framing, bool), Error> {
        let Ok(Head::Final(mut p)) = head(text) else {
            panic!("no final head in {text:?}");
        };
        framing(p.status, p.version, &mut p.headers, head_only)
    }

    #[test]
    fn heads_parse_partial_interim_and_final() {
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-le"),
            Ok(Head::Partial)
        ));
        assert!(matches!(
            head("HTTP/1.1 100 Continue\r\n\r\n"),
            Ok(Head::Interim)
        ));
        assert!(matches!(
            head("HTTP/1.1 101 Switching\r\n\r\n"),
            Err(Error::Framing(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 2x0 OK\r\n\r\n"),
            Err(Error::Head(_))
        ));
        let Ok(Head::Final(p)) = head("HTTP/1.0 404 Nope\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody") else {
            panic!("final head expected");
        };
        assert_eq!(p.status, StatusCode::NOT_FOUND);
        assert_eq!(p.version, Version::HTTP_10);
        let values: Vec<_> = p.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }

    #[test]
    fn framing_follows_the_message_rules() {
        let ok = "HTTP/1.1 200 OK\r\n";
        assert_eq!(
            framed(&format!("{ok}content-length: 5\r\n\r\n"), false).ok(),
            Some((Framing::Length(5), true))
        );
        assert_eq!(
            framed(&format!("{ok}content-length: 5\r\n\r\n"), true).ok(),
            Some((Framing::Length(0), true))
        );
        assert_eq!(
            framed(&format!("{ok}content-length: 5, 5\r\n\r\n"), false).ok(),
            Some((Framing::Length(5), true))
        );
        assert!(
            framed(
                &format!("{ok}content-length: 5\r\ncontent-length: 6\r\n\r\n"),
                false
            )
            .is_err()
        );
        assert!(framed(&format!("{ok}content-length: -5\r\n\r\n"), false).is_err());
        // Both framings: refused (a response another hop may frame the other way).
        assert!(
            framed(
                &format!("{ok}transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"),
                false
            )
            .is_err()
        );
        assert!(
            framed(
                &format!("{ok}transfer-encoding: gzip, chunked\r\n\r\n"),
                false
            )
            .is_err()
        );
        assert!(
            framed(
                &format!("{ok}transfer-encoding: chunked, chunked\r\n\r\n"),
                false
            )
            .is_err()
        );
        assert_eq!(
            framed(&format!("{ok}transfer-encoding: chunked,\r\n\r\n"), false).ok(),
            Some((Framing::Chunked(Chunk::Size), true))
        );
        assert_eq!(
            framed(
                "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n",
                false
            )
            .ok(),
            Some((Framing::Chunked(Chunk::Size), false))
        );
        assert!(framed(&format!("{ok}transfer-encoding: gzip\r\n\r\n"), false).is_err());
        assert_eq!(
            framed(&format!("{ok}\r\n"), false).ok(),
            Some((Framing::Close, false))
        );
        assert_eq!(
            framed(
                &format!("{ok}connection: close\r\ncontent-length: 1\r\n\r\n"),
                false
            )
            .ok(),
            Some((Framing::Length(1), false))
        );
        assert_eq!(
            framed("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false).ok(),
            Some((Framing::Length(1), false))
        );
        assert_eq!(
            framed(
                "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
                false
            )
            .ok(),
            Some((Framing::Length(1), true))
        );
        assert_eq!(
            framed("HTTP/1.1 204 No Content\r\n\r\n", false).ok(),
            Some((Framing::Length(0), true))
        );
    }

    #[test]
    fn agreeing_content_lengths_go_on_as_one_value() {
        let Ok(Head::Final(mut p)) =
            head("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n")
        else {
            panic!("final head expected");
        };
        let framed = framing(p.status, p.version, &mut p.headers, false).ok();
        assert_eq!(framed, Some((Framing::Length(5), true)));
        let values: Vec<_> = p.headers.get_all(header::CONTENT_LENGTH).iter().collect();
        assert_eq!(values, ["5"]);
    }

    #[test]
    fn chunk_sizes_and_lines() {
        assert_eq!(chunk_size(b"1a").ok(), Some(26));
        assert_eq!(chunk_size(b"1A;name=value").ok(), Some(26));
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"zz").is_err());
        assert!(chunk_size(b"1a x").is_ok());
        assert!(chunk_size(b"10000000000000000").is_err());
        assert_eq!(line_end(b"5\r\nhello", 16).ok(), Some(Some(3)));
        assert_eq!(line_end(b"5", 16).ok(), Some(None));
        assert!(line_end(b"5\nhello", 16).is_err());
        assert!(line_end(b"55555555555555555", 16).is_err());
    }

    #[test]
    fn requests_are_written_with_their_real_length() {
        let req = Request::post("/a?b=1")
            .header("host", "up")
            .header("content-length", "99")
            .header("transfer-encoding", "chunked")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let wire = encode(&parts, &Bytes::from_static(b"hi"));
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "POST /a?b=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 2\r\n\r\nhi"
        );
        let (parts, ()) = Request::get("/").body(()).expect("request").into_parts();
        assert_eq!(encode(&parts, &Bytes::new()), b"GET / HTTP/1.1\r\n\r\n");
    }

    // Over real sockets: an upstream that answers each connection with a script.

    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// What the scripted upstream does on one connection, given its index.
    type Script = fn(usize) -> Vec<Step>;

    #[derive(Clone)]
    enum Step {
        /// Reads one request head.
        Read,
        /// Writes these bytes.
        Write(&'static [u8]),
        /// Closes the connection.
        Close,
    }

    /// An upstream on a free port; counts the connections it accepted.
    async fn upstream(script: Script) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for step in script(n) {
                        match step {
                            Step::Read => {
                                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                    let mut chunk = [0u8; 1024];
                                    match stream.read(&mut chunk).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(k) => seen.extend_from_slice(&chunk[..k]),
                                    }
                                }
                                seen.clear();
                            }
                            Step::Write(bytes) => {
                                if stream.write_all(bytes).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Step::Close => return,
                        }
                    }
                    // Keep the connection open until the client closes it.
                    let mut rest = [0u8; 64];
                    while matches!(stream.read(&mut rest).await, Ok(k) if k > 0) {}
                });
            }
        });
        (addr, accepted)
    }

    fn get(method: Method) -> Request<UpstreamBody> {
        let mut req = Request::new(Either::Right(http_body_util::Full::new(Bytes::new())));
        *req.method_mut() = method;
        req
    }

    async fn exchange_once(
        addr: SocketAddr,
        method: Method,
    ) -> Result<(StatusCode, Result<http_body_util::Collected<Bytes>, Error>), String> {
        let timeouts = Timeouts {
            connect_ms: 2_000,
            request_ms: 30_000,
            idle_ms: 90_000,
        };
        let resp = send(
            &Wire::new(get(method)),
            (addr, Instant::now()),
            &timeouts,
            None,
        )
        .await
        .map_err(|f| f.error.to_string())?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await))
    }

    #[tokio::test]
    async fn chunked_bodies_arrive_whole_with_their_trailers_and_the_connection_is_reused() {
        let (addr, accepted) = upstream(|_| {
            let mut steps = Vec::new();
            for _ in 0..2 {
                steps.push(Step::Read);
                steps.push(Step::Write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                ));
                steps.push(Step::Write(b"lo\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\n"));
            }
            steps
        })
        .await;
        for _ in 0..2 {
            let (status, body) = exchange_once(addr, Method::GET).await.expect("exchange");
            assert_eq!(status, StatusCode::OK);
            let body = body.expect("body");
            assert_eq!(
                body.trailers().map(|t| t["x-sum"].clone()),
                Some(HeaderValue::from_static("1"))
            );
            assert_eq!(body.to_bytes(), "hello world");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn length_delimited_bodies_in_pieces_interim_answers_and_head_requests() {
        let (addr, accepted) = upstream(|_| {
            vec![
                Step::Read,
                Step::Write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234"),
                Step::Write(b"56789"),
                Step::Read,
                Step::Write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
                Step::Read,
                Step::Write(b"HTTP/1.1 204 No Content\r\n\r\n"),
            ]
        })
        .await;
        let (_, body) = exchange_once(addr, Method::GET).await.expect("get");
        assert_eq!(body.expect("body").to_bytes(), "0123456789");
        let (_, body) = exchange_once(addr, Method::HEAD).await.expect("head");
        assert!(body.expect("body").to_bytes().is_empty());
        let (status, _) = exchange_once(addr, Method::GET).await.expect("204");
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn close_delimited_bodies_end_with_the_connection_and_truncation_is_an_error() {
        let (addr, accepted) = upstream(|n| {
            if n == 0 {
                vec![
                    Step::Read,
                    Step::Write(b"HTTP/1.1 200 OK\r\n\r\nuntil "),
                    Step::Write(b"closed"),
                    Step::Close,
                ]
            } else {
                vec![
                    Step::Read,
                    Step::Write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"),
                    Step::Close,
                ]
            }
        })
        .await;
        let (_, body) = exchange_once(addr, Method::GET).await.expect("first");
        assert_eq!(body.expect("body").to_bytes(), "until closed");
        let (_, body) = exchange_once(addr, Method::GET).await.expect("second");
        assert!(matches!(body, Err(Error::Truncated)));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_reused_connection_closed_unanswered_is_retried_only_for_idempotent_methods() {
        // Each connection answers once, then reads the next request and closes unanswered.
        let (addr, accepted) = upstream(|_| {
            vec![
                Step::Read,
                Step::Write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
                Step::Read,
                Step::Close,
            ]
        })
        .await;
        let (status, _) = exchange_once(addr, Method::GET).await.expect("first");
        assert_eq!(status, StatusCode::OK);
        let (status, _) = exchange_once(addr, Method::GET)
            .await
            .expect("GET is sent again");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let failed = exchange_once(addr, Method::POST).await;
        assert!(
            failed.is_err(),
            "a POST that may have been seen is not sent twice"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
        let (addr, accepted) = upstream(|_| {
            vec![
                Step::Read,
                Step::Write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
                Step::Close,
            ]
        })
        .await;
        let (status, _) = exchange_once(addr, Method::POST).await.expect("first");
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = exchange_once(addr, Method::POST)
            .await
            .expect("a new connection");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        let (addr, _) = upstream(|n| {
            let answer: &'static [u8] = match n {
                0 => b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx",
                1 => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                _ => b"NOT HTTP\r\n\r\n",
            };
            vec![Step::Read, Step::Write(answer), Step::Close]
        })
        .await;
        assert!(exchange_once(addr, Method::GET).await.is_err());
        let (_, body) = exchange_once(addr, Method::GET).await.expect("head parses");
        assert!(matches!(body, Err(Error::Chunked(_))));
        assert!(exchange_once(addr, Method::GET).await.is_err());
    }
}
