//! etcd's absolute keys onto the gateway's namespaces, and who may touch
//! them: a range is served by the namespace whose prefix contains all of it
//! (the longest such prefix the caller may read); anything else is refused
//! as etcd refuses a range outside a user's permissions.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use bytes::Bytes;

use super::error::EtcdError;
use crate::cache::{KeyRange, prefix_end};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::namespaces::{Namespace, Namespaces};

/// The caller of a request: the gateway's tokens as `Authorization: Bearer
/// T` or, as etcd clients send them, the raw token in `Authorization`.
///
/// # Errors
/// 401 / 16 when tokens are configured and none valid is presented.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, EtcdError> {
    if !state.tokens.enabled() {
        return Ok(Caller::Anonymous);
    }
    let presented = headers.get(header::AUTHORIZATION).map(|value| {
        let value = value.as_bytes();
        match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => value.trim_ascii(),
        }
    });
    state.tokens.authenticate(presented).map_err(|_| EtcdError::unauthenticated())
}

/// A range resolved onto one namespace.
#[derive(Debug, Clone)]
pub struct Located {
    /// The namespace serving it.
    pub ns: Arc<Namespace>,
    /// The range relative to the namespace's prefix.
    pub range: KeyRange,
}

/// etcd's `[key, range_end)` relative to `prefix`, when the prefix contains
/// all of it. `range_end` empty: the key alone; `"\0"`: every key from
/// `key` on; at or before `key`: an empty range.
pub fn relative(prefix: &[u8], key: &[u8], range_end: &[u8]) -> Option<KeyRange> {
    let start = Bytes::copy_from_slice(key.strip_prefix(prefix)?);
    if range_end.is_empty() {
        return Some(KeyRange::key(start));
    }
    let limit = prefix_end(prefix);
    if range_end == b"\0" {
        return limit.is_none().then_some(KeyRange { start, end: None });
    }
    if range_end <= key {
        return Some(KeyRange { end: Some(start.clone()), start });
    }
    if limit.as_ref().is_some_and(|limit| range_end > &limit[..]) {
        return None;
    }
    // Inside the prefix's span a range end either starts with the prefix or
    // is the span's end itself.
    let end = range_end.strip_prefix(prefix).map(Bytes::copy_from_slice);
    Some(KeyRange { start, end })
}

/// The namespace serving `[key, range_end)` for `caller`.
///
/// # Errors
/// 403 / 7 naming the range when no namespace the caller may read holds it.
pub fn locate(
    namespaces: &Namespaces,
    caller: &Caller,
    key: &[u8],
    range_end: &[u8],
) -> Result<Located, EtcdError> {
    namespaces
        .iter()
        .filter(|ns| caller.may_read(&ns.config.name))
        .filter_map(|ns| Some((ns, relative(ns.config.prefix.as_bytes(), key, range_end)?)))
        .max_by_key(|(ns, _)| ns.config.prefix.len())
        .map(|(ns, range)| Located { ns: Arc::clone(ns), range })
        .ok_or_else(|| EtcdError::denied(describe(key, range_end)))
}

/// The range as a sentence for messages.
pub fn describe(key: &[u8], range_end: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    match range_end {
        b"" => format!("key {key:?} is outside the namespaces this caller may read"),
        end => format!(
            "range [{key:?}, {:?}) is outside the namespaces this caller may read",
            String::from_utf8_lossy(end)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: Option<&str>) -> KeyRange {
        KeyRange {
            start: Bytes::copy_from_slice(start.as_bytes()),
            end: end.map(|e| Bytes::copy_from_slice(e.as_bytes())),
        }
    }

    #[test]
    fn absolute_ranges_map_onto_prefixes() {
        assert_eq!(relative(b"a/", b"a/x", b""), Some(KeyRange::key(Bytes::from_static(b"x"))));
        assert_eq!(relative(b"a/", b"a/", b"a0"), Some(range("", None)));
        assert_eq!(relative(b"a/", b"a/b", b"a/c"), Some(range("b", Some("c"))));
        assert_eq!(relative(b"a/", b"a/b", b"b"), None, "the end lies beyond the prefix");
        assert_eq!(relative(b"a/", b"b/x", b""), None, "another prefix");
        assert_eq!(relative(b"a/", b"a/x", b"\0"), None, "to the end of the keyspace");
        assert_eq!(relative(b"", b"\0", b"\0"), Some(range("\0", None)));
        assert_eq!(relative(b"", b"a", b"b"), Some(range("a", Some("b"))));
        assert!(relative(b"a/", b"a/x", b"a/a").unwrap().is_empty(), "an end before the key");
    }
}
