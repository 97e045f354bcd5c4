//! Header rules of a proxy: hop-by-hop headers never cross the gateway (including those
//! named in `Connection`), and upstream-bound requests say who asked and how.

use std::cell::RefCell;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

// Names the request path writes, made once (a `&str` name is parsed on every use).
/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers meaningful only for one connection (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == KEEP_ALIVE || name == PROXY_CONNECTION
}

/// Removes hop-by-hop headers, and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds those present (usually only `Connection`, often
    // none); only they are removed, each removal being a hash and a probe.
    let mut present: [Option<HeaderName>; 9] = Default::default();
    let mut found = 0;
    for name in headers.keys() {
        if is_hop_by_hop(name) && found < present.len() {
            present[found] = Some(name.clone());
            found += 1;
        }
    }
    if found == 0 {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `keep-alive` is hop-by-hop anyway (removed below when present): not parsed.
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for name in present.into_iter().flatten() {
        headers.remove(name);
    }
}

/// Like [`strip_hop_by_hop`] for a `101 Switching Protocols` response: `Upgrade` and
/// `Connection: upgrade` stay, since they say what the connection becomes.
pub fn strip_hop_by_hop_except_upgrade(headers: &mut HeaderMap) {
    let upgrade = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The client end of a connection, with the header values that only depend on it,
/// made once per connection rather than once per request.
#[derive(Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// On HTTPS, the id of the certificate the connection was served (none when the
    /// connection is plain HTTP).
    pub tls: Option<Tls>,
    /// The client's IP, as `X-Forwarded-For` appends it.
    ip: HeaderValue,
    /// `for=...;proto=http`, the start of every `Forwarded` value from this client.
    forwarded_for: String,
    /// The last host seen on this connection and its `Forwarded` value: clients keep
    /// asking the same host on one connection.
    last: RefCell<Option<(HeaderValue, HeaderValue)>>,
}

/// What a TLS connection was set up with.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The id of the certificate served (the Secret's `namespace/name`); `None` when
    /// the table changed between the handshake and its end and no longer has it.
    pub certificate: Option<std::sync::Arc<str>>,
}

impl Peer {
    /// A peer at `addr` over plain HTTP.
    pub fn new(addr: SocketAddr) -> Peer {
        Peer::with_tls(addr, None)
    }

    /// A peer at `addr`, over TLS when `tls` is set.
    pub fn with_tls(addr: SocketAddr, tls: Option<Tls>) -> Peer {
        let ip = addr.ip().to_string();
        let proto = if tls.is_some() { "https" } else { "http" };
        let forwarded_for = if addr.is_ipv6() {
            format!("for=\"[{ip}]\";proto={proto}")
        } else {
            format!("for={ip};proto={proto}")
        };
        Peer {
            addr,
            tls,
            ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_for,
            last: RefCell::new(None),
        }
    }

    fn forwarded(&self, host: Option<&HeaderValue>) -> Option<HeaderValue> {
        let Some(host) = host else {
            return HeaderValue::from_str(&self.forwarded_for).ok();
        };
        if let Some((h, v)) = &*self.last.borrow()
            && h == host
        {
            return Some(v.clone());
        }
        let value = format!("{};host=\"{}\"", self.forwarded_for, host.to_str().ok()?);
        let value = HeaderValue::from_str(&value).ok()?;
        *self.last.borrow_mut() = Some((host.clone(), value.clone()));
        Some(value)
    }
}

/// Adds `X-Forwarded-For`/`-Proto`/`-Host` and `Forwarded` for a request from `peer`
/// to `host`.
pub fn add_forwarding(headers: &mut HeaderMap, peer: &Peer, host: Option<&HeaderValue>) {
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", peer.ip.to_str().unwrap_or_default())).ok()
        }
        _ => Some(peer.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    let proto = if peer.tls.is_some() { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    if let Some(v) = peer.forwarded(host) {
        headers.append(header::FORWARDED, v);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers; `None` when it is
/// absent or empty.
pub(crate) fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn appends_to_an_existing_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        let peer = Peer::new("192.0.2.1:5555".parse().expect("addr"));
        let host = HeaderValue::from_static("api.example.com");
        add_forwarding(&mut h, &peer, Some(&host));
        assert_eq!(h["x-forwarded-for"], "10.0.0.9, 192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(
            h[header::FORWARDED],
            "for=192.0.2.1;proto=http;host=\"api.example.com\""
        );
        // The cached value is reused for the same host, made anew for another.
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &peer, Some(&host));
        assert_eq!(
            h[header::FORWARDED],
            "for=192.0.2.1;proto=http;host=\"api.example.com\""
        );
        let other = HeaderValue::from_static("b.example.com");
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &peer, Some(&other));
        assert_eq!(
            h[header::FORWARDED],
            "for=192.0.2.1;proto=http;host=\"b.example.com\""
        );
        let v6 = Peer::new("[2001:db8::1]:443".parse().expect("addr"));
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &v6, None);
        assert_eq!(h[header::FORWARDED], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }
}
