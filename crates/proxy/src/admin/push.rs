//! The controller-to-proxy push: `PUT /config` on a Unix socket (mode 0600), and the
//! state directory where the proxy keeps the last table it applied.
//!
//! - `PUT /config` with a JSON [`Table`]: 200 `{"version","hash","persisted"}` when
//!   applied; 422 `{"reasons": [...]}` when refused (wrong format, does not decode,
//!   cannot be prepared). A refused table never replaces the running one.
//! - `PATCH /config` with a JSON [`TablePatch`]: the same answers, plus 409 when the
//!   running table is not the patch's base (the controller then sends the whole table).
//!   A one-route change to a 10,000-route table crosses the socket in a few kilobytes
//!   instead of 7 MB, and the proxy decodes only that. The proxy takes the resulting
//!   hash from the patch: `diff` and `patched` are exact inverses (tested), and hashing
//!   the whole table again would cost what the patch saves.
//! - `GET /config`: `{"version","hash"}` of the running table (empty hash before the
//!   first one), so a controller can tell that a restarted proxy needs its table again.
//!
//! The answers are the messages of [`gatehouse_table::push`], which the controller reads.
//!
//! Each applied table is persisted (write to a temporary file, fsync, rename), so a
//! crash mid-write leaves the previous file whole. On start the proxy loads it and
//! serves before any controller is reachable (static stability). One writer thread
//! saves tables in the order they were applied, skipping any that a newer one replaced
//! before its turn: a `PUT` answers once its table is on disk (`"persisted": true`); a
//! `PATCH` answers as soon as the table serves (`"persisted": false`), and the file
//! follows once patches pause for half a second (at most 5 s later): serializing the
//! whole 10,000-route table costs ~35 ms of CPU, which a burst of one-route changes
//! should pay once, not per change. A proxy that stops within that window restarts from
//! the table before; the controller pushes the current one again.

use std::convert::Infallible;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use gatehouse_table::push::{Applied, NotFound, Refused, Running};
use gatehouse_table::{FORMAT, PatchError, Table, TablePatch};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::sync::watch;

use crate::admin::{AdminState, json};
use crate::{Body, listener};

/// Largest table accepted on the socket.
const MAX_TABLE_BYTES: usize = 512 * 1024 * 1024;
const TABLE_FILE: &str = "table.json";

/// Where the last applied table is kept.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state directory `dir`, created when missing.
    pub fn open(dir: &Path) -> io::Result<StateDir> {
        std::fs::create_dir_all(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// The persisted table, if there is one. A file that does not decode is an error
    /// (the caller logs it and waits for the controller).
    pub fn load(&self) -> io::Result<Option<Table>> {
        let path = self.dir.join(TABLE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let table: Table = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if table.format != FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: table format {} (this proxy reads {FORMAT})",
                    path.display(),
                    table.format
                ),
            ));
        }
        Ok(Some(table))
    }

    /// Persists `bytes` (a table's JSON) atomically.
    pub fn save(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(".table.json.tmp");
        {
            // Owner-only: the table holds API-key digests.
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?
            };
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(TABLE_FILE))?;
        // The rename is durable once the directory is.
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// How long patches must pause before the patched table is written.
const PATCH_QUIET: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest a patched table waits to be written while patches keep coming.
const PATCH_AT_MOST: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writer thread saves: the bytes as pushed, or a table to serialize.
enum Content {
    Table(Arc<Table>),
}

struct Save {
    content: Content,
    done: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// The one writer of the state directory (see the module docs).
#[derive(Debug, Clone)]
struct Persister {
    tx: std::sync::mpsc::Sender<Save>,
}

impl Persister {
    fn start(dir: StateDir) -> io::Result<Persister> {
        let (tx, rx) = std::sync::mpsc::channel::<Save>();
        std::thread::Builder::new()
            .name("gatehouse-persist".into())
            .spawn(move || {
                // Serializing 10,000 routes takes tens of milliseconds of CPU: after
                // serving and applying tables, not beside them.
                crate::background_priority();
                while let Ok(first) = rx.recv() {
                    // Only the newest table is worth writing; everyone waiting hears how
                    // that went. A patched table (nobody waits) is written once patches
                    // pause for PATCH_QUIET, or PATCH_AT_MOST after the first: a burst of
                    // changes costs one serialization of the whole table, not one each.
                    let mut newest = first;
                    let mut waiting = Vec::new();
                    let deadline = std::time::Instant::now() + PATCH_AT_MOST;
                    loop {
                        while let Ok(next) = rx.try_recv() {
                            waiting.extend(std::mem::replace(&mut newest, next).done);
                        }
                        if newest.done.is_some() || !waiting.is_empty() {
                            break;
                        }
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        match rx.recv_timeout(PATCH_QUIET.min(left)) {
                            Ok(next) => waiting.extend(std::mem::replace(&mut newest, next).done),
                            Err(_) => break,
                        }
                    }
                    waiting.extend(newest.done);
                    let saved = match newest.content {
                        // Sealed secrets (password hashes, HMAC keys) are withheld
                        // on disk: a proxy restarted from this file refuses what needs
                        // them until the controller pushes again.
                        Content::Table(t) => serde_json::to_vec(&t.withhold_secrets())
                            .map_err(io::Error::other)
                            .and_then(|b| dir.save(&b)),
                    };
                    if let Err(e) = &saved {
                        tracing::error!(error = %e, "the applied table could not be persisted");
                    }
                    for w in waiting {
                        let _ = w.send(saved.is_ok());
                    }
                }
            })?;
        Ok(Persister { tx })
    }

    /// Saves `content`; with `wait`, answers whether it (or a newer table) is on disk.
    async fn save(&self, content: Content, wait: bool) -> bool {
        let (done, saved) = if wait {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self.tx.send(Save { content, done }).is_err() {
            return false;
        }
        match saved {
            Some(rx) => rx.await.unwrap_or(false),
            None => false,
        }
    }
}

/// The running push listener.
#[derive(Debug)]
pub struct PushListening {
    path: PathBuf,
    stop: crate::listener::Stop,
    thread: JoinHandle<()>,
}

impl PushListening {
    /// Stops the listener and removes the socket file.
    pub fn shutdown(self) {
        let _ = self.stop.send(Some(std::time::Duration::ZERO));
        let _ = self.thread.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the push endpoint on the Unix socket `path`.
pub fn serve_push(
    path: &Path,
    state: Arc<AdminState>,
    store: Option<StateDir>,
) -> io::Result<PushListening> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A socket left by a previous process would make bind fail.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let (stop, stopped) = watch::channel(None);
    let store = Arc::new(store.map(Persister::start).transpose()?);
    let thread = listener::on_thread("gatehouse-push".into(), move || async move {
        let Ok(listener) = tokio::net::UnixListener::from_std(listener) else {
            return;
        };
        listener::accept_loop(listener, stopped, move |stream, (), _| {
            let (state, store) = (state.clone(), store.clone());
            let svc = service_fn(move |req| {
                let (state, store) = (state.clone(), store.clone());
                async move { Ok::<_, Infallible>(answer(req, &state, store.as_ref().as_ref()).await) }
            });
            listener::serve_http1(stream, svc)
        })
        .await;
    })?;
    Ok(PushListening {
        path: path.to_path_buf(),
        stop,
        thread,
    })
}

async fn answer(
    req: Request<Incoming>,
    state: &AdminState,
    store: Option<&Persister>,
) -> Response<Body> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/config") => {
            let table = state.shared().table();
            let hash = if state.is_ready() {
                table.hash.clone()
            } else {
                String::new()
            };
            message(
                StatusCode::OK,
                &Running {
                    version: table.version,
                    hash,
                    ready_endpoints: state.shared().ready_endpoints(),
                },
            )
        }
        ("PUT", "/config") => {
            let started = std::time::Instant::now();
            let (_, table) = match read::<Table>(req, "table").await {
                Ok(read) => read,
                Err(reason) => return refused(vec![reason]),
            };
            if table.format != FORMAT {
                return refused(vec![format!(
                    "table format {} (this proxy reads {FORMAT})",
                    table.format
                )]);
            }
            let (version, hash) = (table.version, table.hash.clone());
            let read = started.elapsed();
            if let Err(reason) = apply(state, table) {
                return refused(vec![reason]);
            }
            let prepared = started.elapsed() - read;
            let persisted = match store {
                Some(store) => {
                    store
                        .save(Content::Table(state.shared().table()), true)
                        .await
                }
                None => false,
            };
            let timings = Timings {
                read,
                patched: std::time::Duration::ZERO,
                prepared,
            };
            applied(version, hash, persisted, timings)
        }
        ("PATCH", "/config") => {
            let started = std::time::Instant::now();
            let (_, patch) = match read::<TablePatch>(req, "patch").await {
                Ok(read) => read,
                Err(reason) => return refused(vec![reason]),
            };
            if !state.is_ready() {
                return other_base("this proxy has no table yet".into());
            }
            let read = started.elapsed();
            let running = state.shared().table();
            let table = match running.patched(patch) {
                Ok(t) => t,
                Err(e @ PatchError::OtherBase { .. }) => return other_base(e.to_string()),
                Err(e) => return refused(vec![e.to_string()]),
            };
            drop(running);
            let patched = started.elapsed() - read;
            let (version, hash) = (table.version, table.hash.clone());
            if let Err(reason) = apply(state, table) {
                return refused(vec![reason]);
            }
            let prepared = started.elapsed() - read - patched;
            if let Some(store) = store {
                store
                    .save(Content::Table(state.shared().table()), false)
                    .await;
            }
            let timings = Timings {
                read,
                patched,
                prepared,
            };
            applied(version, hash, false, timings)
        }
        _ => message(
            StatusCode::NOT_FOUND,
            &NotFound {
                error: "PUT /config, PATCH /config or GET /config".into(),
            },
        ),
    }
}

/// The body, and the `what` (table or patch) it holds; why not when it cannot be read
/// or does not decode.
async fn read<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    what: &str,
) -> Result<(bytes::Bytes, T), String> {
    let bytes = match Limited::new(req.into_body(), MAX_TABLE_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(format!("reading the {what}: {e}")),
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok((bytes, value)),
        Err(e) => Err(format!("the {what} does not decode: {e}")),
    }
}

/// Makes `table` the running one; why not when it cannot be prepared.
fn apply(state: &AdminState, table: Table) -> Result<(), String> {
    let version = table.version;
    if let Err(e) = state.shared().apply(table) {
        tracing::error!(version, error = %e, "pushed table refused; keeping the running one");
        return Err(e.to_string());
    }
    state.applied("controller");
    Ok(())
}

/// Where applying a pushed table went: reading and decoding the body, patching the
/// running table (PATCH only), preparing and swapping it in.
struct Timings {
    read: std::time::Duration,
    patched: std::time::Duration,
    prepared: std::time::Duration,
}

fn applied(version: u64, hash: String, persisted: bool, took: Timings) -> Response<Body> {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    tracing::info!(
        version,
        %hash,
        persisted,
        read_us = us(took.read),
        patched_us = us(took.patched),
        prepared_us = us(took.prepared),
        "table applied"
    );
    message(
        StatusCode::OK,
        &Applied {
            version,
            hash,
            persisted,
        },
    )
}

/// 409: the patch was made for another table; the whole table is needed.
fn other_base(reason: String) -> Response<Body> {
    message(
        StatusCode::CONFLICT,
        &Refused {
            reasons: vec![reason],
        },
    )
}

fn refused(reasons: Vec<String>) -> Response<Body> {
    message(StatusCode::UNPROCESSABLE_ENTITY, &Refused { reasons })
}

/// One of the push answers ([`gatehouse_table::push`]) as the JSON response.
fn message(status: StatusCode, answer: &impl serde::Serialize) -> Response<Body> {
    // Plain structs of numbers and strings: they always serialize.
    json(status, &serde_json::to_value(answer).unwrap_or_default())
}
