//! `/v1`: the gateway's own HTTP API (API.md): key-value reads, SSE
//! watches, and the namespaces.

mod filter;
#[cfg(test)]
mod fuzz_tests;
mod kv;
mod kv_request;
mod listing;
mod namespace;
mod namespaces;
mod page_cache;
mod page_token;
mod render;
mod select;
mod selection;
mod sse;
mod watch;
mod watch_request;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

use crate::http::{AppState, Handlers};

/// The state of the `/v1` handlers: the shared state and the rendered
/// listing pages. One `Arc`, as [`AppState`].
#[derive(Clone)]
pub struct V1(Arc<V1Shared>);

/// The fields of [`V1`].
pub struct V1Shared {
    /// What every surface shares.
    pub app: AppState,
    /// Rendered listing pages, shared between equal requests.
    pub pages: page_cache::PageCache,
}

impl std::ops::Deref for V1 {
    type Target = V1Shared;

    fn deref(&self) -> &V1Shared {
        &self.0
    }
}

impl FromRef<V1> for AppState {
    fn from_ref(v1: &V1) -> Self {
        v1.app.clone()
    }
}

/// Every `/v1` route: path template and handlers.
pub const ROUTES: [(&str, Handlers<V1>); 5] = [
    ("/v1/namespaces", || get(namespaces::list)),
    ("/v1/namespaces/{ns}", || get(namespaces::one)),
    ("/v1/namespaces/{ns}/kv", || get(kv::list)),
    ("/v1/namespaces/{ns}/kv/{*key}", || get(kv::get_key)),
    ("/v1/namespaces/{ns}/watch", || get(watch::watch)),
];

/// The `/v1` routes over `app`.
pub fn router(app: AppState) -> Router {
    let pages = page_cache::PageCache::new(app.config.http.page_cache_bytes.bytes());
    crate::http::router(&ROUTES).with_state(V1(Arc::new(V1Shared { app, pages })))
}
