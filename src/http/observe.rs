//! One middleware around every request, doing in one pass what would
//! otherwise be six layers (each a boxed future and a body wrapper; together
//! they halved point-read throughput): the request id, the request's log
//! span and response line, the unary timeout, the declared-body-size limit,
//! gzip for clients that ask, and the HTTP metrics by matched route.
//!
//! The timeout bounds the response future only: a watch returns its
//! streaming response at once, so streams are never cut by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tracing::{Instrument, Level, Span};

use super::logging::{self, RequestIds};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The request id header, taken from the client or generated, and echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the middleware needs.
#[derive(Clone)]
pub struct Observe {
    /// Bound on a unary response.
    pub request_timeout: Duration,
    /// Largest declared request body.
    pub body_limit: u64,
    /// Request id source.
    pub ids: RequestIds,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// Every route's path template (a request's matched path is labelled
    /// with the `'static` one equal to it).
    pub templates: Arc<[&'static str]>,
    /// Answers depend on who asks (tokens are configured): shared caches must
    /// not keep them, and browsers must revalidate them (`Cache-Control:
    /// private, no-cache` unless a handler says otherwise).
    pub private: bool,
}

impl Observe {
    /// The `'static` template of a matched route path.
    fn template(&self, matched: &str) -> &'static str {
        self.templates.iter().copied().find(|t| *t == matched).unwrap_or("unmatched")
    }
}

/// The middleware.
pub async fn observe(State(observe): State<Observe>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = observe.ids.next();
            request.headers_mut().insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    let route =
        request.extensions().get::<MatchedPath>().map_or("unmatched", |p| observe.template(p.as_str()));
    let span = if tracing::enabled!(Level::INFO) { logging::span(&request, &id) } else { Span::none() };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let mut response = if declared > observe.body_limit {
        ApiError::bad_request(format!("the request body ({declared} bytes) exceeds http.body_limit"))
            .into_response()
    } else {
        // The deadline from the clock read above: one read fewer per request.
        let deadline = tokio::time::Instant::from_std(started) + observe.request_timeout;
        match tokio::time::timeout_at(deadline, run(next, request).instrument(span.clone())).await {
            Ok(response) => response,
            Err(_) => ApiError::Timeout {
                detail: format!("the request took longer than {:?}", observe.request_timeout),
            }
            .into_response(),
        }
    };
    if observe.private && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    }
    let latency = started.elapsed();
    observe.metrics.observe_request(route, response.status().as_u16(), latency);
    span.in_scope(|| logging::on_response(&response, latency, route, &id));
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// Compresses only answers whose length is known: a streamed body (a watch,
/// whatever its media type) would sit in the encoder's buffer instead of
/// reaching the client event by event.
#[derive(Clone, Copy)]
struct WholeBody;

impl Predicate for WholeBody {
    fn should_compress<B: axum::body::HttpBody>(&self, response: &Response<B>) -> bool {
        response.body().size_hint().exact().is_some()
    }
}

/// Runs the handler, gzip-compressing its answer when the client accepts
/// gzip and the answer is not a stream ([`WholeBody`]). Requests that do
/// not ask pay nothing for compression.
async fn run(next: Next, request: Request) -> Response {
    let accepts_gzip = request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    if !accepts_gzip {
        return next.run(request).await;
    }
    let gzip = tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .no_br()
        .no_deflate()
        .no_zstd()
        .compress_when(WholeBody.and(DefaultPredicate::new()));
    match tower::ServiceExt::oneshot(tower::Layer::layer(&gzip, next), request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::namespaces::Namespaces;

    fn app(metrics: Arc<Metrics>) -> Router {
        let observe = Observe {
            request_timeout: Duration::from_millis(50),
            body_limit: 16,
            ids: RequestIds::default(),
            metrics,
            templates: Arc::new(["/fast"]),
            private: false,
        };
        Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(observe, super::observe))
    }

    #[tokio::test]
    async fn timeouts_limits_ids_and_counts() {
        let config = crate::config::Config::default();
        let client = crate::etcd::EtcdClient::connect(&config.etcd).await.unwrap();
        let metrics = Metrics::new(
            Namespaces::new(&config, &client),
            Arc::new(crate::fanout::CatchUps::new(1, 1 << 20)),
        );
        let app = app(metrics.clone());
        let slow = app.clone().oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(slow.status(), 504);
        assert_eq!(slow.headers()["content-type"], "application/problem+json");
        let fast = app.clone().oneshot(Request::get("/fast").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(fast.status(), 200);
        assert!(fast.headers().contains_key("x-request-id"));
        let big =
            Request::get("/fast").header("content-length", "1000").body(Body::from(vec![0u8; 1000])).unwrap();
        let big = app.clone().oneshot(big).await.unwrap();
        assert_eq!(big.status(), 400);
        let exposition = metrics.render();
        // Known route templates become labels; anything else is `unmatched`.
        assert!(
            exposition
                .contains(r#"etcd_cache_gateway_http_requests_total{route="unmatched",status="504"} 1"#),
            "{exposition}"
        );
        assert!(
            exposition.contains(r#"etcd_cache_gateway_http_requests_total{route="/fast",status="200"} 1"#),
            "{exposition}"
        );
    }
}
