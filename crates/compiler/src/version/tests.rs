//! Versioning through the compiler's public entry point: the matches, ranks, headers
//! and diagnostics a route with `spec.version` compiles to.

use gatehouse_api::manifest;
use gatehouse_table::{Match, PathMatch, Segment, ValueMatch, ValueMatchKind, VersionScheme};

use super::{http_date, media_type_pattern};
use crate::{Inputs, Output, Reason, Severity, compile};

fn compile_yaml(yaml: &str) -> Output {
    let parsed = manifest::parse("test.yaml", yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let (inputs, diags) = Inputs::from_documents(parsed.documents);
    assert!(diags.is_empty(), "{diags:?}");
    compile(&inputs)
}

/// A route `name` with `version` (a flow mapping) and one `respond` rule per match.
fn route(name: &str, version: &str, matches: &[&str]) -> String {
    let mut rules = String::new();
    for (i, m) in matches.iter().enumerate() {
        rules.push_str(&format!(
            "    - name: r{i}\n      matches: [{m}]\n      respond: {{status: 200}}\n"
        ));
    }
    format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  version: {version}\n  rules:\n{rules}---\n"
    )
}

fn errors(out: &Output) -> Vec<String> {
    out.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

fn matches_of<'a>(out: &'a Output, id: &str) -> Vec<&'a Match> {
    out.table
        .route(id)
        .unwrap_or_else(|| panic!("{id} not in the table: {:?}", out.diagnostics))
        .rules
        .iter()
        .flat_map(|r| &r.matches)
        .collect()
}

fn header(name: &str, value: &str) -> ValueMatch {
    ValueMatch {
        name: name.into(),
        kind: ValueMatchKind::Exact(value.into()),
    }
}

#[test]
fn path_scheme_serves_every_match_under_the_prefix() {
    let out = compile_yaml(&route(
        "users",
        "{name: v2, scheme: Path}",
        &[
            "{path: {type: Exact, value: /users}}",
            "{path: {type: Prefix, value: /}}",
            "{path: {type: Prefix, value: /a/}}",
            r#"{path: {type: Template, value: "/users/{id}/{*rest}"}}"#,
            r#"{path: {type: Regex, value: "^/items/(?P<id>[0-9]+)"}}"#,
            "{methods: [GET]}",
        ],
    ));
    assert_eq!(errors(&out), Vec::<String>::new());
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let m = matches_of(&out, "shop/users");
    let paths: Vec<&PathMatch> = m.iter().map(|m| &m.path).collect();
    assert_eq!(paths[0], &PathMatch::Exact("/v2/users".into()));
    assert_eq!(paths[1], &PathMatch::Prefix("/v2".into()));
    assert_eq!(paths[2], &PathMatch::Prefix("/v2/a".into()));
    let PathMatch::Template(t) = paths[3] else {
        panic!("{:?}", paths[3]);
    };
    assert_eq!(t.source, "/v2/users/{id}/{*rest}");
    assert_eq!(
        t.segments,
        vec![
            Segment::Literal("v2".into()),
            Segment::Literal("users".into()),
            Segment::Param("id".into()),
        ]
    );
    assert_eq!(t.rest.as_deref(), Some("rest"));
    assert_eq!(
        paths[4],
        &PathMatch::Regex("/v2(?:/items/(?P<id>[0-9]+))".into())
    );
    // A match without a path is every path under the version.
    assert_eq!(paths[5], &PathMatch::Prefix("/v2".into()));
    assert!(m.iter().all(|m| m.strip_prefix.as_deref() == Some("/v2")));
    let v = out.table.routes[0].version.as_ref().expect("version");
    assert_eq!((v.name.as_str(), v.scheme), ("v2", VersionScheme::Path));
    assert_eq!(v.vary, None);
}

#[test]
fn versioned_regex_is_anchored_by_the_router_and_keeps_captures() {
    let out = compile_yaml(&route(
        "re",
        "{name: v1.5, scheme: Path}",
        &[r#"{path: {type: Regex, value: "/items/(?P<id>[0-9]+)$"}}"#],
    ));
    let m = matches_of(&out, "shop/re");
    let PathMatch::Regex(src) = &m[0].path else {
        panic!("{:?}", m[0].path);
    };
    // The name's `.` is escaped: `/v1x5/items/1` is not v1.5.
    assert_eq!(src, r"/v1\.5(?:/items/(?P<id>[0-9]+)$)");
    let re = gatehouse_router::anchored_regex(src).expect("compiles");
    assert!(re.is_match("/v1.5/items/42"));
    assert!(!re.is_match("/v1x5/items/42"));
    assert!(!re.is_match("/items/42"));
    assert_eq!(
        &re.captures("/v1.5/items/42").expect("captures")["id"],
        "42"
    );
}

#[test]
fn header_query_and_media_type_add_one_condition() {
    let yaml = [
        route(
            "h",
            "{name: v2, scheme: Header}",
            &["{path: {type: Prefix, value: /h}, headers: [{name: X-Tenant, value: acme}]}"],
        ),
        route(
            "h-custom",
            "{name: v2, scheme: Header, header: X-API-Version}",
            &["{path: {type: Prefix, value: /hc}}"],
        ),
        route(
            "q",
            "{name: v2, scheme: Query}",
            &["{path: {type: Prefix, value: /q}}"],
        ),
        route(
            "q-custom",
            "{name: v2, scheme: Query, queryParam: api}",
            &["{path: {type: Prefix, value: /qc}}"],
        ),
        route(
            "mt",
            "{name: v2, scheme: MediaType}",
            &["{path: {type: Prefix, value: /mt}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);

    let h = matches_of(&out, "shop/h");
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].headers,
        vec![header("x-tenant", "acme"), header("api-version", "v2")]
    );
    assert_eq!(h[0].path, PathMatch::Prefix("/h".into()));
    assert_eq!(h[0].strip_prefix, None);
    let route_h = out.table.route("shop/h").expect("route");
    assert_eq!(
        route_h.version.as_ref().and_then(|v| v.vary.as_deref()),
        Some("Api-Version")
    );

    let hc = matches_of(&out, "shop/h-custom");
    assert_eq!(hc[0].headers, vec![header("x-api-version", "v2")]);
    assert_eq!(
        out.table
            .route("shop/h-custom")
            .and_then(|r| r.version.as_ref()?.vary.clone()),
        Some("X-API-Version".into())
    );

    assert_eq!(
        matches_of(&out, "shop/q")[0].query_params,
        vec![header("version", "v2")]
    );
    assert_eq!(
        matches_of(&out, "shop/q-custom")[0].query_params,
        vec![header("api", "v2")]
    );
    assert_eq!(
        out.table
            .route("shop/q")
            .and_then(|r| r.version.as_ref()?.vary.clone()),
        None
    );

    let mt = matches_of(&out, "shop/mt");
    assert_eq!(
        mt[0].headers,
        vec![ValueMatch {
            name: "accept".into(),
            kind: ValueMatchKind::Regex(media_type_pattern("v2")),
        }]
    );
    assert_eq!(
        out.table
            .route("shop/mt")
            .and_then(|r| r.version.as_ref()?.vary.clone()),
        Some("Accept".into())
    );
}

#[test]
fn media_type_pattern_finds_the_version_in_accept() {
    let re = gatehouse_router::anchored_regex(&media_type_pattern("v2")).expect("compiles");
    for yes in [
        "application/json; version=v2",
        "application/json;version=v2",
        "application/json; Version=v2; q=0.9",
        "application/json ; VERSION = \"v2\"",
        "text/html, application/json;version=v2;q=0.9",
        "application/json;q=0.5;version=v2, */*;q=0.1",
        "application/vnd.acme.v2+json",
        "application/vnd.acme.users.v2+json; charset=utf-8",
        "application/VND.acme.v2",
        "text/plain, application/vnd.acme.v2+json",
    ] {
        assert!(re.is_match(yes), "{yes:?} names v2");
    }
    for no in [
        "application/json",
        "application/json; version=v22",
        "application/json; version=V2",
        "application/json; apiversion=v2",
        "application/json; version=v1, text/plain",
        "application/vnd.acme.v22+json",
        "application/vnd.acme.v2.beta+json",
        "application/vnd.v2+json",
        "application/x.acme.v2+json",
        "*/*",
    ] {
        assert!(!re.is_match(no), "{no:?} does not name v2");
    }
    // The name is a literal, not a pattern.
    let dotted = gatehouse_router::anchored_regex(&media_type_pattern("1.0")).expect("compiles");
    assert!(dotted.is_match("application/json; version=1.0"));
    assert!(!dotted.is_match("application/json; version=1x0"));
}

#[test]
fn default_keeps_the_written_matches_after_the_versioned_ones() {
    let out = compile_yaml(&route(
        "users-v1",
        "{name: v1, scheme: Path, default: true}",
        &["{path: {type: Prefix, value: /users}}"],
    ));
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let m = matches_of(&out, "shop/users-v1");
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].path, PathMatch::Prefix("/v1/users".into()));
    assert_eq!(m[0].strip_prefix.as_deref(), Some("/v1"));
    assert_eq!(m[1].path, PathMatch::Prefix("/users".into()));
    assert_eq!(m[1].strip_prefix, None);
    // The longer literal ranks first.
    assert!(m[0].rank < m[1].rank);
}

#[test]
fn a_named_version_outranks_the_default_on_the_same_paths() {
    // v1 is older (alphabetical among files without timestamps) and its written
    // match even has a method condition: a request naming v2 still goes to v2.
    let yaml = [
        route(
            "a-v1",
            "{name: v1, scheme: Header, default: true}",
            &["{path: {type: Prefix, value: /users}, methods: [GET]}"],
        ),
        route(
            "b-v2",
            "{name: v2, scheme: Header}",
            &["{path: {type: Prefix, value: /users}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let v1 = matches_of(&out, "shop/a-v1");
    let v2 = matches_of(&out, "shop/b-v2");
    assert_eq!(v1.len(), 2);
    assert_eq!(v1[0].headers, vec![header("api-version", "v1")]);
    assert!(v1[1].headers.is_empty(), "the default match has no version");
    // v1 default (GET, 1 condition) vs v2 (version header, 1 condition): v2 first.
    assert!(v2[0].rank < v1[1].rank, "{v2:?} {v1:?}");

    let router = gatehouse_router::Router::new(&out.table).expect("router");
    let pick = |headers: &[(String, String)]| {
        let e = crate::explain::explain(&out.table, &router, "GET", "/users/7", headers);
        match e.outcome {
            crate::explain::Outcome::Matched { route, .. } => route,
            other => panic!("{other:?}"),
        }
    };
    let named = |v: &str| vec![("Api-Version".to_string(), v.to_string())];
    assert_eq!(pick(&named("v2")), "shop/b-v2");
    assert_eq!(pick(&named("v1")), "shop/a-v1");
    assert_eq!(pick(&[]), "shop/a-v1");
    // An unknown version is served as if none was named: by the default.
    assert_eq!(pick(&named("v9")), "shop/a-v1");
}

#[test]
fn path_ranks_count_the_prefix() {
    let yaml = [
        route(
            "a-v1",
            "{name: v1, scheme: Path, default: true}",
            &["{path: {type: Prefix, value: /}}"],
        ),
        route(
            "b-v2",
            "{name: v2, scheme: Path}",
            &["{path: {type: Prefix, value: /}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let router = gatehouse_router::Router::new(&out.table).expect("router");
    let explain = |path: &str| crate::explain::explain(&out.table, &router, "GET", path, &[]);
    let served = |path: &str| match explain(path).outcome {
        crate::explain::Outcome::Matched { route, path, .. } => (route, path),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        served("/v2/users/7"),
        ("shop/b-v2".into(), "/users/7".into())
    );
    assert_eq!(served("/v2"), ("shop/b-v2".into(), "/".into()));
    assert_eq!(served("/v1/users"), ("shop/a-v1".into(), "/users".into()));
    assert_eq!(served("/users"), ("shop/a-v1".into(), "/users".into()));
    // Not a version segment: the default serves it, unstripped.
    assert_eq!(
        served("/v2x/users"),
        ("shop/a-v1".into(), "/v2x/users".into())
    );
    let text = crate::explain::render_text(&explain("/v2/users"));
    assert!(text.contains("forwarded path: /users"), "{text}");
    assert!(text.contains("API version v2 (Path scheme)"), "{text}");
}

#[test]
fn two_defaults_on_the_same_matches_conflict_and_name_the_winner() {
    let yaml = [
        route(
            "a-v1",
            "{name: v1, scheme: Header, default: true}",
            &["{path: {type: Prefix, value: /users}}"],
        ),
        route(
            "b-v2",
            "{name: v2, scheme: Header, default: true}",
            &["{path: {type: Prefix, value: /users}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    assert_eq!(
        errors(&out),
        vec![
            "error: ApiRoute shop/b-v2: spec.rules[0].matches[0]: conflicts with ApiRoute shop/a-v1, which is older and wins: same any host and match (Conflicted)"
        ]
    );
    assert!(out.table.route("shop/a-v1").is_some());
    assert!(out.table.route("shop/b-v2").is_none());
}

#[test]
fn same_version_twice_on_the_same_matches_conflicts() {
    let yaml = [
        route(
            "a",
            "{name: v2, scheme: Path}",
            &["{path: {type: Exact, value: /users}}"],
        ),
        route(
            "b",
            "{name: v2, scheme: Path}",
            &["{path: {type: Exact, value: /users}}"],
        ),
        route(
            "c",
            "{name: v3, scheme: Path}",
            &["{path: {type: Exact, value: /users}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    let errs = errors(&out);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("ApiRoute shop/b:"), "{errs:?}");
    assert!(out.table.route("shop/c").is_some());
}

#[test]
fn deprecation_and_sunset_are_prepared_for_the_responses() {
    let out = compile_yaml(&route(
        "old",
        r#"{name: v1, scheme: Query, deprecated: true, sunset: "2027-06-30T02:00:00+02:00"}"#,
        &["{path: {type: Prefix, value: /old}}"],
    ));
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    let v = out.table.routes[0].version.as_ref().expect("version");
    assert!(v.deprecated);
    assert_eq!(v.sunset.as_deref(), Some("Wed, 30 Jun 2027 00:00:00 GMT"));
}

#[test]
fn sunset_dates_convert_to_imf_fixdate() {
    for (rfc3339, http) in [
        ("2027-06-30T00:00:00Z", "Wed, 30 Jun 2027 00:00:00 GMT"),
        ("1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("1994-11-06t08:49:37z", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("2024-02-29T23:30:00-01:00", "Fri, 01 Mar 2024 00:30:00 GMT"),
        ("2000-03-01T01:00:00+02:00", "Tue, 29 Feb 2000 23:00:00 GMT"),
        ("2026-12-31T23:59:59.999Z", "Thu, 31 Dec 2026 23:59:59 GMT"),
        ("2016-12-31T23:59:60Z", "Sat, 31 Dec 2016 23:59:59 GMT"),
        ("1900-03-01T00:00:00Z", "Thu, 01 Mar 1900 00:00:00 GMT"),
    ] {
        assert_eq!(http_date(rfc3339).as_deref(), Ok(http), "{rfc3339}");
    }
    for bad in [
        "",
        "2027-06-30",
        "2027-06-30T00:00:00",
        "2027-06-30 00:00:00Z",
        "2027-13-01T00:00:00Z",
        "2027-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2027-06-31T00:00:00Z",
        "2027-06-30T24:00:00Z",
        "2027-06-30T00:60:00Z",
        "2027-06-30T00:00:00.Z",
        "2027-06-30T00:00:00+2:00",
        "2027-06-30T00:00:00+02:00x",
        "2027-06-30T00:00:00+24:00",
        "0000-01-01T00:00:00+01:00",
        "June 30, 2027",
        "２027-06-30T00:00:00Z",
    ] {
        assert_eq!(http_date(bad), Err(()), "{bad:?}");
    }
}

#[test]
fn invalid_versions_are_errors_and_keep_the_route_out() {
    let yaml = [
        route(
            "slash",
            "{name: v2/beta, scheme: Path}",
            &["{path: {type: Prefix, value: /a}}"],
        ),
        route(
            "dots",
            "{name: .., scheme: Path}",
            &["{path: {type: Prefix, value: /b}}"],
        ),
        route(
            "empty",
            r#"{name: "", scheme: Header}"#,
            &["{path: {type: Prefix, value: /c}}"],
        ),
        route(
            "sunset",
            r#"{name: v1, sunset: "next tuesday"}"#,
            &["{path: {type: Prefix, value: /d}}"],
        ),
        route(
            "header",
            r#"{name: v1, scheme: Header, header: "Api Version"}"#,
            &["{path: {type: Prefix, value: /e}}"],
        ),
        route(
            "misplaced",
            "{name: v1, scheme: Path, queryParam: v}",
            &["{path: {type: Prefix, value: /f}}"],
        ),
    ]
    .concat();
    let out = compile_yaml(&yaml);
    assert!(out.table.routes.is_empty(), "{:?}", out.table.routes);
    let errs = errors(&out);
    for (id, field, what) in [
        (
            "shop/slash",
            "spec.version.name",
            "not a single path segment",
        ),
        (
            "shop/dots",
            "spec.version.name",
            "not a single path segment",
        ),
        ("shop/empty", "spec.version.name", "not a version name"),
        (
            "shop/sunset",
            "spec.version.sunset",
            "not an RFC 3339 date-time",
        ),
        ("shop/header", "spec.version.header", "not a header name"),
        (
            "shop/misplaced",
            "spec.version.queryParam",
            "applies only to the Query scheme",
        ),
    ] {
        let prefix = format!("error: ApiRoute {id}: {field}: ");
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&prefix) && e.contains(what) && e.ends_with("(Invalid)")),
            "{prefix}… {what}: {errs:#?}"
        );
    }
    assert!(
        out.diagnostics
            .iter()
            .all(|d| d.reason != Reason::UnsupportedValue),
        "{:?}",
        out.diagnostics
    );
}

#[test]
fn lint_warns_about_paths_that_already_name_the_version() {
    let out = compile_yaml(&route(
        "dup",
        "{name: v2, scheme: Path}",
        &[
            "{path: {type: Prefix, value: /v2/users}}",
            r#"{path: {type: Regex, value: ".*\\.json"}}"#,
        ],
    ));
    let warnings: Vec<String> = out
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].contains("spec.rules[0].matches[0].path.value")
            && warnings[0].contains("served at /v2/v2/users"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].contains("spec.rules[1].matches[0].path.value")
            && warnings[1].contains("rest of the path after /v2"),
        "{warnings:#?}"
    );
    // Warnings only: the route is served.
    assert!(out.table.route("shop/dup").is_some());
}
