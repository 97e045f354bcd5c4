//! `Incremental::compile` must return exactly what `compile` returns, whatever changed
//! since its last call: a route's spec, its age, the routes present, and everything a
//! route reads besides itself (Upstreams, ApiPolicies, Secrets, `redis`).

use std::sync::Arc;

use gatehouse_api::manifest;
use gatehouse_api::route::{PathMatch, PathMatchType};
use gatehouse_compiler::{Incremental, Inputs, Output, compile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn inputs_of(yaml: &str) -> Inputs {
    let parsed = manifest::parse("input.yaml", yaml);
    Inputs::from_documents(parsed.documents).0
}

/// Everything the output says, comparable.
fn said(out: &Output) -> (String, Vec<String>, String) {
    (
        serde_json::to_string(&out.table).expect("table"),
        out.diagnostics.iter().map(ToString::to_string).collect(),
        serde_json::to_string(&out.statuses.iter().collect::<Vec<_>>()).expect("statuses"),
    )
}

fn same(inc: &mut Incremental, inputs: &Inputs, step: &str) {
    let full = said(&compile(inputs));
    let again = said(&inc.compile(inputs));
    assert!(full == again, "{step}: the incremental output differs");
}

fn set_path(inputs: &mut Inputs, route: usize, value: &str) {
    if let Some(m) = inputs
        .routes
        .get_mut(route)
        .and_then(|r| Arc::make_mut(r).spec.rules.first_mut())
        .and_then(|rule| rule.matches.first_mut())
    {
        m.path = Some(PathMatch {
            kind: PathMatchType::Prefix,
            value: value.into(),
        });
    }
}

/// A run of changes, each checked against a full compilation.
fn changes(base: Inputs) {
    let mut inc = Incremental::default();
    let mut inputs = base.clone();
    same(&mut inc, &inputs, "first");
    same(&mut inc, &inputs, "unchanged");

    set_path(&mut inputs, 0, "/moved");
    same(&mut inc, &inputs, "a route's path changed");

    if let Some(r) = inputs.routes.first_mut() {
        // A status write: another object, the same spec.
        Arc::make_mut(r).metadata.resource_version = Some("status-write".into());
        same(&mut inc, &inputs, "a route's status changed");
    }

    if inputs.routes.len() > 2 {
        // The second route now has the first one's match: one of them is Conflicted.
        let first = inputs.routes[0].spec.clone();
        Arc::make_mut(&mut inputs.routes[1]).spec = first;
        same(&mut inc, &inputs, "a route copied another");
        inputs.routes.remove(2);
        same(&mut inc, &inputs, "a route was removed");
        let mut added = base.routes[2].clone();
        Arc::make_mut(&mut added).metadata.name = Some("added".into());
        inputs.routes.push(added);
        same(&mut inc, &inputs, "a route was added");
    }
    if let Some(r) = inputs.routes.last_mut() {
        Arc::make_mut(r).metadata.creation_timestamp =
            Some(Time("2020-01-01T00:00:00Z".parse().expect("timestamp")));
        same(&mut inc, &inputs, "a route's age changed");
    }
    if !inputs.upstreams.is_empty() {
        inputs.upstreams.remove(0);
        same(&mut inc, &inputs, "an upstream was removed");
    }
    if !inputs.policies.is_empty() {
        inputs.policies.remove(0);
        same(&mut inc, &inputs, "a policy was removed");
    }
    if !inputs.secrets.is_empty() {
        inputs.secrets.remove(0);
        same(&mut inc, &inputs, "a secret was removed");
    }
    inputs.redis = !inputs.redis;
    same(&mut inc, &inputs, "redis toggled");

    same(&mut inc, &base, "back to the start");
}

#[test]
fn every_golden_case_compiles_alike_through_a_run_of_changes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10);
    for case in cases {
        let yaml = std::fs::read_to_string(case.join("input.yaml")).expect("input.yaml");
        changes(inputs_of(&yaml));
    }
}

#[test]
fn a_large_table_compiles_alike_through_a_run_of_changes() {
    // Above the parallel threshold, with conflicts, invalid regexes and missing upstreams.
    let mut yaml = String::new();
    for u in 0..20 {
        yaml.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: svc-{u}}}\nspec:\n  endpoints: [{{host: 10.0.{u}.1, port: 8080}}]\n"
        ));
    }
    for r in 0..1200 {
        let path = match r % 4 {
            0 => format!("{{type: Exact, value: /r{}}}", r - r % 8),
            1 => format!("{{type: Prefix, value: /r{r}}}"),
            2 if r % 50 == 2 => "{type: Regex, value: \"/bad/([\"}".to_string(),
            2 => format!("{{type: Regex, value: \"/r{r}/[0-9]+\"}}"),
            _ => format!("{{type: Template, value: \"/r{r}/{{id}}\"}}"),
        };
        yaml.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: route-{r}}}\nspec:\n  rules:\n    - matches: [{{path: {path}}}]\n      backends: [{{upstream: svc-{}}}]\n",
            r % 23
        ));
    }
    changes(inputs_of(&yaml));
}

/// One route of the short-path test, as YAML: `path` decides its match, `policy`
/// whether it references the ApiPolicy, `regex` a Regex path (possibly invalid).
fn route_yaml(name: &str, path: &str, policy: bool, hosts: &str) -> String {
    let refs = if policy {
        "  policyRefs: [{name: limits}]\n"
    } else {
        ""
    };
    let path = if let Some(re) = path.strip_prefix("re:") {
        format!("{{type: Regex, value: \"{re}\"}}")
    } else {
        format!("{{type: Prefix, value: {path}}}")
    };
    format!(
        "---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}, namespace: ns, generation: 1}}\nspec:\n  hosts: {hosts}\n{refs}  rules:\n    - matches: [{{path: {path}}}]\n      backends: [{{upstream: svc}}]\n"
    )
}

fn route_of(name: &str, path: &str, policy: bool, hosts: &str) -> Arc<gatehouse_api::ApiRoute> {
    let inputs = inputs_of(&route_yaml(name, path, policy, hosts));
    inputs.routes[0].clone()
}

/// Controller-shaped inputs (routes in namespace/name order, other objects unchanged
/// between compilations) through random route edits: most take the short path, and
/// every output equals a full compilation's, conflicts and policy counts included.
#[test]
fn route_edits_take_the_short_path_and_compile_alike() {
    let mut yaml = String::from(
        "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {name: svc, namespace: ns}\nspec:\n  endpoints: [{host: 10.0.0.1, port: 8080}]\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiPolicy\nmetadata: {name: limits, namespace: ns}\nspec:\n  rateLimit: {limits: [{requests: 10, period: 1s}]}\n",
    );
    for r in 0..300 {
        yaml.push_str(&route_yaml(
            &format!("r{r:04}"),
            &format!("/r{r}"),
            r % 7 == 0,
            "[]",
        ));
    }
    let (mut inputs, problems) = {
        let parsed = manifest::parse("input.yaml", &yaml);
        Inputs::from_documents(parsed.documents)
    };
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(inputs.routes.len(), 300);
    inputs
        .routes
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut inc = Incremental::default();
    same(&mut inc, &inputs, "first");
    // A small deterministic generator (xorshift): the run is the same every time.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut short = 0;
    for step in 0..300 {
        let i = next(inputs.routes.len());
        let name = inputs.routes[i].metadata.name.clone().unwrap_or_default();
        let what = next(10);
        match what {
            // A new path of its own.
            0 | 1 => inputs.routes[i] = route_of(&name, &format!("/s{step}"), next(2) == 0, "[]"),
            // Another route's path: a conflict (the whole path), or back out of one.
            2 => {
                let other = format!("/r{}", next(300));
                inputs.routes[i] = route_of(&name, &other, false, "[]");
            }
            // A status write.
            3 => {
                Arc::make_mut(&mut inputs.routes[i])
                    .metadata
                    .resource_version = Some(format!("rv{step}"));
            }
            // Removed.
            4 => {
                inputs.routes.remove(i);
            }
            // Added where its name sorts.
            5 => {
                let added = format!("r{:04}x{step}", next(300));
                let at = inputs
                    .routes
                    .partition_point(|r| r.metadata.name.as_deref() < Some(added.as_str()));
                let route = route_of(&added, &format!("/a{step}"), next(3) == 0, "[]");
                inputs.routes.insert(at, route);
            }
            // An invalid regex, then a valid one.
            6 => inputs.routes[i] = route_of(&name, "re:/bad/([", false, "[]"),
            7 => inputs.routes[i] = route_of(&name, &format!("re:/re{step}/[0-9]+"), true, "[]"),
            // Status writes to every route, then a path change: still the short path.
            9 => {
                for r in &mut inputs.routes {
                    Arc::make_mut(r).metadata.resource_version = Some(format!("rv{step}"));
                }
                same(
                    &mut inc,
                    &inputs,
                    &format!("step {step}: every status written"),
                );
                assert!(inc.last_was_routes_only(), "status writes alone");
                inputs.routes[i] = route_of(&name, &format!("/t{step}"), false, "[]");
            }
            // The same path on a host of its own: no conflict.
            _ => {
                let path = format!("/r{}", next(300));
                inputs.routes[i] = route_of(&name, &path, false, "[a.example.com]");
            }
        }
        same(
            &mut inc,
            &inputs,
            &format!("step {step} (edit {what} of {name})"),
        );
        short += usize::from(inc.last_was_routes_only());
    }
    assert!(short > 150, "{short} of 300 edits took the short path");
}
