//! The cache against a model (`testing.rs`): a plain `BTreeMap` per
//! revision, replaying random batches, with reads at random revisions in the
//! window, both policies, window trimming, evicted values read through a
//! fake etcd, and pagination stability.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::testing::*;
use super::*;

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
    run_bounded_history(steps, policy, max_value_bytes, u64::MAX).await;
}

async fn run_bounded_history(
    steps: Vec<Step>,
    policy: Box<dyn EvictionPolicy>,
    max_value_bytes: u64,
    max_history_bytes: u64,
) {
    let loader = FakeSource::default();
    let cache = bounded_cache(policy, max_value_bytes, max_history_bytes, loader.clone());
    // Bootstrap at revision 1 with an empty namespace.
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut applied = Vec::new();
    for step in &steps {
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), step);
        match batch {
            Some(batch) => {
                applied.push(batch.revision);
                cache.apply(batch).await.unwrap();
            }
            None => {
                let head = loader.0.lock().unwrap().head();
                cache.advance(head).await;
            }
        }
    }
    let view = cache.view();
    let etcd = loader.0.lock().unwrap().states.clone();
    assert_eq!(view.head, *etcd.keys().next_back().unwrap(), "head follows batches and progress");
    // The window holds exactly the batches applied after its oldest entry, in order.
    let oldest = view.history.oldest_revision().unwrap();
    let in_window: Vec<Revision> = view.history.entries().iter().skip(1).map(|e| e.revision).collect();
    let expected: Vec<Revision> = applied.iter().copied().filter(|r| *r > oldest).collect();
    assert_eq!(in_window, expected, "window after {oldest}");
    let bytes: u64 = view.history.entries().iter().map(|e| Entry::history_bytes(&e.events)).sum();
    assert_eq!(view.history.bytes(), bytes, "history bytes accounted exactly");
    assert!(bytes <= max_history_bytes || view.history.len() == 1, "{bytes} > {max_history_bytes}");

    for (revision, state) in etcd.range(oldest..) {
        check_reads_at(&cache, state, *revision).await;
    }
    assert_eq!(
        cache.inner.values.inline_bytes(),
        inline_bytes_held(&cache),
        "inline values accounted exactly"
    );
    // The state at head is also what the head snapshot shows.
    let head_state = etcd.values().next_back().unwrap();
    let snapshot = cache.snapshot(At::Head).await.unwrap();
    assert_eq!(
        snapshot.range(&KeyRange::all(), 0, false).await.unwrap().kvs,
        model_range(head_state, &KeyRange::all())
    );
}

/// The budget the values kept with the index should be charged: every
/// current version kept inline, and every replaced one a batch in the
/// window still lets older index versions reach.
fn inline_bytes_held(cache: &WatchCache) -> u64 {
    let view = cache.view();
    let cost = |len: usize| (len + INLINE_OVERHEAD_BYTES) as u64;
    let current: u64 = view
        .history
        .latest()
        .map_or(0, |e| e.index.values().filter_map(|s| s.value.as_ref()).map(|v| cost(v.len())).sum());
    let replaced: u64 = view
        .history
        .entries()
        .iter()
        .flat_map(|e| e.superseded.iter())
        .filter_map(|s| s.inline_len)
        .map(cost)
        .sum();
    current + replaced
}

proptest! {
    #[test]
    fn cache_matches_model_with_revision_policy(steps in prop::collection::vec(step(), 1..60), window in 1u64..30) {
        runtime().block_on(run_history(steps, Box::new(RevisionPolicy { history_revisions: window }), 1 << 30));
    }

    #[test]
    fn cache_matches_model_with_ttl_policy(steps in prop::collection::vec(step(), 1..60), ttl_ms in 0u64..3) {
        // A TTL of a few milliseconds: batches leave the window and values go
        // idle while the steps run, so reads come from the window, from
        // memory and from the fake etcd in turn.
        let policy = TtlPolicy { ttl: Duration::from_millis(ttl_ms) };
        runtime().block_on(run_history(steps, Box::new(policy), 1 << 30));
    }

    #[test]
    fn the_history_window_stays_within_its_byte_bound(steps in prop::collection::vec(step(), 1..60), events in 0u64..8) {
        // A bound of a few events: the window shrinks by bytes, not by the
        // policy's 1,000 revisions, and reads in it stay exact.
        let bound = events * (HISTORY_EVENT_OVERHEAD_BYTES + HISTORY_REVISION_OVERHEAD_BYTES + 8) as u64;
        runtime().block_on(run_bounded_history(steps, Box::new(RevisionPolicy { history_revisions: 1000 }), 1 << 30, bound));
    }

    #[test]
    fn evicted_values_are_read_through_exactly(steps in prop::collection::vec(step(), 1..40)) {
        // A budget of a few values (kept with the index) and no room in the
        // value cache: the others are read from the fake etcd.
        runtime().block_on(run_history(steps, Box::new(RevisionPolicy { history_revisions: 1000 }), 100));
    }
}

#[tokio::test]
async fn a_ttl_of_zero_keeps_only_the_latest_state_and_reads_values_through() {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(TtlPolicy { ttl: Duration::from_millis(1) }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    for _ in 0..5 {
        let step = Step::Batch { gap: 1, ops: vec![(0, Some(b"v".to_vec()))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        cache.apply(batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Each publish trimmed what was older than the TTL: one entry stays.
    assert_eq!(cache.view().history.len(), 1);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let before = cache.value_stats().read_throughs.load(std::sync::atomic::Ordering::Relaxed);
    let kv = cache.snapshot(At::Head).await.unwrap().get(&key_name(0)).await.unwrap().unwrap();
    assert_eq!(kv.value, Bytes::from_static(b"v"));
    let after = cache.value_stats().read_throughs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 1, "the idle value was dropped and read from etcd");
}

#[tokio::test]
async fn revision_window_stays_at_history_revisions() {
    let loader = FakeSource::default();
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
async fn batches_must_move_forward() {
    let cache =
        cache_with(Box::new(RevisionPolicy { history_revisions: 10 }), 1 << 20, FakeSource::default());
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
async fn future_and_compacted_revisions_are_reported() {
    let loader = FakeSource::default();
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
    let loader = FakeSource::default();
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

#[tokio::test]
async fn values_stay_with_the_index_within_their_share_of_the_budget_and_leave_with_their_versions() {
    let loader = FakeSource::default();
    // 7/8 of 1,000 bytes for values kept with the index: 7 values of 100
    // bytes (each charged 116).
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 3 }), 1000, loader.clone());
    let value = |i: u8| vec![i; 100];
    let ops = (0..10u8).map(|i| (i, Some(value(i)))).collect();
    let batch = apply_to_model(&mut loader.0.lock().unwrap(), &Step::Batch { gap: 1, ops }).unwrap();
    let mut builder = cache.snapshot_builder(batch.revision);
    builder.add(batch.events.iter().map(|e| e.kv.clone())).await;
    builder.install(ResetReason::Relisted).await;
    let values = &cache.inner.values;
    assert_eq!(values.inline_bytes(), 7 * 116, "the first 7 values fit");
    let index = cache.view().index();
    let inline: Vec<bool> = (0..10).map(|i| index.get(&key_name(i)).unwrap().value.is_some()).collect();
    assert_eq!(inline, [true, true, true, true, true, true, true, false, false, false]);
    // Every value reads back, the last three from etcd (the value cache's
    // 125 bytes hold none of them, once moka's maintenance ran).
    values.run_pending_tasks().await;
    let snapshot = cache.snapshot(At::Head).await.unwrap();
    let page = snapshot.range(&KeyRange::all(), 0, false).await.unwrap();
    let mut expected: Vec<(Bytes, Vec<u8>)> = (0..10).map(|i| (key_name(i), value(i))).collect();
    expected.sort();
    assert_eq!(page.kvs.iter().map(|kv| (kv.key.clone(), kv.value.to_vec())).collect::<Vec<_>>(), expected);
    assert_eq!(cache.value_stats().misses.load(std::sync::atomic::Ordering::Relaxed), 3);

    // Key 0 rewritten with 10-byte values (charged 26 each): replaced
    // versions stay while the window (3 revisions) can read them, then give
    // their bytes back.
    for round in 1..=4u8 {
        let step = Step::Batch { gap: 1, ops: vec![(0, Some(vec![round; 10]))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        cache.apply(batch).await.unwrap();
        assert_eq!(values.inline_bytes(), inline_bytes_held(&cache));
        if round == 2 {
            assert_eq!(
                values.inline_bytes(),
                7 * 116 + 2 * 26,
                "rounds 1 and 2 fit beside key 0's first version"
            );
        }
    }
    // Rounds 3 and 4 did not fit (they are in the value cache); the batch
    // that replaced key 0's first version left the window, so its 116 bytes
    // are back; rounds 1 and 2, replaced, are still readable in the window.
    assert_eq!(values.inline_bytes(), 6 * 116 + 2 * 26);

    // A builder abandoned half-way gives its share back; a re-list's new
    // index replaces the old one's.
    let mut abandoned = cache.snapshot_builder(cache.head());
    abandoned
        .add([KeyValue {
            key: key_name(20),
            value: Bytes::from(vec![1; 50]),
            meta: index.get(&key_name(1)).unwrap().meta,
        }])
        .await;
    assert_eq!(values.inline_bytes(), 6 * 116 + 2 * 26 + 66);
    drop(abandoned);
    assert_eq!(values.inline_bytes(), 6 * 116 + 2 * 26);
    let mut relist = cache.snapshot_builder(cache.head());
    relist
        .add([KeyValue {
            key: key_name(1),
            value: Bytes::from(vec![1; 50]),
            meta: index.get(&key_name(1)).unwrap().meta,
        }])
        .await;
    relist.install(ResetReason::Relisted).await;
    assert_eq!(values.inline_bytes(), 66);
}

#[tokio::test]
async fn with_the_ttl_policy_every_value_is_in_the_value_cache() {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(TtlPolicy { ttl: Duration::from_secs(60) }), 1 << 20, loader.clone());
    let batch =
        apply_to_model(&mut loader.0.lock().unwrap(), &Step::Batch { gap: 1, ops: vec![(0, Some(vec![7]))] })
            .unwrap();
    let mut builder = cache.snapshot_builder(batch.revision);
    builder.add(batch.events.iter().map(|e| e.kv.clone())).await;
    builder.install(ResetReason::Relisted).await;
    assert_eq!(cache.inner.values.inline_bytes(), 0);
    assert_eq!(cache.view().index().get(&key_name(0)).unwrap().value, None);
    let kv = cache.snapshot(At::Head).await.unwrap().get(&key_name(0)).await.unwrap().unwrap();
    assert_eq!(kv.value, Bytes::from_static(&[7]));
    assert_eq!(
        cache.value_stats().hits.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "from the value cache"
    );
}

#[tokio::test]
async fn a_consistent_read_that_times_out_reads_etcd_at_its_revision_then() {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    cache.status().set_connected(true);
    let write = |etcd: &mut FakeEtcd| {
        apply_to_model(etcd, &Step::Batch { gap: 1, ops: vec![(0, Some(vec![1]))] }).unwrap();
    };
    write(&mut loader.0.lock().unwrap());
    // The cache never gets revision 2. While the read waits for it, etcd
    // moves on and compacts revision 2 away.
    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.snapshot(At::Consistent).await.map(|s| s.revision()) }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    {
        let mut etcd = loader.0.lock().unwrap();
        write(&mut etcd);
        etcd.compacted = 3;
    }
    assert_eq!(reader.await.unwrap().unwrap(), 3, "read at etcd's revision after the wait, not at 2");
}

#[tokio::test]
async fn a_load_in_pages_holds_every_key_of_every_page_in_order() {
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 3 }), 1 << 20, FakeSource::default());
    let kv = |i: u32| {
        let value = Bytes::from(i.to_string());
        let value_len = value.len() as u32;
        let meta =
            Meta { create_revision: 2, mod_revision: 2 + i64::from(i), version: 1, lease: 0, value_len };
        KeyValue { key: Bytes::from(format!("key/{i:05}")), value, meta }
    };
    let mut builder = cache.snapshot_builder(500);
    // Pages of odd and even lengths, each after the last.
    for page in [0..101u32, 101..102, 102..300] {
        builder.add(page.map(kv)).await;
    }
    builder.install(ResetReason::Relisted).await;
    let snapshot = cache.snapshot(At::Head).await.unwrap();
    let page = snapshot.range(&KeyRange::all(), 0, false).await.unwrap();
    let got: Vec<(Bytes, Bytes, Revision)> =
        page.kvs.into_iter().map(|kv| (kv.key, kv.value, kv.meta.mod_revision)).collect();
    let want: Vec<(Bytes, Bytes, Revision)> =
        (0..300).map(kv).map(|kv| (kv.key, kv.value, kv.meta.mod_revision)).collect();
    assert_eq!(got, want);
}
