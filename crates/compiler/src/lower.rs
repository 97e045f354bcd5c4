//! Lowering: the effective value of each policy field of a rule, as written in the layer
//! it came from, into the table's typed form (`gatehouse_table::policy`): durations in
//! milliseconds, every default applied, closed sets as enums, header names lowercase,
//! `${...}` templates parsed.
//!
//! Only validated values get here (`policy::validate` checked each layer; a layer that
//! failed keeps its route or ApiPolicy out of the table), so lowering does not fail in
//! practice; when it does, it says why instead of guessing, and the caller reports it.

use gatehouse_api::policy::{
    self as api, ErrorFormat, FailureMode, Policies, RateLimitKeyType, RateLimitMode,
    RateLimitScope, ResponseValidationMode,
};
use gatehouse_table::policy::{self as lowered, PolicyField, RulePolicies, Sourced};

use crate::auth;
use crate::values::{parse_duration, parse_template};

/// `rateLimit.maxDelay` when `mode: Delay` does not say. The API documents `500ms`, but
/// the data plane has always waited 0 (a `Delay` policy without `maxDelay` rejects like
/// `Reject`); kept so that behaviour does not change with the table format.
const DEFAULT_MAX_DELAY_MS: u64 = 0;
/// `concurrencyLimit.queueTimeout` when not written.
const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 1_000;
/// `cache.methods` when empty.
const DEFAULT_CACHE_METHODS: [&str; 2] = ["GET", "HEAD"];
/// `cache.statuses` when empty.
const DEFAULT_CACHE_STATUSES: [u16; 1] = [200];
/// `cache.maxEntryBytes` when not written.
const DEFAULT_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// `errors.overrides[].contentType` when not written.
const DEFAULT_OVERRIDE_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Sets `field` of `out` to its value in `p` (which sets it), from layer `source`.
pub(crate) fn field(
    out: &mut RulePolicies,
    field: PolicyField,
    p: &Policies,
    source: &str,
    secrets: &auth::Secrets<'_, '_>,
) -> Result<(), String> {
    fn sourced<A, T>(
        value: &Option<A>,
        source: &str,
        lower: impl FnOnce(&A) -> Result<T, String>,
    ) -> Result<Option<Sourced<T>>, String> {
        value
            .as_ref()
            .map(|v| {
                Ok(Sourced {
                    source: source.to_string(),
                    config: lower(v)?,
                })
            })
            .transpose()
    }
    match field {
        PolicyField::Waf => out.waf = sourced(&p.waf, source, waf)?,
        PolicyField::Authentication => {
            out.authentication = sourced(&p.authentication, source, |a| {
                auth::authentication(a, secrets)
            })?
        }
        PolicyField::Authorization => {
            out.authorization = sourced(&p.authorization, source, |a| Ok(auth::authorization(a)))?
        }
        PolicyField::Cors => out.cors = sourced(&p.cors, source, cors)?,
        PolicyField::RateLimit => out.rate_limit = sourced(&p.rate_limit, source, rate_limit)?,
        PolicyField::ConcurrencyLimit => {
            out.concurrency_limit = sourced(&p.concurrency_limit, source, concurrency_limit)?
        }
        PolicyField::Validation => out.validation = sourced(&p.validation, source, validation)?,
        PolicyField::Cache => out.cache = sourced(&p.cache, source, cache)?,
        PolicyField::RequestTransform => {
            out.request_transform = sourced(&p.request_transform, source, request_transform)?
        }
        PolicyField::ResponseTransform => {
            out.response_transform = sourced(&p.response_transform, source, response_transform)?
        }
        PolicyField::Errors => out.errors = sourced(&p.errors, source, errors)?,
    }
    Ok(())
}

/// `waf.maxInspectBytes` when not written.
const DEFAULT_MAX_INSPECT_BYTES: u64 = 64 * 1024;
/// `waf.coreRuleSet.paranoiaLevel` when not written.
const DEFAULT_PARANOIA_LEVEL: u8 = 1;
/// `waf.coreRuleSet.anomalyThreshold` when not written.
const DEFAULT_ANOMALY_THRESHOLD: u32 = 5;

fn waf(w: &api::Waf) -> Result<lowered::Waf, String> {
    let mut rules: Vec<lowered::WafRule> = match &w.rules {
        None => lowered::WafRule::ALL.to_vec(),
        Some(list) => list
            .iter()
            .map(|r| match r {
                api::WafRule::SqlInjection => lowered::WafRule::SqlInjection,
                api::WafRule::CrossSiteScripting => lowered::WafRule::CrossSiteScripting,
                api::WafRule::PathTraversal => lowered::WafRule::PathTraversal,
                api::WafRule::CommandInjection => lowered::WafRule::CommandInjection,
                api::WafRule::ScannerDetection => lowered::WafRule::ScannerDetection,
                api::WafRule::ProtocolViolation => lowered::WafRule::ProtocolViolation,
            })
            .collect(),
    };
    rules.sort();
    rules.dedup();
    let all = w.inspect.is_empty();
    let has = |t: api::WafTarget| all || w.inspect.contains(&t);
    let inspect = lowered::WafParts {
        path: has(api::WafTarget::Path),
        query: has(api::WafTarget::Query),
        headers: has(api::WafTarget::Headers),
        body: has(api::WafTarget::Body),
    };
    let nets = |list: &[String]| -> Result<Vec<ipnet::IpNet>, String> {
        list.iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| match n {
                        // `::ffff:192.0.2.0/120` is 192.0.2.0/24: clients are compared as
                        // IPv4 once canonical.
                        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => {
                            match v6.addr().to_ipv4_mapped() {
                                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                                    .map_or(n, ipnet::IpNet::V4),
                                None => n,
                            }
                        }
                        _ => n,
                    })
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{c:?} is not a CIDR or IP address"))
            })
            .collect()
    };
    let core_rule_set = match &w.core_rule_set {
        Some(crs) if crs.enabled == Some(true) => Some(lowered::CoreRuleSet {
            paranoia_level: crs
                .paranoia_level
                .map_or(Ok(DEFAULT_PARANOIA_LEVEL), u8::try_from)
                .map_err(|_| "coreRuleSet.paranoiaLevel: must be between 1 and 4".to_string())?,
            anomaly_threshold: crs.anomaly_threshold.unwrap_or(DEFAULT_ANOMALY_THRESHOLD),
            exclusions: crs
                .exclusions
                .iter()
                .map(|e| lowered::CrsExclusion {
                    rule_id: e.rule_id,
                    paths: e.paths.clone(),
                })
                .collect(),
        }),
        _ => None,
    };
    Ok(lowered::Waf {
        mode: match w.mode.unwrap_or_default() {
            api::WafMode::Block => lowered::WafMode::Block,
            api::WafMode::Detect => lowered::WafMode::Detect,
        },
        rules,
        inspect,
        max_inspect_bytes: w.max_inspect_bytes.unwrap_or(DEFAULT_MAX_INSPECT_BYTES),
        allow_cidrs: nets(&w.allow_cidrs)?,
        deny_cidrs: nets(&w.deny_cidrs)?,
        core_rule_set,
    })
}

fn duration(d: &gatehouse_api::Duration) -> Result<u64, String> {
    parse_duration(&d.0)
}

fn lowercase(list: &[String]) -> Vec<String> {
    list.iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn cors(c: &api::Cors) -> Result<lowered::Cors, String> {
    Ok(lowered::Cors {
        allow_origins: lowercase(&c.allow_origins),
        allow_methods: c
            .allow_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        allow_headers: lowercase(&c.allow_headers),
        expose_headers: c.expose_headers.clone(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        max_age_ms: c.max_age.as_ref().map(duration).transpose()?,
    })
}

fn rate_limit(r: &api::RateLimit) -> Result<lowered::RateLimit, String> {
    let limits = r
        .limits
        .iter()
        .map(|l| {
            Ok(lowered::Limit {
                requests: l.requests,
                period_ms: duration(&l.period)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let key = match &r.key {
        None => lowered::RateLimitKey::ClientIp,
        Some(k) => match (k.kind, &k.name) {
            (RateLimitKeyType::ClientIp, _) => lowered::RateLimitKey::ClientIp,
            (RateLimitKeyType::Consumer, _) => lowered::RateLimitKey::Consumer,
            (RateLimitKeyType::Route, _) => lowered::RateLimitKey::Route,
            (RateLimitKeyType::Header, Some(name)) => {
                lowered::RateLimitKey::Header(name.to_ascii_lowercase())
            }
            (RateLimitKeyType::Claim, Some(name)) => lowered::RateLimitKey::Claim(name.clone()),
            (RateLimitKeyType::Header | RateLimitKeyType::Claim, None) => {
                return Err("key: Header and Claim keys need a name".into());
            }
        },
    };
    let mode = match r.mode.unwrap_or_default() {
        RateLimitMode::Reject => lowered::RateLimitMode::Reject,
        RateLimitMode::Delay => lowered::RateLimitMode::Delay,
    };
    let max_delay_ms = match mode {
        lowered::RateLimitMode::Reject => 0,
        lowered::RateLimitMode::Delay => match &r.max_delay {
            Some(d) => duration(d)?,
            None => DEFAULT_MAX_DELAY_MS,
        },
    };
    Ok(lowered::RateLimit {
        limits,
        key,
        scope: match r.scope.unwrap_or_default() {
            RateLimitScope::Local => lowered::RateLimitScope::Local,
            RateLimitScope::Global => lowered::RateLimitScope::Global,
        },
        mode,
        max_delay_ms,
        failure_mode: match r.failure_mode.unwrap_or_default() {
            FailureMode::Open => lowered::FailureMode::Open,
            FailureMode::Closed => lowered::FailureMode::Closed,
        },
    })
}

fn concurrency_limit(c: &api::ConcurrencyLimit) -> Result<lowered::ConcurrencyLimit, String> {
    Ok(lowered::ConcurrencyLimit {
        max_in_flight: c.max_in_flight,
        queue: c.queue.unwrap_or(0),
        queue_timeout_ms: match &c.queue_timeout {
            Some(d) => duration(d)?,
            None => DEFAULT_QUEUE_TIMEOUT_MS,
        },
    })
}

/// `text/html; charset=utf-8` → `text/html`.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

fn validation(v: &api::Validation) -> Result<lowered::Validation, String> {
    let request = v.request.as_ref().map(|r| lowered::RequestValidation {
        content_types: r
            .content_types
            .iter()
            .map(|t| essence(t).to_ascii_lowercase())
            .collect(),
        max_body_bytes: r.max_body_bytes,
        required_headers: lowercase(&r.required_headers),
        schema: r.schema.clone(),
    });
    // Without a schema there is nothing to check in a response.
    let response = v.response.as_ref().and_then(|r| {
        Some(lowered::ResponseValidation {
            schema: r.schema.clone()?,
            mode: match r.mode.unwrap_or_default() {
                ResponseValidationMode::Enforce => lowered::ResponseValidationMode::Enforce,
                ResponseValidationMode::Report => lowered::ResponseValidationMode::Report,
            },
        })
    });
    Ok(lowered::Validation { request, response })
}

fn cache(c: &api::Cache) -> Result<lowered::Cache, String> {
    Ok(lowered::Cache {
        ttl_ms: duration(&c.ttl)?,
        methods: if c.methods.is_empty() {
            DEFAULT_CACHE_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect()
        } else {
            c.methods.clone()
        },
        statuses: if c.statuses.is_empty() {
            DEFAULT_CACHE_STATUSES.to_vec()
        } else {
            c.statuses.clone()
        },
        vary: lowercase(&c.vary),
        per_consumer: c.per_consumer.unwrap_or(false),
        respect_cache_control: c.respect_cache_control.unwrap_or(true),
        max_entry_bytes: c.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES),
    })
}

fn header_edits(h: &api::HeaderEdits) -> Result<lowered::HeaderEdits, String> {
    let templates = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(name, value)| {
                Ok(lowered::HeaderTemplate {
                    name: name.to_ascii_lowercase(),
                    value: parse_template(value)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(lowered::HeaderEdits {
        set: templates(&h.set)?,
        add: templates(&h.add)?,
        remove: lowercase(&h.remove),
    })
}

fn body_edits(b: &api::BodyEdits) -> Result<lowered::BodyEdits, String> {
    Ok(lowered::BodyEdits {
        set: b
            .set
            .iter()
            .map(|(pointer, value)| Ok((pointer.clone(), parse_template(value)?)))
            .collect::<Result<_, String>>()?,
        remove: b.remove.clone(),
        rename: b.rename.clone(),
    })
}

fn request_transform(t: &api::RequestTransform) -> Result<lowered::RequestTransform, String> {
    let path = match &t.path {
        None => None,
        Some(p) => Some(match (&p.replace_prefix_match, &p.replace_full_path) {
            (Some(prefix), _) => lowered::PathRewrite::ReplacePrefixMatch(prefix.clone()),
            (None, Some(full)) => lowered::PathRewrite::ReplaceFullPath(parse_template(full)?),
            (None, None) => {
                return Err("path: one of replacePrefixMatch or replaceFullPath".into());
            }
        }),
    };
    let query = match &t.query {
        None => lowered::QueryEdits::default(),
        Some(q) => lowered::QueryEdits {
            set: q
                .set
                .iter()
                .map(|(name, value)| Ok((name.clone(), parse_template(value)?)))
                .collect::<Result<_, String>>()?,
            remove: q.remove.clone(),
        },
    };
    Ok(lowered::RequestTransform {
        headers: t.headers.as_ref().map(header_edits).transpose()?,
        path,
        hostname: t.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
        query,
        body: t.body.as_ref().map(body_edits).transpose()?,
    })
}

fn response_transform(t: &api::ResponseTransform) -> Result<lowered::ResponseTransform, String> {
    Ok(lowered::ResponseTransform {
        headers: t.headers.as_ref().map(header_edits).transpose()?,
        body: t.body.as_ref().map(body_edits).transpose()?,
    })
}

fn errors(e: &api::ErrorPolicy) -> Result<lowered::ErrorPolicy, String> {
    Ok(lowered::ErrorPolicy {
        format: match e.format.unwrap_or_default() {
            ErrorFormat::Problem => lowered::ErrorFormat::Problem,
            ErrorFormat::Json => lowered::ErrorFormat::Json,
            ErrorFormat::Text => lowered::ErrorFormat::Text,
        },
        replace_upstream: e.replace_upstream.clone(),
        overrides: e
            .overrides
            .iter()
            .map(|o| lowered::ErrorOverride {
                status: o.status,
                content_type: o
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_OVERRIDE_CONTENT_TYPE.into()),
                body: o.body.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::TemplatePart;

    fn lower(yaml: &str) -> RulePolicies {
        let p: Policies = serde_yaml_ng::from_str(yaml).expect("policies");
        let mut out = RulePolicies::default();
        let index = crate::Index::default();
        let secrets = auth::Secrets {
            ns: "default",
            index: &index,
        };
        for f in crate::policy::set_fields(&p) {
            field(&mut out, f, &p, "rule", &secrets).expect("lowers");
        }
        out
    }

    #[test]
    fn defaults_are_applied() {
        let p = lower(
            "rateLimit: {limits: [{requests: 5, period: 1m}], mode: Delay}\n\
             concurrencyLimit: {maxInFlight: 3}\n\
             cache: {ttl: 30s}\n\
             errors: {overrides: [{status: 503, body: later}]}\n\
             waf: {}\n",
        );
        let rl = p.rate_limit.expect("rateLimit").config;
        assert_eq!(
            rl.limits,
            vec![lowered::Limit {
                requests: 5,
                period_ms: 60_000
            }]
        );
        assert_eq!(rl.key, lowered::RateLimitKey::ClientIp);
        assert_eq!(rl.scope, lowered::RateLimitScope::Local);
        assert_eq!(rl.mode, lowered::RateLimitMode::Delay);
        assert_eq!(rl.max_delay_ms, DEFAULT_MAX_DELAY_MS);
        assert_eq!(rl.failure_mode, lowered::FailureMode::Open);
        let cl = p.concurrency_limit.expect("concurrencyLimit").config;
        assert_eq!((cl.queue, cl.queue_timeout_ms), (0, 1_000));
        let c = p.cache.expect("cache").config;
        assert_eq!(c.ttl_ms, 30_000);
        assert_eq!(c.methods, vec!["GET".to_string(), "HEAD".to_string()]);
        assert_eq!(c.statuses, vec![200]);
        assert!(!c.per_consumer && c.respect_cache_control);
        assert_eq!(c.max_entry_bytes, 1 << 20);
        let e = p.errors.expect("errors").config;
        assert_eq!(e.format, lowered::ErrorFormat::Problem);
        assert_eq!(e.overrides[0].content_type, "text/plain; charset=utf-8");
        assert_eq!(p.waf.map(|w| w.source).as_deref(), Some("rule"));
    }

    #[test]
    fn names_are_lowercased_and_templates_parsed() {
        let p = lower(
            "rateLimit: {limits: [{requests: 1, period: 1s}], key: {type: Header, name: X-User}}\n\
             cors: {allowOrigins: [HTTPS://App.Example.com], allowMethods: [get], allowHeaders: [Content-Type, '*'], maxAge: 10m}\n\
             validation: {request: {contentTypes: ['Application/JSON; charset=utf-8'], requiredHeaders: [X-Id]}, response: {mode: Report}}\n\
             requestTransform: {headers: {set: {X-Client: '${clientIp}'}, remove: [X-Internal]}, path: {replaceFullPath: '/u/${path.id}'}, hostname: Users.Internal, query: {set: {q: x}}}\n",
        );
        assert_eq!(
            p.rate_limit.expect("rateLimit").config.key,
            lowered::RateLimitKey::Header("x-user".into())
        );
        let cors = p.cors.expect("cors").config;
        assert_eq!(cors.allow_origins, vec!["https://app.example.com"]);
        assert_eq!(cors.allow_methods, vec!["GET"]);
        assert_eq!(cors.allow_headers, vec!["content-type", "*"]);
        assert_eq!(cors.max_age_ms, Some(600_000));
        let v = p.validation.expect("validation").config;
        let r = v.request.expect("request");
        assert_eq!(r.content_types, vec!["application/json"]);
        assert_eq!(r.required_headers, vec!["x-id"]);
        assert!(v.response.is_none(), "no schema: nothing to check");
        let t = p.request_transform.expect("requestTransform").config;
        let h = t.headers.expect("headers");
        assert_eq!(h.set[0].name, "x-client");
        assert_eq!(h.set[0].value, vec![TemplatePart::ClientIp]);
        assert_eq!(h.remove, vec!["x-internal"]);
        assert_eq!(
            t.path,
            Some(lowered::PathRewrite::ReplaceFullPath(vec![
                TemplatePart::Literal("/u/".into()),
                TemplatePart::PathParam("id".into()),
            ]))
        );
        assert_eq!(t.hostname.as_deref(), Some("users.internal"));
        assert_eq!(
            t.query.set.get("q"),
            Some(&vec![TemplatePart::Literal("x".into())])
        );
    }
}
