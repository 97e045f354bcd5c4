//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/config`, `/explain`,
//! `POST /cache/purge[?route=ns/name]`, and the API documentation (`/docs`,
//! `/docs/openapi.json`: `openapi.rs`). Keep it on loopback. It runs on its own thread,
//! away from the traffic workers.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_table::Table;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::sync::watch;

pub mod openapi;
pub mod push;

use crate::{Body, Shared, full, listener};

/// Answers `/explain`: (table, method, url, headers) → JSON. Provided by the binary,
/// which owns the compiler's explain engine.
pub type ExplainFn =
    Arc<dyn Fn(&Table, &str, &str, &[(String, String)]) -> serde_json::Value + Send + Sync>;

/// Where the running table came from and when it was applied.
#[derive(Debug, Clone, Default)]
pub struct ConfigInfo {
    /// e.g. `file:/etc/gatehouse`.
    pub source: String,
    /// Seconds since the Unix epoch.
    pub applied_at: u64,
}

/// What the admin endpoints read.
pub struct AdminState {
    shared: Arc<Shared>,
    ready: AtomicBool,
    draining: AtomicBool,
    info: Mutex<ConfigInfo>,
    explain: Option<ExplainFn>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.ready)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// State over `shared`; not ready until [`AdminState::applied`].
    pub fn new(shared: Arc<Shared>, explain: Option<ExplainFn>) -> Arc<AdminState> {
        Arc::new(AdminState {
            shared,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            info: Mutex::new(ConfigInfo::default()),
            explain,
        })
    }

    /// Records that a table from `source` is being served.
    pub fn applied(&self, source: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(mut info) = self.info.lock() {
            *info = ConfigInfo {
                source: source.to_string(),
                applied_at: now,
            };
        }
        self.ready.store(true, Ordering::Release);
    }

    /// The state the endpoints read.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether a table is being served.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// The running admin listener.
#[derive(Debug)]
pub struct AdminListening {
    /// Bound address.
    pub local_addr: SocketAddr,
    stop: listener::Stop,
    thread: JoinHandle<()>,
}

impl AdminListening {
    /// Stops the listener.
    pub fn shutdown(self) {
        let _ = self.stop.send(Some(std::time::Duration::ZERO));
        let _ = self.thread.join();
    }
}

/// What a listener exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything: health, metrics, config dump, explain (`--admin`, loopback).
    Admin,
    /// Only `/metrics`, `/healthz`, `/readyz`: what probes and Prometheus reach in a
    /// cluster (`--metrics`).
    Probes,
}

/// Serves the admin endpoints on `addr`.
pub fn serve_admin(addr: SocketAddr, state: Arc<AdminState>) -> io::Result<AdminListening> {
    serve_surface(addr, state, Surface::Admin)
}

/// Serves `surface` on `addr`.
pub fn serve_surface(
    addr: SocketAddr,
    state: Arc<AdminState>,
    surface: Surface,
) -> io::Result<AdminListening> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(None);
    let name = match surface {
        Surface::Admin => "gatehouse-admin",
        Surface::Probes => "gatehouse-metrics",
    };
    let thread = listener::on_thread(name.into(), move || async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        listener::accept_loop(listener, stopped, move |stream, _, _| {
            let state = state.clone();
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&req, &state, surface)) }
            });
            listener::serve_http1(stream, svc)
        })
        .await;
    })?;
    Ok(AdminListening {
        local_addr,
        stop,
        thread,
    })
}

fn answer(req: &Request<Incoming>, state: &AdminState, surface: Surface) -> Response<Body> {
    let path = req.uri().path();
    if surface == Surface::Probes && !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    match (req.method().as_str(), path) {
        ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
        ("GET", "/metrics") => {
            let format =
                crate::metrics::exposition::Format::negotiate(req.headers().get(header::ACCEPT));
            let mut r = Response::new(full(Bytes::from(state.shared.render_metrics(format))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        ("GET", "/readyz") => {
            if state.draining.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "no routing table yet\n")
            }
        }
        ("GET", "/config") => {
            let table = state.shared.table();
            let info = state.info.lock().map(|i| i.clone()).unwrap_or_default();
            // Sealed values (password hashes, HMAC keys) withheld; key digests too.
            let mut redacted = table.withhold_secrets();
            for c in &mut redacted.consumers {
                if c.api_key_sha256.is_some() {
                    c.api_key_sha256 = Some("[redacted]".into());
                }
            }
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "version": table.version,
                    "hash": table.hash,
                    "source": info.source,
                    "appliedAt": rfc3339(info.applied_at),
                    "upstreams": state.shared.upstream_health(),
                    "table": redacted,
                }),
            )
        }
        ("GET", "/explain") => {
            let Some(explain) = &state.explain else {
                return text(StatusCode::NOT_FOUND, "explain is not available\n");
            };
            let mut method = "GET".to_string();
            let mut url = None;
            let mut headers = Vec::new();
            for (k, v) in gatehouse_router::query_pairs(req.uri().query()) {
                match k.as_ref() {
                    "method" => method = v.into_owned(),
                    "url" => url = Some(v.into_owned()),
                    "header" => {
                        if let Some((n, val)) = v.split_once(':') {
                            headers.push((n.trim().to_string(), val.trim().to_string()));
                        }
                    }
                    _ => {}
                }
            }
            let Some(url) = url else {
                return text(StatusCode::BAD_REQUEST, "missing ?url=\n");
            };
            let table = state.shared.table();
            json(StatusCode::OK, &explain(&table, &method, &url, &headers))
        }
        ("POST", "/cache/purge") => {
            let route = gatehouse_router::query_pairs(req.uri().query())
                .find(|(k, _)| k == "route")
                .map(|(_, v)| v.into_owned());
            let cache = state.shared.cache();
            let (entries, _) = cache.usage();
            match cache.purge(route.as_deref()) {
                Ok(()) => json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "purged": route.as_deref().unwrap_or("all"),
                        "entriesBefore": entries,
                    }),
                ),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": e }),
                ),
            }
        }
        ("GET", "/docs/openapi.json") => {
            let mut r = Response::new(full(state.shared.openapi()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        ("GET", "/docs" | "/docs/") => docs_page(),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The page that renders `/docs/openapi.json`: one file, embedded, no other asset.
pub(crate) fn docs_page() -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(DOCS_PAGE.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page loads nothing but the document beside it.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    r
}

const DOCS_PAGE: &str = include_str!("docs.html");

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON answer (admin endpoints and the push socket).
pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_750_245), "2026-11-27T03:30:45Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
