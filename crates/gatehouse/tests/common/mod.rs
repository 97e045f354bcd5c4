//! The harness of the `gatehouse` binary's tests: the built binary on free ports, real
//! upstreams (the testkit echo server and canned ones), polling for readiness, and a raw
//! HTTP/1.1 client that sends exactly the bytes a test writes, so un-normalized targets
//! (`/a/../b`, `//x`, `%2F`) reach the gateway as they were written.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// === processes and upstreams ===

/// Status code of `GET path` (HTTP/1.1, `Connection: close`), or 0 when unreachable.
pub fn status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls until `check` holds or the deadline passes; returns whether it held.
pub fn eventually(check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    false
}

/// A loopback address nothing listens on (the port was free a moment ago).
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An echo upstream (`gatehouse_testkit::spawn_echo`) on `runtime`: its address.
pub fn spawn_echo(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    runtime
        .block_on(gatehouse_testkit::spawn_echo())
        .expect("echo upstream")
}

/// A runtime for upstreams, with one worker thread; the caller keeps it alive.
pub fn upstream_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The echo upstream, on a runtime the caller keeps alive.
pub fn echo_upstream() -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = upstream_runtime();
    let echo = spawn_echo(&runtime);
    (runtime, echo)
}

/// An upstream on `runtime` that answers every request `200` with `body`, after the
/// header lines in `headers` (each ending in `\r\n`), so a test can tell which
/// upstream served a request, or make an upstream send headers the echo never does.
/// Keep-alive: it answers request after request on one connection. Request bodies are
/// skipped by `Content-Length` (chunked request bodies are not understood).
pub fn canned_upstream(runtime: &tokio::runtime::Runtime, headers: &str, body: &str) -> SocketAddr {
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("canned upstream binds");
    let addr = listener.local_addr().expect("canned upstream address");
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let response = response.clone();
            tokio::spawn(async move {
                let _ = serve_canned(stream, response.as_bytes()).await;
            });
        }
    });
    addr
}

/// One connection of [`canned_upstream`]: read a request head, skip its body, answer.
async fn serve_canned(stream: tokio::net::TcpStream, response: &[u8]) -> io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = String::new();
    loop {
        let mut content_length = 0u64;
        let mut in_head = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let text = line.trim_end();
            if text.is_empty() {
                if in_head {
                    break;
                }
                continue; // stray CRLF between requests
            }
            in_head = true;
            if let Some((name, value)) = text.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        tokio::io::copy(
            &mut (&mut reader).take(content_length),
            &mut tokio::io::sink(),
        )
        .await?;
        write.write_all(response).await?;
    }
}

/// An upstream on `runtime` that reads each request head and closes the connection
/// without answering: a reset, as a crashed server looks to the gateway.
pub fn closing_upstream(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    use tokio::io::AsyncBufReadExt;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("closing upstream binds");
    let addr = listener.local_addr().expect("closing upstream address");
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if line.trim_end().is_empty() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

/// `gatehouse run -f dir` on free ports with two workers, once it is ready; stderr goes
/// to `stderr`. Returns the process and the traffic and admin addresses.
pub fn spawn_gatehouse(dir: &Path, stderr: Stdio) -> (Running, SocketAddr, SocketAddr) {
    spawn_gatehouse_with(dir, stderr, &[])
}

/// [`spawn_gatehouse`] with more flags.
pub fn spawn_gatehouse_with(
    dir: &Path,
    stderr: Stdio,
    flags: &[&str],
) -> (Running, SocketAddr, SocketAddr) {
    let (http, admin) = (free_port(), free_port());
    let child = Running(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["run", "-f"])
            .arg(dir)
            .args([
                "--http",
                &http.to_string(),
                "--admin",
                &admin.to_string(),
                "--workers",
                "2",
            ])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("gatehouse run starts"),
    );
    assert!(
        eventually(|| status(admin, "/readyz") == 200),
        "never became ready"
    );
    (child, http, admin)
}

/// `gatehouse run` over a folder of manifests, with the upstreams it proxies to: the
/// fixture of the e2e suites. Fields drop in order: the process stops before its folder
/// is removed and its upstreams go away.
pub struct Gateway {
    /// Traffic listener.
    pub http: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    _process: Running,
    /// The watched folder (a test may edit it).
    pub manifests: tempfile::TempDir,
    _upstreams: tokio::runtime::Runtime,
}

impl Gateway {
    /// Writes `files` (name, text) to a fresh folder and serves it; the log is discarded
    /// (a pipe nobody reads could fill and stall the gateway). `upstreams` is kept alive
    /// as long as the gateway.
    pub fn serve(upstreams: tokio::runtime::Runtime, files: &[(&str, String)]) -> Gateway {
        Gateway::serve_with(upstreams, files, &[])
    }

    /// [`Gateway::serve`] with more flags for `gatehouse run`.
    pub fn serve_with(
        upstreams: tokio::runtime::Runtime,
        files: &[(&str, String)],
        flags: &[&str],
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write manifests");
        }
        let (process, http, admin) = spawn_gatehouse_with(dir.path(), Stdio::null(), flags);
        Gateway {
            http,
            admin,
            _process: process,
            manifests: dir,
            _upstreams: upstreams,
        }
    }
}

/// `gatehouse run` over a folder of manifests with its stderr (the log) in a file, and
/// the runtime of the servers behind it. Fields drop in order: the process stops first.
pub struct LoggedGateway {
    _process: Running,
    /// Traffic listener.
    pub http: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The watched folder.
    pub manifests: tempfile::TempDir,
    log: std::path::PathBuf,
    _logs: tempfile::TempDir,
    _servers: tokio::runtime::Runtime,
}

impl std::fmt::Debug for LoggedGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedGateway")
            .field("http", &self.http)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl LoggedGateway {
    /// Writes `files` (name, text) to a fresh folder and serves it; `servers` is kept
    /// alive as long as the gateway.
    pub fn serve(servers: tokio::runtime::Runtime, files: &[(&str, String)]) -> LoggedGateway {
        LoggedGateway::serve_with(servers, files, &[])
    }

    /// [`LoggedGateway::serve`] with more flags for `gatehouse run`.
    pub fn serve_with(
        servers: tokio::runtime::Runtime,
        files: &[(&str, String)],
        flags: &[&str],
    ) -> LoggedGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write manifests");
        }
        // Not inside the watched folder: the log is no manifest.
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("gatehouse.log");
        let file = std::fs::File::create(&log).expect("log file");
        let (process, http, admin) = spawn_gatehouse_with(dir.path(), Stdio::from(file), flags);
        LoggedGateway {
            _process: process,
            http,
            admin,
            manifests: dir,
            log,
            _logs: logs,
            _servers: servers,
        }
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET target` on the traffic listener with `Host: host`.
    pub fn get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        request(self.http, "GET", host, target, headers)
    }

    /// `GET path` on the admin listener, as text.
    pub fn admin_text(&self, path: &str) -> String {
        let r = request(self.admin, "GET", "localhost", path, &[]);
        assert_eq!(r.status, 200, "admin {path}: {r:?}");
        r.text()
    }
}

/// `gatehouse lint` over `text` (written to a fresh folder) with `flags`: whether it
/// exited 0, and what it printed (stdout, then stderr).
pub fn lint(text: &str, flags: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifests.yaml"), text).expect("write manifests");
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["lint", "-f"])
        .arg(dir.path())
        .args(flags)
        .env_remove("GATEHOUSE_REDIS")
        .output()
        .expect("lint runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `gatehouse run -f dir` on free ports with two workers, once it is ready; stderr is
/// captured. Returns the process and the traffic and admin addresses.
pub fn run_gatehouse(dir: &Path) -> (Running, SocketAddr, SocketAddr) {
    spawn_gatehouse(dir, Stdio::piped())
}

// === a raw HTTP/1.1 client ===

/// A response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header values by lowercased name, in the order received.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().map(String::as_str)
    }

    /// Every value of header `name` (any case), in the order received.
    pub fn header_values(&self, name: &str) -> &[String] {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the response, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of this {} response is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// A request head: `METHOD target HTTP/1.1`, `Host`, then `headers`, then
/// `Connection: close` unless `headers` name a `Connection` of their own. `target` is
/// written as given, byte for byte.
pub fn request_head(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Sends a request without a body (see [`request_head`]) and reads the response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    send_raw(addr, request_head(method, host, target, headers).as_bytes())
}

/// Sends `raw` as it is and reads one response; panics with the request on failure.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> RawResponse {
    try_send_raw(addr, raw).unwrap_or_else(|e| {
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(200)]);
        panic!("no response from {addr} to {shown:?}: {e}")
    })
}

/// Sends `raw` as it is and reads one response. A failed write (the server answered and
/// closed early) still reads whatever response arrived.
pub fn try_send_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<RawResponse> {
    let mut stream = connect(addr)?;
    let written = stream.write_all(raw).and_then(|()| stream.flush());
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, raw.starts_with(b"HEAD ")).map_err(|e| match written {
        Err(w) => io::Error::new(e.kind(), format!("{e} (after the write failed: {w})")),
        Ok(()) => e,
    })
}

/// Sends `head`, then writes `body` chunks from another thread while this one waits for
/// the response, so a server that answers before reading the whole body (413) is seen
/// answering instead of blocking the writer. The connection is closed afterwards.
pub fn send_streaming(
    addr: SocketAddr,
    head: &[u8],
    body: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> io::Result<RawResponse> {
    let mut stream = connect(addr)?;
    stream.write_all(head)?;
    let mut writer = stream.try_clone()?;
    let pump = std::thread::spawn(move || -> io::Result<()> {
        for chunk in body {
            writer.write_all(&chunk)?;
        }
        writer.flush()
    });
    let mut reader = BufReader::new(stream.try_clone()?);
    let response = read_response(&mut reader, head.starts_with(b"HEAD "));
    let _ = stream.shutdown(Shutdown::Both);
    let _ = pump.join();
    response
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

fn malformed(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One CRLF- (or LF-) terminated line, without its terminator; `None` at end of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(malformed(format!(
            "the stream ended inside a line: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads one response (skipping interim `1xx` responses other than `101`). The body is
/// framed by `Transfer-Encoding: chunked`, else `Content-Length`, else the end of the
/// stream; a response to `HEAD`, a `1xx`, `204` and `304` have none.
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> io::Result<RawResponse> {
    loop {
        let line = read_line(reader)?
            .ok_or_else(|| malformed("the connection closed before a status line"))?;
        let mut parts = line.splitn(3, ' ');
        let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !version.starts_with("HTTP/1.") {
            return Err(malformed(format!("not an HTTP/1 status line: {line:?}")));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| malformed(format!("no status code in {line:?}")))?;

        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        loop {
            let line = read_line(reader)?
                .ok_or_else(|| malformed("the connection closed inside the header"))?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed(format!("a header line without a colon: {line:?}")))?;
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_string());
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }

        let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = headers.get("transfer-encoding").is_some_and(|v| {
            v.last()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
        let length = headers
            .get("content-length")
            .and_then(|v| v.first())
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| malformed(format!("a bad Content-Length: {v:?}")))
            })
            .transpose()?;
        let body = if no_body {
            Vec::new()
        } else if chunked {
            read_chunked(reader)?
        } else if let Some(n) = length {
            let mut body = vec![0; n];
            reader
                .read_exact(&mut body)
                .map_err(|e| io::Error::new(e.kind(), format!("reading a {n}-byte body: {e}")))?;
            body
        } else {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            body
        };
        return Ok(RawResponse {
            status,
            headers,
            body,
        });
    }
}

/// A chunked body, de-chunked; trailers are read and dropped.
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?
            .ok_or_else(|| malformed("the connection closed before the last chunk"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| malformed(format!("a bad chunk size line: {line:?}")))?;
        if size == 0 {
            while read_line(reader)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        match read_line(reader)? {
            Some(l) if l.is_empty() => {}
            other => return Err(malformed(format!("no CRLF after a chunk: {other:?}"))),
        }
    }
}

// === the echo upstream's answer ===

/// What the echo upstream received, from its JSON answer. Headers are keyed by
/// lowercased name; the echo keeps one value per name (the last one it saw).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Echoed {
    /// The method.
    pub method: String,
    /// The request target as received: path and query.
    pub uri: String,
    /// Header values by lowercased name.
    pub headers: BTreeMap<String, String>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl Echoed {
    /// The value of header `name` (any case) as the upstream received it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Parses the echo upstream's answer; panics, showing the response, when it is not one.
pub fn echoed(response: &RawResponse) -> Echoed {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "not an echo answer ({e}): {} {:?} {:?}",
            response.status,
            response.headers,
            response.text()
        )
    })
}

/// A gateway-generated error: the status, `application/problem+json` with `type`,
/// `title`, `status`, `detail`, and `instance` equal to the response's `X-Request-Id`.
/// Returns the problem document.
pub fn assert_problem(r: &RawResponse, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{r:?} {}", r.text());
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{status}: content-type {content_type:?}, body {:?}",
        r.text()
    );
    let problem = r.json();
    assert_eq!(problem["status"], status, "{problem}");
    for field in ["type", "title", "detail"] {
        assert!(problem[field].is_string(), "{field} missing: {problem}");
    }
    let request_id = r
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{status} without X-Request-Id: {r:?}"));
    assert_eq!(problem["instance"], request_id, "{problem}");
    problem
}

/// The value in `slot` while anyone still holds it, else a new one from `make`: a
/// fixture shared by the tests that run at the same time, stopped when the last one
/// finishes (a `static` is never dropped, so it holds only a weak reference).
pub fn shared<T>(
    slot: &std::sync::Mutex<std::sync::Weak<T>>,
    make: impl FnOnce() -> T,
) -> std::sync::Arc<T> {
    let mut held = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(value) = held.upgrade() {
        return value;
    }
    let value = std::sync::Arc::new(make());
    *held = std::sync::Arc::downgrade(&value);
    value
}

// === manifests and fault-injection upstreams (resilience, aggregation) ===

/// An Upstream `name` over `addrs` with `spec` lines (YAML, indented two spaces) added.
pub fn upstream(name: &str, addrs: &[SocketAddr], spec: &str) -> String {
    let endpoints: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{host: {}, port: {}}}", a.ip(), a.port()))
        .collect();
    format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: {name}}}\nspec:\n  endpoints: [{}]\n{spec}---\n",
        endpoints.join(", ")
    )
}

/// `n` fault-injection upstreams on `runtime`.
pub fn faulty(
    runtime: &tokio::runtime::Runtime,
    n: usize,
) -> Vec<gatehouse_testkit::fault::Faults> {
    (0..n)
        .map(|_| {
            runtime
                .block_on(gatehouse_testkit::fault::spawn_faulty())
                .expect("fault upstream")
        })
        .collect()
}

/// A metric sample's value on `g`'s admin listener, 0 when absent.
pub fn metric(g: &LoggedGateway, series: &str) -> f64 {
    g.admin_text("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
