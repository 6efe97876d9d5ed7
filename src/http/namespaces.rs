//! `GET /v1/namespaces`: the namespaces and the state of their caches.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Every namespace with its revisions, key count and freshness.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = state
        .namespaces
        .iter()
        .map(|ns| {
            let mut item = json!(ns.cache.report());
            item["prefix"] = json!(ns.config.prefix);
            item
        })
        .collect();
    Json(json!({"namespaces": items}))
}
