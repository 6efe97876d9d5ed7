//! The cache's test model, shared by the core's tests and the fan-out's: a
//! fake etcd that keeps the state after every revision, a loader reading it,
//! and random histories (proptest strategies) applied to both.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use proptest::prelude::*;

use super::*;

pub(crate) type State = BTreeMap<Bytes, KeyValue>;

/// etcd's history as the model sees it: the state after every revision.
#[derive(Default)]
pub(crate) struct FakeEtcd {
    pub(crate) states: BTreeMap<Revision, State>,
    pub(crate) compacted: Revision,
}

impl FakeEtcd {
    pub(crate) fn head(&self) -> Revision {
        self.states.keys().next_back().copied().unwrap_or(0)
    }

    pub(crate) fn state_at(&self, revision: Revision) -> Option<&State> {
        self.states.range(..=revision).next_back().map(|(_, s)| s)
    }
}

#[derive(Clone, Default)]
pub(crate) struct FakeSource(pub(crate) Arc<Mutex<FakeEtcd>>);

impl Source for FakeSource {
    fn load(&self, request: LoadRequest) -> BoxFuture<'_, Result<Loaded, UpstreamError>> {
        let etcd = self.0.lock().unwrap();
        let head = etcd.head();
        let revision = if request.revision == 0 { head } else { request.revision };
        let result = if revision < etcd.compacted {
            Err(UpstreamError::Compacted { message: "required revision has been compacted".into() })
        } else if revision > head {
            Err(UpstreamError::FutureRevision { message: "required revision is a future revision".into() })
        } else {
            let state = etcd.state_at(revision).cloned().unwrap_or_default();
            let matching: Vec<KeyValue> =
                state.values().filter(|kv| request.range.contains(&kv.key)).cloned().collect();
            let count = matching.len() as u64;
            let limit = if request.limit == 0 { usize::MAX } else { request.limit };
            let more = matching.len() > limit;
            let kvs = matching
                .into_iter()
                .take(limit)
                .map(|mut kv| {
                    if request.keys_only {
                        kv.value = Bytes::new();
                    }
                    kv
                })
                .collect();
            Ok(Loaded { kvs, revision: head, more, count })
        };
        Box::pin(async move { result })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        let head = self.0.lock().unwrap().head();
        Box::pin(async move { Ok(head) })
    }

    fn compact_revision(&self, _: Revision) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        let compacted = self.0.lock().unwrap().compacted;
        Box::pin(async move { Ok(compacted) })
    }

    /// The model's history: each revision's changes to `range`, from the
    /// states on either side of it, then quiet up to the model's head.
    fn history(
        &self,
        range: KeyRange,
        after: Revision,
        prev_kv: bool,
    ) -> BoxStream<'static, Result<HistoryItem, UpstreamError>> {
        let etcd = self.0.lock().unwrap();
        if after < etcd.compacted {
            let error = UpstreamError::Compacted { message: "required revision has been compacted".into() };
            return Box::pin(stream::iter([Err(error)]));
        }
        let mut items = Vec::new();
        let mut before = etcd.state_at(after).cloned().unwrap_or_default();
        for (revision, state) in etcd.states.range(after + 1..) {
            let mut events = Vec::new();
            let keys: std::collections::BTreeSet<&Bytes> = before.keys().chain(state.keys()).collect();
            for key in keys.into_iter().filter(|k| range.contains(k)) {
                let prev = before.get(key).filter(|_| prev_kv).cloned();
                match (before.get(key), state.get(key)) {
                    (old, Some(new)) if old != Some(new) => {
                        events.push(Event { kind: EventKind::Put, kv: new.clone(), prev_kv: prev })
                    }
                    (Some(_), None) => events.push(Event {
                        kind: EventKind::Delete,
                        kv: KeyValue::tombstone(key.clone(), *revision),
                        prev_kv: prev,
                    }),
                    _ => {}
                }
            }
            if !events.is_empty() {
                items.push(Ok(HistoryItem::Batch(RevisionBatch { revision: *revision, events })));
            }
            before = state.clone();
        }
        items.push(Ok(HistoryItem::Quiet(etcd.head())));
        Box::pin(stream::iter(items))
    }
}

pub(crate) fn cache_with(
    policy: Box<dyn EvictionPolicy>,
    max_value_bytes: u64,
    loader: FakeSource,
) -> WatchCache {
    bounded_cache(policy, max_value_bytes, u64::MAX, loader)
}

/// [`cache_with`], with a byte bound on the history window.
pub(crate) fn bounded_cache(
    policy: Box<dyn EvictionPolicy>,
    max_value_bytes: u64,
    max_history_bytes: u64,
    loader: FakeSource,
) -> WatchCache {
    let options = CacheOptions {
        name: "test".into(),
        id: 0,
        consistent_read_timeout: Duration::from_millis(200),
        wait_timeout: Duration::from_millis(200),
        max_history_bytes,
    };
    let values = ValueStore::new(max_value_bytes, policy.value_idle_timeout());
    WatchCache::new(options, values, Arc::new(loader), policy)
}

/// One step of a random history.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// A revision of this namespace: (key index, Some(value) = put, None = delete).
    Batch { gap: i64, ops: Vec<(u8, Option<Vec<u8>>)> },
    /// Revisions of other namespaces went by; a progress notification says so.
    Progress { gap: i64 },
}

pub(crate) fn key_name(i: u8) -> Bytes {
    // Nested keys, a shared prefix, and bytes that sort around '/'.
    const KEYS: [&[u8]; 10] = [b"a", b"a/b", b"a/c", b"a.b", b"b", b"b/x/y", b"c", b"c\xff", b"d", b"\x00z"];
    Bytes::from_static(KEYS[usize::from(i) % KEYS.len()])
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    let op = (0u8..10, prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..24)));
    prop_oneof![
        4 => (1i64..3, prop::collection::btree_map(0u8..10, op.prop_map(|(_, v)| v), 1..4))
            .prop_map(|(gap, ops)| Step::Batch { gap, ops: ops.into_iter().collect() }),
        1 => (1i64..4).prop_map(|gap| Step::Progress { gap }),
    ]
}

/// Applies `step` to the model and returns the batch etcd would send, if any.
pub(crate) fn apply_to_model(etcd: &mut FakeEtcd, step: &Step) -> Option<RevisionBatch> {
    let head = etcd.head();
    match step {
        Step::Progress { gap } => {
            let state = etcd.state_at(head).cloned().unwrap_or_default();
            etcd.states.insert(head + gap, state);
            None
        }
        Step::Batch { gap, ops } => {
            let revision = head + gap;
            let mut state = etcd.state_at(head).cloned().unwrap_or_default();
            let mut events = Vec::new();
            for (k, value) in ops {
                let key = key_name(*k);
                let prev = state.get(&key).cloned();
                match value {
                    Some(v) => {
                        let meta = Meta {
                            create_revision: prev.as_ref().map_or(revision, |p| p.meta.create_revision),
                            mod_revision: revision,
                            version: prev.as_ref().map_or(1, |p| p.meta.version + 1),
                            lease: 0,
                            value_len: v.len() as u32,
                        };
                        let kv = KeyValue { key: key.clone(), value: Bytes::from(v.clone()), meta };
                        state.insert(key, kv.clone());
                        events.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
                    }
                    None if prev.is_some() => {
                        state.remove(&key);
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: KeyValue::tombstone(key, revision),
                            prev_kv: prev,
                        });
                    }
                    None => {}
                }
            }
            etcd.states.insert(revision, state);
            (!events.is_empty()).then_some(RevisionBatch { revision, events })
        }
    }
}

pub(crate) fn model_range(state: &State, range: &KeyRange) -> Vec<KeyValue> {
    state.values().filter(|kv| range.contains(&kv.key)).cloned().collect()
}

pub(crate) fn ranges() -> Vec<KeyRange> {
    vec![
        KeyRange::all(),
        KeyRange::prefix(Bytes::from_static(b"a/")),
        KeyRange::prefix(Bytes::from_static(b"a")),
        KeyRange::key(Bytes::from_static(b"c\xff")),
        KeyRange { start: Bytes::from_static(b"b"), end: Some(Bytes::from_static(b"d")) },
        KeyRange { start: Bytes::from_static(b"c"), end: None },
    ]
}

/// Checks every read the cache can serve at `revision` against the model.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
