//! Request logs: one span per request with a request id (`x-request-id`,
//! taken from the client or generated, echoed on the response), the method
//! and the path with `access_token` redacted; one line per response with
//! status and latency. Secrets never reach the logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Response};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

use super::auth::ACCESS_TOKEN_PARAM;

/// Request ids: a per-process random prefix and a counter, unique enough to
/// find one request's lines among several replicas' logs.
#[derive(Clone)]
pub struct RequestIds {
    prefix: u32,
    next: std::sync::Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self { prefix: fastrand::u32(..), next: std::sync::Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}

/// The path and query with the value of `access_token` replaced.
pub fn redacted(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name == ACCESS_TOKEN_PARAM => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

/// The span of one request.
pub fn span(request: &Request) -> Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", id, method = %request.method(), uri = %redacted(request.uri()))
}

/// Logs the response of a request (inside its span).
pub fn on_response<B>(response: &Response<B>, latency: Duration, _: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "response"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_are_redacted() {
        let uri: axum::http::Uri =
            "/v1/namespaces/a/watch?prefix=x&access_token=s3cret&since=5".parse().unwrap();
        assert_eq!(redacted(&uri), "/v1/namespaces/a/watch?prefix=x&access_token=REDACTED&since=5");
        let plain: axum::http::Uri = "/healthz".parse().unwrap();
        assert_eq!(redacted(&plain), "/healthz");
    }
}
