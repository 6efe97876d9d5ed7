//! The unary request timeout: the response future (not the body) must be
//! ready within `http.request_timeout`, else 504 `timeout`. A watch
//! returns its streaming response at once, so streams are never cut by it.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Middleware: answers 504 `timeout` when the handler takes longer than the
/// state's duration.
pub async fn request_timeout(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::Timeout { detail: format!("the request took longer than {timeout:?}") }.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn slow_handlers_get_a_504_problem_and_fast_ones_pass() {
        let app = Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(Duration::from_millis(50), request_timeout));
        let slow = app.clone().oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(slow.status(), 504);
        assert_eq!(slow.headers()["content-type"], "application/problem+json");
        let fast = app.oneshot(Request::get("/fast").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(fast.status(), 200);
    }
}
