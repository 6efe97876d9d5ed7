//! etcd's own JSON API (COMPAT.md §2): the paths, bodies and answers of
//! etcd's gRPC-gateway, so programs that speak it (APISIX through
//! lua-resty-etcd, Python's `etcd3gw`, `curl -d` scripts) get the watch
//! cache by changing one address.
//!
//! Reads (`/v3/kv/range`) and watches (`/v3/watch`) are served from the
//! namespaces' caches and fan-outs, keys being etcd's absolute keys
//! ([`keys`]); writes and lease calls are forwarded to etcd when the
//! configuration and the caller's token allow it ([`writes`]); `/version`
//! is etcd's own. Every error has etcd's shape ([`error`]).

mod auth;
mod error;
mod forward;
mod keys;
mod range;
mod watch;
mod wire;
mod writes;

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::{Code, EtcdError};
use wire::HeaderIds;

use crate::http::{AppState, Handlers};

/// The state of the etcd API's handlers. One `Arc`, as [`AppState`].
#[derive(Clone)]
pub struct EtcdV3(Arc<EtcdV3Shared>);

/// The fields of [`EtcdV3`].
pub struct EtcdV3Shared {
    /// What every surface shares.
    pub app: AppState,
    /// etcd's own JSON gateway, for what is forwarded.
    forward: forward::Forwarder,
    /// etcd's cluster and member ids and raft term, as last seen.
    ids: Mutex<Option<HeaderIds>>,
    /// When etcd was last asked for them without success: a down etcd is
    /// asked again only after [`IDS_RETRY_INTERVAL`], not on every read.
    ids_failed_at: Mutex<Option<std::time::Instant>>,
    /// etcd's `/version` answer, once fetched.
    version: Mutex<Option<bytes::Bytes>>,
}

impl std::ops::Deref for EtcdV3 {
    type Target = EtcdV3Shared;

    fn deref(&self) -> &EtcdV3Shared {
        &self.0
    }
}

impl FromRef<EtcdV3> for AppState {
    fn from_ref(api: &EtcdV3) -> Self {
        api.app.clone()
    }
}

impl EtcdV3 {
    /// The header ids etcd answers with: asked of etcd once (a status
    /// call), then kept up to date from etcd's answers. Zero (omitted)
    /// while etcd cannot be asked.
    async fn ids(&self) -> HeaderIds {
        if let Some(ids) = *self.ids.lock().unwrap_or_else(PoisonError::into_inner) {
            return ids;
        }
        let failed_at = *self.ids_failed_at.lock().unwrap_or_else(PoisonError::into_inner);
        if failed_at.is_some_and(|at| at.elapsed() < IDS_RETRY_INTERVAL) {
            return HeaderIds::default();
        }
        let status = self.app.namespaces.etcd().call(|mut client| async move { client.status().await }).await;
        match status {
            Ok(status) => {
                let ids = status.header().map(ids_of).unwrap_or_default();
                self.saw(ids);
                ids
            }
            Err(e) => {
                tracing::debug!(error = %e, "etcd's header ids are unknown");
                *self.ids_failed_at.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(std::time::Instant::now());
                HeaderIds::default()
            }
        }
    }

    /// Remembers the ids of an answer from etcd.
    fn saw(&self, ids: HeaderIds) {
        *self.ids.lock().unwrap_or_else(PoisonError::into_inner) = Some(ids);
    }
}

/// The ids of an etcd response header.
fn ids_of(header: &etcd_client::ResponseHeader) -> HeaderIds {
    HeaderIds {
        cluster_id: header.cluster_id(),
        member_id: header.member_id(),
        raft_term: header.raft_term(),
    }
}

/// How long after a failed attempt etcd's header ids are asked for again.
const IDS_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Every route of the etcd API: path template and handlers.
pub const ROUTES: [(&str, Handlers<EtcdV3>); 15] = [
    ("/version", || get(version)),
    ("/v3/kv/range", || post(range::range)),
    ("/v3/watch", || post(watch::watch)),
    ("/v3/kv/put", || post(writes::put)),
    ("/v3/kv/deleterange", || post(writes::delete_range)),
    ("/v3/kv/txn", || post(writes::txn)),
    ("/v3/lease/grant", || post(writes::lease_change)),
    ("/v3/lease/revoke", || post(writes::lease_change)),
    ("/v3/kv/lease/revoke", || post(writes::lease_change)),
    ("/v3/lease/keepalive", || post(writes::lease_change)),
    ("/v3/lease/timetolive", || post(writes::lease_read)),
    ("/v3/kv/lease/timetolive", || post(writes::lease_read)),
    ("/v3/lease/leases", || post(writes::lease_read)),
    ("/v3/auth/authenticate", || post(auth::authenticate)),
    ("/v3/kv/lease/leases", || post(writes::lease_read)),
];

/// The etcd API's routes over `app`.
pub fn router(app: AppState) -> Router {
    let forward = forward::Forwarder::new(&app.config);
    let shared = EtcdV3Shared {
        app,
        forward,
        ids: Mutex::new(None),
        ids_failed_at: Mutex::new(None),
        version: Mutex::new(None),
    };
    crate::http::router(&ROUTES).with_state(EtcdV3(Arc::new(shared)))
}

/// `GET /version`: etcd's own answer (`{"etcdserver","etcdcluster"}`),
/// which lua-resty-etcd and etcd3gw read to choose their API prefix; with
/// Kubernetes resources configured, Kubernetes' fields too (COMPAT.md §1:
/// kubectl and DynamicClient read them from the same path).
async fn version(State(api): State<EtcdV3>) -> Result<Response, EtcdError> {
    let known = api.version.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let body = match known {
        Some(body) => body,
        None => {
            let body = api.forward.get("/version").await?;
            *api.version.lock().unwrap_or_else(PoisonError::into_inner) = Some(body.clone());
            body
        }
    };
    let body = if api.app.config.kubernetes.resources.is_empty() {
        body
    } else {
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).unwrap_or_default();
        if let serde_json::Value::Object(kube) = crate::api::kubernetes::discovery::version_fields() {
            fields.extend(kube);
        }
        bytes::Bytes::from(serde_json::to_vec(&fields).unwrap_or_default())
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
