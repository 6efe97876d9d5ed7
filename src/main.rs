//! The `etcd-cache-gateway` binary: wiring only (config → tracing → run).

use anyhow::Context;
use clap::Parser;
use etcd_cache_gateway::config::{self, Cli};

/// jemalloc, for an RSS that follows the heap in use (see Cargo.toml).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config::Loaded { config, warnings } = config::load(&cli, std::env::vars())?;
    if cli.check_config {
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let _logs = etcd_cache_gateway::telemetry::init(&config.log).map_err(|e| anyhow::anyhow!(e))?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = etcd_cache_gateway::shutdown::on_signal();
    etcd_cache_gateway::run(config, listener, shutdown).await?;
    Ok(())
}
