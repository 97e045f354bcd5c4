//! The controller's side of the push: HTTP/1.1 over the proxy's admin socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_table::{Table, TablePatch};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long one exchange with the proxy may take (a 10k-route table is tens of MB).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a push did not apply.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The proxy is not reachable (not started yet, restarting).
    #[error("proxy unreachable at {path}: {message}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The proxy runs another table than the patch's base: send the whole table.
    #[error("proxy runs another table than the patch was made for: {}", reasons.join("; "))]
    OtherBase {
        /// The proxy's reasons.
        reasons: Vec<String>,
    },
    /// The proxy refused the table; the running one stays.
    #[error("proxy refused the table: {}", reasons.join("; "))]
    Refused {
        /// The proxy's reasons.
        reasons: Vec<String>,
    },
}

/// What the proxy runs: version and content hash (empty before its first table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Version.
    pub version: u64,
    /// Content hash.
    pub hash: String,
}

/// The co-located proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    socket: PathBuf,
}

impl Proxy {
    /// The proxy listening on `socket`.
    pub fn new(socket: &Path) -> Proxy {
        Proxy {
            socket: socket.to_path_buf(),
        }
    }

    fn unreachable(&self, message: impl ToString) -> PushError {
        PushError::Unreachable {
            path: self.socket.clone(),
            message: message.to_string(),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        body: Bytes,
    ) -> Result<(StatusCode, serde_json::Value), PushError> {
        let work = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| self.unreachable(e))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| self.unreachable(e))?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri("/config")
                .header(http::header::HOST, "gatehouse-proxy")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| self.unreachable(e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            Ok((status, value))
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, work)
            .await
            .map_err(|_| self.unreachable("timed out"))?
    }

    /// What the proxy runs now.
    pub async fn running(&self) -> Result<Running, PushError> {
        let (status, v) = self.exchange(Method::GET, Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(self.unreachable(format!("GET /config answered {status}")));
        }
        Ok(Running {
            version: v["version"].as_u64().unwrap_or(0),
            hash: v["hash"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Pushes `table`; `Ok` once the proxy applied it.
    pub async fn push(&self, table: &Table) -> Result<Running, PushError> {
        let running = Running {
            version: table.version,
            hash: table.hash.clone(),
        };
        self.send(Method::PUT, table, running).await
    }

    /// Sends `patch`; `Ok` once the proxy applied it, [`PushError::OtherBase`] when the
    /// proxy does not run the patch's base table (the whole table is needed then).
    pub async fn patch(&self, patch: &TablePatch) -> Result<Running, PushError> {
        let running = Running {
            version: patch.version,
            hash: patch.hash.clone(),
        };
        self.send(Method::PATCH, patch, running).await
    }

    /// Sends `body` as JSON; `running` is what the proxy runs once it accepted it.
    async fn send(
        &self,
        method: Method,
        body: &impl serde::Serialize,
        running: Running,
    ) -> Result<Running, PushError> {
        let body = serde_json::to_vec(body).map_err(|e| self.unreachable(e))?;
        let (status, v) = self.exchange(method.clone(), Bytes::from(body)).await?;
        self.answered(status, &v, method.as_str(), running)
    }

    fn answered(
        &self,
        status: StatusCode,
        v: &serde_json::Value,
        method: &str,
        running: Running,
    ) -> Result<Running, PushError> {
        let reasons = || {
            v["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        match status {
            StatusCode::OK => Ok(running),
            StatusCode::CONFLICT => Err(PushError::OtherBase { reasons: reasons() }),
            StatusCode::UNPROCESSABLE_ENTITY => Err(PushError::Refused { reasons: reasons() }),
            other => Err(self.unreachable(format!("{method} /config answered {other}"))),
        }
    }
}
