//! The operational routes, outside any API surface: `/healthz` (the process
//! runs), `/readyz` (every namespace is loaded), `/metrics` and the
//! `/openapi.yaml` contract.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::{AppState, Handlers};
use crate::error::ApiError;

/// The operational routes: path template and handlers.
pub const ROUTES: [(&str, Handlers<AppState>); 4] = [
    ("/healthz", || get(healthz)),
    ("/readyz", || get(readyz)),
    ("/openapi.yaml", || get(openapi)),
    ("/metrics", || get(metrics)),
];

/// 200 while the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once every namespace finished its first load; 503 `not_ready` with
/// per-namespace detail before. Losing etcd later does not make the gateway
/// unready: it serves the last state, marked stale.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let namespaces = state.namespaces.reports();
    if state.namespaces.all_ready() {
        Ok(Json(json!({"status": "ready", "namespaces": namespaces})))
    } else {
        Err(ApiError::NotReady { namespaces })
    }
}

/// The OpenAPI document, compiled in so the binary serves the contract it implements.
const OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// `GET /metrics`: the Prometheus exposition, OpenMetrics or the classic
/// text format as `Accept` asks.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (content_type, body) = state.metrics.render_for(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}
