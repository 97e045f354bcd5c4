//! Flags every command that serves traffic shares (`run`, `proxy`): the backends
//! policies use, turned into the proxy's [`Options`].

use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_proxy::Options;
use gatehouse_proxy::policy::global_limit::GlobalLimiter;
use gatehouse_proxy::policy::limit::GlobalBackend;

/// Policy backends of the data plane.
#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// Redis for `scope: Global` rate limits (`redis://[user:password@]host:port[/db]`).
    /// Without it such limits count per replica, and the logs say so.
    #[arg(long, env = "GATEHOUSE_REDIS")]
    pub redis: Option<String>,
    /// How long a global rate-limit check may wait for Redis before the policy's
    /// `failureMode` applies.
    #[arg(long, default_value = "100ms", value_parser = crate::run::parse_drain)]
    pub redis_timeout: Duration,
    /// Bytes the response cache holds at most (bodies, headers and keys); least
    /// recently and least frequently used entries go first.
    #[arg(long, env = "GATEHOUSE_CACHE_CAPACITY", default_value_t = gatehouse_proxy::policy::cache::DEFAULT_CAPACITY)]
    pub cache_capacity: u64,
}

impl DataPlaneArgs {
    /// The proxy's options. Connecting to Redis happens in the background: a Redis that
    /// is down at start is retried, and meanwhile `failureMode` applies.
    pub fn options(&self) -> Result<Options> {
        let global_limits = match &self.redis {
            None => None,
            Some(url) => Some(GlobalBackend {
                limiter: GlobalLimiter::new(url, "gatehouse:rl:")
                    .context("--redis: not a usable Redis URL")?,
                timeout: self.redis_timeout,
            }),
        };
        Ok(Options {
            global_limits,
            cache_capacity: self.cache_capacity,
        })
    }
}
