//! # gatehouse-proxy: the data plane
//!
//! ```text
//!  Table ──Prepared::new (off the request path)──▶ ArcSwap<Prepared> ──load──▶ request path
//!                                                                   (one per request, no lock)
//!  worker thread × cores: current-thread tokio runtime + SO_REUSEPORT listener + its own
//!  upstream connection pool; nothing on the request path is shared but the table.
//! ```
//!
//! What it owns: listeners, the request path (`request_path.rs`, in the fixed order of
//! `DESIGN.md`), upstream connections, gateway errors (`problem.rs`). What it must not
//! know: Kubernetes and manifests; it only ever sees a `gatehouse_table::Table`.
//!
//! Per-upstream state (endpoint schedule, DNS answers, round-robin position) lives in
//! `upstream_state.rs` and outlives table swaps. Policies arrive in later slices; until
//! then the compiler blocks rules that use them and the request path answers 503.

pub mod admin;
mod headers;
pub mod metrics;
mod pool;
pub mod prepared;
mod problem;
mod request_path;
mod server;
pub mod upstream_state;

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use gatehouse_table::Table;
use http_body_util::{Either, Full};

pub use admin::{AdminListening, AdminState, ExplainFn, serve_admin};
pub use prepared::{PrepareError, Prepared};
pub use server::{Listening, serve};

/// Every response body: generated (`Full`) or streamed from an upstream.
pub type Body = Either<Full<Bytes>, hyper::body::Incoming>;

pub(crate) fn full(bytes: Bytes) -> Body {
    Either::Left(Full::new(bytes))
}

/// State shared by every worker: the current table and the metrics.
#[derive(Debug)]
pub struct Shared {
    current: ArcSwap<Prepared>,
    /// Upstream state carried from table to table.
    states: upstream_state::States,
    /// Request and config metrics.
    pub metrics: metrics::Metrics,
}

impl Shared {
    /// Starts with `table`.
    pub fn new(table: Table) -> Result<Arc<Shared>, PrepareError> {
        let started = std::time::Instant::now();
        let version = table.version;
        let states = upstream_state::States::default();
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(Prepared::new(table, &states)?),
            states,
            metrics: metrics::Metrics::default(),
        });
        shared
            .metrics
            .config_applied(version, true, started.elapsed());
        Ok(shared)
    }

    /// Prepares `table` and, if that works, makes it the one requests see, atomically.
    /// On error the running table is untouched.
    pub fn apply(&self, table: Table) -> Result<(), PrepareError> {
        let started = std::time::Instant::now();
        let version = table.version;
        let result = Prepared::new(table, &self.states).map(|p| self.current.store(Arc::new(p)));
        self.metrics
            .config_applied(version, result.is_ok(), started.elapsed());
        result
    }

    /// The table being served.
    pub fn table(&self) -> Arc<Table> {
        self.current.load().table.clone()
    }
}
