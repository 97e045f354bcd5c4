//! Reading manifests from YAML text: multi-document files of Gatehouse kinds, Secrets,
//! Services and EndpointSlices, as `gatehouse run` and `gatehouse lint` see them.
//!
//! Parsing is strict where the API server would be lenient on purpose: a field that no
//! type knows (a typo such as `backend:`) is reported, not silently dropped.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::{ApiPolicy, ApiRoute, Upstream};

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub enum Object {
    /// A `gatehouse.dev/v1alpha1` ApiRoute.
    ApiRoute(Box<ApiRoute>),
    /// A `gatehouse.dev/v1alpha1` Upstream.
    Upstream(Box<Upstream>),
    /// A `gatehouse.dev/v1alpha1` ApiPolicy.
    ApiPolicy(Box<ApiPolicy>),
    /// A `v1` Secret (consumer or referenced by a route or upstream).
    Secret(Box<Secret>),
    /// A `v1` Service (resolves an Upstream's `service.port`).
    Service(Box<Service>),
    /// A `discovery.k8s.io/v1` EndpointSlice (the endpoints of a Service).
    EndpointSlice(Box<EndpointSlice>),
}

/// A parsed object with where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// `file` or `file#N` (N counting documents from 1).
    pub origin: String,
    /// The object, its namespace defaulted to `default`.
    pub object: Object,
    /// Fields present in the YAML that no type knows, as paths (`spec.rules.0.backend`).
    pub unknown_fields: Vec<String>,
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("{origin}: not valid YAML: {message}")]
    Yaml {
        /// File and document.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// YAML, but not an object with `apiVersion` and `kind`.
    #[error("{origin}: not a Kubernetes object (needs apiVersion and kind)")]
    NotAnObject {
        /// File and document.
        origin: String,
    },
    /// A known kind whose fields do not fit its type.
    #[error("{origin}: {kind} {name}: field {field}: {message}")]
    Invalid {
        /// File and document.
        origin: String,
        /// The kind.
        kind: String,
        /// `namespace/name`.
        name: String,
        /// Path to the field (`spec.rules[0].timeout`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A document of a kind Gatehouse does not read (a Deployment next to the routes, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// File and document.
    pub origin: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
}

/// Everything read from one text.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Objects read.
    pub documents: Vec<Document>,
    /// Documents that could not be read.
    pub errors: Vec<ManifestError>,
    /// Documents of kinds Gatehouse ignores.
    pub skipped: Vec<Skipped>,
}

/// Parses multi-document YAML. `file` names the text in origins and messages.
pub fn parse(file: &str, text: &str) -> Parsed {
    let mut out = Parsed::default();
    let docs = serde_yaml_ng::Deserializer::from_str(text);
    for (i, doc) in docs.enumerate() {
        let origin = format!("{file}#{}", i + 1);
        let value: serde_json::Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(ManifestError::Yaml {
                    origin,
                    message: e.to_string(),
                });
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match parse_value(&origin, value) {
            Ok(Some(d)) => out.documents.push(d),
            Ok(None) => {}
            Err(Outcome::Error(e)) => out.errors.push(e),
            Err(Outcome::Skipped(s)) => out.skipped.push(s),
        }
    }
    out
}

/// Reads a manifest file, or every `.yaml`, `.yml` and `.json` file below a directory
/// (hidden files and directories skipped), in path order so results are stable.
pub fn read_path(path: &std::path::Path) -> std::io::Result<Parsed> {
    let mut files = Vec::new();
    collect_files(path, &mut files, true)?;
    files.sort();
    let mut out = Parsed::default();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let p = parse(&f.display().to_string(), &text);
        out.documents.extend(p.documents);
        out.errors.extend(p.errors);
        out.skipped.extend(p.skipped);
    }
    Ok(out)
}

fn collect_files(
    path: &std::path::Path,
    out: &mut Vec<std::path::PathBuf>,
    top: bool,
) -> std::io::Result<()> {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n != "." && n != "..");
    if hidden && !top {
        return Ok(());
    }
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect_files(&entry?.path(), out, false)?;
        }
    } else if top
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

enum Outcome {
    Error(ManifestError),
    Skipped(Skipped),
}

fn parse_value(origin: &str, value: serde_json::Value) -> Result<Option<Document>, Outcome> {
    let (Some(api_version), Some(kind)) = (
        value.get("apiVersion").and_then(|v| v.as_str()),
        value.get("kind").and_then(|v| v.as_str()),
    ) else {
        return Err(Outcome::Error(ManifestError::NotAnObject {
            origin: origin.into(),
        }));
    };
    let (api_version, kind) = (api_version.to_string(), kind.to_string());
    let gatehouse = api_version == "gatehouse.dev/v1alpha1";
    let object = match (gatehouse, api_version.as_str(), kind.as_str()) {
        (true, _, "ApiRoute") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::ApiRoute(Box::new(o)), u))
        }
        (true, _, "Upstream") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::Upstream(Box::new(o)), u))
        }
        (true, _, "ApiPolicy") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::ApiPolicy(Box::new(o)), u))
        }
        (_, "v1", "Secret") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::Secret(Box::new(o)), u))
        }
        (_, "v1", "Service") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::Service(Box::new(o)), u))
        }
        (_, "discovery.k8s.io/v1", "EndpointSlice") => {
            typed(origin, &kind, value).map(|(o, u)| (Object::EndpointSlice(Box::new(o)), u))
        }
        _ => {
            return Err(Outcome::Skipped(Skipped {
                origin: origin.into(),
                api_version,
                kind,
            }));
        }
    };
    let (mut object, unknown_fields) = object.map_err(Outcome::Error)?;
    default_namespace(&mut object);
    Ok(Some(Document {
        origin: origin.into(),
        object,
        unknown_fields,
    }))
}

fn typed<K: DeserializeOwned>(
    origin: &str,
    kind: &str,
    value: serde_json::Value,
) -> Result<(K, Vec<String>), ManifestError> {
    let name = {
        let meta = value.get("metadata");
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("<unnamed>");
        format!("{ns}/{name}")
    };
    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        let p = path.to_string();
        // `apiVersion` and `kind` were read above. `status` is written by the controller;
        // a manifest copied from the cluster may carry it, and it is no mistake.
        if !(p == "apiVersion" || p == "kind" || p.starts_with("status")) {
            unknown.push(p);
        }
    };
    let de = serde_ignored::Deserializer::new(value, &mut note_unknown);
    let object = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ManifestError::Invalid {
            origin: origin.into(),
            kind: kind.into(),
            name,
            field,
            message: e.into_inner().to_string(),
        }
    })?;
    Ok((object, unknown))
}

fn default_namespace(object: &mut Object) {
    fn set<K: Resource>(k: &mut K) {
        let meta = k.meta_mut();
        if meta.namespace.as_deref().unwrap_or("").is_empty() {
            meta.namespace = Some("default".into());
        }
    }
    match object {
        Object::ApiRoute(o) => set(o.as_mut()),
        Object::Upstream(o) => set(o.as_mut()),
        Object::ApiPolicy(o) => set(o.as_mut()),
        Object::Secret(o) => set(o.as_mut()),
        Object::Service(o) => set(o.as_mut()),
        Object::EndpointSlice(o) => set(o.as_mut()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_and_defaults_the_namespace() {
        let text = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: users}
spec:
  endpoints: [{host: 127.0.0.1, port: 9001}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: users, namespace: shop}
spec:
  rules:
    - backends: [{upstream: users}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
"#;
        let p = parse("a.yaml", text);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.documents.len(), 2);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].kind, "Deployment");
        let Object::Upstream(u) = &p.documents[0].object else {
            panic!("first is the Upstream")
        };
        assert_eq!(u.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(p.documents[1].origin, "a.yaml#2");
    }

    #[test]
    fn reports_unknown_fields_and_type_errors_with_their_path() {
        let text = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: r}
spec:
  rules:
    - backend: [{upstream: users}]
      respond: {status: 200}
"#;
        let p = parse("r.yaml", text);
        assert_eq!(p.documents.len(), 1);
        assert_eq!(p.documents[0].unknown_fields, vec!["spec.rules.0.backend"]);

        let text = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: u}
spec:
  endpoints: [{host: a, port: "not-a-port"}]
"#;
        let p = parse("u.yaml", text);
        let [ManifestError::Invalid { field, name, .. }] = p.errors.as_slice() else {
            panic!("one error expected: {:?}", p.errors)
        };
        assert_eq!(field, "spec.endpoints[0].port");
        assert_eq!(name, "default/u");
    }

    #[test]
    fn reports_broken_yaml_and_non_objects() {
        let p = parse("x.yaml", "a: [1, 2\n");
        assert!(matches!(p.errors.as_slice(), [ManifestError::Yaml { .. }]));
        let p = parse("y.yaml", "just: a map\n");
        assert!(matches!(
            p.errors.as_slice(),
            [ManifestError::NotAnObject { .. }]
        ));
    }
}
