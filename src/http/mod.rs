//! The HTTP layer: the axum [`Router`] built by [`app`], its shared
//! [`AppState`], and one module per group of routes.

mod cors;
mod filter;
mod health;
mod kv;
mod kv_request;
mod limits;
mod namespaces;
mod page_cache;
mod page_token;
mod params;
mod render;
mod sse;
mod watch;
mod watch_request;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;
use crate::namespaces::Namespaces;

/// What every handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The namespaces and their caches.
    pub namespaces: Namespaces,
    /// Cancelled when the gateway shuts down; ends every stream.
    pub shutdown: CancellationToken,
    /// Rendered listing pages.
    pub pages: page_cache::PageCache,
    /// Caps on concurrent watch streams.
    pub watch_limits: limits::WatchLimits,
}

impl AppState {
    /// The state of a gateway serving `namespaces`.
    pub fn new(config: Arc<Config>, namespaces: Namespaces, shutdown: CancellationToken) -> Self {
        let pages = page_cache::PageCache::new(config.http.page_cache_bytes.bytes());
        let watch_limits = limits::WatchLimits::new(&config);
        Self { config, namespaces, shutdown, pages, watch_limits }
    }
}

/// Every route of the API as (path template, handlers). The router is built
/// from this list and a test checks it against `openapi/openapi.yaml`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/openapi.yaml", get(openapi)),
        ("/v1/namespaces", get(namespaces::list)),
        ("/v1/namespaces/{ns}/kv", get(kv::list)),
        ("/v1/namespaces/{ns}/kv/{*key}", get(kv::get_key)),
        ("/v1/namespaces/{ns}/watch", get(watch::watch)),
    ]
}

/// Builds the router with every route and layer.
pub fn app(state: AppState) -> Router {
    let cors = cors::layer(&state.config.http.cors_origins);
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(not_found)
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The OpenAPI document, compiled in so the binary serves the contract it implements.
const OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound { path: request.uri().path().to_owned() }
}
