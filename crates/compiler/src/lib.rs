//! # gatehouse-compiler: what a set of resources means
//!
//! `compile(&Inputs) -> Output { table, diagnostics, statuses }` is a pure function: no
//! I/O, no clock, no randomness; the same inputs in any order give a byte-identical
//! table. It owns every decision about validity, defaults, precedence, conflicts,
//! reference resolution and policy layering. The controller's status, `gatehouse lint`,
//! `gatehouse explain` and standalone mode all call it, so they cannot disagree.
//!
//! ```text
//!  Inputs (ApiRoute, Upstream, ApiPolicy, Secret, Service, EndpointSlice)
//!    │ sort + dedupe by namespace/name
//!    ├─▶ consumers   (Secrets labelled gatehouse.dev/consumer)
//!    ├─▶ ApiPolicies (validated; referenced by routes)
//!    ├─▶ Upstreams   (defaults, static endpoints or Service → EndpointSlices)
//!    ├─▶ ApiRoutes   (matches + ranks, actions, references, layering)  route.rs
//!    │     ├─ API versioning folded into the matches                  version.rs
//!    │     └─ effective policies lowered into typed table values      lower.rs
//!    ├─▶ conflicts over all compiled routes (the older wins)          resolve_conflicts
//!    └─▶ Table (+ hash)  ·  Diagnostics  ·  per-object status
//! ```
//!
//! What it must not know: sockets, files, the Kubernetes client. The data plane's
//! capabilities are declared in one place, `support.rs`: a field set but not supported
//! there is an `UnsupportedValue` error and fails closed.

mod auth;
pub mod diagnostics;
mod docs;
pub mod explain;
mod lower;
mod policy;
mod resilience;
mod route;
mod routes_only;
mod support;
mod tls;
mod upstream;
pub mod values;
mod version;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use gatehouse_api::consumer::{consumer_from_secret, is_consumer};
use gatehouse_api::manifest::{Document, Object};
use gatehouse_api::{ApiPolicy, ApiRoute, Policies, Upstream};
use gatehouse_table::{self as table, Address, ByAddress, Table};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use diagnostics::{ConditionType, Diagnostic, Kind, ObjectRef, Reason, Severity};
pub use upstream::SERVICE_NAME_LABEL;

/// Everything the compiler reads. Objects are shared (`Arc`): the controller's store
/// hands the same objects to every compilation without copying them.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// ApiRoutes.
    pub routes: Vec<Arc<ApiRoute>>,
    /// Upstreams.
    pub upstreams: Vec<Arc<Upstream>>,
    /// ApiPolicies.
    pub policies: Vec<Arc<ApiPolicy>>,
    /// Consumer Secrets and Secrets referenced by routes, upstreams and policies.
    pub secrets: Vec<Arc<Secret>>,
    /// Services named by Upstreams.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices of those Services.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Whether the data plane counts `scope: Global` rate limits in Redis (`--redis`).
    /// Without it they count per replica, and the compiler says so.
    pub redis: bool,
}

impl Inputs {
    /// Inputs from parsed manifests. Objects with fields no type knows are left out and
    /// reported: a typo such as `authentification:` must not quietly serve a route
    /// without its policy.
    pub fn from_documents(docs: impl IntoIterator<Item = Document>) -> (Inputs, Vec<Diagnostic>) {
        let mut inputs = Inputs::default();
        let mut diags = Vec::new();
        for d in docs {
            if !d.unknown_fields.is_empty() {
                let object = object_ref_of(&d.object);
                for f in &d.unknown_fields {
                    diags.push(Diagnostic {
                        object: object.clone(),
                        field: bracket_indices(f),
                        severity: Severity::Error,
                        reason: Reason::Invalid,
                        message: format!(
                            "unknown field (in {}); the object is not used until it is fixed",
                            d.origin
                        ),
                    });
                }
                continue;
            }
            match d.object {
                Object::ApiRoute(o) => inputs.routes.push(Arc::from(o)),
                Object::Upstream(o) => inputs.upstreams.push(Arc::from(o)),
                Object::ApiPolicy(o) => inputs.policies.push(Arc::from(o)),
                Object::Secret(o) => inputs.secrets.push(Arc::from(o)),
                Object::Service(o) => inputs.services.push(Arc::from(o)),
                Object::EndpointSlice(o) => inputs.endpoint_slices.push(Arc::from(o)),
            }
        }
        (inputs, diags)
    }
}

/// `spec.rules.0.backend` → `spec.rules[0].backend`, the form every other diagnostic uses.
fn bracket_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for (i, seg) in path.split('.').enumerate() {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn object_ref_of(o: &Object) -> ObjectRef {
    fn r<K: Resource>(kind: Kind, k: &K) -> ObjectRef {
        let m = k.meta();
        ObjectRef::new(
            kind,
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or(""),
        )
    }
    match o {
        Object::ApiRoute(k) => r(Kind::ApiRoute, k.as_ref()),
        Object::Upstream(k) => r(Kind::Upstream, k.as_ref()),
        Object::ApiPolicy(k) => r(Kind::ApiPolicy, k.as_ref()),
        Object::Secret(k) => r(Kind::Secret, k.as_ref()),
        Object::Service(k) => r(Kind::Service, k.as_ref()),
        Object::EndpointSlice(k) => r(Kind::EndpointSlice, k.as_ref()),
    }
}

/// A status condition as the compiler decides it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// What the compiler says about one object: the content of its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `metadata.generation` compiled.
    pub generation: Option<i64>,
    /// `Accepted`.
    pub accepted: Condition,
    /// `ResolvedRefs`.
    pub resolved_refs: Condition,
    /// Upstreams: endpoints receiving traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_endpoints: Option<u32>,
    /// Upstreams: all endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_endpoints: Option<u32>,
    /// ApiPolicies: accepted routes that reference it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_routes: Option<u32>,
}

/// The compiler's answer.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// The routing table of everything accepted.
    pub table: Table,
    /// Every finding, sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// Status of every ApiRoute, Upstream and ApiPolicy.
    pub statuses: BTreeMap<ObjectRef, ObjectStatus>,
}

impl Output {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Lookups of referenced objects during one compilation.
#[derive(Debug, Default)]
pub(crate) struct Index<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    /// `None`: the policy exists but is invalid.
    policies: HashMap<(&'a str, &'a str), Option<&'a Policies>>,
    /// By `namespace/name`; `true`: accepted into the table.
    upstreams: HashMap<String, bool>,
    /// [`Inputs::redis`].
    redis: bool,
}

impl<'a> Index<'a> {
    pub fn secret(&self, ns: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(ns, name)).copied()
    }
    pub fn service(&self, ns: &str, name: &str) -> Option<&'a Service> {
        self.services.get(&(ns, name)).copied()
    }
    pub fn slices_for(&self, ns: &str, service: &str) -> Vec<&'a EndpointSlice> {
        self.slices.get(&(ns, service)).cloned().unwrap_or_default()
    }
    pub fn policy(&self, ns: &str, name: &str) -> Option<Option<&'a Policies>> {
        self.policies.get(&(ns, name)).copied()
    }
    /// Whether `scope: Global` limits are shared through Redis.
    pub fn redis(&self) -> bool {
        self.redis
    }
    /// By id (`namespace/name`).
    pub fn upstream(&self, id: &str) -> Option<bool> {
        self.upstreams.get(id).copied()
    }
}

/// What compiling one Upstream yields.
#[derive(Debug)]
pub(crate) struct UpstreamInfo {
    pub upstream: Option<table::Upstream>,
    pub ready_endpoints: u32,
    pub total_endpoints: u32,
}

fn ns_name<K: Resource>(k: &K) -> (&str, &str) {
    let m = k.meta();
    (
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
    )
}

/// Sorts by namespace/name and keeps one object per key. Duplicates (two files defining
/// the same object in standalone mode) are reported; the kept one is chosen by content,
/// so the choice does not depend on input order.
fn unique<'a, K: Resource + Serialize>(
    items: &'a [Arc<K>],
    kind: Kind,
    diags: &mut Vec<Diagnostic>,
) -> Vec<&'a Arc<K>> {
    let mut sorted: Vec<&Arc<K>> = items.iter().collect();
    // The controller's store hands them over in this order already.
    if !sorted.is_sorted_by(|a, b| ns_name(&***a) <= ns_name(&***b)) {
        sorted.sort_by(|a, b| ns_name(&***a).cmp(&ns_name(&***b)));
    }
    let mut out: Vec<&Arc<K>> = Vec::with_capacity(sorted.len());
    let mut i = 0;
    while i < sorted.len() {
        let key = ns_name(&**sorted[i]);
        let mut j = i + 1;
        while j < sorted.len() && ns_name(&**sorted[j]) == key {
            j += 1;
        }
        if j - i == 1 {
            out.push(sorted[i]);
        } else {
            // Several definitions: keep the one whose JSON sorts first, whatever the
            // input order, and report the others.
            let keep = sorted[i..j]
                .iter()
                .min_by_key(|k| serde_json::to_string(&***k).unwrap_or_default())
                .copied();
            out.extend(keep);
            for _ in 1..(j - i) {
                diags.push(Diagnostic {
                    object: ObjectRef::new(kind, key.0, key.1),
                    field: "metadata.name".into(),
                    severity: Severity::Error,
                    reason: Reason::Invalid,
                    message: "defined more than once; only one definition is used".into(),
                });
            }
        }
        i = j;
    }
    out
}

/// A fast, deterministic 64-bit hash (FxHash) for in-memory indexes.
pub(crate) fn fx_hash(s: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(s)
}

/// Below this many routes, compiling on one thread is faster than sharing the work.
const PARALLEL_THRESHOLD: usize = 512;

/// Compiles the inputs.
pub fn compile(inputs: &Inputs) -> Output {
    compile_with(inputs, None)
}

/// A compiler that remembers each ApiRoute's compiled form, and compiles again only
/// the routes whose spec changed, or all of them when anything a route may read
/// changed (an Upstream accepted or not, an ApiPolicy, the keys of a Secret, `redis`).
/// Conflicts and statuses are always decided over the whole set; the hash digests
/// again only the routes that changed. [`Incremental::compile`] returns exactly what
/// [`compile`] returns for the same inputs; the controller keeps one between
/// compilations.
#[derive(Debug, Default)]
pub struct Incremental {
    memo: Memo,
}

impl Incremental {
    /// Compiles `inputs`, reusing what did not change since the last call.
    pub fn compile(&mut self, inputs: &Inputs) -> Output {
        if let Some(out) = routes_only::compile(inputs, &mut self.memo) {
            self.memo.routes_only = true;
            return out;
        }
        self.memo.routes_only = false;
        compile_with(inputs, Some(&mut self.memo))
    }

    /// Whether the last compilation took the short path: only routes changed, and none
    /// of them shares a host and match with another route (see `routes_only.rs`).
    pub fn last_was_routes_only(&self) -> bool {
        self.memo.routes_only
    }
}

/// A Secret's keys, each with the SHA-256 of its value, sorted.
type SecretDigest = Vec<(String, String)>;

/// What compiling a route read besides the route. While it is unchanged, a route whose
/// spec is unchanged compiles to what it compiled to before.
#[derive(Debug, Default, PartialEq)]
struct World {
    redis: bool,
    /// Upstream ids and whether each was accepted, sorted.
    upstreams: Vec<(String, bool)>,
    /// ApiPolicies (`None`: invalid), sorted.
    policies: Vec<((String, String), Option<Policies>)>,
    /// Secrets, their keys and a digest of each value, sorted.
    secrets: Vec<((String, String), SecretDigest)>,
}

impl World {
    fn of(index: &Index<'_>) -> World {
        let mut upstreams: Vec<(String, bool)> = index
            .upstreams
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        upstreams.sort_unstable();
        let own = |(ns, name): &(&str, &str)| (ns.to_string(), name.to_string());
        let mut policies: Vec<_> = index
            .policies
            .iter()
            .map(|(k, v)| (own(k), v.cloned()))
            .collect();
        policies.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut secrets: Vec<_> =
            index
                .secrets
                .iter()
                .map(|(k, s)| {
                    // Keys and a digest of each value: a route that reads a Secret's value
                    // (a JWKS, an HMAC key) compiles again when it changes.
                    let digest = |v: &[u8]| gatehouse_api::consumer::sha256_hex(v);
                    let mut keys: Vec<(String, String)> =
                        s.data
                            .iter()
                            .flat_map(|d| d.iter().map(|(k, v)| (k.clone(), digest(&v.0))))
                            .chain(s.string_data.iter().flat_map(|d| {
                                d.iter().map(|(k, v)| (k.clone(), digest(v.as_bytes())))
                            }))
                            .collect();
                    keys.sort_unstable();
                    keys.dedup();
                    (own(k), keys)
                })
                .collect();
        secrets.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        World {
            redis: index.redis,
            upstreams,
            policies,
            secrets,
        }
    }
}

/// One route as last compiled: the object, and what compiling it gave.
#[derive(Debug)]
struct Remembered {
    source: Arc<ApiRoute>,
    draft: Option<route::RouteDraft>,
    found: Vec<Diagnostic>,
    /// The compilation that last saw this route: entries not seen by the current one
    /// are forgotten at its end.
    seen: u64,
}

impl Remembered {
    /// Whether `r` compiles to what this entry holds: the same object, or one with the
    /// same spec and age (a status or metadata update).
    fn holds_for(&self, r: &Arc<ApiRoute>) -> bool {
        Arc::ptr_eq(&self.source, r)
            || (self.source.spec == r.spec
                && self.source.metadata.creation_timestamp == r.metadata.creation_timestamp)
    }
}

/// Digests of routes by the route's identity (the key holds the route, so its address
/// stays its own).
type RouteDigests = HashMap<ByAddress<table::Route>, [u8; 32]>;

#[derive(Debug, Default)]
struct Memo {
    world: World,
    routes: HashMap<ObjectRef, Remembered>,
    /// Digest of each route of the last table, by the route's identity: a route shared
    /// with the previous table is not digested again.
    digests: RouteDigests,
    round: u64,
    /// The base of the short path, when the last compilation can be one.
    last: Option<routes_only::Last>,
    /// Whether the last compilation took the short path.
    routes_only: bool,
}

/// The inputs in namespace/name order, each object once (duplicates are reported).
struct Sorted<'a> {
    routes: Vec<&'a Arc<ApiRoute>>,
    upstreams: Vec<&'a Upstream>,
    policies: Vec<&'a ApiPolicy>,
    secrets: Vec<&'a Secret>,
    services: Vec<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
}

impl<'a> Sorted<'a> {
    fn of(inputs: &'a Inputs, diags: &mut Vec<Diagnostic>) -> Sorted<'a> {
        fn plain<K>(arcs: Vec<&Arc<K>>) -> Vec<&K> {
            arcs.into_iter().map(|a| &**a).collect()
        }
        let mut slices: Vec<&EndpointSlice> = inputs.endpoint_slices.iter().map(|s| &**s).collect();
        slices.sort_by(|a, b| ns_name(*a).cmp(&ns_name(*b)));
        Sorted {
            routes: unique(&inputs.routes, Kind::ApiRoute, diags),
            upstreams: plain(unique(&inputs.upstreams, Kind::Upstream, diags)),
            policies: plain(unique(&inputs.policies, Kind::ApiPolicy, diags)),
            secrets: plain(unique(&inputs.secrets, Kind::Secret, diags)),
            services: plain(unique(&inputs.services, Kind::Service, diags)),
            slices,
        }
    }

    /// The index of what routes and upstreams look up: Secrets, Services, their
    /// EndpointSlices. Policies and upstreams are added as they compile.
    fn index(&self, redis: bool) -> Index<'a> {
        let mut index = Index {
            redis,
            ..Index::default()
        };
        index.secrets.reserve(self.secrets.len());
        index.services.reserve(self.services.len());
        index.policies.reserve(self.policies.len());
        index.upstreams.reserve(self.upstreams.len());
        for s in &self.secrets {
            index.secrets.insert(ns_name(*s), s);
        }
        for s in &self.services {
            index.services.insert(ns_name(*s), s);
        }
        for s in &self.slices {
            let (ns, _) = ns_name(*s);
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                index.slices.entry((ns, svc.as_str())).or_default().push(s);
            }
        }
        index
    }
}

/// An object that gets a status, with its generation.
type Generation = (ObjectRef, Option<i64>);

fn compile_with(inputs: &Inputs, mut memo: Option<&mut Memo>) -> Output {
    let mut diags = Vec::new();
    let sorted = Sorted::of(inputs, &mut diags);
    // The short path starts only from inputs without duplicates, routes in order.
    let base_ok = diags.is_empty()
        && inputs
            .routes
            .windows(2)
            .all(|w| ns_name(&*w[0]) < ns_name(&*w[1]));
    let mut index = sorted.index(inputs.redis);
    let consumers = compile_consumers(&sorted.secrets, &mut diags);
    let policy_generations = compile_policies(&sorted.policies, &mut index, &mut diags);
    let upstreams = compile_upstreams(&sorted.upstreams, &mut index, &mut diags);

    // Every object that gets a status. Each kind's list is in namespace/name order, so
    // routes + upstreams + policies is in `ObjectRef` order.
    let mut generations: Vec<Generation> = sorted
        .routes
        .par_iter()
        .map(|r| {
            let (ns, name) = ns_name(&***r);
            (
                ObjectRef::new(Kind::ApiRoute, ns, name),
                r.metadata.generation,
            )
        })
        .collect();
    generations.extend(upstreams.generations);
    generations.extend(policy_generations);

    let drafts = compile_routes(&sorted.routes, &index, memo.as_deref_mut(), &mut diags);
    let claims = (memo.is_some() && base_ok).then(|| count_claims(&drafts));
    let accepted = resolve_conflicts(drafts, &mut diags);
    let attached = attached_routes(&accepted);
    let certificates = certificates_of(accepted.iter().map(|(_, d)| d));
    let mut table = Table {
        format: table::FORMAT,
        version: 0,
        hash: String::new(),
        // In parallel: taking each route out drops the draft's precedence keys.
        routes: accepted.into_par_iter().map(|(_, d)| d.route).collect(),
        upstreams: upstreams.table,
        consumers: consumers.into_values().collect(),
        certificates,
    };
    // Ids are unique (one route per namespace/name).
    table.routes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    table.upstreams.sort_by(|a, b| a.id.cmp(&b.id));
    diags.sort();
    diags.dedup();
    // The hash and the statuses are independent; statuses are independent per object.
    let known = memo.as_deref().map(|m| &m.digests);
    let (route_digests, statuses) = rayon::join(
        || digests_of(&table, known),
        || {
            let counts = &upstreams.endpoint_counts;
            statuses_of(generations, &diags, counts, &attached)
        },
    );
    table.hash = hash_with_route_digests(&table, &route_digests);
    let out = Output {
        table,
        diagnostics: diags,
        statuses,
    };
    if let Some(memo) = memo {
        memo.remember(inputs, &out, route_digests, claims);
    }
    out
}

/// The usable certificates of the accepted routes, once each, sorted by id.
fn certificates_of<'d>(
    drafts: impl Iterator<Item = &'d route::RouteDraft>,
) -> Vec<table::Certificate> {
    let mut by_id: BTreeMap<&str, &table::Certificate> = BTreeMap::new();
    for d in drafts {
        if let Some(c) = &d.certificate {
            by_id.entry(c.id.as_str()).or_insert(c);
        }
    }
    by_id.into_values().cloned().collect()
}

/// Consumers from the Secrets labelled as such, by `namespace/name`.
fn compile_consumers(
    secrets: &[&Secret],
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, table::Consumer> {
    let mut consumers = BTreeMap::new();
    for s in secrets.iter().filter(|s| is_consumer(s)) {
        let (ns, name) = ns_name(*s);
        let mut sink = diagnostics::Sink::new(ObjectRef::new(Kind::Secret, ns, name), diags);
        match consumer_from_secret(s) {
            Ok(c) => {
                let id = format!("{}/{}", c.namespace, c.name);
                if consumers.contains_key(&id) {
                    sink.error(
                        "metadata.labels",
                        Reason::Invalid,
                        format!(
                            "consumer {id} is defined by another Secret too; this one is ignored"
                        ),
                    );
                    continue;
                }
                consumers.insert(
                    id.clone(),
                    table::Consumer {
                        id,
                        namespace: c.namespace,
                        name: c.name,
                        labels: c.labels,
                        api_key_sha256: c.api_key_sha256,
                        username: c.username,
                        password_hash: c.password_hash.map(table::auth::Sealed::new),
                        groups: c.groups,
                    },
                );
            }
            Err(e) => sink.error("data", Reason::Invalid, e.to_string()),
        }
    }
    consumers
}

/// Validates the ApiPolicies and adds them to the index (`None` for an invalid one).
fn compile_policies<'a>(
    policies: &[&'a ApiPolicy],
    index: &mut Index<'a>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Generation> {
    let mut generations = Vec::with_capacity(policies.len());
    for p in policies {
        let (ns, name) = ns_name(*p);
        let object = ObjectRef::new(Kind::ApiPolicy, ns, name);
        generations.push((object.clone(), p.metadata.generation));
        let mut sink = diagnostics::Sink::new(object, diags);
        let ok = policy::validate(&p.spec, "spec", ns, index, &mut sink);
        for field in policy::set_fields(&p.spec) {
            for part in support::unsupported_policy_parts(field, &p.spec) {
                let (path, what) = if part.is_empty() {
                    (
                        format!("spec.{}", field.as_str()),
                        format!("policy {}", field.as_str()),
                    )
                } else {
                    (
                        format!("spec.{}.{part}", field.as_str()),
                        format!("{}.{part}", field.as_str()),
                    )
                };
                sink.error(
                    path,
                    Reason::UnsupportedValue,
                    format!("{what} is not enforced by this gateway version yet; rules it applies to answer 503"),
                );
            }
        }
        index.policies.insert((ns, name), ok.then_some(&p.spec));
    }
    generations
}

/// What compiling the Upstreams gives.
struct CompiledUpstreams {
    /// The accepted ones.
    table: Vec<table::Upstream>,
    /// Ready and total endpoints of each, for its status.
    endpoint_counts: BTreeMap<ObjectRef, (u32, u32)>,
    generations: Vec<Generation>,
}

/// Compiles the Upstreams, in parallel, and adds them to the index (accepted or not).
fn compile_upstreams(
    upstreams: &[&Upstream],
    index: &mut Index<'_>,
    diags: &mut Vec<Diagnostic>,
) -> CompiledUpstreams {
    let compiled: Vec<_> = upstreams
        .par_iter()
        .map(|u| {
            let object = upstream::object_ref(u);
            let mut found = Vec::new();
            let mut sink = diagnostics::Sink::new(object.clone(), &mut found);
            let info = upstream::compile(u, index, &mut sink);
            (object, u.metadata.generation, info, found)
        })
        .collect();
    let mut out = CompiledUpstreams {
        table: Vec::new(),
        endpoint_counts: BTreeMap::new(),
        generations: Vec::with_capacity(upstreams.len()),
    };
    for (object, generation, info, mut found) in compiled {
        diags.append(&mut found);
        out.generations.push((object.clone(), generation));
        index.upstreams.insert(object.id(), info.upstream.is_some());
        out.endpoint_counts
            .insert(object, (info.ready_endpoints, info.total_endpoints));
        out.table.extend(info.upstream);
    }
    out
}

/// A route compiled (or remembered): its object, its draft when it compiled, what was
/// found, and whether it was remembered.
type RouteResult = (ObjectRef, Option<route::RouteDraft>, Vec<Diagnostic>, bool);

/// Compiles the routes, in parallel when there are many: each alone against the shared
/// index; rayon's ordered collect keeps input order, so the output does not depend on
/// threads. With a memo, a route whose spec and world are unchanged is not compiled
/// again.
fn compile_routes(
    routes: &[&Arc<ApiRoute>],
    index: &Index<'_>,
    mut memo: Option<&mut Memo>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(ObjectRef, route::RouteDraft)> {
    // What routes compiled to last time still holds while the world they read is the
    // same; else they all compile again.
    if let Some(memo) = memo.as_deref_mut() {
        let world = World::of(index);
        if memo.world != world {
            memo.routes.clear();
            memo.world = world;
        }
    }
    let remembered = memo.as_deref().map(|m| &m.routes);
    let compile_one =
        |regex: &mut gatehouse_router::RegexChecker, r: &&Arc<ApiRoute>| -> RouteResult {
            let (ns, name) = ns_name(&***r);
            let object = ObjectRef::new(Kind::ApiRoute, ns, name);
            if let Some(before) = remembered.and_then(|m| m.get(&object))
                && before.holds_for(r)
            {
                return (object, before.draft.clone(), before.found.clone(), true);
            }
            let mut found = Vec::new();
            let mut sink = diagnostics::Sink::new(object.clone(), &mut found);
            let draft = route::compile(r, index, regex, &mut sink);
            (object, draft, found, false)
        };
    let results: Vec<RouteResult> = if routes.len() < PARALLEL_THRESHOLD {
        let mut regex = gatehouse_router::RegexChecker::default();
        routes.iter().map(|r| compile_one(&mut regex, r)).collect()
    } else {
        routes
            .par_iter()
            .map_init(gatehouse_router::RegexChecker::default, compile_one)
            .collect()
    };
    if let Some(memo) = memo {
        memo.keep_routes(routes, &results);
    }
    let mut drafts = Vec::with_capacity(results.len());
    for (object, draft, mut found, _) in results {
        drafts.extend(draft.map(|d| (object, d)));
        diags.append(&mut found);
    }
    drafts
}

/// How many routes claim each (host, match signature): what the short path compares
/// a changed route against.
fn count_claims(drafts: &[(ObjectRef, route::RouteDraft)]) -> HashMap<(u64, u64), u32> {
    let mut counts: HashMap<(u64, u64), u32> = HashMap::default();
    counts.reserve(drafts.len());
    for (_, d) in drafts {
        for claim in routes_only::claims(d) {
            *counts.entry(claim).or_default() += 1;
        }
    }
    counts
}

/// Accepted routes per ApiPolicy id.
fn attached_routes(accepted: &[(ObjectRef, route::RouteDraft)]) -> BTreeMap<String, u32> {
    let mut attached: BTreeMap<String, u32> = BTreeMap::new();
    for (_, d) in accepted {
        for p in d.policy_refs.iter() {
            *attached.entry(p.clone()).or_default() += 1;
        }
    }
    attached
}

/// The digest of each route of the table, in order; a route shared with the previous
/// table (`known`, by address) keeps its digest.
fn digests_of(table: &Table, known: Option<&RouteDigests>) -> Vec<[u8; 32]> {
    table
        .routes
        .par_iter()
        .map(|r| {
            let known = known.and_then(|d| d.get(&Address::of(r)));
            match known {
                Some(digest) => *digest,
                None => route_digest(r),
            }
        })
        .collect()
}

/// Every object's status, from its diagnostics (sorted by object), in parallel.
fn statuses_of(
    generations: Vec<Generation>,
    diags: &[Diagnostic],
    endpoint_counts: &BTreeMap<ObjectRef, (u32, u32)>,
    attached: &BTreeMap<String, u32>,
) -> BTreeMap<ObjectRef, ObjectStatus> {
    generations
        .into_par_iter()
        .map(|(object, generation)| {
            // Diagnostics are sorted by object: take this object's run.
            let from = diags.partition_point(|d| d.object < object);
            let to = from + diags[from..].partition_point(|d| d.object == object);
            let mut st = status_of(&object, generation, &diags[from..to]);
            if object.kind == Kind::Upstream {
                let (ready, total) = endpoint_counts.get(&object).copied().unwrap_or_default();
                st.ready_endpoints = Some(ready);
                st.total_endpoints = Some(total);
            }
            if object.kind == Kind::ApiPolicy {
                st.attached_routes = Some(attached.get(&object.id()).copied().unwrap_or(0));
            }
            (object, st)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

impl Memo {
    /// Keeps exactly the routes of these inputs: the reused as they were, the compiled
    /// as they are now.
    fn keep_routes(&mut self, routes: &[&Arc<ApiRoute>], results: &[RouteResult]) {
        self.round += 1;
        let round = self.round;
        for (r, (object, draft, found, reused)) in routes.iter().zip(results) {
            match self.routes.get_mut(object) {
                Some(before) if *reused => {
                    before.seen = round;
                    // The same spec in a newer object (a status write): remember that
                    // one, so that next time the address alone says it is unchanged.
                    if !Arc::ptr_eq(&before.source, r) {
                        before.source = Arc::clone(r);
                    }
                }
                _ => {
                    let entry = Remembered {
                        source: Arc::clone(r),
                        draft: draft.clone(),
                        found: found.clone(),
                        seen: round,
                    };
                    self.routes.insert(object.clone(), entry);
                }
            }
        }
        self.routes.retain(|_, r| r.seen == round);
    }

    /// Remembers what the next compilation reuses: the route digests, and the base of
    /// the short path when this compilation can be one (`claims`).
    fn remember(
        &mut self,
        inputs: &Inputs,
        out: &Output,
        route_digests: Vec<[u8; 32]>,
        claims: Option<HashMap<(u64, u64), u32>>,
    ) {
        self.digests = out
            .table
            .routes
            .iter()
            .zip(&route_digests)
            .map(|(r, d)| (ByAddress::new(r.clone()), *d))
            .collect();
        self.last = claims.map(|claims| routes_only::Last {
            redis: inputs.redis,
            others: routes_only::Others::of(inputs),
            routes: inputs.routes.clone(),
            output: out.clone(),
            digests: route_digests,
            claims,
        });
    }
}

/// SHA-256 of the table's content (everything but `version` and `hash`), over the
/// canonical encoding of [`Table::hash_content`].
pub fn content_hash(table: &Table) -> String {
    let routes: Vec<[u8; 32]> = table.routes.par_iter().map(|r| route_digest(r)).collect();
    hash_with_route_digests(table, &routes)
}

/// The digest of one route, which [`content_hash`] covers in table order.
fn route_digest(route: &table::Route) -> [u8; 32] {
    let mut h = DigestHasher::new();
    std::hash::Hash::hash(route, &mut h);
    h.finish_digest()
}

/// [`content_hash`] given the digest of every route, in table order.
fn hash_with_route_digests(table: &Table, routes: &[[u8; 32]]) -> String {
    // The table's digest covers the format, every route digest in order, the upstreams
    // and the consumers.
    let mut h = DigestHasher::new();
    {
        use std::hash::{Hash, Hasher};
        table.format.hash(&mut h);
        h.write_usize(routes.len());
        for d in routes {
            h.write(d);
        }
        table.upstreams.hash(&mut h);
        table.consumers.hash(&mut h);
        table.certificates.hash(&mut h);
    }
    h.finish_digest()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// SHA-256 fed through `std::hash::Hasher`: the derived `Hash` impls give a canonical,
/// unambiguous encoding (lengths before sequences, terminated strings). Tiny writes are
/// batched in a fixed buffer.
struct DigestHasher {
    digest: Sha256,
    buf: [u8; 4096],
    len: usize,
}

impl DigestHasher {
    fn new() -> Self {
        DigestHasher {
            digest: Sha256::new(),
            buf: [0; 4096],
            len: 0,
        }
    }

    fn finish_digest(mut self) -> [u8; 32] {
        self.digest.update(&self.buf[..self.len]);
        self.digest.finalize().into()
    }
}

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.digest.update(&self.buf[..self.len]);
            self.len = 0;
            if bytes.len() > self.buf.len() {
                self.digest.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn finish(&self) -> u64 {
        0
    }
}

fn status_of(object: &ObjectRef, generation: Option<i64>, diags: &[Diagnostic]) -> ObjectStatus {
    let condition = |ty: ConditionType, ok_reason: &'static str| {
        let errors: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| {
                &d.object == object && d.severity == Severity::Error && d.reason.condition() == ty
            })
            .collect();
        match errors.iter().map(|d| d.reason).min() {
            // True, but a degraded part is said in the message (e.g. a Global limit
            // counted per replica), so `kubectl get` shows it.
            None => Condition {
                status: true,
                reason: ok_reason,
                message: diags
                    .iter()
                    .filter(|d| {
                        &d.object == object
                            && d.reason == Reason::Degraded
                            && d.reason.condition() == ty
                    })
                    .map(|d| format!("{}: {}", d.field, d.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            Some(reason) => {
                // The reason is the first in severity order; the message names every
                // problem of this condition, that reason's first, so none is hidden.
                let mut ordered = errors.clone();
                ordered.sort_by_key(|d| d.reason != reason);
                let mut msgs: Vec<String> = ordered
                    .iter()
                    .map(|d| format!("{}: {}", d.field, d.message))
                    .collect();
                let more = msgs.len().saturating_sub(3);
                msgs.truncate(3);
                let mut message = msgs.join("; ");
                if more > 0 {
                    message.push_str(&format!("; and {more} more (gatehouse lint lists all)"));
                }
                Condition {
                    status: false,
                    reason: reason.as_str(),
                    message,
                }
            }
        }
    };
    ObjectStatus {
        generation,
        accepted: condition(ConditionType::Accepted, "Accepted"),
        resolved_refs: condition(ConditionType::ResolvedRefs, "ResolvedRefs"),
        ready_endpoints: None,
        total_endpoints: None,
        attached_routes: None,
    }
}

/// Rejects the newer of two routes with an identical host + match. Precedence needs
/// no pass over all routes: each match's rank is its own (see `route::MatchKey::rank`),
/// and ties go to the older route (`table::Route::created`), which the router orders.
fn resolve_conflicts(
    mut drafts: Vec<(ObjectRef, route::RouteDraft)>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(ObjectRef, route::RouteDraft)> {
    // Oldest first; objects without a timestamp (standalone files) after, by name.
    // Keys end in namespace/name, which are unique: an unstable sort is exact.
    drafts.sort_unstable_by(|(a, da), (b, db)| {
        // The route's own creation second, as the router orders ties: the two agree.
        let (ca, cb) = (da.route.created, db.route.created);
        (ca.is_none(), ca, &a.namespace, &a.name).cmp(&(cb.is_none(), cb, &b.namespace, &b.name))
    });
    // Conflicts are rare: first look for any repeated (host, match) in parallel, on
    // compact hashed keys; only then run the exact, order-dependent pass.
    let accepted_idx: Vec<usize> = if any_repeated_claim(&drafts) {
        older_claims_win(&drafts, diags)
    } else {
        (0..drafts.len()).collect()
    };

    // Keep the accepted drafts (`accepted_idx` is ascending).
    let mut keep = vec![false; drafts.len()];
    for &i in &accepted_idx {
        keep[i] = true;
    }
    drafts
        .into_iter()
        .zip(keep)
        .filter_map(|(d, keep)| keep.then_some(d))
        .collect()
}

/// Whether two routes claim the same (host, match), by hashes (the same claims the
/// short path counts, `routes_only::claims`): false means no conflict at all.
fn any_repeated_claim(drafts: &[(ObjectRef, route::RouteDraft)]) -> bool {
    let mut keys: Vec<(u64, u64, u32)> = drafts
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, (_, d))| {
            routes_only::claims(d)
                .into_iter()
                .map(move |(h, s)| (h, s, i as u32))
        })
        .collect();
    keys.par_sort_unstable();
    keys.windows(2)
        .any(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1) && w[0].2 != w[1].2)
}

/// The exact pass, oldest route first: a route any of whose (host, match) an older
/// accepted route owns is `Conflicted`; the others are accepted and own theirs.
/// Returns the indexes of the accepted drafts, ascending.
fn older_claims_win(
    drafts: &[(ObjectRef, route::RouteDraft)],
    diags: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let total: usize = drafts
        .iter()
        .map(|(_, d)| d.keys.iter().map(Vec::len).sum::<usize>() * d.route.hosts.len().max(1))
        .sum();
    let mut owners = Owners::default();
    owners.by_hash.reserve(total);
    let mut accepted = Vec::with_capacity(drafts.len());
    for (i, (object, d)) in drafts.iter().enumerate() {
        let hosts: Vec<(&str, u64)> = if d.route.hosts.is_empty() {
            vec![("", 0)]
        } else {
            d.route
                .hosts
                .iter()
                .map(|h| (h.as_str(), fx_hash(h)))
                .collect()
        };
        let conflicts = owners.conflicts(d, &hosts);
        if conflicts.is_empty() {
            owners.claim(d, &hosts, object);
            accepted.push(i);
        } else {
            for (field, message) in conflicts {
                diags.push(Diagnostic {
                    object: object.clone(),
                    field,
                    severity: Severity::Error,
                    reason: Reason::Conflicted,
                    message,
                });
            }
        }
    }
    accepted
}

/// Owner of each (host, match) by hashes; a hit is confirmed on the strings, and a
/// genuine collision between different signatures falls back to an exact map.
#[derive(Default)]
struct Owners<'a> {
    by_hash: HashMap<(u64, u64), (&'a str, &'a str, &'a ObjectRef)>,
    exact: HashMap<(&'a str, &'a str), &'a ObjectRef>,
}

impl<'a> Owners<'a> {
    /// The (field, message) of each match of `d` that an accepted route owns on one of
    /// `hosts`.
    fn conflicts(
        &self,
        d: &route::RouteDraft,
        hosts: &[(&str, u64)],
    ) -> BTreeSet<(String, String)> {
        let mut conflicts = BTreeSet::new();
        for (ri, keys) in d.keys.iter().enumerate() {
            for k in keys {
                // The match as written (a versioned route has more in the table).
                let mi = k.index;
                for (h, hh) in hosts {
                    let winner = match self.by_hash.get(&(*hh, k.signature_hash)) {
                        Some((oh, os, o)) if *oh == *h && *os == k.signature => Some(*o),
                        Some(_) => self.exact.get(&(*h, k.signature.as_str())).copied(),
                        None => None,
                    };
                    if let Some(winner) = winner {
                        let host = if h.is_empty() {
                            "any host".to_string()
                        } else {
                            format!("host {h}")
                        };
                        conflicts.insert((
                            format!("spec.rules[{ri}].matches[{mi}]"),
                            format!(
                                "conflicts with ApiRoute {}, which is older and wins: same {host} and match",
                                winner.id()
                            ),
                        ));
                    }
                }
            }
        }
        conflicts
    }

    /// Records `object` as the owner of every (host, match) of `d`.
    fn claim(&mut self, d: &'a route::RouteDraft, hosts: &[(&'a str, u64)], object: &'a ObjectRef) {
        for keys in d.keys.iter() {
            for k in keys {
                for (h, hh) in hosts {
                    let slot = self.by_hash.entry((*hh, k.signature_hash)).or_insert((
                        h,
                        k.signature.as_str(),
                        object,
                    ));
                    if slot.0 != *h || slot.1 != k.signature {
                        self.exact.insert((h, k.signature.as_str()), object);
                    }
                }
            }
        }
    }
}
