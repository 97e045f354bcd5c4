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
