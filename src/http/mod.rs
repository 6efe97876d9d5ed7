//! The HTTP layer: the axum [`Router`] built by [`app`], its shared
//! [`AppState`], and one module per group of routes.

mod auth;
mod cors;
mod filter;
mod health;
mod kv;
mod kv_request;
mod limits;
mod logging;
mod namespaces;
mod observe;
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

/// What every handler may use. One `Arc`: axum clones the state for every
/// request, and cloning a dozen shared handles showed up in profiles.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`].
pub struct Shared {
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
    /// Bearer tokens (none: reads are open).
    pub tokens: auth::Tokens,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a gateway serving `namespaces`; token secrets named by
    /// environment variables are looked up with `env`.
    ///
    /// # Errors
    /// A token whose secret cannot be resolved.
    pub fn new(
        config: Arc<Config>,
        namespaces: Namespaces,
        shutdown: CancellationToken,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let pages = page_cache::PageCache::new(config.http.page_cache_bytes.bytes());
        let watch_limits = limits::WatchLimits::new(&config);
        let tokens = auth::Tokens::resolve(&config.tokens, env)?;
        let metrics = crate::metrics::Metrics::new(namespaces.clone());
        Ok(Self(Arc::new(Shared { config, namespaces, shutdown, pages, watch_limits, tokens, metrics })))
    }
}

/// Builds the handlers of one route.
type Handlers = fn() -> MethodRouter<AppState>;

/// Every route of the API: path template and a constructor of its handlers.
/// The router is built from this table, metrics label requests with its
/// templates, and a test checks it against `openapi/openapi.yaml`.
const ROUTES: [(&str, Handlers); 8] = [
    ("/healthz", || get(health::healthz)),
    ("/readyz", || get(health::readyz)),
    ("/openapi.yaml", || get(openapi)),
    ("/metrics", || get(metrics)),
    ("/v1/namespaces", || get(namespaces::list)),
    ("/v1/namespaces/{ns}/kv", || get(kv::list)),
    ("/v1/namespaces/{ns}/kv/{*key}", || get(kv::get_key)),
    ("/v1/namespaces/{ns}/watch", || get(watch::watch)),
];

/// Every route of the API as (path template, handlers).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    ROUTES.iter().map(|(path, handlers)| (*path, handlers())).collect()
}

/// The `'static` template of a matched route path (for metric labels).
pub(crate) fn route_template(matched: &str) -> &'static str {
    ROUTES.iter().map(|(path, _)| *path).find(|path| *path == matched).unwrap_or("unmatched")
}

/// Builds the router with every route and layer.
pub fn app(state: AppState) -> Router {
    let http = &state.config.http;
    let observe = observe::Observe {
        request_timeout: http.request_timeout.get(),
        body_limit: http.body_limit.bytes(),
        ids: logging::RequestIds::default(),
        metrics: state.metrics.clone(),
    };
    let cors = cors::layer(&http.cors_origins);
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(observe, observe::observe))
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

/// The OpenAPI document, compiled in so the binary serves the contract it implements.
const OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// `GET /metrics`: the Prometheus exposition (OpenMetrics text).
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render())
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound { path: request.uri().path().to_owned() }
}
