//! The controller against a real Kubernetes API server: `gatehouse controller` and
//! `gatehouse proxy` as processes, objects written through the API, traffic and status
//! observed from outside.
//!
//! Runs when `GATEHOUSE_E2E_KUBECONFIG` names an admin kubeconfig (`make e2e-kube` sets
//! it up: a kube-apiserver and etcd built from Go modules, in a network namespace of
//! its own); otherwise every test says it was skipped and passes. The same suite runs
//! against any cluster the caller can reach (`make e2e-kind`).
//!
//! Environment:
//! - `GATEHOUSE_E2E_KUBECONFIG`: admin credentials, used by the tests to write objects.
//! - `GATEHOUSE_E2E_CONTROLLER_KUBECONFIG`: what the controller runs as (a
//!   ServiceAccount bound to the chart's RBAC rules, `charts/gatehouse`); default: the admin one.
//! - `GATEHOUSE_E2E_ADDRS`: comma-separated IPs this host owns that an EndpointSlice may
//!   name (not loopback: the API server refuses it); test upstreams listen on them.
//! - `GATEHOUSE_E2E_LEASE_BINDING`: `namespace/serviceaccount` to bind the Lease role
//!   to in each test namespace (when the controller runs as a ServiceAccount).
//!
//! Each test works in a namespace of its own and runs its own controller scoped to it
//! (`--namespace`, Lease in the same namespace), so tests run in parallel.

mod common;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

use common::{Running, free_port, status};

/// The binary under test: this build's, or `GATEHOUSE_BIN` (the propagation bench
/// sets it to the release build).
fn gatehouse_bin() -> PathBuf {
    std::env::var_os("GATEHOUSE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_gatehouse")),
        PathBuf::from,
    )
}

/// Where a process's log goes: a file in `GATEHOUSE_E2E_LOGS` when set, else nowhere.
fn log_to(name: &str) -> Stdio {
    std::env::var_os("GATEHOUSE_E2E_LOGS")
        .filter(|dir| !dir.is_empty())
        .and_then(|dir| std::fs::File::create(PathBuf::from(dir).join(name)).ok())
        .map_or_else(Stdio::null, Stdio::from)
}

/// How long anything may take to converge before a test fails.
const CONVERGE: Duration = Duration::from_secs(30);

struct Cluster {
    admin: PathBuf,
    controller: PathBuf,
    addrs: Vec<IpAddr>,
    lease_binding: Option<(String, String)>,
}

fn cluster() -> Option<Cluster> {
    let admin = PathBuf::from(std::env::var_os("GATEHOUSE_E2E_KUBECONFIG")?);
    let controller = std::env::var_os("GATEHOUSE_E2E_CONTROLLER_KUBECONFIG")
        .map_or_else(|| admin.clone(), PathBuf::from);
    let addrs = std::env::var("GATEHOUSE_E2E_ADDRS")
        .unwrap_or_else(|_| "198.18.0.2".into())
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let lease_binding = std::env::var("GATEHOUSE_E2E_LEASE_BINDING")
        .ok()
        .and_then(|b| {
            b.split_once('/')
                .map(|(ns, sa)| (ns.to_string(), sa.to_string()))
        });
    Some(Cluster {
        admin,
        controller,
        addrs,
        lease_binding,
    })
}

/// Polls `check` until it holds, up to [`CONVERGE`].
async fn converge<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("did not converge within {CONVERGE:?}: {what}");
}

/// Blocking HTTP from async code.
async fn get(addr: SocketAddr, path: &str) -> u16 {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || status(addr, &path))
        .await
        .unwrap_or(0)
}

/// Which echo server answered `path` (its `x-echo-server`), when one did.
async fn served_by(addr: SocketAddr, path: &str) -> Option<String> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let r = common::try_send_raw(
            addr,
            common::request_head("GET", "e2e.test", &path, &[("Connection", "close")]).as_bytes(),
        )
        .ok()?;
        (r.status == 200)
            .then(|| r.header("x-echo-server").map(String::from))
            .flatten()
    })
    .await
    .ok()
    .flatten()
}

/// One test's world: a namespace, a proxy and a controller scoped to it.
struct World {
    client: Client,
    ns: String,
    http: SocketAddr,
    https: SocketAddr,
    _dir: tempfile::TempDir,
    proxy: Option<Running>,
    controller: Option<Running>,
    socket: PathBuf,
    state: PathBuf,
    controller_kubeconfig: PathBuf,
    addrs: Vec<IpAddr>,
}

async fn admin_client(path: &PathBuf) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl World {
    async fn new(cluster: &Cluster, name: &str) -> World {
        let client = admin_client(&cluster.admin).await;
        let ns = format!("e2e-{name}-{}", std::process::id());
        let namespaces: Api<DynamicObject> =
            Api::all_with(client.clone(), &resource("v1", "Namespace"));
        namespaces
            .patch(
                &ns,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                ),
            )
            .await
            .expect("create the test namespace");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut world = World {
            client,
            http: free_port(),
            https: free_port(),
            socket: dir.path().join("admin.sock"),
            state: dir.path().join("state"),
            _dir: dir,
            proxy: None,
            controller: None,
            controller_kubeconfig: cluster.controller.clone(),
            addrs: cluster.addrs.clone(),
            ns,
        };
        if let Some((sa_ns, sa)) = &cluster.lease_binding {
            world
                .apply(json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "gatehouse-controller-lease"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gatehouse-controller-lease"},
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
                }))
                .await;
        }
        world.start_proxy();
        world.start_controller();
        world
    }

    fn start_proxy(&mut self) {
        let admin = free_port();
        let child = Command::new(gatehouse_bin())
            .args(["proxy", "--workers", "1", "--metrics", "off"])
            .arg("--https")
            .arg(self.https.to_string())
            .arg("--http")
            .arg(self.http.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--admin-socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(log_to(&format!("{}-proxy.log", self.ns)))
            .spawn()
            .expect("start gatehouse proxy");
        self.proxy = Some(Running(child));
        assert!(
            common::eventually(|| status(admin, "/healthz") == 200),
            "proxy up"
        );
    }

    fn start_controller(&mut self) {
        let identity = format!("{}-controller", self.ns);
        let socket = self.socket.clone();
        self.controller = Some(self.spawn_controller(&identity, &socket));
    }

    /// A controller replica for this namespace, pushing to `socket`.
    fn spawn_controller(&self, identity: &str, socket: &std::path::Path) -> Running {
        let child = Command::new(gatehouse_bin())
            .args(["controller", "--coalesce", "20ms"])
            .arg("--namespace")
            .arg(&self.ns)
            .arg("--lease-namespace")
            .arg(&self.ns)
            .arg("--identity")
            .arg(identity)
            .arg("--admin-socket")
            .arg(socket)
            .env("KUBECONFIG", &self.controller_kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_to(&format!("{identity}.log")))
            .spawn()
            .expect("start gatehouse controller");
        Running(child)
    }

    /// Who holds the Lease `gatehouse-controller` in this namespace.
    async fn lease_holder(&self) -> Option<String> {
        let o = self
            .get_object("coordination.k8s.io/v1", "Lease", "gatehouse-controller")
            .await?;
        o["spec"]["holderIdentity"].as_str().map(String::from)
    }

    /// Server-side applies `object` in the test namespace (unless it names another).
    async fn apply(&self, mut object: Value) {
        let api_version = object["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .to_string();
        let kind = object["kind"].as_str().expect("kind").to_string();
        if object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!(self.ns);
        }
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&self.ns)
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &ns, &resource(&api_version, &kind));
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {ns}/{name}: {e}"));
    }

    async fn delete(&self, api_version: &str, kind: &str, name: &str) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &resource(api_version, kind));
        api.delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
    }

    async fn get_object(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &resource(api_version, kind));
        let o = api.get_opt(name).await.ok()??;
        serde_json::to_value(o).ok()
    }

    /// An echo upstream on the `i`th test address, port `port` (0: any), served by the
    /// test's runtime.
    async fn echo_on(&self, i: usize, port: u16) -> SocketAddr {
        let ip = self.addrs[i % self.addrs.len()];
        gatehouse_testkit::spawn_echo_on(SocketAddr::new(ip, port))
            .await
            .expect("echo upstream on a test address")
    }

    async fn echo(&self, i: usize) -> SocketAddr {
        self.echo_on(i, 0).await
    }

    /// A Service `name` whose port `http` (80) targets `target_port`, and its
    /// EndpointSlice with `endpoints` as (ip, ready).
    async fn service(&self, name: &str, target_port: u16, endpoints: &[(IpAddr, bool)]) {
        self.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": target_port}]},
        }))
        .await;
        self.slice(name, target_port, endpoints).await;
    }

    async fn slice(&self, service: &str, port: u16, endpoints: &[(IpAddr, bool)]) {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(ip, ready)| json!({"addresses": [ip.to_string()], "conditions": {"ready": ready, "serving": ready}}))
            .collect();
        self.apply(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{service}-1"), "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        }))
        .await;
    }

    /// An echo upstream behind the Service and Upstream `name`; returns its address.
    async fn echo_service(&self, name: &str) -> SocketAddr {
        let echo = self.echo(0).await;
        self.service(name, echo.port(), &[(echo.ip(), true)]).await;
        self.upstream(name, name).await;
        echo
    }

    async fn upstream(&self, name: &str, service: &str) {
        self.apply(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Upstream",
            "metadata": {"name": name},
            "spec": {"service": {"name": service, "port": "http"}},
        }))
        .await;
    }

    async fn route(&self, name: &str, rules: Value) {
        self.apply(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
            "metadata": {"name": name},
            "spec": {"rules": rules},
        }))
        .await;
    }

    /// The condition `type_` of an object: (status, reason, observedGeneration == generation).
    async fn condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
    ) -> Option<(String, String, bool)> {
        let o = self
            .get_object("gatehouse.dev/v1alpha1", kind, name)
            .await?;
        let generation = o["metadata"]["generation"].as_i64();
        let c = o["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)?
            .clone();
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
            c["observedGeneration"].as_i64() == generation,
        ))
    }

    /// How many ApiRoutes of this world show `Programmed=True` at their generation.
    async fn programmed_routes(&self) -> usize {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &resource("gatehouse.dev/v1alpha1", "ApiRoute"),
        );
        let Ok(list) = api.list(&Default::default()).await else {
            return 0;
        };
        list.items
            .iter()
            .filter(|o| {
                let status = o.data.get("status");
                status
                    .and_then(|s| s["conditions"].as_array())
                    .is_some_and(|conditions| {
                        conditions.iter().any(|c| {
                            c["type"] == "Programmed"
                                && c["status"] == "True"
                                && c["observedGeneration"].as_i64() == o.metadata.generation
                        })
                    })
            })
            .count()
    }

    async fn condition_is(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> bool {
        self.condition(kind, name, type_)
            .await
            .is_some_and(|(s, r, current)| s == status && r == reason && current)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.controller.take();
        self.proxy.take();
        // On a thread of its own: drop may run inside the test's runtime.
        let (client, ns) = (self.client.clone(), self.ns.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let namespaces: Api<DynamicObject> =
                    Api::all_with(client, &resource("v1", "Namespace"));
                let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// Runs `test` against the cluster, or says it was skipped.
fn with_cluster<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(cluster) = cluster() else {
        eprintln!("skipped {name}: GATEHOUSE_E2E_KUBECONFIG is not set (make e2e-kube)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(test(cluster));
}

fn prefix_rule(path: &str, upstream: &str) -> Value {
    json!({"matches": [{"path": {"type": "Prefix", "value": path}}], "backends": [{"upstream": upstream}]})
}

#[test]
fn a_route_to_a_service_serves_and_reports_programmed_then_follows_edits_and_deletion() {
    with_cluster("route-lifecycle", |cluster| async move {
        let world = World::new(&cluster, "lifecycle").await;
        world.echo_service("users").await;
        world
            .route("users", json!([prefix_rule("/users", "users")]))
            .await;

        converge("traffic reaches the endpoint", || async {
            get(world.http, "/users/1").await == 200
        })
        .await;
        for c in ["Accepted", "ResolvedRefs", "Programmed"] {
            let expected = match c {
                "Accepted" => "Accepted",
                "ResolvedRefs" => "ResolvedRefs",
                _ => "Programmed",
            };
            converge(&format!("{c}=True at the current generation"), || async {
                world
                    .condition_is("ApiRoute", "users", c, "True", expected)
                    .await
            })
            .await;
        }
        converge("Upstream counts its endpoint", || async {
            world
                .get_object("gatehouse.dev/v1alpha1", "Upstream", "users")
                .await
                .is_some_and(|u| {
                    u["status"]["readyEndpoints"] == 1 && u["status"]["totalEndpoints"] == 1
                })
        })
        .await;

        // A new path: the old one 404s, the new one serves.
        world
            .route("users", json!([prefix_rule("/people", "users")]))
            .await;
        converge("the new path serves", || async {
            get(world.http, "/people/1").await == 200
        })
        .await;
        assert_eq!(get(world.http, "/users/1").await, 404);
        converge("Programmed at the new generation", || async {
            world
                .condition_is("ApiRoute", "users", "Programmed", "True", "Programmed")
                .await
        })
        .await;

        world
            .delete("gatehouse.dev/v1alpha1", "ApiRoute", "users")
            .await;
        converge("a deleted route 404s", || async {
            get(world.http, "/people/1").await == 404
        })
        .await;
    });
}

#[test]
fn traffic_follows_endpoint_slices_and_skips_endpoints_that_are_not_ready() {
    with_cluster("endpoints", |cluster| async move {
        let world = World::new(&cluster, "endpoints").await;
        assert!(
            world.addrs.len() >= 2,
            "GATEHOUSE_E2E_ADDRS needs two addresses"
        );
        // Two servers on one port number, on two addresses (as two pods would be).
        let a = world.echo(0).await;
        let b = world.echo_on(1, a.port()).await;
        world.service("pods", a.port(), &[(a.ip(), true)]).await;
        world.upstream("pods", "pods").await;
        world.route("pods", json!([prefix_rule("/", "pods")])).await;
        converge("one endpoint serves", || async {
            served_by(world.http, "/x").await == Some(a.to_string())
        })
        .await;

        // Scale up: both serve.
        world
            .slice("pods", a.port(), &[(a.ip(), true), (b.ip(), true)])
            .await;
        converge("the new endpoint gets traffic", || async {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..10 {
                if let Some(s) = served_by(world.http, "/x").await {
                    seen.insert(s);
                }
            }
            seen.len() == 2
        })
        .await;

        // Not ready: no traffic to it.
        world
            .slice("pods", a.port(), &[(a.ip(), false), (b.ip(), true)])
            .await;
        converge("only the ready endpoint serves", || async {
            let mut all_b = true;
            for _ in 0..10 {
                all_b &= served_by(world.http, "/x").await == Some(b.to_string());
            }
            all_b
        })
        .await;

        // Scale down to the first one.
        world.slice("pods", a.port(), &[(a.ip(), true)]).await;
        converge("traffic follows the scale-down", || async {
            let mut all_a = true;
            for _ in 0..10 {
                all_a &= served_by(world.http, "/x").await == Some(a.to_string());
            }
            all_a
        })
        .await;
    });
}

#[test]
fn an_endpoint_failing_its_probes_leaves_rotation_and_the_upstream_status_counts_it() {
    with_cluster("health", |cluster| async move {
        let world = World::new(&cluster, "health").await;
        assert!(
            world.addrs.len() >= 2,
            "GATEHOUSE_E2E_ADDRS needs two addresses"
        );
        // Two pods on one port number, on two addresses, with a health path.
        let a = gatehouse_testkit::fault::spawn_faulty_on(SocketAddr::new(world.addrs[0], 0))
            .await
            .expect("fault upstream");
        let port = a.addr().port();
        let b = gatehouse_testkit::fault::spawn_faulty_on(SocketAddr::new(world.addrs[1], port))
            .await
            .expect("fault upstream on the second address");
        world
            .service(
                "probed",
                port,
                &[(a.addr().ip(), true), (b.addr().ip(), true)],
            )
            .await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Upstream",
                "metadata": {"name": "probed"},
                "spec": {
                    "service": {"name": "probed", "port": "http"},
                    "healthCheck": {"active": {"path": "/healthz", "interval": "200ms",
                        "timeout": "100ms", "healthyThreshold": 1, "unhealthyThreshold": 2}},
                },
            }))
            .await;
        world
            .route("probed", json!([prefix_rule("/", "probed")]))
            .await;
        let ready_is = |n: u64| {
            let world = &world;
            async move {
                world
                    .get_object("gatehouse.dev/v1alpha1", "Upstream", "probed")
                    .await
                    .is_some_and(|u| {
                        u["status"]["readyEndpoints"] == n && u["status"]["totalEndpoints"] == 2
                    })
            }
        };
        converge("both endpoints ready", || ready_is(2)).await;

        a.healthy(false);
        converge("the failing endpoint leaves the status count", || {
            ready_is(1)
        })
        .await;
        converge("and rotation", || async {
            let mut all_b = true;
            for _ in 0..10 {
                all_b &= served_by(world.http, "/x").await == Some(b.addr().to_string());
            }
            all_b
        })
        .await;

        a.healthy(true);
        converge("it comes back", || ready_is(2)).await;
    });
}

#[test]
fn invalid_missing_and_conflicting_routes_report_and_affect_only_themselves() {
    with_cluster("errors", |cluster| async move {
        let world = World::new(&cluster, "errors").await;
        world.echo_service("svc").await;
        world
            .route("good", json!([prefix_rule("/good", "svc")]))
            .await;
        converge("the good route serves", || async {
            get(world.http, "/good").await == 200
        })
        .await;

        // A regex the compiler refuses.
        world
            .route(
                "bad-regex",
                json!([{"matches": [{"path": {"type": "Regex", "value": "/a(b"}}], "backends": [{"upstream": "svc"}]}]),
            )
            .await;
        converge("Accepted=False Invalid", || async {
            world
                .condition_is("ApiRoute", "bad-regex", "Accepted", "False", "Invalid")
                .await
        })
        .await;
        converge("a Warning Event says why", || async {
            let events: Api<DynamicObject> = Api::namespaced_with(
                world.client.clone(),
                &world.ns,
                &resource("events.k8s.io/v1", "Event"),
            );
            events
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items.iter().any(|e| {
                        e.data["regarding"]["name"] == "bad-regex"
                            && e.data["reason"] == "Invalid"
                            && e.data["type"] == "Warning"
                    })
                })
                .unwrap_or(false)
        })
        .await;

        // A missing Upstream: ResolvedRefs=False, and the route answers 503.
        world
            .route("missing", json!([prefix_rule("/missing", "nowhere")]))
            .await;
        converge("ResolvedRefs=False UpstreamNotFound", || async {
            world
                .condition_is(
                    "ApiRoute",
                    "missing",
                    "ResolvedRefs",
                    "False",
                    "UpstreamNotFound",
                )
                .await
        })
        .await;
        converge("the route with a missing upstream is 503", || async {
            get(world.http, "/missing").await == 503
        })
        .await;

        // The same match twice: the newer route is Conflicted and names the older.
        // creationTimestamp has one-second resolution: make "newer" unambiguous (within
        // one second the tie is broken by namespace/name, and "dup" < "good").
        tokio::time::sleep(Duration::from_millis(1100)).await;
        world
            .route("dup", json!([prefix_rule("/good", "svc")]))
            .await;
        let conflicted = async {
            converge("the newer duplicate is Conflicted", || async {
                world
                    .condition_is("ApiRoute", "dup", "Accepted", "False", "Conflicted")
                    .await
            })
            .await
        };
        if tokio::time::timeout(CONVERGE + Duration::from_secs(1), conflicted)
            .await
            .is_err()
            || !world
                .condition_is("ApiRoute", "dup", "Accepted", "False", "Conflicted")
                .await
        {
            panic!(
                "dup: {:#}\ngood: {:#}",
                world
                    .get_object("gatehouse.dev/v1alpha1", "ApiRoute", "dup")
                    .await
                    .unwrap_or_default(),
                world
                    .get_object("gatehouse.dev/v1alpha1", "ApiRoute", "good")
                    .await
                    .unwrap_or_default()
            );
        }
        let dup = world
            .get_object("gatehouse.dev/v1alpha1", "ApiRoute", "dup")
            .await
            .expect("dup route");
        let message = dup["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Accepted"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("good"), "names the winner: {message}");

        // Through all of it the good route kept serving.
        assert_eq!(get(world.http, "/good").await, 200);
        assert!(
            world
                .condition_is("ApiRoute", "good", "Programmed", "True", "Programmed")
                .await
        );
    });
}

#[test]
fn objects_outside_the_watched_namespace_are_ignored() {
    with_cluster("scoping", |cluster| async move {
        let world = World::new(&cluster, "scoping").await;
        let other = World::new(&cluster, "scoping-other").await;
        let echo = world.echo_service("svc").await;
        world
            .route("mine", json!([prefix_rule("/mine", "svc")]))
            .await;
        // The other namespace's route: served by its own controller, not by ours.
        other
            .service("svc", echo.port(), &[(echo.ip(), true)])
            .await;
        other.upstream("svc", "svc").await;
        other
            .route("theirs", json!([prefix_rule("/theirs", "svc")]))
            .await;
        converge("ours serves ours", || async {
            get(world.http, "/mine").await == 200
        })
        .await;
        converge("theirs serves theirs", || async {
            get(other.http, "/theirs").await == 200
        })
        .await;
        assert_eq!(get(world.http, "/theirs").await, 404);
        assert_eq!(get(other.http, "/mine").await, 404);
    });
}

#[test]
fn the_proxy_serves_without_its_controller_and_across_its_own_restart() {
    with_cluster("static-stability", |cluster| async move {
        let mut world = World::new(&cluster, "stability").await;
        world.echo_service("svc").await;
        world.route("r", json!([prefix_rule("/r", "svc")])).await;
        converge("served", || async { get(world.http, "/r").await == 200 }).await;
        // The proxy persists a table right after applying it: wait for the file, or the
        // restart below could race the write.
        let persisted = world.state.join("table.json");
        converge("the table is persisted", || async {
            std::fs::read_to_string(&persisted).is_ok_and(|t| t.contains("\"/r\""))
        })
        .await;

        // The controller dies: the proxy keeps serving.
        world.controller.take();
        assert_eq!(get(world.http, "/r").await, 200);
        // The proxy restarts while the controller is down: the persisted table serves.
        world.proxy.take();
        world.start_proxy();
        converge("the persisted table serves", || async {
            get(world.http, "/r").await == 200
        })
        .await;

        // The controller comes back and changes reach the proxy again.
        world.start_controller();
        world
            .route("r", json!([prefix_rule("/again", "svc")]))
            .await;
        converge("changes flow again", || async {
            get(world.http, "/again").await == 200
        })
        .await;
    });
}

#[test]
fn a_consumer_secret_change_is_compiled_and_pushed() {
    with_cluster("secrets", |cluster| async move {
        let world = World::new(&cluster, "secrets").await;
        world.echo_service("svc").await;
        world.route("r", json!([prefix_rule("/r", "svc")])).await;
        converge("served", || async { get(world.http, "/r").await == 200 }).await;
        let before = running_hash(&world).await;
        world
            .apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "alice", "labels": {"gatehouse.dev/consumer": "true"}},
                "stringData": {"apiKey": "alice-key-123"},
            }))
            .await;
        converge("a new table with the consumer is pushed", || async {
            running_hash(&world)
                .await
                .is_some_and(|h| Some(&h) != before.as_ref())
        })
        .await;
    });
}

/// The status of `GET path` (host `e2e.test`) with `headers`; 0 when no answer came.
async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let head = common::request_head(
        "GET",
        "e2e.test",
        path,
        &[headers, &[("Connection", "close")]].concat(),
    );
    tokio::task::spawn_blocking(move || {
        common::try_send_raw(addr, head.as_bytes())
            .ok()
            .map_or(0, |r| r.status)
    })
    .await
    .unwrap_or(0)
}

#[test]
fn consumer_api_keys_follow_their_secret_and_never_reach_the_persisted_table() {
    with_cluster("consumers", |cluster| async move {
        let mut world = World::new(&cluster, "consumers").await;
        world.echo_service("svc").await;
        let mut rule = prefix_rule("/private", "svc");
        rule["policies"] = json!({"authentication": {"apiKey": {}, "basic": {}}});
        world.route("r", json!([rule])).await;
        // A bcrypt hash (cost 4) of "alice-password".
        let hash = "$2b$04$TdMV/kCBf0M6NpolvSbgMe/LjrVxjbGpMalWnhhE.tKRrTmybP1C6";
        let secret = |key: &str| {
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "alice", "labels": {"gatehouse.dev/consumer": "alice"}},
                "stringData": {"api-key": key, "username": "alice", "password-hash": hash},
            })
        };
        let key = |k: &'static str| [("X-Api-Key", k)];
        converge("the route refuses callers without credentials", || async {
            get_with(world.http, "/private", &[]).await == 401
        })
        .await;

        // Created: its key is accepted.
        world.apply(secret("first-key-9f3a")).await;
        converge("the consumer's key is accepted", || async {
            get_with(world.http, "/private", &key("first-key-9f3a")).await == 200
        })
        .await;
        assert_eq!(
            get_with(world.http, "/private", &key("other-key")).await,
            401
        );
        // base64("alice:alice-password")
        let basic = [("Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=")];
        assert_eq!(get_with(world.http, "/private", &basic).await, 200);

        // Its key changed: the old one is refused, the new one accepted.
        world.apply(secret("second-key-27c1")).await;
        converge("the new key is accepted", || async {
            get_with(world.http, "/private", &key("second-key-27c1")).await == 200
        })
        .await;
        assert_eq!(
            get_with(world.http, "/private", &key("first-key-9f3a")).await,
            401
        );

        // The persisted table holds neither key nor the password hash.
        let persisted = world.state.join("table.json");
        converge("the table with the new key is persisted", || async {
            std::fs::read_to_string(&persisted).is_ok_and(|t| t.contains("apiKeySha256"))
        })
        .await;
        let text = std::fs::read_to_string(&persisted).expect("persisted table");
        for secret_value in ["first-key-9f3a", "second-key-27c1", hash] {
            assert!(
                !text.contains(secret_value),
                "the persisted table holds {secret_value}"
            );
        }
        // The proxy restarts from that table: the hash is withheld there, so basic
        // credentials are refused until the controller, seeing a table it did not
        // compile, pushes the whole one again.
        world.proxy.take();
        world.start_proxy();
        converge(
            "basic credentials work again after the proxy's restart",
            || async { get_with(world.http, "/private", &basic).await == 200 },
        )
        .await;

        // Deleted: its key is refused.
        world.delete("v1", "Secret", "alice").await;
        converge("the deleted consumer's key is refused", || async {
            get_with(world.http, "/private", &key("second-key-27c1")).await == 401
        })
        .await;
    });
}

/// The response to `GET path` (host `e2e.test`), when one came.
async fn fetch(addr: SocketAddr, path: &str) -> Option<common::RawResponse> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        common::try_send_raw(
            addr,
            common::request_head("GET", "e2e.test", &path, &[("Connection", "close")]).as_bytes(),
        )
        .ok()
    })
    .await
    .ok()
    .flatten()
}

#[test]
fn an_api_policy_applies_to_the_routes_that_reference_it_and_counts_them() {
    with_cluster("api-policy", |cluster| async move {
        let world = World::new(&cluster, "policy").await;
        world.echo_service("svc").await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiPolicy",
                "metadata": {"name": "stamp"},
                "spec": {"responseTransform": {"headers": {"set": {"X-Policy": "stamp"}}}},
            }))
            .await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
                "metadata": {"name": "r"},
                "spec": {"policyRefs": [{"name": "stamp"}], "rules": [prefix_rule("/r", "svc")]},
            }))
            .await;
        world
            .route("plain", json!([prefix_rule("/plain", "svc")]))
            .await;
        converge(
            "the policy applies to the route that references it",
            || async {
                fetch(world.http, "/r")
                    .await
                    .is_some_and(|r| r.status == 200 && r.header("x-policy") == Some("stamp"))
            },
        )
        .await;
        converge(
            "the route without the reference is served without it",
            || async {
                fetch(world.http, "/plain")
                    .await
                    .is_some_and(|r| r.status == 200 && r.header("x-policy").is_none())
            },
        )
        .await;
        converge("the ApiPolicy counts one attached route", || async {
            world
                .get_object("gatehouse.dev/v1alpha1", "ApiPolicy", "stamp")
                .await
                .is_some_and(|o| o["status"]["attachedRoutes"] == 1)
                && world
                    .condition_is("ApiPolicy", "stamp", "Accepted", "True", "Accepted")
                    .await
        })
        .await;

        // The policy changes: every route referencing it follows.
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiPolicy",
                "metadata": {"name": "stamp"},
                "spec": {"rateLimit": {"limits": [{"requests": 1, "period": "1h"}], "key": {"type": "Route"}}},
            }))
            .await;
        converge("the changed policy limits the route", || async {
            fetch(world.http, "/r")
                .await
                .is_some_and(|r| r.status == 429)
        })
        .await;
        assert_eq!(get(world.http, "/plain").await, 200);
    });
}

#[test]
fn a_waf_policy_guards_the_routes_that_reference_it() {
    with_cluster("waf", |cluster| async move {
        let world = World::new(&cluster, "waf").await;
        world.echo_service("svc").await;
        // Native rules and the OWASP Core Rule Set (libmodsecurity in the proxy).
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiPolicy",
                "metadata": {"name": "guard"},
                "spec": {"waf": {"coreRuleSet": {"enabled": true, "paranoiaLevel": 1}}},
            }))
            .await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
                "metadata": {"name": "guarded"},
                "spec": {"policyRefs": [{"name": "guard"}], "rules": [prefix_rule("/guarded", "svc")]},
            }))
            .await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
                "metadata": {"name": "watched"},
                "spec": {"rules": [{
                    "matches": [{"path": {"type": "Prefix", "value": "/watched"}}],
                    "backends": [{"upstream": "svc"}],
                    "policies": {"waf": {"mode": "Detect", "rules": ["CrossSiteScripting"]}},
                }, {
                    // `rules: []` (no native rule, an allowlist alone) survives the API
                    // server's schema as written.
                    "matches": [{"path": {"type": "Prefix", "value": "/allowlisted"}}],
                    "backends": [{"upstream": "svc"}],
                    "policies": {"waf": {"rules": [], "allowCidrs": ["192.0.2.0/24"]}},
                }]},
            }))
            .await;
        converge("a benign request passes the guarded route", || async {
            get(world.http, "/guarded?q=select+a+blue+shirt").await == 200
        })
        .await;
        for attack in [
            "/guarded?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "/guarded?id=1%27%20OR%20%271%27%3D%271",
            "/guarded?file=..%2F..%2Fetc%2Fpasswd",
        ] {
            let r = fetch(world.http, attack).await.expect("an answer");
            assert_eq!(r.status, 403, "{attack}: {r:?}");
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("application/problem+json")),
                "{r:?}"
            );
        }
        converge("the Detect route lets an attack through", || async {
            get(world.http, "/watched?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await == 200
        })
        .await;
        converge("a client outside the allowlist is refused", || async {
            get(world.http, "/allowlisted").await == 403
        })
        .await;
        let stored = world
            .get_object("gatehouse.dev/v1alpha1", "ApiRoute", "watched")
            .await
            .expect("the route");
        assert_eq!(
            stored["spec"]["rules"][1]["policies"]["waf"]["rules"],
            json!([])
        );
        converge("the route with `rules: []` is Accepted", || async {
            world
                .condition_is("ApiRoute", "watched", "Accepted", "True", "Accepted")
                .await
        })
        .await;
    });
}

/// The hash of the table the world's proxy runs (over its admin socket).
async fn running_hash(world: &World) -> Option<String> {
    let proxy = gatehouse_controller::push::Proxy::new(&world.socket);
    proxy.running().await.ok().map(|r| r.hash)
}

#[path = "../../api/tests/cel_cases/mod.rs"]
mod cel_cases;

#[test]
fn the_api_server_enforces_every_cel_rule_with_its_message() {
    with_cluster("cel", |cluster| async move {
        let client = admin_client(&cluster.admin).await;
        let mut wrong = Vec::new();
        let cases = cel_cases::cases();
        for (i, case) in cases.iter().enumerate() {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "gatehouse.dev/v1alpha1",
                "kind": case.kind,
                "metadata": {"name": format!("cel-{i}"), "namespace": "default"},
                "spec": case.spec,
            }))
            .expect("a case is an object");
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                "default",
                &resource("gatehouse.dev/v1alpha1", case.kind),
            );
            let params = kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            };
            match (api.create(&params, &object).await, case.rejects) {
                (Ok(_), None) => {}
                (Err(kube::Error::Api(s)), Some(rule)) if s.message.contains(rule) => {}
                (result, expected) => wrong.push(format!(
                    "case {i} ({}): expected {expected:?}, got {:?}",
                    case.kind,
                    result.map(|_| "accepted").map_err(|e| e.to_string())
                )),
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} cases:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
    });
}

#[test]
fn every_example_manifest_is_accepted_by_the_api_server() {
    with_cluster("examples", |cluster| async move {
        let client = admin_client(&cluster.admin).await;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut checked = 0;
        for dir in ["examples", "bench"] {
            let parsed =
                gatehouse_api::manifest::read_path(&root.join(dir)).expect("examples read");
            assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
            for doc in parsed.documents {
                let value = match &doc.object {
                    gatehouse_api::manifest::Object::ApiRoute(o) => serde_json::to_value(o),
                    gatehouse_api::manifest::Object::Upstream(o) => serde_json::to_value(o),
                    gatehouse_api::manifest::Object::ApiPolicy(o) => serde_json::to_value(o),
                    _ => continue,
                }
                .expect("serializes");
                let mut object: DynamicObject = serde_json::from_value(value).expect("object");
                object.metadata.namespace = Some("default".into());
                let kind = object
                    .types
                    .as_ref()
                    .map(|t| t.kind.clone())
                    .unwrap_or_default();
                let api: Api<DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    "default",
                    &resource("gatehouse.dev/v1alpha1", &kind),
                );
                let params = kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                if let Err(e) = api.create(&params, &object).await {
                    panic!("{} is refused by the API server: {e}", doc.origin);
                }
                checked += 1;
            }
        }
        assert!(checked > 0, "no example objects found");
    });
}

#[test]
fn only_the_lease_holder_writes_status_and_another_replica_takes_over() {
    with_cluster("leader", |cluster| async move {
        let mut world = World::new(&cluster, "leader").await;
        world.echo_service("svc").await;
        world.route("r", json!([prefix_rule("/r", "svc")])).await;
        let first = format!("{}-controller", world.ns);
        converge("the first replica leads", || async {
            world.lease_holder().await.as_deref() == Some(first.as_str())
        })
        .await;
        converge("Programmed", || async {
            world
                .condition_is("ApiRoute", "r", "Programmed", "True", "Programmed")
                .await
        })
        .await;

        // A second replica whose proxy is down: were it to write status, the route would
        // turn Programmed=False Pending.
        let dead_socket = world._dir.path().join("nobody.sock");
        let _second = world.spawn_controller("second", &dead_socket);
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                world
                    .condition_is("ApiRoute", "r", "Programmed", "True", "Programmed")
                    .await,
                "the follower wrote status"
            );
        }
        assert_eq!(world.lease_holder().await.as_deref(), Some(first.as_str()));

        // The leader dies: within the Lease's duration the second takes over, and its
        // view (its proxy is unreachable) is what status shows now.
        world.controller.take();
        converge("the second replica takes the Lease", || async {
            world.lease_holder().await.as_deref() == Some("second")
        })
        .await;
        converge("the new leader writes status", || async {
            world
                .condition_is("ApiRoute", "r", "Programmed", "False", "Pending")
                .await
        })
        .await;
    });
}

/// Write-to-traffic latency: with `routes` routes served, how long after an API write
/// (a route's path changes) the proxy serves the new path. Prints p50/p99 over
/// `samples` writes. A benchmark, not a test: run by `make bench-propagation`.
async fn propagation(cluster: &Cluster, routes: usize, samples: usize) {
    use futures_util::StreamExt;
    let world = World::new(cluster, &format!("propagation-{routes}")).await;
    world.echo_service("svc").await;
    let started = std::time::Instant::now();
    futures_util::stream::iter(0..routes)
        .map(|i| {
            let world = &world;
            async move {
                world
                    .route(
                        &format!("r{i}"),
                        json!([prefix_rule(&format!("/r{i}"), "svc")]),
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let last = format!("/r{}", routes - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while get(world.http, &last).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{routes} routes never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "propagation: {routes} routes created and served in {:?}",
        started.elapsed()
    );
    // Steady state before measuring: the statuses of the routes just created are
    // written (a bulk create leaves thousands of status writes in flight, which load the
    // API server the samples go through).
    loop {
        let programmed = world.programmed_routes().await;
        if programmed == routes {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{programmed} of {routes} routes programmed"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "propagation: every status written after {:?}",
        started.elapsed()
    );
    let mut took = Vec::with_capacity(samples);
    // PROPAGATION_TRACE=1: each write's wall-clock start, to line up with the logs.
    let trace = std::env::var_os("PROPAGATION_TRACE").is_some();
    for s in 0..samples {
        let path = format!("/moved-{s}");
        let t0 = std::time::Instant::now();
        let wall = std::time::SystemTime::now();
        world
            .route(
                &format!("r{}", s % routes),
                json!([prefix_rule(&path, "svc")]),
            )
            .await;
        loop {
            if get(world.http, &path).await == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "a change never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(t0.elapsed());
        if trace {
            let at = wall
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            eprintln!(
                "sample {s}: written at {at:.3}, served after {:.1} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "propagation {routes:>6} routes: p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({samples} writes)",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3,
    );
}

#[test]
#[ignore = "a benchmark: make bench-propagation"]
fn propagation_bench() {
    with_cluster("propagation", |cluster| async move {
        let samples = std::env::var("PROPAGATION_SAMPLES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(50);
        let sizes: Vec<usize> = std::env::var("PROPAGATION_ROUTES")
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1_000, 10_000]);
        for routes in sizes {
            propagation(&cluster, routes, samples).await;
        }
    });
}

#[test]
#[ignore = "restarts the API server: run alone by make e2e-kube after the suite"]
fn the_controller_converges_after_an_api_server_restart_with_compaction() {
    with_cluster("apiserver-restart", |cluster| async move {
        let Some(state) = std::env::var_os("GATEHOUSE_E2E_CONTROLPLANE_DIR") else {
            eprintln!("skipped: GATEHOUSE_E2E_CONTROLPLANE_DIR is not set (make e2e-kube)");
            return;
        };
        let world = World::new(&cluster, "restart").await;
        world.echo_service("svc").await;
        world
            .route("before", json!([prefix_rule("/before", "svc")]))
            .await;
        converge("served", || async {
            get(world.http, "/before").await == 200
        })
        .await;

        // Traffic throughout the outage.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let http = world.http;
        let load = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if status(http, "/before") == 200 {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        };

        // etcd compacted (old resourceVersions answer 410), API server down and back.
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../e2e/controlplane/restart-apiserver.sh");
        let restarted = tokio::task::spawn_blocking(move || {
            Command::new(script)
                .arg(state)
                .status()
                .is_ok_and(|s| s.success())
        })
        .await
        .unwrap_or(false);
        assert!(restarted, "the API server restarted");

        // The watches relist and the controller converges on what is written now.
        world
            .route("after", json!([prefix_rule("/after", "svc")]))
            .await;
        converge("a change after the restart is served", || async {
            get(world.http, "/after").await == 200
        })
        .await;
        converge("status is written again", || async {
            world
                .condition_is("ApiRoute", "after", "Programmed", "True", "Programmed")
                .await
        })
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = load.join().expect("load thread");
        eprintln!("during the API server restart: {ok} requests ok, {failed} failed");
        assert_eq!(failed, 0, "the proxy kept serving ({ok} ok)");
        assert!(ok > 0);
    });
}

/// A self-signed certificate for `name` and its key, PEM.
fn self_signed(name: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// The certificate the HTTPS listener at `addr` serves for `sni` (not verified), DER.
async fn served_certificate(addr: SocketAddr, sni: &str) -> Option<Vec<u8>> {
    use std::sync::Arc;
    #[derive(Debug)]
    struct Any(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).ok()?;
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .ok()?
    .ok()?;
    let der = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(der)
}

#[test]
fn a_tls_secret_is_served_by_sni_rotated_by_editing_it_and_a_broken_one_is_a_condition() {
    with_cluster("tls", |cluster| async move {
        let world = World::new(&cluster, "tls").await;
        world.echo_service("svc").await;
        let secret = |name: &str, (crt, key): (&str, &str)| {
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name},
                "stringData": {"tls.crt": crt, "tls.key": key},
            })
        };
        let (crt1, key1, der1) = self_signed("secure.e2e.test");
        world.apply(secret("secure-tls", (&crt1, &key1))).await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
                "metadata": {"name": "secure"},
                "spec": {"hosts": ["secure.e2e.test"], "tls": {"secretName": "secure-tls"},
                         "rules": [prefix_rule("/", "svc")]},
            }))
            .await;
        converge("the certificate is served by SNI", || async {
            served_certificate(world.https, "secure.e2e.test")
                .await
                .as_deref()
                == Some(&der1[..])
        })
        .await;

        // Rotation: the edited Secret is served on the next connection.
        let (crt2, key2, der2) = self_signed("secure.e2e.test");
        world.apply(secret("secure-tls", (&crt2, &key2))).await;
        converge("the rotated certificate is served", || async {
            served_certificate(world.https, "secure.e2e.test")
                .await
                .as_deref()
                == Some(&der2[..])
        })
        .await;

        // A key that is not the certificate's: the route's condition says so, and the
        // other host keeps its certificate.
        let (crt3, _, _) = self_signed("broken.e2e.test");
        world.apply(secret("broken-tls", (&crt3, &key1))).await;
        world
            .apply(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
                "metadata": {"name": "broken"},
                "spec": {"hosts": ["broken.e2e.test"], "tls": {"secretName": "broken-tls"},
                         "rules": [prefix_rule("/", "svc")]},
            }))
            .await;
        converge("InvalidCertificate on the broken route", || async {
            world
                .condition_is(
                    "ApiRoute",
                    "broken",
                    "ResolvedRefs",
                    "False",
                    "InvalidCertificate",
                )
                .await
        })
        .await;
        assert!(
            served_certificate(world.https, "broken.e2e.test")
                .await
                .is_none()
        );
        assert_eq!(
            served_certificate(world.https, "secure.e2e.test")
                .await
                .as_deref(),
            Some(&der2[..])
        );
    });
}
