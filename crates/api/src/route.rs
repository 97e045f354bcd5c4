//! `ApiRoute`: which requests, to where, under which policies.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CommonStatus, Duration, LocalRef, any_object_nullable_schema};
use crate::policy::Policies;

/// Which requests, to where, under which policies.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "ApiRoute",
    namespaced,
    status = "CommonStatus",
    shortname = "ar",
    category = "gatehouse",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApiRouteSpec {
    /// Host names served, exact (`api.example.com`) or one leading wildcard label
    /// (`*.example.com`). Empty: any host. An exact host beats a wildcard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub hosts: Vec<String>,
    /// Serve these hosts on HTTPS (SNI) with a `kubernetes.io/tls` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// API versioning: which version of the API these rules are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Box<ApiVersion>>,
    /// Policies for every rule of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Box<Policies>>,
    /// ApiPolicy objects in this namespace applied to every rule, weakest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<LocalRef>,
    /// Documentation of this API for the docs portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<Box<RouteDocs>>,
    /// The rules; each selects requests and says what to do with them.
    #[schemars(length(min = 1, max = 128))]
    pub rules: Vec<Rule>,
}

/// TLS served for the route's hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A `kubernetes.io/tls` Secret in the route's namespace.
    pub secret_name: String,
}

/// The API version a route serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.header) || (has(self.scheme) && self.scheme == 'Header')", "message": "header applies only to the Header scheme"},
    {"rule": "!has(self.queryParam) || (has(self.scheme) && self.scheme == 'Query')", "message": "queryParam applies only to the Query scheme"}
]))]
pub struct ApiVersion {
    /// The version's name, e.g. `v2`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: String,
    /// How a request names the version. Default `Path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<VersionScheme>,
    /// Header that names the version (`Header` scheme). Default `Api-Version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Query parameter that names the version (`Query` scheme). Default `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// Also serve requests that name no version. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Mark responses `Deprecation: true`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<bool>,
    /// RFC 3339 instant sent as the `Sunset` header (RFC 8594).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub sunset: Option<String>,
}

/// How a request names the API version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VersionScheme {
    /// The first path segment (`/v2/...`), stripped before the upstream.
    #[default]
    Path,
    /// A request header (`Api-Version: v2`).
    Header,
    /// A query parameter (`?version=v2`).
    Query,
    /// A media-type parameter in `Accept` (`application/json; version=v2`).
    MediaType,
}

/// Route-level documentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteDocs {
    /// API title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// API description (CommonMark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// OpenAPI tags for every operation of the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One rule: which requests, and what to do with them. Exactly one of `backends`,
/// `aggregate`, `redirect`, `respond`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.backends) ? 1 : 0) + (has(self.aggregate) ? 1 : 0) + (has(self.redirect) ? 1 : 0) + (has(self.respond) ? 1 : 0) == 1",
     "message": "exactly one of backends, aggregate, redirect, respond must be set"},
    {"rule": "!has(self.mirror) || has(self.backends)", "message": "mirror requires backends"}
]))]
pub struct Rule {
    /// Unique within the route; appears in metrics, logs and status. Default `rule-N`
    /// (N counting from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: Option<String>,
    /// Any one match selects the rule. Empty: every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub matches: Vec<RouteMatch>,
    /// Upstreams that serve the request, split by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub backends: Option<Vec<Backend>>,
    /// Fire-and-forget copy of requests to another upstream; its response is discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Box<Mirror>>,
    /// Service aggregation: fan out to several upstreams and merge their JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Box<Aggregate>>,
    /// Answer with a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Box<Redirect>>,
    /// Answer with a fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Box<Respond>>,
    /// Overrides the Upstream request timeout for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Policies for this rule; they replace route-level ones field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Box<Policies>>,
    /// ApiPolicy objects in this namespace applied to this rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<LocalRef>,
    /// Documentation of this operation for the docs portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<Box<RuleDocs>>,
}

/// One way of selecting requests; every condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition. Absent: any path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Methods accepted. Empty: any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions, all required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions, all required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// Accept percent-encoded `/` and `\` (`%2F`, `%5C`) in the path; otherwise such
    /// requests are answered 400. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_encoded_slashes: Option<bool>,
}

/// A path condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'Regex' || self.value.startsWith('/')", "message": "Exact, Prefix and Template paths must start with /"}
]))]
pub struct PathMatch {
    /// How `value` is compared.
    #[serde(rename = "type")]
    pub kind: PathMatchType,
    /// The path, template or regular expression.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// How a path is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathMatchType {
    /// The whole path.
    Exact,
    /// Segment-aware prefix: `/foo` matches `/foo` and `/foo/bar`, never `/foobar`.
    #[default]
    Prefix,
    /// `{name}` segments and an optional trailing `{*rest}`; captures are `${path.name}`.
    Template,
    /// Anchored full match in the `regex` crate's syntax.
    Regex,
}

/// A header or query parameter condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.type) && self.type == 'Present' ? !has(self.value) : has(self.value)",
     "message": "value is required by Exact and Regex and not allowed with Present"}
]))]
pub struct ValueMatch {
    /// Header or parameter name (headers compare case-insensitively).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// How `value` is compared. Default `Exact`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ValueMatchType>,
    /// The value or regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// How a header or query value is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValueMatchType {
    /// Equal to `value`.
    #[default]
    Exact,
    /// Anchored full match of `value`.
    Regex,
    /// Present, whatever its value.
    Present,
}

/// One weighted upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Upstream name, in the route's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub upstream: String,
    /// Share of traffic. Default 1. 0 sends nothing (a drained canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: Option<u32>,
}

/// Mirroring to a shadow upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.percent) || (self.percent >= 0 && self.percent <= 100)", "message": "percent must be between 0 and 100"}
]))]
pub struct Mirror {
    /// Upstream name, in the route's namespace.
    pub upstream: String,
    /// Share of requests mirrored. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
}

/// Service aggregation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    /// Calls made in parallel.
    #[schemars(length(min = 1, max = 16))]
    pub calls: Vec<AggregateCall>,
    /// How results are merged. Default `Keyed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeStrategy>,
    /// What a failed call does. Default `Partial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<AggregateOnError>,
    /// Deadline for all calls. Default: the request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// One call of an aggregation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregateCall {
    /// Key of the result in a `Keyed` merge; unique within the aggregation.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Upstream name, in the route's namespace.
    pub upstream: String,
    /// HTTP method. Default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path and query, with `${...}` templates.
    pub path: String,
}

/// How aggregated results are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MergeStrategy {
    /// `{"<call name>": <its JSON>, ...}`.
    #[default]
    Keyed,
    /// Deep-merge the JSON objects in call order.
    Deep,
}

/// What a failed aggregated call does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AggregateOnError {
    /// 200 with the failed calls listed under `errors`.
    #[default]
    Partial,
    /// 502.
    Fail,
}

/// A redirect answered by the gateway. Absent parts keep the request's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.statusCode) || self.statusCode in [301, 302, 303, 307, 308]", "message": "statusCode must be one of 301, 302, 303, 307, 308"},
    {"rule": "!has(self.scheme) || self.scheme in ['http', 'https']", "message": "scheme must be http or https"}
]))]
pub struct Redirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Host name of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port of the target; omitted from the URL when it is the scheme's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Path of the target, with `${...}` templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Default 302.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// A fixed response answered by the gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.status >= 200 && self.status <= 599", "message": "status must be between 200 and 599"}
]))]
pub struct Respond {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body. Default `text/plain; charset=utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body. Default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
}

/// Documentation of one operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleDocs {
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Longer description (CommonMark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<DocsBody>,
    /// Responses by status code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub responses: BTreeMap<String, DocsResponse>,
}

/// A documented request body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocsBody {
    /// Media type. Default `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// JSON Schema of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_nullable_schema")]
    pub schema: Option<serde_json::Value>,
}

/// A documented response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocsResponse {
    /// What the response means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_nullable_schema")]
    pub schema: Option<serde_json::Value>,
}
