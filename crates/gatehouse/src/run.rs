//! `gatehouse run -f PATH`: standalone mode. Manifests from a folder, compiled by the
//! same compiler as the controller, served by the proxy, reloaded on every change
//! (inotify) and on SIGHUP.
//!
//! Reloads never make things worse: a file that does not parse, or an object that was
//! served and now fails to compile, keeps the last good table serving (and the log names
//! the object, field and reason). New invalid objects and unsupported fields are
//! reported while the rest applies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_api::manifest;
use gatehouse_compiler::{Diagnostic, Inputs, ObjectRef, Reason, Severity, compile};
use gatehouse_proxy::{AdminState, ExplainFn, Shared, serve, serve_admin};
use gatehouse_table::Table;
use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `gatehouse run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A manifest file or a directory tree of them.
    #[arg(short = 'f', long = "file")]
    pub path: PathBuf,
    /// Plaintext traffic listener.
    #[arg(long, env = "GATEHOUSE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Admin listener (health, config, explain). Keep it on loopback.
    #[arg(long, env = "GATEHOUSE_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Traffic worker threads. Default: one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_drain)]
    pub drain_timeout: Duration,
    /// Policy backends.
    #[command(flatten)]
    pub data_plane: crate::data_plane::DataPlaneArgs,
}

/// `/explain` on the admin listener: the compiler's explain engine over the running table.
pub fn explain_fn() -> ExplainFn {
    Arc::new(
        |table, method, url, headers| match gatehouse_router::Router::new(table) {
            Ok(router) => serde_json::to_value(gatehouse_compiler::explain::explain(
                table, &router, method, url, headers,
            ))
            .unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        },
    )
}

pub(crate) fn parse_drain(s: &str) -> Result<Duration, String> {
    gatehouse_compiler::values::parse_duration(s).map(Duration::from_millis)
}

/// One compilation of the folder.
struct Loaded {
    table: Table,
    /// Objects with their Accepted status.
    accepted: BTreeMap<ObjectRef, bool>,
    diagnostics: Vec<Diagnostic>,
}

/// Reads and compiles the folder. `Err` lists the files that do not parse.
fn load(path: &Path, redis: bool) -> Result<Loaded, Vec<String>> {
    let mut parsed =
        manifest::read_path(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    if !parsed.errors.is_empty() {
        return Err(parsed.errors.iter().map(ToString::to_string).collect());
    }
    let docs = std::mem::take(&mut parsed.documents);
    let (mut inputs, mut diagnostics) = Inputs::from_documents(docs);
    inputs.redis = redis;
    let out = compile(&inputs);
    let mut accepted: BTreeMap<ObjectRef, bool> = out
        .statuses
        .iter()
        .map(|(o, s)| (o.clone(), s.accepted.status))
        .collect();
    // Objects left out for unknown fields are not accepted either.
    for d in &diagnostics {
        accepted.insert(d.object.clone(), false);
    }
    diagnostics.extend(out.diagnostics);
    Ok(Loaded {
        table: out.table,
        accepted,
        diagnostics,
    })
}

fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match d.severity {
            Severity::Error => {
                tracing::error!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message)
            }
            Severity::Warning => {
                tracing::warn!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message)
            }
        }
    }
}

/// The folder being served, and what was accepted last time.
struct FileProvider {
    path: PathBuf,
    source: String,
    version: u64,
    accepted: BTreeMap<ObjectRef, bool>,
    /// Whether `--redis` is set (the compiler reports Global limits without it).
    redis: bool,
}

impl FileProvider {
    fn reload(&mut self, shared: &Shared, admin: &AdminState) {
        let loaded = match load(&self.path, self.redis) {
            Ok(l) => l,
            Err(errors) => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!("keeping the last good table: a manifest does not parse");
                return;
            }
        };
        // An object that was served and now is invalid: keep what worked.
        let regressed: Vec<&ObjectRef> = loaded
            .accepted
            .iter()
            .filter(|(o, ok)| !**ok && self.accepted.get(*o) == Some(&true))
            .filter(|(o, _)| {
                loaded.diagnostics.iter().any(|d| {
                    &d.object == *o && d.severity == Severity::Error && d.reason == Reason::Invalid
                })
            })
            .map(|(o, _)| o)
            .collect();
        if !regressed.is_empty() {
            let broken: Vec<Diagnostic> = loaded
                .diagnostics
                .iter()
                .filter(|d| regressed.contains(&&d.object))
                .cloned()
                .collect();
            log_diagnostics(&broken);
            tracing::error!(
                objects = regressed.len(),
                "keeping the last good table: a served object became invalid"
            );
            return;
        }
        log_diagnostics(&loaded.diagnostics);
        let mut table = loaded.table;
        self.version += 1;
        table.version = self.version;
        let routes = table.routes.len();
        match shared.apply(table) {
            Ok(()) => {
                admin.applied(&self.source);
                self.accepted = loaded.accepted;
                tracing::info!(version = self.version, routes, "applied");
            }
            Err(e) => tracing::error!(error = %e, "table refused; keeping the last good one"),
        }
    }
}

/// Runs standalone mode until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let path = args
        .path
        .canonicalize()
        .with_context(|| format!("{}", args.path.display()))?;
    let source = format!("file:{}", path.display());
    let loaded = match load(&path, args.data_plane.redis.is_some()) {
        Ok(l) => l,
        Err(errors) => {
            for e in errors {
                tracing::error!("{e}");
            }
            anyhow::bail!("the manifests in {} do not parse", path.display());
        }
    };
    log_diagnostics(&loaded.diagnostics);
    let mut table = loaded.table;
    table.version = 1;
    let routes = table.routes.len();
    let shared = Shared::with_options(table, args.data_plane.options()?)
        .context("preparing the routing table")?;
    let admin_state = AdminState::new(shared.clone(), Some(explain_fn()));
    admin_state.applied(&source);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listening = serve(args.http, shared.clone(), workers)
        .with_context(|| format!("listening on {}", args.http))?;
    let admin = serve_admin(args.admin, admin_state.clone())
        .with_context(|| format!("admin listener on {}", args.admin))?;
    println!(
        "gatehouse: serving {routes} route(s) from {} on http://{} (admin http://{})",
        path.display(),
        listening.local_addr,
        admin.local_addr
    );

    let mut provider = FileProvider {
        path: path.clone(),
        source,
        version: 1,
        accepted: loaded.accepted,
        redis: args.data_plane.redis.is_some(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })
            .context("watching the manifests")?;
        let watched = if path.is_dir() {
            path.clone()
        } else {
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| path.clone())
        };
        watcher
            .watch(&watched, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", watched.display()))?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                Some(()) = changes.recv() => {
                    // Editors write in bursts: let the burst settle, then read once.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while changes.try_recv().is_ok() {}
                    provider.reload(&shared, &admin_state);
                }
                _ = hup.recv() => provider.reload(&shared, &admin_state),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        anyhow::Ok(())
    })?;
    admin_state.start_draining();
    tracing::info!(drain = ?args.drain_timeout, "draining");
    listening.shutdown(args.drain_timeout);
    admin.shutdown();
    Ok(ExitCode::SUCCESS)
}
