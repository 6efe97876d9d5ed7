//! Encode once, share with every subscriber: the renderings of recent
//! batches, per output shape.
//!
//! A batch is rendered (serialized) the first time a subscriber of some
//! shape needs it; every other subscriber of that shape gets the same bytes.
//! A rendering is a `Bytes` per event plus the whole batch, so a subscriber
//! that selects only some events joins the shared pieces without encoding
//! anything. Each surface names its shapes ([`Shape`]) and renders them
//! itself: this module knows nothing of any wire format.
//!
//! An etcd revision's events never change, so a rendering is identified by
//! the revision alone (checked against the entry it was made from, so a
//! re-list can never serve another entry's bytes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use bytes::Bytes;

use crate::cache::{Entry, Revision};

/// Most revisions whose renderings are kept: subscribers that keep up read
/// the last few revisions only, so this covers bursts of thousands of
/// revisions while bounding the memo to recent batches. Older batches (a
/// replay after a resume) are rendered for the one subscriber that needs them.
pub const MEMO_REVISIONS: usize = 4096;

/// Most bytes of renderings kept (per namespace); the oldest revisions go
/// first. Large batches (bulk writes) would otherwise pin memory for as long
/// as they stay among the last [`MEMO_REVISIONS`].
pub const MEMO_BYTES: usize = 32 << 20;

/// Most bytes of events already due that a streaming surface joins into one
/// chunk of its body (one socket write) after the event that woke it.
/// Nothing waits to be joined: a subscriber that keeps up still gets each
/// revision in a write of its own.
pub const JOIN_BYTES: usize = 64 << 10;

/// `pieces` as one chunk of a body: one write for the socket and, for
/// HTTP/1.1, one chunk header instead of one per piece. A single piece (a
/// batch rendered whole) is given as it is, shared.
pub fn join(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.swap_remove(0);
    }
    let mut joined = bytes::BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for piece in &pieces {
        joined.extend_from_slice(piece);
    }
    joined.freeze()
}

/// How many of the newest revisions a lookup tries before it searches.
const RECENT: usize = 8;

/// One output shape of one surface, e.g. `/v1` with base64 values and
/// `prev_kv`. Renderings are shared between subscribers of equal shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The surface (`"v1"`, ...).
    pub surface: &'static str,
    /// The surface's own variant number.
    pub variant: u32,
}

/// One batch rendered in one shape.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Each event's bytes, in the batch's order.
    pub events: Box<[Bytes]>,
    /// The whole batch as one message (the surface's framing of all events).
    pub whole: Bytes,
}

impl Rendered {
    fn len(&self) -> usize {
        self.whole.len() + self.events.iter().map(Bytes::len).sum::<usize>()
    }
}

/// The renderings of one revision.
struct Slot {
    revision: Revision,
    entry: Weak<Entry>,
    renders: Mutex<Vec<(Shape, Arc<Rendered>)>>,
}

impl Slot {
    fn bytes(&self) -> usize {
        self.renders.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, r)| r.len()).sum()
    }
}

#[derive(Default)]
struct Slots {
    /// Ordered by revision, oldest first.
    slots: VecDeque<Arc<Slot>>,
    /// The slots' revisions, in the same order: searched without touching
    /// the slots themselves.
    revisions: VecDeque<Revision>,
    bytes: usize,
}

impl Slots {
    fn position(&self, revision: Revision) -> Result<usize, usize> {
        // Subscribers that keep up ask for the newest few: look there first.
        let n = self.revisions.len();
        for i in (n.saturating_sub(RECENT)..n).rev() {
            match self.revisions[i].cmp(&revision) {
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Less => return Err(i + 1),
                std::cmp::Ordering::Greater => {}
            }
        }
        self.revisions.binary_search(&revision)
    }

    fn insert(&mut self, i: usize, slot: Arc<Slot>) {
        self.revisions.insert(i, slot.revision);
        self.slots.insert(i, slot);
    }

    /// Drops the oldest slot.
    fn pop_oldest(&mut self) {
        self.revisions.pop_front();
        if let Some(oldest) = self.slots.pop_front() {
            self.bytes = self.bytes.saturating_sub(oldest.bytes());
        }
    }
}

/// The memo of one namespace.
#[derive(Default)]
pub struct FrameMemo {
    slots: RwLock<Slots>,
}

impl std::fmt::Debug for FrameMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (revisions, bytes) = self.size();
        f.debug_struct("FrameMemo").field("revisions", &revisions).field("bytes", &bytes).finish()
    }
}

impl FrameMemo {
    /// The rendering of `entry` in `shape`, made by `render` the first time.
    pub fn rendered(
        &self,
        entry: &Arc<Entry>,
        shape: Shape,
        render: impl FnOnce(&Entry) -> Rendered,
    ) -> Arc<Rendered> {
        let Some(slot) = self.slot(entry) else {
            return Arc::new(render(entry));
        };
        let mut renders = slot.renders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rendered)) = renders.iter().find(|(s, _)| *s == shape) {
            return Arc::clone(rendered);
        }
        // Rendered under the slot's lock: concurrent subscribers of this
        // revision wait for one rendering instead of each making their own.
        let rendered = Arc::new(render(entry));
        renders.push((shape, Arc::clone(&rendered)));
        drop(renders);
        self.account(&slot, rendered.len());
        rendered
    }

    /// The slot of `entry`, created when missing; `None` when the entry is
    /// older than everything kept in a full memo.
    fn slot(&self, entry: &Arc<Entry>) -> Option<Arc<Slot>> {
        let ours = |slot: &Slot| slot.entry.as_ptr() == Arc::as_ptr(entry);
        {
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Ok(i) = slots.position(entry.revision) {
                if ours(&slots.slots[i]) {
                    return Some(Arc::clone(&slots.slots[i]));
                }
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let slot = Arc::new(Slot {
            revision: entry.revision,
            entry: Arc::downgrade(entry),
            renders: Mutex::default(),
        });
        match slots.position(entry.revision) {
            Ok(i) if ours(&slots.slots[i]) => return Some(Arc::clone(&slots.slots[i])),
            Ok(i) => {
                // Another entry at this revision (a re-list replaced the
                // history): its renderings are not this entry's.
                let old = std::mem::replace(&mut slots.slots[i], Arc::clone(&slot));
                slots.bytes = slots.bytes.saturating_sub(old.bytes());
            }
            Err(0) if slots.slots.len() >= MEMO_REVISIONS => return None,
            Err(i) => {
                slots.insert(i, Arc::clone(&slot));
                if slots.slots.len() > MEMO_REVISIONS {
                    slots.pop_oldest();
                }
            }
        }
        Some(slot)
    }

    /// Counts `bytes` of a new rendering of `slot` (unless the slot was
    /// dropped meanwhile) and drops the oldest revisions while over
    /// [`MEMO_BYTES`] (always keeping the newest).
    fn account(&self, slot: &Arc<Slot>, bytes: usize) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let kept = slots.position(slot.revision).is_ok_and(|i| Arc::ptr_eq(&slots.slots[i], slot));
        if !kept {
            return;
        }
        slots.bytes += bytes;
        while slots.bytes > MEMO_BYTES && slots.slots.len() > 1 {
            slots.pop_oldest();
        }
    }

    /// Revisions and bytes currently kept.
    pub fn size(&self) -> (usize, usize) {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        (slots.slots.len(), slots.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cache::{EntryKind, Index};

    fn entry(revision: Revision) -> Arc<Entry> {
        Arc::new(Entry::new(revision, EntryKind::Batch, Box::new([]), Index::new(), Box::new([])))
    }

    const V1: Shape = Shape { surface: "v1", variant: 0 };
    const OTHER: Shape = Shape { surface: "v1", variant: 1 };

    fn rendering(text: &'static str) -> Rendered {
        Rendered { events: Box::new([Bytes::from_static(text.as_bytes())]), whole: Bytes::from_static(b"w") }
    }

    #[test]
    fn each_shape_of_a_revision_is_rendered_once() {
        let memo = FrameMemo::default();
        let calls = AtomicUsize::new(0);
        let e = entry(5);
        let render = |_: &Entry| {
            calls.fetch_add(1, Ordering::Relaxed);
            rendering("a")
        };
        let first = memo.rendered(&e, V1, render);
        let second = memo.rendered(&e, V1, |_| panic!("rendered twice"));
        assert!(Arc::ptr_eq(&first, &second));
        memo.rendered(&e, OTHER, |_| rendering("b"));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(memo.size(), (1, 4));
    }

    #[test]
    fn another_entry_at_the_same_revision_is_rendered_anew() {
        let memo = FrameMemo::default();
        let (old, new) = (entry(7), entry(7));
        memo.rendered(&old, V1, |_| rendering("old"));
        let rendered = memo.rendered(&new, V1, |_| rendering("new"));
        assert_eq!(rendered.events[0], Bytes::from_static(b"new"));
    }

    #[test]
    fn the_memo_keeps_the_newest_revisions_within_its_bounds() {
        let memo = FrameMemo::default();
        let entries: Vec<_> = (0..MEMO_REVISIONS as i64 + 10).map(entry).collect();
        for e in &entries {
            memo.rendered(e, V1, |_| rendering("x"));
        }
        assert_eq!(memo.size().0, MEMO_REVISIONS);
        // The oldest were dropped: rendering them again is not memoized.
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            memo.rendered(&entries[0], V1, |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                rendering("x")
            });
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let big = entry(1_000_000);
        memo.rendered(&big, V1, |_| Rendered {
            events: Box::new([Bytes::from(vec![0u8; MEMO_BYTES])]),
            whole: Bytes::new(),
        });
        assert_eq!(memo.size().0, 1, "over the byte bound only the newest stays");
    }
}
