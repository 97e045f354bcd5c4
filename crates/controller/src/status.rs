//! Status: what the compiler said about each object, plus `Programmed` (the proxy
//! applied the table holding it), written with server-side apply (field manager
//! `gatehouse`) and only when it differs from what the object already shows.
//!
//! `lastTransitionTime` is kept from the live object while a condition's status stays
//! the same, so an unchanged status compares equal and is never rewritten.

use gatehouse_compiler::{Kind, ObjectRef, ObjectStatus, Output};
use gatehouse_table::{Address, ByAddress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::store::Objects;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "gatehouse";

/// The proxy's endpoints in rotation, by Upstream id, for Upstreams with health
/// checks: their `readyEndpoints` (the compiler's count is what the table names).
pub type Ready = std::collections::BTreeMap<String, u32>;

/// Whether the proxy runs the table the statuses describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Programmed {
    /// Applied by the proxy.
    Yes,
    /// Not applied (yet): why.
    No(String),
}

/// Now, to the second: what the API server keeps, so a written time compares equal
/// to what is read back.
fn now_seconds() -> Time {
    let secs = Timestamp::now().as_second();
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    live: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = live
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_seconds);
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status an object should show.
fn desired(
    object: &ObjectRef,
    s: &ObjectStatus,
    programmed: &Programmed,
    live: &[Condition],
) -> Value {
    let g = s.generation;
    let mut conditions = vec![
        condition(
            "Accepted",
            s.accepted.status,
            s.accepted.reason,
            &s.accepted.message,
            g,
            live,
        ),
        condition(
            "ResolvedRefs",
            s.resolved_refs.status,
            s.resolved_refs.reason,
            &s.resolved_refs.message,
            g,
            live,
        ),
    ];
    let mut status = json!({ "observedGeneration": g });
    match object.kind {
        Kind::ApiRoute => {
            let p = match (s.accepted.status, programmed) {
                (false, _) => condition(
                    "Programmed",
                    false,
                    s.accepted.reason,
                    "Not accepted, so not served.",
                    g,
                    live,
                ),
                (true, Programmed::Yes) => condition(
                    "Programmed",
                    true,
                    "Programmed",
                    "Served by the proxy.",
                    g,
                    live,
                ),
                (true, Programmed::No(why)) => {
                    condition("Programmed", false, "Pending", why, g, live)
                }
            };
            conditions.push(p);
        }
        Kind::Upstream => {
            status["readyEndpoints"] = json!(s.ready_endpoints.unwrap_or(0));
            status["totalEndpoints"] = json!(s.total_endpoints.unwrap_or(0));
        }
        Kind::ApiPolicy => {
            status["attachedRoutes"] = json!(s.attached_routes.unwrap_or(0));
        }
        _ => {}
    }
    status["conditions"] = serde_json::to_value(&conditions).unwrap_or(Value::Null);
    status
}

/// Objects whose live status was found to be what the compiler's answer calls for:
/// while neither that answer nor the object changes, the object is not compared
/// again. Comparing means serializing both statuses; doing it for 10,000 objects after
/// every one-route change would cost tens of milliseconds of CPU on every change.
///
/// Keyed by the watched object found equal, by its identity (the key holds it, so its
/// address stays its own): a watch event replaces the object, and so the key.
#[derive(Debug, Default)]
pub struct Verified {
    objects: std::collections::HashMap<Watched, Seen>,
}

/// A watched object of any of our kinds, by identity.
type Watched = ByAddress<dyn std::any::Any + Send + Sync>;

/// What an object was found to show: the status `status` with `programmed`.
#[derive(Debug)]
struct Seen {
    status: ObjectStatus,
    programmed: Programmed,
}

/// Our kinds, as the status pass reads them.
trait Statused: kube::Resource + Send + Sync + 'static {
    /// The live status, as JSON.
    fn status_json(&self) -> Option<Value>;
}

impl Statused for gatehouse_api::ApiRoute {
    fn status_json(&self) -> Option<Value> {
        serde_json::to_value(&self.status).ok()
    }
}

impl Statused for gatehouse_api::Upstream {
    fn status_json(&self) -> Option<Value> {
        serde_json::to_value(&self.status).ok()
    }
}

impl Statused for gatehouse_api::ApiPolicy {
    fn status_json(&self) -> Option<Value> {
        serde_json::to_value(&self.status).ok()
    }
}

/// The live status and conditions of `object`.
fn live<K: Statused>(object: &K) -> Option<(Value, Vec<Condition>)> {
    let status = object.status_json()?;
    let conditions = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    Some((status, conditions))
}

/// A status to write, and the Events its condition transitions call for.
#[derive(Debug)]
pub struct Write {
    /// The object.
    pub object: ObjectRef,
    /// Its `uid` (Events refer to it).
    pub uid: Option<String>,
    /// The whole status.
    pub status: Value,
    /// Conditions whose status or reason changed (or that are new):
    /// (type, status, reason, message).
    pub transitions: Vec<(String, String, String, String)>,
}

/// The watched objects of one kind in namespace/name order (the store's), walked
/// alongside the compiler's statuses of that kind (the same order).
struct Cursor<K> {
    objects: Vec<std::sync::Arc<K>>,
    at: usize,
}

impl<K: Statused> Cursor<K> {
    fn new<'a>(objects: impl Iterator<Item = &'a std::sync::Arc<K>>) -> Cursor<K> {
        Cursor {
            objects: objects.cloned().collect(),
            at: 0,
        }
    }

    /// The object named by `object`, moving past the ones before it.
    fn find(&mut self, object: &ObjectRef) -> Option<&std::sync::Arc<K>> {
        let want = (object.namespace.as_str(), object.name.as_str());
        fn key<K: kube::Resource>(o: &K) -> (&str, &str) {
            let m = o.meta();
            (
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default(),
            )
        }
        while self.objects.get(self.at).is_some_and(|o| key(&**o) < want) {
            self.at += 1;
        }
        self.objects.get(self.at).filter(|o| key(&***o) == want)
    }
}

/// Status writes that `out` and `programmed` call for: objects whose live status
/// differs. `verified` remembers the objects found equal (see [`Verified`]). `lock`
/// gives the watched objects; it is held only while the objects of our kinds are taken
/// (shared, not copied), so the watches and the compile loop never wait on this pass.
pub fn pending<G: std::ops::Deref<Target = Objects>>(
    out: &Output,
    programmed: &Programmed,
    ready: &Ready,
    lock: impl Fn() -> G,
    verified: &mut Verified,
) -> Vec<Write> {
    let (mut routes, mut upstreams, mut policies) = {
        let objects = lock();
        (
            Cursor::new(objects.routes.objects()),
            Cursor::new(objects.upstreams.objects()),
            Cursor::new(objects.policies.objects()),
        )
    };
    let mut writes = Vec::new();
    let mut still = std::collections::HashMap::with_capacity(verified.objects.len());
    for (object, s) in &out.statuses {
        let compared = match object.kind {
            Kind::ApiRoute => routes
                .find(object)
                .map(|o| compare(object, s, programmed, o, verified, &mut still)),
            Kind::Upstream => upstreams.find(object).map(|o| {
                match ready
                    .get(&object.id())
                    .filter(|n| Some(**n) != s.ready_endpoints)
                {
                    // Health checks took endpoints out of rotation (or brought them back).
                    Some(n) => {
                        let s = ObjectStatus {
                            ready_endpoints: Some(*n),
                            ..s.clone()
                        };
                        compare(object, &s, programmed, o, verified, &mut still)
                    }
                    None => compare(object, s, programmed, o, verified, &mut still),
                }
            }),
            Kind::ApiPolicy => policies
                .find(object)
                .map(|o| compare(object, s, programmed, o, verified, &mut still)),
            _ => None,
        };
        writes.extend(compared.flatten());
    }
    verified.objects = still;
    writes
}

/// One object: `None` when its live status is what `s` calls for (remembered in
/// `still`), else the write that makes it so.
fn compare<K: Statused>(
    object: &ObjectRef,
    s: &ObjectStatus,
    programmed: &Programmed,
    live_object: &std::sync::Arc<K>,
    verified: &mut Verified,
    still: &mut std::collections::HashMap<Watched, Seen>,
) -> Option<Write> {
    if let Some((key, seen)) = verified.objects.remove_entry(&Address::of(live_object))
        && seen.status == *s
        && seen.programmed == *programmed
    {
        still.insert(key, seen);
        return None;
    }
    let (live_status, live_conditions) = live(&**live_object)?;
    let want = desired(object, s, programmed, &live_conditions);
    if want == live_status {
        let held: std::sync::Arc<dyn std::any::Any + Send + Sync> = live_object.clone();
        still.insert(
            ByAddress::new(held),
            Seen {
                status: s.clone(),
                programmed: programmed.clone(),
            },
        );
        return None;
    }
    let wanted: Vec<Condition> =
        serde_json::from_value(want["conditions"].clone()).unwrap_or_default();
    let transitions = wanted
        .iter()
        .filter(|c| {
            !live_conditions
                .iter()
                .any(|l| l.type_ == c.type_ && l.status == c.status && l.reason == c.reason)
        })
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            )
        })
        .collect();
    Some(Write {
        object: object.clone(),
        uid: live_object.meta().uid.clone(),
        status: want,
        transitions,
    })
}

/// At most `max` bytes (an Event's note is limited to 1 KiB), cut at a char boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Publishes one Event per condition transition of `write` (Warning when a condition
/// turns False, Normal when True).
pub async fn announce(recorder: &kube::runtime::events::Recorder, write: &Write) {
    use kube::runtime::events::{Event, EventType};
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("gatehouse.dev/v1alpha1".into()),
        kind: Some(write.object.kind.to_string()),
        name: Some(write.object.name.clone()),
        namespace: Some(write.object.namespace.clone()),
        uid: write.uid.clone(),
        ..Default::default()
    };
    for (type_, status, reason, message) in &write.transitions {
        let event = Event {
            type_: if status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.clone(),
            note: Some(truncate(format!("{type_}={status}: {message}"), 1024)),
            action: type_.clone(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(object = %write.object, error = %e, "event not recorded");
        }
    }
}

/// A status the API server did not take.
#[derive(Debug, thiserror::Error)]
#[error("writing the status of {object}: {source}")]
pub struct StatusError {
    /// Whose status.
    pub object: ObjectRef,
    /// The API server's answer.
    #[source]
    pub source: kube::Error,
}

/// Writes one status with server-side apply.
pub async fn write(client: &Client, object: &ObjectRef, status: Value) -> Result<(), StatusError> {
    apply_status(client, object, status)
        .await
        .map_err(|source| StatusError {
            object: object.clone(),
            source,
        })
}

async fn apply_status(
    client: &Client,
    object: &ObjectRef,
    status: Value,
) -> Result<(), kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let body = |kind: &str| {
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1",
            "kind": kind,
            "metadata": { "name": object.name, "namespace": object.namespace },
            "status": status,
        })
    };
    let ns = object.namespace.as_str();
    match object.kind {
        Kind::ApiRoute => {
            Api::<gatehouse_api::ApiRoute>::namespaced(client.clone(), ns)
                .patch_status(&object.name, &params, &Patch::Apply(body("ApiRoute")))
                .await?;
        }
        Kind::Upstream => {
            Api::<gatehouse_api::Upstream>::namespaced(client.clone(), ns)
                .patch_status(&object.name, &params, &Patch::Apply(body("Upstream")))
                .await?;
        }
        Kind::ApiPolicy => {
            Api::<gatehouse_api::ApiPolicy>::namespaced(client.clone(), ns)
                .patch_status(&object.name, &params, &Patch::Apply(body("ApiPolicy")))
                .await?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_compiler::Condition as C;

    fn status(accepted: bool) -> ObjectStatus {
        ObjectStatus {
            generation: Some(3),
            accepted: C {
                status: accepted,
                reason: if accepted { "Accepted" } else { "Invalid" },
                message: "m".into(),
            },
            resolved_refs: C {
                status: true,
                reason: "ResolvedRefs",
                message: "m".into(),
            },
            ready_endpoints: None,
            total_endpoints: None,
            attached_routes: None,
        }
    }

    fn route() -> ObjectRef {
        ObjectRef {
            kind: Kind::ApiRoute,
            namespace: "ns".into(),
            name: "r".into(),
        }
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_times_and_compares_equal() {
        let first = desired(&route(), &status(true), &Programmed::Yes, &[]);
        let conditions: Vec<Condition> =
            serde_json::from_value(first["conditions"].clone()).expect("conditions");
        let again = desired(&route(), &status(true), &Programmed::Yes, &conditions);
        assert_eq!(first, again);
        assert_eq!(first["observedGeneration"], 3);
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "ResolvedRefs", "Programmed"]);
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    /// The watch cache holding route `ns/r` with `status` at `version`.
    fn cached(status: Option<&Value>, version: &str) -> Objects {
        let mut objects = Objects::default();
        let route = gatehouse_api::ApiRoute {
            metadata: kube::api::ObjectMeta {
                name: Some("r".into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Default::default(),
            status: status.map(|v| serde_json::from_value(v.clone()).expect("a route status")),
        };
        objects
            .routes
            .apply(&None, kube::runtime::watcher::Event::Apply(route));
        objects
    }

    #[test]
    fn only_statuses_that_differ_are_written_and_verified_ones_are_not_compared_again() {
        let out = Output {
            statuses: [(route(), status(true))].into_iter().collect(),
            ..Default::default()
        };
        let mut verified = Verified::default();
        // No status yet: one write.
        let fresh = cached(None, "1");
        let writes = pending(
            &out,
            &Programmed::Yes,
            &Ready::new(),
            || &fresh,
            &mut verified,
        );
        assert_eq!(writes.len(), 1);
        let written = writes[0].status.clone();
        assert!(verified.objects.is_empty());
        // Written (a new resourceVersion): equal, and remembered as such.
        let objects = cached(Some(&written), "2");
        assert!(
            pending(
                &out,
                &Programmed::Yes,
                &Ready::new(),
                || &objects,
                &mut verified
            )
            .is_empty()
        );
        assert_eq!(verified.objects.len(), 1);
        assert!(
            pending(
                &out,
                &Programmed::Yes,
                &Ready::new(),
                || &objects,
                &mut verified
            )
            .is_empty()
        );
        // Someone else rewrote the status: compared again, and written back.
        let clobbered = cached(Some(&json!({ "observedGeneration": 1 })), "3");
        let writes = pending(
            &out,
            &Programmed::Yes,
            &Ready::new(),
            || &clobbered,
            &mut verified,
        );
        assert_eq!(writes.len(), 1);
        // A new answer from the compiler is compared too, even at the same version.
        let objects = cached(Some(&written), "4");
        assert!(
            pending(
                &out,
                &Programmed::Yes,
                &Ready::new(),
                || &objects,
                &mut verified
            )
            .is_empty()
        );
        let refused = Output {
            statuses: [(route(), status(false))].into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(
            pending(
                &refused,
                &Programmed::Yes,
                &Ready::new(),
                || &objects,
                &mut verified
            )
            .len(),
            1
        );
        // Deleted objects are forgotten.
        let gone = Output::default();
        assert!(
            pending(
                &gone,
                &Programmed::Yes,
                &Ready::new(),
                || &objects,
                &mut verified
            )
            .is_empty()
        );
        assert!(verified.objects.is_empty());
    }

    #[test]
    fn programmed_follows_acceptance_and_the_push() {
        let v = desired(&route(), &status(false), &Programmed::Yes, &[]);
        assert_eq!(v["conditions"][2]["status"], "False");
        assert_eq!(v["conditions"][2]["reason"], "Invalid");
        let v = desired(
            &route(),
            &status(true),
            &Programmed::No("proxy unreachable".into()),
            &[],
        );
        assert_eq!(v["conditions"][2]["reason"], "Pending");
        assert_eq!(v["conditions"][2]["message"], "proxy unreachable");
    }
}
