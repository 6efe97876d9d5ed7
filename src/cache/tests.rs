//! The cache against a model: a plain `BTreeMap` per revision, replaying
//! random batches, with reads at random revisions in the window, both
//! policies, window trimming, evicted values read through a fake etcd, and
//! pagination stability.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use proptest::prelude::*;

use super::*;
use crate::etcd::EtcdError;

type State = BTreeMap<Bytes, KeyValue>;

/// etcd's history as the model sees it: the state after every revision.
#[derive(Default)]
struct FakeEtcd {
    states: BTreeMap<Revision, State>,
    compacted: Revision,
}

impl FakeEtcd {
    fn head(&self) -> Revision {
        self.states.keys().next_back().copied().unwrap_or(0)
    }

    fn state_at(&self, revision: Revision) -> Option<&State> {
        self.states.range(..=revision).next_back().map(|(_, s)| s)
    }
}

#[derive(Clone, Default)]
struct FakeLoader(Arc<Mutex<FakeEtcd>>);

impl ValueLoader for FakeLoader {
    fn load(&self, request: LoadRequest) -> BoxFuture<'_, Result<Loaded, EtcdError>> {
        let etcd = self.0.lock().unwrap();
        let head = etcd.head();
        let revision = if request.revision == 0 { head } else { request.revision };
        let result = if revision < etcd.compacted {
            Err(EtcdError::Compacted { message: "required revision has been compacted".into() })
        } else if revision > head {
            Err(EtcdError::FutureRevision { message: "required revision is a future revision".into() })
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

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision, EtcdError>> {
        let head = self.0.lock().unwrap().head();
        Box::pin(async move { Ok(head) })
    }
}

fn cache_with(policy: Box<dyn EvictionPolicy>, max_value_bytes: u64, loader: FakeLoader) -> WatchCache {
    let options = CacheOptions {
        name: "test".into(),
        id: 0,
        consistent_read_timeout: Duration::from_millis(200),
        wait_timeout: Duration::from_millis(200),
    };
    WatchCache::new(options, ValueStore::new(max_value_bytes, None), Arc::new(loader), policy)
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Step {
    /// A revision of this namespace: (key index, Some(value) = put, None = delete).
    Batch { gap: i64, ops: Vec<(u8, Option<Vec<u8>>)> },
    /// Revisions of other namespaces went by; a progress notification says so.
    Progress { gap: i64 },
}

fn key_name(i: u8) -> Bytes {
    // Nested keys, a shared prefix, and bytes that sort around '/'.
    const KEYS: [&[u8]; 10] = [b"a", b"a/b", b"a/c", b"a.b", b"b", b"b/x/y", b"c", b"c\xff", b"d", b"\x00z"];
    Bytes::from_static(KEYS[usize::from(i) % KEYS.len()])
}

fn step() -> impl Strategy<Value = Step> {
    let op = (0u8..10, prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..24)));
    prop_oneof![
        4 => (1i64..3, prop::collection::btree_map(0u8..10, op.prop_map(|(_, v)| v), 1..4))
            .prop_map(|(gap, ops)| Step::Batch { gap, ops: ops.into_iter().collect() }),
        1 => (1i64..4).prop_map(|gap| Step::Progress { gap }),
    ]
}

/// Applies `step` to the model and returns the batch etcd would send, if any.
fn apply_to_model(etcd: &mut FakeEtcd, step: &Step) -> Option<RevisionBatch> {
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

fn model_range(state: &State, range: &KeyRange) -> Vec<KeyValue> {
    state.values().filter(|kv| range.contains(&kv.key)).cloned().collect()
}

fn ranges() -> Vec<KeyRange> {
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
async fn check_reads_at(cache: &WatchCache, state: &State, revision: Revision) {
    let snapshot = cache.snapshot(At::Exact(revision)).await.expect("revision in window");
    assert_eq!(snapshot.revision(), revision);
    for range in ranges() {
        let expected = model_range(state, &range);
        let page = snapshot.range(&range, 0, false).await.unwrap();
        assert_eq!(page.kvs, expected, "range {range:?} at {revision}");
        assert_eq!(snapshot.count(&range).await.unwrap(), expected.len() as u64);
        // Pages of 2 stitched together equal the whole range.
        let mut stitched = Vec::new();
        let mut next = range.clone();
        for _ in 0..20 {
            let page = snapshot.range(&next, 2, true).await.unwrap();
            if let Some(last) = page.kvs.last() {
                next = range.after(&last.key);
            }
            stitched.extend(page.kvs.into_iter().map(|kv| kv.key));
            if !page.more {
                break;
            }
        }
        assert_eq!(stitched, expected.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>());
    }
    for i in 0..10 {
        let key = key_name(i);
        assert_eq!(snapshot.get(&key).await.unwrap().as_ref(), state.get(&key), "get {key:?} at {revision}");
    }
}

async fn run_history(steps: Vec<Step>, policy: Box<dyn EvictionPolicy>, max_value_bytes: u64) {
    let loader = FakeLoader::default();
    let cache = cache_with(policy, max_value_bytes, loader.clone());
    // Bootstrap at revision 1 with an empty namespace.
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut subscriber = cache.subscribe(1);
    let mut delivered = Vec::new();

    for step in &steps {
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), step);
        match batch {
            Some(batch) => cache.apply(batch).await.unwrap(),
            None => {
                let head = loader.0.lock().unwrap().head();
                cache.advance(head).await;
            }
        }
        while let Some(update) = subscriber.try_next() {
            match update {
                Update::Batch(entry) => delivered.push(entry.revision),
                Update::Reset(reason) => panic!("unexpected reset {reason:?}"),
            }
        }
    }
    let view = cache.view();
    let etcd = loader.0.lock().unwrap().states.clone();
    assert_eq!(view.head, *etcd.keys().next_back().unwrap(), "head follows batches and progress");
    // The subscriber saw every batch, in order, once.
    let batches: Vec<Revision> =
        view.history.entries().iter().filter(|e| e.kind == EntryKind::Batch).map(|e| e.revision).collect();
    assert!(delivered.ends_with(&batches), "delivered {delivered:?}, window {batches:?}");
    assert!(delivered.windows(2).all(|w| w[0] < w[1]));

    let oldest = view.history.oldest_revision().unwrap();
    for (revision, state) in etcd.range(oldest..) {
        check_reads_at(&cache, state, *revision).await;
    }
    // The state at head is also what the head snapshot shows.
    let head_state = etcd.values().next_back().unwrap();
    let snapshot = cache.snapshot(At::Head).await.unwrap();
    assert_eq!(
        snapshot.range(&KeyRange::all(), 0, false).await.unwrap().kvs,
        model_range(head_state, &KeyRange::all())
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #[test]
    fn cache_matches_model_with_revision_policy(steps in prop::collection::vec(step(), 1..60), window in 1u64..30) {
        runtime().block_on(run_history(steps, Box::new(RevisionPolicy { history_revisions: window }), 1 << 30));
    }

    #[test]
    fn cache_matches_model_with_ttl_policy(steps in prop::collection::vec(step(), 1..60)) {
        runtime().block_on(run_history(steps, Box::new(TtlPolicy { ttl: Duration::from_secs(3600) }), 1 << 30));
    }

    #[test]
    fn evicted_values_are_read_through_exactly(steps in prop::collection::vec(step(), 1..40)) {
        // A budget of a few entries forces evictions: reads go to the fake etcd.
        runtime().block_on(run_history(steps, Box::new(RevisionPolicy { history_revisions: 1000 }), 600));
    }
}

#[tokio::test]
async fn revision_window_stays_at_history_revisions() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 5 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    for _ in 0..20 {
        let step = Step::Batch { gap: 1, ops: vec![(0, Some(b"v".to_vec()))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        cache.apply(batch).await.unwrap();
    }
    let view = cache.view();
    assert_eq!(view.head, 21);
    assert_eq!(view.history.oldest_revision(), Some(17), "head − 5 < revision");
    assert_eq!(view.history.len(), 5);
    let err = cache.snapshot(At::Exact(16)).await.unwrap();
    assert!(err.is_from_etcd(), "older revisions go to etcd");
}

#[tokio::test]
async fn subscriber_behind_the_window_gets_lagged_reset_and_resyncs() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 3 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut slow = cache.subscribe(1);
    for _ in 0..10 {
        let step = Step::Batch { gap: 1, ops: vec![(1, Some(b"v".to_vec()))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        cache.apply(batch).await.unwrap();
    }
    assert!(matches!(slow.try_next(), Some(Update::Reset(ResetReason::Lagged))));
    let view = slow.resync();
    assert_eq!((slow.cursor(), view.head), (11, 11));
    assert!(slow.try_next().is_none());
}

#[tokio::test]
async fn relist_resets_subscribers_with_its_reason() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    cache.snapshot_builder(5).install(ResetReason::Relisted).await;
    let mut sub = cache.subscribe(5);
    let mut builder = cache.snapshot_builder(9);
    builder
        .add([KeyValue {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            meta: Meta { create_revision: 8, mod_revision: 8, version: 1, lease: 0, value_len: 1 },
        }])
        .await;
    builder.install(ResetReason::Compacted).await;
    assert!(matches!(sub.try_next(), Some(Update::Reset(ResetReason::Compacted))));
    let late = cache.subscribe(9);
    let mut late = late;
    assert!(late.try_next().is_none(), "a cursor at the new snapshot continues");
}

#[tokio::test]
async fn batches_must_move_forward() {
    let cache =
        cache_with(Box::new(RevisionPolicy { history_revisions: 10 }), 1 << 20, FakeLoader::default());
    let batch = |revision| RevisionBatch {
        revision,
        events: vec![Event {
            kind: EventKind::Delete,
            kv: KeyValue::tombstone(Bytes::from_static(b"k"), revision),
            prev_kv: None,
        }],
    };
    assert_eq!(cache.apply(batch(3)).await, Err(ApplyError::NotLoaded));
    cache.snapshot_builder(5).install(ResetReason::Relisted).await;
    assert_eq!(cache.apply(batch(5)).await, Err(ApplyError::NotIncreasing { revision: 5, head: 5 }));
    let mut wrong = batch(6);
    wrong.events[0].kv.meta.mod_revision = 7;
    assert_eq!(cache.apply(wrong).await, Err(ApplyError::Malformed { revision: 6 }));
    cache.apply(batch(6)).await.unwrap();
    assert_eq!(cache.head(), 6);
}

#[tokio::test]
async fn progress_moves_subscribers_only_when_nothing_is_pending() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut sub = cache.subscribe(1);
    let batch =
        apply_to_model(&mut loader.0.lock().unwrap(), &Step::Batch { gap: 1, ops: vec![(0, Some(vec![1]))] })
            .unwrap();
    cache.apply(batch).await.unwrap();
    cache.advance(7).await;
    assert_eq!(sub.progress(), None, "a batch is pending");
    assert!(matches!(sub.try_next(), Some(Update::Batch(e)) if e.revision == 2));
    assert_eq!(sub.progress(), Some(7));
    assert_eq!(sub.progress(), None, "nothing new");
}

#[tokio::test]
async fn future_and_compacted_revisions_are_reported() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 2 }), 1 << 20, loader.clone());
    for step in [
        Step::Batch { gap: 1, ops: vec![(0, Some(vec![1]))] },
        Step::Batch { gap: 1, ops: vec![(0, Some(vec![2]))] },
    ] {
        apply_to_model(&mut loader.0.lock().unwrap(), &step);
    }
    cache.snapshot_builder(2).install(ResetReason::Relisted).await;
    loader.0.lock().unwrap().compacted = 2;
    match cache.snapshot(At::Exact(50)).await {
        Err(ReadError::FutureRevision { revision: 50, etcd_revision: 2 }) => {}
        other => panic!("expected future_revision, got {:?}", other.map(|s| s.revision())),
    }
    let old = cache.snapshot(At::Exact(1)).await.unwrap();
    match old.get(&key_name(0)).await {
        Err(ReadError::Compacted { revision: 1, compact_revision: 2 }) => {}
        other => panic!("expected compacted, got {other:?}"),
    }
    match cache.snapshot(At::AtLeast(2)).await {
        Ok(s) => assert_eq!(s.revision(), 2),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn at_least_waits_for_head_and_times_out() {
    let loader = FakeLoader::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let batch =
        apply_to_model(&mut loader.0.lock().unwrap(), &Step::Batch { gap: 1, ops: vec![(0, Some(vec![1]))] })
            .unwrap();
    // etcd is at 2, the cache at 1: the read waits until the batch arrives.
    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.snapshot(At::AtLeast(2)).await.map(|s| s.revision()) }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!reader.is_finished(), "the read waits for the cache");
    cache.apply(batch).await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), 2);
    // A revision etcd has but the cache never reaches: timeout (wait_timeout is 200 ms here).
    apply_to_model(&mut loader.0.lock().unwrap(), &Step::Progress { gap: 1 });
    match cache.snapshot(At::AtLeast(3)).await {
        Err(ReadError::Timeout { revision: 3, head: 2, .. }) => {}
        other => panic!("expected timeout, got {:?}", other.map(|s| s.revision())),
    }
}
