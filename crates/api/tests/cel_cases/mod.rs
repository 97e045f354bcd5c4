//! The CEL test cases, one or more per rule: shared by `cel.rs` (a CEL interpreter,
//! everywhere) and the controller's e2e suite (`crates/gatehouse/tests/kube.rs`, the
//! real API server), which include this file as a module.

use serde_json::{Value, json};

/// One object and what the rules say about it.
pub struct Case {
    /// `ApiRoute`, `Upstream` or `ApiPolicy`.
    pub kind: &'static str,
    /// The object's spec.
    pub spec: Value,
    /// The one rule message expected to fail, or `None` for an object that passes.
    pub rejects: Option<&'static str>,
}

fn route(rule: Value) -> Value {
    json!({"rules": [rule]})
}

fn route_policies(p: Value) -> Value {
    json!({"policies": p, "rules": [{"respond": {"status": 200}}]})
}

fn up(extra: Value) -> Value {
    let mut spec = json!({"endpoints": [{"host": "127.0.0.1", "port": 9001}]});
    if let (Value::Object(s), Value::Object(e)) = (&mut spec, extra) {
        s.extend(e);
    }
    spec
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let ok = |kind, spec| Case {
        kind,
        spec,
        rejects: None,
    };
    let bad = |kind, spec, msg| Case {
        kind,
        spec,
        rejects: Some(msg),
    };
    vec![
        // Upstream: service | endpoints
        ok("Upstream", up(json!({}))),
        ok(
            "Upstream",
            json!({"service": {"name": "users", "port": "http"}}),
        ),
        bad(
            "Upstream",
            json!({"protocol": "HTTP1"}),
            "exactly one of service or endpoints must be set",
        ),
        bad(
            "Upstream",
            json!({"service": {"name": "users", "port": 80}, "endpoints": [{"host": "a", "port": 1}]}),
            "exactly one of service or endpoints must be set",
        ),
        // Upstream TLS
        ok(
            "Upstream",
            up(json!({"tls": {"caSecretRef": {"name": "ca"}, "insecureSkipVerify": false}})),
        ),
        bad(
            "Upstream",
            up(json!({"tls": {"caSecretRef": {"name": "ca"}, "insecureSkipVerify": true}})),
            "caSecretRef and insecureSkipVerify: true are mutually exclusive",
        ),
        // Load balancer and hashOn
        ok(
            "Upstream",
            up(json!({"loadBalancer": {"policy": "RingHash", "hashOn": {"header": "x-user"}}})),
        ),
        ok(
            "Upstream",
            up(json!({"loadBalancer": {"policy": "LeastRequest"}})),
        ),
        bad(
            "Upstream",
            up(json!({"loadBalancer": {"policy": "RoundRobin", "hashOn": {"header": "x-user"}}})),
            "hashOn is required by RingHash and Maglev and allowed only with them",
        ),
        bad(
            "Upstream",
            up(json!({"loadBalancer": {"policy": "Maglev"}})),
            "hashOn is required by RingHash and Maglev and allowed only with them",
        ),
        bad(
            "Upstream",
            up(
                json!({"loadBalancer": {"policy": "Maglev", "hashOn": {"header": "a", "cookie": "b"}}}),
            ),
            "hashOn takes exactly one of header, cookie, queryParam, clientIp",
        ),
        ok(
            "Upstream",
            up(json!({"loadBalancer": {"policy": "Maglev", "hashOn": {"clientIp": true}}})),
        ),
        // Circuit breaker ratio
        ok(
            "Upstream",
            up(json!({"circuitBreaker": {"failureRatio": 0.5}})),
        ),
        ok(
            "Upstream",
            up(json!({"circuitBreaker": {"failureRatio": 1.0}})),
        ),
        bad(
            "Upstream",
            up(json!({"circuitBreaker": {"failureRatio": 1.5}})),
            "failureRatio must be greater than 0 and at most 1",
        ),
        bad(
            "Upstream",
            up(json!({"circuitBreaker": {"failureRatio": 0.0}})),
            "failureRatio must be greater than 0 and at most 1",
        ),
        // Rule: exactly one action; mirror needs backends
        ok(
            "ApiRoute",
            route(json!({"backends": [{"upstream": "u"}], "mirror": {"upstream": "s"}})),
        ),
        bad(
            "ApiRoute",
            route(json!({"timeout": "1s"})),
            "exactly one of backends, aggregate, redirect, respond must be set",
        ),
        bad(
            "ApiRoute",
            route(json!({"backends": [{"upstream": "u"}], "respond": {"status": 200}})),
            "exactly one of backends, aggregate, redirect, respond must be set",
        ),
        bad(
            "ApiRoute",
            route(json!({"respond": {"status": 200}, "mirror": {"upstream": "s"}})),
            "mirror requires backends",
        ),
        // Mirror percent
        ok(
            "ApiRoute",
            route(
                json!({"backends": [{"upstream": "u"}], "mirror": {"upstream": "s", "percent": 100}}),
            ),
        ),
        bad(
            "ApiRoute",
            route(
                json!({"backends": [{"upstream": "u"}], "mirror": {"upstream": "s", "percent": 101}}),
            ),
            "percent must be between 0 and 100",
        ),
        // Path match
        ok(
            "ApiRoute",
            route(
                json!({"matches": [{"path": {"type": "Regex", "value": "^/a.*"}}], "respond": {"status": 200}}),
            ),
        ),
        bad(
            "ApiRoute",
            route(
                json!({"matches": [{"path": {"type": "Prefix", "value": "users"}}], "respond": {"status": 200}}),
            ),
            "Exact, Prefix and Template paths must start with /",
        ),
        // Header / query match value
        ok(
            "ApiRoute",
            route(
                json!({"matches": [{"headers": [{"name": "x", "type": "Present"}]}], "respond": {"status": 200}}),
            ),
        ),
        ok(
            "ApiRoute",
            route(
                json!({"matches": [{"queryParams": [{"name": "q", "value": "1"}]}], "respond": {"status": 200}}),
            ),
        ),
        bad(
            "ApiRoute",
            route(
                json!({"matches": [{"headers": [{"name": "x", "type": "Present", "value": "v"}]}], "respond": {"status": 200}}),
            ),
            "value is required by Exact and Regex and not allowed with Present",
        ),
        bad(
            "ApiRoute",
            route(
                json!({"matches": [{"queryParams": [{"name": "q", "type": "Regex"}]}], "respond": {"status": 200}}),
            ),
            "value is required by Exact and Regex and not allowed with Present",
        ),
        // Redirect
        ok(
            "ApiRoute",
            route(json!({"redirect": {"scheme": "https", "statusCode": 301}})),
        ),
        bad(
            "ApiRoute",
            route(json!({"redirect": {"statusCode": 200}})),
            "statusCode must be one of 301, 302, 303, 307, 308",
        ),
        bad(
            "ApiRoute",
            route(json!({"redirect": {"scheme": "ftp"}})),
            "scheme must be http or https",
        ),
        // Respond
        ok(
            "ApiRoute",
            route(json!({"respond": {"status": 503, "body": "{}"}})),
        ),
        bad(
            "ApiRoute",
            route(json!({"respond": {"status": 99}})),
            "status must be between 200 and 599",
        ),
        // Version
        ok(
            "ApiRoute",
            json!({"version": {"name": "v2", "scheme": "Header", "header": "X-Api-Version"}, "rules": [{"respond": {"status": 200}}]}),
        ),
        bad(
            "ApiRoute",
            json!({"version": {"name": "v2", "header": "X-Api-Version"}, "rules": [{"respond": {"status": 200}}]}),
            "header applies only to the Header scheme",
        ),
        bad(
            "ApiRoute",
            json!({"version": {"name": "v2", "scheme": "Header", "queryParam": "v"}, "rules": [{"respond": {"status": 200}}]}),
            "queryParam applies only to the Query scheme",
        ),
        // Policies (route level; the same struct is ApiPolicy's spec)
        ok(
            "ApiRoute",
            route_policies(
                json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "mode": "Delay", "maxDelay": "500ms"}}),
            ),
        ),
        bad(
            "ApiRoute",
            route_policies(
                json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "maxDelay": "500ms"}}),
            ),
            "maxDelay applies only to mode Delay",
        ),
        bad(
            "ApiPolicy",
            json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "scope": "Local", "failureMode": "Closed"}}),
            "failureMode applies only to scope Global",
        ),
        ok(
            "ApiPolicy",
            json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "key": {"type": "Header", "name": "x-tenant"}}}),
        ),
        bad(
            "ApiPolicy",
            json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "key": {"type": "ClientIp", "name": "x"}}}),
            "name is required by Header and Claim keys and allowed only with them",
        ),
        bad(
            "ApiPolicy",
            json!({"rateLimit": {"limits": [{"requests": 10, "period": "1s"}], "key": {"type": "Claim"}}}),
            "name is required by Header and Claim keys and allowed only with them",
        ),
        ok("ApiPolicy", json!({"authentication": {"apiKey": {}}})),
        bad(
            "ApiPolicy",
            json!({"authentication": {"optional": true}}),
            "authentication needs at least one of apiKey, jwt, basic, external",
        ),
        ok(
            "ApiPolicy",
            json!({"authentication": {"jwt": {"jwksUri": "https://a/jwks"}}}),
        ),
        bad(
            "ApiPolicy",
            json!({"authentication": {"jwt": {"issuer": "https://a/"}}}),
            "jwt needs keys: jwksUri, jwksSecretRef or hmacSecretRef",
        ),
        bad(
            "ApiPolicy",
            json!({"authentication": {"jwt": {"jwksUri": "https://a/jwks", "jwksSecretRef": {"name": "j", "key": "k"}}}}),
            "jwksUri and jwksSecretRef are mutually exclusive",
        ),
        ok(
            "ApiPolicy",
            json!({"requestTransform": {"path": {"replacePrefixMatch": "/internal"}}}),
        ),
        bad(
            "ApiPolicy",
            json!({"requestTransform": {"path": {"replacePrefixMatch": "/a", "replaceFullPath": "/b"}}}),
            "exactly one of replacePrefixMatch or replaceFullPath must be set",
        ),
        bad(
            "ApiPolicy",
            json!({"requestTransform": {"path": {}}}),
            "exactly one of replacePrefixMatch or replaceFullPath must be set",
        ),
        ok(
            "ApiPolicy",
            json!({"waf": {"coreRuleSet": {"enabled": true, "paranoiaLevel": 4, "anomalyThreshold": 5}}}),
        ),
        bad(
            "ApiPolicy",
            json!({"waf": {"coreRuleSet": {"paranoiaLevel": 5}}}),
            "paranoiaLevel must be between 1 and 4",
        ),
        bad(
            "ApiPolicy",
            json!({"waf": {"coreRuleSet": {"anomalyThreshold": 0}}}),
            "anomalyThreshold must be at least 1",
        ),
        ok(
            "ApiPolicy",
            json!({"errors": {"overrides": [{"status": 503, "body": "later"}]}}),
        ),
        bad(
            "ApiPolicy",
            json!({"errors": {"overrides": [{"status": 200, "body": "x"}]}}),
            "status must be between 400 and 599",
        ),
    ]
}
