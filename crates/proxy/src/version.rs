//! API versioning on the data plane: only the response headers.
//!
//! Selecting a version is routing: the compiler folds it into the table's matches (a
//! `/v2` path prefix, a header or query condition), and the router picks the route like
//! any other. What the request path does for a versioned route is
//!
//! - Path scheme: forward the path without the version prefix
//!   ([`gatehouse_table::Match::forwarded_path`], in `policy/transform.rs`, phase 5);
//! - every response of the route (upstream answers, gateway errors, redirects, fixed
//!   responses) carries the headers prepared here: `Deprecation: true`, `Sunset`
//!   (an IMF-fixdate the compiler computed) and the selecting header in `Vary`.
//!
//! The header values are built once per table ([`VersionHeaders::prepare`]); a request
//! copies them. Routes without a version hold `None` and pay nothing.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The response headers of one versioned route, ready to copy.
#[derive(Debug, Clone)]
pub struct VersionHeaders {
    deprecation: bool,
    sunset: Option<HeaderValue>,
    /// The selecting header's name as written (`Api-Version`), a valid token.
    vary: Option<HeaderValue>,
}

/// A version whose headers cannot be sent (the compiler never produces one).
#[derive(Debug, thiserror::Error)]
#[error("route {route}: API version headers: {message}")]
pub struct VersionError {
    /// Route id.
    pub route: String,
    /// Why.
    pub message: String,
}

impl VersionHeaders {
    /// The headers of `route`'s version; `None` when it has none or they add nothing.
    pub fn prepare(route: &gatehouse_table::Route) -> Result<Option<VersionHeaders>, VersionError> {
        let Some(v) = &route.version else {
            return Ok(None);
        };
        let fail = |what: &str, value: &str| VersionError {
            route: route.id.clone(),
            message: format!("{what} {value:?} is not a valid header value"),
        };
        let sunset = v
            .sunset
            .as_deref()
            .map(|s| HeaderValue::from_str(s).map_err(|_| fail("Sunset", s)))
            .transpose()?;
        let vary = v
            .vary
            .as_deref()
            .map(|h| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(_) => HeaderValue::from_str(h).map_err(|_| fail("Vary", h)),
                Err(_) => Err(fail("Vary", h)),
            })
            .transpose()?;
        if !v.deprecated && sunset.is_none() && vary.is_none() {
            return Ok(None);
        }
        Ok(Some(VersionHeaders {
            deprecation: v.deprecated,
            sunset,
            vary,
        }))
    }

    /// Adds the headers to a response. `Deprecation` and `Sunset` replace any the
    /// upstream sent (the route's configuration is authoritative); the selecting header
    /// is added to `Vary` unless it is listed there already or `Vary: *`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.deprecation {
            headers.insert(
                HeaderName::from_static("deprecation"),
                HeaderValue::from_static("true"),
            );
        }
        if let Some(sunset) = &self.sunset {
            headers.insert(HeaderName::from_static("sunset"), sunset.clone());
        }
        if let Some(name) = &self.vary {
            let name_str = name.to_str().unwrap_or_default();
            let listed = headers
                .get_all(header::VARY)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .any(|token| token == "*" || token.eq_ignore_ascii_case(name_str));
            if !listed {
                headers.append(header::VARY, name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_table::{Route, Version, VersionScheme};

    fn route(version: Option<Version>) -> Route {
        Route {
            id: "shop/users".into(),
            version,
            ..Default::default()
        }
    }

    fn header_version() -> Version {
        Version {
            name: "v1".into(),
            scheme: VersionScheme::Header,
            deprecated: true,
            sunset: Some("Wed, 30 Jun 2027 00:00:00 GMT".into()),
            vary: Some("Api-Version".into()),
            ..Default::default()
        }
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn unversioned_and_plain_path_versions_prepare_nothing() {
        assert!(matches!(VersionHeaders::prepare(&route(None)), Ok(None)));
        let plain = Version {
            name: "v2".into(),
            ..Default::default()
        };
        assert!(matches!(
            VersionHeaders::prepare(&route(Some(plain))),
            Ok(None)
        ));
    }

    #[test]
    fn headers_are_set_and_vary_is_merged() {
        let h = VersionHeaders::prepare(&route(Some(header_version())))
            .expect("valid")
            .expect("some headers");
        let mut resp = HeaderMap::new();
        resp.insert("deprecation", HeaderValue::from_static("false"));
        resp.append(header::VARY, HeaderValue::from_static("Origin"));
        h.apply(&mut resp);
        assert_eq!(values(&resp, "deprecation"), ["true"]);
        assert_eq!(values(&resp, "sunset"), ["Wed, 30 Jun 2027 00:00:00 GMT"]);
        assert_eq!(values(&resp, "vary"), ["Origin", "Api-Version"]);

        // Listed already (any case, in a list), or `*`: unchanged.
        for existing in ["accept, API-Version", "*"] {
            let mut resp = HeaderMap::new();
            resp.insert(header::VARY, HeaderValue::from_static(existing));
            h.apply(&mut resp);
            assert_eq!(values(&resp, "vary"), [existing]);
        }
    }

    #[test]
    fn unsendable_values_refuse_the_table() {
        let mut v = header_version();
        v.sunset = Some("line\nbreak".into());
        let e = VersionHeaders::prepare(&route(Some(v))).expect_err("refused");
        assert!(e.to_string().contains("shop/users"), "{e}");
    }
}
