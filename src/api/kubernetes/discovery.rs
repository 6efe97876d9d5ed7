//! Discovery (`/api`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`) and
//! `/version`: what kubectl and the Python `DynamicClient` read before they
//! list or watch. A token sees only the resources it may read. Aggregated
//! discovery (`as=APIGroupDiscoveryList`) is answered with the plain form,
//! which clients that ask for it accept (they read the `Content-Type`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::status::Status;
use super::{Kube, authenticated, may_read};
use crate::error::ApiError;
use crate::http::auth::Caller;

/// The Kubernetes minor version the surface reports: the API it follows
/// (WatchList, `sendInitialEvents`, bookmarks as in 1.32).
const KUBE_MINOR: &str = "32";

/// `GET /version`.
pub async fn version(_: Kube, caller: Result<Caller, ApiError>, _: Request) -> Result<Response, Status> {
    authenticated(caller)?;
    Ok(Json(version_fields()).into_response())
}

/// Kubernetes' `/version` fields (with the etcd dialect on, its `/version`
/// answers etcd's fields and these).
pub fn version_fields() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+etcd-cache-gateway-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `GET /api`: the core group is not served.
pub async fn api(_: Kube, caller: Result<Caller, ApiError>, _: Request) -> Result<Response, Status> {
    authenticated(caller)?;
    Ok(Json(json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []})).into_response())
}

/// The versions of each group the caller may read, in configuration order.
fn visible(state: &Kube, caller: &Caller) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in state.resources.iter().filter(|r| may_read(caller, r)) {
        let versions = groups.entry(r.config.group.clone()).or_default();
        if !versions.contains(&r.config.version) {
            versions.push(r.config.version.clone());
        }
    }
    groups
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let version = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(version).collect::<Vec<_>>(),
        "preferredVersion": version(&versions[0]),
    })
}

/// `GET /apis`: `APIGroupList`.
pub async fn groups(state: Kube, caller: Result<Caller, ApiError>, _: Request) -> Result<Response, Status> {
    let caller = authenticated(caller)?;
    let groups: Vec<Value> = visible(&state, &caller).iter().map(|(g, v)| group_json(g, v)).collect();
    Ok(Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response())
}

/// The path segments after `/apis/`.
fn segments(request: &Request) -> Vec<String> {
    let path = request.uri().path().strip_prefix("/apis/").unwrap_or_default();
    path.split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// `GET /apis/{g}`: `APIGroup`.
pub async fn group(
    state: Kube,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Response, Status> {
    let caller = authenticated(caller)?;
    let name = segments(&request).swap_remove(0);
    let groups = visible(&state, &caller);
    let versions = groups.get(&name).ok_or_else(|| Status::no_route(request.uri().path()))?;
    let mut group = group_json(&name, versions);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Ok(Json(group).into_response())
}

/// `GET /apis/{g}/{v}`: `APIResourceList`.
pub async fn resources(
    state: Kube,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Response, Status> {
    let caller = authenticated(caller)?;
    let segments = segments(&request);
    let (group, version) = (&segments[0], segments.get(1).map_or("", String::as_str));
    let resources: Vec<Value> = state
        .resources
        .iter()
        .filter(|r| r.config.group == *group && r.config.version == version && may_read(&caller, r))
        .map(|r| {
            json!({
                "name": r.config.resource,
                "singularName": r.config.kind.to_lowercase(),
                "namespaced": r.namespaced(),
                "kind": r.config.kind,
                "verbs": ["get", "list", "watch"],
            })
        })
        .collect();
    if resources.is_empty() {
        return Err(Status::no_route(request.uri().path()));
    }
    Ok(Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
    .into_response())
}
