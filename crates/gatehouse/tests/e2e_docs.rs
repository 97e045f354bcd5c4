//! The API documentation portal end to end (`spec/runtime.md` `GET /docs`,
//! `GET /docs/openapi.json`): the built `gatehouse run` serves one OpenAPI 3.1 document
//! built from its routes, checked by a real validator (`openapi-spec-validator` from
//! PyPI, installed by `e2e/tools/install.sh`), for the examples and for a generated
//! table of 200 routes using every documented feature; and a page that renders it,
//! loaded in headless Chromium with no network but the gateway.
//!
//! The validator and Chromium are found in `target/tools/bin` and on `PATH`; a test
//! that cannot find one says so and passes, unless `GATEHOUSE_REQUIRE_DOCS_TOOLS=1`
//! (`.ci/run` sets it after installing both) makes it fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{LoggedGateway, request, upstream_runtime};
use serde_json::Value;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name` from `target/tools/bin`, else from `PATH`; `None` (after saying why) when
/// neither has it and the tools are not required.
fn tool(name: &str, alternatives: &[&str]) -> Option<PathBuf> {
    let local = root().join("target/tools/bin").join(name);
    if local.exists() {
        return Some(local);
    }
    for n in std::iter::once(&name).chain(alternatives) {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {n}")])
            .output()
            && out.status.success()
        {
            return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let required = std::env::var("GATEHOUSE_REQUIRE_DOCS_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{name} is missing (e2e/tools/install.sh installs the validator; apt-get install chromium)"
    );
    eprintln!("skipping: {name} is not installed");
    None
}

/// The document the admin listener serves.
fn openapi(g: &LoggedGateway) -> Value {
    let r = request(g.admin, "GET", "localhost", "/docs/openapi.json", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// Runs the real validator over `doc`; panics with its output when it refuses it.
fn validate(doc: &Value) {
    let Some(validator) = tool("openapi-spec-validator", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).expect("json")).expect("write");
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("the validator runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve_dir(dir: &Path, flags: &[&str]) -> LoggedGateway {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            files.push((name, std::fs::read_to_string(&path).expect("read")));
        }
    }
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    LoggedGateway::serve_with(upstream_runtime(), &files, flags)
}

#[test]
fn the_examples_make_a_valid_openapi_document() {
    let g = serve_dir(&root().join("examples/quickstart"), &[]);
    let doc = openapi(&g);
    assert_eq!(doc["openapi"], "3.1.0");
    let get_user = &doc["paths"]["/users/{id}"]["get"];
    assert_eq!(get_user["summary"], "Get a user", "{doc}");
    assert_eq!(get_user["parameters"][0]["name"], "id");
    assert_eq!(get_user["parameters"][0]["in"], "path");
    assert!(doc["paths"]["/users/{id}"]["head"].is_object(), "{doc}");
    // The gateway's own answers on an upstream-bound rule.
    assert_eq!(
        get_user["responses"]["503"]["$ref"],
        "#/components/responses/ServiceUnavailable"
    );
    // A `respond` rule documents its status; a Prefix rule names no one path.
    assert!(
        doc["paths"]["/status"]["get"]["responses"]["200"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"].get("/api").is_none(), "{doc}");
    validate(&doc);

    let k = serve_dir(&root().join("examples/kubernetes"), &[]);
    let doc = openapi(&k);
    let op = &doc["paths"]["/users/{id}"]["get"];
    assert_eq!(op["servers"][0]["url"], "http://api.shop.example", "{doc}");
    validate(&doc);
}

/// 200 routes using every feature the document shows: templates with a rest capture,
/// methods, docs with schemas and ranges, validation, the three authentication methods
/// (and optional), rate limits, the four version schemes (deprecated, with a sunset),
/// hosts and wildcard hosts, redirect, respond and aggregate rules, and two routes with
/// the same path on different hosts.
fn generated_routes() -> String {
    let mut out = String::from(
        "apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: u}
spec:
  endpoints: [{host: 127.0.0.1, port: 9}]
---
apiVersion: v1
kind: Secret
metadata: {name: hmac}
stringData: {secret: a-long-enough-hmac-secret-for-hs256-tokens}
---
",
    );
    for i in 0..200 {
        let host = match i % 4 {
            0 => String::new(),
            1 => format!("  hosts: [api{i}.example.com]\n"),
            2 => "  hosts: [\"*.wild.example\"]\n".into(),
            _ => format!("  hosts: [shared{}.example.com]\n", i % 8),
        };
        let version = match i % 9 {
            1 => "  version: {name: v1, scheme: Path}\n",
            2 => {
                "  version: {name: v2, scheme: Header, deprecated: true, sunset: \"2027-06-30T00:00:00Z\"}\n"
            }
            3 => "  version: {name: v3, scheme: Query, queryParam: ver}\n",
            4 => "  version: {name: v4, scheme: MediaType}\n",
            _ => "",
        };
        let docs = format!(
            "  docs: {{title: \"API {i}\", description: \"Generated route {i}.\"{}}}\n",
            if i % 2 == 0 {
                ", tags: [even, generated]"
            } else {
                ""
            }
        );
        let auth = match i % 5 {
            1 => "authentication: {apiKey: {queryParam: key}}",
            2 => {
                "authentication: {jwt: {issuer: https://issuer.example/, audiences: [a], algorithms: [HS256], hmacSecretRef: {name: hmac, key: secret}}}"
            }
            3 => "authentication: {basic: {}, optional: true}",
            4 => {
                "authentication: {jwt: {algorithms: [HS256], hmacSecretRef: {name: hmac, key: secret}, tokenFrom: {cookie: session}}}"
            }
            _ => "waf: {}",
        };
        let limit = if i % 3 == 0 {
            ", rateLimit: {limits: [{requests: 10, period: 1s}, {requests: 1000, period: 1h}], key: {type: Header, name: x-tenant}}"
        } else {
            ""
        };
        out.push_str(&format!(
            "apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: r{i}}}
spec:
{host}{version}{docs}  policies: {{{auth}{limit}}}
  rules:
    - name: item
      matches:
        - path: {{type: Template, value: \"/r{m}/items/{{id}}/{{*rest}}\"}}
          methods: [GET, PUT, DELETE]
          headers: [{{name: x-tenant, type: Regex, value: \"[a-z]+\"}}]
      backends: [{{upstream: u}}]
      docs:
        summary: Item {i}
        description: \"An item.\\n\\nWith *CommonMark*.\"
        requestBody: {{schema: {{type: object, properties: {{name: {{type: string}}}}, required: [name]}}}}
        responses:
          \"200\": {{description: The item, schema: {{type: object, properties: {{id: {{type: integer}}}}}}}}
          \"4XX\": {{}}
          default: {{description: Anything else}}
    - name: create
      matches: [{{path: {{type: Exact, value: /r{m}/items}}, methods: [POST], queryParams: [{{name: dry, type: Present}}]}}]
      backends: [{{upstream: u}}]
      policies:
        validation:
          request: {{contentTypes: [application/json, application/merge-patch+json], schema: {{type: object}}}}
          response: {{schema: {{type: object}}}}
    - name: search
      matches: [{{path: {{type: Exact, value: /r{m}/search}}}}]
      aggregate:
        calls: [{{name: a, upstream: u, path: /a}}]
    - name: moved
      matches: [{{path: {{type: Exact, value: /r{m}/old}}}}]
      redirect: {{path: /r{m}/items, statusCode: 308}}
    - name: health
      matches: [{{path: {{type: Exact, value: /r{m}/health}}}}]
      respond: {{status: 204, contentType: text/plain, body: \"\"}}
    - name: rest
      matches: [{{path: {{type: Prefix, value: /r{m}/files}}}}]
      backends: [{{upstream: u}}]
---
",
            // Routes 0, 3 and 7, then 8, 11 and 15, ... share their paths on different
            // hosts.
            m = if i % 4 == 3 { i - i % 8 } else { i },
        ));
    }
    out
}

#[test]
fn a_generated_table_of_200_routes_makes_a_valid_openapi_document() {
    let g = LoggedGateway::serve(upstream_runtime(), &[("routes.yaml", generated_routes())]);
    let config: Value = serde_json::from_str(&g.admin_text("/config")).expect("config");
    assert_eq!(
        config["table"]["routes"].as_array().map(Vec::len),
        Some(200),
        "every generated route is accepted: {}",
        g.log()
    );
    let doc = openapi(&g);
    let ops: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |m| m.len()))
        .sum();
    // Per route: three methods of /items/{id}/{rest}, POST /items, and GET of search,
    // old and health: 7; a quarter of the routes share their paths with another.
    assert!(ops > 1000, "{ops} operations");

    let item = &doc["paths"]["/r0/items/{id}/{rest}"]["put"];
    assert_eq!(item["summary"], "Item 0");
    assert_eq!(item["tags"], serde_json::json!(["even", "generated"]));
    assert_eq!(item["responses"]["4XX"]["description"], "Client error");
    assert_eq!(item["responses"]["default"]["description"], "Anything else");
    assert_eq!(
        item["responses"]["429"]["$ref"], "#/components/responses/TooManyRequests",
        "route 0 has a rate limit"
    );
    assert!(
        item["description"]
            .as_str()
            .is_some_and(|d| d.contains("10 requests per second")),
        "{item}"
    );
    let names: Vec<&str> = item["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["id", "rest", "x-tenant"]);

    // Authentication: an API key in a query parameter, JWT bearer and cookie, Basic
    // (optional: the empty requirement).
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["apiKey.query.key"]["in"], "query", "{schemes}");
    assert_eq!(schemes["jwt.bearer"]["scheme"], "bearer");
    assert_eq!(schemes["jwt.cookie.session"]["in"], "cookie");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    let basic = &doc["paths"]["/r13/items"]["post"]["security"];
    assert_eq!(basic, &serde_json::json!([{"basic": []}, {}]), "{basic}");

    // Versions: a Path version is in the path; a Header version is a required header
    // parameter, deprecated with its sunset.
    assert!(doc["paths"]["/v1/r1/items"].is_object(), "Path version");
    let v2 = &doc["paths"]["/r2/items"]["post"];
    assert_eq!(v2["deprecated"], true, "{v2}");
    assert_eq!(v2["x-sunset"], "Wed, 30 Jun 2027 00:00:00 GMT");
    assert!(
        v2["parameters"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["in"] == "header" && p["name"] == "api-version")),
        "{v2}"
    );
    // Validation feeds the request body and the success schema.
    let create = &doc["paths"]["/r5/items"]["post"];
    assert!(create["requestBody"]["content"]["application/merge-patch+json"].is_object());
    assert_eq!(
        create["responses"]["200"]["content"]["application/json"]["schema"]["type"],
        "object"
    );
    assert_eq!(
        create["responses"]["400"]["$ref"],
        "#/components/responses/BadRequest"
    );
    // The same path on two hosts: one operation, which names the other's hosts.
    assert!(
        doc["paths"]["/r0/search"]["get"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("shared3.example.com") && d.contains("shared7.example.com")),
        "{}",
        doc["paths"]["/r0/search"]
    );
    validate(&doc);
}

#[test]
fn the_docs_page_renders_the_document_offline_in_a_browser() {
    let g = serve_dir(&root().join("examples/quickstart"), &[]);
    let page = request(g.admin, "GET", "localhost", "/docs", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no asset from elsewhere"
    );

    let Some(chromium) = tool("chromium", &["chromium-browser", "google-chrome"]) else {
        return;
    };
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("http://{}/docs", g.admin))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page did not load its document: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("/users/{id}") && dom.contains("Get a user"),
        "{dom}"
    );
}

#[test]
fn public_docs_serves_the_portal_on_one_host_of_the_traffic_listener() {
    let g = serve_dir(
        &root().join("examples/quickstart"),
        &["--public-docs", "docs.example.com"],
    );
    let r = request(
        g.http,
        "GET",
        "docs.example.com:8080",
        "/docs/openapi.json",
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["openapi"], "3.1.0");
    assert!(r.header("x-request-id").is_some());
    let page = request(g.http, "GET", "docs.example.com", "/docs", &[]);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // Another host's /docs is routed as any path (the quickstart has no such route).
    let other = request(g.http, "GET", "api.example.com", "/docs/openapi.json", &[]);
    assert_eq!(other.status, 404, "{other:?}");
}
