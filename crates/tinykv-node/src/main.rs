//! `tinykv-node`: runs one TinyKV node until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use tinykv_node::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's allocator: the node makes many small,
/// short-lived allocations per request (protobuf messages, batch items,
/// memtable entries), and glibc's `_int_malloc` alone was ~6 % of the CPU
/// of a YCSB A benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all()
        .build()
        .context("building the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // TINYKV_LOG wins, then the usual RUST_LOG (the operator's pods set
    // RUST_LOG), then "info".
    let filter = EnvFilter::try_from_env("TINYKV_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    tinykv_node::server::run(config, listener, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM (what Kubernetes and Docker send) or SIGINT.
async fn signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("signal received");
    shutdown.cancel();
}
