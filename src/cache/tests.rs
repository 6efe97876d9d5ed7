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
    let loader = FakeSource::default();
    let cache = cache_with(policy, max_value_bytes, loader.clone());
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
    fn evicted_values_are_read_through_exactly(steps in prop::collection::vec(step(), 1..40)) {
        // A budget of a few entries forces evictions: reads go to the fake etcd.
        runtime().block_on(run_history(steps, Box::new(RevisionPolicy { history_revisions: 1000 }), 600));
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
