//! One match of a rule → its table form, its precedence key and the path parameters it
//! captures; path templates; header and query conditions.

use std::collections::BTreeSet;

use gatehouse_api::route::{
    PathMatch as ApiPathMatch, PathMatchType, RouteMatch, ValueMatch as ApiValueMatch,
    ValueMatchType,
};
use gatehouse_router::RegexChecker;
use gatehouse_table::{self as table, PathMatch, Segment, Template, ValueMatch, ValueMatchKind};

use super::MatchKey;
use crate::values::{is_token, valid_ident};

/// A field path and what is wrong there.
pub(super) type MatchError = (String, String);

/// The path condition of a match, with what precedence and conflicts need of it.
struct PathKey {
    path: PathMatch,
    /// 0 Exact, 1 Template/Prefix, 2 Regex.
    class: u8,
    literal_len: usize,
    /// Canonical form of the path condition, the start of the match's signature.
    signature: String,
    /// The path parameters it captures.
    captures: Vec<String>,
}

/// One match → table match, precedence key and the path parameters it captures.
pub(super) fn compile_match(
    m: &RouteMatch,
    ri: usize,
    mi: usize,
    regex: &mut RegexChecker,
) -> Result<(table::Match, MatchKey, Vec<String>), MatchError> {
    // Field paths are only built when something is wrong.
    let at = || format!("spec.rules[{ri}].matches[{mi}]");
    let err = |f: &str, msg: String| (format!("{}{f}", at()), msg);
    let path = match &m.path {
        None => PathKey {
            path: PathMatch::Any,
            class: 1,
            literal_len: 1,
            signature: "Prefix:/".to_string(),
            captures: Vec::new(),
        },
        Some(p) => path_key(p, regex).map_err(|msg| err(".path.value", msg))?,
    };

    let mut methods = Vec::new();
    for (i, meth) in m.methods.iter().enumerate() {
        let up = meth.to_ascii_uppercase();
        if !is_token(&up) {
            return Err(err(
                &format!(".methods[{i}]"),
                format!("{meth:?} is not an HTTP method"),
            ));
        }
        methods.push(up);
    }
    methods.sort();
    methods.dedup();
    let headers = value_matches(&m.headers, true, &|| format!("{}.headers", at()), regex)?;
    let query_params = value_matches(
        &m.query_params,
        false,
        &|| format!("{}.queryParams", at()),
        regex,
    )?;
    let allow_encoded_slashes = m.allow_encoded_slashes.unwrap_or(false);
    let conditions = usize::from(!methods.is_empty()) + headers.len() + query_params.len();
    let mut signature = path.signature;
    push_conditions(
        &mut signature,
        &methods,
        &headers,
        &query_params,
        allow_encoded_slashes,
    );
    Ok((
        table::Match {
            rank: 0,
            path: path.path,
            methods,
            headers,
            query_params,
            allow_encoded_slashes,
            strip_prefix: None,
        },
        MatchKey {
            class: path.class,
            literal_len: path.literal_len,
            conditions,
            signature_hash: crate::fx_hash(&signature),
            signature,
            index: mi,
            versioned: false,
        },
        path.captures,
    ))
}

/// A written path condition → its table form and precedence facts; `Err` says what is
/// wrong with its value.
fn path_key(p: &ApiPathMatch, regex: &mut RegexChecker) -> Result<PathKey, String> {
    match p.kind {
        PathMatchType::Exact | PathMatchType::Prefix => {
            let n =
                gatehouse_router::normalize(&p.value).map_err(|e| format!("{:?}: {e}", p.value))?;
            let mut v = n.path.into_owned();
            let (path, class, kind) = if p.kind == PathMatchType::Prefix {
                while v.len() > 1 && v.ends_with('/') {
                    v.pop();
                }
                (PathMatch::Prefix(v.clone()), 1, "Prefix:")
            } else {
                (PathMatch::Exact(v.clone()), 0, "Exact:")
            };
            Ok(PathKey {
                path,
                class,
                literal_len: v.len(),
                signature: [kind, v.as_str()].concat(),
                captures: Vec::new(),
            })
        }
        PathMatchType::Template => {
            let t = parse_path_template(&p.value)?;
            let mut len = 0;
            let mut canon = String::new();
            let mut captures = Vec::new();
            for s in &t.segments {
                match s {
                    Segment::Literal(l) => {
                        len += 1 + l.len();
                        canon.push('/');
                        canon.push_str(l);
                    }
                    Segment::Param(n) => {
                        len += 1;
                        canon.push_str("/{}");
                        captures.push(n.clone());
                    }
                }
            }
            if let Some(r) = &t.rest {
                canon.push_str("/{*}");
                captures.push(r.clone());
            }
            Ok(PathKey {
                path: PathMatch::Template(t),
                class: 1,
                literal_len: len,
                signature: ["Template:", canon.as_str()].concat(),
                captures,
            })
        }
        PathMatchType::Regex => {
            let names = regex
                .check(&p.value)
                .map_err(|e| regex_message(&p.value, &e))?;
            Ok(PathKey {
                path: PathMatch::Regex(p.value.clone()),
                class: 2,
                literal_len: 0,
                signature: ["Regex:", p.value.as_str()].concat(),
                captures: names,
            })
        }
    }
}

/// Appends the conditions besides the path to a match's signature, canonically.
fn push_conditions(
    signature: &mut String,
    methods: &[String],
    headers: &[ValueMatch],
    query_params: &[ValueMatch],
    allow_encoded_slashes: bool,
) {
    signature.push_str("|m=");
    for (i, m) in methods.iter().enumerate() {
        if i > 0 {
            signature.push(',');
        }
        signature.push_str(m);
    }
    signature.push_str("|h=");
    canon_values(signature, headers);
    signature.push_str("|q=");
    canon_values(signature, query_params);
    signature.push_str(if allow_encoded_slashes {
        "|e=1"
    } else {
        "|e=0"
    });
}

/// One line for a status condition: the regex crate's last line says what is wrong.
fn regex_message(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let what = text
        .lines()
        .last()
        .unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ");
    format!("invalid regular expression {pattern:?}: {what}")
}

/// Appends the conditions in a canonical (sorted) form.
fn canon_values(out: &mut String, list: &[ValueMatch]) {
    use std::fmt::Write;
    let mut sorted: Vec<&ValueMatch> = list.iter().collect();
    sorted.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| format!("{:?}", a.kind).cmp(&format!("{:?}", b.kind)))
    });
    for (i, m) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let _ = write!(out, "{}={:?}", m.name, m.kind);
    }
}

fn value_matches(
    list: &[ApiValueMatch],
    header: bool,
    at: &dyn Fn() -> String,
    regex: &mut RegexChecker,
) -> Result<Vec<ValueMatch>, MatchError> {
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let field = || format!("{}[{i}]", at());
        if header && !is_token(&v.name) {
            return Err((
                format!("{}.name", field()),
                format!("{:?} is not a header name", v.name),
            ));
        }
        let name = if header {
            v.name.to_ascii_lowercase()
        } else {
            v.name.clone()
        };
        let kind = match (v.kind.unwrap_or_default(), &v.value) {
            (ValueMatchType::Present, None) => ValueMatchKind::Present,
            (ValueMatchType::Exact, Some(val)) => ValueMatchKind::Exact(val.clone()),
            (ValueMatchType::Regex, Some(val)) => {
                regex
                    .check(val)
                    .map_err(|e| (format!("{}.value", field()), regex_message(val, &e)))?;
                ValueMatchKind::Regex(val.clone())
            }
            (ValueMatchType::Present, Some(_)) => {
                return Err((
                    format!("{}.value", field()),
                    "not allowed with type Present".into(),
                ));
            }
            (_, None) => {
                return Err((
                    format!("{}.value", field()),
                    "required by Exact and Regex".into(),
                ));
            }
        };
        out.push(ValueMatch { name, kind });
    }
    Ok(out)
}

/// `/users/{id}/files/{*rest}` → segments and rest.
pub(super) fn parse_path_template(src: &str) -> Result<Template, String> {
    if !src.starts_with('/') {
        return Err(format!("{src:?} must start with /"));
    }
    let mut segments = Vec::new();
    let mut rest = None;
    let mut seen = BTreeSet::new();
    let parts: Vec<&str> = gatehouse_router::normalize::segments(src).collect();
    for (i, s) in parts.iter().enumerate() {
        if rest.is_some() {
            return Err(format!("{src:?}: {{*rest}} must be the last segment"));
        }
        if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (is_rest, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if !valid_ident(name) {
                return Err(format!(
                    "{src:?}: {{{inner}}} is not a parameter name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            if !seen.insert(name.to_string()) {
                return Err(format!("{src:?}: parameter {name:?} appears twice"));
            }
            if is_rest {
                rest = Some(name.to_string());
            } else {
                segments.push(Segment::Param(name.to_string()));
            }
        } else if s.contains(['{', '}']) {
            return Err(format!(
                "{src:?}: segment {s:?} mixes text and a parameter; a parameter is a whole segment"
            ));
        } else if s.is_empty() && i + 1 != parts.len() || *s == "." || *s == ".." {
            return Err(format!("{src:?}: empty or dot segment"));
        } else if !s.is_empty() {
            let literal = if s.contains('%') {
                // Decode escaped unreserved characters, as request paths are.
                let seg = format!("/{s}");
                let n = gatehouse_router::normalize(&seg).map_err(|e| format!("{src:?}: {e}"))?;
                n.path[1..].to_string()
            } else {
                (*s).to_string()
            };
            segments.push(Segment::Literal(literal));
        }
    }
    Ok(Template {
        source: src.to_string(),
        segments,
        rest,
    })
}
