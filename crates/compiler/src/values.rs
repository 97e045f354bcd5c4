//! Small value grammars: durations (GEP-2257), `${...}` templates, host names,
//! HTTP tokens, JSON Pointers.

use gatehouse_table::TemplatePart;
pub use gatehouse_table::text::{is_token, parse_duration, parse_template, valid_ident};

/// The `${path.x}` names a template uses.
pub fn path_params(parts: &[TemplatePart]) -> impl Iterator<Item = &str> {
    parts.iter().filter_map(|p| match p {
        TemplatePart::PathParam(n) => Some(n.as_str()),
        _ => None,
    })
}

/// A DNS name (RFC 1123 labels), lowercase expected by the caller.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A host pattern of a route: a DNS name or `*.` + a DNS name.
pub fn is_host_pattern(s: &str) -> bool {
    match s.strip_prefix("*.") {
        Some(rest) => is_dns_name(rest),
        None => is_dns_name(s),
    }
}

/// A JSON Pointer (RFC 6901) that names a member: `/a/b~1c`.
pub fn is_json_pointer(s: &str) -> bool {
    s.starts_with('/') && {
        let b = s.as_bytes();
        b.iter()
            .enumerate()
            .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_host_pattern("api.example.com"));
        assert!(is_host_pattern("*.example.com"));
        assert!(!is_host_pattern("*"));
        assert!(!is_host_pattern("a.*.com"));
        assert!(!is_host_pattern("-a.com"));
        assert!(is_token("X-Api-Key"));
        assert!(!is_token("bad header"));
        assert!(is_json_pointer("/a/b~1c"));
        assert!(!is_json_pointer("a"));
        assert!(!is_json_pointer("/a~2"));
    }
}
