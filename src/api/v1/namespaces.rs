//! `GET /v1/namespaces` and `GET /v1/namespaces/{ns}`: the namespaces and
//! the state of their caches.

use axum::Json;
use axum::extract::{Request, State};
use serde_json::{Value, json};

use super::V1;
use super::namespace::of_path;
use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::namespaces::Namespace;

/// Every namespace the caller may read, with its revisions, key count and
/// freshness; the etcd prefix only without auth or to a `*` token.
pub async fn list(State(state): State<V1>, caller: Caller) -> Json<Value> {
    let items: Vec<Value> = state
        .app
        .namespaces
        .iter()
        .filter(|ns| caller.may_read(&ns.config.name))
        .map(|ns| item(ns, &caller))
        .collect();
    Json(json!({"namespaces": items}))
}

/// One namespace, as an item of the listing.
pub async fn one(State(state): State<V1>, caller: Caller, request: Request) -> Result<Json<Value>, ApiError> {
    let ns = of_path(&state.app, request.uri().path(), &caller)?;
    Ok(Json(item(ns, &caller)))
}

fn item(ns: &Namespace, caller: &Caller) -> Value {
    let mut item = json!(ns.cache.report());
    if caller.sees_prefixes() {
        item["prefix"] = json!(ns.config.prefix);
    }
    item
}
