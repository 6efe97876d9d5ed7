//! Which events of a batch a subscriber's key range selects.

use crate::cache::{Entry, KeyRange};

/// The events of one batch a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// None: the subscriber gets nothing for this revision.
    None,
    /// Every event: the batch's whole rendering can be shared as is.
    All,
    /// Some events, by index in the batch, in order.
    Some(Vec<usize>),
}

/// The events of `entry` whose keys lie in `range`.
pub fn select(entry: &Entry, range: &KeyRange) -> Selected {
    let mut chosen = Vec::new();
    for (i, event) in entry.events.iter().enumerate() {
        if range.contains(&event.kv.key) {
            chosen.push(i);
        }
    }
    match chosen.len() {
        0 => Selected::None,
        n if n == entry.events.len() => Selected::All,
        _ => Selected::Some(chosen),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{EntryKind, Event, EventKind, Index, KeyValue};

    fn entry(keys: &[&'static str]) -> Entry {
        let events = keys
            .iter()
            .map(|k| Event {
                kind: EventKind::Delete,
                kv: KeyValue::tombstone(Bytes::from_static(k.as_bytes()), 3),
                prev_kv: None,
            })
            .collect();
        Entry::new(3, EntryKind::Batch, events, Index::new(), Box::new([]))
    }

    #[test]
    fn selection_follows_the_range() {
        let e = entry(&["a/1", "b/1", "a/2"]);
        assert_eq!(select(&e, &KeyRange::prefix(Bytes::from_static(b"a/"))), Selected::Some(vec![0, 2]));
        assert_eq!(select(&e, &KeyRange::all()), Selected::All);
        assert_eq!(select(&e, &KeyRange::prefix(Bytes::from_static(b"c"))), Selected::None);
    }
}
