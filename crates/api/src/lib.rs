//! # gatehouse-api: the resources users write
//!
//! The Rust types of Gatehouse's public interface, `gatehouse.dev/v1alpha1`:
//! [`ApiRoute`], [`Upstream`] and [`ApiPolicy`] (whose spec is the [`Policies`] struct
//! that routes and rules embed too), plus consumers read from ordinary Secrets.
//!
//! ```text
//!  YAML / kube API ──serde──▶ ApiRoute, Upstream, ApiPolicy, Secret ──▶ gatehouse-compiler
//!  these types ──schemars + kube-derive──▶ CRDs (`gatehouse crds`, committed in crds/)
//! ```
//!
//! What this crate owns: field names, documentation (it becomes the CRD descriptions),
//! the structural schema and its CEL `x-kubernetes-validations`, and reading manifests.
//! What it must not know: what the fields *mean*. Validity beyond the schema,
//! precedence, defaults and reference resolution belong to `gatehouse-compiler`.
//!
//! The normative contract is `spec/api.md`; names here match it exactly.

pub mod common;
pub mod consumer;
pub mod manifest;
pub mod policy;
pub mod reference;
pub mod route;
pub mod upstream;

pub use common::{CommonStatus, Duration, LocalRef, PortRef, SecretKeyRef, SecretRef};
pub use policy::{ApiPolicy, ApiPolicyStatus, Policies};
pub use route::{ApiRoute, ApiRouteSpec};
pub use upstream::{Upstream, UpstreamSpec, UpstreamStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Gatehouse kind.
pub const GROUP: &str = "gatehouse.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Gatehouse kind.
pub const API_VERSION: &str = "gatehouse.dev/v1alpha1";

/// The three CRDs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![ApiRoute::crd(), Upstream::crd(), ApiPolicy::crd()]
}

/// The CRDs as one multi-document YAML text: what `gatehouse crds` prints and `crds/` holds.
///
/// Mapping keys that YAML 1.1 readers (kubectl, Helm, many GitOps tools) take for
/// booleans are quoted: a plain `on:` (Upstream `spec.retries.on`) would otherwise reach
/// the API server as the property `true`.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        for line in serde_yaml_ng::to_string(&crd)?.lines() {
            out.push_str(&quote_yaml11_bool_key(line));
            out.push('\n');
        }
    }
    Ok(out)
}

/// `line` with its mapping key single-quoted when the key is a plain scalar that YAML 1.1
/// reads as a boolean (`on`, `off`, `yes`, `no`, `y`, `n`, `true`, `false`, any case).
fn quote_yaml11_bool_key(line: &str) -> std::borrow::Cow<'_, str> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let (dash, body) = match body.strip_prefix("- ") {
        Some(rest) => ("- ", rest),
        None => ("", body),
    };
    let Some((key, rest)) = body.split_once(':') else {
        return line.into();
    };
    let boolish = ["y", "yes", "n", "no", "true", "false", "on", "off"]
        .iter()
        .any(|b| key.eq_ignore_ascii_case(b));
    if boolish && (rest.is_empty() || rest.starts_with(' ')) {
        format!("{indent}{dash}'{key}':{rest}").into()
    } else {
        line.into()
    }
}

#[cfg(test)]
mod yaml_tests {
    use super::quote_yaml11_bool_key as q;

    #[test]
    fn boolean_looking_keys_are_quoted_and_nothing_else_changes() {
        assert_eq!(q("    on:"), "    'on':");
        assert_eq!(q("  - Off: 1"), "  - 'Off': 1");
        assert_eq!(q("    only:"), "    only:");
        assert_eq!(q("    description: on: off"), "    description: on: off");
        assert_eq!(q("    on"), "    on");
        assert_eq!(q("    'on':"), "    'on':");
    }

    #[test]
    fn the_generated_crds_keep_the_retries_on_property() {
        let text = super::crds_yaml().expect("renders");
        assert!(text.contains("'on':"), "spec.retries.on must be quoted");
        assert!(!text.lines().any(|l| l.trim() == "on:"));
    }
}
