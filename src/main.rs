//! The `etcd-cache-gateway` binary: wiring only (config → tracing → run).

use anyhow::Context;
use clap::Parser;
use etcd_cache_gateway::config::{self, Cli};

/// jemalloc, for an RSS that follows the heap in use (see Cargo.toml), with
/// the options in `.cargo/config.toml` compiled in.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's figures for the `etcd_cache_gateway_heap_*` metrics.
#[cfg(target_os = "linux")]
fn jemalloc_stats() -> Option<etcd_cache_gateway::metrics::HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The figures are a snapshot, refreshed by advancing the epoch.
    epoch::advance().ok()?;
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.ok().map(|v| v as u64);
    Some(etcd_cache_gateway::metrics::HeapStats {
        allocated: read(stats::allocated::read())?,
        active: read(stats::active::read())?,
        resident: read(stats::resident::read())?,
        mapped: read(stats::mapped::read())?,
        retained: read(stats::retained::read())?,
        metadata: read(stats::metadata::read())?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    etcd_cache_gateway::metrics::report_heap(jemalloc_stats);
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The build compiled `.cargo/config.toml`'s options into jemalloc: freed
    /// pages go back to the system at once (RELIABILITY.md, "Soak").
    #[test]
    fn jemalloc_is_built_to_return_free_pages_at_once() {
        // The string comes with its terminating NUL.
        let options = tikv_jemalloc_ctl::config::malloc_conf::read().unwrap();
        assert_eq!(options.trim_end_matches('\0'), "dirty_decay_ms:0,tcache_max:131072");
    }
}
