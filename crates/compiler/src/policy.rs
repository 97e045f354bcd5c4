//! Policies: validation of each field beyond what the CRD schema can say, and the
//! split into top-level fields that layering replaces one by one.

use std::net::IpAddr;

use gatehouse_api::policy::{
    Authentication, Cache, ConcurrencyLimit, Cors, ErrorPolicy, HeaderEdits, PathRewrite, Policies,
    RateLimit, RateLimitKeyType, RateLimitScope, RequestTransform, Validation, Waf,
};
use gatehouse_api::{Duration, SecretKeyRef};
use gatehouse_table::PolicyField;
use ipnet::IpNet;

use crate::Index;
use crate::diagnostics::{Reason, Sink};
use crate::values::{is_dns_name, is_json_pointer, is_token, parse_duration, parse_template};

/// Algorithms a JWT may be signed with. `none` is never among them.
const JWT_ALGORITHMS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// The fields a `Policies` value sets, in request-path order.
pub(crate) fn set_fields(p: &Policies) -> Vec<PolicyField> {
    PolicyField::ALL
        .into_iter()
        .filter(|f| is_set(p, *f))
        .collect()
}

/// Whether `p` sets `field`.
pub(crate) fn is_set(p: &Policies, field: PolicyField) -> bool {
    match field {
        PolicyField::Waf => p.waf.is_some(),
        PolicyField::Cors => p.cors.is_some(),
        PolicyField::Authentication => p.authentication.is_some(),
        PolicyField::Authorization => p.authorization.is_some(),
        PolicyField::RateLimit => p.rate_limit.is_some(),
        PolicyField::ConcurrencyLimit => p.concurrency_limit.is_some(),
        PolicyField::Validation => p.validation.is_some(),
        PolicyField::Cache => p.cache.is_some(),
        PolicyField::RequestTransform => p.request_transform.is_some(),
        PolicyField::ResponseTransform => p.response_transform.is_some(),
        PolicyField::Errors => p.errors.is_some(),
    }
}

/// Checks a `Policies` value written at `prefix` (e.g. `spec.rules[0].policies`) in an
/// object of namespace `ns`. Returns whether it is valid.
pub(crate) fn validate(
    p: &Policies,
    prefix: &str,
    ns: &str,
    index: &Index<'_>,
    sink: &mut Sink<'_>,
) -> bool {
    let mut c = Checker {
        prefix,
        ns,
        index,
        sink,
        valid: true,
    };
    if let Some(rl) = &p.rate_limit {
        c.rate_limit(rl);
    }
    if let Some(cl) = &p.concurrency_limit {
        c.concurrency_limit(cl);
    }
    if let Some(a) = &p.authentication {
        c.authentication(a);
    }
    if let Some(cors) = &p.cors {
        c.cors(cors);
    }
    if let Some(cache) = &p.cache {
        c.cache(cache);
    }
    if let Some(t) = &p.request_transform {
        c.request_transform(t);
    }
    if let Some(t) = &p.response_transform {
        if let Some(h) = &t.headers {
            c.header_edits("responseTransform.headers", h);
        }
        if let Some(b) = &t.body {
            c.body_edits("responseTransform.body", b);
        }
    }
    if let Some(v) = &p.validation {
        c.validation(v);
    }
    if let Some(w) = &p.waf {
        c.waf(w);
    }
    if let Some(e) = &p.errors {
        c.errors(e);
    }
    c.valid
}

struct Checker<'a, 'b, 's> {
    prefix: &'a str,
    ns: &'a str,
    index: &'a Index<'b>,
    sink: &'a mut Sink<'s>,
    valid: bool,
}

impl Checker<'_, '_, '_> {
    fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.prefix)
    }

    fn invalid(&mut self, field: &str, message: String) {
        let f = self.path(field);
        self.sink.error(f, Reason::Invalid, message);
        self.valid = false;
    }

    fn duration(&mut self, field: &str, d: Option<&Duration>, positive: bool) {
        if let Some(d) = d {
            match parse_duration(&d.0) {
                Ok(0) if positive => self.invalid(field, "must be greater than 0".into()),
                Ok(_) => {}
                Err(e) => self.invalid(field, e),
            }
        }
    }

    fn token(&mut self, field: &str, s: &str) {
        if !is_token(s) {
            self.invalid(field, format!("{s:?} is not a valid HTTP token"));
        }
    }

    fn template(&mut self, field: &str, s: &str) {
        if let Err(e) = parse_template(s) {
            self.invalid(field, e);
        }
    }

    fn statuses(&mut self, field: &str, list: &[u16], min: u16) {
        for (i, s) in list.iter().enumerate() {
            if !(min..=599).contains(s) {
                self.invalid(
                    &format!("{field}[{i}]"),
                    format!("status {s} is outside {min}..599"),
                );
            }
        }
    }

    fn secret(&mut self, field: &str, r: &SecretKeyRef) {
        let ns = self.ns;
        match self.index.secret(ns, &r.name) {
            None => {
                let f = self.path(field);
                self.sink.error(
                    f,
                    Reason::SecretNotFound,
                    format!("Secret {ns}/{} not found", r.name),
                );
                // Keys are missing: the policy cannot be enforced, so it is not used
                // (rules that reference it answer 503) rather than applied without them.
                self.valid = false;
            }
            Some(s) => {
                let has_key = s
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&r.key))
                    || s.data.as_ref().is_some_and(|d| d.contains_key(&r.key));
                if !has_key {
                    let f = self.path(field);
                    self.sink.error(
                        f,
                        Reason::SecretNotFound,
                        format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
                    );
                    self.valid = false;
                }
            }
        }
    }

    /// Checks the text of a Secret key that exists (a missing one is reported by
    /// [`Self::secret`]): invalid, saying it `is_not` what it should be, unless `ok`.
    fn secret_content(
        &mut self,
        field: &str,
        r: &SecretKeyRef,
        ok: impl FnOnce(&str) -> bool,
        is_not: &str,
    ) {
        let text = self.index.secret(self.ns, &r.name).and_then(|s| {
            gatehouse_api::consumer::secret_value(s, &r.key)
                .ok()
                .flatten()
        });
        if let Some(text) = text
            && !ok(&text)
        {
            let message = format!("Secret {}/{} key {:?} {is_not}", self.ns, r.name, r.key);
            self.invalid(field, message);
        }
    }

    /// A static JWKS: a JSON object with a `keys` array.
    fn jwks_document(&mut self, field: &str, r: &SecretKeyRef) {
        let is_jwks = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .is_some_and(|v| v.get("keys").is_some_and(serde_json::Value::is_array))
        };
        let is_not = "is not a JWKS document (a JSON object with a \"keys\" array)";
        self.secret_content(field, r, is_jwks, is_not);
    }

    /// PEM text with at least one certificate.
    fn pem_certificates(&mut self, field: &str, r: &SecretKeyRef) {
        let has_cert = |text: &str| text.contains("-----BEGIN CERTIFICATE-----");
        self.secret_content(field, r, has_cert, "holds no PEM certificate");
    }

    fn url(&mut self, field: &str, u: &str) {
        // A scheme, a host, an optional numeric port, and nothing a URI cannot hold.
        let ok = ["http://", "https://"].iter().any(|s| {
            u.strip_prefix(s).is_some_and(|rest| {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                let port_ok = match authority.rsplit_once(':') {
                    Some((host, port)) if !host.ends_with(']') && !host.contains(':') => {
                        port.parse::<u16>().is_ok()
                    }
                    _ => true,
                };
                !authority.is_empty() && port_ok
            })
        }) && u.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            self.invalid(field, format!("{u:?} is not an http:// or https:// URL"));
        }
    }

    fn header_edits(&mut self, field: &str, h: &HeaderEdits) {
        for (k, v) in h.set.iter().chain(&h.add) {
            self.token(&format!("{field}[{k}]"), k);
            self.template(&format!("{field}[{k}]"), v);
        }
        for (i, k) in h.remove.iter().enumerate() {
            self.token(&format!("{field}.remove[{i}]"), k);
        }
    }

    fn body_edits(&mut self, field: &str, b: &gatehouse_api::policy::BodyEdits) {
        let pointers = b
            .set
            .keys()
            .chain(&b.remove)
            .chain(b.rename.keys())
            .chain(b.rename.values());
        let bad: Vec<String> = pointers.filter(|p| !is_json_pointer(p)).cloned().collect();
        for p in bad {
            self.invalid(
                field,
                format!("{p:?} is not a JSON Pointer (it starts with /)"),
            );
        }
        for (k, v) in &b.set {
            self.template(&format!("{field}.set[{k}]"), v);
        }
    }

    fn schema(&mut self, field: &str, s: Option<&serde_json::Value>) {
        let Some(s) = s else { return };
        if !(s.is_object() || s.is_boolean()) {
            self.invalid(field, "a JSON Schema is an object".into());
        } else if let Err(e) = gatehouse_table::schema::compile(s) {
            self.invalid(field, format!("not a valid JSON Schema (2020-12): {e}"));
        }
    }

    fn rate_limit(&mut self, rl: &RateLimit) {
        for (i, l) in rl.limits.iter().enumerate() {
            self.duration(
                &format!("rateLimit.limits[{i}].period"),
                Some(&l.period),
                true,
            );
            if l.requests == 0 {
                self.invalid(
                    &format!("rateLimit.limits[{i}].requests"),
                    "must be at least 1".into(),
                );
            }
        }
        if rl.limits.is_empty() {
            self.invalid("rateLimit.limits", "at least one limit is required".into());
        }
        self.duration("rateLimit.maxDelay", rl.max_delay.as_ref(), true);
        if rl.scope == Some(RateLimitScope::Global) && !self.index.redis() {
            let f = self.path("rateLimit.scope");
            self.sink.warning(
                f,
                Reason::Degraded,
                "scope Global counts per replica: this gateway has no --redis, so each replica enforces the limits alone",
            );
        }
        if let Some(k) = &rl.key {
            let needs_name = matches!(k.kind, RateLimitKeyType::Header | RateLimitKeyType::Claim);
            if needs_name != k.name.is_some() {
                self.invalid(
                    "rateLimit.key.name",
                    "name is required by Header and Claim keys and allowed only with them".into(),
                );
            }
        }
    }

    fn concurrency_limit(&mut self, cl: &ConcurrencyLimit) {
        if cl.max_in_flight == 0 {
            self.invalid("concurrencyLimit.maxInFlight", "must be at least 1".into());
        }
        self.duration(
            "concurrencyLimit.queueTimeout",
            cl.queue_timeout.as_ref(),
            true,
        );
    }

    fn cache(&mut self, cache: &Cache) {
        self.duration("cache.ttl", Some(&cache.ttl), true);
        for (i, m) in cache.methods.iter().enumerate() {
            self.token(&format!("cache.methods[{i}]"), m);
        }
        for (i, h) in cache.vary.iter().enumerate() {
            self.token(&format!("cache.vary[{i}]"), h);
        }
        self.statuses("cache.statuses", &cache.statuses, 100);
    }

    fn request_transform(&mut self, t: &RequestTransform) {
        if let Some(h) = &t.headers {
            self.header_edits("requestTransform.headers", h);
        }
        if let Some(path) = &t.path {
            self.path_rewrite(path);
        }
        if let Some(h) = &t.hostname
            && !is_dns_name(&h.to_ascii_lowercase())
        {
            self.invalid(
                "requestTransform.hostname",
                format!("{h:?} is not a host name"),
            );
        }
        if let Some(q) = &t.query {
            for (k, v) in &q.set {
                self.template(&format!("requestTransform.query.set[{k}]"), v);
            }
        }
        if let Some(b) = &t.body {
            self.body_edits("requestTransform.body", b);
        }
    }

    fn path_rewrite(&mut self, path: &PathRewrite) {
        match (&path.replace_prefix_match, &path.replace_full_path) {
            (Some(p), None) => {
                if !p.starts_with('/') {
                    self.invalid(
                        "requestTransform.path.replacePrefixMatch",
                        "must start with /".into(),
                    );
                }
            }
            (None, Some(full)) => {
                self.template("requestTransform.path.replaceFullPath", full);
                if !full.starts_with('/') {
                    self.invalid(
                        "requestTransform.path.replaceFullPath",
                        "must start with /".into(),
                    );
                }
            }
            _ => self.invalid(
                "requestTransform.path",
                "exactly one of replacePrefixMatch or replaceFullPath must be set".into(),
            ),
        }
    }

    fn validation(&mut self, v: &Validation) {
        if let Some(r) = &v.request {
            for (i, ct) in r.content_types.iter().enumerate() {
                if !ct.contains('/') {
                    self.invalid(
                        &format!("validation.request.contentTypes[{i}]"),
                        format!("{ct:?} is not a media type"),
                    );
                }
            }
            for (i, h) in r.required_headers.iter().enumerate() {
                self.token(&format!("validation.request.requiredHeaders[{i}]"), h);
            }
            self.schema("validation.request.schema", r.schema.as_ref());
        }
        if let Some(r) = &v.response {
            self.schema("validation.response.schema", r.schema.as_ref());
        }
    }

    fn waf(&mut self, w: &Waf) {
        for (field, list) in [
            ("waf.allowCidrs", &w.allow_cidrs),
            ("waf.denyCidrs", &w.deny_cidrs),
        ] {
            for (i, cidr) in list.iter().enumerate() {
                if cidr.parse::<IpNet>().is_err() && cidr.parse::<IpAddr>().is_err() {
                    self.invalid(
                        &format!("{field}[{i}]"),
                        format!("{cidr:?} is not a CIDR or IP address"),
                    );
                }
            }
        }
        if let Some(crs) = &w.core_rule_set
            && crs.paranoia_level.is_some_and(|l| !(1..=4).contains(&l))
        {
            self.invalid(
                "waf.coreRuleSet.paranoiaLevel",
                "must be between 1 and 4".into(),
            );
        }
        if w.core_rule_set.as_ref().and_then(|c| c.anomaly_threshold) == Some(0) {
            self.invalid(
                "waf.coreRuleSet.anomalyThreshold",
                "must be at least 1 (0 would refuse every request)".into(),
            );
        }
        if w.max_inspect_bytes == Some(0) {
            self.invalid(
                "waf.maxInspectBytes",
                "must be at least 1 (0 would inspect nothing)".into(),
            );
        }
        for (i, e) in w
            .core_rule_set
            .iter()
            .flat_map(|c| c.exclusions.iter())
            .enumerate()
        {
            for (j, path) in e.paths.iter().enumerate() {
                if !path.starts_with('/')
                    || path
                        .bytes()
                        .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
                {
                    self.invalid(
                        &format!("waf.coreRuleSet.exclusions[{i}].paths[{j}]"),
                        format!(
                            "{path:?} is not a path prefix: it must start with / and hold no quote, backslash or control character"
                        ),
                    );
                }
            }
        }
    }

    fn errors(&mut self, e: &ErrorPolicy) {
        self.statuses("errors.replaceUpstream", &e.replace_upstream, 400);
        for (i, o) in e.overrides.iter().enumerate() {
            if !(400..=599).contains(&o.status) {
                self.invalid(
                    &format!("errors.overrides[{i}].status"),
                    "must be between 400 and 599".into(),
                );
            }
        }
    }

    fn authentication(&mut self, a: &Authentication) {
        if a.api_key.is_none() && a.jwt.is_none() && a.basic.is_none() && a.external.is_none() {
            self.invalid(
                "authentication",
                "needs at least one of apiKey, jwt, basic, external".into(),
            );
        }
        if let Some(k) = &a.api_key
            && let Some(h) = &k.header
        {
            self.token("authentication.apiKey.header", h);
        }
        if let Some(j) = &a.jwt {
            let f = "authentication.jwt";
            if j.jwks_uri.is_none() && j.jwks_secret_ref.is_none() && j.hmac_secret_ref.is_none() {
                self.invalid(
                    f,
                    "needs keys: jwksUri, jwksSecretRef or hmacSecretRef".into(),
                );
            }
            if j.jwks_uri.is_some() && j.jwks_secret_ref.is_some() {
                self.invalid(f, "jwksUri and jwksSecretRef are mutually exclusive".into());
            }
            if let Some(u) = &j.jwks_uri {
                self.url("authentication.jwt.jwksUri", u);
            }
            for (i, alg) in j.algorithms.iter().enumerate() {
                let field = format!("authentication.jwt.algorithms[{i}]");
                if alg.eq_ignore_ascii_case("none") {
                    self.invalid(
                        &field,
                        "unsigned tokens (alg none) are never accepted".into(),
                    );
                } else if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                    self.invalid(
                        &field,
                        format!(
                            "unknown algorithm {alg:?}; known: {}",
                            JWT_ALGORITHMS.join(", ")
                        ),
                    );
                } else if alg.starts_with("HS") && j.hmac_secret_ref.is_none() {
                    self.invalid(&field, format!("{alg} needs hmacSecretRef"));
                }
            }
            self.duration("authentication.jwt.clockSkew", j.clock_skew.as_ref(), false);
            if let Some(r) = &j.jwks_secret_ref {
                self.secret("authentication.jwt.jwksSecretRef", r);
            }
            if let Some(r) = &j.hmac_secret_ref {
                self.secret("authentication.jwt.hmacSecretRef", r);
                let long_enough = |text: &str| text.len() >= 32;
                let is_not = "is shorter than 32 bytes: an HMAC key that short can be guessed";
                self.secret_content("authentication.jwt.hmacSecretRef", r, long_enough, is_not);
            }
            if let Some(r) = &j.jwks_ca_secret_ref {
                if j.jwks_uri.is_none() {
                    self.invalid(
                        "authentication.jwt.jwksCaSecretRef",
                        "only verifies an https jwksUri, and there is none".into(),
                    );
                }
                self.secret("authentication.jwt.jwksCaSecretRef", r);
                self.pem_certificates("authentication.jwt.jwksCaSecretRef", r);
            }
            if let Some(r) = &j.jwks_secret_ref {
                self.jwks_document("authentication.jwt.jwksSecretRef", r);
            }
            for (claim, header) in &j.forward_claims {
                self.token(
                    &format!("authentication.jwt.forwardClaims[{claim}]"),
                    header,
                );
            }
        }
        if let Some(e) = &a.external {
            self.url("authentication.external.url", &e.url);
            self.duration("authentication.external.timeout", e.timeout.as_ref(), true);
            for (i, h) in e
                .forward_headers
                .iter()
                .chain(&e.upstream_headers)
                .enumerate()
            {
                self.token(&format!("authentication.external.headers[{i}]"), h);
            }
        }
    }

    fn cors(&mut self, cors: &Cors) {
        for (i, o) in cors.allow_origins.iter().enumerate() {
            let ok = o == "*"
                || ["http://", "https://"].iter().any(|s| {
                    o.strip_prefix(s).is_some_and(|rest| {
                        !rest.is_empty() && !rest.contains('/') && {
                            let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
                            is_dns_name(host) || host.starts_with("*.")
                        }
                    })
                });
            if !ok {
                self.invalid(
                    &format!("cors.allowOrigins[{i}]"),
                    format!("{o:?} is not an origin like https://app.example.com or *"),
                );
            }
        }
        if cors.allow_credentials == Some(true) && cors.allow_origins.iter().any(|o| o == "*") {
            self.invalid(
                "cors.allowCredentials",
                "credentials cannot be allowed for origin *".into(),
            );
        }
        for (i, m) in cors.allow_methods.iter().enumerate() {
            self.token(&format!("cors.allowMethods[{i}]"), m);
        }
        for (i, h) in cors
            .allow_headers
            .iter()
            .chain(&cors.expose_headers)
            .enumerate()
        {
            if h != "*" {
                self.token(&format!("cors.headers[{i}]"), h);
            }
        }
        self.duration("cors.maxAge", cors.max_age.as_ref(), false);
    }
}
