//! What the API documentation is built from: a route's `docs` and a rule's `docs`, as
//! written, with defaults applied. The OpenAPI document itself is built by the proxy
//! from the whole table (matches, methods, validation, authentication, versions and
//! these), when it is first asked for after a table change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A route's `docs`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDocs {
    /// The API's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The API's description (CommonMark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// OpenAPI tags of every operation of the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A rule's `docs`.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Responses by status code (`200`, `4XX`, `default`), as the compiler checked them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub responses: BTreeMap<String, DocsResponse>,
}

/// A documented request body.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocsBody {
    /// Media type (default `application/json`).
    pub content_type: String,
    /// JSON Schema of the body (the user's document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// A documented response.
#[derive(Clone, Debug, Hash, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocsResponse {
    /// What the response means (default: the status's reason phrase).
    pub description: String,
    /// JSON Schema of the body (the user's document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}
