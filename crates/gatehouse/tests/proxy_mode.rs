//! `gatehouse proxy` as it runs in a pod: tables pushed over the admin socket, refused
//! pushes that change nothing, and the persisted table served after a restart before
//! any controller is back.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use common::{Running, echo_upstream, eventually, free_port, status};

/// `gatehouse proxy` on free ports with its socket and state in `dir`.
fn start_proxy(dir: &Path) -> (Running, SocketAddr, SocketAddr) {
    let (running, http, admin, _) = spawn_proxy(dir, &dir.join("state"));
    (running, http, admin)
}

/// `gatehouse proxy` with its socket in `dir` and `--state-dir state` (a path or
/// `off`), once its admin socket exists: (process, http, admin, metrics).
fn spawn_proxy(dir: &Path, state: &Path) -> (Running, SocketAddr, SocketAddr, SocketAddr) {
    let (http, admin, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["proxy", "--workers", "1"])
        .arg("--http")
        .arg(http.to_string())
        .arg("--admin")
        .arg(admin.to_string())
        .arg("--metrics")
        .arg(metrics.to_string())
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gatehouse proxy");
    let running = Running(child);
    assert!(
        eventually(|| status(admin, "/healthz") == 200),
        "the proxy came up"
    );
    assert!(
        eventually(|| dir.join("admin.sock").exists()),
        "the admin socket exists"
    );
    (running, http, admin, metrics)
}

fn compile(manifests: &str) -> gatehouse_table::Table {
    let parsed = gatehouse_api::manifest::parse("push.yaml", manifests);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let (inputs, diags) = gatehouse_compiler::Inputs::from_documents(parsed.documents);
    assert!(diags.is_empty(), "{diags:?}");
    gatehouse_compiler::compile(&inputs).table
}

fn manifests(echo: SocketAddr, path: &str) -> String {
    format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Upstream\nmetadata: {{name: echo}}\nspec:\n  endpoints: [{{host: 127.0.0.1, port: {}}}]\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r}}\nspec:\n  rules:\n    - matches: [{{path: {{type: Prefix, value: {path}}}}}]\n      backends: [{{upstream: echo}}]\n",
        echo.port()
    )
}

/// One request over the admin socket: (status, JSON body).
fn socket_request(socket: &Path, method: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect to the admin socket");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri("/config")
            .header("host", "gatehouse")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).expect("a JSON answer"),
        )
    })
}

fn push(socket: &Path, table: &gatehouse_table::Table) -> (StatusCode, serde_json::Value) {
    socket_request(
        socket,
        "PUT",
        serde_json::to_vec(table).expect("table JSON"),
    )
}

#[test]
fn pushed_tables_are_served_refusals_change_nothing_and_restarts_serve_the_last_one() {
    let (_upstream, echo) = echo_upstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let (proxy, http, admin) = start_proxy(dir.path());

    // No table yet: not ready, nothing routed.
    assert_eq!(status(admin, "/readyz"), 503);
    assert_eq!(status(http, "/v1/x"), 404);
    let (code, v) = socket_request(&socket, "GET", Vec::new());
    assert_eq!((code, v["hash"].as_str()), (StatusCode::OK, Some("")));
    // The socket is for the proxy's own user only.
    let mode = std::fs::metadata(&socket).expect("socket metadata");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // A pushed table is applied, acknowledged with its version, and served.
    let mut table = compile(&manifests(echo, "/v1"));
    table.version = 7;
    let (code, v) = push(&socket, &table);
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 7);
    assert_eq!(v["hash"], table.hash.as_str());
    assert_eq!(v["persisted"], true);
    assert_eq!(status(http, "/v1/x"), 200);
    assert_eq!(status(admin, "/readyz"), 200);
    let (_, v) = socket_request(&socket, "GET", Vec::new());
    assert_eq!(v["hash"], table.hash.as_str());

    // Refused pushes: the running table keeps serving.
    let (code, v) = socket_request(&socket, "PUT", b"{not json".to_vec());
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("decode"))
    );
    let mut wrong_format = table.clone();
    wrong_format.format += 1;
    assert_eq!(
        push(&socket, &wrong_format).0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut unbuildable = compile(&manifests(echo, "/v2"));
    unbuildable.version = 8;
    std::sync::Arc::make_mut(&mut unbuildable.routes[0]).rules[0].matches[0].path =
        gatehouse_table::PathMatch::Regex("(".into());
    let (code, v) = push(&socket, &unbuildable);
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(status(http, "/v1/x"), 200);

    // Killed without a chance to clean up, and started again with no controller: the
    // persisted table is served at once.
    drop(proxy);
    let (_proxy, http, admin) = start_proxy(dir.path());
    assert!(
        eventually(|| status(admin, "/readyz") == 200),
        "ready from the persisted table"
    );
    assert_eq!(status(http, "/v1/x"), 200);
    let (_, v) = socket_request(&socket, "GET", Vec::new());
    assert_eq!(
        (v["version"].as_u64(), v["hash"].as_str()),
        (Some(7), Some(table.hash.as_str()))
    );

    // The next push replaces it, and is what a later restart serves.
    let mut next = compile(&manifests(echo, "/v3"));
    next.version = 9;
    assert_eq!(push(&socket, &next).0, StatusCode::OK);
    assert_eq!(status(http, "/v1/x"), 404);
    assert_eq!(status(http, "/v3/x"), 200);
}

#[test]
fn patches_apply_to_their_base_only_and_what_they_make_is_persisted() {
    let (_upstream, echo) = echo_upstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let (proxy, http, _admin) = start_proxy(dir.path());
    let mut first = compile(&manifests(echo, "/v1"));
    first.version = 1;
    let mut second = compile(&manifests(echo, "/v2"));
    second.version = 2;
    let patch = |from: &gatehouse_table::Table, to: &gatehouse_table::Table| {
        serde_json::to_vec(&from.diff(to)).expect("patch JSON")
    };

    // No table yet: a patch has nothing to apply to.
    let (code, v) = socket_request(&socket, "PATCH", patch(&first, &second));
    assert_eq!(code, StatusCode::CONFLICT, "{v}");

    assert_eq!(push(&socket, &first).0, StatusCode::OK);
    // The patch from the running table: only the changed route crosses the socket.
    let body = patch(&first, &second);
    assert!(
        !String::from_utf8_lossy(&body).contains("\"upstreams\""),
        "the unchanged upstream is not sent"
    );
    let (code, v) = socket_request(&socket, "PATCH", body);
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        (v["version"].as_u64(), v["hash"].as_str()),
        (Some(2), Some(second.hash.as_str()))
    );
    assert_eq!(status(http, "/v1/x"), 404);
    assert_eq!(status(http, "/v2/x"), 200);
    let (_, v) = socket_request(&socket, "GET", Vec::new());
    assert_eq!(v["hash"], second.hash.as_str());

    // A patch made for another table is refused with 409 and changes nothing; one that
    // does not decode, or does not fit, with 422.
    let (code, v) = socket_request(&socket, "PATCH", patch(&first, &second));
    assert_eq!(code, StatusCode::CONFLICT, "{v}");
    let (code, _) = socket_request(&socket, "PATCH", b"{\"format\":".to_vec());
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let mut misfit = second.diff(&first);
    misfit.removed_routes = vec!["default/nothing-here".into()];
    let (code, v) = socket_request(&socket, "PATCH", serde_json::to_vec(&misfit).expect("JSON"));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(status(http, "/v2/x"), 200);

    // The patched table reaches the state directory, and a restart serves it.
    let saved = dir.path().join("state/table.json");
    assert!(
        eventually(|| std::fs::read(&saved)
            .ok()
            .and_then(|b| serde_json::from_slice::<gatehouse_table::Table>(&b).ok())
            .is_some_and(|t| t == second)),
        "the patched table is persisted"
    );
    drop(proxy);
    let (_proxy, http, _admin) = start_proxy(dir.path());
    assert!(
        eventually(|| status(http, "/v2/x") == 200),
        "served after a restart"
    );
    assert_eq!(status(http, "/v1/x"), 404);
}

#[test]
fn the_metrics_listener_serves_only_probes_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_proxy, _, admin, metrics) = spawn_proxy(dir.path(), Path::new("off"));
    assert!(eventually(|| status(metrics, "/healthz") == 200));
    assert_eq!(status(metrics, "/readyz"), 503);
    assert_eq!(status(metrics, "/metrics"), 200);
    assert_eq!(status(metrics, "/config"), 404);
    assert_eq!(status(metrics, "/explain?url=http://a/"), 404);
    assert_eq!(status(admin, "/config"), 200);
}
