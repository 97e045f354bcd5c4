//! `gatehouse lint` and `gatehouse explain`: load manifests, compile, report.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use gatehouse_api::manifest::{self, ManifestError, Parsed};
use gatehouse_compiler::{Diagnostic, Inputs, Output, Severity, compile, explain as ex};
use gatehouse_router::Router;
use serde::Serialize;

/// Reads and compiles the manifests at `path`, for a gateway with (`redis`) or without a
/// Redis for global rate limits.
pub fn load(path: &Path, redis: bool) -> Result<(Parsed, Vec<Diagnostic>, Output)> {
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    let mut parsed =
        manifest::read_path(path).with_context(|| format!("reading {}", path.display()))?;
    let documents = std::mem::take(&mut parsed.documents);
    let (mut inputs, mut load_diags) = Inputs::from_documents(documents);
    inputs.redis = redis;
    let output = compile(&inputs);
    load_diags.sort();
    Ok((parsed, load_diags, output))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LintReport<'a> {
    manifest_errors: Vec<String>,
    diagnostics: Vec<&'a Diagnostic>,
    errors: usize,
    warnings: usize,
}

pub fn lint(path: &Path, redis: bool, json: bool) -> Result<ExitCode> {
    let (parsed, load_diags, output) = load(path, redis)?;
    let diags: Vec<&Diagnostic> = load_diags.iter().chain(&output.diagnostics).collect();
    let errors = parsed.errors.len()
        + diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if json {
        let report = LintReport {
            manifest_errors: parsed.errors.iter().map(ManifestError::to_string).collect(),
            diagnostics: diags,
            errors,
            warnings,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for e in &parsed.errors {
            println!("error: {e}");
        }
        for d in &diags {
            println!("{d}");
        }
        for s in &parsed.skipped {
            eprintln!(
                "note: {}: {} {} is not a kind gatehouse reads; skipped",
                s.origin, s.api_version, s.kind
            );
        }
        let objects = output.statuses.len();
        println!("{errors} error(s), {warnings} warning(s) in {objects} Gatehouse object(s)");
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn explain(
    path: &Path,
    method: &str,
    url: &str,
    headers: &[String],
    json: bool,
) -> Result<ExitCode> {
    let (_, _, output) = load(path, true)?;
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("header {h:?} is not `Name: value`"))
        })
        .collect::<Result<_>>()?;
    let router = Router::new(&output.table).context("preparing the routing table")?;
    let e = ex::explain(&output.table, &router, method, url, &headers);
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", ex::render_text(&e));
        let rejected = output
            .statuses
            .iter()
            .filter(|(o, s)| o.kind == gatehouse_compiler::Kind::ApiRoute && !s.accepted.status)
            .count();
        if rejected > 0 {
            println!(
                "note: {rejected} ApiRoute(s) are not accepted and not considered; `gatehouse lint` says why"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
