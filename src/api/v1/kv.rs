//! `GET /v1/namespaces/{ns}/kv/{key}` and `GET /v1/namespaces/{ns}/kv`:
//! parse the typed request, ask the namespace's cache, render.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::V1;
use super::kv_request::{GetRequest, RangeRequest, Shape};
use super::listing::{self, Listing};
use super::namespace::{namespace, of_path, split_path};
use super::page_cache::{PageKey, RenderedPage};
use super::render::{self, KvJson, KvStyle, PrefixJson};
use super::selection::Selection;
use crate::cache::{ReadError, Revision};
use crate::error::ApiError;
use crate::http::auth::Caller;
use crate::http::params::{Params, check_key_len};
use crate::namespaces::Namespace;

/// `GET /v1/namespaces/{ns}/kv/{key}`: the key is the raw path remainder,
/// percent-decoded to bytes (so non-UTF-8 keys work here too). Handlers
/// take the request itself: the `Uri` and `HeaderMap` extractors clone.
pub async fn get_key(
    State(state): State<V1>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let (uri, headers) = (request.uri(), request.headers());
    let (segment, rest) = split_path(uri.path());
    let ns = namespace(&state.app, segment, &caller)?;
    let key: Vec<u8> = percent_decode_str(rest.strip_prefix("kv/").unwrap_or_default()).collect();
    check_key_len("key", &key)?;
    let get = GetRequest::parse(Bytes::from(key), Params::parse(uri.query())?)?;
    serve_get(ns, get, headers).await
}

/// `GET /v1/namespaces/{ns}/kv`: a range, or one key given as `key`/`key_b64`.
pub async fn list(State(state): State<V1>, caller: Caller, request: Request) -> Result<Response, ApiError> {
    let (uri, headers) = (request.uri(), request.headers());
    let ns = of_path(&state.app, uri.path(), &caller)?;
    let mut params = Params::parse(uri.query())?;
    match Selection::take(&mut params)? {
        Selection::Key(key) => serve_get(ns, GetRequest::parse(key, params)?, headers).await,
        Selection::Range(range) => {
            serve_range(&state, ns, RangeRequest::parse(&ns.config.name, range, params)?, headers).await
        }
    }
}

async fn serve_get(
    ns: &Namespace,
    request: GetRequest,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if request.key.is_empty() && ns.config.prefix.is_empty() {
        return Err(ApiError::bad_request("the key must not be empty"));
    }
    let snapshot = ns.cache.snapshot(request.at).await.map_err(|e| not_ready(ns, e))?;
    let mut headers = render::cache_headers(&snapshot);
    let Some(kv) = snapshot.get(&request.key).await? else {
        return Ok((headers, key_not_found(ns, &request.key, snapshot.revision())).into_response());
    };
    let etag =
        HeaderValue::from_str(&format!("\"{}\"", kv.meta.mod_revision)).expect("digits are a valid header");
    if render::not_modified(request_headers, etag.to_str().unwrap_or_default()) {
        return Ok(render::not_modified_response(headers, etag));
    }
    headers.insert(header::ETAG, etag);
    if request.raw {
        // JSON as JSON, other text as text (a browser shows it instead of
        // downloading it), anything else as bytes.
        let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&kv.value).is_ok() {
            "application/json"
        } else if std::str::from_utf8(&kv.value).is_ok() {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return Ok((StatusCode::OK, headers, kv.value).into_response());
    }
    #[derive(Serialize)]
    struct Body<'a> {
        revision: Revision,
        kv: KvJson<'a>,
    }
    let style = KvStyle { encoding: request.encoding, with_value: true, select: None };
    let body = Body { revision: snapshot.revision(), kv: KvJson { kv: &kv, style } };
    // Members and numbers, the key, and the value (escaped or base64: ~4/3).
    let size_hint = 192 + kv.key.len() + kv.value.len() * 4 / 3;
    Ok(render::json(StatusCode::OK, headers, &body, size_hint))
}

async fn serve_range(
    state: &V1,
    ns: &Namespace,
    request: RangeRequest,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let continuing = request.page_token.is_some();
    let expired = |e: ReadError| match e {
        ReadError::Compacted { revision, .. } if continuing => ApiError::PageTokenExpired { revision },
        other => not_ready(ns, other),
    };
    let snapshot = ns.cache.snapshot(request.at).await.map_err(expired)?;
    let mut headers = render::cache_headers(&snapshot);
    let etag = format!("\"{}-{}\"", ns.config.name, snapshot.last_change_revision());
    let etag = HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    if render::not_modified(request_headers, etag.to_str().unwrap_or_default()) {
        return Ok(render::not_modified_response(headers, etag));
    }
    headers.insert(header::ETAG, etag);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));

    let key = (!snapshot.is_from_etcd()).then(|| PageKey {
        namespace: ns.cache.id(),
        last_change: snapshot.last_change_revision(),
        query: request.canonical.clone(),
    });
    let cached = match &key {
        Some(key) => state.pages.get(key).await,
        None => None,
    };
    let page = match cached {
        Some(page) => page,
        None => {
            let listing = listing::list(&snapshot, &request).await.map_err(expired)?;
            let page = render_page(&request, &listing)?;
            if let Some(key) = key {
                state.pages.insert(key, page.clone()).await;
            }
            page
        }
    };
    Ok((StatusCode::OK, headers, assemble(snapshot.revision(), &page, &request)).into_response())
}

/// Renders the head-independent members of a page: `"count":N,"kvs":[...]`
/// (and `"prefixes":[...]` at one level).
fn render_page(request: &RangeRequest, listing: &Listing) -> Result<RenderedPage, ApiError> {
    #[derive(Serialize)]
    struct Members<'a> {
        count: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        kvs: Option<Vec<KvJson<'a>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        prefixes: Option<Vec<PrefixJson<'a>>>,
    }
    let style = KvStyle {
        encoding: request.encoding,
        with_value: request.shape == Shape::Full,
        select: request.select.as_ref(),
    };
    let kvs = (request.shape != Shape::CountOnly)
        .then(|| listing.kvs.iter().map(|kv| KvJson { kv, style }).collect());
    let prefixes = listing.prefixes.as_ref().filter(|_| request.shape != Shape::CountOnly).map(|prefixes| {
        prefixes.iter().map(|(prefix, count)| PrefixJson { prefix, count: *count }).collect()
    });
    let object = serde_json::to_vec(&Members { count: listing.count, kvs, prefixes })
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    // Drop the object's braces: the members are spliced into each answer.
    let members = Bytes::from(object);
    let members = members.slice(1..members.len() - 1);
    Ok(RenderedPage { members, more_after: listing.next.clone() })
}

/// `{"revision":R,<members>,"next_page_token":T}` (no token when count-only).
fn assemble(revision: Revision, page: &RenderedPage, request: &RangeRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.members.len() + 128);
    out.extend_from_slice(b"{\"revision\":");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b',');
    out.extend_from_slice(&page.members);
    if request.shape != Shape::CountOnly {
        out.extend_from_slice(b",\"next_page_token\":");
        match &page.more_after {
            Some(last) => {
                out.push(b'"');
                out.extend_from_slice(request.next_token(revision, last.clone()).as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    out
}

/// `key_not_found`, naming key and namespace, with a hint when the key looks
/// like a common mistake: the namespace's prefix written into it (keys are
/// relative to it), or a folder asked for as a key.
fn key_not_found(ns: &Namespace, key: &[u8], revision: Revision) -> ApiError {
    let name = &ns.config.name;
    let prefix = ns.config.prefix.as_bytes();
    let hint = if !prefix.is_empty() && key.starts_with(prefix) {
        format!(
            "; keys are relative to the namespace's prefix {:?}: try {:?}",
            ns.config.prefix,
            String::from_utf8_lossy(&key[prefix.len()..])
        )
    } else if key.ends_with(b"/") {
        let encoded = percent_encoding::percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
        format!(
            "; a key ending in / is usually a folder: list it with /v1/namespaces/{name}/kv?prefix={encoded}"
        )
    } else {
        String::new()
    };
    ApiError::KeyNotFound {
        key: String::from_utf8_lossy(key).into_owned(),
        namespace: name.clone(),
        revision,
        hint,
    }
}

/// A not-ready namespace reports its own state.
fn not_ready(ns: &Namespace, e: ReadError) -> ApiError {
    match e {
        ReadError::NotReady => ApiError::NotReady { namespaces: vec![ns.cache.report()] },
        other => other.into(),
    }
}
