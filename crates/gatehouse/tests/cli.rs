//! The built binary, driven as users and CI jobs drive it: exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gatehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .output()
        .expect("gatehouse runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write manifest");
}

const BROKEN: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: orders, namespace: shop}
spec:
  rules:
    - matches: [{path: {type: Regex, value: "/orders/(["}}]
      respond: {status: 200}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: users, namespace: shop}
spec:
  rules:
    - matches: [{path: {type: Prefix, value: /users}}]
      backends: [{upstream: users-v2}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: fine, namespace: shop}
spec:
  rules:
    - matches: [{path: {type: Exact, value: /ping}}]
      respond: {status: 200, body: pong}
"#;

// Linting every example (with the short, shrinking allow-list of fields not enforced
// yet) is `examples/test_examples.py`, run by `make chart-test`.

#[test]
fn lint_fails_naming_object_field_and_missing_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "routes.yaml", BROKEN);
    let out = gatehouse(&["lint", "-f", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("ApiRoute shop/orders"), "{text}");
    assert!(
        text.contains("spec.rules[0].matches[0].path.value"),
        "{text}"
    );
    assert!(text.contains("invalid regular expression"), "{text}");
    assert!(text.contains("ApiRoute shop/users"), "{text}");
    assert!(
        text.contains("spec.rules[0].backends[0].upstream"),
        "{text}"
    );
    assert!(text.contains("shop/users-v2 not found"), "{text}");
    assert!(text.contains("UpstreamNotFound"), "{text}");
    assert!(
        !text.contains("shop/fine"),
        "a valid route has no diagnostic: {text}"
    );

    let out = gatehouse(&[
        "lint",
        "-f",
        dir.path().to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["errors"], 2);
    let reasons: Vec<&str> = v["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert_eq!(reasons, vec!["Invalid", "UpstreamNotFound"]);
}

#[test]
fn lint_reports_yaml_errors_and_unknown_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", "apiVersion: v1\nkind: [oops\n");
    write(
        dir.path(),
        "b.yaml",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r}\nspec:\n  rules:\n    - respond: {status: 200}\n      timout: 5s\n",
    );
    let out = gatehouse(&["lint", "-f", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("not valid YAML"), "{text}");
    assert!(
        text.contains("ApiRoute default/r: spec.rules[0].timout: unknown field"),
        "{text}"
    );
}

#[test]
fn lint_on_a_missing_path_is_a_usage_error() {
    let out = gatehouse(&["lint", "-f", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}

#[test]
fn explain_names_route_rule_and_near_misses() {
    let q = repo("examples/quickstart");
    let q = q.to_str().expect("utf-8");
    let out = gatehouse(&["explain", "-f", q, "GET", "http://localhost/users/42"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("ApiRoute default/quickstart, rule \"get-user\""),
        "{text}"
    );
    assert!(text.contains("\"id\": \"42\""), "{text}");
    assert!(text.contains("backend default/echo"), "{text}");
    assert!(text.contains("does not match"), "{text}");

    let out = gatehouse(&[
        "explain",
        "-f",
        q,
        "DELETE",
        "/users/42",
        "-H",
        "Host: localhost",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["outcome"]["result"], "methodNotAllowed");
    assert_eq!(v["outcome"]["allow"], serde_json::json!(["GET", "HEAD"]));
    let first = &v["nearMisses"][0];
    assert_eq!(first["rule"], "get-user");
    assert!(
        first["why"][0]
            .as_str()
            .expect("reason")
            .contains("method DELETE")
    );

    let out = gatehouse(&["explain", "-f", q, "GET", "http://localhost/nothing/here"]);
    assert!(stdout(&out).contains("404 Not Found"));
}

#[test]
fn crds_command_prints_the_committed_crds() {
    let out = gatehouse(&["crds"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(repo("crds/gatehouse.dev_crds.yaml")).expect("crds/ committed");
    assert_eq!(stdout(&out), committed);
}

#[test]
fn version_names_the_revision() {
    let out = gatehouse(&["version"]);
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("gatehouse 0.1.0 (git "));
}
