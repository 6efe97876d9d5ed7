//! List and get, from one cache snapshot: items in key order, pages
//! pinned to the first page's revision by an opaque `continue`, selectors
//! applied before `limit` counts.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Kube;
use super::request::{Continue, ListQuery, Version};
use super::resource::Resource;
use super::status::Status;
use crate::cache::{At, KeyRange, ReadError, Snapshot};

/// Key-values read from the snapshot at a time while filling a page.
const READ_BATCH: usize = 1000;

/// The snapshot `at`, as a `Status` when it cannot be served. A continued
/// list whose revision is gone gets the API server's 410.
async fn snapshot(resource: &Resource, at: At, continued: bool) -> Result<Snapshot, Status> {
    let cache = &resource.namespace.cache;
    match cache.snapshot(at).await {
        Ok(snapshot) => Ok(snapshot),
        Err(ReadError::Compacted { .. })
        | Err(ReadError::Upstream(crate::cache::UpstreamError::Compacted { .. }))
            if continued =>
        {
            Err(Status::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start \
                 a new list without the continue parameter.",
            ))
        }
        Err(e) => Err(Status::from(e)),
    }
}

fn json_response(body: &Value) -> Response {
    let mut response = serde_json::to_vec(body).unwrap_or_default().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One object.
pub async fn get(
    state: &Kube,
    resource: &Resource,
    namespace: &str,
    name: &str,
    query: &ListQuery,
) -> Result<Response, Status> {
    // A get has no Exact: unset is the most recent state, `0` any, `N` not older than N.
    let at = match query.version {
        Version::Unset => At::Consistent,
        Version::Any => At::Head,
        Version::At(n) => At::AtLeast(n),
    };
    let snapshot = snapshot(resource, at, false).await?;
    let not_found = || Status::not_found(&resource.config.resource, &resource.config.group, name);
    let kv =
        snapshot.get(&resource.key(namespace, name)).await.map_err(Status::from)?.ok_or_else(not_found)?;
    let object = resource.object(&kv, kv.meta.mod_revision, &state.app.metrics).ok_or_else(not_found)?;
    Ok(json_response(&Value::Object(object.object)))
}

/// The objects of `namespace` (or of every namespace).
pub async fn list(
    state: &Kube,
    resource: &Resource,
    namespace: Option<&str>,
    query: &ListQuery,
) -> Result<Response, Status> {
    let continued = query.continue_from.is_some();
    let snapshot = snapshot(resource, query.at(), continued).await?;
    let whole = resource.range(namespace);
    let mut range = match &query.continue_from {
        Some(token) => clip(&whole, Bytes::from(token.start.clone())),
        None => whole,
    };
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut next = None;
    'pages: while !range.is_empty() {
        let want = (limit - items.len()).saturating_add(1).min(READ_BATCH);
        let page = snapshot.range(&range, want, false).await.map_err(Status::from)?;
        let Some(last) = page.kvs.last() else { break };
        range = range.after(&last.key);
        let more = page.more;
        for (i, kv) in page.kvs.iter().enumerate() {
            if items.len() == limit {
                // The page is full and keys remain: the next one starts here.
                next = Some(Continue::after(
                    snapshot.revision(),
                    &String::from_utf8_lossy(&page.kvs[i - 1].key),
                ));
                break 'pages;
            }
            let Some(object) = resource.object(kv, kv.meta.mod_revision, &state.app.metrics) else {
                continue;
            };
            if namespace.is_some_and(|ns| ns != object.namespace)
                || !query.fields.matches(&object.namespace, &object.name)
                || !query.labels.matches(&object.object)
            {
                continue;
            }
            items.push(Value::Object(object.object));
        }
        if !more {
            break;
        }
        if items.len() == limit {
            next = Some(Continue::after(snapshot.revision(), &String::from_utf8_lossy(&last.key)));
            break;
        }
    }
    let mut metadata = json!({"resourceVersion": snapshot.revision().to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token.encode());
    }
    Ok(json_response(&json!({
        "kind": format!("{}List", resource.config.kind),
        "apiVersion": resource.api_version,
        "metadata": metadata,
        "items": items,
    })))
}

/// `range` from `start` on (never before its own start).
fn clip(range: &KeyRange, start: Bytes) -> KeyRange {
    let start = if start > range.start { start } else { range.start.clone() };
    KeyRange { start, end: range.end.clone() }
}
