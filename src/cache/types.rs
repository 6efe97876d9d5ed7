//! The data the cache holds: key-value versions, events and per-revision
//! batches. Keys are relative to the namespace prefix; the reflector strips
//! the prefix and the loader adds it back, so nothing in the cache can name a
//! key outside its namespace.

use bytes::Bytes;

/// An etcd revision. etcd uses signed 64-bit revisions; so do we.
pub type Revision = i64;

/// What the index keeps per key: everything but the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Revision of the put that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last put.
    pub mod_revision: Revision,
    /// Number of puts since creation (1 after the first).
    pub version: i64,
    /// Lease id attached to the key, or 0.
    pub lease: i64,
    /// Length of the value in bytes (for keys-only listings and sizing).
    pub value_len: u32,
}

/// One version of a key with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the namespace prefix.
    pub key: Bytes,
    /// The value (empty for a delete's tombstone, and for keys-only reads).
    pub value: Bytes,
    /// Everything else etcd says about this version.
    pub meta: Meta,
}

impl KeyValue {
    /// The tombstone of `key` deleted at `revision` (etcd's delete event shape).
    pub fn tombstone(key: Bytes, revision: Revision) -> Self {
        let meta = Meta { create_revision: 0, mod_revision: revision, version: 0, lease: 0, value_len: 0 };
        Self { key, value: Bytes::new(), meta }
    }
}

/// Whether an event wrote or removed its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (explicitly or by an expiring lease).
    Delete,
}

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The new version (a tombstone for deletes: key + `mod_revision`).
    pub kv: KeyValue,
    /// The version before this event, when the key existed and etcd sent it.
    pub prev_kv: Option<KeyValue>,
}

/// All events of one etcd revision in one namespace, in etcd's order.
/// A batch is applied atomically: readers see all of it or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionBatch {
    /// The revision every event carries as `mod_revision`.
    pub revision: Revision,
    /// The events (at least one).
    pub events: Vec<Event>,
}

/// A half-open key range `[start, end)` relative to the namespace; `end =
/// None` reaches the end of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key included.
    pub start: Bytes,
    /// First key excluded; `None` = to the end of the namespace.
    pub end: Option<Bytes>,
}

impl KeyRange {
    /// Every key of the namespace.
    pub fn all() -> Self {
        Self { start: Bytes::new(), end: None }
    }

    /// Exactly `key`.
    pub fn key(key: Bytes) -> Self {
        let end = successor(&key);
        Self { start: key, end: Some(end) }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: Bytes) -> Self {
        let end = prefix_end(&prefix);
        Self { start: prefix, end }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_ref().is_none_or(|end| key < &end[..])
    }

    /// The range starting strictly after `key` (for pagination), clipped to this one.
    pub fn after(&self, key: &[u8]) -> Self {
        let next = successor(key);
        let start = if next > self.start { next } else { self.start.clone() };
        Self { start, end: self.end.clone() }
    }

    /// Whether the range can contain no key.
    pub fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| end <= &self.start)
    }
}

/// The smallest key greater than `key`: `key` followed by a zero byte.
pub fn successor(key: &[u8]) -> Bytes {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    Bytes::from(next)
}

/// The first key after every key starting with `prefix`, or `None` when no
/// such key exists (empty prefix, or a prefix of only 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(Bytes::from(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"a/"), Some(Bytes::from_static(b"a0")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let r = KeyRange::prefix(Bytes::from_static(b"ab"));
        assert!(r.contains(b"ab") && r.contains(b"abz") && !r.contains(b"ac") && !r.contains(b"aa"));
        assert!(KeyRange::all().contains(b"") && KeyRange::all().contains(b"\xff"));
        let k = KeyRange::key(Bytes::from_static(b"k"));
        assert!(k.contains(b"k") && !k.contains(b"k\0") && !k.contains(b"j"));
        assert_eq!(r.after(b"abc").start, Bytes::from_static(b"abc\0"));
        assert!(KeyRange { start: Bytes::from_static(b"b"), end: Some(Bytes::from_static(b"a")) }.is_empty());
    }
}
