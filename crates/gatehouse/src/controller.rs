//! `gatehouse controller`: the control plane beside `gatehouse proxy` in a pod. All the
//! work is in `gatehouse-controller`; this reads flags and the kube configuration
//! (in-cluster service account, or `KUBECONFIG`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

/// Flags of `gatehouse controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Namespaces to watch (repeatable). Default: all.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// The co-located proxy's admin socket.
    #[arg(long, default_value = "/var/run/gatehouse/admin.sock")]
    pub admin_socket: PathBuf,
    /// Namespace of the Lease `gatehouse-controller` (the pod's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease. Default: the pod name, else host and pid.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a burst of changes may settle before compiling.
    #[arg(long, default_value = "20ms", value_parser = crate::data_plane::parse_duration)]
    pub coalesce: Duration,
    /// The Redis the proxy beside it uses for `scope: Global` rate limits (the same
    /// `GATEHOUSE_REDIS` as the proxy's). The controller never connects to it: it only
    /// reports, in statuses, when such limits count per replica because there is none.
    #[arg(long, env = "GATEHOUSE_REDIS")]
    pub redis: Option<String>,
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn controller(args: ControllerArgs) -> Result<ExitCode> {
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "gatehouse".into());
        format!("{host}-{}", std::process::id())
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
        let config = gatehouse_controller::Config {
            namespaces: args.namespaces,
            socket: args.admin_socket,
            lease_namespace: args.lease_namespace,
            identity,
            coalesce: args.coalesce,
            redis: args.redis.is_some(),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = gatehouse_controller::run(client, config) => r?,
            _ = term.recv() => tracing::info!("stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
