//! The OWASP Core Rule Set for a `waf` policy, evaluated by libmodsecurity through
//! `gatehouse-modsecurity` (which opens the library at run time).
//!
//! A [`RuleSet`] is the CRS's request rules (`REQUEST-*.conf` from `--crs-rules`,
//! Debian's `modsecurity-crs` by default) with the policy's paranoia level, anomaly
//! threshold and exclusions, loaded once when a table is prepared and shared by every
//! rule with the same settings. A missing library or rule directory, or rules that do
//! not parse, refuse the table with a message that says what to install or fix.

use std::path::{Path, PathBuf};

use gatehouse_modsecurity as msc;
use gatehouse_table::policy::CoreRuleSet;

/// Where Debian's `modsecurity-crs` puts the rules.
pub const DEFAULT_RULES_DIR: &str = "/usr/share/modsecurity-crs/rules";

/// Ids of the rules written here (JSON bodies, exclusions by path): above the CRS's
/// range (900000-999999).
const OWN_RULE_IDS: u32 = 9_500_000;

/// Methods the CRS lets through (911100): an API's, where the CRS's own default is a
/// web site's (GET, HEAD, POST, OPTIONS) and would refuse every PUT, PATCH and DELETE.
pub const ALLOWED_METHODS: &str = "GET HEAD POST OPTIONS PUT PATCH DELETE";

/// Request media types the CRS lets through (920420), in its `|type|` list format: the
/// CRS's defaults and the JSON, text and binary types APIs take.
pub const ALLOWED_CONTENT_TYPES: &str = "|application/x-www-form-urlencoded| |multipart/form-data| |multipart/related| |text/xml| |application/xml| |application/soap+xml| |application/json| |application/cloudevents+json| |application/cloudevents-batch+json| |application/merge-patch+json| |application/json-patch+json| |application/problem+json| |application/ld+json| |application/vnd.api+json| |application/graphql| |application/x-ndjson| |application/hal+json| |application/grpc| |application/grpc+proto| |application/grpc-web| |application/grpc-web+proto| |application/x-protobuf| |application/protobuf| |application/cbor| |application/octet-stream| |text/plain| |text/csv|";

/// A loaded rule set.
#[derive(Debug)]
pub struct RuleSet {
    rules: msc::RuleSet,
    /// Bytes of the body passed to the engine.
    max_body: usize,
}

/// The request the CRS looks at.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's address.
    pub client: std::net::IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// Method, target, headers.
    pub parts: &'a http::request::Parts,
    /// The body, when it was read.
    pub body: Option<&'a [u8]>,
}

/// The CRS's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Below the anomaly threshold.
    Pass,
    /// At or over it.
    Matched {
        /// The ids of the rules that matched, comma-separated (`942100,949110`).
        rules: String,
        /// The variable the most specific rule matched (`ARGS:q`), or `request`.
        field: String,
    },
}

/// The rule files of the CRS's request phases in `dir`, in load order.
fn request_rule_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let missing = |e: &dyn std::fmt::Display| {
        format!(
            "the Core Rule Set is not installed at {} ({e}); install the modsecurity-crs package or pass --crs-rules DIR",
            dir.display()
        )
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| missing(&e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("REQUEST-") && n.ends_with(".conf"))
        })
        .collect();
    if files.is_empty() {
        return Err(missing(&"no REQUEST-*.conf files"));
    }
    files.sort();
    Ok(files)
}

/// `s` as a regex matching exactly itself.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A double-quoted ModSecurity string's content.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The configuration text of a rule set: engine settings, the CRS's setup variables,
/// exclusions by path, the request rules, then exclusions everywhere.
fn configuration(c: &CoreRuleSet, files: &[PathBuf], max_body: usize) -> String {
    let mut text = format!(
        "SecRuleEngine On\n\
         SecRequestBodyAccess On\n\
         SecRequestBodyLimit {limit}\n\
         SecRequestBodyLimitAction ProcessPartial\n\
         SecResponseBodyAccess Off\n\
         SecAuditEngine Off\n\
         SecDefaultAction \"phase:1,log,auditlog,pass\"\n\
         SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
         SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}\"\n\
         SecAction \"id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold={threshold},setvar:tx.outbound_anomaly_score_threshold=4\"\n\
         SecAction \"id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334\"\n\
         SecAction \"id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods={methods}'\"\n\
         SecAction \"id:900220,phase:1,nolog,pass,t:none,setvar:'tx.allowed_request_content_type={types}'\"\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx (?i)^application/(?:[a-z0-9.+-]+\\+)?json\" \"id:{json_id},phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=JSON\"\n",
        limit = max_body.max(1),
        pl = c.paranoia_level,
        threshold = c.anomaly_threshold,
        json_id = OWN_RULE_IDS,
        methods = ALLOWED_METHODS,
        types = ALLOWED_CONTENT_TYPES,
    );
    let mut id = OWN_RULE_IDS + 1;
    for e in &c.exclusions {
        for path in &e.paths {
            // The path as routing sees it (decoded, dot segments resolved), and the
            // prefix by whole segments: `/search` covers `/search/x`, not `/searchable`.
            text.push_str(&format!(
                "SecRule REQUEST_FILENAME \"@rx ^{}(?:/|$)\" \"id:{id},phase:1,t:none,t:urlDecodeUni,t:normalizePath,pass,nolog,ctl:ruleRemoveById={}\"\n",
                regex_literal(path.trim_end_matches('/')).replace('"', "\\\""),
                e.rule_id
            ));
            id += 1;
        }
    }
    for f in files {
        text.push_str(&format!("Include \"{}\"\n", quoted(&f.to_string_lossy())));
    }
    for e in c.exclusions.iter().filter(|e| e.paths.is_empty()) {
        text.push_str(&format!("SecRuleRemoveById {}\n", e.rule_id));
    }
    text
}

impl RuleSet {
    /// Loads the CRS in `dir` as `c` configures it; bodies are inspected up to
    /// `max_body` bytes.
    pub fn load(c: &CoreRuleSet, dir: &Path, max_body: usize) -> Result<RuleSet, String> {
        msc::available().map_err(|e| format!("coreRuleSet: {e}"))?;
        let files = request_rule_files(dir).map_err(|e| format!("coreRuleSet: {e}"))?;
        let rules = msc::RuleSet::load(&configuration(c, &files, max_body)).map_err(|e| {
            format!(
                "coreRuleSet: the rules in {} failed to load: {e}",
                dir.display()
            )
        })?;
        Ok(RuleSet { rules, max_body })
    }

    /// Evaluates one request.
    pub fn evaluate(&self, req: &Request<'_>) -> Outcome {
        let client = req.client.to_string();
        let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(req.parts.headers.len() + 1);
        if req.parts.headers.get(http::header::HOST).is_none()
            && let Some(host) = req.parts.uri.authority()
        {
            // HTTP/2 names the host in `:authority`; the rules read `Host`.
            headers.push((b"Host", host.as_str().as_bytes()));
        }
        headers.extend(
            req.parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        );
        let verdict = self.rules.evaluate(&msc::Request {
            client: &client,
            client_port: req.client_port,
            uri: req
                .parts
                .uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str),
            method: req.parts.method.as_str(),
            http_version: if req.parts.version >= http::Version::HTTP_2 {
                "2.0"
            } else {
                "1.1"
            },
            headers,
            body: req.body.map(|b| &b[..b.len().min(self.max_body)]),
        });
        match verdict {
            msc::Verdict::Pass => Outcome::Pass,
            msc::Verdict::Intervene { rules, variable } => Outcome::Matched {
                rules: rules
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                field: variable.unwrap_or_else(|| "request".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::policy::CrsExclusion;

    #[test]
    fn the_configuration_sets_the_level_threshold_and_exclusions() {
        let c = CoreRuleSet {
            paranoia_level: 2,
            anomaly_threshold: 7,
            exclusions: vec![
                CrsExclusion {
                    rule_id: 942100,
                    paths: vec!["/search".into(), "/q\"x".into()],
                },
                CrsExclusion {
                    rule_id: 920350,
                    paths: vec![],
                },
            ],
        };
        let text = configuration(&c, &[PathBuf::from("/crs/REQUEST-901.conf")], 1024);
        assert!(text.contains("setvar:tx.paranoia_level=2"));
        assert!(text.contains("inbound_anomaly_score_threshold=7"));
        assert!(text.contains(
            "SecRule REQUEST_FILENAME \"@rx ^/search(?:/|$)\" \"id:9500001,phase:1,t:none,t:urlDecodeUni,t:normalizePath,pass,nolog,ctl:ruleRemoveById=942100\""
        ), "{text}");
        assert!(text.contains("@rx ^/q\\\"x(?:/|$)"), "{text}");
        assert_eq!(regex_literal("/v1.2/a+b"), "/v1\\.2/a\\+b");
        assert!(text.contains("tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE"));
        let include = text.find("Include \"/crs/REQUEST-901.conf\"");
        let remove = text.find("SecRuleRemoveById 920350");
        assert!(include.is_some() && remove > include);
        assert!(text.contains("SecRequestBodyLimit 1024"));
    }

    #[test]
    fn a_missing_rules_directory_says_what_to_install() {
        let e = request_rule_files(Path::new("/nonexistent/crs"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("modsecurity-crs"), "{e}");
    }
}
