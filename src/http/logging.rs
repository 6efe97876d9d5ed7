//! Request logs: one span per request with its request id, the method and
//! the path with `access_token` redacted; one line per response with status
//! and latency. Secrets never reach the logs. (Used by `observe`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Response};
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

impl RequestIds {
    /// The next id.
    pub(super) fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Hex digits, a dash and digits: always a valid header value.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("{:08x}-{n}", self.prefix)))
            .unwrap_or(HeaderValue::from_static("-"))
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
pub fn span(request: &Request, id: &HeaderValue) -> Span {
    let id = id.to_str().unwrap_or("-");
    tracing::info_span!("request", id, method = %request.method(), uri = %redacted(request.uri()))
}

/// Logs the response of a request (call inside its span); server errors at
/// warn, naming the route and request id themselves: at a `warn` filter there
/// is no request span to carry them.
pub fn on_response<B>(response: &Response<B>, latency: Duration, route: &str, id: &HeaderValue) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        let id = id.to_str().unwrap_or("-");
        tracing::warn!(status, latency_ms, route, id, "response");
    } else {
        tracing::info!(status, latency_ms, "response");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_name_their_route_and_request_id_without_a_span() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let id = HeaderValue::from_static("abc-1");
        tracing::subscriber::with_default(subscriber, || {
            let ok = Response::builder().status(200).body(()).unwrap();
            on_response(&ok, Duration::from_millis(1), "/healthz", &id);
            let failed = Response::builder().status(503).body(()).unwrap();
            on_response(&failed, Duration::from_millis(1), "/v1/namespaces/{ns}/watch", &id);
        });
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(logged.contains("status=503"), "{logged}");
        assert!(logged.contains("route=\"/v1/namespaces/{ns}/watch\""), "{logged}");
        assert!(logged.contains("id=\"abc-1\""), "{logged}");
    }

    #[test]
    fn access_tokens_are_redacted() {
        let uri: axum::http::Uri =
            "/v1/namespaces/a/watch?prefix=x&access_token=s3cret&since=5".parse().unwrap();
        assert_eq!(redacted(&uri), "/v1/namespaces/a/watch?prefix=x&access_token=REDACTED&since=5");
        let plain: axum::http::Uri = "/healthz".parse().unwrap();
        assert_eq!(redacted(&plain), "/healthz");
    }
}
