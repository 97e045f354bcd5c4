//! `gatehouse-echo [ADDR]`: the echo upstream as a process (default 127.0.0.1:9001).

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "gatehouse-echo: listening on http://{}",
            listener.local_addr()?
        );
        gatehouse_testkit::echo(listener).await;
        Ok(())
    })
}
