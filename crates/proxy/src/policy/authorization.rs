//! Phase 3, `authorization`: what the authenticated caller may do. Every field that is
//! set must hold, else 403:
//!
//! - `consumers`: the caller's consumer name is one of them;
//! - `groups`: the caller is in at least one (its consumer Secret's `groups`, or its
//!   token's `groups` claim);
//! - `claims`: each named claim of the caller's token contains every listed value (an
//!   array holding it, or a space-separated string with it as a word).
//!
//! A request without an identity (no authentication on the rule, or `optional` let it
//! through without credentials) holds none of them.

use gatehouse_table::auth::Authorization as Config;

use super::jwt::claim_contains;
use crate::phases::Ctx;
use crate::problem::GatewayError;

/// A prepared `authorization` policy.
#[derive(Debug)]
pub struct Authorization(Config);

impl Authorization {
    /// Prepares the policy.
    pub fn prepare(c: &Config) -> Authorization {
        Authorization(c.clone())
    }
}

/// Phase 3, authorization.
pub(crate) fn check(cx: &Ctx<'_>) -> Result<(), GatewayError> {
    let Some(Authorization(rules)) = cx.policies().and_then(|p| p.authorization.as_ref()) else {
        return Ok(());
    };
    let id = cx.identity.as_ref();
    let consumer = id.and_then(|i| i.consumer.as_deref());
    if !rules.consumers.is_empty()
        && !consumer.is_some_and(|c| rules.consumers.iter().any(|a| a == c))
    {
        return Err(GatewayError::Forbidden(
            "The caller is not among the consumers this route allows.".into(),
        ));
    }
    if !rules.groups.is_empty()
        && !id.is_some_and(|i| i.groups.iter().any(|g| rules.groups.contains(g)))
    {
        return Err(GatewayError::Forbidden(
            "The caller is in none of the groups this route allows.".into(),
        ));
    }
    for c in &rules.claims {
        let claim = id
            .and_then(|i| i.claims.as_ref())
            .and_then(|m| m.get(&c.name));
        let holds = claim.is_some_and(|v| c.values.iter().all(|want| claim_contains(v, want)));
        if !holds {
            return Err(GatewayError::Forbidden(format!(
                "The caller's claim {} does not hold what this route requires.",
                c.name
            )));
        }
    }
    Ok(())
}
