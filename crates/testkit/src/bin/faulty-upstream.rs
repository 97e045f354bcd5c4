//! `faulty-upstream`: fault-injection upstreams (`gatehouse_testkit::fault`) in a
//! process of their own, for benchmarks (`make bench-resilience`).
//!
//! ```text
//! faulty-upstream --listen PORT[,latency=MS][,capacity=N][,fail=PERCENT][,status=CODE] ...
//! ```
//!
//! Each `--listen` starts one server on 127.0.0.1:PORT: answers wait `latency`, at most
//! `capacity` requests are worked on at once, `fail` percent of them (at random) are
//! answered `status` (default 503). `GET /__stats` on each answers its counters.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_testkit::fault::spawn_faulty_on;

fn main() -> Result<(), String> {
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => specs.push(args.next().ok_or("--listen needs PORT[,key=value...]")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if specs.is_empty() {
        return Err("usage: faulty-upstream --listen PORT[,latency=MS][,capacity=N][,fail=PERCENT][,status=CODE] ...".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        for spec in specs {
            let mut parts = spec.split(',');
            let port: u16 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(format!("{spec:?}: a port first"))?;
            let f = spawn_faulty_on(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .map_err(|e| format!("port {port}: {e}"))?;
            let (mut fail, mut status) = (0.0, 503);
            for kv in parts {
                let (k, v) = kv.split_once('=').ok_or(format!("{kv:?}: key=value"))?;
                let n: f64 = v.parse().map_err(|_| format!("{kv:?}: a number"))?;
                match k {
                    "latency" => f.latency(Duration::from_millis(n as u64)),
                    "capacity" => f.capacity(n as usize),
                    "fail" => fail = n,
                    "status" => status = n as u16,
                    _ => return Err(format!("{k:?}: latency, capacity, fail or status")),
                }
            }
            f.fail_percent(fail, status);
        }
        std::future::pending::<()>().await;
        Ok(())
    })
}
