//! etcd-cache-gateway: an HTTP/JSON caching gateway in front of etcd.
//!
//! REST reads and Server-Sent-Events watches are served from an in-memory
//! watch cache that one etcd watch per namespace keeps fresh. `DESIGN.md`
//! describes the architecture; `openapi/openapi.yaml` the HTTP contract.
//!
//! The binary only wires: it loads the [`config::Config`], installs tracing and
//! calls [`run`]. Tests call the same [`run`] (or [`app`]) on port 0.

pub mod api;
pub mod assets;
pub mod cache;
pub mod config;
pub mod error;
pub mod etcd;
pub mod fanout;
pub mod http;
pub mod metrics;
pub mod namespaces;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod ui;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use axum::Router;
pub use http::AppState;

use config::Config;
use etcd::{EtcdClient, SetupError};
use namespaces::Namespaces;

/// Why the gateway stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The etcd client could not be set up (bad TLS files, failed authentication).
    #[error("etcd client setup failed: {0}")]
    Etcd(#[from] SetupError),
    /// A token's secret could not be resolved.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The `[http.tls]` certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The whole HTTP application: the operational routes and every API
/// surface, in the shared middleware.
pub fn app(state: AppState) -> Router {
    let mut routes = http::router(&http::ops::ROUTES)
        .with_state(state.clone())
        .merge(api::v1::router(state.clone()))
        .merge(api::kubernetes::router(state.clone()));
    routes = routes.merge(http::router(&assets::client::ROUTES)).merge(http::router(&ui::ROUTES));
    if state.config.etcd_api.enabled {
        routes = routes.merge(api::etcd_v3::router(state.clone()));
    }
    http::finish(routes, &state, route_templates())
}

/// The path template of every route the gateway serves (the OpenAPI
/// document lists exactly these).
pub fn route_templates() -> Vec<&'static str> {
    let ops = http::ops::ROUTES.iter().map(|(path, _)| *path);
    let client = assets::client::ROUTES.iter().map(|(path, _)| *path);
    let ui = ui::ROUTES.iter().map(|(path, _)| *path);
    let kubernetes = api::kubernetes::ROUTES.iter().map(|(path, _)| *path);
    let etcd_v3 = api::etcd_v3::ROUTES.iter().map(|(path, _)| *path);
    let mut templates: Vec<&'static str> = ops
        .chain(api::v1::ROUTES.iter().map(|(path, _)| *path))
        .chain(client)
        .chain(ui)
        .chain(kubernetes)
        .chain(etcd_v3)
        .collect();
    // `/version` is both dialects' (one route, see api::etcd_v3).
    templates.sort_unstable();
    templates.dedup();
    templates
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then drains
/// for at most `http.shutdown_timeout` and returns.
///
/// # Errors
/// [`RunError`] when etcd cannot be set up, a token's secret cannot be
/// resolved, or the listener fails.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let config = Arc::new(config);
    let tls = config.http.tls.as_ref().map(server::tls_acceptor).transpose()?;
    let etcd = EtcdClient::connect(&config.etcd).await?;
    let namespaces = Namespaces::new(&config, &etcd);
    // Token secrets are resolved before anything starts, so a bad one stops
    // the gateway with nothing left running.
    let state =
        AppState::new(config.clone(), namespaces.clone(), shutdown.clone(), |name| std::env::var(name).ok())?;
    let tasks = TaskTracker::new();
    namespaces.start(&config, &etcd, &tasks, &shutdown);
    tasks.close();
    let router = app(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, scheme, "listening");
    let server = tokio::spawn(server::serve(listener, router, tls, shutdown.clone()));
    shutdown.cancelled().await;
    let deadline = config.http.shutdown_timeout.get();
    let drained = tokio::time::timeout(deadline, async {
        let _ = server.await;
        tasks.wait().await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("shut down cleanly"),
        Err(_) => tracing::warn!(?deadline, "drain deadline passed; exiting with work still open"),
    }
    Ok(())
}
