//! Compiling a large configuration: 10,000 ApiRoutes (20,000 rules, 30,000 matches of
//! every path type, hosts exact/wildcard/any) over 1,000 Upstreams.
//!
//! `cargo bench -p gatehouse-compiler --bench compile`. The target is under 100 ms per
//! compilation on the 2-core CI machine.
//!
//! It runs with the allocator the `gatehouse` binary uses (mimalloc), and drops each
//! output outside the timing right after its iteration, as a long-running controller
//! does between compilations.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse_api::route::{Backend, PathMatch, PathMatchType, RouteMatch, Rule, ValueMatch};
use gatehouse_api::upstream::StaticEndpoint;
use gatehouse_api::{ApiRoute, ApiRouteSpec, Upstream, UpstreamSpec};
use gatehouse_compiler::{Inputs, compile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn meta(ns: &str, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn path(kind: PathMatchType, value: String) -> Option<PathMatch> {
    Some(PathMatch { kind, value })
}

/// The benchmark's input: `routes` routes over `upstreams` upstreams in 10 namespaces.
pub fn inputs(routes: usize, upstreams: usize) -> Inputs {
    let ns = |i: usize| format!("team-{}", i % 10);
    let upstreams_v: Vec<Upstream> = (0..upstreams)
        .map(|u| Upstream {
            metadata: meta(&ns(u), format!("svc-{u}")),
            spec: UpstreamSpec {
                endpoints: Some(
                    (0..3)
                        .map(|e| StaticEndpoint {
                            host: format!("10.{}.{}.{}", u / 250, u % 250, e + 1),
                            port: 8080,
                            weight: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            },
            status: None,
        })
        .collect();
    let routes_v: Vec<ApiRoute> = (0..routes)
        .map(|r| {
            // An upstream of the route's own namespace (u ≡ r mod 10), spread over all.
            let upstream = format!("svc-{}", (r * 7) % (upstreams / 10) * 10 + r % 10);
            let hosts = match r % 3 {
                0 => vec![format!("api{}.example.com", r % 50)],
                1 => vec![format!("*.zone{}.example.com", r % 20)],
                _ => vec![],
            };
            let backends = Some(vec![Backend {
                upstream,
                weight: None,
            }]);
            ApiRoute {
                metadata: meta(&ns(r), format!("route-{r}")),
                spec: ApiRouteSpec {
                    hosts,
                    rules: vec![
                        Rule {
                            name: Some("item".into()),
                            matches: vec![RouteMatch {
                                path: path(PathMatchType::Template, format!("/r{r}/items/{{id}}")),
                                methods: vec!["GET".into(), "PUT".into()],
                                ..Default::default()
                            }],
                            backends: backends.clone(),
                            ..Default::default()
                        },
                        Rule {
                            name: Some("rest".into()),
                            matches: vec![
                                RouteMatch {
                                    path: path(PathMatchType::Prefix, format!("/r{r}")),
                                    headers: vec![ValueMatch {
                                        name: "x-tenant".into(),
                                        kind: None,
                                        value: Some("acme".into()),
                                    }],
                                    ..Default::default()
                                },
                                RouteMatch {
                                    path: if r % 10 == 0 {
                                        path(PathMatchType::Regex, format!("/r{r}/v[0-9]+/.*"))
                                    } else {
                                        path(PathMatchType::Exact, format!("/r{r}/health"))
                                    },
                                    ..Default::default()
                                },
                            ],
                            backends,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                status: None,
            }
        })
        .collect();
    Inputs {
        routes: routes_v.into_iter().map(std::sync::Arc::new).collect(),
        upstreams: upstreams_v.into_iter().map(std::sync::Arc::new).collect(),
        ..Default::default()
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let big = inputs(10_000, 1_000);
    // Sanity: everything is accepted, so the bench measures the full path.
    let out = compile(&big);
    assert_eq!(
        out.table.routes.len(),
        10_000,
        "{:?}",
        out.diagnostics.first()
    );
    assert!(!out.has_errors(), "{:?}", out.diagnostics.first());

    let mut group = c.benchmark_group("compile");
    group.sample_size(20);
    group.bench_function("10k_routes_1k_upstreams", |b| {
        b.iter_batched(
            || (),
            |()| compile(black_box(&big)),
            BatchSize::PerIteration,
        )
    });
    let small = inputs(1_000, 100);
    group.bench_function("1k_routes_100_upstreams", |b| {
        b.iter_batched(
            || (),
            |()| compile(black_box(&small)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
