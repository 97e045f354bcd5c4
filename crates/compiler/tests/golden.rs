//! Golden tests: `tests/golden/<case>/input.yaml` compiles to `expected.json` (the
//! table, every diagnostic and every object's status), byte for byte.
//!
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p
//! gatehouse-compiler --test golden`, then read the diff: it is the behaviour change.
//!
//! Every case is also compiled with its documents in several shuffled orders; the output
//! must not change (the compiler is deterministic).

use std::path::{Path, PathBuf};

use gatehouse_api::manifest::{self, Document};
use gatehouse_compiler::{Inputs, compile};
use serde_json::json;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("input.yaml").exists())
        .collect();
    out.sort();
    out
}

fn documents(case: &Path) -> Vec<Document> {
    let file = case.join("input.yaml");
    let text = std::fs::read_to_string(&file).expect("input readable");
    let parsed = manifest::parse("input.yaml", &text);
    assert!(
        parsed.errors.is_empty(),
        "{}: {:?}",
        file.display(),
        parsed.errors
    );
    parsed.documents
}

fn render(docs: Vec<Document>) -> String {
    let (inputs, load_diags) = Inputs::from_documents(docs);
    let out = compile(&inputs);
    let statuses: serde_json::Map<String, serde_json::Value> = out
        .statuses
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::to_value(v).expect("status serializes"),
            )
        })
        .collect();
    let diagnostics: Vec<String> = load_diags
        .iter()
        .chain(&out.diagnostics)
        .map(ToString::to_string)
        .collect();
    let value = json!({
        "diagnostics": diagnostics,
        "statuses": statuses,
        "table": out.table,
    });
    let mut s = serde_json::to_string_pretty(&value).expect("serializes");
    s.push('\n');
    s
}

/// A fixed permutation (reverse, rotations, interleaving): enough to catch order leaks.
fn shuffled(mut docs: Vec<Document>, seed: usize) -> Vec<Document> {
    match seed % 3 {
        0 => docs.reverse(),
        1 => {
            let n = docs.len();
            if n > 0 {
                docs.rotate_left((seed + 1) % n);
            }
        }
        _ => {
            let (even, odd): (Vec<_>, Vec<_>) =
                docs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
            docs = odd.into_iter().chain(even).map(|(_, d)| d).collect();
        }
    }
    docs
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {cases:?}"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let got = render(documents(case));
        let expected_path = case.join("expected.json");
        if update {
            std::fs::write(&expected_path, &got).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}: output differs from expected.json (UPDATE_GOLDEN=1 to accept)\n--- got ---\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn output_does_not_depend_on_input_order() {
    for case in cases() {
        let reference = render(documents(&case));
        for seed in 0..6 {
            let got = render(shuffled(documents(&case), seed));
            assert_eq!(
                got,
                reference,
                "{}: order {seed} changed the output",
                case.display()
            );
        }
    }
}
