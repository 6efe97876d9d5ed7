//! Rendering key-values as JSON, straight from the shared value bytes: UTF-8
//! values are written as borrowed strings and JSON values as raw JSON, so a
//! large range is not copied value by value before it is written.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::select::Select;
use crate::cache::{KeyValue, Snapshot};
use crate::error::ApiError;

/// How values are written (`encoding=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 text as a string, anything else base64.
    #[default]
    Auto,
    /// Always base64.
    Base64,
    /// JSON values as JSON documents, anything else as `auto`.
    Json,
}

impl Encoding {
    /// Parses the `encoding` parameter.
    ///
    /// # Errors
    /// 400 for anything but `auto`, `base64`, `json`.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("auto") => Ok(Self::Auto),
            Some("base64") => Ok(Self::Base64),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(ApiError::bad_request(format!(
                "parameter `encoding` must be auto, base64 or json, not {other:?}"
            ))),
        }
    }
}

/// How one key-value is shown.
#[derive(Clone, Copy, Debug)]
pub struct KvStyle<'a> {
    /// Value encoding.
    pub encoding: Encoding,
    /// Whether to include the value (false for keys-only listings).
    pub with_value: bool,
    /// Projection of JSON values.
    pub select: Option<&'a Select>,
}

/// A key-value in its JSON shape (API.md "Key-value object").
pub struct KvJson<'a> {
    /// The key-value.
    pub kv: &'a KeyValue,
    /// How to show it.
    pub style: KvStyle<'a>,
}

impl Serialize for KvJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kv = self.kv;
        let mut map = s.serialize_map(None)?;
        write_key(&mut map, &kv.key)?;
        if self.style.with_value {
            write_value(&mut map, &kv.value, self.style)?;
        }
        map.serialize_entry("create_revision", &kv.meta.create_revision)?;
        map.serialize_entry("mod_revision", &kv.meta.mod_revision)?;
        map.serialize_entry("version", &kv.meta.version)?;
        // A decimal string: lease ids are 63-bit, JavaScript numbers keep 53.
        map.serialize_entry("lease", &Decimal(kv.meta.lease))?;
        map.end()
    }
}

/// An integer serialized as a decimal string, without allocating.
struct Decimal(i64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A common prefix of a one-level listing: `{"prefix","count"}` (with
/// `"prefix_encoding":"base64"` when it is not UTF-8).
pub struct PrefixJson<'a> {
    /// The prefix, relative to the namespace, ending with the delimiter.
    pub prefix: &'a [u8],
    /// Keys below it.
    pub count: u64,
}

impl Serialize for PrefixJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        write_bytes(&mut map, "prefix", "prefix_encoding", self.prefix)?;
        map.serialize_entry("count", &self.count)?;
        map.end()
    }
}

/// `"key"` as a string when it is UTF-8, else base64 with `"key_encoding":"base64"`.
pub fn write_key<M: SerializeMap>(map: &mut M, key: &[u8]) -> Result<(), M::Error> {
    write_bytes(map, "key", "key_encoding", key)
}

/// `name` as a string when `bytes` are UTF-8, else base64 with `encoding: "base64"`.
fn write_bytes<M: SerializeMap>(
    map: &mut M,
    name: &'static str,
    encoding: &'static str,
    bytes: &[u8],
) -> Result<(), M::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.serialize_entry(name, text),
        Err(_) => {
            map.serialize_entry(name, &STANDARD.encode(bytes))?;
            map.serialize_entry(encoding, "base64")
        }
    }
}

fn write_value<M: SerializeMap>(map: &mut M, value: &[u8], style: KvStyle<'_>) -> Result<(), M::Error> {
    if let Some(select) = style.select {
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(value) {
            map.serialize_entry("value", &select.project(&doc))?;
            return map.serialize_entry("value_encoding", "json");
        }
    } else if style.encoding == Encoding::Json {
        if let Ok(raw) = serde_json::from_slice::<&RawValue>(value) {
            map.serialize_entry("value", raw)?;
            return map.serialize_entry("value_encoding", "json");
        }
    }
    match std::str::from_utf8(value) {
        Ok(text) if style.encoding != Encoding::Base64 => {
            map.serialize_entry("value", text)?;
            map.serialize_entry("value_encoding", "utf8")
        }
        _ => {
            map.serialize_entry("value", &STANDARD.encode(value))?;
            map.serialize_entry("value_encoding", "base64")
        }
    }
}

/// Serializes `body` as the JSON response; `size_hint` is the expected
/// length (the buffer then grows once at most).
pub fn json(status: StatusCode, headers: HeaderMap, body: &impl Serialize, size_hint: usize) -> Response {
    let mut bytes = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => {
            let mut response = (status, headers, bytes).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => ApiError::Internal(Box::new(e)).into_response(),
    }
}

/// Header names of cached answers.
pub const X_ETCD_REVISION: HeaderName = HeaderName::from_static("x-etcd-revision");
/// `fresh` or `stale`.
pub const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

/// Room for the headers of a cached answer: the cache headers, `Age`,
/// `ETag`, `Content-Type`, and what the middleware adds.
const ANSWER_HEADERS: usize = 8;

/// `X-Etcd-Revision`, `X-Cache-Status` and, when stale, `Age` (seconds the
/// namespace's watch has been down).
pub fn cache_headers(snapshot: &Snapshot) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(X_ETCD_REVISION, HeaderValue::from(snapshot.revision()));
    let stale_for = snapshot.cache().status().stale_for().filter(|_| !snapshot.is_from_etcd());
    let status = if stale_for.is_some() { "stale" } else { "fresh" };
    headers.insert(X_CACHE_STATUS, HeaderValue::from_static(status));
    if let Some(age) = stale_for {
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    headers
}

/// Whether `If-None-Match` names `etag` (or `*`).
pub fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// A 304 with the validator and cache headers.
pub fn not_modified_response(mut headers: HeaderMap, etag: HeaderValue) -> Response {
    headers.insert(header::ETAG, etag);
    (StatusCode::NOT_MODIFIED, headers).into_response()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::Meta;

    fn kv(key: &'static [u8], value: &'static [u8]) -> KeyValue {
        let meta = Meta { create_revision: 1, mod_revision: 2, version: 3, lease: 0, value_len: 0 };
        KeyValue { key: Bytes::from_static(key), value: Bytes::from_static(value), meta }
    }

    fn show(kv: &KeyValue, encoding: Encoding) -> serde_json::Value {
        let style = KvStyle { encoding, with_value: true, select: None };
        serde_json::to_value(KvJson { kv, style }).unwrap()
    }

    #[test]
    fn values_are_encoded_as_asked() {
        let json_value = kv(b"k", b"{\"a\": 1}");
        assert_eq!(show(&json_value, Encoding::Auto)["value"], "{\"a\": 1}");
        assert_eq!(show(&json_value, Encoding::Json)["value"]["a"], 1);
        assert_eq!(show(&json_value, Encoding::Json)["value_encoding"], "json");
        assert_eq!(show(&json_value, Encoding::Base64)["value"], STANDARD.encode(b"{\"a\": 1}"));
        let binary = kv(b"\xffk", b"\x00\xff");
        let v = show(&binary, Encoding::Json);
        assert_eq!(
            (v["key_encoding"].as_str(), v["value_encoding"].as_str()),
            (Some("base64"), Some("base64"))
        );
        assert_eq!(v["key"], STANDARD.encode(b"\xffk"));
        assert_eq!(show(&kv(b"k", b""), Encoding::Json)["value"], "");
    }
}
