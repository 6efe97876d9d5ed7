//! The typed answers: key-values, events, pages, namespaces, decoded from
//! the gateway's JSON (keys and values back to bytes, lease ids to numbers).

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Revision;

/// A value as the gateway sent it: bytes (from `utf8` or `base64`), or a
/// parsed JSON document (from `json`, which `encoding=json` and `select`
/// produce for values that are JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The value's bytes, exactly as stored in etcd.
    Bytes(Bytes),
    /// The value parsed as JSON (or its projection, with `select`).
    Json(serde_json::Value),
}

impl Value {
    /// The bytes, unless the value came as a JSON document.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(bytes) => Some(bytes),
            Self::Json(_) => None,
        }
    }

    /// The bytes as text, when they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value deserialized from JSON: the document itself, or the bytes
    /// parsed as JSON.
    ///
    /// # Errors
    /// The value is not JSON of type `T`.
    ///
    /// ```
    /// use etcd_cache_gateway_client::Value;
    ///
    /// let v = Value::Bytes(bytes::Bytes::from_static(br#"{"port":80}"#));
    /// let port: serde_json::Value = v.json().unwrap();
    /// assert_eq!(port["port"], 80);
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Self::Bytes(bytes) => serde_json::from_slice(bytes),
            Self::Json(doc) => T::deserialize(doc),
        }
    }
}

/// One key with its value and etcd metadata (API.md "Key-value object").
/// Keys are relative to the namespace's prefix.
///
/// ```
/// use etcd_cache_gateway_client::KeyValue;
///
/// let kv: KeyValue = serde_json::from_str(
///     r#"{"key":"services/web","value":"{\"port\":80}","value_encoding":"utf8",
///         "create_revision":12,"mod_revision":40,"version":3,"lease":"7587862134596714500"}"#,
/// )
/// .unwrap();
/// assert_eq!(kv.key_str(), Some("services/web"));
/// assert_eq!(kv.value_str(), Some(r#"{"port":80}"#));
/// assert_eq!((kv.mod_revision, kv.version, kv.lease), (40, 3, 7587862134596714500));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireKeyValue")]
#[non_exhaustive]
pub struct KeyValue {
    /// The key, relative to the namespace.
    pub key: Bytes,
    /// The value; `None` in a keys-only listing and in a delete event.
    pub value: Option<Value>,
    /// The revision that created the key (0 in a delete event).
    pub create_revision: Revision,
    /// The revision of the key's last change.
    pub mod_revision: Revision,
    /// Changes since creation (0 in a delete event).
    pub version: i64,
    /// The lease id, 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// The key as text, when it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }

    /// The value's bytes (not for keys-only listings or JSON-encoded values).
    pub fn value_bytes(&self) -> Option<&[u8]> {
        self.value.as_ref().and_then(Value::as_bytes)
    }

    /// The value as text, when it came as bytes that are UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value.as_ref().and_then(Value::as_str)
    }
}

/// Bytes on the wire: a string when UTF-8, else base64 with a marker.
fn decode_bytes(text: String, encoding: Option<&str>, what: &str) -> Result<Bytes, String> {
    match encoding {
        None | Some("utf8") => Ok(Bytes::from(text)),
        Some("base64") => {
            STANDARD.decode(text).map(Bytes::from).map_err(|e| format!("{what}: invalid base64: {e}"))
        }
        Some(other) => Err(format!("{what}: unknown encoding {other:?}")),
    }
}

/// The JSON shape of a key-value.
#[derive(Deserialize)]
struct WireKeyValue {
    key: String,
    #[serde(default)]
    key_encoding: Option<String>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    value_encoding: Option<String>,
    #[serde(default)]
    create_revision: Revision,
    #[serde(default)]
    mod_revision: Revision,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    lease: Option<Lease>,
}

/// A lease id: a decimal string on the wire (numbers accepted too).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lease {
    Text(String),
    Number(i64),
}

impl TryFrom<WireKeyValue> for KeyValue {
    type Error = String;

    fn try_from(wire: WireKeyValue) -> Result<Self, String> {
        let key = decode_bytes(wire.key, wire.key_encoding.as_deref(), "key")?;
        let value = match (wire.value, wire.value_encoding.as_deref()) {
            (None, _) => None,
            (Some(doc), Some("json")) => Some(Value::Json(doc)),
            (Some(serde_json::Value::String(text)), encoding) => {
                Some(Value::Bytes(decode_bytes(text, encoding, "value")?))
            }
            (Some(other), encoding) => {
                return Err(format!("value {other} with value_encoding {encoding:?} is not a string"));
            }
        };
        let lease = match wire.lease {
            None => 0,
            Some(Lease::Number(n)) => n,
            Some(Lease::Text(text)) => {
                i64::from_str(&text).map_err(|_| format!("lease {text:?} is not a number"))?
            }
        };
        Ok(Self {
            key,
            value,
            create_revision: wire.create_revision,
            mod_revision: wire.mod_revision,
            version: wire.version,
            lease,
        })
    }
}

/// One change to one key, within a revision.
///
/// ```
/// use etcd_cache_gateway_client::Event;
///
/// let e: Event = serde_json::from_str(
///     r#"{"type":"delete","kv":{"key":"a","mod_revision":9},
///         "prev_kv":{"key":"a","value":"1","value_encoding":"utf8","create_revision":3,
///                    "mod_revision":5,"version":2,"lease":"0"}}"#,
/// )
/// .unwrap();
/// assert_eq!((e.key().as_ref(), e.mod_revision()), (&b"a"[..], 9));
/// assert_eq!(e.prev_kv().and_then(|p| p.value_str()), Some("1"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireEvent")]
pub enum Event {
    /// The key was created or changed.
    Put {
        /// The key-value after the change.
        kv: KeyValue,
        /// The one before (with `prev_kv=true`, or from a [`Mirror`](crate::Mirror)'s state).
        prev_kv: Option<KeyValue>,
    },
    /// The key was deleted.
    Delete {
        /// The key.
        key: Bytes,
        /// The revision of the delete.
        mod_revision: Revision,
        /// The key-value before the delete (as for `Put`).
        prev_kv: Option<KeyValue>,
    },
}

impl Event {
    /// The key changed.
    pub fn key(&self) -> &Bytes {
        match self {
            Self::Put { kv, .. } => &kv.key,
            Self::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn mod_revision(&self) -> Revision {
        match self {
            Self::Put { kv, .. } => kv.mod_revision,
            Self::Delete { mod_revision, .. } => *mod_revision,
        }
    }

    /// The key-value before the change, when known.
    pub fn prev_kv(&self) -> Option<&KeyValue> {
        match self {
            Self::Put { prev_kv, .. } | Self::Delete { prev_kv, .. } => prev_kv.as_ref(),
        }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    kv: KeyValue,
    #[serde(default)]
    prev_kv: Option<KeyValue>,
}

impl TryFrom<WireEvent> for Event {
    type Error = String;

    fn try_from(wire: WireEvent) -> Result<Self, String> {
        match wire.kind.as_str() {
            "put" => Ok(Self::Put { kv: wire.kv, prev_kv: wire.prev_kv }),
            "delete" => Ok(Self::Delete {
                key: wire.kv.key,
                mod_revision: wire.kv.mod_revision,
                prev_kv: wire.prev_kv,
            }),
            other => Err(format!("unknown event type {other:?}")),
        }
    }
}

/// Whether an answer came from a cache whose etcd watch is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// The namespace's etcd watch is up.
    #[default]
    Fresh,
    /// The watch is down: the answer is the last state known.
    Stale,
}

/// One key read (`GET .../kv/{key}`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Got {
    /// The revision the answer reflects.
    pub revision: Revision,
    /// The key-value.
    pub kv: KeyValue,
    /// The validator for a conditional read (`"<mod_revision>"`, quotes included).
    pub etag: String,
    /// Fresh or stale.
    pub cache: CacheStatus,
}

/// One key's bare value (`raw=true`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Raw {
    /// The revision the answer reflects.
    pub revision: Revision,
    /// The value's bytes.
    pub bytes: Bytes,
    /// `application/json`, `text/plain; charset=utf-8` or `application/octet-stream`.
    pub content_type: String,
    /// The validator (as [`Got::etag`]).
    pub etag: String,
    /// Fresh or stale.
    pub cache: CacheStatus,
}

/// A common prefix of a one-level listing (`delimiter`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommonPrefix {
    /// The prefix, relative to the namespace, ending with the delimiter.
    pub prefix: Bytes,
    /// Keys below it.
    pub count: u64,
}

/// One page of a listing (`GET .../kv`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The revision every page of this listing reflects.
    pub revision: Revision,
    /// Keys matching the whole listing (all pages), after filters.
    pub count: u64,
    /// This page's key-values (empty with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// With `delimiter`: the levels below, with their key counts.
    pub prefixes: Vec<CommonPrefix>,
    /// The token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
    /// The validator for a conditional listing (`"<ns>-<revision>"`).
    pub etag: String,
    /// Fresh or stale.
    pub cache: CacheStatus,
}

/// The JSON body of a page.
#[derive(Deserialize)]
pub(crate) struct WirePage {
    pub revision: Revision,
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    #[serde(default)]
    pub prefixes: Vec<WirePrefix>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WirePrefix {
    prefix: String,
    #[serde(default)]
    prefix_encoding: Option<String>,
    count: u64,
}

impl TryFrom<WirePrefix> for CommonPrefix {
    type Error = String;

    fn try_from(wire: WirePrefix) -> Result<Self, String> {
        Ok(Self {
            prefix: decode_bytes(wire.prefix, wire.prefix_encoding.as_deref(), "prefix")?,
            count: wire.count,
        })
    }
}

/// The answer to a conditional read: the new state, or "what you have is current".
///
/// ```
/// use etcd_cache_gateway_client::Conditional;
///
/// let unchanged: Conditional<String> = Conditional::NotModified { revision: Some(41) };
/// assert_eq!(unchanged.modified(), None);
/// assert_eq!(Conditional::Modified("new".to_owned()).modified().as_deref(), Some("new"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional<T> {
    /// It changed since the ETag given (or the ETag was not current).
    Modified(T),
    /// Unchanged: the gateway answered 304.
    NotModified {
        /// The revision the gateway checked at (`X-Etcd-Revision`).
        revision: Option<Revision>,
    },
}

impl<T> Conditional<T> {
    /// The new state, if modified.
    pub fn modified(self) -> Option<T> {
        match self {
            Self::Modified(t) => Some(t),
            Self::NotModified { .. } => None,
        }
    }
}

/// A namespace and the state of its cache (`GET /v1/namespaces`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct NamespaceInfo {
    /// The name used in URLs.
    pub name: String,
    /// The etcd key prefix (shown only without auth or to an admin token).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The cache holds the namespace exactly as of this revision.
    pub revision: Revision,
    /// etcd's compaction revision, as last learnt.
    #[serde(default)]
    pub compacted_revision: Revision,
    /// The oldest revision the gateway serves from memory.
    #[serde(default)]
    pub oldest_revision: Revision,
    /// The latest revision etcd reported.
    #[serde(default)]
    pub etcd_revision: Revision,
    /// Keys in the namespace.
    #[serde(default)]
    pub keys: u64,
    /// Whether the first load finished.
    #[serde(default)]
    pub ready: bool,
    /// Fresh or stale.
    #[serde(default)]
    pub status: CacheStatus,
    /// Whether a re-list is under way.
    #[serde(default)]
    pub relisting: bool,
    /// Why the namespace failed to load or lost its watch, while that lasts.
    #[serde(default)]
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_keys_and_values_and_json_values_decode() {
        let kv: KeyValue = serde_json::from_str(
            r#"{"key":"/w==","key_encoding":"base64","value":"AP8=","value_encoding":"base64",
                "create_revision":1,"mod_revision":2,"version":1,"lease":"0"}"#,
        )
        .unwrap();
        assert_eq!((kv.key.as_ref(), kv.value_bytes()), (&b"\xff"[..], Some(&b"\x00\xff"[..])));
        let kv: KeyValue =
            serde_json::from_str(r#"{"key":"k","value":{"a":[1]},"value_encoding":"json","mod_revision":2}"#)
                .unwrap();
        assert_eq!(kv.value, Some(Value::Json(serde_json::json!({"a": [1]}))));
        let keys_only: KeyValue =
            serde_json::from_str(r#"{"key":"k","mod_revision":2,"lease":"12"}"#).unwrap();
        assert_eq!((keys_only.value, keys_only.lease), (None, 12));
        let bad = serde_json::from_str::<KeyValue>(r#"{"key":"k","value":"x","value_encoding":"rot13"}"#);
        assert!(bad.unwrap_err().to_string().contains("rot13"));
    }
}
