//! The controller's side of the push: HTTP/1.1 over the proxy's admin socket, with the
//! messages of [`gatehouse_table::push`] (the proxy answers with the same types).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_table::push::Refused;
use gatehouse_table::{Table, TablePatch};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub use gatehouse_table::push::Running;

/// How long one exchange with the proxy may take (a 10k-route table is tens of MB).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a push did not apply.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The proxy is not reachable (not started yet, restarting), or answered what no
    /// proxy answers.
    #[error("proxy unreachable at {}: {source}", socket.display())]
    Unreachable {
        /// The proxy's admin socket.
        socket: PathBuf,
        /// What failed.
        #[source]
        source: ExchangeError,
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

/// What failed in one exchange with the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Connecting to the socket.
    #[error(transparent)]
    Connect(std::io::Error),
    /// The HTTP/1.1 exchange (handshake, request, reading the answer).
    #[error(transparent)]
    Http(hyper::Error),
    /// The request could not be made.
    #[error(transparent)]
    Request(http::Error),
    /// The table or patch could not be encoded.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// No answer within the exchange timeout.
    #[error("timed out")]
    TimedOut,
    /// An answer the push endpoint does not give.
    #[error("{method} /config answered {status}")]
    Answered {
        /// The request's method.
        method: Method,
        /// The answer's status.
        status: StatusCode,
    },
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

    fn unreachable(&self, source: ExchangeError) -> PushError {
        PushError::Unreachable {
            socket: self.socket.clone(),
            source,
        }
    }

    /// One request to `/config`: the answer's status and body.
    async fn exchange(
        &self,
        method: Method,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), PushError> {
        let work = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(ExchangeError::Connect)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(ExchangeError::Http)?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri("/config")
                .header(http::header::HOST, "gatehouse-proxy")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(ExchangeError::Request)?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(ExchangeError::Http)?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(ExchangeError::Http)?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, work)
            .await
            .unwrap_or(Err(ExchangeError::TimedOut))
            .map_err(|e| self.unreachable(e))
    }

    /// What the proxy runs now.
    pub async fn running(&self) -> Result<Running, PushError> {
        let (status, body) = self.exchange(Method::GET, Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(self.unreachable(ExchangeError::Answered {
                method: Method::GET,
                status,
            }));
        }
        // An answer that does not decode says nothing the proxy runs: the whole table
        // is pushed again.
        Ok(serde_json::from_slice(&body).unwrap_or_default())
    }

    /// Pushes `table`; `Ok` once the proxy applied it.
    pub async fn push(&self, table: &Table) -> Result<Running, PushError> {
        let running = Running {
            version: table.version,
            hash: table.hash.clone(),
            ..Running::default()
        };
        self.send(Method::PUT, table, running).await
    }

    /// Sends `patch`; `Ok` once the proxy applied it, [`PushError::OtherBase`] when the
    /// proxy does not run the patch's base table (the whole table is needed then).
    pub async fn patch(&self, patch: &TablePatch) -> Result<Running, PushError> {
        let running = Running {
            version: patch.version,
            hash: patch.hash.clone(),
            ..Running::default()
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
        let body =
            serde_json::to_vec(body).map_err(|e| self.unreachable(ExchangeError::Encode(e)))?;
        let (status, answer) = self.exchange(method.clone(), Bytes::from(body)).await?;
        // The proxy's reasons, when it said any.
        let reasons = || {
            serde_json::from_slice::<Refused>(&answer)
                .unwrap_or_default()
                .reasons
        };
        match status {
            StatusCode::OK => Ok(running),
            StatusCode::CONFLICT => Err(PushError::OtherBase { reasons: reasons() }),
            StatusCode::UNPROCESSABLE_ENTITY => Err(PushError::Refused { reasons: reasons() }),
            status => Err(self.unreachable(ExchangeError::Answered { method, status })),
        }
    }
}
