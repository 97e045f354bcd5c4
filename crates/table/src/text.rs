//! Text forms shared by the compiler (which validates them) and the proxy (which
//! prepares them): durations and `${...}` templates.

use crate::TemplatePart;

/// Parses `250ms`, `10s`, `1m30s`, `1h` into milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration like 250ms, 10s, 1m or 1h");
    if s.is_empty() {
        return Err(bad());
    }
    let bytes = s.as_bytes();
    let (mut i, mut total, mut parts) = (0usize, 0u64, 0);
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 5 {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let unit_ms = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = match bytes.get(i) {
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1_000,
                _ => return Err(bad()),
            };
            i += 1;
            u
        };
        total += n * unit_ms;
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
    }
    Ok(total)
}

/// Parses a string with `${...}` placeholders. `${path.x}` names are returned so the
/// caller can check that every match captures them.
pub fn parse_template(s: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(TemplatePart::Literal(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let var = &after[..end];
        let part = match var.split_once('.') {
            Some(("path", n)) if valid_ident(n) => TemplatePart::PathParam(n.into()),
            Some(("query", n)) if !n.is_empty() => TemplatePart::Query(n.into()),
            Some(("header", n)) if is_token(n) => TemplatePart::Header(n.to_ascii_lowercase()),
            Some(("claim", n)) if !n.is_empty() => TemplatePart::Claim(n.into()),
            None if var == "consumer" => TemplatePart::Consumer,
            None if var == "clientIp" => TemplatePart::ClientIp,
            None if var == "requestId" => TemplatePart::RequestId,
            _ => {
                return Err(format!(
                    "unknown variable ${{{var}}}: use path.<param>, query.<name>, header.<name>, \
                     claim.<name>, consumer, clientIp or requestId"
                ));
            }
        };
        parts.push(part);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(parts)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An HTTP token (RFC 9110): header names and methods.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in [
            "",
            "10",
            "1d",
            "s",
            "1.5s",
            "-1s",
            "123456s",
            "1h1m1s1ms1h",
            "10 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn templates() {
        let t = parse_template("/users/${path.id}?x=${query.q}&h=${header.X-Env}")
            .expect("valid template");
        assert_eq!(
            t,
            vec![
                TemplatePart::Literal("/users/".into()),
                TemplatePart::PathParam("id".into()),
                TemplatePart::Literal("?x=".into()),
                TemplatePart::Query("q".into()),
                TemplatePart::Literal("&h=".into()),
                TemplatePart::Header("x-env".into()),
            ]
        );
        assert_eq!(
            parse_template("${consumer}-${clientIp}-${requestId}-${claim.sub}").map(|t| t.len()),
            Ok(7)
        );
        assert!(parse_template("${nope}").is_err());
        assert!(parse_template("${path.}").is_err());
        assert!(parse_template("/a/${path.id").is_err());
        assert_eq!(
            parse_template("plain"),
            Ok(vec![TemplatePart::Literal("plain".into())])
        );
    }
}
