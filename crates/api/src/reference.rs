//! The field reference (`docs/reference.md`), generated from the CRD schemas so that it
//! lists every field, with the same descriptions `kubectl explain` shows, and cannot
//! drift from the types.

use std::fmt::Write;

use serde_json::Value;

use crate::crds;

/// Markdown reference of every field of every kind.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Resource field reference\n\n\
         Generated from the CRD schemas by `cargo test -p gatehouse-api` (`UPDATE_DOCS=1` \
         rewrites it). Every field's description is also what `kubectl explain` shows. \
         Durations are strings such as `250ms`, `10s`, `1m`, `1h`. CEL rules are enforced \
         by the API server; `gatehouse lint` applies the same checks and more.\n",
    );
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let Ok(v) = serde_json::to_value(&crd) else {
            continue;
        };
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let _ = write!(
            out,
            "\n## {kind}\n\n`{}/{}`, namespaced, short name `{}`.\n\n\
             | field | type | description |\n|---|---|---|\n",
            crd.spec.group,
            crd.spec.versions[0].name,
            crd.spec
                .names
                .short_names
                .as_ref()
                .and_then(|s| s.first())
                .map_or("", String::as_str),
        );
        walk(&schema["properties"]["spec"], "spec", &mut out);
        walk(&schema["properties"]["status"], "status", &mut out);
    }
    out
}

fn type_of(s: &Value) -> String {
    if s.get("x-kubernetes-int-or-string").is_some() {
        return "int or string".into();
    }
    let t = s["type"].as_str().unwrap_or("any");
    match t {
        "array" => format!("[]{}", type_of(&s["items"])),
        "object" if s.get("additionalProperties").is_some() => {
            format!("map[string]{}", type_of(&s["additionalProperties"]))
        }
        _ => {
            if let Some(Value::Array(e)) = s.get("enum") {
                let vals: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
                format!("enum: {}", vals.join(" \\| "))
            } else {
                t.to_string()
            }
        }
    }
}

fn describe(s: &Value) -> String {
    let mut d = s["description"]
        .as_str()
        .unwrap_or("")
        .replace('\n', " ")
        .replace('|', "\\|");
    let mut limits = Vec::new();
    for (k, label) in [
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(n) = s.get(k).and_then(Value::as_f64) {
            limits.push(format!("{label} {n}"));
        }
    }
    if s.get("pattern").is_some() && s.get("description").is_none() {
        limits.push("pattern".into());
    }
    if !limits.is_empty() {
        let _ = write!(d, " ({})", limits.join(", "));
    }
    if let Some(Value::Array(rules)) = s.get("x-kubernetes-validations") {
        for r in rules {
            if let Some(m) = r["message"].as_str() {
                let _ = write!(d, " Rule: {}.", m.replace('|', "\\|"));
            }
        }
    }
    d
}

fn walk(s: &Value, path: &str, out: &mut String) {
    if s.is_null() {
        return;
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "| `{path}` | {} | {} |", type_of(s), describe(s));
    let (props, prefix) = if s["type"] == "array" {
        (&s["items"]["properties"], format!("{path}[]"))
    } else if s.get("additionalProperties").is_some() {
        (
            &s["additionalProperties"]["properties"],
            format!("{path}.*"),
        )
    } else {
        (&s["properties"], path.to_string())
    };
    let item_required: Vec<&str> = s["items"]["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Value::Object(map) = props {
        for (name, child) in map {
            let req = required.contains(&name.as_str()) || item_required.contains(&name.as_str());
            let child_path = format!("{prefix}.{name}{}", if req { " (required)" } else { "" });
            walk(child, &child_path, out);
        }
    }
}
