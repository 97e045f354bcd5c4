//! Large inputs are compiled in parallel; the output must still be a pure function of
//! the inputs, whatever their order: byte-identical tables and the same diagnostics.

use gatehouse_api::manifest;
use gatehouse_compiler::{Inputs, compile};

/// 2,000 routes (above the parallel threshold) with every path type, some conflicts
/// (same host and match as an older route), some invalid regexes, and missing upstreams.
fn manifests() -> String {
    let mut out = String::new();
    for u in 0..50 {
        out.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: svc-{u}, namespace: ns-{}}}\nspec:\n  endpoints: [{{host: 10.0.{u}.1, port: 8080}}]\n",
            u % 5
        ));
    }
    for r in 0..2000 {
        let ns = r % 5;
        let path = match r % 5 {
            0 => format!("{{type: Exact, value: /r{r}}}"),
            1 => format!("{{type: Prefix, value: /r{r}}}"),
            2 => format!("{{type: Template, value: \"/r{r}/{{id}}\"}}"),
            3 if r % 97 == 0 => "{type: Regex, value: \"/bad/([\"}".to_string(),
            3 => format!("{{type: Regex, value: \"/r{r}/[0-9]+\"}}"),
            // Every 7th of these repeats an earlier route's match on the same host.
            _ if r % 7 == 0 => format!("{{type: Exact, value: /r{}}}", r - 4),
            _ => format!("{{type: Prefix, value: /p{r}}}"),
        };
        let host = if r % 7 == 0 && r % 5 == 4 {
            (r - 4) % 3
        } else {
            r % 3
        };
        let upstream = if r % 31 == 0 {
            "missing".to_string()
        } else {
            format!("svc-{}", (r % 10) * 5 + ns)
        };
        out.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: route-{r}, namespace: ns-{ns}}}\nspec:\n  hosts: [h{host}.example.com]\n  rules:\n    - matches: [{{path: {path}}}]\n      backends: [{{upstream: {upstream}}}]\n"
        ));
    }
    out
}

fn render(mut docs: Vec<gatehouse_api::manifest::Document>, order: usize) -> (String, Vec<String>) {
    match order {
        0 => {}
        1 => docs.reverse(),
        _ => {
            let n = docs.len();
            docs.rotate_left(n / 3);
        }
    }
    let (inputs, _) = Inputs::from_documents(docs);
    let out = compile(&inputs);
    let table = serde_json::to_string(&out.table).expect("serializes");
    (
        table,
        out.diagnostics.iter().map(ToString::to_string).collect(),
    )
}

#[test]
fn parallel_compilation_is_deterministic() {
    let text = manifests();
    let parsed = manifest::parse("big.yaml", &text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    let (table, diags) = render(parsed.documents.clone(), 0);
    assert!(
        diags.iter().any(|d| d.contains("(Conflicted)")),
        "the input has conflicts"
    );
    assert!(
        diags.iter().any(|d| d.contains("(Invalid)")),
        "the input has invalid routes"
    );
    assert!(diags.iter().any(|d| d.contains("(UpstreamNotFound)")));
    for order in 1..3 {
        let (t, d) = render(parsed.documents.clone(), order);
        assert_eq!(t, table, "order {order} changed the table");
        assert_eq!(d, diags, "order {order} changed the diagnostics");
    }
}
