//! Every CEL rule in the generated CRDs, evaluated by a CEL interpreter with the
//! Kubernetes extension functions (`kube-cel`), both accepting and rejecting.
//!
//! The same rules are checked by a real API server in the controller's e2e suite; this
//! test is the fast, everywhere-runnable half, and it fails when a rule is added without
//! a rejecting case here.

use std::collections::BTreeSet;

mod cel_cases;

use cel_cases::cases;
use gatehouse_api::crds;
use serde_json::{Value, json};

fn schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind has a CRD");
    let v = serde_json::to_value(&crd).expect("CRD serializes");
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
    })
}

/// The messages of the rules the object violates.
fn violations(kind: &str, spec: Value) -> Vec<String> {
    let validator = kube_cel::Validator::new();
    match validator.validate(&schema(kind), &object(kind, spec), None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn all_rules(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    if let Some(m) = r.get("message").and_then(Value::as_str) {
                        out.insert(m.to_string());
                    }
                }
            }
            map.values().for_each(|v| all_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_rules(v, out)),
        _ => {}
    }
}

#[test]
fn every_rule_accepts_and_rejects_as_documented() {
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let got = violations(case.kind, case.spec.clone());
        let ok = match case.rejects {
            None => got.is_empty(),
            Some(msg) => got == [msg.to_string()],
        };
        if !ok {
            failures.push(format!(
                "case {i} ({}): expected {:?}, got {got:?}\n  spec: {}",
                case.kind, case.rejects, case.spec
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_rule_in_the_crds_has_a_rejecting_case() {
    let mut declared = BTreeSet::new();
    for kind in ["ApiRoute", "Upstream", "ApiPolicy"] {
        all_rules(&schema(kind), &mut declared);
    }
    let tested: BTreeSet<String> = cases()
        .iter()
        .filter_map(|c| c.rejects.map(String::from))
        .collect();
    let untested: Vec<_> = declared.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "rules without a rejecting case: {untested:?}"
    );
    assert!(
        declared.len() >= 25,
        "expected the CEL rules to be present, found {declared:?}"
    );
}
