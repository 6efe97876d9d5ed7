//! The history window: the last batches, each with the index version after
//! it. It serves reads at past revisions, pagination pinned to one revision,
//! and watch replay. Persistent (structurally shared) so a published view is
//! an O(1) clone and readers never block the writer.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use bytes::Bytes;

use super::types::{Event, Meta, Revision};

/// The key → version map of one revision. Structurally shared between
/// revisions: each applied batch costs O(changes · log n), not O(n).
pub type Index = imbl::OrdMap<Bytes, Stored>;

/// One key's version in an index: its metadata and, when the value store
/// keeps it with the index, its value (shared with the events that wrote
/// it, and dropped with the last index version that holds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Everything but the value.
    pub meta: Meta,
    /// The value when kept with the index; `None`: in the value cache, or
    /// in etcd only.
    pub value: Option<Bytes>,
}

/// A version a batch replaced or deleted: its value can be dropped once the
/// batch leaves the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superseded {
    /// The key.
    pub key: Bytes,
    /// The version's `mod_revision`.
    pub mod_revision: Revision,
    /// The value's length when it was kept with the index (its bytes are
    /// released from the budget then); `None`: it is in the value cache.
    pub inline_len: Option<usize>,
}

impl Superseded {
    /// The version `stored` of `key`, replaced.
    pub fn of(key: Bytes, stored: &Stored) -> Self {
        let inline_len = stored.value.as_ref().map(Bytes::len);
        Self { key, mod_revision: stored.meta.mod_revision, inline_len }
    }
}

/// How an entry came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A full load of the namespace; the events that led to it are unknown.
    Snapshot,
    /// One revision's events applied to the previous entry.
    Batch,
}

/// One revision in the window.
#[derive(Debug)]
pub struct Entry {
    /// The etcd revision this entry's state is exactly at.
    pub revision: Revision,
    /// Snapshot or batch.
    pub kind: EntryKind,
    /// The events of this revision, in etcd's order (empty for a snapshot).
    pub events: Box<[Event]>,
    /// The state of the namespace after this revision.
    pub index: Index,
    /// Versions this batch replaced or deleted: their values can be dropped
    /// once this entry leaves the window.
    pub superseded: Box<[Superseded]>,
    /// When the entry was applied (for time-based policies).
    pub applied_at: Instant,
    /// What the entry costs as history, charged against the window's byte
    /// bound: see [`Entry::history_bytes`].
    pub bytes: u64,
    /// The entry published after this one in the same history, once it is
    /// published: a watcher at this entry finds the next one without
    /// searching the window. Weak, so a watcher holding an old entry never
    /// keeps the entries after it (or their index versions) in memory.
    next: OnceLock<Weak<Entry>>,
}

impl Entry {
    /// A new entry.
    pub fn new(
        revision: Revision,
        kind: EntryKind,
        events: Box<[Event]>,
        index: Index,
        superseded: Box<[Superseded]>,
    ) -> Self {
        let bytes = Self::history_bytes(&events);
        Self {
            revision,
            kind,
            events,
            index,
            superseded,
            applied_at: Instant::now(),
            bytes,
            next: OnceLock::new(),
        }
    }

    /// The entry published after this one, while it is in memory; `None`
    /// before it is published, after it was dropped from the window, or
    /// when the history was replaced (a re-list) after this entry.
    pub fn next(&self) -> Option<Arc<Entry>> {
        self.next.get().and_then(Weak::upgrade)
    }

    /// Records `next` as published after this entry (once; later calls
    /// change nothing).
    pub(super) fn link(&self, next: &Arc<Entry>) {
        debug_assert!(next.revision > self.revision);
        // Set only by the cache's one writer, once per entry.
        let _ = self.next.set(Arc::downgrade(next));
    }

    /// The memory a batch of `events` holds as history: keys, values and
    /// previous values, plus [`HISTORY_EVENT_OVERHEAD_BYTES`] each (the
    /// event, its superseded record and the index nodes it copied) and
    /// [`HISTORY_REVISION_OVERHEAD_BYTES`] for the revision. A snapshot's
    /// state is the namespace's, not history: it costs nothing.
    pub fn history_bytes(events: &[Event]) -> u64 {
        if events.is_empty() {
            return 0;
        }
        let events: usize = events
            .iter()
            .map(|e| {
                let prev = e.prev_kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len());
                e.kv.key.len() + e.kv.value.len() + prev + HISTORY_EVENT_OVERHEAD_BYTES
            })
            .sum();
        (HISTORY_REVISION_OVERHEAD_BYTES + events) as u64
    }
}

/// Bytes charged per history event beyond its keys and values, and per
/// revision: measured as RSS growth (`cargo bench --bench memory`,
/// BENCHMARKS.md) with one random key changed per revision (~6.2 KB per
/// event: each revision copies the index nodes on its key's path) and with
/// 128 keys per revision (~1.2 KB per event), and set just above both.
pub const HISTORY_EVENT_OVERHEAD_BYTES: usize = 1100;
/// See [`HISTORY_EVENT_OVERHEAD_BYTES`].
pub const HISTORY_REVISION_OVERHEAD_BYTES: usize = 5120;

/// The window: entries in increasing revision order, never empty once loaded.
#[derive(Clone, Debug, Default)]
pub struct History {
    entries: imbl::Vector<Arc<Entry>>,
    /// Every batch after this revision is in the window: the snapshot's
    /// revision, then the revision of the last trimmed entry.
    floor: Revision,
    /// The sum of the entries' [`Entry::bytes`].
    bytes: u64,
}

impl History {
    /// A window holding only `snapshot`.
    pub fn new(snapshot: Arc<Entry>) -> Self {
        Self { floor: snapshot.revision, bytes: snapshot.bytes, entries: imbl::Vector::unit(snapshot) }
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &imbl::Vector<Arc<Entry>> {
        &self.entries
    }

    /// The newest entry.
    pub fn latest(&self) -> Option<&Arc<Entry>> {
        self.entries.back()
    }

    /// The oldest revision whose state the window can serve.
    pub fn oldest_revision(&self) -> Option<Revision> {
        self.entries.front().map(|e| e.revision)
    }

    /// The oldest watch cursor that can be resumed: every batch after it is
    /// in the window. A snapshot's own changes are unknown, so its revision
    /// is the first floor; trimming raises it to the last trimmed revision.
    pub fn min_cursor(&self) -> Option<Revision> {
        (!self.entries.is_empty()).then_some(self.floor)
    }

    /// The entry holding the state at `revision` (the newest at or before
    /// it), or `None` when `revision` is older than the window.
    pub fn at(&self, revision: Revision) -> Option<&Arc<Entry>> {
        match self.entries.binary_search_by(|e| e.revision.cmp(&revision)) {
            Ok(i) => self.entries.get(i),
            Err(0) => None,
            Err(i) => self.entries.get(i - 1),
        }
    }

    /// The first batch after `cursor`, if any.
    pub fn after(&self, cursor: Revision) -> Option<&Arc<Entry>> {
        let i = match self.entries.binary_search_by(|e| e.revision.cmp(&cursor)) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.entries.get(i)
    }

    /// Appends an entry newer than every other.
    pub fn push(&mut self, entry: Arc<Entry>) {
        debug_assert!(self.latest().is_none_or(|l| l.revision < entry.revision));
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
    }

    /// Drops entries that the window no longer needs to serve `window_start`
    /// (every entry whose successor is at or before it), then the oldest
    /// ones while the window holds more than `max_bytes`; the latest entry
    /// always stays. Returns them.
    pub fn trim(&mut self, window_start: Revision, max_bytes: u64) -> Vec<Arc<Entry>> {
        let mut dropped = Vec::new();
        while self.entries.len() > 1 && (self.entries[1].revision <= window_start || self.bytes > max_bytes) {
            if let Some(entry) = self.entries.pop_front() {
                self.floor = entry.revision;
                self.bytes -= entry.bytes;
                dropped.push(entry);
            }
        }
        dropped
    }

    /// What the window's entries cost, against the byte bound.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of entries in the window.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is loaded yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::types::{EventKind, KeyValue};

    fn entry(revision: Revision, kind: EntryKind) -> Arc<Entry> {
        Arc::new(Entry::new(revision, kind, Box::new([]), Index::new(), Box::new([])))
    }

    #[test]
    fn lookups_find_the_state_at_or_before_a_revision() {
        let mut h = History::new(entry(10, EntryKind::Snapshot));
        h.push(entry(12, EntryKind::Batch));
        h.push(entry(15, EntryKind::Batch));
        assert!(h.at(9).is_none());
        assert_eq!(h.at(10).unwrap().revision, 10);
        assert_eq!(h.at(11).unwrap().revision, 10);
        assert_eq!(h.at(15).unwrap().revision, 15);
        assert_eq!(h.at(99).unwrap().revision, 15);
        assert_eq!(h.after(10).unwrap().revision, 12);
        assert_eq!(h.after(11).unwrap().revision, 12);
        assert_eq!(h.after(12).unwrap().revision, 15);
        assert!(h.after(15).is_none());
        assert_eq!(h.min_cursor(), Some(10));
    }

    #[test]
    fn trim_keeps_the_base_state_of_the_window() {
        let mut h = History::new(entry(10, EntryKind::Snapshot));
        h.push(entry(12, EntryKind::Batch));
        h.push(entry(15, EntryKind::Batch));
        assert!(h.trim(11, u64::MAX).is_empty(), "entry 10 still serves revision 11");
        let dropped = h.trim(13, u64::MAX);
        assert_eq!(dropped.len(), 1);
        assert_eq!(h.oldest_revision(), Some(12));
        assert_eq!(h.min_cursor(), Some(10), "every batch after 10 is still there");
        h.trim(100, u64::MAX);
        assert_eq!(h.len(), 1, "the latest entry always stays");
    }

    #[test]
    fn trim_keeps_the_window_within_its_byte_bound() {
        let batch = |revision: Revision| {
            let kv = KeyValue {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![0; 100]),
                meta: Meta {
                    create_revision: 1,
                    mod_revision: revision,
                    version: 1,
                    lease: 0,
                    value_len: 100,
                },
            };
            let prev_kv = Some(KeyValue { value: Bytes::from(vec![0; 10]), ..kv.clone() });
            let events = Box::new([Event { kind: EventKind::Put, kv, prev_kv }]);
            Arc::new(Entry::new(revision, EntryKind::Batch, events, Index::new(), Box::new([])))
        };
        let mut h = History::new(entry(10, EntryKind::Snapshot));
        for revision in 11..=14 {
            h.push(batch(revision));
        }
        let each = (1 + 100 + 1 + 10 + HISTORY_EVENT_OVERHEAD_BYTES + HISTORY_REVISION_OVERHEAD_BYTES) as u64;
        assert_eq!(h.bytes(), 4 * each);
        let dropped: Vec<Revision> = h.trim(0, 2 * each).iter().map(|e| e.revision).collect();
        assert_eq!(dropped, [10, 11, 12]);
        assert_eq!((h.bytes(), h.oldest_revision(), h.min_cursor()), (2 * each, Some(13), Some(12)));
        h.trim(0, 0);
        assert_eq!((h.bytes(), h.len()), (each, 1), "the latest entry always stays");
    }
}
