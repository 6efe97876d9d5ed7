//! `/healthz` (the process runs) and `/readyz` (the gateway can serve).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;

/// 200 while the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once etcd has answered a real request; 503 `not_ready` before.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let etcd = json!({
        "answered": state.etcd.has_answered(),
        "reachable": state.etcd.is_reachable(),
        "etcd_revision": state.etcd.etcd_revision(),
    });
    if state.etcd.has_answered() {
        Ok(Json(json!({"status": "ready", "etcd": etcd})))
    } else {
        Err(ApiError::NotReady { namespaces: json!({"etcd": etcd}) })
    }
}
