//! The messages of the controller-to-proxy push (`/config` on the proxy's admin socket),
//! defined once for both ends.
//!
//! ```text
//!  controller ── PUT /config  Table ──────▶ proxy   200 Applied · 422 Refused
//!             ── PATCH /config TablePatch ─▶        200 Applied · 409 Refused (other base) · 422 Refused
//!             ── GET /config ─────────────▶         200 Running
//!                (anything else)                    404 NotFound
//! ```
//!
//! The requests are the [`Table`](crate::Table) and the [`TablePatch`](crate::TablePatch)
//! themselves. The answers are JSON objects whose field names are the wire format: a
//! field renamed here is an incompatible change between a controller and a proxy of
//! different versions. Missing fields decode as their defaults, so an answer with less
//! in it still reads.

use serde::{Deserialize, Serialize};

/// `GET /config`, 200: the table the proxy runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Running {
    /// Its version.
    pub version: u64,
    /// Its content hash; empty before the proxy has a table.
    pub hash: String,
    /// For each upstream with health checks (by id), the endpoints in rotation now:
    /// healthy and not ejected. What the controller writes as `readyEndpoints`.
    #[serde(
        rename = "readyEndpoints",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub ready_endpoints: std::collections::BTreeMap<String, u32>,
}

/// `PUT` or `PATCH /config`, 200: the table now serving.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Applied {
    /// Its version.
    pub version: u64,
    /// Its content hash.
    pub hash: String,
    /// Whether it is on disk already (a `PUT` waits for it; a `PATCH` does not).
    pub persisted: bool,
}

/// `PUT` or `PATCH /config`, 422 (the table is refused; the running one stays) or 409
/// (the patch was made for another table; the whole table is needed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Refused {
    /// Why, one line each.
    pub reasons: Vec<String>,
}

/// 404: a request the push endpoint does not serve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotFound {
    /// What it serves instead.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(message: &T) -> String {
        serde_json::to_string(message).expect("serializes")
    }

    #[test]
    fn the_wire_format_is_the_field_names_in_this_order() {
        let mut running = Running {
            version: 7,
            hash: "ab".into(),
            ..Running::default()
        };
        assert_eq!(json(&running), r#"{"version":7,"hash":"ab"}"#);
        running.ready_endpoints.insert("shop/users".into(), 2);
        assert_eq!(
            json(&running),
            r#"{"version":7,"hash":"ab","readyEndpoints":{"shop/users":2}}"#
        );
        let applied = Applied {
            version: 7,
            hash: "ab".into(),
            persisted: true,
        };
        assert_eq!(
            json(&applied),
            r#"{"version":7,"hash":"ab","persisted":true}"#
        );
        let refused = Refused {
            reasons: vec!["one".into(), "two".into()],
        };
        assert_eq!(json(&refused), r#"{"reasons":["one","two"]}"#);
        let not_found = NotFound {
            error: "PUT /config".into(),
        };
        assert_eq!(json(&not_found), r#"{"error":"PUT /config"}"#);
    }

    #[test]
    fn answers_with_fields_missing_decode_as_defaults() {
        let running: Running = serde_json::from_str(r#"{"version":3}"#).expect("decodes");
        assert_eq!(
            running,
            Running {
                version: 3,
                ..Running::default()
            }
        );
        let refused: Refused = serde_json::from_str("{}").expect("decodes");
        assert!(refused.reasons.is_empty());
        let applied: Applied =
            serde_json::from_str(r#"{"version":1,"hash":"h","persisted":false,"more":1}"#)
                .expect("unknown fields are ignored");
        assert_eq!(applied.hash, "h");
    }
}
