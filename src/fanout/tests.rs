//! Subscriptions against the cache's model (`cache::testing`): every batch
//! delivered once and in order, resets when the window or a re-list takes
//! the subscriber's place away, progress only when nothing is pending, and a
//! subscriber racing a writer on another thread.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use std::sync::Arc;

use super::{Subscription, Update};
use crate::cache::testing::*;
use crate::cache::{KeyValue, Meta, ResetReason, Revision, RevisionPolicy};

/// Applies `steps` while a subscriber drains after each one; returns what
/// it received and the revisions of every batch applied.
async fn deliver(steps: &[Step], window: u64) -> (Vec<Revision>, Vec<Revision>) {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: window }), 1 << 30, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut subscriber = Subscription::new(&cache, 1);
    let (mut delivered, mut applied) = (Vec::new(), Vec::new());
    for step in steps {
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
        while let Some(update) = subscriber.try_next() {
            match update {
                Update::Batch(entry) => delivered.push(entry.revision),
                Update::Reset(reason) => panic!("unexpected reset {reason:?}"),
            }
        }
    }
    (delivered, applied)
}

proptest! {
    #[test]
    fn a_subscriber_that_keeps_up_gets_every_batch_once_in_order(
        steps in prop::collection::vec(step(), 1..60),
        window in 1u64..30,
    ) {
        let (delivered, applied) = runtime().block_on(deliver(&steps, window));
        prop_assert_eq!(delivered, applied);
    }
}

/// Many batches applied on one thread while a subscriber awaits `next()` on
/// another: the subscriber's cursor and the writer's publish race, and the
/// subscriber must still see every batch exactly once, in order.
#[test]
fn a_subscriber_racing_the_writer_misses_and_repeats_nothing() {
    const BATCHES: usize = 2000;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let loader = FakeSource::default();
        let cache =
            cache_with(Box::new(RevisionPolicy { history_revisions: 100_000 }), 1 << 30, loader.clone());
        loader.0.lock().unwrap().states.insert(1, State::new());
        cache.snapshot_builder(1).install(ResetReason::Relisted).await;
        let mut subscriber = Subscription::new(&cache, 1);
        let reader = tokio::spawn(async move {
            let mut seen = Vec::with_capacity(BATCHES);
            while seen.len() < BATCHES {
                match tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await {
                    Ok(Some(Update::Batch(entry))) => seen.push(entry.revision),
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => panic!("no batch within 10 s after {}", seen.len()),
                }
            }
            seen
        });
        let writer = tokio::spawn({
            let cache = cache.clone();
            async move {
                let mut applied = Vec::with_capacity(BATCHES);
                for i in 0..BATCHES {
                    let step =
                        Step::Batch { gap: 1 + (i % 2) as i64, ops: vec![((i % 10) as u8, Some(vec![1]))] };
                    let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
                    applied.push(batch.revision);
                    cache.apply(batch).await.unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                applied
            }
        });
        let applied = writer.await.unwrap();
        let seen = reader.await.unwrap();
        assert_eq!(seen, applied);
    });
}

#[tokio::test]
async fn subscriber_behind_the_window_gets_lagged_reset_and_resyncs() {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 3 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut slow = Subscription::new(&cache, 1);
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
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    cache.snapshot_builder(5).install(ResetReason::Relisted).await;
    let mut sub = Subscription::new(&cache, 5);
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
    let mut late = Subscription::new(&cache, 9);
    assert!(late.try_next().is_none(), "a cursor at the new snapshot continues");
}

#[tokio::test]
async fn progress_moves_subscribers_only_when_nothing_is_pending() {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 100 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut sub = Subscription::new(&cache, 1);
    let batch =
        apply_to_model(&mut loader.0.lock().unwrap(), &Step::Batch { gap: 1, ops: vec![(0, Some(vec![1]))] })
            .unwrap();
    cache.apply(batch).await.unwrap();
    cache.advance(7).await;
    assert_eq!(sub.progress(), None, "a batch is pending");
    assert!(matches!(sub.try_next(), Some(Update::Batch(e)) if e.revision == 2));
    assert_eq!(sub.progress(), Some(7));
    assert_eq!(sub.progress(), Some(7), "nothing new: still complete up to head");
}

/// A cache with a window of 3 revisions over the model after 10 batches
/// (some revisions skipped), its source, and the revisions applied.
async fn cache_behind_window() -> (crate::cache::WatchCache, FakeSource, Vec<Revision>) {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: 3 }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut applied = Vec::new();
    for i in 0..10u8 {
        let step = Step::Batch { gap: 1 + i64::from(i % 2), ops: vec![(i % 4, Some(vec![i]))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        applied.push(batch.revision);
        cache.apply(batch).await.unwrap();
    }
    (cache, loader, applied)
}

/// Every revision a catch-up gives, then those of the window it hands over
/// to.
async fn caught_up(mut catch_up: super::CatchUp) -> Vec<Revision> {
    let mut seen = Vec::new();
    let mut subscription = loop {
        match catch_up.next().await.unwrap() {
            super::Step::Batch(entry) => {
                assert!(
                    entry.events.iter().all(|e| e.prev_kv.is_some() || e.kv.meta.version == 1),
                    "replays carry prev_kv"
                );
                seen.push(entry.revision);
            }
            super::Step::Done(subscription) => break subscription,
        }
    };
    while let Some(Update::Batch(entry)) = subscription.try_next() {
        seen.push(entry.revision);
    }
    seen
}

#[tokio::test]
async fn a_subscriber_behind_the_window_catches_up_from_the_source_without_gap_or_duplicate() {
    use super::{CatchUp, CatchUps};
    let (cache, loader, applied) = cache_behind_window().await;
    assert!(CatchUp::needed(&cache, 1), "position 1 is behind a window of 3 revisions");
    let catch_ups = Arc::new(CatchUps::new(1, 1 << 20));
    let seen = caught_up(CatchUp::start(&cache, &catch_ups, 1)).await;
    assert_eq!(seen, applied, "every revision once, in order, across the handover");
    assert_eq!(catch_ups.completed.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A position etcd compacted cannot be caught up (elsewhere than in
    // the replay above, which still holds it for a while: see the next test).
    loader.0.lock().unwrap().compacted = 5;
    let catch_ups = Arc::new(CatchUps::new(1, 1 << 20));
    let mut late = CatchUp::start(&cache, &catch_ups, 2);
    assert!(matches!(late.next().await, Err(crate::cache::UpstreamError::Compacted { .. })));
    assert_eq!(catch_ups.compacted.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn subscribers_resuming_together_share_one_replay_from_etcd() {
    use super::{CatchUp, CatchUps};
    let (cache, _loader, applied) = cache_behind_window().await;
    let catch_ups = Arc::new(CatchUps::new(4, 1 << 20));
    // Ten at the same position and one further on, all before the replay
    // has read anything.
    let mut readers: Vec<_> = (0..10).map(|_| CatchUp::start(&cache, &catch_ups, 1)).collect();
    readers.push(CatchUp::start(&cache, &catch_ups, applied[2]));
    let seen = futures_util::future::join_all(readers.into_iter().map(caught_up)).await;
    for seen in &seen[..10] {
        assert_eq!(*seen, applied);
    }
    assert_eq!(seen[10], applied[3..], "the later one starts after its own position");
    let started = catch_ups.replays_started.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(started, 1, "one replay read etcd for all of them");
    assert_eq!(catch_ups.completed.load(std::sync::atomic::Ordering::Relaxed), 11);
}

#[tokio::test(start_paused = true)]
async fn a_complete_replay_serves_streams_that_resume_a_little_later() {
    use super::catch_up::LINGER;
    use super::{CatchUp, CatchUps};
    let (cache, _loader, applied) = cache_behind_window().await;
    let catch_ups = Arc::new(CatchUps::new(4, 1 << 20));
    let started = || catch_ups.replays_started.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(caught_up(CatchUp::start(&cache, &catch_ups, 1)).await, applied);
    // Its only reader is done; one resuming soon after reads the same replay.
    tokio::time::sleep(LINGER / 2).await;
    assert_eq!(caught_up(CatchUp::start(&cache, &catch_ups, 1)).await, applied);
    assert_eq!(started(), 1);
    // Long after, a new one reads etcd again.
    tokio::time::sleep(LINGER * 2).await;
    assert_eq!(caught_up(CatchUp::start(&cache, &catch_ups, 1)).await, applied);
    assert_eq!(started(), 2);
}

#[tokio::test]
async fn a_replay_at_its_byte_bound_hands_its_readers_to_the_next_without_a_gap() {
    use super::{CatchUp, CatchUps};
    let (cache, _loader, applied) = cache_behind_window().await;
    // One entry per replay.
    let catch_ups = Arc::new(CatchUps::new(1, 1));
    let readers = [CatchUp::start(&cache, &catch_ups, 1), CatchUp::start(&cache, &catch_ups, 1)];
    let seen = futures_util::future::join_all(readers.into_iter().map(caught_up)).await;
    assert_eq!(seen, [applied.clone(), applied.clone()]);
    let started = catch_ups.replays_started.load(std::sync::atomic::Ordering::Relaxed);
    // Each replay holds one batch: one per revision behind the window, and
    // one for the first revision that reaches it.
    let behind = applied.iter().filter(|r| CatchUp::needed(&cache, **r)).count();
    assert_eq!(started as usize, behind + 1, "a new replay after each full one, shared by both readers");
}

/// A cache over the model with `batches` single-put batches applied (keys
/// `0..batches % 4`), its source, and the revisions applied.
async fn cache_after(batches: u8, window: u64) -> (crate::cache::WatchCache, FakeSource, Vec<Revision>) {
    let loader = FakeSource::default();
    let cache = cache_with(Box::new(RevisionPolicy { history_revisions: window }), 1 << 20, loader.clone());
    loader.0.lock().unwrap().states.insert(1, State::new());
    cache.snapshot_builder(1).install(ResetReason::Relisted).await;
    let mut applied = Vec::new();
    for i in 0..batches {
        let step = Step::Batch { gap: 1, ops: vec![(i % 5, Some(vec![i]))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        applied.push(batch.revision);
        cache.apply(batch).await.unwrap();
    }
    (cache, loader, applied)
}

fn feed(cache: &crate::cache::WatchCache, start: super::Start, on_gap: super::OnGap) -> super::Feed {
    let options = super::FeedOptions {
        range: crate::cache::KeyRange::all(),
        start,
        prev_kv: false,
        on_gap,
        snapshot_chunk: 2,
        progress_interval: Some(Duration::from_secs(10)),
        heartbeat_interval: None,
        lifetime: None,
    };
    let catch_ups = Arc::new(super::CatchUps::new(4, 1 << 20));
    super::Feed::new(cache, options, &catch_ups, &tokio_util::sync::CancellationToken::new())
}

/// The revision and key count of a feed event, for comparing sequences.
fn summary(event: &super::FeedEvent) -> (&'static str, Revision, usize) {
    use super::FeedEvent as E;
    match event {
        E::Snapshot { revision, kvs } => ("snapshot", *revision, kvs.len()),
        E::Synced(r) => ("synced", *r, 0),
        E::Batch { entry, .. } => ("batch", entry.revision, entry.events.len()),
        E::Progress(r) => ("progress", *r, 0),
        E::Reset { head, .. } => ("reset", *head, 0),
        E::Gap(gap) => ("gap", gap.cursor, 0),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_feed_from_the_current_state_sends_it_in_chunks_then_synced_then_each_new_batch() {
    let (cache, loader, applied) = cache_after(5, 100).await;
    let head = *applied.last().unwrap();
    let mut feed = feed(&cache, super::Start::Snapshot, super::OnGap::Reset);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(summary(&feed.next().await.unwrap()));
    }
    let step = Step::Batch { gap: 1, ops: vec![(0, None)] };
    let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
    let deleted_at = batch.revision;
    cache.apply(batch).await.unwrap();
    seen.push(summary(&feed.next().await.unwrap()));
    assert_eq!(
        seen,
        [
            ("snapshot", head, 2),
            ("snapshot", head, 2),
            ("snapshot", head, 1),
            ("synced", head, 0),
            ("batch", deleted_at, 1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_feed_sends_progress_only_when_the_surface_sent_nothing_for_an_interval() {
    let (cache, loader, applied) = cache_after(2, 100).await;
    let mut feed = feed(&cache, super::Start::Now, super::OnGap::Reset);
    let started = tokio::time::Instant::now();
    assert_eq!(summary(&feed.next().await.unwrap()), ("synced", applied[1], 0));
    // Idle: progress a whole interval after `synced`, at the head.
    assert_eq!(summary(&feed.next().await.unwrap()), ("progress", applied[1], 0));
    assert_eq!(started.elapsed(), Duration::from_secs(10));

    tokio::time::advance(Duration::from_secs(4)).await;
    let step = Step::Batch { gap: 1, ops: vec![(1, Some(vec![9]))] };
    let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
    let revision = batch.revision;
    cache.apply(batch).await.unwrap();
    assert_eq!(summary(&feed.next().await.unwrap()), ("batch", revision, 1));
    feed.sent();
    // The batch was sent at 14 s: the next progress is due at 24 s, not 20 s.
    assert_eq!(summary(&feed.next().await.unwrap()), ("progress", revision, 0));
    assert_eq!(started.elapsed(), Duration::from_secs(24));
}

#[tokio::test]
async fn a_feed_told_to_end_on_a_gap_names_where_etcds_history_starts_and_ends() {
    let (cache, loader, _) = cache_after(10, 3).await;
    loader.0.lock().unwrap().compacted = 5;
    let mut feed = feed(&cache, super::Start::Since(2), super::OnGap::End);
    let super::FeedEvent::Gap(gap) = feed.next().await.unwrap() else { panic!("a gap") };
    assert_eq!(gap, super::Gap { reason: ResetReason::Compacted, cursor: 2, compact_revision: 5 });
    assert!(feed.next().await.is_none(), "the feed ended");
}

#[tokio::test]
async fn a_feed_behind_the_window_is_caught_up_then_synced_without_gap_or_duplicate() {
    let (cache, _, applied) = cache_after(10, 3).await;
    let mut feed = feed(&cache, super::Start::Since(1), super::OnGap::End);
    let mut batches = Vec::new();
    loop {
        match feed.next().await.unwrap() {
            super::FeedEvent::Batch { entry, .. } => batches.push(entry.revision),
            super::FeedEvent::Synced(revision) => {
                assert_eq!(revision, *applied.last().unwrap());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(batches, applied);
}

#[tokio::test]
async fn a_subscriber_following_linked_batches_still_gets_the_reset_of_a_relist() {
    let (cache, loader, applied) = cache_after(3, 100).await;
    let mut sub = Subscription::new(&cache, 1);
    // Held, as a stream rendering them would: the entries stay in memory.
    let mut held = Vec::new();
    while let Some(update) = sub.try_next() {
        let Update::Batch(entry) = update else { panic!("unexpected {update:?}") };
        held.push(entry);
    }
    let step = Step::Batch { gap: 1, ops: vec![(0, Some(vec![7]))] };
    let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
    let fourth = batch.revision;
    cache.apply(batch).await.unwrap();
    let Some(Update::Batch(next)) = sub.try_next() else { panic!("the next batch") };
    assert_eq!(next.revision, fourth);
    let revisions: Vec<Revision> = held.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, applied);
    // A re-list replaces the history: nothing is linked after the old
    // head, and the subscriber is told to resync.
    cache.snapshot_builder(fourth + 5).install(ResetReason::Compacted).await;
    assert!(matches!(sub.try_next(), Some(Update::Reset(ResetReason::Compacted))));
}

#[tokio::test]
async fn an_old_entry_held_by_a_watcher_keeps_no_later_entry_in_memory() {
    let (cache, loader, _) = cache_after(1, 3).await;
    let mut sub = Subscription::new(&cache, 1);
    let Some(Update::Batch(old)) = sub.try_next() else { panic!("a batch") };
    for i in 0..10 {
        let step = Step::Batch { gap: 1, ops: vec![(i % 5, Some(vec![i]))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        cache.apply(batch).await.unwrap();
    }
    // The entry after `old` left the window and, linked weakly, memory.
    assert!(old.next().is_none());
    assert!(matches!(sub.try_next(), Some(Update::Reset(ResetReason::Lagged))));
}

#[tokio::test]
async fn a_live_feed_gives_the_batches_already_due_without_waiting() {
    let (cache, loader, applied) = cache_after(2, 100).await;
    let mut feed = feed(&cache, super::Start::Now, super::OnGap::Reset);
    assert!(feed.ready().is_none(), "synced is next, and it is not due without waiting");
    assert_eq!(summary(&feed.next().await.unwrap()), ("synced", applied[1], 0));
    assert!(feed.ready().is_none(), "nothing due");
    let mut due = Vec::new();
    for i in 0..3 {
        let step = Step::Batch { gap: 1, ops: vec![(i, Some(vec![i]))] };
        let batch = apply_to_model(&mut loader.0.lock().unwrap(), &step).unwrap();
        due.push(("batch", batch.revision, 1));
        cache.apply(batch).await.unwrap();
    }
    let mut seen = Vec::new();
    while let Some(event) = feed.ready() {
        seen.push(summary(&event));
    }
    assert_eq!(seen, due);
}

#[tokio::test]
async fn a_replay_of_the_window_is_due_without_waiting_until_synced() {
    let (cache, _, applied) = cache_after(5, 100).await;
    let mut feed = feed(&cache, super::Start::Since(applied[0]), super::OnGap::Reset);
    let mut seen = vec![summary(&feed.next().await.unwrap())];
    while let Some(event) = feed.ready() {
        seen.push(summary(&event));
    }
    let replayed: Vec<_> = applied[1..].iter().map(|&r| ("batch", r, 1)).collect();
    assert_eq!(seen, replayed);
    assert_eq!(summary(&feed.next().await.unwrap()), ("synced", applied[4], 0));
}

#[tokio::test]
async fn a_catch_up_is_due_without_waiting_as_far_as_its_replay_of_etcd_has_read() {
    let (cache, _, applied) = cache_after(10, 3).await;
    let mut feed = feed(&cache, super::Start::Since(1), super::OnGap::End);
    // The first revision waits for the replay to read etcd; the replay
    // then holds everything up to the window.
    assert_eq!(summary(&feed.next().await.unwrap()), ("batch", applied[0], 1));
    let mut due = Vec::new();
    while let Some(event) = feed.ready() {
        due.push(summary(&event));
    }
    let before_window: Vec<_> = applied[1..7].iter().map(|&r| ("batch", r, 1)).collect();
    assert_eq!(due, before_window, "the replay's revisions, without waiting");
    // The handover to the window, then the window's revisions, then synced.
    let mut rest = vec![summary(&feed.next().await.unwrap())];
    while let Some(event) = feed.ready() {
        rest.push(summary(&event));
    }
    let window: Vec<_> = applied[7..].iter().map(|&r| ("batch", r, 1)).collect();
    assert_eq!(rest, window);
    assert_eq!(summary(&feed.next().await.unwrap()), ("synced", applied[9], 0));
}
