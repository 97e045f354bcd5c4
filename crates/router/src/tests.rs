use gatehouse_table::{
    Action, Match, PathMatch, Route, Rule, Segment, Table, Template, ValueMatch, ValueMatchKind,
};

use super::*;

// === fixtures ===

fn tpl(src: &str) -> PathMatch {
    let mut segments = Vec::new();
    let mut rest = None;
    for s in normalize::segments(src) {
        if let Some(name) = s.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
            rest = Some(name.to_string());
        } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            segments.push(Segment::Param(name.to_string()));
        } else {
            segments.push(Segment::Literal(s.to_string()));
        }
    }
    PathMatch::Template(Template {
        source: src.into(),
        segments,
        rest,
    })
}

fn mk_match(rank: u32, path: PathMatch) -> Match {
    Match {
        rank,
        path,
        ..Default::default()
    }
}

fn mk_route(id: &str, hosts: &[&str], matches: Vec<Match>) -> Route {
    Route {
        id: id.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        rules: vec![Rule {
            name: "r".into(),
            matches,
            action: Action::default(),
            ..Default::default()
        }],
        created: None,
        version: None,
        tls: None,
        docs: None,
    }
}

fn table(routes: Vec<Route>) -> Table {
    Table {
        routes: routes.into_iter().map(std::sync::Arc::new).collect(),
        ..Default::default()
    }
}

fn get<'a>(
    router: &Router,
    method: &'a str,
    host: &'a str,
    path_and_query: &'a str,
    headers: &'a Vec<(String, String)>,
) -> Lookup<'a> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    router.route(&Request {
        method,
        host,
        path,
        query,
        headers,
    })
}

fn route_of(l: &Lookup<'_>) -> Option<usize> {
    match l {
        Lookup::Matched(s) => Some(s.target.route),
        _ => None,
    }
}

const NO_HEADERS: &Vec<(String, String)> = &Vec::new();

// === behaviour ===

#[test]
fn exact_template_prefix_and_regex_paths() {
    let t = table(vec![
        mk_route(
            "a/exact",
            &[],
            vec![mk_match(0, PathMatch::Exact("/users/me".into()))],
        ),
        mk_route("a/tpl", &[], vec![mk_match(1, tpl("/users/{id}"))]),
        mk_route(
            "a/prefix",
            &[],
            vec![mk_match(2, PathMatch::Prefix("/users".into()))],
        ),
        mk_route(
            "a/regex",
            &[],
            vec![mk_match(3, PathMatch::Regex("/r/[0-9]+".into()))],
        ),
        mk_route("a/rest", &[], vec![mk_match(4, tpl("/files/{*path}"))]),
    ]);
    let r = Router::new(&t).expect("router");
    let h = NO_HEADERS;
    assert_eq!(route_of(&get(&r, "GET", "x", "/users/me", h)), Some(0));
    let Lookup::Matched(sel) = get(&r, "GET", "x", "/users/42", h) else {
        panic!("template matches")
    };
    assert_eq!(sel.target.route, 1);
    assert_eq!(sel.params, vec![("id".to_string(), "42".to_string())]);
    assert_eq!(
        route_of(&get(&r, "GET", "x", "/users/42/orders", h)),
        Some(2)
    );
    assert_eq!(route_of(&get(&r, "GET", "x", "/users", h)), Some(2));
    assert_eq!(route_of(&get(&r, "GET", "x", "/usersx", h)), None);
    assert_eq!(route_of(&get(&r, "GET", "x", "/r/123", h)), Some(3));
    assert_eq!(route_of(&get(&r, "GET", "x", "/r/12a", h)), None);
    let Lookup::Matched(sel) = get(&r, "GET", "x", "/files/a/b.txt", h) else {
        panic!("rest template matches")
    };
    assert_eq!(
        sel.params,
        vec![("path".to_string(), "a/b.txt".to_string())]
    );
    assert_eq!(route_of(&get(&r, "GET", "x", "/files", h)), Some(4));
}

#[test]
fn lower_rank_wins_and_exact_host_beats_wildcard_beats_any() {
    let t = table(vec![
        mk_route(
            "a/any",
            &[],
            vec![mk_match(0, PathMatch::Exact("/p".into()))],
        ),
        mk_route(
            "a/wild",
            &["*.example.com"],
            vec![mk_match(5, PathMatch::Prefix("/".into()))],
        ),
        mk_route(
            "a/exact",
            &["api.example.com"],
            vec![mk_match(9, PathMatch::Prefix("/p".into()))],
        ),
        mk_route(
            "a/deeper",
            &["*.eu.example.com"],
            vec![mk_match(7, PathMatch::Prefix("/".into()))],
        ),
    ]);
    let r = Router::new(&t).expect("router");
    let h = NO_HEADERS;
    // Exact host wins even with a worse rank.
    assert_eq!(
        route_of(&get(&r, "GET", "API.example.com:8080", "/p", h)),
        Some(2)
    );
    // Falls through to the wildcard when the exact host has no matching rule.
    assert_eq!(
        route_of(&get(&r, "GET", "api.example.com", "/other", h)),
        Some(1)
    );
    // The longer wildcard suffix is more specific.
    assert_eq!(
        route_of(&get(&r, "GET", "x.eu.example.com", "/p", h)),
        Some(3)
    );
    // A wildcard needs at least one more label.
    assert_eq!(route_of(&get(&r, "GET", "example.com", "/p", h)), Some(0));
    assert_eq!(route_of(&get(&r, "GET", "other.org", "/q", h)), None);
}

#[test]
fn method_mismatch_is_405_with_allow() {
    let mut m1 = mk_match(0, PathMatch::Exact("/items".into()));
    m1.methods = vec!["GET".into(), "HEAD".into()];
    let mut m2 = mk_match(1, PathMatch::Prefix("/items".into()));
    m2.methods = vec!["POST".into()];
    let r = Router::new(&table(vec![mk_route("a/x", &[], vec![m1, m2])])).expect("router");
    assert_eq!(
        get(&r, "DELETE", "h", "/items", NO_HEADERS),
        Lookup::MethodNotAllowed {
            allow: vec!["GET".into(), "HEAD".into(), "POST".into()]
        }
    );
    assert_eq!(
        route_of(&get(&r, "POST", "h", "/items", NO_HEADERS)),
        Some(0)
    );
    assert_eq!(
        get(&r, "GET", "h", "/nothing", NO_HEADERS),
        Lookup::NotFound
    );
}

#[test]
fn header_and_query_conditions() {
    let mut m = mk_match(0, PathMatch::Prefix("/".into()));
    m.headers = vec![
        ValueMatch {
            name: "x-tenant".into(),
            kind: ValueMatchKind::Exact("acme".into()),
        },
        ValueMatch {
            name: "x-v".into(),
            kind: ValueMatchKind::Regex("[0-9]+".into()),
        },
    ];
    m.query_params = vec![ValueMatch {
        name: "debug".into(),
        kind: ValueMatchKind::Present,
    }];
    let r = Router::new(&table(vec![mk_route("a/x", &[], vec![m])])).expect("router");
    let good = vec![
        ("X-Tenant".to_string(), "acme".to_string()),
        ("x-v".to_string(), "12".to_string()),
    ];
    assert_eq!(route_of(&get(&r, "GET", "h", "/a?debug", &good)), Some(0));
    assert_eq!(
        route_of(&get(&r, "GET", "h", "/a?x=1&debug=", &good)),
        Some(0)
    );
    assert_eq!(route_of(&get(&r, "GET", "h", "/a", &good)), None);
    let bad = vec![
        ("x-tenant".to_string(), "other".to_string()),
        ("x-v".to_string(), "12".to_string()),
    ];
    assert_eq!(route_of(&get(&r, "GET", "h", "/a?debug", &bad)), None);
    let bad_regex = vec![
        ("x-tenant".to_string(), "acme".to_string()),
        ("x-v".to_string(), "12a".to_string()),
    ];
    assert_eq!(route_of(&get(&r, "GET", "h", "/a?debug", &bad_regex)), None);
}

#[test]
fn normalizes_before_matching_and_guards_encoded_slashes() {
    let open = mk_match(0, PathMatch::Prefix("/open".into()));
    let mut allowing = mk_match(1, PathMatch::Prefix("/files".into()));
    allowing.allow_encoded_slashes = true;
    let r = Router::new(&table(vec![mk_route("a/x", &[], vec![open, allowing])])).expect("router");
    let Lookup::Matched(sel) = get(&r, "GET", "h", "/x/..//open/%61", NO_HEADERS) else {
        panic!("normalized path matches")
    };
    assert_eq!(sel.path, "/open/a");
    assert_eq!(
        get(&r, "GET", "h", "/open/a%2Fb", NO_HEADERS),
        Lookup::BadPath(BadPath::EncodedSlash)
    );
    assert!(matches!(
        get(&r, "GET", "h", "/files/a%2fb", NO_HEADERS),
        Lookup::Matched(_)
    ));
    assert!(matches!(
        get(&r, "GET", "h", "/open/%zz", NO_HEADERS),
        Lookup::BadPath(BadPath::Malformed(_))
    ));
}

#[test]
fn named_regex_groups_are_captured() {
    let r = Router::new(&table(vec![mk_route(
        "a/x",
        &[],
        vec![mk_match(0, PathMatch::Regex("/v(?P<n>[0-9]+)/.*".into()))],
    )]))
    .expect("router");
    let Lookup::Matched(sel) = get(&r, "GET", "h", "/v12/x", NO_HEADERS) else {
        panic!("matches")
    };
    assert_eq!(sel.params, vec![("n".to_string(), "12".to_string())]);
}

#[test]
fn regexes_cannot_escape_their_anchors() {
    for escaping in ["/internal)|(/public", "acme)|(.*"] {
        assert!(
            anchored_regex(escaping).is_err(),
            "{escaping:?} must be refused"
        );
    }
    // An x-mode comment would swallow the closing anchor.
    assert!(anchored_regex("(?x) /reports/[0-9]+  # by id").is_err());
    assert!(anchored_regex("(?x) /reports/[0-9]+  # by id\n").is_ok());
    let r = anchored_regex("a|ab").expect("valid");
    assert!(
        r.is_match("ab"),
        "alternation is a full match, not leftmost-first"
    );
    assert!(!r.is_match("abc"));
}

#[test]
fn the_checker_agrees_with_the_compiled_regexes() {
    let mut checker = RegexChecker::default();
    let huge = "(a|b|c|d|e|f|g|h){1,1000}".repeat(20);
    for p in [
        "/v(?P<n>[0-9]+)/.*",
        "/internal)|(/public",
        "(?x) a # c",
        "[a-",
        "a{1000}{1000}",
        huge.as_str(),
        "(?i)/users/\\d+",
        "/a|/ab",
    ] {
        let compiled = anchored_regex(p);
        let checked = checker.check(p);
        assert_eq!(
            compiled.is_ok(),
            checked.is_ok(),
            "{p:?}: {compiled:?} vs {checked:?}"
        );
    }
    assert_eq!(
        checker
            .check("/v(?P<n>[0-9]+)/(?P<rest>.*)")
            .expect("valid"),
        vec!["n", "rest"]
    );
}

#[test]
fn the_regex_cache_keeps_what_the_last_router_uses() {
    let routes = |second: &str| {
        table(vec![
            mk_route(
                "a/one",
                &[],
                vec![mk_match(0, PathMatch::Regex("/one/[0-9]+".into()))],
            ),
            mk_route(
                "a/two",
                &["api.example.com"],
                vec![mk_match(1, PathMatch::Regex(second.into()))],
            ),
        ])
    };
    let mut cache = RegexCache::default();
    let r = Router::build(&routes("/two/[a-z]+"), &mut cache).expect("router");
    // Two patterns, and one set per bucket (any host, api.example.com).
    assert_eq!(cache.len(), (2, 2));
    assert_eq!(
        route_of(&get(&r, "GET", "api.example.com", "/two/ab", NO_HEADERS)),
        Some(1)
    );

    // One pattern changes: the other is kept, the replaced one is gone.
    let r = Router::build(&routes("/two/[a-z]+/x"), &mut cache).expect("router");
    assert_eq!(cache.len(), (2, 2));
    let h = NO_HEADERS;
    assert_eq!(
        route_of(&get(&r, "GET", "api.example.com", "/two/ab", h)),
        None
    );
    assert_eq!(
        route_of(&get(&r, "GET", "api.example.com", "/two/ab/x", h)),
        Some(1)
    );
    assert_eq!(route_of(&get(&r, "GET", "x", "/one/7", h)), Some(0));

    // A router that cannot be built leaves the cache as it was.
    let huge = "(a|b|c|d|e|f|g|h){1,1000}".repeat(20);
    assert!(Router::build(&routes(&huge), &mut cache).is_err());
    assert_eq!(cache.len(), (2, 2));
}

#[test]
fn refuses_oversized_regexes() {
    let huge = "(a|b|c|d|e|f|g|h){1,1000}".repeat(20);
    let err = Router::new(&table(vec![mk_route(
        "a/x",
        &[],
        vec![mk_match(0, PathMatch::Regex(huge))],
    )]));
    assert!(matches!(err, Err(RouterError::Regex { .. })));
}

// === randomized invariant: the index agrees with brute force ===

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn random_path(rng: &mut Rng) -> String {
    let segs: [&str; 5] = ["a", "b", "c", "ab", ""];
    let n = rng.next() % 4;
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        p.push_str(rng.pick(&segs));
    }
    if p.is_empty() { "/".into() } else { p }
}

fn random_match(rng: &mut Rng, rank: u32) -> Match {
    let base = random_path(rng).replace("//", "/a/");
    let path = match rng.next() % 6 {
        0 => PathMatch::Exact(base),
        1 => PathMatch::Prefix(base),
        2 => tpl(&format!("{}/{{p}}", base.trim_end_matches('/'))),
        3 => tpl(&format!("{}/{{*rest}}", base.trim_end_matches('/'))),
        4 => PathMatch::Regex(format!("{}.*", regex::escape(&base))),
        _ => PathMatch::Any,
    };
    let mut m = mk_match(rank, path);
    if rng.one_in(3) {
        m.methods = vec![rng.pick(&["GET", "POST"]).to_string()];
    }
    if rng.one_in(4) {
        m.headers = vec![ValueMatch {
            name: "x-k".into(),
            kind: ValueMatchKind::Exact("1".into()),
        }];
    }
    m
}

#[test]
fn index_agrees_with_brute_force_on_random_tables() {
    let hosts = ["a.com", "*.a.com", "b.a.com", "*.b.a.com"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let mut routes = Vec::new();
        for i in 0..(1 + rng.next() % 6) {
            let nh = rng.next() % 3;
            let hs: Vec<&str> = (0..nh).map(|_| rng.pick(&hosts)).collect();
            // Few distinct ranks and ages, so that ties are common.
            let ms: Vec<Match> = (0..(1 + rng.next() % 3))
                .map(|_| {
                    let rank = (rng.next() % 3) as u32;
                    random_match(&mut rng, rank)
                })
                .collect();
            let ns = rng.pick(&["a", "a-b", "b"]);
            let mut r = mk_route(&format!("{ns}/r{i}"), &hs, ms);
            r.created = [None, Some(1), Some(2)][(rng.next() % 3) as usize];
            r.hosts.sort();
            r.hosts.dedup();
            routes.push(r);
        }
        let t = table(routes);
        let router = Router::new(&t).expect("router");
        agrees(&t, &router, &mut rng);

        // One route's matches change (and sometimes its age): built after the first
        // router, which lends its age order when the ages cannot differ.
        let mut next = t.clone();
        let k = (rng.next() as usize) % next.routes.len();
        let changed = std::sync::Arc::make_mut(&mut next.routes[k]);
        for rule in &mut changed.rules {
            for m in &mut rule.matches {
                let rank = (rng.next() % 3) as u32;
                *m = random_match(&mut rng, rank);
            }
        }
        if rng.one_in(3) {
            changed.created = [None, Some(1), Some(2)][(rng.next() % 3) as usize];
        }
        let (after, _) = Router::build_after(&next, &RegexCache::default(), Some((&t, &router)))
            .expect("router");
        if next.routes[k].created == t.routes[k].created {
            assert!(after.overlay.is_some(), "one route changed: an overlay");
        }
        agrees(&next, &after, &mut rng);

        // Another route changes too: the overlay holds both (the base is shared).
        let mut again = next.clone();
        let k2 = (rng.next() as usize) % again.routes.len();
        for rule in &mut std::sync::Arc::make_mut(&mut again.routes[k2]).rules {
            for m in &mut rule.matches {
                let rank = (rng.next() % 3) as u32;
                *m = random_match(&mut rng, rank);
            }
        }
        let (last, _) = Router::build_after(&again, &RegexCache::default(), Some((&next, &after)))
            .expect("router");
        if after.overlay.is_some() {
            assert!(
                std::sync::Arc::ptr_eq(&last.base, &after.base),
                "the base is shared"
            );
        }
        agrees(&again, &last, &mut rng);
    }
}

/// The router's choice is brute force's, over random requests.
fn agrees(t: &Table, router: &Router, rng: &mut Rng) {
    let req_hosts = ["a.com", "b.a.com", "c.b.a.com", "x.a.com", "z.org"];
    {
        for _ in 0..30 {
            let host = rng.pick(&req_hosts);
            let path = random_path(rng);
            let method = rng.pick(&["GET", "POST"]);
            let headers = if rng.one_in(2) {
                vec![("x-k".to_string(), "1".to_string())]
            } else {
                vec![]
            };
            let req = Request {
                method,
                host,
                path: &path,
                query: None,
                headers: &headers,
            };
            let got = match router.route(&req) {
                Lookup::Matched(s) => Some(s.target),
                _ => None,
            };
            // Brute force: most specific host class first, then lowest rank, then the
            // older route (no time: last), namespace, name, rule, match.
            let specificity = |v: &HostVerdict| match v {
                HostVerdict::Exact => 0usize,
                HostVerdict::Wildcard(p) => 1000 - p.len(),
                HostVerdict::Any => 10_000,
                HostVerdict::Mismatch => usize::MAX,
            };
            let precedence = |r: &MatchReport| {
                let route = &t.routes[r.target.route];
                let rank = route.rules[r.target.rule].matches[r.target.matched].rank;
                let (ns, name) = route.id.split_once('/').expect("ns/name");
                (
                    specificity(&r.host),
                    rank,
                    route.created.is_none(),
                    route.created,
                    ns.to_string(),
                    name.to_string(),
                    r.target.rule,
                    r.target.matched,
                )
            };
            let reports = router.diagnose(t, &req);
            let want = reports
                .iter()
                .filter(|r| r.matched())
                .min_by_key(|r| precedence(r))
                .map(|r| r.target);
            // `diagnose` numbers places in that order (host aside), from 0.
            let host_aside = |r: &MatchReport| {
                let (_, rank, none, created, ns, name, rule, matched) = precedence(r);
                (rank, none, created, ns, name, rule, matched)
            };
            for (place, pair) in reports.windows(2).enumerate() {
                assert_eq!(pair[0].rank as usize, place);
                assert!(host_aside(&pair[0]) < host_aside(&pair[1]));
            }
            assert_eq!(
                got, want,
                "host {host} path {path} method {method} table {t:#?}"
            );
        }
    }
}
