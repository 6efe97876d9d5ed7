//! `GET /v1/namespaces`: the namespaces and the state of their caches.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;

/// Every namespace the caller may read, with its revisions, key count and
/// freshness; the etcd prefix only without auth or to a `*` token.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let items: Vec<Value> = state
        .namespaces
        .iter()
        .filter(|ns| caller.may_read(&ns.config.name))
        .map(|ns| {
            let mut item = json!(ns.cache.report());
            if caller.sees_prefixes() {
                item["prefix"] = json!(ns.config.prefix);
            }
            item
        })
        .collect();
    Json(json!({"namespaces": items}))
}
