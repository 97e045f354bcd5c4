//! The indexes: host → bucket, and per bucket an exact-path map, a segment trie for
//! Prefix and Template paths, and one `RegexSet` for Regex paths.

use gatehouse_table::{PathMatch, Segment, Table};
use regex::RegexSet;
use rustc_hash::FxHashMap as HashMap;

use crate::matcher::{CacheRound, CompiledMatch, CompiledPath, Headers, Order};
use crate::normalize::segments;
use crate::{HostVerdict, Request, RouterError};

/// How `host` relates to a route's host patterns (most specific first).
pub(crate) fn host_verdict(patterns: &[String], host: &str) -> HostVerdict {
    if patterns.is_empty() {
        return HostVerdict::Any;
    }
    if patterns.iter().any(|p| p == host) {
        return HostVerdict::Exact;
    }
    patterns
        .iter()
        .filter_map(|p| p.strip_prefix("*.").map(|s| (p, s)))
        .filter(|(_, suffix)| {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        })
        .max_by_key(|(_, suffix)| suffix.len())
        .map_or(HostVerdict::Mismatch, |(p, _)| {
            HostVerdict::Wildcard(p.clone())
        })
}

#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    exact: HashMap<String, Bucket>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Bucket>,
    any: Bucket,
}

impl HostIndex {
    pub fn build(
        table: &Table,
        matches: &[CompiledMatch],
        cache: &mut CacheRound<'_>,
    ) -> Result<HostIndex, RouterError> {
        let mut index = HostIndex::default();
        let mut pending: HashMap<(u8, String), Vec<usize>> = HashMap::default();
        for (idx, m) in matches.iter().enumerate() {
            let hosts = &table.routes[m.target.route].hosts;
            if hosts.is_empty() {
                pending.entry((0, String::new())).or_default().push(idx);
            }
            for h in hosts {
                let key = match h.strip_prefix("*.") {
                    Some(suffix) => (2, suffix.to_string()),
                    None => (1, h.clone()),
                };
                pending.entry(key).or_default().push(idx);
            }
        }
        for ((class, key), ids) in pending {
            let bucket = Bucket::build(table, matches, &ids, cache)?;
            match class {
                0 => index.any = bucket,
                1 => {
                    index.exact.insert(key, bucket);
                }
                _ => {
                    index.wildcard.insert(key, bucket);
                }
            }
        }
        Ok(index)
    }

    /// This index's bucket at `level`, if it has one.
    pub fn bucket(&self, level: Level<'_>) -> Option<&Bucket> {
        match level {
            Level::Exact(host) => self.exact.get(host),
            Level::Wildcard(suffix) => self.wildcard.get(suffix),
            Level::Any => Some(&self.any),
        }
    }
}

/// Where a host's routes may be, most specific first: listed exactly, under `*.` each
/// suffix from the longest, any host.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Level<'h> {
    Exact(&'h str),
    Wildcard(&'h str),
    Any,
}

/// The levels that may serve `host`, most specific first.
pub(crate) fn levels(host: &str) -> impl Iterator<Item = Level<'_>> + '_ {
    std::iter::once(Level::Exact(host))
        .chain(
            host.match_indices('.')
                .map(move |(i, _)| Level::Wildcard(&host[i + 1..])),
        )
        .chain(std::iter::once(Level::Any))
}

/// A node of the segment trie. Kept small (a table of 10,000 prefixes is a node each):
/// the matches ending here share one list, each marked with how it ends.
#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    param: Option<Box<Node>>,
    ends: Vec<(End, u32)>,
}

/// How a match ends at a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// A Prefix match: this node and everything below.
    Prefix,
    /// A Template ending exactly here.
    Exact,
    /// A Template with `{*rest}` here: zero or more further segments.
    Rest,
}

impl Node {
    /// The node at the end of `segs`: `Some(literal)` or `None` for a parameter.
    fn descend<'a>(&mut self, segs: impl Iterator<Item = Option<&'a str>>) -> &mut Node {
        let mut node = self;
        for s in segs {
            node = match s {
                Some(l) => {
                    // A segment's text is copied once, when its node is created.
                    if !node.children.contains_key(l) {
                        node.children.insert(l.to_string(), Node::default());
                    }
                    match node.children.get_mut(l) {
                        Some(child) => child,
                        None => unreachable!("the child was just inserted"),
                    }
                }
                None => node.param.get_or_insert_with(Default::default),
            };
        }
        node
    }

    fn end(&mut self, end: End, idx: usize) {
        self.ends.push((end, idx as u32));
    }

    /// Matches that hold with further segments below this node.
    fn open(&self) -> impl Iterator<Item = usize> + '_ {
        self.ends
            .iter()
            .filter(|(end, _)| *end != End::Exact)
            .map(|(_, idx)| *idx as usize)
    }

    /// Matches that hold when the path ends at this node.
    fn all(&self) -> impl Iterator<Item = usize> + '_ {
        self.ends.iter().map(|(_, idx)| *idx as usize)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Bucket {
    exact: HashMap<String, Vec<usize>>,
    trie: Node,
    regex: Option<RegexSet>,
    regex_ids: Vec<usize>,
}

impl Bucket {
    fn build(
        table: &Table,
        matches: &[CompiledMatch],
        ids: &[usize],
        cache: &mut CacheRound<'_>,
    ) -> Result<Bucket, RouterError> {
        let mut b = Bucket::default();
        let mut patterns = Vec::new();
        for &idx in ids {
            let m = &matches[idx];
            match &m.path {
                CompiledPath::Any => b.trie.end(End::Prefix, idx),
                CompiledPath::Exact(p) => b.exact.entry(p.clone()).or_default().push(idx),
                CompiledPath::Prefix(p) => {
                    let segs = segments(if p.is_empty() { "/" } else { p }).map(Some);
                    b.trie.descend(segs).end(End::Prefix, idx);
                }
                CompiledPath::Template(t) => {
                    let segs = t.segments.iter().map(|s| match s {
                        Segment::Literal(l) => Some(l.as_str()),
                        Segment::Param(_) => None,
                    });
                    let node = b.trie.descend(segs);
                    node.end(
                        if t.rest.is_some() {
                            End::Rest
                        } else {
                            End::Exact
                        },
                        idx,
                    );
                }
                CompiledPath::Regex(_) => {
                    let t = m.target;
                    if let PathMatch::Regex(src) =
                        &table.routes[t.route].rules[t.rule].matches[t.matched].path
                    {
                        patterns.push(crate::matcher::anchor(src));
                        b.regex_ids.push(idx);
                    }
                }
            }
        }
        if !patterns.is_empty() {
            let set = cache.set(patterns).map_err(|e| RouterError::Regex {
                target: matches[b.regex_ids[0]].target,
                message: format!("the route's regular expressions together: {e}"),
            })?;
            b.regex = Some(set);
        }
        Ok(b)
    }

    /// Calls `f` with every match whose path predicate holds for `path`.
    fn candidates(&self, path: &str, f: &mut impl FnMut(usize)) {
        if let Some(ids) = self.exact.get(path) {
            ids.iter().copied().for_each(&mut *f);
        }
        let mut active: Vec<&Node> = vec![&self.trie];
        let mut next: Vec<&Node> = Vec::new();
        for seg in segments(path) {
            for n in &active {
                n.open().for_each(&mut *f);
                if let Some(c) = n.children.get(seg) {
                    next.push(c);
                }
                if !seg.is_empty()
                    && let Some(p) = &n.param
                {
                    next.push(p);
                }
            }
            std::mem::swap(&mut active, &mut next);
            next.clear();
            if active.is_empty() {
                break;
            }
        }
        for n in &active {
            n.all().for_each(&mut *f);
        }
        if let Some(set) = &self.regex {
            for i in set.matches(path).iter() {
                f(self.regex_ids[i]);
            }
        }
    }

    /// Makes `best` the better of it and this bucket's best full match; matches of
    /// routes `masked` says are stale are passed over. Methods of path matches that
    /// failed only on the method are added to `allow`.
    pub fn best<'m, H: Headers + ?Sized>(
        &self,
        matches: &'m [CompiledMatch],
        masked: &[bool],
        req: &Request<'_, H>,
        path: &str,
        allow: &mut Vec<&'m str>,
        best: &mut Option<(Order, &'m CompiledMatch)>,
    ) {
        self.candidates(path, &mut |idx| {
            let m = &matches[idx];
            if best.is_some_and(|(order, _)| m.order >= order) {
                return;
            }
            if masked.get(m.target.route).copied().unwrap_or(false) {
                return;
            }
            if !m.headers_match(req.headers) || !m.query_matches(req.query) {
                return;
            }
            if !m.method_matches(req.method) {
                allow.extend(m.methods.iter().map(String::as_str));
                return;
            }
            *best = Some((m.order, m));
        });
    }
}
