//! What the data plane implements: the one list that later work shrinks.
//!
//! A field that is set but not in this list produces an `UnsupportedValue` diagnostic.
//! Fields that change how traffic is handled fail closed (the rule or upstream answers
//! 503 instead of being served without them); informational fields (`docs`) only warn.
//! When a feature lands in the proxy, its entry here flips, and its tests come with it.

use gatehouse_api::Policies;
use gatehouse_api::upstream::UpstreamSpec;
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

/// Upstream fields set in `spec` that the proxy does not implement, as field paths.
/// Every Upstream field is implemented; the list stays for the fields to come.
pub fn unsupported_upstream_fields(_spec: &UpstreamSpec) -> Vec<&'static str> {
    Vec::new()
}
