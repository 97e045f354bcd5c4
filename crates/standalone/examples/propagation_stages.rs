//! Where a one-route change spends its time inside the controller and the proxy, at
//! `N` routes (default 10,000), without the API server: the incremental compile, the
//! diff, the proxy's patch of its running table, and preparing and swapping it in.
//! `make bench-propagation` measures the whole path; this splits the in-process part.
//!
//! `cargo run --release -p gatehouse-standalone --example propagation_stages [N] [CHANGES]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_api::ApiRoute;
use gatehouse_compiler::{Incremental, Inputs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn route(i: usize, path: &str) -> Arc<ApiRoute> {
    let value = serde_json::json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
        "metadata": {
            "name": format!("r{i}"), "namespace": "bench", "generation": 1,
            "creationTimestamp": format!("2026-01-01T{:02}:{:02}:{:02}Z", i / 3600 % 24, i / 60 % 60, i % 60),
        },
        "spec": {"rules": [{
            "matches": [{"path": {"type": "Prefix", "value": path}}],
            "backends": [{"upstream": "svc"}],
        }]},
    });
    match serde_json::from_value(value) {
        Ok(r) => Arc::new(r),
        Err(e) => panic!("route {i}: {e}"),
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let changes = args.get(1).copied().unwrap_or(30);
    let upstream: gatehouse_api::Upstream = match serde_json::from_value(serde_json::json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Upstream",
        "metadata": {"name": "svc", "namespace": "bench", "generation": 1},
        "spec": {"endpoints": [{"host": "127.0.0.1", "port": 9}]},
    })) {
        Ok(u) => u,
        Err(e) => panic!("upstream: {e}"),
    };
    let mut inputs = Inputs {
        routes: (0..n).map(|i| route(i, &format!("/r{i}"))).collect(),
        upstreams: vec![Arc::new(upstream)],
        ..Default::default()
    };
    // In namespace/name order, as the controller's store hands them over.
    inputs
        .routes
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut compiler = Incremental::default();
    let started = Instant::now();
    let mut last = compiler.compile(&inputs);
    assert!(!last.has_errors(), "{:?}", last.diagnostics.first());
    println!(
        "{n} routes: first compile {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let shared = match gatehouse_proxy::Shared::new(last.table.clone()) {
        Ok(s) => s,
        Err(e) => panic!("prepare: {e}"),
    };

    let (mut compile, mut diff, mut patched, mut applied) = (vec![], vec![], vec![], vec![]);
    let mut sent = vec![];
    let mut short = 0;
    for s in 0..changes {
        let at = (s * 7919) % n;
        let i = inputs.routes[at]
            .metadata
            .name
            .as_deref()
            .and_then(|name| name.strip_prefix('r'))
            .and_then(|i| i.parse().ok())
            .unwrap_or(at);
        inputs.routes[at] = route(i, &format!("/moved-{s}"));
        let t = Instant::now();
        let out = compiler.compile(&inputs);
        compile.push(t.elapsed());
        short += usize::from(compiler.last_was_routes_only());

        let t = Instant::now();
        let patch = last.table.diff(&out.table);
        diff.push(t.elapsed());
        sent.push(patch.routes.len());

        let t = Instant::now();
        let table = match shared.table().patched(patch) {
            Ok(t) => t,
            Err(e) => panic!("patch: {e}"),
        };
        patched.push(t.elapsed());

        let t = Instant::now();
        if let Err(e) = shared.apply(table) {
            panic!("apply: {e}");
        }
        applied.push(t.elapsed());
        last = out;
    }
    println!(
        "one route changed, median of {changes}: compile {:.2} ms, diff {:.2} ms, patched {:.2} ms, prepare+swap {:.2} ms",
        median(compile),
        median(diff),
        median(patched),
        median(applied),
    );
    println!("{short} of {changes} compilations took the short path (only routes changed)");
    sent.sort();
    println!(
        "routes in the patch: median {}, max {}",
        sent[sent.len() / 2],
        sent[sent.len() - 1]
    );
}
