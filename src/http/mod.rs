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
mod page_cache;
mod page_token;
mod params;
mod render;
mod sse;
mod timeout;
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
    /// Bearer tokens (none: reads are open).
    pub tokens: auth::Tokens,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
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
        Ok(Self { config, namespaces, shutdown, pages, watch_limits, tokens, metrics })
    }
}

/// Every route of the API as (path template, handlers). The router is built
/// from this list and a test checks it against `openapi/openapi.yaml`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/openapi.yaml", get(openapi)),
        ("/metrics", get(metrics)),
        ("/v1/namespaces", get(namespaces::list)),
        ("/v1/namespaces/{ns}/kv", get(kv::list)),
        ("/v1/namespaces/{ns}/kv/{*key}", get(kv::get_key)),
        ("/v1/namespaces/{ns}/watch", get(watch::watch)),
    ]
}

/// Builds the router with every route and layer.
pub fn app(state: AppState) -> Router {
    let http = &state.config.http;
    let cors = cors::layer(&http.cors_origins);
    let request_timeout = http.request_timeout.get();
    let body_limit = usize::try_from(http.body_limit.bytes()).unwrap_or(usize::MAX);
    let authenticate = axum::middleware::from_fn_with_state(state.clone(), auth::authenticate);
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(logging::span)
        .on_request(())
        .on_response(logging::on_response);
    let record = axum::middleware::from_fn_with_state(state.metrics.clone(), record_request);
    routes()
        .into_iter()
        .map(|(path, handlers)| {
            // Health, readiness and the spec stay open; every /v1 route needs a token when tokens exist.
            let handlers =
                if path.starts_with("/v1/") { handlers.route_layer(authenticate.clone()) } else { handlers };
            (path, handlers)
        })
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(request_timeout, timeout::request_timeout))
        .layer(record)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        // gzip for clients that ask; tower-http never compresses text/event-stream.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true).no_br().no_deflate().no_zstd())
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(logging::RequestIds::default()))
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

/// Counts every request by matched route (never the raw URL) and status.
async fn record_request(
    axum::extract::State(metrics): axum::extract::State<Arc<crate::metrics::Metrics>>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.observe_request(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound { path: request.uri().path().to_owned() }
}
