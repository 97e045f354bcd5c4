//! Decoding a value the way attackers encode it, before the native rules look at it:
//! percent-encoding (once, twice, ... until nothing changes; `%uXXXX` too), HTML
//! character references (`&lt;`, `&#60;`, `&#x3c;`), backslash escapes (`\u003c`,
//! `\x3c`) and overlong UTF-8 (`%c0%af` is `/`). Every round runs all decoders; at most
//! [`ROUNDS`] rounds.
//!
//! A value with none of `%`, `&`, `\` (and `+` where it means a space) is returned as
//! it is, without copying: most values on most requests.
//!
//! What decoding notices on the way ([`Anomalies`]) is what `ProtocolViolation` reports
//! (each part counting what its encoding makes an anomaly): a `%` that does not start an
//! escape, overlong UTF-8, NUL, CR and other control bytes.

use std::borrow::Cow;

/// Decoding rounds at most: `%252e` is two, `%25252e` three. A value still changing
/// after that is left as the last round made it.
const ROUNDS: usize = 4;

/// What decoding noticed about a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Anomalies {
    /// A `%` not followed by two hex digits (nor `u` and four).
    pub bad_escape: bool,
    /// UTF-8 in more bytes than the character needs (`%c0%af`).
    pub overlong: bool,
    /// A NUL byte.
    pub nul: bool,
    /// A control byte other than tab, CR and LF.
    pub control: bool,
    /// A carriage return, or a line feed that starts a header line (`\nSet-Cookie:`):
    /// what splits a header or a response when echoed into one.
    pub carriage_return: bool,
}

impl Anomalies {
    /// Whether anything was noticed.
    pub fn any(self) -> bool {
        self.bad_escape || self.overlong || self.nul || self.control || self.carriage_return
    }
}

/// A value decoded, and what decoding noticed.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    /// The decoded bytes (not necessarily UTF-8).
    pub text: Cow<'a, [u8]>,
    /// What was noticed in the raw value or while decoding it.
    pub anomalies: Anomalies,
}

/// Decodes `raw` (its first `max` bytes); `plus_is_space` for query strings and form
/// bodies, where `+` is a space.
pub(crate) fn decode(raw: &[u8], plus_is_space: bool, max: usize) -> Decoded<'_> {
    let raw = &raw[..raw.len().min(max)];
    let mut anomalies = Anomalies::default();
    let encoded = raw
        .iter()
        .any(|&b| matches!(b, b'%' | b'&' | b'\\') || (plus_is_space && b == b'+') || b >= 0xc0);
    if !encoded {
        scan_controls(raw, &mut anomalies);
        return Decoded {
            text: Cow::Borrowed(raw),
            anomalies,
        };
    }
    let mut text = raw.to_vec();
    for round in 0..ROUNDS {
        let mut changed = false;
        // A `%` left by an earlier round (`50%25` → `50%`) is text, not a bad escape.
        let mut later = Anomalies::default();
        let noticed = if round == 0 {
            &mut anomalies
        } else {
            &mut later
        };
        if let Some(next) = percent(&text, plus_is_space && round == 0, noticed) {
            text = next;
            changed = true;
        }
        if let Some(next) = entities(&text) {
            text = next;
            changed = true;
        }
        if let Some(next) = backslash_escapes(&text) {
            text = next;
            changed = true;
        }
        if let Some(next) = overlong(&text, &mut anomalies) {
            text = next;
            changed = true;
        }
        if let Some(next) = lookalikes(&text) {
            text = next;
            changed = true;
        }
        if !changed {
            break;
        }
    }
    scan_controls(&text, &mut anomalies);
    Decoded {
        text: Cow::Owned(text),
        anomalies,
    }
}

fn scan_controls(text: &[u8], anomalies: &mut Anomalies) {
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' && header_line(&text[i + 1..]) {
            anomalies.carriage_return = true;
        }
        if b == 0 {
            anomalies.nul = true;
        } else if b == b'\r' {
            anomalies.carriage_return = true;
        } else if (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f {
            anomalies.control = true;
        }
    }
}

/// Whether `s` starts like a header line: a field name and a colon.
fn header_line(s: &[u8]) -> bool {
    let name = s
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count();
    name > 0 && s.get(name) == Some(&b':')
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// The value of `n` hex digits at the start of `s`.
fn hex_at(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n {
        return None;
    }
    s[..n]
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc * 16 + hex(b)?))
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    match char::from_u32(c) {
        Some(c) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        None => out.push(b'?'),
    }
}

/// One round of percent-decoding (`%XX`, `%uXXXX`, and `+` when asked); `None` when
/// nothing changed.
fn percent(s: &[u8], plus_is_space: bool, anomalies: &mut Anomalies) -> Option<Vec<u8>> {
    if !s.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                if let Some(v) = hex_at(&s[i + 1..], 2) {
                    out.push(v as u8);
                    i += 3;
                    changed = true;
                } else if matches!(s.get(i + 1), Some(b'u' | b'U'))
                    && let Some(v) = hex_at(&s[i + 2..], 4)
                {
                    push_char(&mut out, v);
                    i += 6;
                    changed = true;
                } else {
                    anomalies.bad_escape = true;
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
                changed = true;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// Named references decoded; others are left alone (they do not make markup).
const ENTITIES: [(&[u8], u8); 16] = [
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"amp", b'&'),
    (b"sol", b'/'),
    (b"bsol", b'\\'),
    (b"colon", b':'),
    (b"semi", b';'),
    (b"lpar", b'('),
    (b"rpar", b')'),
    (b"equals", b'='),
    (b"grave", b'`'),
    (b"tab", b'\t'),
    (b"newline", b'\n'),
    (b"period", b'.'),
];

/// HTML character references: `&#60;` `&#x3c;` (the `;` optional, as browsers read
/// them) and the named ones of [`ENTITIES`]; `None` when nothing changed.
fn entities(s: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'&', s)?;
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'&' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        if let Some((c, used)) = numeric_reference(rest) {
            push_char(&mut out, c);
            i += 1 + used;
            changed = true;
            continue;
        }
        let name_len = rest
            .iter()
            .take(8)
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let name = &rest[..name_len];
        if let Some((_, c)) = ENTITIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push(*c);
            i += 1 + name_len + usize::from(rest.get(name_len) == Some(&b';'));
            changed = true;
            continue;
        }
        out.push(b'&');
        i += 1;
    }
    changed.then_some(out)
}

/// `#60;` or `#x3c;` (after the `&`): the character and the bytes used.
fn numeric_reference(rest: &[u8]) -> Option<(u32, usize)> {
    if rest.first() != Some(&b'#') {
        return None;
    }
    let (radix, start) = match rest.get(1) {
        Some(b'x' | b'X') => (16, 2),
        _ => (10, 1),
    };
    let digits = rest[start..]
        .iter()
        .take(8)
        .take_while(|b| char::from(**b).is_digit(radix))
        .count();
    if digits == 0 {
        return None;
    }
    let value = rest[start..start + digits]
        .iter()
        .try_fold(0u32, |acc, &b| {
            acc.checked_mul(radix)?
                .checked_add(char::from(b).to_digit(radix)?)
        })?;
    let end = start + digits;
    let used = end + usize::from(rest.get(end) == Some(&b';'));
    Some((value, used))
}

/// `\u003c` and `\x3c`; `None` when nothing changed.
fn backslash_escapes(s: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(b'\\', s)?;
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            match s.get(i + 1) {
                Some(b'u' | b'U') => {
                    if let Some(v) = hex_at(&s[i + 2..], 4) {
                        push_char(&mut out, v);
                        i += 6;
                        changed = true;
                        continue;
                    }
                }
                Some(b'x' | b'X') => {
                    if let Some(v) = hex_at(&s[i + 2..], 2) {
                        out.push(v as u8);
                        i += 4;
                        changed = true;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(s[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// Overlong two- and three-byte UTF-8 sequences of ASCII characters replaced by the
/// character (`C0 AF` → `/`); `None` when there were none.
fn overlong(s: &[u8], anomalies: &mut Anomalies) -> Option<Vec<u8>> {
    let starts = |b: u8| b == 0xc0 || b == 0xc1 || b == 0xe0;
    if !s.iter().any(|&b| starts(b)) {
        return None;
    }
    let cont = |b: Option<&u8>| b.is_some_and(|b| b & 0xc0 == 0x80);
    let mut out = Vec::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if (b == 0xc0 || b == 0xc1) && cont(s.get(i + 1)) {
            out.push((((b & 0x1f) << 6) | (s[i + 1] & 0x3f)) & 0x7f);
            i += 2;
            changed = true;
            anomalies.overlong = true;
        } else if b == 0xe0
            && s.get(i + 1).is_some_and(|b| (0x80..0xa0).contains(b))
            && cont(s.get(i + 2))
        {
            // Code points below U+0800 in three bytes; only ASCII ones matter here.
            let c = (u32::from(s[i + 1] & 0x3f) << 6) | u32::from(s[i + 2] & 0x3f);
            out.push(if c < 0x80 { c as u8 } else { b'?' });
            i += 3;
            changed = true;
            anomalies.overlong = true;
        } else {
            out.push(b);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// Characters that stand in for ASCII where a filter compares bytes: fullwidth forms
/// (`．` U+FF0E for `.`) and the slashes of other scripts (`∕` U+2215, `⁄` U+2044, `∖`
/// U+2216): replaced by the ASCII they imitate. `None` when there were none.
fn lookalikes(s: &[u8]) -> Option<Vec<u8>> {
    if !s.iter().any(|b| *b == 0xef || *b == 0xe2) {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for c in text.chars() {
        let ascii = match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xff01 + 0x21),
            '\u{2215}' | '\u{2044}' => Some('/'),
            '\u{2216}' => Some('\\'),
            _ => None,
        };
        match ascii {
            Some(a) => {
                out.push(a);
                changed = true;
            }
            None => out.push(c),
        }
    }
    changed.then(|| out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str, plus: bool) -> String {
        String::from_utf8_lossy(&decode(raw.as_bytes(), plus, usize::MAX).text).into_owned()
    }

    #[test]
    fn plain_values_are_borrowed() {
        let d = decode(b"/api/users/42", false, 1024);
        assert!(matches!(d.text, Cow::Borrowed(_)));
        assert!(!d.anomalies.any());
    }

    #[test]
    fn decodes_the_encodings_attackers_use() {
        assert_eq!(text("%27%20OR%201%3D1", false), "' OR 1=1");
        assert_eq!(text("%252e%252e%252f", false), "../");
        assert_eq!(text("%25252e", false), ".");
        assert_eq!(text("a+b%2Bc", true), "a b+c");
        assert_eq!(text("a+b", false), "a+b");
        assert_eq!(text("&lt;script&gt;", false), "<script>");
        assert_eq!(text("&#60;img&#x3C;&#62", false), "<img<>");
        assert_eq!(text("\\u003cscript\\x3e", false), "<script>");
        assert_eq!(text("%u003cscript%u003e", false), "<script>");
        assert_eq!(text("%26lt%3Bscript%26gt%3B", false), "<script>");
        assert_eq!(text("..%c0%af..%c0%afetc", false), "../../etc");
        assert_eq!(text("Tom &amp; Jerry", false), "Tom & Jerry");
        assert_eq!(text("%uff0e%uff0e%u2215etc", false), "../etc");
        assert_eq!(text("..%u2216..%u2216boot.ini", false), "..\\..\\boot.ini");
        assert_eq!(text("日本語", false), "日本語");
        assert_eq!(text("fish & chips", false), "fish & chips");
    }

    #[test]
    fn notices_what_protocol_violation_reports() {
        let d = decode(b"100%", false, 64);
        assert!(d.anomalies.bad_escape);
        let d = decode(b"50%25+off", true, 64);
        assert!(!d.anomalies.any());
        assert_eq!(d.text.as_ref(), b"50% off");
        let d = decode(b"a%00b", false, 64);
        assert!(d.anomalies.nul);
        let d = decode(b"a%1bb", false, 64);
        assert!(d.anomalies.control);
        let d = decode(b"%c0%ae", false, 64);
        assert!(d.anomalies.overlong);
        let d = decode("line\nnext\ttab".as_bytes(), false, 64);
        assert!(!d.anomalies.any());
        let d = decode(b"x%0d%0aSet-Cookie:%20a=b", false, 64);
        assert!(d.anomalies.carriage_return);
        let d = decode(b"x%0aSet-Cookie:%20a=b", false, 64);
        assert!(d.anomalies.carriage_return);
        let d = decode(b"two%0alines, fine", false, 64);
        assert!(!d.anomalies.carriage_return);
        let d = decode("café crème".as_bytes(), false, 64);
        assert!(!d.anomalies.any());
    }

    #[test]
    fn looks_at_the_first_max_bytes_only() {
        assert_eq!(decode(b"abcdef", false, 3).text.as_ref(), b"abc");
        assert_eq!(decode(b"%41%42", false, 4).text.as_ref(), b"A%");
    }

    #[test]
    fn odd_input_never_panics() {
        for raw in [
            &b"%"[..],
            b"%u",
            b"%u12",
            b"&#",
            b"&#x",
            b"&#99999999999;",
            b"\\",
            b"\\u",
            b"\xc0",
            b"\xe0\x80",
            b"&",
        ] {
            let _ = decode(raw, true, 64);
        }
    }
}
