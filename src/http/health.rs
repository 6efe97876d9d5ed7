//! `/healthz` (the process runs) and `/readyz` (every namespace is loaded).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// 200 while the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once every namespace finished its first load; 503 `not_ready` with
/// per-namespace detail before. Losing etcd later does not make the gateway
/// unready: it serves the last state, marked stale.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let namespaces = json!(state.namespaces.reports());
    if state.namespaces.all_ready() {
        Ok(Json(json!({"status": "ready", "namespaces": namespaces})))
    } else {
        Err(ApiError::NotReady { namespaces })
    }
}
