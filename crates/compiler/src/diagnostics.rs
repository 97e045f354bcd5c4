//! Diagnostics: what the compiler says about each object, in the terms that become
//! status conditions (`Accepted`, `ResolvedRefs`) and `gatehouse lint` lines.

use std::fmt;

use serde::Serialize;

/// The kinds the compiler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    /// `gatehouse.dev/v1alpha1` ApiRoute.
    ApiRoute,
    /// `gatehouse.dev/v1alpha1` Upstream.
    Upstream,
    /// `gatehouse.dev/v1alpha1` ApiPolicy.
    ApiPolicy,
    /// `v1` Secret.
    Secret,
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An object, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        [self.namespace.as_str(), "/", self.name.as_str()].concat()
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object (or the part named) is not served as written; `lint` exits 1.
    Error,
    /// Served, but probably not as intended.
    Warning,
}

/// The status condition a diagnostic bears on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConditionType {
    /// Whether the object is valid and served.
    Accepted,
    /// Whether everything it references exists.
    ResolvedRefs,
}

/// The reason, in status-condition form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A value is malformed (bad regex, template, duration...).
    Invalid,
    /// Another, older route has the same host and match.
    Conflicted,
    /// A field whose behaviour the data plane does not implement yet. Traffic-affecting
    /// fields fail closed: the affected rules answer 503.
    UnsupportedValue,
    /// A backend, mirror or aggregate call names a missing or unaccepted Upstream.
    UpstreamNotFound,
    /// A `policyRefs` entry names a missing or unaccepted ApiPolicy.
    PolicyNotFound,
    /// A referenced Secret is missing.
    SecretNotFound,
    /// A certificate Secret is unusable: not PEM, the key is not the certificate's, or
    /// it is outside its dates.
    InvalidCertificate,
    /// The Upstream's Service is missing.
    ServiceNotFound,
    /// The Upstream's Service has no such port.
    PortNotFound,
    /// Served, with less than the object asks for (warnings only): e.g. a `scope:
    /// Global` rate limit counted per replica because no Redis is configured.
    Degraded,
}

impl Reason {
    /// The condition this reason sets to False.
    pub fn condition(self) -> ConditionType {
        match self {
            Reason::Invalid | Reason::Conflicted | Reason::UnsupportedValue | Reason::Degraded => {
                ConditionType::Accepted
            }
            _ => ConditionType::ResolvedRefs,
        }
    }
}

impl Reason {
    /// The reason as written in a status condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "Invalid",
            Reason::Conflicted => "Conflicted",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::UpstreamNotFound => "UpstreamNotFound",
            Reason::PolicyNotFound => "PolicyNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::PortNotFound => "PortNotFound",
            Reason::Degraded => "Degraded",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// The object.
    pub object: ObjectRef,
    /// Path of the field inside it (`spec.rules[0].matches[0].path.value`).
    pub field: String,
    /// Error or warning.
    pub severity: Severity,
    /// Status reason.
    pub reason: Reason,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}: {}: {}: {} ({})",
            self.object, self.field, self.message, self.reason
        )
    }
}

/// Collects diagnostics for one object.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    object: ObjectRef,
    out: &'a mut Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(object: ObjectRef, out: &'a mut Vec<Diagnostic>) -> Self {
        Sink { object, out }
    }

    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    pub fn error(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.push(Severity::Error, field, reason, message);
    }

    pub fn warning(
        &mut self,
        field: impl Into<String>,
        reason: Reason,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, field, reason, message);
    }

    fn push(
        &mut self,
        severity: Severity,
        field: impl Into<String>,
        reason: Reason,
        message: impl Into<String>,
    ) {
        self.out.push(Diagnostic {
            object: self.object.clone(),
            field: field.into(),
            severity,
            reason,
            message: message.into(),
        });
    }
}
