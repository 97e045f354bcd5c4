//! # gatehouse-router: which rule serves a request
//!
//! Built once per table, off the request path; consulted for every request by the proxy
//! and, through [`Router::diagnose`], by `gatehouse explain`, so the two can never
//! disagree. A table that keeps every route's place, id and age (a route's matches
//! changed, say) is built on the previous router: its index of the whole table (the
//! base) is shared, and only the routes changed since it are indexed, in an overlay
//! whose matches replace theirs (see [`Router::build_after`]).
//!
//! ```text
//!  request ──normalize──▶ host index ──▶ bucket: exact-path map ─┐
//!   (method, host,        exact host      segment trie (Prefix,  ├─▶ candidates ──▶ conditions
//!    path, query,         *.wildcards     Template) ─────────────┤     (methods, headers, query)
//!    headers)             any host        RegexSet ──────────────┘     lowest rank wins
//! ```
//!
//! Precedence: buckets are tried most specific host first (exact, then wildcards from
//! the longest suffix, then routes for any host); within a bucket the lowest
//! [`gatehouse_table::Match::rank`] wins (the compiler gives each match its own: path
//! kind, literal length, conditions, version), then the older route
//! ([`gatehouse_table::Route::created`], then namespace/name), then rule and match
//! order. The age order is the one thing this crate derives, once per base. With an
//! overlay, each host level is the union of the base's bucket (less the changed
//! routes) and the overlay's, so precedence is the same as for a router built whole.
//!
//! What it must not know: policies, upstreams, Kubernetes. It owns path normalization
//! and matching; nothing else.

mod index;
mod matcher;
pub mod normalize;

use std::borrow::Cow;

use gatehouse_table::Table;

pub use matcher::{
    Headers, REGEX_SIZE_LIMIT, RegexCache, RegexChecker, Target, anchored_regex, query_pairs,
};
pub use normalize::{NormalizedPath, PathError, normalize, normalize_host};

use index::HostIndex;
use matcher::CompiledMatch;

/// A request as the router sees it.
#[derive(Debug)]
pub struct Request<'a, H: Headers + ?Sized> {
    /// Method, uppercase as sent.
    pub method: &'a str,
    /// Host (or `:authority`), possibly with a port.
    pub host: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a H,
}

/// The router's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A rule was selected.
    Matched(Selected<'a>),
    /// The path matched rules, none of them for this method: 405 with `Allow`.
    MethodNotAllowed {
        /// Methods that would have matched, sorted.
        allow: Vec<String>,
    },
    /// Nothing matched: 404.
    NotFound,
    /// The path is malformed, or holds an encoded slash the selected rule refuses: 400.
    BadPath(BadPath),
}

/// Why a path is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Not normalizable.
    #[error(transparent)]
    Malformed(#[from] PathError),
    /// `%2F` / `%5C` in the path and the rule does not allow it.
    #[error(
        "the path holds an encoded slash (%2F or %5C), a backslash or a ;-parameter, which this route does not accept"
    )]
    EncodedSlash,
}

/// A selected rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Selected<'a> {
    /// Where the winning match is.
    pub target: Target,
    /// The normalized path, which is also what is forwarded.
    pub path: Cow<'a, str>,
    /// Captured path parameters (`{id}`, `{*rest}`, named regex groups).
    pub params: Vec<(String, String)>,
}

/// A table that cannot be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A regular expression does not compile (or is too large).
    #[error("route {} rule {} match {}: {message}", target.route, target.rule, target.matched)]
    Regex {
        /// Where.
        target: Target,
        /// The regex crate's message.
        message: String,
    },
}

/// The prepared matcher for one table.
///
/// A router built after another whose table had the same routes in the same places
/// (same ids and ages), with at most [`OVERLAY_MOST`] of them changed since that one's
/// base was built, shares the base and indexes only the changed routes, in an overlay:
/// a one-route change costs one route, not the whole index. Requests consult both,
/// level by level, and pass over the base's matches of the changed routes.
#[derive(Debug)]
pub struct Router {
    base: std::sync::Arc<Base>,
    overlay: Option<Overlay>,
}

/// Changed routes since the base beyond this many rebuild the whole index.
pub const OVERLAY_MOST: usize = 256;

/// Compiled matches and their index.
#[derive(Debug)]
struct Layer {
    matches: Vec<CompiledMatch>,
    hosts: HostIndex,
}

/// The index of a whole table, and what it was built from.
#[derive(Debug)]
struct Base {
    layer: Layer,
    /// The table's routes: a route at the same address is unchanged.
    routes: Vec<std::sync::Arc<gatehouse_table::Route>>,
    /// Each route's place in age order.
    ages: Vec<u32>,
}

/// The routes changed since the base.
#[derive(Debug)]
struct Overlay {
    layer: Layer,
    /// `[route]`: the base's matches of this route are stale.
    masked: Vec<bool>,
}

/// How the host of a request relates to a route's hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostVerdict {
    /// Listed exactly.
    Exact,
    /// Matched by this wildcard pattern.
    Wildcard(String),
    /// The route takes any host.
    Any,
    /// Not served by this route.
    Mismatch,
}

/// Every criterion of one match against a request: what [`Router::diagnose`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchReport {
    /// Where the match is.
    pub target: Target,
    /// Its place among all matches of the table in precedence order (host aside):
    /// 0 goes first.
    pub rank: u32,
    /// Host.
    pub host: HostVerdict,
    /// Path predicate.
    pub path: bool,
    /// Method.
    pub method: bool,
    /// Header conditions.
    pub headers: bool,
    /// Query conditions.
    pub query: bool,
}

impl MatchReport {
    /// Every criterion holds.
    pub fn matched(&self) -> bool {
        self.host != HostVerdict::Mismatch && self.path && self.method && self.headers && self.query
    }
}

impl Router {
    /// Prepares the matcher: compiles regexes and builds the indexes.
    pub fn new(table: &Table) -> Result<Router, RouterError> {
        Router::build(table, &mut RegexCache::default())
    }

    /// [`Router::new`], reusing the regexes `cache` holds from the previous build. On
    /// success the cache holds exactly this router's regexes; on error it is unchanged.
    pub fn build(table: &Table, cache: &mut RegexCache) -> Result<Router, RouterError> {
        let (router, next) = Router::build_from(table, cache)?;
        *cache = next;
        Ok(router)
    }

    /// [`Router::build`] without touching `cache`: returns the cache that would replace
    /// it, for a caller that decides later (when the rest of its table is prepared too).
    pub fn build_from(
        table: &Table,
        cache: &RegexCache,
    ) -> Result<(Router, RegexCache), RouterError> {
        Router::build_after(table, cache, None)
    }

    /// [`Router::build_from`], after `previous` (the router built for the table given
    /// with it). When `table` holds routes of the same ids and creation times in the
    /// same places as the previous router's base, and at most [`OVERLAY_MOST`] of them
    /// are other objects than the base's, the base is shared and only those are
    /// indexed: a one-route change costs one route. Else the whole table is indexed
    /// (taking the age order from `previous` when the ages cannot differ). On a shared
    /// base, the returned cache keeps the previous one's regexes besides the overlay's,
    /// since the base uses them; a whole build keeps exactly its own.
    pub fn build_after(
        table: &Table,
        cache: &RegexCache,
        previous: Option<(&Table, &Router)>,
    ) -> Result<(Router, RegexCache), RouterError> {
        // On the previous router's base, when the routes kept their places and ages
        // and few changed since it was built.
        if let Some((_, before)) = previous
            && let Some(changed) = before.changed_since_base(table)
        {
            // The cache keeps the base's regexes beside the overlay's.
            let mut round = matcher::CacheRound::new(cache);
            let layer = Layer::build(table, &before.base.ages, &changed, &mut round)?;
            let mut next = round.finish();
            next.keep_from(cache);
            let mut masked = vec![false; table.routes.len()];
            for &i in &changed {
                masked[i] = true;
            }
            let router = Router {
                base: before.base.clone(),
                overlay: Some(Overlay { layer, masked }),
            };
            return Ok((router, next));
        }
        let mut round = matcher::CacheRound::new(cache);
        let ages = match previous {
            Some((before, router)) if same_ages(before, table) => router.base.ages.clone(),
            _ => age_order(table),
        };
        let all: Vec<usize> = (0..table.routes.len()).collect();
        let layer = Layer::build(table, &ages, &all, &mut round)?;
        let router = Router {
            base: std::sync::Arc::new(Base {
                layer,
                routes: table.routes.clone(),
                ages,
            }),
            overlay: None,
        };
        Ok((router, round.finish()))
    }

    /// The places of the routes of `table` that differ from the base's, when `table`
    /// has the base's routes in the same places with the same ids and ages, and at
    /// most [`OVERLAY_MOST`] of them differ.
    fn changed_since_base(&self, table: &Table) -> Option<Vec<usize>> {
        let base = &self.base;
        if base.routes.len() != table.routes.len() {
            return None;
        }
        let mut changed = Vec::new();
        for (i, (a, b)) in base.routes.iter().zip(&table.routes).enumerate() {
            if std::sync::Arc::ptr_eq(a, b) {
                continue;
            }
            if a.id != b.id || a.created != b.created || changed.len() == OVERLAY_MOST {
                return None;
            }
            changed.push(i);
        }
        Some(changed)
    }

    /// The layers to consult: the base (with the changed routes masked), the overlay.
    fn layers(&self) -> impl Iterator<Item = (&Layer, &[bool])> {
        let masked: &[bool] = self.overlay.as_ref().map_or(&[], |o| &o.masked);
        std::iter::once((&self.base.layer, masked))
            .chain(self.overlay.as_ref().map(|o| (&o.layer, &[][..])))
    }

    /// Selects the rule for a request.
    pub fn route<'r, H: Headers + ?Sized>(&self, req: &Request<'r, H>) -> Lookup<'r> {
        let normalized = match normalize(req.path) {
            Ok(n) => n,
            Err(e) => return Lookup::BadPath(e.into()),
        };
        let host = normalize_host(req.host);
        let mut allow: Vec<&str> = Vec::new();
        for level in index::levels(&host) {
            let mut best = None;
            for (layer, masked) in self.layers() {
                if let Some(bucket) = layer.hosts.bucket(level) {
                    let path = &normalized.path;
                    bucket.best(&layer.matches, masked, req, path, &mut allow, &mut best);
                }
            }
            if let Some((_, m)) = best {
                if normalized.encoded_slash && !m.allow_encoded_slashes {
                    return Lookup::BadPath(BadPath::EncodedSlash);
                }
                let params = m.captures(&normalized.path);
                return Lookup::Matched(Selected {
                    target: m.target,
                    path: normalized.path,
                    params,
                });
            }
        }
        if allow.is_empty() {
            Lookup::NotFound
        } else {
            let mut allow: Vec<String> = allow.into_iter().map(String::from).collect();
            allow.sort();
            allow.dedup();
            Lookup::MethodNotAllowed { allow }
        }
    }

    /// Evaluates every match of the table against the request, criterion by criterion,
    /// without the index: the ground truth `explain` shows next to [`Router::route`]'s
    /// answer. Sorted by rank.
    pub fn diagnose<H: Headers + ?Sized>(
        &self,
        table: &Table,
        req: &Request<'_, H>,
    ) -> Vec<MatchReport> {
        let path = normalize(req.path)
            .map(|n| n.path.into_owned())
            .unwrap_or_default();
        let host = normalize_host(req.host);
        let mut out: Vec<(matcher::Order, MatchReport)> = self
            .layers()
            .flat_map(|(layer, masked)| {
                layer
                    .matches
                    .iter()
                    .filter(move |m| !masked.get(m.target.route).copied().unwrap_or(false))
            })
            .map(|m| {
                let report = MatchReport {
                    target: m.target,
                    rank: 0,
                    host: index::host_verdict(&table.routes[m.target.route].hosts, &host),
                    path: m.path_matches(&path),
                    method: m.method_matches(req.method),
                    headers: m.headers_match(req.headers),
                    query: m.query_matches(req.query),
                };
                (m.order, report)
            })
            .collect();
        out.sort_unstable_by_key(|(order, _)| *order);
        out.into_iter()
            .enumerate()
            .map(|(place, (_, mut report))| {
                report.rank = place as u32;
                report
            })
            .collect()
    }
}

impl Layer {
    /// The matches of the routes at `places` (ascending), indexed.
    fn build(
        table: &Table,
        ages: &[u32],
        places: &[usize],
        round: &mut matcher::CacheRound<'_>,
    ) -> Result<Layer, RouterError> {
        let count = places
            .iter()
            .flat_map(|&i| &table.routes[i].rules)
            .map(|rule| rule.matches.len())
            .sum();
        let mut matches = Vec::with_capacity(count);
        for &ri in places {
            let (route, age) = (&table.routes[ri], ages[ri]);
            for (ui, rule) in route.rules.iter().enumerate() {
                for (mi, m) in rule.matches.iter().enumerate() {
                    let target = Target {
                        route: ri,
                        rule: ui,
                        matched: mi,
                    };
                    matches.push(CompiledMatch::compile(target, age, m, round)?);
                }
            }
        }
        let hosts = HostIndex::build(table, &matches, round)?;
        Ok(Layer { matches, hosts })
    }
}

/// Whether the two tables order their routes alike by age: the same route, or one of
/// the same id and creation time, at every place.
fn same_ages(before: &Table, now: &Table) -> bool {
    before.routes.len() == now.routes.len()
        && before
            .routes
            .iter()
            .zip(&now.routes)
            .all(|(a, b)| std::sync::Arc::ptr_eq(a, b) || (a.created == b.created && a.id == b.id))
}

/// Each route's place in age order: older first ([`gatehouse_table::Route::created`];
/// none after any), then namespace, then name.
fn age_order(table: &Table) -> Vec<u32> {
    fn key(r: &gatehouse_table::Route) -> (bool, Option<i64>, &str, &str) {
        let (ns, name) = r.id.split_once('/').unwrap_or(("", r.id.as_str()));
        (r.created.is_none(), r.created, ns, name)
    }
    // Keys computed once, not per comparison; they end in the index, so they are unique.
    let mut by_age: Vec<_> = table
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (key(r), i))
        .collect();
    by_age.sort_unstable();
    let mut ages = vec![0u32; by_age.len()];
    for (place, (_, i)) in by_age.into_iter().enumerate() {
        ages[i] = place as u32;
    }
    ages
}

#[cfg(test)]
mod tests;
