//! API versioning (`spec.version`), compiled into the routing table: nothing about a
//! version is decided per request.
//!
//! ```text
//!  spec.version ──plan()──▶ Plan ──apply(match)──▶ versioned RouteMatch ──compile_match──▶ table::Match
//!                             │                     (Path: /v2 prefix, strip_prefix set;
//!                             │                      Header/Query: an Exact condition;
//!                             │                      MediaType: a Regex condition on accept)
//!                             └──▶ table::Version (Deprecation, Sunset as IMF-fixdate, Vary)
//! ```
//!
//! Every written match of every rule becomes its versioned form; with `default: true`
//! the match as written is kept next to it (served without the version, never
//! stripped). Ranks and conflicts are then computed on these effective matches like on
//! any other, so a version prefix counts in the literal length and a version condition
//! counts as one condition; at equal precedence otherwise a versioned match beats an
//! unversioned one (`MatchKey::versioned`). `docs/routing.md` ("Versioning") is the
//! user-facing description of the exact rules.

use gatehouse_api::route::{
    ApiVersion, PathMatch as ApiPathMatch, PathMatchType, RouteMatch, ValueMatch as ApiValueMatch,
    ValueMatchType, VersionScheme as ApiScheme,
};
use gatehouse_table::{Version, VersionScheme};

use crate::diagnostics::{Reason, Sink};
use crate::values::is_token;

/// Default header of the Header scheme.
pub const DEFAULT_HEADER: &str = "Api-Version";
/// Default query parameter of the Query scheme.
pub const DEFAULT_QUERY_PARAM: &str = "version";
/// Longest version name (the CRD's limit).
const MAX_NAME: usize = 63;

/// How a route's matches are rewritten for its version.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `/v2` for the Path scheme.
    prefix: Option<String>,
    /// The condition added to every match: header (`true`) or query (`false`).
    condition: Option<(bool, ApiValueMatch)>,
    /// Also keep the matches as written.
    pub default: bool,
    /// What the table carries for the route.
    pub table: Version,
}

/// Validates `spec.version` and plans it. Errors (reason `Invalid`) are reported on
/// `sink`; `None` when the route cannot be served as written.
pub(crate) fn plan(v: &ApiVersion, sink: &mut Sink<'_>) -> Option<Plan> {
    let scheme = v.scheme.unwrap_or_default();
    let header = v.header.as_deref().unwrap_or(DEFAULT_HEADER);
    let query_param = v.query_param.as_deref().unwrap_or(DEFAULT_QUERY_PARAM);
    let sunset = check(v, scheme, header, query_param, sink)?;
    let selection = select(v, scheme, header, query_param);
    let default = v.default.unwrap_or(false);
    Some(Plan {
        prefix: selection.prefix,
        condition: selection.condition,
        default,
        table: Version {
            name: v.name.clone(),
            scheme: selection.scheme,
            default,
            deprecated: v.deprecated.unwrap_or(false),
            sunset,
            vary: selection.vary,
        },
    })
}

/// Checks `spec.version` (`header` and `query_param` with their defaults applied).
/// `None` when something is invalid (each reported); else the `Sunset` header value,
/// when one is set.
fn check(
    v: &ApiVersion,
    scheme: ApiScheme,
    header: &str,
    query_param: &str,
    sink: &mut Sink<'_>,
) -> Option<Option<String>> {
    let mut ok = true;
    let mut invalid = |sink: &mut Sink<'_>, field: &str, msg: String| {
        sink.error(field, Reason::Invalid, msg);
        ok = false;
    };
    if !valid_name(&v.name) {
        let what = if scheme == ApiScheme::Path {
            "a single path segment"
        } else {
            "a version name"
        };
        invalid(
            sink,
            "spec.version.name",
            format!(
                "{:?} is not {what}: 1 to {MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit",
                v.name
            ),
        );
    }
    if v.header.is_some() && scheme != ApiScheme::Header {
        invalid(
            sink,
            "spec.version.header",
            "header applies only to the Header scheme".into(),
        );
    }
    if v.query_param.is_some() && scheme != ApiScheme::Query {
        invalid(
            sink,
            "spec.version.queryParam",
            "queryParam applies only to the Query scheme".into(),
        );
    }
    if !is_token(header) {
        invalid(
            sink,
            "spec.version.header",
            format!("{header:?} is not a header name"),
        );
    }
    if query_param.is_empty() {
        invalid(sink, "spec.version.queryParam", "must not be empty".into());
    }
    let sunset = match v.sunset.as_deref().map(http_date) {
        None => None,
        Some(Ok(date)) => Some(date),
        Some(Err(())) => {
            invalid(
                sink,
                "spec.version.sunset",
                format!(
                    "{:?} is not an RFC 3339 date-time",
                    v.sunset.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };
    ok.then_some(sunset)
}

/// How a request names the version, per scheme.
struct Selection {
    scheme: VersionScheme,
    /// `/v2` for the Path scheme.
    prefix: Option<String>,
    /// The condition added to every match: header (`true`) or query (`false`).
    condition: Option<(bool, ApiValueMatch)>,
    /// The request header responses vary on.
    vary: Option<String>,
}

fn select(v: &ApiVersion, scheme: ApiScheme, header: &str, query_param: &str) -> Selection {
    let exact = |name: &str| ApiValueMatch {
        name: name.to_string(),
        kind: Some(ValueMatchType::Exact),
        value: Some(v.name.clone()),
    };
    match scheme {
        ApiScheme::Path => Selection {
            scheme: VersionScheme::Path,
            prefix: Some(format!("/{}", v.name)),
            condition: None,
            vary: None,
        },
        ApiScheme::Header => Selection {
            scheme: VersionScheme::Header,
            prefix: None,
            condition: Some((true, exact(header))),
            vary: Some(header.to_string()),
        },
        ApiScheme::Query => Selection {
            scheme: VersionScheme::Query,
            prefix: None,
            condition: Some((false, exact(query_param))),
            vary: None,
        },
        ApiScheme::MediaType => Selection {
            scheme: VersionScheme::MediaType,
            prefix: None,
            condition: Some((
                true,
                ApiValueMatch {
                    name: "accept".into(),
                    kind: Some(ValueMatchType::Regex),
                    value: Some(media_type_pattern(&v.name)),
                },
            )),
            vary: Some("Accept".to_string()),
        },
    }
}

impl Plan {
    /// The prefix the proxy strips from paths the versioned match selected (Path).
    pub fn strip_prefix(&self) -> Option<String> {
        self.prefix.clone()
    }

    /// The versioned form of a written match (already known to compile).
    pub fn apply(&self, m: &RouteMatch) -> RouteMatch {
        let mut out = m.clone();
        if let Some(prefix) = &self.prefix {
            out.path = Some(match &m.path {
                None => ApiPathMatch {
                    kind: PathMatchType::Prefix,
                    value: prefix.clone(),
                },
                Some(p) => ApiPathMatch {
                    kind: p.kind,
                    value: prefixed(prefix, p.kind, &p.value),
                },
            });
        }
        match &self.condition {
            Some((true, c)) => out.headers.push(c.clone()),
            Some((false, c)) => out.query_params.push(c.clone()),
            None => {}
        }
        out
    }

    /// Warnings about a written match under this version: a path that already names the
    /// version (served twice prefixed), a regex that is not path-shaped.
    pub fn lint(&self, m: &RouteMatch, field: &dyn Fn() -> String, sink: &mut Sink<'_>) {
        let (Some(prefix), Some(p)) = (&self.prefix, &m.path) else {
            return;
        };
        if p.kind == PathMatchType::Regex {
            let body = p.value.strip_prefix('^').unwrap_or(&p.value);
            if !(body.starts_with('/') || body.starts_with("\\/")) {
                sink.warning(
                    field(),
                    Reason::Invalid,
                    format!(
                        "with spec.version (Path) this regex is matched against the rest of the path after {prefix}, which starts with /; a pattern that does not start with / can also match paths such as {prefix}x"
                    ),
                );
            }
            return;
        }
        let v = p.value.as_str();
        let names_version = v
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if names_version {
            sink.warning(
                field(),
                Reason::Invalid,
                format!(
                    "already starts with {prefix}; spec.version adds the version prefix, so this is served at {}",
                    prefixed(prefix, p.kind, v)
                ),
            );
        }
    }
}

/// A written path under the version prefix: Exact `/users` → `/v2/users`, Prefix `/` →
/// `/v2`, Template `/u/{id}` → `/v2/u/{id}`, Regex `R` → `/v2(?:R)` (one leading `^`
/// dropped: the anchors are the router's).
fn prefixed(prefix: &str, kind: PathMatchType, value: &str) -> String {
    match kind {
        PathMatchType::Regex => {
            let body = value.strip_prefix('^').unwrap_or(value);
            format!("{}(?:{body})", regex::escape(prefix))
        }
        PathMatchType::Exact | PathMatchType::Prefix | PathMatchType::Template => {
            if value == "/" {
                prefix.to_string()
            } else if value.starts_with('/') {
                [prefix, value].concat()
            } else {
                [prefix, "/", value].concat()
            }
        }
    }
}

/// The CRD's rule for names: `^[A-Za-z0-9][A-Za-z0-9._-]*$`, at most 63 characters. It
/// makes every name a single path segment that normalization leaves unchanged, a
/// valid header value and a literal in the MediaType pattern.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The `Accept` condition of the MediaType scheme (matched against each `Accept` line,
/// anchored by the router). One media range of the list names the version, either
///
/// - as a parameter: `;` then `version` (any case) `=` the name, optionally quoted,
///   ending the parameter (`application/json; version=v2`, `*/*;q=0.8;Version="v2"`),
/// - or as the last dotted part of a vendor subtype, before any `+suffix`:
///   `application/vnd.<anything>.v2` or `application/vnd.<anything>.v2+json`
///   (`vnd` in any case).
///
/// The name itself compares case-sensitively, as in the other schemes.
pub(crate) fn media_type_pattern(name: &str) -> String {
    let n = regex::escape(name);
    // End of the range's parameter or of the range: spaces, then `;`, `,` or the end.
    let end = r"[ \t]*(?:[;,].*)?";
    let param = format!(r#".*;[ \t]*(?i:version)[ \t]*=[ \t]*(?:{n}|"{n}"){end}"#);
    let vendor = format!(r"(?:.*,)?[ \t]*[^/,;\s]+/(?i:vnd)\.[^,;\s]+\.{n}(?:\+[^,;\s]+)?{end}");
    format!("{param}|{vendor}")
}

/// An RFC 3339 date-time (`2027-06-30T00:00:00Z`, `2027-06-30T02:00:00.5+02:00`) as an
/// IMF-fixdate in UTC (`Wed, 30 Jun 2027 00:00:00 GMT`), the HTTP-date RFC 8594 wants
/// in `Sunset`. Fractions of a second are dropped; a leap second (`:60`) is sent as
/// `:59`. Years outside 0000..=9999 after the offset is applied are refused.
pub(crate) fn http_date(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, ()> {
        let digits = b.get(from..from + len).ok_or(())?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        Ok(digits
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, expected: &[u8]| b.get(i).is_some_and(|c| expected.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return Err(());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(());
    }
    // Optional fraction, then the offset.
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(());
        }
        i += digits;
    }
    let offset_minutes = match b.get(i..) {
        Some(b"Z" | b"z") => 0,
        Some([sign @ (b'+' | b'-'), ..]) if b.len() == i + 6 && at(i + 3, b":") => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(());
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return Err(()),
    };
    let local =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second.min(59);
    let utc = local - offset_minutes * 60;
    let (days, secs) = (utc.div_euclid(86_400), utc.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(());
    }
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    Ok(format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    ))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar. Years are
/// counted from March, so the leap day ends a year; 400-year eras have 146,097 days.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719,468 days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
