//! A real `redis-server` on a free loopback port for tests, killed on drop.
//!
//! Without `redis-server` installed, [`RedisServer::start`] returns `None` (after saying
//! so) and the test skips, unless `GATEHOUSE_REQUIRE_REDIS` is set (CI installs Redis
//! and sets it), where it panics: a suite that silently skips proves nothing.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (no persistence), stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or `None` when the test must skip.
    pub fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut redis = RedisServer { port, child: None };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var_os("GATEHOUSE_REQUIRE_REDIS").is_some() {
                    panic!("redis-server is not installed and GATEHOUSE_REQUIRE_REDIS is set");
                }
                eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
                None
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::park_timeout(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server (its port stays reserved for [`RedisServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts an empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("redis-server restarts");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
