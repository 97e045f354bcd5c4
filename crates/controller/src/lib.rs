//! # gatehouse-controller: the control plane
//!
//! ```text
//!  kube watchers (per kind × namespace scope) ──▶ Store ──change──▶ compile loop
//!                                                                    │ coalesce ~20 ms
//!                                                                    │ compile (pure; unchanged routes reused)
//!                                                                    ├─▶ push the difference to the proxy (Unix socket)
//!                                                                    └─▶ status (Lease holder only, SSA)
//! ```
//!
//! - Watches ApiRoute, Upstream, ApiPolicy, Service, EndpointSlice and Secret in every
//!   namespace of `--namespace` (or the whole cluster). Nothing is compiled before every
//!   watch has listed once: a table built from half the objects would drop routes.
//! - Every replica compiles and pushes to its own proxy; the proxy is asked what it runs
//!   every [`RECHECK`], so a restarted proxy gets the table again.
//! - Only the Lease holder writes status (`lease.rs`), and only what changed
//!   (`status.rs`), with an Event for each condition that changed.
//!
//! What it must not know: what the objects mean (the compiler decides; the controller
//! only hands it the watched objects), the proxy's insides (it speaks HTTP over the
//! socket with the messages of `gatehouse_table::push`), flags, signals and exit codes
//! (the binary's). Its errors say which object, Lease or socket they are about.

pub mod lease;
pub mod push;
pub mod status;
pub mod store;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gatehouse_compiler::Output;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::push::{Proxy, PushError};
use crate::status::Programmed;
use crate::store::{Kind, Objects, Store};

/// How often the proxy's running table is checked when nothing changes.
pub const RECHECK: Duration = Duration::from_secs(2);

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// The proxy's admin socket.
    pub socket: PathBuf,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    /// How long a burst of changes may settle before compiling.
    pub coalesce: Duration,
    /// Whether the proxy counts `scope: Global` rate limits in Redis (`--redis`); without
    /// it, statuses say that they count per replica.
    pub redis: bool,
}

fn spawn_watch<K>(
    client: &Client,
    scope: &Option<String>,
    store: &Store,
    kind: fn(&mut Objects) -> &mut Kind<K>,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (scope, store) = (scope.clone(), store.clone());
    let name = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("?");
    tokio::spawn(async move {
        // `watcher` relists on 410 Gone and after errors; the backoff spaces retries.
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => store.update(|o| kind(o).apply(&scope, event)),
                Err(e) => {
                    tracing::warn!(kind = name, namespace = ?scope, error = %e, "watch failed; retrying")
                }
            }
        }
    });
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The compilation task did not finish (the compiler panicked): no table from it can
    /// be trusted, so the controller stops and its restart starts over from the cluster.
    #[error("compiling {routes} ApiRoute(s)")]
    Compile {
        /// How many ApiRoutes were compiled.
        routes: usize,
        /// Why the task did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Runs the controller until the process ends.
pub async fn run(client: Client, config: Config) -> Result<(), ControllerError> {
    let store = Store::default();
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    for scope in &scopes {
        spawn_watch(&client, scope, &store, |o| &mut o.routes);
        spawn_watch(&client, scope, &store, |o| &mut o.upstreams);
        spawn_watch(&client, scope, &store, |o| &mut o.policies);
        spawn_watch(&client, scope, &store, |o| &mut o.services);
        spawn_watch(&client, scope, &store, |o| &mut o.slices);
        spawn_watch(&client, scope, &store, |o| &mut o.secrets);
    }
    let leadership = lease::Leadership::default();
    tokio::spawn(lease::elect(
        client.clone(),
        config.lease_namespace.clone(),
        config.identity.clone(),
        leadership.clone(),
    ));
    let proxy = Proxy::new(&config.socket);
    let (status_tx, status_rx) = tokio::sync::watch::channel::<StatusSnapshot>(None);
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "gatehouse".into(),
            instance: Some(config.identity.clone()),
        },
    );
    tokio::spawn(write_status(
        client.clone(),
        store.clone(),
        leadership.clone(),
        recorder,
        status_rx,
    ));
    let mut changes = store.subscribe();
    let mut recheck = tokio::time::interval(RECHECK);
    // Routes whose spec did not change are not compiled again.
    let mut incremental = gatehouse_compiler::Incremental::default();
    let mut compiled: Option<Arc<Output>> = None;
    // The table the proxy acknowledged last (its version aside): the base of patches.
    let mut pushed: Option<Arc<Output>> = None;
    let mut programmed = Programmed::No("not pushed yet".into());
    let mut version = 0u64;
    // The proxy's endpoints in rotation, for Upstreams with health checks.
    let mut ready = Arc::new(status::Ready::new());
    loop {
        let changed = tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                true
            }
            _ = recheck.tick() => false,
        };
        let woke = std::time::Instant::now();
        if changed {
            // Let a burst settle, then compile once.
            tokio::time::sleep(config.coalesce).await;
            changes.borrow_and_update();
            let settled = woke.elapsed();
            let inputs = {
                let objects = store.lock();
                objects.synced(&scopes).then(|| objects.inputs())
            };
            let inputs = inputs.map(|mut i| {
                i.redis = config.redis;
                i
            });
            let Some(inputs) = inputs else { continue };
            let copied = woke.elapsed() - settled;
            let started = std::time::Instant::now();
            let mut compiler = std::mem::take(&mut incremental);
            let routes = inputs.routes.len();
            let (out, compiler) = tokio::task::spawn_blocking(move || {
                let out = compiler.compile(&inputs);
                (out, compiler)
            })
            .await
            .map_err(|source| ControllerError::Compile { routes, source })?;
            incremental = compiler;
            tracing::info!(
                routes = out.table.routes.len(),
                diagnostics = out.diagnostics.len(),
                hash = %out.table.hash,
                took_ms = started.elapsed().as_millis() as u64,
                settled_ms = settled.as_millis() as u64,
                copied_ms = copied.as_millis() as u64,
                "compiled"
            );
            compiled = Some(Arc::new(out));
        }
        let Some(out) = &compiled else { continue };

        // Push when the proxy runs anything else (a change here, or a restarted proxy):
        // the difference from what it runs when that is the table pushed last, else the
        // whole table.
        let answer = proxy.running().await;
        if let Ok(running) = &answer
            && running.hash == out.table.hash
            && *ready != running.ready_endpoints
        {
            ready = Arc::new(running.ready_endpoints.clone());
        }
        programmed = match answer {
            Ok(running) if running.hash == out.table.hash => Programmed::Yes,
            Ok(running) => {
                version = version.max(running.version) + 1;
                let patched = match &pushed {
                    Some(base) if base.table.hash == running.hash => {
                        let mut patch = base.table.diff(&out.table);
                        patch.version = version;
                        match proxy.patch(&patch).await {
                            Ok(_) => Some(Ok(())),
                            Err(PushError::OtherBase { .. }) => None,
                            Err(e) => Some(Err(e)),
                        }
                    }
                    _ => None,
                };
                let by_patch = patched.is_some();
                let result = match patched {
                    Some(done) => done,
                    None => {
                        let mut table = out.table.clone();
                        table.version = version;
                        proxy.push(&table).await.map(|_| ())
                    }
                };
                match result {
                    Ok(()) => {
                        tracing::info!(
                            version,
                            hash = %out.table.hash,
                            by_patch,
                            since_wake_ms = woke.elapsed().as_millis() as u64,
                            "pushed"
                        );
                        pushed = Some(out.clone());
                        Programmed::Yes
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "push failed");
                        Programmed::No(e.to_string())
                    }
                }
            }
            Err(e @ PushError::Unreachable { .. })
            | Err(e @ PushError::Refused { .. })
            | Err(e @ PushError::OtherBase { .. }) => {
                if programmed == Programmed::Yes || changed {
                    tracing::warn!(error = %e, "proxy unreachable; will retry");
                }
                Programmed::No(e.to_string())
            }
        };

        // Status is written beside this loop, never in its way: a backlog of thousands
        // of status writes must not delay the next push.
        status_tx.send_replace(Some((out.clone(), programmed.clone(), ready.clone())));
    }
}

/// Status writes in flight at once.
const STATUS_CONCURRENCY: usize = 16;

type StatusSnapshot = Option<(Arc<Output>, Programmed, Arc<status::Ready>)>;

/// Writes the status the latest snapshot calls for while this replica leads; moves on
/// to a newer snapshot as soon as there is one (stale writes are skipped), and retries
/// what failed on the next round.
async fn write_status(
    client: Client,
    store: Store,
    leadership: lease::Leadership,
    recorder: kube::runtime::events::Recorder,
    mut snapshots: tokio::sync::watch::Receiver<StatusSnapshot>,
) {
    let mut retry = tokio::time::interval(RECHECK);
    let mut newer = false;
    let mut verified = status::Verified::default();
    loop {
        if !newer {
            tokio::select! {
                r = snapshots.changed() => if r.is_err() { return },
                _ = retry.tick() => {}
            }
        }
        newer = false;
        if !leadership.is_leader() {
            continue;
        }
        let Some((out, programmed, ready)) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        // A pass over every status is synchronous work: off the async threads, so that
        // it never holds up the compile loop or the watches.
        let pass = {
            let (out, store) = (out.clone(), store.clone());
            let mut kept = std::mem::take(&mut verified);
            tokio::task::spawn_blocking(move || {
                let writes = status::pending(&out, &programmed, &ready, || store.lock(), &mut kept);
                (writes, kept)
            })
        };
        let writes = match pass.await {
            Ok((writes, kept)) => {
                verified = kept;
                writes
            }
            Err(e) => {
                tracing::error!(error = %e, "the status pass failed; comparing every status again next time");
                continue;
            }
        };
        let mut writes = futures_util::stream::iter(writes)
            .map(|w| {
                let (client, recorder) = (&client, &recorder);
                async move {
                    match status::write(client, &w.object, w.status.clone()).await {
                        Ok(()) => status::announce(recorder, &w).await,
                        Err(e) => {
                            tracing::warn!(object = %w.object, error = %e, "status write failed; will retry")
                        }
                    }
                }
            })
            .buffer_unordered(STATUS_CONCURRENCY);
        loop {
            tokio::select! {
                next = writes.next() => if next.is_none() { break },
                // A newer table: what is left may be stale; start over from it.
                r = snapshots.changed() => {
                    if r.is_err() {
                        return;
                    }
                    newer = true;
                    break;
                }
            }
        }
    }
}
