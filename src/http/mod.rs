//! The HTTP plumbing every surface shares: the [`AppState`], the one
//! middleware ([`observe`]: request ids, logs, timeouts, limits, gzip,
//! metrics), authentication ([`auth`]), CORS, watch-stream caps, query
//! parameters, and the operational routes ([`ops`]).
//!
//! The API surfaces (`crate::api`) build on this module; it never imports
//! them. `crate::app` puts the routers together.

pub mod auth;
mod cors;
pub mod limits;
mod logging;
mod observe;
pub mod ops;
pub mod params;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::MethodRouter;
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
    /// The namespaces, their caches and fan-outs.
    pub namespaces: Namespaces,
    /// Cancelled when the gateway shuts down; ends every stream.
    pub shutdown: CancellationToken,
    /// Caps on concurrent watch streams.
    pub watch_limits: limits::WatchLimits,
    /// Bearer tokens (none: reads are open).
    pub tokens: auth::Tokens,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The bound on subscribers being caught up from etcd at once.
    pub catch_ups: Arc<crate::fanout::CatchUps>,
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
        let watch_limits = limits::WatchLimits::new(&config);
        let tokens = auth::Tokens::resolve(&config.tokens, env)?;
        let catch_ups = Arc::new(crate::fanout::CatchUps::new(
            config.watch.max_catch_ups,
            config.cache.max_history_bytes.bytes(),
        ));
        let metrics = crate::metrics::Metrics::new(namespaces.clone(), Arc::clone(&catch_ups));
        Ok(Self(Arc::new(Shared { config, namespaces, shutdown, watch_limits, tokens, metrics, catch_ups })))
    }
}

/// The handlers of one route, built on demand (a `MethodRouter` is not `const`).
pub type Handlers<S> = fn() -> MethodRouter<S>;

/// A router with every route of `table`.
pub fn router<S: Clone + Send + Sync + 'static>(table: &[(&'static str, Handlers<S>)]) -> Router<S> {
    table.iter().fold(Router::new(), |router, (path, handlers)| router.route(path, handlers()))
}

/// Wraps the assembled routes of every surface in the shared middleware and
/// the problem+json fallback. `routes` are the path templates of every
/// route: metrics label requests with them (never with raw paths).
pub fn finish(routes: Router, state: &AppState, templates: Vec<&'static str>) -> Router {
    let http = &state.config.http;
    let observe = observe::Observe {
        request_timeout: http.request_timeout.get(),
        body_limit: http.body_limit.bytes(),
        ids: logging::RequestIds::default(),
        metrics: state.metrics.clone(),
        templates: templates.into(),
        private: state.tokens.enabled(),
    };
    let cors = cors::layer(&http.cors_origins);
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(observe, observe::observe))
        .layer(tower::util::option_layer(cors))
}

/// A known path with a method it does not serve (axum adds `Allow`).
async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed { method: request.method().to_string(), path: request.uri().path().to_owned() }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound { path: request.uri().path().to_owned() }
}
