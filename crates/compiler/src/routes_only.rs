//! The incremental compiler's short path: when only ApiRoutes changed since the last
//! compilation (every other input is the same object as then), and none of the changed
//! routes shares a host + match with any other route before or after the change, the
//! new output is the last one with those routes replaced. Nothing else can differ:
//!
//! - no other route reads a route, so every other draft stands;
//! - a route that shares no (host, match) with another is in no conflict, and puts no
//!   other route in one, so every other route keeps its acceptance;
//! - the table's routes, its digests, the diagnostics and the statuses of the changed
//!   routes are replaced in place, and each ApiPolicy's count of attached routes moves
//!   by what the changed routes referenced before and after.
//!
//! Anything else (a shared match, a route with `tls`, too many changes, inputs out of order, another kind
//! changed) takes the whole path in `compile_with`, which also records what this path
//! starts from. `tests/incremental.rs` checks both against a full compilation.

use std::collections::BTreeSet;
use std::sync::Arc;

use gatehouse_api::ApiRoute;
use gatehouse_table::{Address, ByAddress};
use rustc_hash::FxHashMap as HashMap;

use crate::route::RouteDraft;
use crate::{Index, Inputs, Kind, Memo, ObjectRef, Output, Remembered, diagnostics, ns_name};

/// More changed routes than this take the whole path: the short path's work grows with
/// each one (a table insert is a move of every route after it).
const MOST_CHANGES: usize = 64;

/// What the short path starts from: the last compilation, when it could serve as a base.
#[derive(Debug)]
pub(crate) struct Last {
    pub redis: bool,
    /// Every input besides routes, as given then ([`Others`]).
    pub others: Others,
    /// The route inputs, in namespace/name order without duplicates.
    pub routes: Vec<Arc<ApiRoute>>,
    pub output: Output,
    /// The digest of each route of `output.table`, in table order.
    pub digests: Vec<[u8; 32]>,
    /// How many routes claim each (host, match signature), by hashes; rejected ones
    /// included. A hash collision only ever sends a change down the whole path.
    pub claims: HashMap<(u64, u64), u32>,
}

/// Every input besides routes. Held, not only their addresses: an address is the
/// same object only while the object lives (a freed one's address can be reused by a
/// newer object).
#[derive(Debug)]
pub(crate) struct Others {
    upstreams: Vec<Arc<gatehouse_api::Upstream>>,
    policies: Vec<Arc<gatehouse_api::ApiPolicy>>,
    secrets: Vec<Arc<k8s_openapi::api::core::v1::Secret>>,
    services: Vec<Arc<k8s_openapi::api::core::v1::Service>>,
    slices: Vec<Arc<k8s_openapi::api::discovery::v1::EndpointSlice>>,
}

impl Others {
    pub(crate) fn of(inputs: &Inputs) -> Others {
        Others {
            upstreams: inputs.upstreams.clone(),
            policies: inputs.policies.clone(),
            secrets: inputs.secrets.clone(),
            services: inputs.services.clone(),
            slices: inputs.endpoint_slices.clone(),
        }
    }

    /// Whether `inputs` has the same objects besides routes, in the same order.
    fn same(&self, inputs: &Inputs) -> bool {
        fn same<K>(a: &[Arc<K>], b: &[Arc<K>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        }
        same(&self.upstreams, &inputs.upstreams)
            && same(&self.policies, &inputs.policies)
            && same(&self.secrets, &inputs.secrets)
            && same(&self.services, &inputs.services)
            && same(&self.slices, &inputs.endpoint_slices)
    }
}

/// The (host, match signature) pairs a draft claims, by hashes, each once.
pub(crate) fn claims(d: &RouteDraft) -> Vec<(u64, u64)> {
    let hosts: Vec<u64> = if d.route.hosts.is_empty() {
        vec![0]
    } else {
        d.route.hosts.iter().map(|h| crate::fx_hash(h)).collect()
    };
    let mut out: Vec<(u64, u64)> = d
        .keys
        .iter()
        .flatten()
        .flat_map(|k| hosts.iter().map(move |h| (*h, k.signature_hash)))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// One changed route: what it was and what it is (`None`: absent).
struct Change<'a> {
    object: ObjectRef,
    old: Option<Arc<ApiRoute>>,
    new: Option<&'a Arc<ApiRoute>>,
}

/// Whether `new` compiles to exactly what `old` did, status included: the same spec, age
/// and generation (a status write, or a change to labels or annotations).
///
/// For an object from the API server (it has a `uid`), the same `uid` and generation
/// mean the same spec: the server counts every spec change of a resource with a status
/// subresource in `metadata.generation`, and ours have one. Objects from files are
/// compared field by field.
fn same_output(old: &ApiRoute, new: &ApiRoute) -> bool {
    let (o, n) = (&old.metadata, &new.metadata);
    if o.generation != n.generation || o.creation_timestamp != n.creation_timestamp {
        return false;
    }
    let served = o.uid.is_some() && o.uid == n.uid && o.generation.is_some();
    served || old.spec == new.spec
}

/// The routes that differ between `last` and `now` in what they compile to (objects
/// at the same address, or with the same output, do not), or `None` when `now` is not in
/// strict namespace/name order or too much changed.
fn changes<'a>(last: &[Arc<ApiRoute>], now: &'a [Arc<ApiRoute>]) -> Option<Vec<Change<'a>>> {
    if !now.windows(2).all(|w| ns_name(&*w[0]) < ns_name(&*w[1])) {
        return None;
    }
    let object = |r: &ApiRoute| {
        let (ns, name) = ns_name(r);
        ObjectRef::new(Kind::ApiRoute, ns, name)
    };
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let (old, new) = match (last.get(i), now.get(j)) {
            (None, None) => break,
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) => {
                i += 1;
                j += 1;
                continue;
            }
            (Some(o), Some(n)) => match ns_name(&**o).cmp(&ns_name(&**n)) {
                // After a status write: nothing to compile, and not a change.
                std::cmp::Ordering::Equal if same_output(o, n) => {
                    i += 1;
                    j += 1;
                    continue;
                }
                std::cmp::Ordering::Equal => (Some(o), Some(n)),
                std::cmp::Ordering::Less => (Some(o), None),
                std::cmp::Ordering::Greater => (None, Some(n)),
            },
            (o, n) => (o, n),
        };
        i += usize::from(old.is_some());
        j += usize::from(new.is_some());
        let Some(named) = new.or(old) else { break };
        out.push(Change {
            object: object(named),
            old: old.cloned(),
            new,
        });
        if out.len() > MOST_CHANGES {
            return None;
        }
    }
    Some(out)
}

/// What a changed route compiles to now: `None` when it is gone, else its draft (when it
/// compiled) and what was found.
type Compiled = Option<(Option<RouteDraft>, Vec<diagnostics::Diagnostic>)>;

/// The short path: `Some(output)` when only routes changed and none of them shares a
/// match with another route; else `None`, and the caller compiles the whole set.
pub(crate) fn compile(inputs: &Inputs, memo: &mut Memo) -> Option<Output> {
    let last = memo.last.as_ref()?;
    if last.redis != inputs.redis || !last.others.same(inputs) {
        return None;
    }
    let changed = changes(&last.routes, &inputs.routes)?;
    // A route with `tls` changes the table's certificates: the whole path collects them.
    let tls = |r: &ApiRoute| r.spec.tls.is_some();
    if changed
        .iter()
        .any(|c| c.old.as_deref().is_some_and(tls) || c.new.is_some_and(|r| tls(r)))
    {
        return None;
    }
    if changed.is_empty() {
        let last = memo.last.as_mut()?;
        // The same objects, or newer ones with the same output.
        last.routes.clone_from(&inputs.routes);
        return Some(last.output.clone());
    }
    let compiled = compile_changed(inputs, memo, &changed);
    let MovedClaims { counts, olds } = move_claims(memo, &changed, &compiled)?;

    // From here on nothing refuses: the last output becomes the new one.
    let last = memo.last.as_mut()?;
    for (claim, n) in counts {
        if n == 0 {
            last.claims.remove(&claim);
        } else {
            last.claims.insert(claim, n);
        }
    }
    let attached = replace_routes(memo, &changed, &olds, &compiled)?;
    let last = memo.last.as_mut()?;
    refresh_statuses(&mut last.output, &changed, &compiled, attached);
    last.output.table.hash = crate::hash_with_route_digests(&last.output.table, &last.digests);
    last.routes = inputs.routes.clone();
    Some(last.output.clone())
}

/// What each changed route compiles to now, against the index of the same objects as
/// last time (rebuilt from them and from what the memo keeps of them).
fn compile_changed(inputs: &Inputs, memo: &Memo, changed: &[Change<'_>]) -> Vec<Compiled> {
    let mut index = Index {
        redis: inputs.redis,
        ..Index::default()
    };
    for s in &inputs.secrets {
        index.secrets.insert(ns_name(&**s), &**s);
    }
    for ((ns, name), p) in &memo.world.policies {
        index
            .policies
            .insert((ns.as_str(), name.as_str()), p.as_ref());
    }
    index.upstreams = memo.world.upstreams.iter().cloned().collect();
    let mut regex = gatehouse_router::RegexChecker::default();
    let mut compiled = Vec::with_capacity(changed.len());
    for c in changed {
        let Some(r) = c.new else {
            compiled.push(None);
            continue;
        };
        if let Some(before) = memo.routes.get(&c.object)
            && before.holds_for(r)
        {
            compiled.push(Some((before.draft.clone(), before.found.clone())));
            continue;
        }
        let mut found = Vec::new();
        let mut sink = diagnostics::Sink::new(c.object.clone(), &mut found);
        let draft = crate::route::compile(r, &index, &mut regex, &mut sink);
        compiled.push(Some((draft, found)));
    }
    compiled
}

/// The claims of the changed routes, moved from what they were to what they are.
struct MovedClaims {
    /// The new count of every claim involved.
    counts: HashMap<(u64, u64), u32>,
    /// The changed routes' previous drafts.
    olds: Vec<Option<RouteDraft>>,
}

/// Claims: every one the changed routes held must have been theirs alone, and every one
/// they hold now must be theirs alone. Checked on a copy of the counts of the claims
/// involved, so that a refusal (`None`) changes nothing.
fn move_claims(memo: &Memo, changed: &[Change<'_>], compiled: &[Compiled]) -> Option<MovedClaims> {
    let last = memo.last.as_ref()?;
    let mut counts: HashMap<(u64, u64), u32> = HashMap::default();
    // Moves a claim's count from `from` to `to`; false when it was not `from`.
    let mut step = |claim: (u64, u64), from: u32, to: u32| {
        let n = counts
            .entry(claim)
            .or_insert_with(|| last.claims.get(&claim).copied().unwrap_or(0));
        let moved = *n == from;
        if moved {
            *n = to;
        }
        moved
    };
    let mut olds: Vec<Option<RouteDraft>> = Vec::with_capacity(changed.len());
    for c in changed {
        let old = match &c.old {
            Some(_) => memo.routes.get(&c.object)?.draft.clone(),
            None => None,
        };
        if !old.iter().flat_map(claims).all(|claim| step(claim, 1, 0)) {
            return None;
        }
        olds.push(old);
    }
    let new = compiled.iter().flatten().flat_map(|(draft, _)| draft);
    if !new.flat_map(claims).all(|claim| step(claim, 0, 1)) {
        return None;
    }
    Some(MovedClaims { counts, olds })
}

/// Replaces the changed routes in the last output's table, digests and diagnostics and
/// in the memo; returns how many routes each ApiPolicy gained or lost.
fn replace_routes(
    memo: &mut Memo,
    changed: &[Change<'_>],
    olds: &[Option<RouteDraft>],
    compiled: &[Compiled],
) -> Option<HashMap<String, i64>> {
    let Memo {
        last,
        routes: remembered,
        digests,
        round,
        ..
    } = memo;
    let last = last.as_mut()?;
    let out = &mut last.output;
    let objects: BTreeSet<&ObjectRef> = changed.iter().map(|c| &c.object).collect();
    out.diagnostics.retain(|d| !objects.contains(&d.object));
    let mut attached: HashMap<String, i64> = HashMap::default();
    for ((c, old), now) in changed.iter().zip(olds).zip(compiled) {
        // Out of the table, then in again where its id sorts.
        if let Some(old) = old {
            let routes = &out.table.routes;
            if let Ok(at) = routes.binary_search_by(|r| r.id.as_str().cmp(&old.route.id)) {
                out.table.routes.remove(at);
                last.digests.remove(at);
            }
            digests.remove(&Address::of(&old.route));
            for p in old.policy_refs.iter() {
                *attached.entry(p.clone()).or_default() -= 1;
            }
        }
        let Some((draft, found)) = now else {
            out.statuses.remove(&c.object);
            remembered.remove(&c.object);
            continue;
        };
        if let Some(d) = draft {
            let routes = &out.table.routes;
            let at = routes
                .binary_search_by(|r| r.id.as_str().cmp(&d.route.id))
                .unwrap_or_else(|at| at);
            let digest = crate::route_digest(&d.route);
            out.table.routes.insert(at, d.route.clone());
            last.digests.insert(at, digest);
            digests.insert(ByAddress::new(d.route.clone()), digest);
            for p in d.policy_refs.iter() {
                *attached.entry(p.clone()).or_default() += 1;
            }
        }
        out.diagnostics.extend(found.iter().cloned());
        if let Some(r) = c.new {
            remembered.insert(
                c.object.clone(),
                Remembered {
                    source: r.clone(),
                    draft: draft.clone(),
                    found: found.clone(),
                    seen: *round,
                },
            );
        }
    }
    out.diagnostics.sort();
    out.diagnostics.dedup();
    Some(attached)
}

/// The statuses of the changed routes, and each ApiPolicy's count of attached routes
/// moved by `attached`.
fn refresh_statuses(
    out: &mut Output,
    changed: &[Change<'_>],
    compiled: &[Compiled],
    attached: HashMap<String, i64>,
) {
    for (c, now) in changed.iter().zip(compiled) {
        if let (Some(r), Some(_)) = (c.new, now) {
            let from = out.diagnostics.partition_point(|d| d.object < c.object);
            let to = from + out.diagnostics[from..].partition_point(|d| d.object == c.object);
            let st = crate::status_of(&c.object, r.metadata.generation, &out.diagnostics[from..to]);
            out.statuses.insert(c.object.clone(), st);
        }
    }
    for (policy, delta) in attached {
        let Some((ns, name)) = policy.split_once('/') else {
            continue;
        };
        if let Some(st) = out
            .statuses
            .get_mut(&ObjectRef::new(Kind::ApiPolicy, ns, name))
            && let Some(n) = st.attached_routes.as_mut()
        {
            *n = (i64::from(*n) + delta).max(0) as u32;
        }
    }
}
