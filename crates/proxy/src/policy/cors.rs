//! CORS (the Fetch standard's protocol): preflights are answered by the gateway and never
//! reach the upstream; actual requests from an allowed origin get their response
//! decorated; a foreign origin gets no CORS headers at all, so the browser refuses it.
//!
//! - Origins: exact (`https://app.example.com`, port included when not the default),
//!   `*`, or a subdomain wildcard (`https://*.example.com`, which never matches the bare
//!   domain). Matching is ASCII case-insensitive.
//! - `Vary: Origin` is added whenever the answer depends on the origin (always, unless
//!   the only allowed origin is `*` without credentials), so shared caches keep answers
//!   per origin.
//! - A preflight from a foreign origin, or asking for a method or header that is not
//!   allowed, is answered `403` problem+json without CORS headers.

use gatehouse_table::policy as table;
use http::{HeaderMap, HeaderValue, Method, header};
use std::ops::ControlFlow;

use http::Response;
use http::request::Parts;

use crate::phases::{Ctx, Phase};
use crate::problem::GatewayError;
use crate::{Body, full};

#[derive(Debug)]
enum Origin {
    Any,
    Exact(String),
    /// `scheme://` and `.suffix[:port]` around one or more labels.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

/// Prepared CORS policy.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<Origin>,
    /// Uppercase; empty = the CORS-safelisted methods (GET, HEAD, POST).
    methods: Vec<String>,
    /// Lowercase; `*` allowed alone.
    headers: Vec<String>,
    any_header: bool,
    allow_methods_value: Option<HeaderValue>,
    allow_headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// What the request path does with a request under a CORS policy.
#[derive(Debug)]
pub enum Verdict {
    /// Not a CORS request (no `Origin`), or a same-origin one: nothing to do.
    None,
    /// A preflight the policy allows: answer 204 with these headers.
    Preflight(HeaderMap),
    /// A preflight the policy refuses: answer 403.
    Refused(&'static str),
    /// An actual request from an allowed origin: add these headers to the response.
    Decorate(HeaderMap),
    /// An actual request from a foreign origin: forwarded, but no CORS headers (the
    /// browser withholds the response from the page).
    Foreign,
}

impl Cors {
    /// Prepares a policy (origins and header names lowercase, methods uppercase, as the
    /// table holds them).
    pub fn prepare(c: &table::Cors) -> Cors {
        let origins = c
            .allow_origins
            .iter()
            .map(|o| {
                if o == "*" {
                    return Origin::Any;
                }
                match o.split_once("://*.") {
                    Some((scheme, suffix)) => Origin::Subdomains {
                        scheme: format!("{scheme}://"),
                        suffix: format!(".{suffix}"),
                    },
                    None => Origin::Exact(o.clone()),
                }
            })
            .collect();
        let methods = c.allow_methods.clone();
        let any_header = c.allow_headers.iter().any(|h| h == "*");
        let headers: Vec<String> = c
            .allow_headers
            .iter()
            .filter(|h| *h != "*")
            .cloned()
            .collect();
        let joined = |items: &[String]| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        let max_age = c
            .max_age_ms
            .and_then(|ms| HeaderValue::from_str(&(ms / 1000).to_string()).ok());
        Cors {
            origins,
            allow_methods_value: joined(&methods),
            allow_headers_value: joined(&headers),
            expose_value: joined(&c.expose_headers),
            methods,
            headers,
            any_header,
            credentials: c.allow_credentials,
            max_age,
        }
    }

    fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| match o {
            Origin::Any => true,
            Origin::Exact(e) => *e == origin,
            Origin::Subdomains { scheme, suffix } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|labels| {
                    !labels.is_empty()
                        && labels
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
        })
    }

    /// Whether the answer is the same for every origin (only `*`, no credentials).
    fn origin_independent(&self) -> bool {
        !self.credentials && self.origins.iter().all(|o| matches!(o, Origin::Any))
    }

    fn allows_method(&self, method: &str) -> bool {
        if self.methods.is_empty() {
            return matches!(method, "GET" | "HEAD" | "POST");
        }
        self.methods.iter().any(|m| m == method)
    }

    /// `Access-Control-Allow-Origin` (+ credentials, + `Vary`) for an allowed origin.
    fn base(&self, origin: &HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        if self.origin_independent() {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h
    }

    /// Classifies a request.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Verdict::None;
        };
        let origin_text = origin.to_str().unwrap_or_default();
        let preflight_method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok());
        if method == Method::OPTIONS
            && let Some(wanted) = preflight_method
        {
            if !self.allows_origin(origin_text) {
                return Verdict::Refused("the origin is not allowed");
            }
            if !self.allows_method(wanted) {
                return Verdict::Refused("the method is not allowed");
            }
            let requested: Vec<String> = headers
                .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            if !self.any_header && !requested.iter().all(|r| self.headers.contains(r)) {
                return Verdict::Refused("a requested header is not allowed");
            }
            let mut h = self.base(origin);
            let methods = self
                .allow_methods_value
                .clone()
                .unwrap_or_else(|| HeaderValue::from_static("GET, HEAD, POST"));
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            if self.any_header {
                // `*` is a wildcard only without credentials; with them, echo the list.
                if !requested.is_empty()
                    && let Ok(v) = HeaderValue::from_str(&requested.join(", "))
                {
                    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
                }
            } else if let Some(v) = &self.allow_headers_value {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            if let Some(v) = &self.max_age {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
            }
            if !self.origin_independent() {
                h.append(
                    header::VARY,
                    HeaderValue::from_static(
                        "Access-Control-Request-Method, Access-Control-Request-Headers",
                    ),
                );
            }
            return Verdict::Preflight(h);
        }
        if !self.allows_origin(origin_text) {
            return Verdict::Foreign;
        }
        let mut h = self.base(origin);
        if let Some(v) = &self.expose_value {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
        Verdict::Decorate(h)
    }
}

// === phase ===

/// Phase 3, CORS: an allowed preflight is answered here (204), a refused one is 403; an
/// actual request from an allowed origin has its response decorated.
pub(crate) fn on_request(cx: &mut Ctx<'_>, parts: &Parts) -> Phase {
    let Some(cors) = cx.policies().and_then(|p| p.cors.as_ref()) else {
        return Ok(ControlFlow::Continue(()));
    };
    match cors.check(&parts.method, &parts.headers) {
        Verdict::None | Verdict::Foreign => {}
        Verdict::Preflight(h) => return Ok(ControlFlow::Break(preflight(h))),
        Verdict::Refused(why) => return Err(GatewayError::CorsRefused(why)),
        Verdict::Decorate(h) => cx.decor.cors = Some(h),
    }
    Ok(ControlFlow::Continue(()))
}

/// The answer to an allowed preflight.
pub(crate) fn preflight(h: HeaderMap) -> Response<Body> {
    let mut resp = Response::new(full(bytes::Bytes::new()));
    *resp.status_mut() = http::StatusCode::NO_CONTENT;
    *resp.headers_mut() = h;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `allowMethods: [GET, PUT]`, `allowHeaders: [Content-Type]`, `exposeHeaders:
    /// [X-Total]`, `maxAge: 10m`, lowered as the compiler does.
    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::prepare(&table::Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["X-Total".into()],
            allow_credentials: credentials,
            max_age_ms: Some(600_000),
        })
    }

    fn req(origin: &str, extra: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("origin"),
        );
        for (k, v) in extra {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn origins_exact_wildcard_and_foreign() {
        let c = cors(&["https://app.example.com", "https://*.example.org"], false);
        assert!(c.allows_origin("https://app.example.com"));
        assert!(c.allows_origin("HTTPS://APP.example.com"));
        assert!(!c.allows_origin("https://app.example.com:8443"));
        assert!(!c.allows_origin("http://app.example.com"));
        assert!(c.allows_origin("https://a.b.example.org"));
        assert!(!c.allows_origin("https://example.org"));
        assert!(!c.allows_origin("https://evil.com/.example.org"));
        assert!(!c.allows_origin("https://evilexample.org"));
    }

    #[test]
    fn preflight_checks_method_and_headers() {
        let c = cors(&["https://app.example.com"], true);
        let ok = req(
            "https://app.example.com",
            &[
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type"),
            ],
        );
        let Verdict::Preflight(h) = c.check(&Method::OPTIONS, &ok) else {
            panic!("allowed preflight")
        };
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        let bad_method = req(
            "https://app.example.com",
            &[("access-control-request-method", "DELETE")],
        );
        assert!(matches!(
            c.check(&Method::OPTIONS, &bad_method),
            Verdict::Refused(_)
        ));
        let bad_header = req(
            "https://app.example.com",
            &[
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ],
        );
        assert!(matches!(
            c.check(&Method::OPTIONS, &bad_header),
            Verdict::Refused(_)
        ));
        let foreign = req(
            "https://evil.com",
            &[("access-control-request-method", "GET")],
        );
        assert!(matches!(
            c.check(&Method::OPTIONS, &foreign),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn actual_requests_are_decorated_or_left_bare() {
        let c = cors(&["https://app.example.com"], false);
        let Verdict::Decorate(h) = c.check(&Method::GET, &req("https://app.example.com", &[]))
        else {
            panic!("decorated")
        };
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "X-Total");
        assert_eq!(h[header::VARY], "Origin");
        assert!(matches!(
            c.check(&Method::GET, &req("https://evil.com", &[])),
            Verdict::Foreign
        ));
        assert!(matches!(
            c.check(&Method::GET, &HeaderMap::new()),
            Verdict::None
        ));
        let any = cors(&["*"], false);
        let Verdict::Decorate(h) = any.check(&Method::GET, &req("https://x.dev", &[])) else {
            panic!("decorated")
        };
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(header::VARY));
    }
}
