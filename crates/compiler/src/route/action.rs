//! A rule's action: backends (with a mirror), aggregate, redirect or respond, with the
//! Upstreams they name resolved and their templates checked against the rule's matches.

use std::collections::BTreeSet;

use gatehouse_api::route::{
    Aggregate, AggregateOnError, Backend, MergeStrategy, Mirror, Redirect, Respond,
};
use gatehouse_table::{
    self as table, Action, AggregateMerge, BackendRef, MirrorRef, RedirectScheme, TemplatePart,
};

use super::{RouteCx, RuleCx};
use crate::diagnostics::Reason;
use crate::values::{is_token, parse_duration, parse_template, path_params};

impl RouteCx<'_, '_> {
    /// The rule's action: exactly one of backends, aggregate, redirect, respond.
    pub(super) fn action(&mut self, rc: &mut RuleCx<'_>) -> Action {
        let rule = rc.rule;
        if let Some(backends) = &rule.backends {
            return self.backends(rc, backends, rule.mirror.as_deref());
        }
        if let Some(agg) = &rule.aggregate {
            return Action::Aggregate(self.aggregate(rc, agg));
        }
        if let Some(r) = &rule.redirect {
            return Action::Redirect(self.redirect(rc, r));
        }
        if let Some(r) = &rule.respond {
            return Action::Respond(self.respond(rc, r));
        }
        self.invalid(
            rc.at(""),
            "exactly one of backends, aggregate, redirect, respond must be set".into(),
        );
        Action::default()
    }

    /// The id of the Upstream `name` in the route's namespace, and whether it is missing
    /// or not accepted (then reported at `field`, which is built only then).
    /// Upstream `name` of this namespace as an id, and whether it is missing; when it
    /// is, an `UpstreamNotFound` error saying what then happens (`then`).
    fn upstream(&mut self, field: &dyn Fn() -> String, name: &str, then: &str) -> (String, bool) {
        let uid = [self.ns, "/", name].concat();
        let missing = match self.index.upstream(&uid) {
            Some(true) => false,
            Some(false) => {
                self.sink.error(
                    field(),
                    Reason::UpstreamNotFound,
                    format!("Upstream {uid} is not accepted (see its status); {then}"),
                );
                true
            }
            None => {
                self.sink.error(
                    field(),
                    Reason::UpstreamNotFound,
                    format!("Upstream {uid} not found; {then}"),
                );
                true
            }
        };
        (uid, missing)
    }

    /// A template of the action, parsed; each `${path.x}` it uses must be captured by
    /// every match of the rule.
    fn template(&mut self, rc: &RuleCx<'_>, field: String, s: &str) -> Vec<TemplatePart> {
        match parse_template(s) {
            Ok(parts) => {
                for p in path_params(&parts) {
                    if let Some(mi) = rc.captures.iter().position(|c| !c.iter().any(|n| n == p)) {
                        self.invalid(
                            field.clone(),
                            format!("${{path.{p}}} is not captured by match {mi} of this rule"),
                        );
                    }
                }
                parts
            }
            Err(e) => {
                self.invalid(field, e);
                Vec::new()
            }
        }
    }

    fn backends(
        &mut self,
        rc: &mut RuleCx<'_>,
        backends: &[Backend],
        mirror: Option<&Mirror>,
    ) -> Action {
        let refs: Vec<BackendRef> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (uid, missing) = self.upstream(
                    &|| rc.at(&format!(".backends[{i}].upstream")),
                    &b.upstream,
                    "its share is answered 503",
                );
                BackendRef {
                    upstream: uid,
                    weight: b.weight.unwrap_or(1),
                    missing,
                }
            })
            .collect();
        if !refs.is_empty() && refs.iter().all(|b| b.weight == 0) {
            self.sink.warning(
                rc.at(".backends"),
                Reason::Invalid,
                "every backend has weight 0: requests are answered 503",
            );
        }
        let mirror = mirror.map(|m| {
            let (uid, missing) = self.upstream(
                &|| rc.at(".mirror.upstream"),
                &m.upstream,
                "nothing is mirrored",
            );
            MirrorRef {
                upstream: uid,
                percent: m.percent.unwrap_or(100).min(100),
                missing,
            }
        });
        Action::Backends {
            backends: refs,
            mirror,
        }
    }

    fn aggregate(&mut self, rc: &mut RuleCx<'_>, agg: &Aggregate) -> table::Aggregate {
        let at = |f: &str| rc.at(&format!(".aggregate{f}"));
        let mut names = BTreeSet::new();
        let mut calls = Vec::new();
        let partial = agg.on_error.unwrap_or_default() == AggregateOnError::Partial;
        let keyed = agg.merge.unwrap_or_default() == MergeStrategy::Keyed;
        for (i, c) in agg.calls.iter().enumerate() {
            if partial && keyed && c.name == "errors" {
                self.invalid(
                    at(&format!(".calls[{i}].name")),
                    "\"errors\" is where a Partial aggregate lists its failed calls; name the call otherwise".into(),
                );
            }
            if !names.insert(c.name.clone()) {
                self.invalid(
                    at(&format!(".calls[{i}].name")),
                    format!("call name {:?} is used twice", c.name),
                );
            }
            let method = c
                .method
                .clone()
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            if !is_token(&method) {
                self.invalid(
                    at(&format!(".calls[{i}].method")),
                    format!("{method:?} is not an HTTP method"),
                );
            }
            let (uid, missing) = self.upstream(
                &|| at(&format!(".calls[{i}].upstream")),
                &c.upstream,
                "the call fails (503)",
            );
            let path = self.template(rc, at(&format!(".calls[{i}].path")), &c.path);
            if !c.path.starts_with('/') {
                self.invalid(at(&format!(".calls[{i}].path")), "must start with /".into());
            }
            calls.push(table::AggregateCall {
                name: c.name.clone(),
                upstream: uid,
                missing,
                method,
                path,
            });
        }
        let timeout_ms = agg
            .timeout
            .as_ref()
            .and_then(|t| match parse_duration(&t.0) {
                Ok(v) if v > 0 => Some(v),
                Ok(_) => {
                    self.invalid(at(".timeout"), "must be greater than 0".into());
                    None
                }
                Err(e) => {
                    self.invalid(at(".timeout"), e);
                    None
                }
            });
        table::Aggregate {
            calls,
            merge: match agg.merge.unwrap_or_default() {
                MergeStrategy::Keyed => AggregateMerge::Keyed,
                MergeStrategy::Deep => AggregateMerge::Deep,
            },
            on_error: match agg.on_error.unwrap_or_default() {
                AggregateOnError::Partial => table::AggregateOnError::Partial,
                AggregateOnError::Fail => table::AggregateOnError::Fail,
            },
            timeout_ms,
        }
    }

    fn redirect(&mut self, rc: &RuleCx<'_>, r: &Redirect) -> table::Redirect {
        let path = r
            .path
            .as_ref()
            .map(|p| self.template(rc, rc.at(".redirect.path"), p));
        let status = r.status_code.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            self.invalid(
                rc.at(".redirect.statusCode"),
                "must be one of 301, 302, 303, 307, 308".into(),
            );
        }
        // The CRD's CEL rule, checked here too for manifests that never met the API server.
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some("http") => Some(RedirectScheme::Http),
            Some("https") => Some(RedirectScheme::Https),
            Some(_) => {
                self.invalid(
                    rc.at(".redirect.scheme"),
                    "scheme must be http or https".into(),
                );
                None
            }
        };
        table::Redirect {
            scheme,
            hostname: r.hostname.clone().map(|h| h.to_ascii_lowercase()),
            port: r.port,
            path,
            status,
        }
    }

    fn respond(&mut self, rc: &RuleCx<'_>, r: &Respond) -> table::Respond {
        if !(200..=599).contains(&r.status) {
            self.invalid(
                rc.at(".respond.status"),
                "must be between 200 and 599".into(),
            );
        }
        table::Respond {
            status: r.status,
            content_type: r
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            body: r.body.clone().unwrap_or_default(),
        }
    }
}
