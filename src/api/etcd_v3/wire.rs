//! The JSON of etcd's gRPC-gateway (protobuf's JSON mapping as etcd 3.4
//! serves it): 64-bit integers as strings (accepted as strings or numbers),
//! bytes as base64, enums by name (or number), default values omitted,
//! unknown request fields ignored, proto names and lowerCamelCase names
//! both accepted.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::EtcdError;
use crate::cache::{KeyValue, Revision};

/// Parses a request body; any `Content-Type` is accepted, as etcd does. An
/// empty body is an empty request.
///
/// # Errors
/// 400 / 3 with serde's description of what is wrong.
pub fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, EtcdError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| EtcdError::invalid(e.to_string()))
}

/// A request body, whatever its `Content-Type`; a body the gateway cannot
/// read (too large, cut off) is refused in etcd's shape.
#[derive(Debug)]
pub struct EtcdBody(pub bytes::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for EtcdBody {
    type Rejection = EtcdError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, EtcdError> {
        match bytes::Bytes::from_request(request, state).await {
            Ok(body) => Ok(Self(body)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(EtcdError::invalid("etcdserver: request is too large"))
            }
            Err(e) => Err(EtcdError::invalid(e.body_text())),
        }
    }
}

/// base64 of `bytes`, as protobuf's JSON mapping writes `bytes` fields.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A `bytes` field: base64 (standard, or URL-safe as Go also accepts), or
/// `null` for empty.
///
/// # Errors
/// Anything but a base64 string or `null`.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(text) => STANDARD
            .decode(&text)
            .or_else(|_| URL_SAFE.decode(&text))
            .map_err(|_| de::Error::custom(format!("illegal base64 data in {text:?}"))),
    }
}

/// An `int64` field: a JSON number or a decimal string, or `null` for 0.
///
/// # Errors
/// Anything else, or a number that is not a 64-bit integer.
pub fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().ok_or_else(|| de::Error::custom(format!("{n} is not an int64"))),
        Value::String(s) => s.parse().map_err(|_| de::Error::custom(format!("{s:?} is not an int64"))),
        other => Err(de::Error::custom(format!("{other} is not an int64"))),
    }
}

/// A `bool` field, `null` for false.
///
/// # Errors
/// Anything but a boolean or `null`.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// An enum field given by name or number; `null` for the first value.
fn enumeration<'de, D: Deserializer<'de>>(d: D, names: &[&str], type_name: &str) -> Result<usize, D::Error> {
    let unknown =
        |v: &dyn std::fmt::Display| de::Error::custom(format!("unknown value {v} for enum {type_name}"));
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::String(s) => names.iter().position(|n| *n == s).ok_or_else(|| unknown(&format!("{s:?}"))),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < names.len())
            .ok_or_else(|| unknown(&n)),
        other => Err(unknown(&other)),
    }
}

/// `RangeRequest.SortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// No sorting (key order).
    #[default]
    None,
    /// Lowest first.
    Ascend,
    /// Highest first.
    Descend,
}

impl<'de> Deserialize<'de> for SortOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = ["NONE", "ASCEND", "DESCEND"];
        Ok([Self::None, Self::Ascend, Self::Descend]
            [enumeration(d, &names, "etcdserverpb.RangeRequest_SortOrder")?])
    }
}

/// `RangeRequest.SortTarget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

impl<'de> Deserialize<'de> for SortTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = ["KEY", "VERSION", "CREATE", "MOD", "VALUE"];
        let all = [Self::Key, Self::Version, Self::Create, Self::Mod, Self::Value];
        Ok(all[enumeration(d, &names, "etcdserverpb.RangeRequest_SortTarget")?])
    }
}

/// `WatchCreateRequest.FilterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Drop put events.
    NoPut,
    /// Drop delete events.
    NoDelete,
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = ["NOPUT", "NODELETE"];
        Ok([Self::NoPut, Self::NoDelete]
            [enumeration(d, &names, "etcdserverpb.WatchCreateRequest_FilterType")?])
    }
}

/// A list field, `null` for empty.
///
/// # Errors
/// Anything but a list of `T` or `null`.
pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// What etcd's response headers say besides the revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderIds {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The answering member's id.
    pub member_id: u64,
    /// The raft term.
    pub raft_term: u64,
}

/// A `ResponseHeader`; a revision of 0 is omitted (as in a compaction
/// cancel).
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Ids and term.
    pub ids: HeaderIds,
    /// The revision.
    pub revision: Revision,
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let HeaderIds { cluster_id, member_id, raft_term } = self.ids;
        for (name, value) in [("cluster_id", cluster_id), ("member_id", member_id)] {
            if value != 0 {
                map.serialize_entry(name, &value.to_string())?;
            }
        }
        if self.revision != 0 {
            map.serialize_entry("revision", &self.revision.to_string())?;
        }
        if raft_term != 0 {
            map.serialize_entry("raft_term", &raft_term.to_string())?;
        }
        map.end()
    }
}

/// An `mvccpb.KeyValue`: the key is `prefix` + the cache's relative key.
pub struct KvJson<'a> {
    /// The namespace's prefix.
    pub prefix: &'a [u8],
    /// The key-value.
    pub kv: &'a KeyValue,
    /// Leave the value out (`keys_only`).
    pub keys_only: bool,
}

impl Serialize for KvJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let mut key = Vec::with_capacity(self.prefix.len() + self.kv.key.len());
        key.extend_from_slice(self.prefix);
        key.extend_from_slice(&self.kv.key);
        if !key.is_empty() {
            map.serialize_entry("key", &b64(&key))?;
        }
        let meta = &self.kv.meta;
        for (name, value) in [
            ("create_revision", meta.create_revision),
            ("mod_revision", meta.mod_revision),
            ("version", meta.version),
        ] {
            if value != 0 {
                map.serialize_entry(name, &value.to_string())?;
            }
        }
        if !self.keys_only && !self.kv.value.is_empty() {
            map.serialize_entry("value", &b64(&self.kv.value))?;
        }
        if meta.lease != 0 {
            map.serialize_entry("lease", &meta.lease.to_string())?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::Meta;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "bytes")]
        key: Vec<u8>,
        #[serde(deserialize_with = "int64")]
        limit: i64,
        sort_target: SortTarget,
        #[serde(deserialize_with = "list")]
        filters: Vec<Filter>,
    }

    #[test]
    fn fields_parse_as_grpc_gateway_accepts_them() {
        let p: Probe =
            parse(br#"{"key":"YS8=","limit":"5","sort_target":"MOD","filters":["NODELETE"],"x":1}"#).unwrap();
        assert_eq!(
            (p.key, p.limit, p.sort_target, p.filters),
            (b"a/".to_vec(), 5, SortTarget::Mod, vec![Filter::NoDelete])
        );
        let p: Probe = parse(br#"{"key":null,"limit":7,"sort_target":3}"#).unwrap();
        assert_eq!((p.key, p.limit, p.sort_target), (Vec::new(), 7, SortTarget::Mod));
        let p: Probe = parse(b"  ").unwrap();
        assert_eq!(p.limit, 0);
        let e = parse::<Probe>(br#"{"sort_target":"BOGUS"}"#).err().unwrap();
        assert!(
            e.message.starts_with("unknown value \"BOGUS\" for enum etcdserverpb.RangeRequest_SortTarget"),
            "{e:?}"
        );
        assert!(parse::<Probe>(br#"{"key":5}"#).is_err());
        assert!(parse::<Probe>(br#"{"limit":"x"}"#).is_err());
        assert!(parse::<Probe>(b"not json").is_err());
    }

    #[test]
    fn key_values_render_with_defaults_omitted() {
        let kv = KeyValue {
            key: Bytes::from_static(b"1"),
            value: Bytes::from_static(b"v1"),
            meta: Meta { create_revision: 2, mod_revision: 2, version: 1, lease: 0, value_len: 2 },
        };
        let json = serde_json::to_string(&KvJson { prefix: b"a/", kv: &kv, keys_only: false }).unwrap();
        assert_eq!(
            json,
            r#"{"key":"YS8x","create_revision":"2","mod_revision":"2","version":"1","value":"djE="}"#
        );
        let tombstone = KeyValue::tombstone(Bytes::from_static(b"1"), 5);
        let json =
            serde_json::to_string(&KvJson { prefix: b"a/", kv: &tombstone, keys_only: false }).unwrap();
        assert_eq!(json, r#"{"key":"YS8x","mod_revision":"5"}"#);
        let header = Header { ids: HeaderIds { cluster_id: 1, member_id: 2, raft_term: 3 }, revision: 0 };
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            r#"{"cluster_id":"1","member_id":"2","raft_term":"3"}"#
        );
    }
}
