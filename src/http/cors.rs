//! CORS for browser clients, from the `http.cors_origins` allowlist.
//!
//! Listed origins may send credentials (the `gateway_token` cookie), `*`
//! may not. Preflights are answered; `Last-Event-ID` (EventSource resume),
//! `Authorization` and `If-None-Match` may be sent; the cache headers and
//! validators are readable by scripts. Errors carry the headers too (the
//! layer wraps every response), so a browser can read a problem's body.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long browsers may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The CORS layer, or `None` when no origin is allowed.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let allow_origin = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            // Listed origins may send the token cookie (`fetch` with
            // `credentials: "include"`, `EventSource` with
            // `withCredentials`); `*` never carries credentials.
            .allow_credentials(!any)
            .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::IF_NONE_MATCH,
                header::CACHE_CONTROL,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-etcd-revision"),
                HeaderName::from_static("x-cache-status"),
                header::ETAG,
                header::AGE,
                header::RETRY_AFTER,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
