//! One compiled match: the path predicate and the method/header/query conditions, each
//! prepared once (regexes compiled) and evaluated without allocation.

use std::borrow::Cow;
use std::collections::HashMap;

use gatehouse_table::{self as table, PathMatch, Segment, Template, ValueMatchKind};
use percent_encoding::percent_decode_str;
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::RouterError;

/// Largest compiled size of one regular expression (bytes of the compiled program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Header lookup, implemented by whatever holds the request's headers.
pub trait Headers {
    /// Whether any value of header `name` (given lowercase) satisfies `pred`.
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl Headers for [(String, String)] {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| pred(v))
    }
}

impl Headers for Vec<(String, String)> {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.as_slice().any_value(name, pred)
    }
}

/// Compiles a pattern as an anchored full match, with the size limit.
///
/// The pattern is first parsed on its own, so that text which only balances once
/// wrapped (`/a)|(/b`) is refused instead of escaping the anchors; then it is wrapped in
/// `^(?:...)$`. A pattern valid alone whose wrapped form does not parse the same way (an
/// x-mode `#` comment that runs to the end) is refused too.
pub fn anchored_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let anchored = anchored_syntax(pattern)?.1;
    regex::RegexBuilder::new(&anchored)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Parses `pattern` on its own and returns the HIR of its anchored form and the
/// anchored text that [`anchored_regex`] compiles.
///
/// Parsing alone refuses text that only balances once wrapped (`/a)|(/b`). A pattern
/// that parses alone is a complete expression, so wrapping it in `^(?:...)$` keeps its
/// meaning, except when an x-mode comment runs to the end and swallows the wrapper: that
/// needs a `#`, and only then is the wrapped text parsed as well.
fn anchored_syntax(pattern: &str) -> Result<(regex_syntax::hir::Hir, String), regex::Error> {
    use regex_syntax::hir::{Hir, Look};
    let alone = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| regex::Error::Syntax(e.to_string()))?;
    let text = anchor(pattern);
    if pattern.contains('#')
        && regex_syntax::ast::parse::Parser::new()
            .parse(&text)
            .is_err()
    {
        return Err(regex::Error::Syntax(
            "the pattern cannot be anchored: an x-mode comment (#) must end with a newline".into(),
        ));
    }
    let anchored = Hir::concat(vec![Hir::look(Look::Start), alone, Hir::look(Look::End)]);
    Ok((anchored, text))
}

/// Validates patterns exactly as [`anchored_regex`] would accept them (same syntax, same
/// size limit), without building matching engines. One checker reuses its NFA
/// compiler's scratch tables across patterns, which makes checking thousands of
/// patterns cheap: this is what the compiler uses for `lint`.
#[derive(Debug)]
pub struct RegexChecker {
    compiler: regex_automata::nfa::thompson::Compiler,
}

impl Default for RegexChecker {
    fn default() -> Self {
        let mut compiler = regex_automata::nfa::thompson::Compiler::new();
        compiler.configure(
            regex_automata::nfa::thompson::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .shrink(false),
        );
        RegexChecker { compiler }
    }
}

impl RegexChecker {
    /// Checks a pattern; on success returns the names of its capture groups.
    pub fn check(&mut self, pattern: &str) -> Result<Vec<String>, regex::Error> {
        let (hir, _) = anchored_syntax(pattern)?;
        let nfa = self
            .compiler
            .build_from_hir(&hir)
            .map_err(|_| regex::Error::CompiledTooBig(REGEX_SIZE_LIMIT))?;
        Ok(nfa
            .group_info()
            .pattern_names(regex_automata::PatternID::ZERO)
            .flatten()
            .map(String::from)
            .collect())
    }
}

/// Compiled regular expressions kept from one table to the next.
///
/// Compiling regexes is most of the cost of building a router (a thousand patterns take
/// hundreds of milliseconds), while a configuration change usually touches few of them.
/// [`crate::Router::build`] takes each pattern and each per-bucket `RegexSet` from the
/// previous build when it is there, and the cache then keeps exactly what the new router
/// uses, so it never holds more than one table's patterns.
#[derive(Debug, Default)]
pub struct RegexCache {
    single: HashMap<String, Regex>,
    sets: HashMap<Vec<String>, RegexSet>,
}

impl RegexCache {
    /// Compiled patterns and pattern sets held.
    pub fn len(&self) -> (usize, usize) {
        (self.single.len(), self.sets.len())
    }

    /// Adds what `other` holds and this cache does not: a router on a shared base uses
    /// the base's regexes too.
    pub(crate) fn keep_from(&mut self, other: &RegexCache) {
        for (k, v) in &other.single {
            if !self.single.contains_key(k) {
                self.single.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &other.sets {
            if !self.sets.contains_key(k) {
                self.sets.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One build's view of a [`RegexCache`]: reads the previous entries, collects the ones
/// this build uses.
#[derive(Debug)]
pub(crate) struct CacheRound<'c> {
    prev: &'c RegexCache,
    next: RegexCache,
}

impl<'c> CacheRound<'c> {
    pub fn new(prev: &'c RegexCache) -> Self {
        CacheRound {
            prev,
            next: RegexCache::default(),
        }
    }

    /// [`anchored_regex`], from the cache when this pattern was compiled before.
    pub fn regex(&mut self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(r) = self.next.single.get(pattern) {
            return Ok(r.clone());
        }
        let r = match self.prev.single.get(pattern) {
            Some(r) => r.clone(),
            None => anchored_regex(pattern)?,
        };
        self.next.single.insert(pattern.to_string(), r.clone());
        Ok(r)
    }

    /// A set of anchored patterns, from the cache when the same list was built before.
    pub fn set(&mut self, patterns: Vec<String>) -> Result<RegexSet, regex::Error> {
        if let Some(s) = self
            .next
            .sets
            .get(&patterns)
            .or_else(|| self.prev.sets.get(&patterns))
        {
            let s = s.clone();
            self.next.sets.insert(patterns, s.clone());
            return Ok(s);
        }
        let s = RegexSetBuilder::new(&patterns)
            .size_limit(REGEX_SIZE_LIMIT * 8)
            .dfa_size_limit(REGEX_SIZE_LIMIT * 8)
            .build()?;
        self.next.sets.insert(patterns, s.clone());
        Ok(s)
    }

    /// What the new router uses, to replace the previous cache.
    pub fn finish(self) -> RegexCache {
        self.next
    }
}

/// `^(?:pattern)$`, for a pattern [`anchored_regex`] accepted.
pub(crate) fn anchor(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// Where a match sits in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Index of the route in `Table::routes`.
    pub route: usize,
    /// Index of the rule in `Route::rules`.
    pub rule: usize,
    /// Index of the match in `Rule::matches`.
    pub matched: usize,
}

#[derive(Debug)]
pub(crate) enum CompiledPath {
    Any,
    Exact(String),
    /// Without trailing slash; `""` is the root and matches everything.
    Prefix(String),
    Template(Template),
    Regex(Regex),
}

#[derive(Debug)]
pub(crate) enum Cond {
    Exact(String),
    Regex(Regex),
    Present,
}

impl Cond {
    fn compile(kind: &ValueMatchKind, cache: &mut CacheRound<'_>) -> Result<Cond, regex::Error> {
        Ok(match kind {
            ValueMatchKind::Exact(v) => Cond::Exact(v.clone()),
            ValueMatchKind::Regex(r) => Cond::Regex(cache.regex(r)?),
            ValueMatchKind::Present => Cond::Present,
        })
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Cond::Exact(v) => v == value,
            Cond::Regex(r) => r.is_match(value),
            Cond::Present => true,
        }
    }
}

/// Precedence within a host bucket: the match's rank, its route's place in age order
/// (older first, then namespace/name), rule, match. Lower wins; no two are equal.
pub(crate) type Order = (u32, u32, u32, u32);

#[derive(Debug)]
pub(crate) struct CompiledMatch {
    pub order: Order,
    pub target: Target,
    pub path: CompiledPath,
    pub methods: Vec<String>,
    pub headers: Vec<(String, Cond)>,
    pub query: Vec<(String, Cond)>,
    pub allow_encoded_slashes: bool,
}

impl CompiledMatch {
    /// `age` is the route's place in age order.
    pub fn compile(
        target: Target,
        age: u32,
        m: &table::Match,
        cache: &mut CacheRound<'_>,
    ) -> Result<Self, RouterError> {
        let bad = |e: regex::Error| RouterError::Regex {
            target,
            message: e.to_string(),
        };
        let path = match &m.path {
            PathMatch::Any => CompiledPath::Any,
            PathMatch::Exact(p) => CompiledPath::Exact(p.clone()),
            PathMatch::Prefix(p) => CompiledPath::Prefix(p.trim_end_matches('/').to_string()),
            PathMatch::Template(t) => CompiledPath::Template(t.clone()),
            PathMatch::Regex(r) => CompiledPath::Regex(cache.regex(r).map_err(bad)?),
        };
        let mut conds = |list: &[table::ValueMatch]| -> Result<Vec<(String, Cond)>, RouterError> {
            list.iter()
                .map(|v| Ok((v.name.clone(), Cond::compile(&v.kind, cache).map_err(bad)?)))
                .collect()
        };
        Ok(CompiledMatch {
            order: (m.rank, age, target.rule as u32, target.matched as u32),
            target,
            path,
            methods: m.methods.clone(),
            headers: conds(&m.headers)?,
            query: conds(&m.query_params)?,
            allow_encoded_slashes: m.allow_encoded_slashes,
        })
    }

    /// The path predicate alone, by direct evaluation (no index).
    pub fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            CompiledPath::Any => true,
            CompiledPath::Exact(p) => p == path,
            CompiledPath::Prefix(p) => prefix_matches(p, path),
            CompiledPath::Template(t) => template_captures(t, path).is_some(),
            CompiledPath::Regex(r) => r.is_match(path),
        }
    }

    pub fn method_matches(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    pub fn headers_match<H: Headers + ?Sized>(&self, headers: &H) -> bool {
        self.headers
            .iter()
            .all(|(name, cond)| headers.any_value(name, &mut |v| cond.accepts(v)))
    }

    pub fn query_matches(&self, query: Option<&str>) -> bool {
        self.query.iter().all(|(name, cond)| {
            query_pairs(query).any(|(k, v)| k == name.as_str() && cond.accepts(&v))
        })
    }

    /// Captured path parameters of a path known to match.
    pub fn captures(&self, path: &str) -> Vec<(String, String)> {
        match &self.path {
            CompiledPath::Template(t) => template_captures(t, path).unwrap_or_default(),
            CompiledPath::Regex(r) => r
                .captures(path)
                .map(|c| {
                    r.capture_names()
                        .flatten()
                        .filter_map(|n| c.name(n).map(|m| (n.to_string(), m.as_str().to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Segment-aware prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, never `/foobar`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Matches a template against a normalized path, returning its captures.
pub(crate) fn template_captures(t: &Template, path: &str) -> Option<Vec<(String, String)>> {
    let mut segs = crate::normalize::segments(path);
    let mut out = Vec::new();
    for s in &t.segments {
        let seg = segs.next()?;
        match s {
            Segment::Literal(l) if l == seg => {}
            Segment::Param(name) if !seg.is_empty() => out.push((name.clone(), decode(seg))),
            _ => return None,
        }
    }
    let rest: Vec<&str> = segs.collect();
    match &t.rest {
        Some(name) => {
            out.push((name.clone(), rest.join("/")));
            Some(out)
        }
        None if rest.is_empty() => Some(out),
        None => None,
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `name=value` pairs of a query string, percent-decoded.
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(k).decode_utf8_lossy(),
                percent_decode_str(v).decode_utf8_lossy(),
            )
        })
}
