//! Request logs: one span per request with its request id, the client's
//! address, the method, the path with every parameter that may carry a
//! secret redacted, and the token's name once authenticated; one line per
//! response with status and latency (milliseconds, to the microsecond).
//! Secrets never reach the logs. (Used by `observe`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Response};
use tracing::Span;

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

/// Whether a query parameter's name says its value may be a secret: the
/// gateway's own `access_token`, and what people type instead of it
/// (`token`, `auth`, `password`, `api_key`, ...). Compared case-insensitively
/// and percent-decoded, so `Access%5FToken` is caught too.
fn may_be_secret(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy().to_ascii_lowercase();
    let secret_word = ["token", "secret", "password", "passwd", "auth", "credential", "session", "jwt"]
        .iter()
        .any(|w| name.contains(w));
    // `api_key`, `apikey`, `x-api-key`; not the gateway's `key` or `keys_only`.
    secret_word || name.ends_with("_key") || name.ends_with("-key") || name.ends_with("apikey")
}

/// The path and query with the value of every parameter that may carry a
/// secret replaced by `REDACTED`.
pub fn redacted(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if may_be_secret(name) { format!("{name}=REDACTED") } else { pair.to_owned() }
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

/// The span of one request; `token` is recorded once a token authenticates.
pub fn span(request: &Request, id: &HeaderValue) -> Span {
    let id = id.to_str().unwrap_or("-");
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
    tracing::info_span!(
        "request",
        id,
        client = client.map(tracing::field::display),
        method = %request.method(),
        uri = %redacted(request.uri()),
        token = tracing::field::Empty,
    )
}

/// Records the name of the token that authenticated the current request.
pub fn record_token(name: &str) {
    Span::current().record("token", tracing::field::display(name));
}

/// A latency in milliseconds, rounded to the microsecond.
fn millis(latency: Duration) -> f64 {
    // Whole microseconds: prints as 0.064, not 0.06352899999999999.
    latency.as_micros() as f64 / 1000.0
}

/// Logs the response of a request (call inside its span); server errors at
/// warn, naming the route and request id themselves: at a `warn` filter there
/// is no request span to carry them.
pub fn on_response<B>(response: &Response<B>, latency: Duration, route: &str, id: &HeaderValue) {
    let status = response.status().as_u16();
    let latency_ms = millis(latency);
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
    fn every_parameter_that_may_carry_a_secret_is_redacted() {
        let uri: axum::http::Uri =
            "/v1/namespaces/a/watch?prefix=x&access_token=s3cret&since=5&token=t0k&Password=p&key=k&keys_only=true&api_key=z&ACCESS%5FTOKEN=q"
                .parse()
                .unwrap();
        assert_eq!(
            redacted(&uri),
            "/v1/namespaces/a/watch?prefix=x&access_token=REDACTED&since=5&token=REDACTED&Password=REDACTED\
             &key=k&keys_only=true&api_key=REDACTED&ACCESS%5FTOKEN=REDACTED"
        );
        let plain: axum::http::Uri = "/healthz".parse().unwrap();
        assert_eq!(redacted(&plain), "/healthz");
    }

    #[test]
    fn latencies_are_whole_microseconds() {
        assert_eq!(millis(Duration::from_nanos(63_528_999)), 63.528);
        assert_eq!(millis(Duration::from_nanos(64_100)).to_string(), "0.064");
    }
}
