//! The committed CRDs (`crds/`) and field reference (`docs/reference.md`) equal what the
//! types generate. `UPDATE_CRDS=1` / `UPDATE_DOCS=1` rewrite them.

use std::path::PathBuf;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn check(rel: &str, generated: &str, var: &str) {
    let path = repo_file(rel);
    if std::env::var_os(var).is_some() {
        std::fs::write(&path, generated).expect("write");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{rel} is not what the types generate; run `make crds` (or {var}=1 cargo test -p gatehouse-api --test generated) and commit"
    );
}

#[test]
fn committed_crds_equal_the_generated_ones() {
    let yaml = gatehouse_api::crds_yaml().expect("CRDs render");
    check("crds/gatehouse.dev_crds.yaml", &yaml, "UPDATE_CRDS");
}

#[test]
fn field_reference_is_current() {
    check(
        "docs/reference.md",
        &gatehouse_api::reference::reference_markdown(),
        "UPDATE_DOCS",
    );
}

#[test]
fn crds_name_every_contract_field() {
    // A sample of fields from each part of spec/api.md, by their YAML names.
    let yaml = gatehouse_api::crds_yaml().expect("CRDs render");
    for field in [
        "service:",
        "endpoints:",
        "protocol:",
        "caSecretRef:",
        "clientCertificateRef:",
        "insecureSkipVerify:",
        "loadBalancer:",
        "hashOn:",
        "queryParam:",
        "clientIp:",
        "timeouts:",
        "idle:",
        "retries:",
        "statusCodes:",
        "perTryTimeout:",
        "backoff:",
        "budget:",
        "minPerSecond:",
        "idempotentOnly:",
        "healthCheck:",
        "expectedStatuses:",
        "consecutiveFailures:",
        "ejectionTime:",
        "maxEjectionPercent:",
        "circuitBreaker:",
        "maxPendingRequests:",
        "failureRatio:",
        "minimumRequests:",
        "openDuration:",
        "halfOpenRequests:",
        "readyEndpoints:",
        "totalEndpoints:",
        "hosts:",
        "secretName:",
        "version:",
        "scheme:",
        "deprecated:",
        "sunset:",
        "policyRefs:",
        "docs:",
        "rules:",
        "matches:",
        "methods:",
        "queryParams:",
        "backends:",
        "weight:",
        "mirror:",
        "percent:",
        "aggregate:",
        "calls:",
        "merge:",
        "onError:",
        "redirect:",
        "hostname:",
        "statusCode:",
        "respond:",
        "contentType:",
        "summary:",
        "requestBody:",
        "responses:",
        "rateLimit:",
        "limits:",
        "requests:",
        "period:",
        "key:",
        "scope:",
        "mode:",
        "maxDelay:",
        "failureMode:",
        "concurrencyLimit:",
        "maxInFlight:",
        "queue:",
        "queueTimeout:",
        "authentication:",
        "apiKey:",
        "consumerSelector:",
        "matchLabels:",
        "jwt:",
        "issuer:",
        "audiences:",
        "jwksUri:",
        "jwksSecretRef:",
        "hmacSecretRef:",
        "algorithms:",
        "clockSkew:",
        "tokenFrom:",
        "cookie:",
        "forwardClaims:",
        "basic:",
        "external:",
        "url:",
        "forwardHeaders:",
        "upstreamHeaders:",
        "optional:",
        "authorization:",
        "consumers:",
        "groups:",
        "claims:",
        "values:",
        "cors:",
        "allowOrigins:",
        "allowMethods:",
        "allowHeaders:",
        "exposeHeaders:",
        "allowCredentials:",
        "maxAge:",
        "cache:",
        "ttl:",
        "statuses:",
        "vary:",
        "perConsumer:",
        "respectCacheControl:",
        "maxEntryBytes:",
        "requestTransform:",
        "set:",
        "add:",
        "remove:",
        "replacePrefixMatch:",
        "replaceFullPath:",
        "query:",
        "body:",
        "rename:",
        "responseTransform:",
        "validation:",
        "request:",
        "contentTypes:",
        "maxBodyBytes:",
        "requiredHeaders:",
        "schema:",
        "response:",
        "waf:",
        "inspect:",
        "maxInspectBytes:",
        "allowCidrs:",
        "denyCidrs:",
        "coreRuleSet:",
        "enabled:",
        "paranoiaLevel:",
        "anomalyThreshold:",
        "exclusions:",
        "ruleId:",
        "paths:",
        "errors:",
        "format:",
        "replaceUpstream:",
        "overrides:",
        "attachedRoutes:",
        "observedGeneration:",
        "conditions:",
    ] {
        assert!(
            yaml.contains(&format!(" {field}\n")),
            "CRDs lack field {field}"
        );
    }
}
