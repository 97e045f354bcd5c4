//! `gatehouse proxy`: the data plane as it runs in a pod, beside `gatehouse controller`.
//!
//! It starts with the table persisted in `--state-dir` when there is one (and is ready
//! at once), otherwise with none (every request 404, `/readyz` 503) until the
//! controller pushes one over `--admin-socket`. Every applied push is persisted, so the
//! proxy serves through controller and API-server outages and its own restarts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_proxy::{AdminState, Shared, StateDir, Surface, serve_push, serve_surface};
use gatehouse_table::Table;
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `gatehouse proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Plaintext traffic listener.
    #[arg(long, env = "GATEHOUSE_HTTP", default_value = "0.0.0.0:8080")]
    pub http: SocketAddr,
    /// HTTPS traffic listener: each route with `tls` is served on it with its
    /// certificate, chosen by SNI. `off` disables it.
    #[arg(long, env = "GATEHOUSE_HTTPS", default_value = "0.0.0.0:8443")]
    pub https: Listen,
    /// Admin listener (health, metrics, config, explain). Keep it on loopback.
    #[arg(long, env = "GATEHOUSE_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Read-only listener with only /metrics, /healthz and /readyz, for probes and
    /// Prometheus. `off` disables it.
    #[arg(long, env = "GATEHOUSE_METRICS", default_value = "0.0.0.0:9090")]
    pub metrics: Listen,
    /// Unix socket the controller pushes tables to (created with mode 0600).
    #[arg(long, default_value = "/var/run/gatehouse/admin.sock")]
    pub admin_socket: PathBuf,
    /// Where the last applied table is persisted and loaded from on start. `off`
    /// disables persistence.
    #[arg(long, default_value = "/var/lib/gatehouse")]
    pub state_dir: String,
    /// Traffic worker threads. Default: one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "20s", value_parser = crate::data_plane::parse_duration)]
    pub drain_timeout: Duration,
    /// Policy backends.
    #[command(flatten)]
    pub data_plane: crate::data_plane::DataPlaneArgs,
}

/// A listener address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        if s == "off" {
            return Ok(Listen(None));
        }
        s.parse()
            .map(|a| Listen(Some(a)))
            .map_err(|e| format!("{s}: {e}"))
    }
}

/// Runs the proxy until SIGTERM or SIGINT.
pub fn proxy(args: ProxyArgs) -> Result<ExitCode> {
    let store = match args.state_dir.as_str() {
        "off" => None,
        dir => Some(
            StateDir::open(std::path::Path::new(dir))
                .with_context(|| format!("state directory {dir}"))?,
        ),
    };
    let shared = Shared::with_options(Table::default(), args.data_plane.options()?)
        .context("preparing an empty table")?;
    let admin_state = AdminState::new(shared.clone(), Some(crate::data_plane::explain_fn()));
    if let Some(store) = &store {
        match store.load() {
            Ok(Some(table)) => {
                let (version, routes) = (table.version, table.routes.len());
                match shared.apply(table) {
                    Ok(()) => {
                        admin_state.applied("state-dir");
                        tracing::info!(version, routes, "serving the persisted table");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the persisted table cannot be served; waiting for the controller")
                    }
                }
            }
            Ok(None) => tracing::info!("no persisted table; waiting for the controller"),
            Err(e) => {
                tracing::error!(error = %e, "the persisted table cannot be read; waiting for the controller")
            }
        }
    }
    let (listening, admin) = crate::data_plane::listen(
        args.http,
        args.https.0,
        args.admin,
        args.workers,
        &admin_state,
    )?;
    let metrics = match args.metrics.0 {
        Some(addr) => Some(
            serve_surface(addr, admin_state.clone(), Surface::Probes)
                .with_context(|| format!("metrics listener on {addr}"))?,
        ),
        None => None,
    };
    let push = serve_push(&args.admin_socket, admin_state.clone(), store)
        .with_context(|| format!("admin socket {}", args.admin_socket.display()))?;
    tracing::info!(
        http = %listening.local_addr,
        https = ?listening.tls_addr,
        admin = %admin.local_addr,
        metrics = ?metrics.as_ref().map(|m| m.local_addr),
        socket = %args.admin_socket.display(),
        "proxy listening"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })?;
    admin_state.start_draining();
    tracing::info!(drain = ?args.drain_timeout, "draining");
    push.shutdown();
    listening.shutdown(args.drain_timeout);
    admin.shutdown();
    if let Some(m) = metrics {
        m.shutdown();
    }
    Ok(ExitCode::SUCCESS)
}
