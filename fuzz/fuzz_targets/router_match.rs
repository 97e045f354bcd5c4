//! Requests against a router of every match kind (exact, prefix, template, regex; exact,
//! wildcard and any host; methods, headers, query parameters): routing never panics, and
//! a request is routed the same whether its path is sent as is or already normalized:
//! the rule chosen does not depend on how the path was spelled.
#![no_main]

use std::sync::{Arc, OnceLock};

use gatehouse_router::{Lookup, Request, Router};
use gatehouse_table::{
    Action, Match, PathMatch, Route, Rule, Segment, Table, Template, ValueMatch, ValueMatchKind,
};
use libfuzzer_sys::fuzz_target;

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let rule = |name: &str, m: Match| Rule {
            name: name.into(),
            matches: vec![m],
            action: Action::default(),
            ..Default::default()
        };
        let route = |id: &str, hosts: &[&str], rules: Vec<Rule>| {
            Arc::new(Route {
                id: id.into(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                rules,
                ..Default::default()
            })
        };
        let exact = |p: &str| Match {
            path: PathMatch::Exact(p.into()),
            ..Default::default()
        };
        let prefix = |p: &str| Match {
            path: PathMatch::Prefix(p.into()),
            ..Default::default()
        };
        let table = Table {
            routes: vec![
                route(
                    "a/api",
                    &["api.test"],
                    vec![
                        rule("admin", prefix("/admin")),
                        rule("users", Match {
                            methods: vec!["GET".into()],
                            ..exact("/users")
                        }),
                        rule("tenant", Match {
                            headers: vec![ValueMatch {
                                name: "x-tenant".into(),
                                kind: ValueMatchKind::Exact("acme".into()),
                            }],
                            ..prefix("/t")
                        }),
                        rule("debug", Match {
                            query_params: vec![ValueMatch {
                                name: "debug".into(),
                                kind: ValueMatchKind::Present,
                            }],
                            ..prefix("/q")
                        }),
                        rule("template", Match {
                            path: PathMatch::Template(Template {
                                source: "/items/{id}/{*rest}".into(),
                                segments: vec![
                                    Segment::Literal("items".into()),
                                    Segment::Param("id".into()),
                                ],
                                rest: Some("rest".into()),
                            }),
                            rank: 2,
                            ..Default::default()
                        }),
                        rule("regex", Match {
                            path: PathMatch::Regex("/r/[0-9]+(/.*)?".into()),
                            ..Default::default()
                        }),
                    ],
                ),
                route("b/wild", &["*.wild.test"], vec![rule("all", prefix("/"))]),
                route("c/any", &[], vec![rule("root", prefix("/"))]),
            ],
            ..Default::default()
        };
        Router::new(&table).expect("router")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // method \n host \n target \n header value
    let mut parts = text.splitn(4, '\n');
    let (method, host, target, tenant) = (
        parts.next().unwrap_or("GET"),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/"),
        parts.next().unwrap_or(""),
    );
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers = vec![("x-tenant".to_string(), tenant.to_string())];
    let ask = |path: &str| {
        let lookup = router().route(&Request {
            method,
            host,
            path,
            query,
            headers: &headers,
        });
        match lookup {
            Lookup::Matched(s) => Some((Some(s.target), s.path.into_owned())),
            Lookup::NotFound => Some((None, String::new())),
            Lookup::MethodNotAllowed { .. } => Some((None, "405".into())),
            Lookup::BadPath(_) => None,
        }
    };
    let Some(first) = ask(path) else {
        return;
    };
    if let Ok(normal) = gatehouse_router::normalize(path) {
        let again = ask(&normal.path).expect("a normalized path is valid");
        assert_eq!(first.0, again.0, "{path:?} and {:?} route apart", normal.path);
    }
});
