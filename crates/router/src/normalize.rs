//! Host and path normalization. The host: lowercase, no port, no trailing dot (what
//! routes match and what the gateway reports). The path, exactly as the contract says: percent-encoded unreserved
//! characters decoded, repeated slashes merged, dot-segments removed. An encoded `/` or
//! `\` (`%2F`, `%5C`) stays encoded and is flagged, so the rule that wins can decide
//! (400 unless it opts in); so are a raw `\` and a `;` (a path parameter), which many
//! servers read as a separator (`/admin;x` is `/admin` to a servlet container, `\` is
//! `/` to others): the router would match one path and the upstream serve another.
//! Matching and forwarding both use the normalized path.
//!
//! Refused outright (400): an escaped NUL (`%00`), and escapes that decode to bytes that
//! are not UTF-8 (`%FF`, the overlong `%C0%AF`), which servers decode differently.

use std::borrow::Cow;

/// Lowercases and strips the port and a trailing dot: `API.Example.com.:8080` →
/// `api.example.com`; `[::1]:80` → `[::1]`.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A normalized path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    /// The normalized path; borrowed when the input was already normal.
    pub path: Cow<'a, str>,
    /// The path holds `%2F`, `%5C`, a raw `\` or a `;`: separators the upstream may
    /// read differently from the router.
    pub encoded_slash: bool,
}

/// Why a path cannot be normalized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path.
    #[error("the path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the path has a malformed percent-encoding")]
    BadPercent,
    /// `%00`.
    #[error("the path holds an encoded NUL (%00)")]
    Nul,
    /// Escapes that decode to bytes that are not UTF-8.
    #[error("the path's percent-encoded bytes are not UTF-8")]
    NotUtf8,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` is certainly already normal (the common case: no `%`, no `//`, no
/// dot-segment), so no allocation is needed.
fn is_plain(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // "/." followed by end, "/" or ".": a dot-segment.
                match path.get(i + 1) {
                    None | Some(b'/') => return false,
                    Some(b'.') if matches!(path.get(i + 2), None | Some(b'/')) => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// Normalizes the path part of a request target (no query).
pub fn normalize(path: &str) -> Result<NormalizedPath<'_>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(bytes) {
        return Ok(NormalizedPath {
            path: Cow::Borrowed(path),
            encoded_slash: false,
        });
    }

    // 1. Decode unreserved escapes; upper-case the hex of the others.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut encoded_slash = false;
    // Whether an escape stands for a byte beyond ASCII (checked for UTF-8 below).
    let mut high = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' || b == b';' {
            encoded_slash = true;
        }
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadPercent);
            };
            let c = (h << 4) | l;
            if c == 0 {
                return Err(PathError::Nul);
            }
            high |= c >= 0x80;
            if is_unreserved(c) {
                decoded.push(c);
            } else {
                if c == b'/' || c == b'\\' {
                    encoded_slash = true;
                }
                decoded.push(b'%');
                decoded.push(bytes[i + 1].to_ascii_uppercase());
                decoded.push(bytes[i + 2].to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }

    if high && !decodes_to_utf8(&decoded) {
        return Err(PathError::NotUtf8);
    }

    // 2. Merge slashes and remove dot-segments (RFC 3986 §5.2.4 on a segment stack).
    let mut segments: Vec<&[u8]> = Vec::new();
    let ends_with_slash = {
        let trimmed: &[u8] = &decoded;
        trimmed.ends_with(b"/") || trimmed.ends_with(b"/.") || trimmed.ends_with(b"/..")
    };
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        // Only ASCII unreserved bytes were decoded; the rest is as the client sent it,
        // which hyper has already checked to be valid request-target characters.
        out.push_str(&String::from_utf8_lossy(s));
    }
    if segments.is_empty() || ends_with_slash {
        out.push('/');
    }
    Ok(NormalizedPath {
        path: Cow::Owned(out),
        encoded_slash,
    })
}

/// Whether the path's escapes, all decoded, leave UTF-8 (raw bytes are ASCII: the
/// request target has no others).
fn decodes_to_utf8(path: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match (
            path[i],
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                bytes.push((h << 4) | l);
                i += 3;
            }
            (b, _, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&bytes).is_ok()
}

/// Splits a normalized path into segments: `/` has none; `/a/b/` has `a`, `b`, ``.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let empty = rest.is_empty();
    rest.split('/').filter(move |_| !empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).expect("normalizes").path.into_owned()
    }

    #[test]
    fn leaves_normal_paths_borrowed() {
        let got = normalize("/users/42").expect("ok");
        assert!(matches!(got.path, Cow::Borrowed(_)));
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/b/"), "/a/b/");
        assert_eq!(n("/a.b/.well-known"), "/a.b/.well-known");
    }

    #[test]
    fn removes_dot_segments_and_merges_slashes() {
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/../b"), "/b");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("//a///b"), "/a/b");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(n("/%61%62c"), "/abc");
        assert_eq!(n("/a%2e%2e/b"), "/a../b");
        assert_eq!(n("/x/%2e%2e/y"), "/y");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/a%3fb"), "/a%3Fb");
    }

    #[test]
    fn flags_encoded_slashes_and_rejects_bad_escapes() {
        let got = normalize("/a%2fb").expect("ok");
        assert!(got.encoded_slash);
        assert_eq!(got.path, "/a%2Fb");
        assert!(normalize("/a%5Cb").expect("ok").encoded_slash);
        assert_eq!(normalize("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(normalize("/a%4"), Err(PathError::BadPercent));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn refuses_nul_and_escapes_that_are_not_utf8() {
        assert_eq!(normalize("/a%00"), Err(PathError::Nul));
        assert_eq!(normalize("/x%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize("/x/%c0%af"), Err(PathError::NotUtf8));
        assert_eq!(normalize("/%e0%80%ae"), Err(PathError::NotUtf8));
        assert_eq!(normalize("/x%80"), Err(PathError::NotUtf8));
        // Real UTF-8 stays as sent (upper-cased escapes).
        assert_eq!(n("/caf%c3%a9"), "/caf%C3%A9");
    }

    #[test]
    fn flags_backslashes_and_path_parameters() {
        for p in ["/admin;x", "/x/..;/admin", "/\\admin", "/x/..\\admin"] {
            assert!(normalize(p).expect("normalizes").encoded_slash, "{p}");
        }
        assert!(!normalize("/admin").expect("ok").encoded_slash);
    }

    #[test]
    fn splits_segments() {
        assert_eq!(segments("/").count(), 0);
        assert_eq!(segments("/a/b/").collect::<Vec<_>>(), vec!["a", "b", ""]);
        assert_eq!(segments("/a").collect::<Vec<_>>(), vec!["a"]);
    }
}
