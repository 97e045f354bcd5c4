//! Upgraded connections (HTTP/1.1 `Upgrade`, e.g. WebSocket): once the upstream
//! answers `101 Switching Protocols`, the two connections become one byte tunnel.

use http::header;
use http::request::Parts;

/// Whether the client asks to switch protocols.
pub(crate) fn requested(parts: &Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Joins the client's and the upstream's upgraded connections, on this worker, until
/// either side ends.
pub(crate) fn spawn(
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
    upstream: String,
) {
    tokio::task::spawn_local(async move {
        match tokio::try_join!(client_side, upstream_side) {
            Ok((a, b)) => {
                let (mut a, mut b) = (
                    hyper_util::rt::TokioIo::new(a),
                    hyper_util::rt::TokioIo::new(b),
                );
                if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                    tracing::debug!(%upstream, error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::debug!(%upstream, error = %e, "upgrade failed"),
        }
    });
}
