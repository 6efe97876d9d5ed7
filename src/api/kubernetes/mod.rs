//! The Kubernetes-style list/watch surface (COMPAT.md §1): JSON objects in
//! etcd served as read-only Kubernetes resources to unmodified Kubernetes
//! clients (kubectl, client-go informers, the Python client).
//!
//! A thin layer like `/v1`: discovery and `/version` from the
//! configuration, lists and gets from cache snapshots, watches rendered
//! from a [`crate::fanout::Feed`]. Every failure is a Kubernetes
//! [`status::Status`]. Nothing Kubernetes-shaped reaches the cache core.

pub mod discovery;
mod list;
mod request;
mod resource;
mod selector;
mod status;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use percent_encoding::percent_decode_str;

pub use resource::Resources;
pub use status::Status;

use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::{AppState, Handlers};
use request::ListQuery;
use resource::Resource;

/// The state of the Kubernetes handlers.
#[derive(Clone)]
pub struct Kube(Arc<KubeShared>);

/// The fields of [`Kube`].
pub struct KubeShared {
    /// What every surface shares.
    pub app: AppState,
    /// The configured resources.
    pub resources: Resources,
}

impl std::ops::Deref for Kube {
    type Target = KubeShared;

    fn deref(&self) -> &KubeShared {
        &self.0
    }
}

impl FromRef<Kube> for AppState {
    fn from_ref(kube: &Kube) -> Self {
        kube.app.clone()
    }
}

/// Every method answers: reads are served, anything else is a
/// `MethodNotAllowed` `Status` (the surface is read-only).
fn reads(handler: fn(Kube, Result<Caller, ApiError>, Request) -> HandlerFuture) -> MethodRouter<Kube> {
    any(move |State(state): State<Kube>, caller: Result<Caller, ApiError>, request: Request| async move {
        if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
            let mut response = Status::method_not_allowed(request.method().as_str()).into_response();
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if state.resources.is_empty() {
            return Status::no_route(request.uri().path()).into_response();
        }
        match handler(state, caller, request).await {
            Ok(response) => response,
            Err(status) => status.into_response(),
        }
    })
}

type HandlerFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Status>> + Send>>;

/// Every route of the surface: path template and handlers.
pub const ROUTES: [(&str, Handlers<Kube>); 6] = [
    ("/version", || reads(|s, c, r| Box::pin(discovery::version(s, c, r)))),
    ("/api", || reads(|s, c, r| Box::pin(discovery::api(s, c, r)))),
    ("/apis", || reads(|s, c, r| Box::pin(discovery::groups(s, c, r)))),
    ("/apis/{group}", || reads(|s, c, r| Box::pin(discovery::group(s, c, r)))),
    ("/apis/{group}/{version}", || reads(|s, c, r| Box::pin(discovery::resources(s, c, r)))),
    ("/apis/{group}/{version}/{*path}", || reads(|s, c, r| Box::pin(objects(s, c, r)))),
];

/// The Kubernetes routes over `app`.
pub fn router(app: AppState) -> Router {
    let resources = Resources::new(&app.config.kubernetes.resources, &app.namespaces);
    // With the etcd dialect on, its `/version` answers for both.
    let etcd_api = app.config.etcd_api.enabled;
    let routes: Vec<_> = ROUTES.into_iter().filter(|(path, _)| !(etcd_api && *path == "/version")).collect();
    crate::http::router(&routes).with_state(Kube(Arc::new(KubeShared { app, resources })))
}

/// The caller, or 401 as a `Status`.
fn authenticated(caller: Result<Caller, ApiError>) -> Result<Caller, Status> {
    caller.map_err(Status::from)
}

/// Whether `caller` may read `resource` (it may read the resource's gateway namespace).
fn may_read(caller: &Caller, resource: &Resource) -> bool {
    caller.may_read(&resource.namespace.config.name)
}

/// What a `/apis/{g}/{v}/...` path names.
#[derive(Debug, PartialEq, Eq)]
struct Target<'p> {
    resource: &'p str,
    /// `Some` for `namespaces/{ns}/...` paths.
    namespace: Option<String>,
    /// `Some` for one object.
    name: Option<String>,
}

fn parse_target(rest: &str) -> Option<Target<'_>> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8().ok().map(|s| s.into_owned());
    let segments: Vec<&str> = rest.split('/').collect();
    let (resource, namespace, name) = match segments[..] {
        ["namespaces", ns, resource] => (resource, Some(decode(ns)?), None),
        ["namespaces", ns, resource, name] => (resource, Some(decode(ns)?), Some(decode(name)?)),
        [resource] => (resource, None, None),
        [resource, name] => (resource, None, Some(decode(name)?)),
        _ => return None,
    };
    let empty = |s: &Option<String>| s.as_ref().is_some_and(|s| s.is_empty() || s.contains('/'));
    if resource.is_empty() || empty(&namespace) || empty(&name) {
        return None;
    }
    Some(Target { resource, namespace, name })
}

/// `GET /apis/{g}/{v}/[namespaces/{ns}/]{resource}[/{name}]`: list, get or watch.
async fn objects(
    state: Kube,
    caller: Result<Caller, ApiError>,
    request: Request,
) -> Result<Response, Status> {
    let caller = authenticated(caller)?;
    let path = request.uri().path();
    let rest = path.strip_prefix("/apis/").unwrap_or_default();
    let mut parts = rest.splitn(3, '/');
    let (group, version, rest) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let target = parse_target(rest).ok_or_else(|| Status::no_route(path))?;
    let resource =
        state.resources.find(group, version, target.resource).ok_or_else(|| Status::no_route(path))?;
    // A cluster-scoped resource has no namespaced paths, and a namespaced
    // one no cluster-wide object paths.
    if target.namespace.is_some() && !resource.namespaced()
        || target.namespace.is_none() && target.name.is_some() && resource.namespaced()
    {
        return Err(Status::no_route(path));
    }
    if !may_read(&caller, resource) {
        let who = caller.token_name().unwrap_or("anonymous");
        return Err(Status::forbidden(
            &resource.config.resource,
            &resource.config.group,
            &format!("token {who:?} may not read gateway namespace {:?}", resource.namespace.config.name),
        ));
    }
    let query = ListQuery::parse(request.uri().query())?;
    let namespace = target.namespace.as_deref();
    match (&target.name, query.watch) {
        (Some(name), false) => list::get(&state, resource, namespace.unwrap_or(""), name, &query).await,
        (Some(name), true) => {
            // A watch of one object is a watch with a name field selector.
            let mut query = query;
            query.fields = selector::FieldSelector::parse(&format!("metadata.name={name}"))?;
            watch::watch(&state, &caller, resource, namespace, query).await
        }
        (None, false) => list::list(&state, resource, namespace, &query).await,
        (None, true) => watch::watch(&state, &caller, resource, namespace, query).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_namespaces_and_objects() {
        let t = |resource, namespace: Option<&str>, name: Option<&str>| Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        };
        assert_eq!(parse_target("widgets"), Some(t("widgets", None, None)));
        assert_eq!(parse_target("widgets/a%20b"), Some(t("widgets", None, Some("a b"))));
        assert_eq!(parse_target("namespaces/n1/widgets"), Some(t("widgets", Some("n1"), None)));
        assert_eq!(parse_target("namespaces/n1/widgets/w"), Some(t("widgets", Some("n1"), Some("w"))));
        assert_eq!(parse_target("namespaces/n1/widgets/w/status"), None);
        assert_eq!(parse_target("widgets/"), None);
        assert_eq!(parse_target("widgets/a%2Fb"), None);
    }
}
