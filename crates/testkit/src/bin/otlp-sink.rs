//! `otlp-sink`: an OTLP/HTTP trace receiver (`gatehouse_testkit::otlp`) in a process of
//! its own, for benchmarks (`make bench`): it decodes every export and counts its spans,
//! keeping none.
//!
//! ```text
//! otlp-sink --listen PORT
//! ```

use std::net::SocketAddr;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let port: u16 = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(port)) => port
            .parse()
            .map_err(|_| format!("{port:?} is not a port"))?,
        _ => return Err("usage: otlp-sink --listen PORT".into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        gatehouse_testkit::otlp::spawn_otlp_on(SocketAddr::from(([127, 0, 0, 1], port)), true)
            .await
            .map_err(|e| format!("listening on {port}: {e}"))?;
        std::future::pending::<()>().await;
        Ok(())
    })
}
