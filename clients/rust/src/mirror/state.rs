//! The mirror's state machine, free of I/O: watch events in, the visible
//! state and the notifications for subscribers out.

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;

use super::{MirrorEvent, MirrorSnapshot};
use crate::Revision;
use crate::error::Error;
use crate::types::{Event, KeyValue};
use crate::watch::{ResetReason, WatchEvent};

/// What readers see: a consistent state at one revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// Key-values by key.
    pub(crate) kvs: OrdMap<Bytes, KeyValue>,
    /// The state is exactly etcd's selection at this revision (0 before ready).
    pub(crate) revision: Revision,
    /// The first snapshot was applied.
    pub(crate) ready: bool,
    /// The watch is connected and caught up.
    pub(crate) connected: bool,
    /// Why the mirror stopped, if it did.
    pub(crate) error: Option<Error>,
}

/// A snapshot being received (chunks until `synced`).
#[derive(Debug, Default)]
pub(crate) struct Staging {
    kvs: OrdMap<Bytes, KeyValue>,
    /// Why the state is being replaced (`None` for the first load).
    reason: Option<ResetReason>,
}

/// The mirror's private state beside the view.
#[derive(Debug, Default)]
pub(crate) struct Machine {
    /// A replacement state under construction (a reset's, or the first).
    staging: Option<Staging>,
}

impl Machine {
    /// Applies one watch event to `view`; the notification for
    /// subscribers, if the visible state changed.
    pub(crate) fn apply(&mut self, view: &mut View, event: WatchEvent) -> Option<MirrorEvent> {
        match event {
            WatchEvent::Reset { reason, .. } => {
                self.replace(view, reason);
                None
            }
            WatchEvent::Snapshot { kvs, .. } => {
                let staging = self.staging.get_or_insert_with(Staging::default);
                for kv in kvs {
                    staging.kvs.insert(kv.key.clone(), kv);
                }
                None
            }
            WatchEvent::Synced { revision } => {
                view.connected = true;
                match self.staging.take() {
                    Some(staging) => {
                        view.kvs = staging.kvs;
                        view.revision = revision;
                        view.ready = true;
                        let snapshot = MirrorSnapshot::new(view.kvs.clone(), revision);
                        Some(MirrorEvent::Replaced { revision, reason: staging.reason, snapshot })
                    }
                    None => {
                        view.revision = view.revision.max(revision);
                        None
                    }
                }
            }
            WatchEvent::Change { revision, events } => {
                view.connected = true;
                let events: Vec<Event> =
                    events.into_iter().map(|event| apply_one(&mut view.kvs, event)).collect();
                view.revision = revision;
                Some(MirrorEvent::Changed { revision, events: Arc::from(events) })
            }
            WatchEvent::Progress { revision } => {
                view.connected = true;
                view.revision = view.revision.max(revision);
                None
            }
            WatchEvent::Reconnecting { .. } => {
                view.connected = false;
                None
            }
            // Events newer than this mirror change nothing it holds.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The state is to be replaced by the next snapshot. The old state
    /// stays visible until that one is complete; a replacement already
    /// under way starts over and keeps its first reason (a first load has
    /// none).
    pub(crate) fn replace(&mut self, view: &View, reason: ResetReason) {
        let reason = match self.staging.take() {
            Some(staging) => staging.reason,
            None => view.ready.then_some(reason),
        };
        self.staging = Some(Staging { kvs: OrdMap::new(), reason });
    }
}

/// Applies one event, returning it with `prev_kv` taken from the state.
fn apply_one(kvs: &mut OrdMap<Bytes, KeyValue>, event: Event) -> Event {
    match event {
        Event::Put { kv, .. } => {
            let prev_kv = kvs.insert(kv.key.clone(), kv.clone());
            Event::Put { kv, prev_kv }
        }
        Event::Delete { key, mod_revision, .. } => {
            let prev_kv = kvs.remove(&key);
            Event::Delete { key, mod_revision, prev_kv }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &'static str, value: &'static str, revision: Revision) -> KeyValue {
        serde_json::from_value(serde_json::json!({
            "key": key, "value": value, "value_encoding": "utf8",
            "create_revision": revision, "mod_revision": revision, "version": 1, "lease": "0",
        }))
        .unwrap()
    }

    fn state(view: &View) -> Vec<(String, String)> {
        view.kvs.values().map(|kv| (kv.key_str().unwrap().into(), kv.value_str().unwrap().into())).collect()
    }

    #[test]
    fn a_reset_replaces_the_state_only_when_its_snapshot_is_complete() {
        let (mut machine, mut view) = (Machine::default(), View::default());
        let snapshot = |kvs| WatchEvent::Snapshot { revision: 5, kvs };
        assert!(machine.apply(&mut view, snapshot(vec![kv("a", "1", 2)])).is_none());
        assert!(machine.apply(&mut view, snapshot(vec![kv("b", "2", 5)])).is_none());
        assert!(!view.ready);
        let ready = machine.apply(&mut view, WatchEvent::Synced { revision: 5 });
        assert!(matches!(ready, Some(MirrorEvent::Replaced { revision: 5, reason: None, .. })));
        assert_eq!(state(&view), [("a".into(), "1".into()), ("b".into(), "2".into())]);

        let delete: Event = serde_json::from_value(
            serde_json::json!({"type": "delete", "kv": {"key": "a", "mod_revision": 6}}),
        )
        .unwrap();
        let put = Event::Put { kv: kv("c", "3", 6), prev_kv: None };
        let changed = machine.apply(&mut view, WatchEvent::Change { revision: 6, events: vec![delete, put] });
        let Some(MirrorEvent::Changed { revision: 6, events }) = changed else { panic!("{changed:?}") };
        assert_eq!(events[0].prev_kv().and_then(KeyValue::value_str), Some("1"), "prev_kv from the state");
        assert_eq!(state(&view), [("b".into(), "2".into()), ("c".into(), "3".into())]);

        machine.apply(&mut view, WatchEvent::Reset { reason: ResetReason::Compacted, revision: 9 });
        machine.apply(&mut view, snapshot(vec![kv("z", "9", 9)]));
        assert_eq!(view.revision, 6, "the old state stays visible during the new snapshot");
        // The connection broke mid-snapshot: the partial one is dropped.
        machine.apply(&mut view, WatchEvent::Reset { reason: ResetReason::Interrupted, revision: 0 });
        machine.apply(&mut view, snapshot(vec![kv("y", "8", 9)]));
        let replaced = machine.apply(&mut view, WatchEvent::Synced { revision: 9 });
        assert!(matches!(
            replaced,
            Some(MirrorEvent::Replaced { revision: 9, reason: Some(ResetReason::Compacted), .. })
        ));
        assert_eq!(state(&view), [("y".into(), "8".into())]);
        machine.apply(&mut view, WatchEvent::Progress { revision: 12 });
        assert_eq!(view.revision, 12);
    }
}
