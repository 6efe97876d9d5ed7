//! Files compiled into the binary and served as they are: the browser
//! client (`/client/*`, from `clients/js`) and the web UI's files.
//!
//! Each answer carries a strong `ETag` (a hash of the file, computed at
//! compile time) and `Cache-Control: no-cache`: browsers keep the file and
//! revalidate it on use, and a new binary with a changed file is picked up
//! at once. `If-None-Match` with the current tag answers 304.

pub mod client;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
    /// The FNV-1a hash of `body` (the ETag).
    pub hash: u64,
}

impl Asset {
    /// An asset of `body` served as `content_type`.
    pub const fn new(content_type: &'static str, body: &'static [u8]) -> Self {
        Self { content_type, body, hash: fnv1a(body) }
    }

    /// The asset's `ETag` value (quoted, strong).
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    /// The answer to a GET of the asset: 200 with the body, or 304 when
    /// `If-None-Match` names the current tag (or `*`).
    pub fn respond(&self, request_headers: &HeaderMap) -> Response {
        let etag = self.etag();
        let fresh = request_headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*");
        let mut response =
            if fresh { StatusCode::NOT_MODIFIED.into_response() } else { self.body.into_response() };
        let h = response.headers_mut();
        if !fresh {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        }
        if let Ok(value) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, value);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        response
    }
}

/// 64-bit FNV-1a: small, `const`, and plenty to tell versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Asset = Asset::new("text/plain; charset=utf-8", b"hello");

    #[test]
    fn a_matching_if_none_match_answers_304_without_a_body() {
        let mut headers = HeaderMap::new();
        headers
            .insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", {}", A.etag())).unwrap());
        let response = A.respond(&headers);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], A.etag().as_str());
    }

    #[test]
    fn another_tag_answers_200_with_type_and_tag() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        let response = A.respond(&headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[test]
    fn different_bodies_have_different_tags() {
        assert_ne!(Asset::new("t", b"a").etag(), Asset::new("t", b"b").etag());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
