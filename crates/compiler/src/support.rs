//! What the data plane implements: the one list that later work shrinks.
//!
//! A field that is set but not in this list produces an `UnsupportedValue` diagnostic.
//! Fields that change how traffic is handled fail closed (the rule or upstream answers
//! 503 instead of being served without them); informational fields (`docs`) only warn.
//! When a feature lands in the proxy, its entry here flips, and its tests come with it.

use gatehouse_api::Policies;
use gatehouse_api::upstream::{LoadBalancerPolicy, UpstreamSpec};
use gatehouse_table::PolicyField;

/// The parts of a policy field the proxy does not enforce yet, relative to the field
/// (`""` for the whole field, a sub-field name when only part of it is missing; the
/// policies that set the field are passed for such parts). Empty when the policy, as
/// configured, is enforced.
pub fn unsupported_policy_parts(field: PolicyField, _policies: &Policies) -> Vec<&'static str> {
    match field {
        PolicyField::Cors
        | PolicyField::ConcurrencyLimit
        | PolicyField::RequestTransform
        | PolicyField::ResponseTransform
        | PolicyField::Errors
        | PolicyField::RateLimit
        | PolicyField::Validation
        | PolicyField::Cache
        | PolicyField::Authentication
        | PolicyField::Authorization
        | PolicyField::Waf => Vec::new(),
    }
}

/// Rule `mirror`.
pub const RULE_MIRROR: bool = false;
/// Rule `aggregate`.
pub const RULE_AGGREGATE: bool = false;
/// The docs portal (informational: warns only).
pub const DOCS: bool = false;

/// Upstream fields set in `spec` that the proxy does not implement, as field paths.
pub fn unsupported_upstream_fields(spec: &UpstreamSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Some(lb) = &spec.load_balancer {
        if lb.policy.unwrap_or_default() != LoadBalancerPolicy::RoundRobin {
            out.push("spec.loadBalancer.policy");
        }
        if lb.hash_on.is_some() {
            out.push("spec.loadBalancer.hashOn");
        }
    }
    if spec.retries.is_some() {
        out.push("spec.retries");
    }
    if spec.health_check.is_some() {
        out.push("spec.healthCheck");
    }
    if spec.circuit_breaker.is_some() {
        out.push("spec.circuitBreaker");
    }
    out
}
