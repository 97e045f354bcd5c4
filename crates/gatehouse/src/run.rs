//! `gatehouse run -f PATH`: standalone mode. The policy (reading, compiling, the rule
//! that a broken edit keeps the last good table, following changes) is
//! `gatehouse-standalone`'s; this wires it to flags, listeners and signals: SIGHUP
//! re-reads PATH, SIGTERM and SIGINT stop following it (once a reload under way is
//! done) and drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_proxy::{AdminState, Shared};
use gatehouse_standalone::{Folder, Reread, follow};
use tokio::signal::unix::{SignalKind, signal};

use crate::data_plane::{explain_fn, listen, parse_duration};

/// Flags of `gatehouse run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A manifest file or a directory tree of them.
    #[arg(short = 'f', long = "file")]
    pub path: PathBuf,
    /// Plaintext traffic listener.
    #[arg(long, env = "GATEHOUSE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// HTTPS traffic listener: each route with `tls` is served on it with its
    /// certificate (a `kubernetes.io/tls` Secret in the folder), chosen by SNI. Off
    /// unless given.
    #[arg(long, env = "GATEHOUSE_HTTPS")]
    pub https: Option<SocketAddr>,
    /// Admin listener (health, config, explain). Keep it on loopback.
    #[arg(long, env = "GATEHOUSE_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Traffic worker threads. Default: one per core.
    #[arg(long)]
    pub workers: Option<usize>,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Policy backends.
    #[command(flatten)]
    pub data_plane: crate::data_plane::DataPlaneArgs,
}

/// Runs standalone mode until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let (folder, table) = Folder::open(&args.path, args.data_plane.redis.is_some())?;
    let routes = table.routes.len();
    let shared = Shared::with_options(table, args.data_plane.options()?)
        .context("preparing the routing table")?;
    let admin_state = AdminState::new(shared, Some(explain_fn()));
    admin_state.applied(folder.source());
    let (listening, admin) = listen(
        args.http,
        args.https,
        args.admin,
        args.workers,
        &admin_state,
    )?;
    let https = listening
        .tls_addr
        .map(|a| format!(" and https://{a}"))
        .unwrap_or_default();
    println!(
        "gatehouse: serving {routes} route(s) from {} on http://{}{https} (admin http://{})",
        folder.path().display(),
        listening.local_addr,
        admin.local_addr
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let reread = Reread::default();
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let rereads = async {
            while hup.recv().await.is_some() {
                reread.request();
            }
            std::future::pending::<()>().await
        };
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        tokio::select! {
            r = follow(folder, &admin_state, &reread, stop) => r?,
            () = rereads => {}
        }
        anyhow::Ok(())
    })?;
    admin_state.start_draining();
    tracing::info!(drain = ?args.drain_timeout, "draining");
    listening.shutdown(args.drain_timeout);
    admin.shutdown();
    Ok(ExitCode::SUCCESS)
}
