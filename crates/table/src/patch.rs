//! The difference between two tables, so that a one-route change does not cross the
//! admin socket (and get parsed) as the whole 10,000-route table.
//!
//! ```text
//!  controller: pushed.diff(&next) ──PATCH /config──▶ proxy: running.patched(patch)?
//!                                    (base hash)         409 when it runs another table
//! ```
//!
//! A patch names the table it applies to ([`TablePatch::base`]) and the one it makes
//! ([`TablePatch::hash`]); applied to any other table it is refused, and the sender falls
//! back to the whole table. Routes and upstreams travel by id: added or changed ones
//! whole, removed ones by id. A route's content depends on that route alone (its ranks
//! too: see [`Match::rank`](crate::Match::rank)), so a one-route change is a one-route
//! patch.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Certificate, Consumer, FORMAT, Route, Table, Upstream};

/// What turns the table `base` into the table `hash`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePatch {
    /// [`FORMAT`] of the producer.
    pub format: u32,
    /// The version of the resulting table.
    pub version: u64,
    /// Hash of the table this patch applies to.
    pub base: String,
    /// Hash of the resulting table.
    pub hash: String,
    /// Routes added or changed, whole, sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Arc<Route>>,
    /// Ids of routes removed, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_routes: Vec<String>,
    /// Upstreams added or changed, whole, sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    /// Ids of upstreams removed, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_upstreams: Vec<String>,
    /// Every consumer, when any changed; `None`: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<Consumer>>,
    /// Every certificate, when any changed; `None`: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<Certificate>>,
}

/// Why a patch does not apply.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The table it was made against is not the one it is applied to.
    #[error("the patch applies to table {expected}, not to the running table {running}")]
    OtherBase {
        /// [`TablePatch::base`].
        expected: String,
        /// The running table's hash.
        running: String,
    },
    /// A format this build does not read.
    #[error("table format {0} (this build reads {FORMAT})")]
    Format(u32),
    /// It does not fit the table (removes what is not there, ids out of order).
    #[error("the patch does not fit its base table: {0}")]
    Mismatch(String),
}

impl Table {
    /// The patch that turns `self` into `next`.
    pub fn diff(&self, next: &Table) -> TablePatch {
        let mut patch = TablePatch {
            format: next.format,
            version: next.version,
            base: self.hash.clone(),
            hash: next.hash.clone(),
            consumers: (self.consumers != next.consumers).then(|| next.consumers.clone()),
            certificates: (self.certificates != next.certificates)
                .then(|| next.certificates.clone()),
            ..TablePatch::default()
        };
        for change in walk(&self.routes, &next.routes, |r| &r.id) {
            match change {
                Change::Kept(old, new) if Arc::ptr_eq(old, new) || old == new => {}
                Change::Kept(_, new) | Change::Added(new) => patch.routes.push(new.clone()),
                Change::Removed(old) => patch.removed_routes.push(old.id.clone()),
            }
        }
        for change in walk(&self.upstreams, &next.upstreams, |u| &u.id) {
            match change {
                Change::Kept(old, new) if old == new => {}
                Change::Kept(_, new) | Change::Added(new) => patch.upstreams.push(new.clone()),
                Change::Removed(old) => patch.removed_upstreams.push(old.id.clone()),
            }
        }
        patch
    }

    /// `self` with `patch` applied; refused (and `self` untouched) unless `self` is the
    /// table the patch was made against.
    pub fn patched(&self, patch: TablePatch) -> Result<Table, PatchError> {
        if patch.format != FORMAT {
            return Err(PatchError::Format(patch.format));
        }
        if patch.base != self.hash {
            return Err(PatchError::OtherBase {
                expected: patch.base,
                running: self.hash.clone(),
            });
        }
        let routes = apply(
            &self.routes,
            patch.routes,
            &patch.removed_routes,
            |r| &r.id,
            "route",
        )?;
        let upstreams = apply(
            &self.upstreams,
            patch.upstreams,
            &patch.removed_upstreams,
            |u| &u.id,
            "upstream",
        )?;
        Ok(Table {
            format: patch.format,
            version: patch.version,
            hash: patch.hash,
            routes,
            upstreams,
            consumers: patch.consumers.unwrap_or_else(|| self.consumers.clone()),
            certificates: patch
                .certificates
                .unwrap_or_else(|| self.certificates.clone()),
        })
    }
}

/// One id in a walk over two id-sorted lists.
enum Change<'a, T> {
    /// In both.
    Kept(&'a T, &'a T),
    /// Only in the new list.
    Added(&'a T),
    /// Only in the old list.
    Removed(&'a T),
}

/// Every id of two lists sorted by id, in order.
fn walk<'a, T>(
    old: &'a [T],
    new: &'a [T],
    id: impl Fn(&T) -> &String,
) -> impl Iterator<Item = Change<'a, T>> {
    let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
    std::iter::from_fn(move || match (old.peek(), new.peek()) {
        (Some(o), Some(n)) => Some(match id(o).cmp(id(n)) {
            std::cmp::Ordering::Equal => Change::Kept(old.next()?, new.next()?),
            std::cmp::Ordering::Less => Change::Removed(old.next()?),
            std::cmp::Ordering::Greater => Change::Added(new.next()?),
        }),
        (Some(_), None) => Some(Change::Removed(old.next()?)),
        (None, Some(_)) => Some(Change::Added(new.next()?)),
        (None, None) => None,
    })
}

/// `base` (sorted by id) with `upserts` (sorted by id) put in and `removed` taken out.
fn apply<T: Clone>(
    base: &[T],
    upserts: Vec<T>,
    removed: &[String],
    id: impl Fn(&T) -> &String,
    what: &str,
) -> Result<Vec<T>, PatchError> {
    let sorted = |ids: &mut dyn Iterator<Item = &String>| {
        let mut prev: Option<&String> = None;
        for i in ids {
            if prev.is_some_and(|p| p >= i) {
                return false;
            }
            prev = Some(i);
        }
        true
    };
    if !sorted(&mut upserts.iter().map(&id)) || !sorted(&mut removed.iter()) {
        return Err(PatchError::Mismatch(format!("{what} ids are not sorted")));
    }
    let mut out = Vec::with_capacity(base.len() + upserts.len());
    let mut upserts = upserts.into_iter().peekable();
    let mut removed = removed.iter().peekable();
    for item in base {
        while let Some(u) = upserts.next_if(|u| id(u) < id(item)) {
            out.push(u);
        }
        if removed.next_if(|r| *r == id(item)).is_some() {
            if upserts.peek().is_some_and(|u| id(u) == id(item)) {
                return Err(PatchError::Mismatch(format!(
                    "{what} {} is both removed and replaced",
                    id(item)
                )));
            }
            continue;
        }
        if let Some(r) = removed.peek()
            && *r < id(item)
        {
            return Err(PatchError::Mismatch(format!(
                "{what} {r} is removed but not in the table"
            )));
        }
        match upserts.next_if(|u| id(u) == id(item)) {
            Some(u) => out.push(u),
            None => out.push(item.clone()),
        }
    }
    if let Some(r) = removed.next() {
        return Err(PatchError::Mismatch(format!(
            "{what} {r} is removed but not in the table"
        )));
    }
    out.extend(upserts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, Match, PathMatch, Rule};

    fn route(id: &str, path: &str, rank: u32) -> Arc<Route> {
        Arc::new(Route {
            id: id.into(),
            rules: vec![Rule {
                name: "rule-0".into(),
                matches: vec![Match {
                    rank,
                    path: PathMatch::Prefix(path.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn upstream(id: &str, port: u16) -> Upstream {
        Upstream {
            id: id.into(),
            endpoints: vec![Endpoint {
                host: "10.0.0.1".into(),
                port,
                weight: 1,
                ready: true,
            }],
            ..Default::default()
        }
    }

    fn table(hash: &str, routes: Vec<Arc<Route>>, upstreams: Vec<Upstream>) -> Table {
        Table {
            format: FORMAT,
            version: 1,
            hash: hash.into(),
            routes,
            upstreams,
            consumers: Vec::new(),
            certificates: Vec::new(),
        }
    }

    #[test]
    fn a_patch_turns_its_base_into_the_next_table() {
        let before = table(
            "a",
            vec![
                route("ns/a", "/a", 0),
                route("ns/b", "/b", 1),
                route("ns/c", "/c", 2),
            ],
            vec![upstream("ns/x", 80), upstream("ns/y", 80)],
        );
        let mut after = table(
            "b",
            // a: unchanged; b: changed; c: removed; d: added.
            vec![
                route("ns/a", "/a", 0),
                route("ns/b", "/b2", 1),
                route("ns/d", "/d", 1),
            ],
            vec![upstream("ns/x", 81), upstream("ns/z", 80)],
        );
        after.version = 7;
        after.consumers = vec![Consumer {
            id: "ns/alice".into(),
            ..Default::default()
        }];
        let patch = before.diff(&after);
        assert_eq!(patch.base, "a");
        assert_eq!(patch.hash, "b");
        let ids = |rs: &[Arc<Route>]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&patch.routes), ["ns/b", "ns/d"]);
        assert_eq!(patch.removed_routes, ["ns/c"]);
        assert_eq!(
            patch.upstreams,
            [upstream("ns/x", 81), upstream("ns/z", 80)]
        );
        assert_eq!(patch.removed_upstreams, ["ns/y"]);
        assert!(patch.consumers.is_some());

        // Through JSON, as it crosses the socket.
        let json = serde_json::to_vec(&patch).expect("serializes");
        let patch: TablePatch = serde_json::from_slice(&json).expect("deserializes");
        assert_eq!(before.patched(patch).expect("applies"), after);
    }

    #[test]
    fn an_unchanged_table_is_an_empty_patch() {
        let t = table(
            "a",
            vec![route("ns/a", "/a", 0)],
            vec![upstream("ns/x", 80)],
        );
        let patch = t.diff(&t);
        assert!(patch.routes.is_empty());
        assert!(patch.removed_routes.is_empty() && patch.upstreams.is_empty());
        assert!(patch.consumers.is_none());
        assert_eq!(t.patched(patch).expect("applies"), t);
    }

    #[test]
    fn a_route_shared_with_the_base_is_not_compared_and_not_sent() {
        let shared = route("ns/a", "/a", 0);
        let before = table("a", vec![shared.clone(), route("ns/b", "/b", 0)], vec![]);
        let after = table("b", vec![shared, route("ns/b", "/moved", 0)], vec![]);
        let patch = before.diff(&after);
        assert_eq!(patch.routes, [route("ns/b", "/moved", 0)]);
        let patched = before.patched(patch).expect("applies");
        assert!(Arc::ptr_eq(&patched.routes[0], &before.routes[0]));
        assert_eq!(patched, after);
    }

    #[test]
    fn a_patch_for_another_table_is_refused() {
        let a = table("a", vec![route("ns/a", "/a", 0)], vec![]);
        let b = table("b", vec![route("ns/a", "/b", 0)], vec![]);
        let other = table("c", vec![], vec![]);
        let patch = a.diff(&b);
        assert_eq!(
            other.patched(patch),
            Err(PatchError::OtherBase {
                expected: "a".into(),
                running: "c".into()
            })
        );
    }

    #[test]
    fn a_patch_that_does_not_fit_is_refused() {
        let base = table("a", vec![route("ns/a", "/a", 0)], vec![]);
        let patch = |f: &dyn Fn(&mut TablePatch)| {
            let mut p = TablePatch {
                format: FORMAT,
                base: "a".into(),
                hash: "b".into(),
                ..Default::default()
            };
            f(&mut p);
            p
        };
        let cases: [(&str, TablePatch); 3] = [
            (
                "removing what is not there",
                patch(&|p| p.removed_routes = vec!["ns/zz".into()]),
            ),
            (
                "removing and replacing one route",
                patch(&|p| {
                    p.removed_routes = vec!["ns/a".into()];
                    p.routes = vec![route("ns/a", "/x", 0)];
                }),
            ),
            (
                "unsorted ids",
                patch(&|p| p.routes = vec![route("ns/c", "/c", 0), route("ns/b", "/b", 0)]),
            ),
        ];
        for (what, p) in cases {
            assert!(
                matches!(base.patched(p), Err(PatchError::Mismatch(_))),
                "{what}"
            );
        }
        let mut p = patch(&|_| {});
        p.format = FORMAT + 1;
        assert_eq!(base.patched(p), Err(PatchError::Format(FORMAT + 1)));
    }
}
