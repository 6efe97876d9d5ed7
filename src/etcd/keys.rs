//! Mapping between namespace-relative keys (what the cache holds) and etcd
//! keys (prefix + relative key), and etcd's key-values into the cache's.

use bytes::Bytes;

use crate::cache::{KeyRange, KeyValue, Meta, prefix_end};

/// A namespace's etcd key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(Bytes);

impl Prefix {
    /// The prefix `prefix`.
    pub fn new(prefix: impl Into<Bytes>) -> Self {
        Self(prefix.into())
    }

    /// The prefix bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The etcd `[key, range_end)` of a relative range. etcd keys are never
    /// empty, so an empty start becomes `\0`; a range end of `\0` means "to
    /// the end of the keyspace" in etcd.
    pub fn etcd_range(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        let mut start = self.join(&range.start);
        if start.is_empty() {
            start.push(0);
        }
        let end = match &range.end {
            Some(end) => self.join(end),
            None => prefix_end(&self.0).map_or_else(|| vec![0], |e| e.to_vec()),
        };
        (start, end)
    }

    fn join(&self, relative: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.0.len() + relative.len());
        key.extend_from_slice(&self.0);
        key.extend_from_slice(relative);
        key
    }

    /// The relative key of an etcd key, `None` if it is outside the prefix.
    pub fn strip<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        key.strip_prefix(&self.0[..])
    }

    /// Converts an etcd key-value of this namespace; `None` if outside it.
    pub fn key_value(&self, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
        let key = Bytes::copy_from_slice(self.strip(kv.key())?);
        Some(KeyValue { key, value: Bytes::copy_from_slice(kv.value()), meta: meta(kv) })
    }

    /// [`Prefix::key_value`] of an owned key-value, without copying: the
    /// key and value keep the buffers the response was decoded into (the
    /// prefix is cut off in place).
    pub fn into_key_value(&self, kv: etcd_client::KeyValue) -> Option<KeyValue> {
        let meta = meta(&kv);
        let (mut key, value) = kv.into_key_value();
        let relative = self.strip(&key)?.len();
        key.drain(..key.len() - relative);
        key.shrink_to_fit();
        Some(KeyValue { key: Bytes::from(key), value: Bytes::from(value), meta })
    }
}

fn meta(kv: &etcd_client::KeyValue) -> Meta {
    Meta {
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
        value_len: u32::try_from(kv.value().len()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_into_the_prefix() {
        let p = Prefix::new("app/");
        assert_eq!(p.etcd_range(&KeyRange::all()), (b"app/".to_vec(), b"app0".to_vec()));
        let r = KeyRange { start: Bytes::from_static(b"a"), end: Some(Bytes::from_static(b"b")) };
        assert_eq!(p.etcd_range(&r), (b"app/a".to_vec(), b"app/b".to_vec()));
        let whole = Prefix::new("");
        assert_eq!(whole.etcd_range(&KeyRange::all()), (vec![0], vec![0]));
        assert_eq!(p.strip(b"app/x"), Some(&b"x"[..]));
        assert_eq!(p.strip(b"other/x"), None);
    }
}
