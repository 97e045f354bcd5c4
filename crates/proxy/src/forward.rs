//! The client's request rewritten, in place, into the upstream's: target, protocol
//! version, hop-by-hop headers stripped, forwarding headers, request id and trace
//! context.

use gatehouse_table::Protocol;
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri, header};

use crate::headers::{self, X_REQUEST_ID};
use crate::phases::Ctx;
use crate::problem::GatewayError;
use crate::routing::Host;
use crate::{traceparent, tunnel};

/// Rewrites `parts` for an upstream that speaks `protocol`, sent to `target`, for the
/// request of `cx` (its peer, request id and trace).
pub(crate) fn rewrite(
    parts: &mut Parts,
    target: PathAndQuery,
    host: &Host,
    cx: &Ctx<'_>,
    protocol: Protocol,
) -> Result<(), GatewayError> {
    let (peer, request_id) = (cx.peer, cx.request_id);
    let upgrade = tunnel::requested(parts)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    // gRPC needs `te: trailers` end to end; it is the one TE value an HTTP/2 hop keeps.
    let te_trailers = protocol == Protocol::Http2
        && parts
            .headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    headers::strip_hop_by_hop(&mut parts.headers);
    // Room for what is added below (forwarding headers, request id, trace context), so
    // that the map grows once, not header by header.
    parts.headers.reserve(8);
    headers::add_forwarding(&mut parts.headers, peer, host.header_value().as_ref());
    parts.headers.insert(X_REQUEST_ID, request_id.clone());
    traceparent::propagate(&mut parts.headers, cx.trace.as_ref());
    set_protocol(parts, target, host, protocol)?;
    match protocol {
        Protocol::Http1 => {
            if let Some(protocol) = upgrade {
                parts.headers.insert(header::UPGRADE, protocol);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        }
        Protocol::Http2 => {
            if te_trailers {
                parts
                    .headers
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    Ok(())
}

/// Makes `parts` a request for `target` over `protocol`: the version, the URI's form
/// (origin-form on HTTP/1.1, with `:authority` on HTTP/2) and `Host` to match.
pub(crate) fn set_protocol(
    parts: &mut Parts,
    target: PathAndQuery,
    host: &Host,
    protocol: Protocol,
) -> Result<(), GatewayError> {
    match protocol {
        Protocol::Http1 => {
            parts.version = http::Version::HTTP_11;
            parts.uri = Uri::from(target);
            if !parts.headers.contains_key(header::HOST)
                && let Some(v) = host.header_value()
            {
                parts.headers.insert(header::HOST, v);
            }
        }
        Protocol::Http2 => {
            parts.version = http::Version::HTTP_2;
            parts.uri = http2_uri(host, target)?;
            // `:authority` carries the host on HTTP/2.
            parts.headers.remove(header::HOST);
        }
    }
    Ok(())
}

/// An HTTP/2 request's URI: scheme, `:authority` (the client's host) and target.
fn http2_uri(host: &Host, target: PathAndQuery) -> Result<Uri, GatewayError> {
    let authority = match host {
        Host::Authority(a) => Some(a.clone()),
        Host::Header(h) => Authority::try_from(h.as_bytes()).ok(),
        Host::Absent => None,
    }
    .unwrap_or_else(|| Authority::from_static("localhost"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(target);
    Uri::from_parts(uri).map_err(|_| GatewayError::BadPath("unforwardable path".into()))
}
