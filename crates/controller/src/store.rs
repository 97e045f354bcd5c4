//! What the watches have seen: one map per kind, fed by `kube_runtime::watcher` events,
//! and a change counter the compile loop waits on.
//!
//! A watch scope is a namespace, or the whole cluster. A relist (`Init` … `InitDone`,
//! after a restart, a 410 Gone or a dropped connection) replaces exactly the objects of
//! its scope, so objects deleted while the watch was down disappear too.
//!
//! A change that cannot alter the table is recorded without waking the compile loop:
//! for our own resources, an update that keeps `metadata.generation` is a status write
//! (most likely ours).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// `(namespace, name)`.
pub type Key = (String, String);

/// The objects of one kind.
#[derive(Debug)]
pub struct Kind<K> {
    /// Shared: the compiler's inputs are these objects, not copies.
    objects: BTreeMap<Key, Arc<K>>,
    /// Objects of a relist in progress, by scope.
    relisting: HashMap<Option<String>, BTreeMap<Key, Arc<K>>>,
    /// Scopes whose first list has completed.
    synced: Vec<Option<String>>,
    /// Only a generation change matters (our CRDs, which have a status subresource).
    generation_only: bool,
}

impl<K> Kind<K> {
    fn new(generation_only: bool) -> Kind<K> {
        Kind {
            objects: BTreeMap::new(),
            relisting: HashMap::new(),
            synced: Vec::new(),
            generation_only,
        }
    }

    /// The objects.
    pub fn objects(&self) -> impl Iterator<Item = &Arc<K>> {
        self.objects.values()
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.objects
            .get(&(namespace.to_string(), name.to_string()))
            .map(|o| &**o)
    }
}

fn key<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

impl<K: Resource> Kind<K> {
    /// Applies one watch event of `scope`; returns whether the table may change.
    pub fn apply(&mut self, scope: &Option<String>, event: Event<K>) -> bool {
        match event {
            Event::Apply(o) => {
                let k = key(&o);
                let matters = !self.generation_only
                    || self.objects.get(&k).is_none_or(|old| {
                        old.meta().generation != o.meta().generation
                            || old.meta().labels != o.meta().labels
                    });
                self.objects.insert(k, Arc::new(o));
                matters
            }
            Event::Delete(o) => self.objects.remove(&key(&o)).is_some(),
            Event::Init => {
                self.relisting.insert(scope.clone(), BTreeMap::new());
                false
            }
            Event::InitApply(o) => {
                self.relisting
                    .entry(scope.clone())
                    .or_default()
                    .insert(key(&o), Arc::new(o));
                false
            }
            Event::InitDone => {
                let fresh = self.relisting.remove(scope).unwrap_or_default();
                self.objects
                    .retain(|(ns, _), _| scope.as_ref().is_some_and(|s| s != ns));
                self.objects.extend(fresh);
                if !self.synced.contains(scope) {
                    self.synced.push(scope.clone());
                }
                true
            }
        }
    }

    fn synced(&self, scopes: &[Option<String>]) -> bool {
        scopes.iter().all(|s| self.synced.contains(s))
    }
}

/// Everything watched.
#[derive(Debug)]
pub struct Objects {
    /// ApiRoutes.
    pub routes: Kind<gatehouse_api::ApiRoute>,
    /// Upstreams.
    pub upstreams: Kind<gatehouse_api::Upstream>,
    /// ApiPolicies.
    pub policies: Kind<gatehouse_api::ApiPolicy>,
    /// Secrets.
    pub secrets: Kind<k8s_openapi::api::core::v1::Secret>,
    /// Services.
    pub services: Kind<k8s_openapi::api::core::v1::Service>,
    /// EndpointSlices.
    pub slices: Kind<k8s_openapi::api::discovery::v1::EndpointSlice>,
}

impl Default for Objects {
    fn default() -> Objects {
        Objects {
            routes: Kind::new(true),
            upstreams: Kind::new(true),
            policies: Kind::new(true),
            secrets: Kind::new(false),
            services: Kind::new(false),
            slices: Kind::new(false),
        }
    }
}

impl Objects {
    /// Whether every kind has completed its first list in every scope: before that, a
    /// table would be missing objects that exist.
    pub fn synced(&self, scopes: &[Option<String>]) -> bool {
        self.routes.synced(scopes)
            && self.upstreams.synced(scopes)
            && self.policies.synced(scopes)
            && self.secrets.synced(scopes)
            && self.services.synced(scopes)
            && self.slices.synced(scopes)
    }

    /// The compiler's inputs: the stored objects themselves, shared (a 10,000-route
    /// copy would hold the lock, and cost more than compiling).
    pub fn inputs(&self) -> gatehouse_compiler::Inputs {
        gatehouse_compiler::Inputs {
            routes: self.routes.objects().cloned().collect(),
            upstreams: self.upstreams.objects().cloned().collect(),
            policies: self.policies.objects().cloned().collect(),
            secrets: self.secrets.objects().cloned().collect(),
            services: self.services.objects().cloned().collect(),
            endpoint_slices: self.slices.objects().cloned().collect(),
            redis: false,
        }
    }
}

/// The shared store and its change signal.
#[derive(Debug, Clone)]
pub struct Store {
    objects: Arc<Mutex<Objects>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            objects: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl Store {
    /// The objects, locked.
    pub fn lock(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the objects and wakes the compile loop when it says so.
    pub fn update(&self, f: impl FnOnce(&mut Objects) -> bool) {
        let wake = f(&mut self.lock());
        if wake {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// A receiver that sees every wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ObjectMeta;

    fn svc(ns: &str, name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_replaces_only_its_scope() {
        let mut kind: Kind<Service> = Kind::new(false);
        let (a, b) = (Some("a".to_string()), Some("b".to_string()));
        for (scope, ns) in [(&a, "a"), (&b, "b")] {
            kind.apply(scope, Event::Init);
            kind.apply(scope, Event::InitApply(svc(ns, "one")));
            kind.apply(scope, Event::InitApply(svc(ns, "two")));
            assert!(kind.apply(scope, Event::InitDone));
        }
        assert!(kind.synced(&[a.clone(), b.clone()]));
        assert_eq!(kind.objects().count(), 4);
        // `a` relists after "two" was deleted while the watch was down.
        kind.apply(&a, Event::Init);
        kind.apply(&a, Event::InitApply(svc("a", "one")));
        assert_eq!(
            kind.objects().count(),
            4,
            "nothing replaced before InitDone"
        );
        kind.apply(&a, Event::InitDone);
        assert!(kind.get("a", "two").is_none());
        assert!(kind.get("b", "two").is_some());
    }

    #[test]
    fn a_cluster_scope_relist_replaces_everything() {
        let mut kind: Kind<Service> = Kind::new(false);
        kind.apply(&None, Event::Apply(svc("a", "one")));
        kind.apply(&None, Event::Init);
        kind.apply(&None, Event::InitApply(svc("b", "two")));
        kind.apply(&None, Event::InitDone);
        assert!(kind.get("a", "one").is_none());
        assert!(kind.get("b", "two").is_some());
    }

    #[test]
    fn status_only_updates_of_our_kinds_do_not_wake_the_compiler() {
        let mut kind: Kind<Service> = Kind::new(true);
        let mut s = svc("a", "one");
        s.metadata.generation = Some(1);
        assert!(kind.apply(&None, Event::Apply(s.clone())));
        assert!(
            !kind.apply(&None, Event::Apply(s.clone())),
            "same generation"
        );
        s.metadata.generation = Some(2);
        assert!(kind.apply(&None, Event::Apply(s)));
    }
}
