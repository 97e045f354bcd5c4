//! `gatehouse run` as a user runs it: the built binary, a folder of manifests, a real
//! upstream, live edits, a broken edit, SIGTERM.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{echo_upstream, eventually, run_gatehouse, status};

fn manifests(dir: &Path, echo: SocketAddr, prefix: &str) {
    let text = format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: echo}}\nspec:\n  endpoints: [{{host: 127.0.0.1, port: {}}}]\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r}}\nspec:\n  rules:\n    - matches: [{{path: {{type: Prefix, value: {prefix}}}}}]\n      backends: [{{upstream: echo}}]\n",
        echo.port()
    );
    std::fs::write(dir.join("gateway.yaml"), text).expect("write manifests");
}

#[test]
fn serves_reloads_keeps_the_last_good_table_and_drains() {
    let (_runtime, echo) = echo_upstream();
    let dir = tempfile::tempdir().expect("tempdir");
    manifests(dir.path(), echo, "/v1");
    let (mut child, http, _) = run_gatehouse(dir.path());
    assert_eq!(status(http, "/v1/items"), 200);
    assert_eq!(status(http, "/v2/items"), 404);

    // A live edit is applied.
    manifests(dir.path(), echo, "/v2");
    assert!(
        eventually(|| status(http, "/v2/items") == 200),
        "the edit was not applied"
    );
    assert_eq!(status(http, "/v1/items"), 404);

    // A broken file keeps the last good table serving.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: [oops\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("gateway.yaml"),
        "apiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r}\nspec:\n  rules:\n    - matches: [{path: {type: Regex, value: \"/v3(\"}}]\n      respond: {status: 200}\n",
    )
    .expect("write");
    std::thread::park_timeout(Duration::from_millis(500));
    assert_eq!(
        status(http, "/v2/items"),
        200,
        "the last good table keeps serving"
    );
    std::fs::remove_file(dir.path().join("broken.yaml")).expect("remove");
    assert!(eventually(|| status(http, "/v2/items") == 200));

    // SIGTERM: exits 0.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let code = child.0.wait().expect("exits");
    assert_eq!(code.code(), Some(0));
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("keeping the last good table"), "{stderr}");
    assert!(
        stderr.contains("spec.rules[0].matches[0].path.value"),
        "{stderr}"
    );
    assert!(stderr.contains("ApiRoute default/r"), "{stderr}");
}

#[test]
fn config_changes_under_load_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let (_runtime, echo) = echo_upstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |version: u32| {
        let text = format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: echo}}\nspec:\n  endpoints: [{{host: 127.0.0.1, port: {}}}]\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r}}\nspec:\n  rules:\n    - matches: [{{path: {{type: Prefix, value: /stable}}}}]\n      backends: [{{upstream: echo}}]\n    - matches: [{{path: {{type: Exact, value: /v{version}}}}}]\n      respond: {{status: 200}}\n",
            echo.port()
        );
        // Write then rename, as editors and GitOps tools do: readers never see half a file.
        let tmp = dir.path().join(".gateway.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.path().join("gateway.yaml")).expect("rename");
    };
    write(0);
    let (_child, http, _) = run_gatehouse(dir.path());

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if status(http, "/stable/item") == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let mut last_apply = Duration::ZERO;
    for version in 1..=10 {
        let written = Instant::now();
        write(version);
        let path = format!("/v{version}");
        assert!(
            eventually(|| status(http, &path) == 200),
            "change {version} never served"
        );
        last_apply = written.elapsed();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    // The figure for the notes; speed is measured, never asserted.
    eprintln!(
        "under load: {ok} requests ok, {failed} failed; last change served after {last_apply:?}"
    );
    assert_eq!(
        failed, 0,
        "{failed} requests failed during the changes ({ok} ok)"
    );
    assert!(ok > 100, "the load did not run: {ok} requests");
}
