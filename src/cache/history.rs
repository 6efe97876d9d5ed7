//! The history window: the last batches, each with the index version after
//! it. It serves reads at past revisions, pagination pinned to one revision,
//! and watch replay. Persistent (structurally shared) so a published view is
//! an O(1) clone and readers never block the writer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::types::{Event, Meta, Revision};

/// The key → metadata map of one revision. Structurally shared between
/// revisions: each applied batch costs O(changes · log n), not O(n).
pub type Index = imbl::OrdMap<Bytes, Meta>;

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
    /// Versions this batch replaced or deleted, `(key, mod_revision)`: their
    /// values can be dropped once this entry leaves the window.
    pub superseded: Box<[(Bytes, Revision)]>,
    /// When the entry was applied (for time-based policies).
    pub applied_at: Instant,
}

impl Entry {
    /// A new entry.
    pub fn new(
        revision: Revision,
        kind: EntryKind,
        events: Box<[Event]>,
        index: Index,
        superseded: Box<[(Bytes, Revision)]>,
    ) -> Self {
        Self { revision, kind, events, index, superseded, applied_at: Instant::now() }
    }
}

/// The window: entries in increasing revision order, never empty once loaded.
#[derive(Clone, Debug, Default)]
pub struct History {
    entries: imbl::Vector<Arc<Entry>>,
    /// Every batch after this revision is in the window: the snapshot's
    /// revision, then the revision of the last trimmed entry.
    floor: Revision,
}

impl History {
    /// A window holding only `snapshot`.
    pub fn new(snapshot: Arc<Entry>) -> Self {
        Self { floor: snapshot.revision, entries: imbl::Vector::unit(snapshot) }
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
        self.entries.push_back(entry);
    }

    /// Drops entries that the window no longer needs to serve `window_start`:
    /// every entry whose successor is at or before it. Returns them.
    pub fn trim(&mut self, window_start: Revision) -> Vec<Arc<Entry>> {
        let mut dropped = Vec::new();
        while self.entries.len() > 1 && self.entries[1].revision <= window_start {
            if let Some(entry) = self.entries.pop_front() {
                self.floor = entry.revision;
                dropped.push(entry);
            }
        }
        dropped
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
        assert!(h.trim(11).is_empty(), "entry 10 still serves revision 11");
        let dropped = h.trim(13);
        assert_eq!(dropped.len(), 1);
        assert_eq!(h.oldest_revision(), Some(12));
        assert_eq!(h.min_cursor(), Some(10), "every batch after 10 is still there");
        h.trim(100);
        assert_eq!(h.len(), 1, "the latest entry always stays");
    }
}
