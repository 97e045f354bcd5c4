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
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
