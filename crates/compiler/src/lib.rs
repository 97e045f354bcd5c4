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
//!    ├─▶ ApiRoutes   (matches, actions, references, policy layering)   route.rs
//!    ├─▶ conflicts + ranks over all accepted routes                   precedence
//!    └─▶ Table (+ hash)  ·  Diagnostics  ·  per-object status
//! ```
//!
//! What it must not know: sockets, files, the Kubernetes client. The data plane's
//! capabilities are declared in one place, `support.rs`: a field set but not supported
//! there is an `UnsupportedValue` error and fails closed.

pub mod diagnostics;
pub mod explain;
mod policy;
mod route;
mod support;
mod upstream;
pub mod values;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use gatehouse_api::consumer::{consumer_from_secret, is_consumer};
use gatehouse_api::manifest::{Document, Object};
use gatehouse_api::{ApiPolicy, ApiRoute, Policies, Upstream};
use gatehouse_table::{self as table, Table};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use serde::Serialize;

pub use diagnostics::{ConditionType, Diagnostic, Kind, ObjectRef, Reason, Severity};
pub use upstream::SERVICE_NAME_LABEL;

/// Everything the compiler reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// ApiRoutes.
    pub routes: Vec<ApiRoute>,
    /// Upstreams.
    pub upstreams: Vec<Upstream>,
    /// ApiPolicies.
    pub policies: Vec<ApiPolicy>,
    /// Consumer Secrets and Secrets referenced by routes, upstreams and policies.
    pub secrets: Vec<Secret>,
    /// Services named by Upstreams.
    pub services: Vec<Service>,
    /// EndpointSlices of those Services.
    pub endpoint_slices: Vec<EndpointSlice>,
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
                Object::ApiRoute(o) => inputs.routes.push(*o),
                Object::Upstream(o) => inputs.upstreams.push(*o),
                Object::ApiPolicy(o) => inputs.policies.push(*o),
                Object::Secret(o) => inputs.secrets.push(*o),
                Object::Service(o) => inputs.services.push(*o),
                Object::EndpointSlice(o) => inputs.endpoint_slices.push(*o),
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
    pub reason: String,
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
#[derive(Debug, Default)]
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
    /// `true`: accepted into the table.
    upstreams: HashMap<(String, String), bool>,
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
    pub fn upstream(&self, ns: &str, name: &str) -> Option<bool> {
        self.upstreams
            .get(&(ns.to_string(), name.to_string()))
            .copied()
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
    items: &'a [K],
    kind: Kind,
    diags: &mut Vec<Diagnostic>,
) -> Vec<&'a K> {
    let mut keyed: Vec<(&str, &str, String, &K)> = items
        .iter()
        .map(|k| {
            let (ns, name) = ns_name(k);
            (ns, name, serde_json::to_string(k).unwrap_or_default(), k)
        })
        .collect();
    keyed.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let mut out: Vec<&K> = Vec::with_capacity(keyed.len());
    let mut last: Option<(&str, &str)> = None;
    for (ns, name, _, k) in keyed {
        if last == Some((ns, name)) {
            diags.push(Diagnostic {
                object: ObjectRef::new(kind, ns, name),
                field: "metadata.name".into(),
                severity: Severity::Error,
                reason: Reason::Invalid,
                message: "defined more than once; only one definition is used".into(),
            });
            continue;
        }
        last = Some((ns, name));
        out.push(k);
    }
    out
}

/// Compiles the inputs.
pub fn compile(inputs: &Inputs) -> Output {
    let mut diags = Vec::new();
    let routes = unique(&inputs.routes, Kind::ApiRoute, &mut diags);
    let upstreams = unique(&inputs.upstreams, Kind::Upstream, &mut diags);
    let policies = unique(&inputs.policies, Kind::ApiPolicy, &mut diags);
    let secrets = unique(&inputs.secrets, Kind::Secret, &mut diags);
    let services = unique(&inputs.services, Kind::Service, &mut diags);
    let mut slices: Vec<&EndpointSlice> = inputs.endpoint_slices.iter().collect();
    slices.sort_by(|a, b| ns_name(*a).cmp(&ns_name(*b)));

    let mut index = Index::default();
    for s in &secrets {
        index.secrets.insert(ns_name(*s), s);
    }
    for s in &services {
        index.services.insert(ns_name(*s), s);
    }
    for s in &slices {
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

    // Consumers.
    let mut consumers = BTreeMap::new();
    for s in secrets.iter().filter(|s| is_consumer(s)) {
        let (ns, name) = ns_name(*s);
        let mut sink = diagnostics::Sink::new(ObjectRef::new(Kind::Secret, ns, name), &mut diags);
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
                        password_hash: c.password_hash,
                        groups: c.groups,
                    },
                );
            }
            Err(e) => sink.error("data", Reason::Invalid, e.to_string()),
        }
    }

    let mut statuses = BTreeMap::new();
    let mut generations = BTreeMap::new();

    // ApiPolicies.
    for p in &policies {
        let (ns, name) = ns_name(*p);
        let object = ObjectRef::new(Kind::ApiPolicy, ns, name);
        generations.insert(object.clone(), p.metadata.generation);
        let mut sink = diagnostics::Sink::new(object, &mut diags);
        let ok = policy::validate(&p.spec, "spec", ns, &index, &mut sink);
        for (field, _) in policy::set_fields(&p.spec) {
            if !support::policy_supported(field) {
                sink.error(
                    format!("spec.{}", field.as_str()),
                    Reason::UnsupportedValue,
                    format!("policy {} is not enforced by this gateway version yet; rules it applies to answer 503", field.as_str()),
                );
            }
        }
        index.policies.insert((ns, name), ok.then_some(&p.spec));
    }

    // Upstreams.
    let mut table_upstreams = Vec::new();
    let mut endpoint_counts = BTreeMap::new();
    for u in &upstreams {
        let object = upstream::object_ref(u);
        generations.insert(object.clone(), u.metadata.generation);
        let mut sink = diagnostics::Sink::new(object.clone(), &mut diags);
        let info = upstream::compile(u, &index, &mut sink);
        index.upstreams.insert(
            (object.namespace.clone(), object.name.clone()),
            info.upstream.is_some(),
        );
        endpoint_counts.insert(object, (info.ready_endpoints, info.total_endpoints));
        table_upstreams.extend(info.upstream);
    }

    // Routes.
    let mut drafts = Vec::new();
    for r in &routes {
        let (ns, name) = ns_name(*r);
        let object = ObjectRef::new(Kind::ApiRoute, ns, name);
        generations.insert(object.clone(), r.metadata.generation);
        let mut sink = diagnostics::Sink::new(object.clone(), &mut diags);
        if let Some(d) = route::compile(r, &index, &mut sink) {
            drafts.push((object, d));
        }
    }
    let accepted = resolve_conflicts_and_rank(drafts, &mut diags);

    // Attached routes per policy.
    let mut attached: BTreeMap<String, u32> = BTreeMap::new();
    for d in &accepted {
        for p in &d.policy_refs {
            *attached.entry(p.clone()).or_default() += 1;
        }
    }

    let mut table = Table {
        format: table::FORMAT,
        version: 0,
        hash: String::new(),
        routes: accepted.into_iter().map(|d| d.route).collect(),
        upstreams: table_upstreams,
        consumers: consumers.into_values().collect(),
    };
    table.routes.sort_by(|a, b| a.id.cmp(&b.id));
    table.upstreams.sort_by(|a, b| a.id.cmp(&b.id));
    table.hash = content_hash(&table);

    diags.sort();
    diags.dedup();
    for (object, generation) in generations {
        let mut st = status_of(&object, generation, &diags);
        if object.kind == Kind::Upstream {
            let (ready, total) = endpoint_counts.get(&object).copied().unwrap_or_default();
            st.ready_endpoints = Some(ready);
            st.total_endpoints = Some(total);
        }
        if object.kind == Kind::ApiPolicy {
            st.attached_routes = Some(attached.get(&object.id()).copied().unwrap_or(0));
        }
        statuses.insert(object, st);
    }
    Output {
        table,
        diagnostics: diags,
        statuses,
    }
}

/// SHA-256 of the table's JSON with `version` and `hash` blanked.
pub fn content_hash(table: &Table) -> String {
    let mut t = table.clone();
    t.version = 0;
    t.hash = String::new();
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    gatehouse_api::consumer::sha256_hex(&bytes)
}

fn status_of(object: &ObjectRef, generation: Option<i64>, diags: &[Diagnostic]) -> ObjectStatus {
    let condition = |ty: ConditionType, ok_reason: &str| {
        let errors: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| {
                &d.object == object && d.severity == Severity::Error && d.reason.condition() == ty
            })
            .collect();
        match errors.iter().map(|d| d.reason).min() {
            None => Condition {
                status: true,
                reason: ok_reason.into(),
                message: String::new(),
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
                    reason: reason.to_string(),
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

/// Rejects the newer of two routes with an identical host + match, then ranks every
/// match of the accepted routes by the contract's precedence.
fn resolve_conflicts_and_rank(
    mut drafts: Vec<(ObjectRef, route::RouteDraft)>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<route::RouteDraft> {
    // Oldest first; objects without a timestamp (standalone files) after, by name.
    drafts.sort_by(|(a, da), (b, db)| {
        (da.created.is_none(), &da.created, &a.namespace, &a.name).cmp(&(
            db.created.is_none(),
            &db.created,
            &b.namespace,
            &b.name,
        ))
    });
    let mut owners: HashMap<(&str, &str), &ObjectRef> = HashMap::new();
    let mut accepted_idx = Vec::new();
    for (i, (object, d)) in drafts.iter().enumerate() {
        let host_keys: Vec<&str> = if d.route.hosts.is_empty() {
            vec![""]
        } else {
            d.route.hosts.iter().map(String::as_str).collect()
        };
        let mut conflicts = BTreeSet::new();
        for (ri, keys) in d.keys.iter().enumerate() {
            for (mi, k) in keys.iter().enumerate() {
                for h in &host_keys {
                    if let Some(winner) = owners.get(&(*h, k.signature.as_str())) {
                        let host = if h.is_empty() {
                            "any host".to_string()
                        } else {
                            format!("host {h}")
                        };
                        conflicts.insert((
                            format!("spec.rules[{ri}].matches[{mi}]"),
                            format!("conflicts with ApiRoute {}, which is older and wins: same {host} and match", winner.id()),
                        ));
                    }
                }
            }
        }
        if conflicts.is_empty() {
            for keys in &d.keys {
                for k in keys {
                    for h in &host_keys {
                        owners.insert((h, k.signature.as_str()), object);
                    }
                }
            }
            accepted_idx.push(i);
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

    // Ranks: Exact < Template/Prefix < Regex; more literal characters; more
    // conditions; older; namespace/name (already the order of `drafts`); rule; match.
    let mut entries = Vec::new();
    for (age, &i) in accepted_idx.iter().enumerate() {
        for (ri, keys) in drafts[i].1.keys.iter().enumerate() {
            for (mi, k) in keys.iter().enumerate() {
                entries.push((
                    (
                        k.class,
                        Reverse(k.literal_len),
                        Reverse(k.conditions),
                        age,
                        ri,
                        mi,
                    ),
                    i,
                ));
            }
        }
    }
    entries.sort_by_key(|a| a.0);
    for (rank, ((_, _, _, _, ri, mi), i)) in entries.into_iter().enumerate() {
        drafts[i].1.route.rules[ri].matches[mi].rank = rank as u32;
    }
    let keep: BTreeSet<usize> = accepted_idx.into_iter().collect();
    drafts
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, (_, d))| d)
        .collect()
}
