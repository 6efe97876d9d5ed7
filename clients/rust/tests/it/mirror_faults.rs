//! The mirror stays equal to etcd, key by key, across the three faults a
//! long-lived client meets: etcd restarting under the gateway, history
//! compacted while the client was cut off (a reset), and the gateway
//! itself restarting.

use std::time::Duration;

use etcd_cache_gateway_client::{
    Backoff, CacheStatus, Client, Error, Event, GetOptions, Mirror, MirrorChanges, MirrorEvent,
    MirrorOptions, ResetReason, Revision, Selection, WatchEvent, WatchOptions,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::harness::{NS, Setup, WAIT, assert_mirror_equals_etcd, config, delete, put};
use crate::mirror::next_change;
use crate::support::{Etcd, Gateway, Proxy, wait_until};

/// Writes a mix of puts and deletes under `prefix`: `count` revisions
/// (every delete is of a key the same round put).
async fn churn(etcd: &mut etcd_client::Client, prefix: &str, round: &str, count: usize) -> Vec<Revision> {
    let mut revisions = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}k{}", i % 4);
        let revision =
            if i % 5 == 4 { delete(etcd, &key).await } else { put(etcd, &key, format!("{round}-{i}")).await };
        revisions.push(revision);
    }
    revisions
}

/// The revisions of the `Changed` notifications until `last`; any other
/// notification fails the test (no reset was needed).
async fn changed_until(changes: &mut MirrorChanges, last: Revision) -> Vec<Revision> {
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        match next_change(changes).await {
            MirrorEvent::Changed { revision, .. } => seen.push(revision),
            other => panic!("only changes were needed, got {other:?}"),
        }
    }
    seen
}

/// A mirror of `prefix` that reached `revision` (the seed's last write).
async fn ready_mirror(client: &Client, prefix: &str, revision: Revision) -> Mirror {
    let mirror = client.mirror(
        NS,
        Selection::prefix(prefix.to_owned()),
        MirrorOptions::new().progress_interval(Duration::from_secs(1)),
    );
    tokio::time::timeout(WAIT, mirror.wait_for_revision(revision))
        .await
        .expect("ready in time")
        .expect("ready");
    mirror
}

#[tokio::test]
async fn a_mirror_stays_equal_to_etcd_across_an_etcd_restart() {
    let mut s = Setup::start().await;
    let seeded = churn(&mut s.etcd_client, "e/", "seed", 8).await;
    let mirror = ready_mirror(&s.client, "e/", seeded[7]).await;
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "e/").await;
    let (_, mut changes) = mirror.subscribe();

    let mut written = churn(&mut s.etcd_client, "e/", "before", 6).await;
    s.client.get_with(NS, "e/k1", &GetOptions::new().min_revision(*written.last().unwrap())).await.unwrap();
    s.etcd.kill();
    // While etcd is down: cached reads go on (stale), a linearizable one
    // is refused as retryable with the gateway's Retry-After.
    wait_until("the gateway sees etcd down", WAIT, || {
        let client = s.client.clone();
        async move { client.namespace(NS).await.is_ok_and(|ns| ns.status == CacheStatus::Stale) }
    })
    .await;
    let cached = s.client.get(NS, "e/k1").await.unwrap();
    assert_eq!(cached.cache, CacheStatus::Stale);
    match s.client.get_with(NS, "e/k1", &GetOptions::new().consistent()).await.unwrap_err() {
        error @ Error::EtcdUnavailable { .. } => {
            assert_eq!((error.retry_after(), error.is_retryable()), (Some(Duration::from_secs(2)), true));
        }
        other => panic!("{other:?}"),
    }
    s.etcd.start_prepared().await;
    s.etcd_client = s.etcd.client().await;
    written.extend(churn(&mut s.etcd_client, "e/", "after", 6).await);
    let last = *written.last().unwrap();

    assert!(tokio::time::timeout(WAIT, mirror.wait_for_revision(last)).await.unwrap().unwrap() >= last);
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "e/").await;
    assert_eq!(changed_until(&mut changes, last).await, written, "every revision once, in order, no reset");
}

#[tokio::test]
async fn a_mirror_cut_off_while_etcd_compacts_is_replaced_by_etcds_state() {
    let mut s = Setup::start_with(|config| config.cache.history_revisions = 5).await;
    let seeded = churn(&mut s.etcd_client, "c/", "seed", 8).await;
    let proxy = Proxy::start(&s.gateway.base_url).await;
    let via_proxy = Client::new(proxy.endpoint()).unwrap();
    let options = MirrorOptions::new()
        .progress_interval(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(30))
        .backoff(Backoff::new(Duration::from_millis(50), Duration::from_secs(2)));
    let mirror = via_proxy.mirror(NS, Selection::prefix("c/"), options);
    tokio::time::timeout(WAIT, mirror.wait_for_revision(seeded[7])).await.unwrap().unwrap();
    let (_, mut changes) = mirror.subscribe();
    let before = mirror.revision();

    // The mirror hears nothing while more revisions than the gateway's
    // window pass and etcd compacts them all.
    proxy.stall();
    let written = churn(&mut s.etcd_client, "c/", "unseen", 20).await;
    s.put("elsewhere", "x").await;
    let last = s.put("c/new", "n").await;
    s.client.get_with(NS, "c/new", &GetOptions::new().min_revision(last)).await.unwrap();
    s.etcd.compact(last).await;
    proxy.cut();
    // Restored only once the mirror saw the cut: a proxy restored at once
    // could still hand over the bytes it held.
    wait_until("the mirror notices the cut", WAIT, || {
        let connected = mirror.is_connected();
        async move { !connected }
    })
    .await;
    proxy.restore();

    assert!(tokio::time::timeout(WAIT, mirror.wait_for_revision(last)).await.unwrap().unwrap() >= last);
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "c/").await;
    assert!(written[0] > before);
    // Anything still in flight before the stall, then the reset's new state.
    loop {
        match next_change(&mut changes).await {
            MirrorEvent::Changed { revision, .. } => {
                assert!(revision <= before, "no change after the cut-off: {revision} > {before}")
            }
            MirrorEvent::Replaced { revision, reason, snapshot } => {
                assert_eq!(snapshot.revision(), revision);
                assert_eq!((revision, reason), (last, Some(ResetReason::Compacted)));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(mirror.get("c/new").and_then(|kv| kv.value_str().map(str::to_owned)).as_deref(), Some("n"));
}

#[tokio::test]
async fn a_mirror_and_a_watch_resume_across_a_gateway_restart_without_loss() {
    let etcd = Etcd::start().await;
    let mut etcd_client = etcd.client().await;
    let first = Gateway::start_ready(config(&etcd)).await;
    let client = Client::new(first.base_url.clone()).unwrap();
    let seeded = churn(&mut etcd_client, "r/", "seed", 8).await;
    let mirror = ready_mirror(&client, "r/", seeded[7]).await;
    let (_, mut changes) = mirror.subscribe();
    let since = mirror.revision();
    // The watch is driven all along by its own task, as an application would.
    let mut watch = client.watch(NS, Selection::prefix("r/"), WatchOptions::new().since(since).prev_kv());
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            if events_tx.send(item).is_err() {
                return;
            }
        }
    });

    let mut written = churn(&mut etcd_client, "r/", "before", 5).await;
    let addr = first.addr;
    first.shutdown().await;
    written.extend(churn(&mut etcd_client, "r/", "down", 5).await);
    let _second = Gateway::start_ready_on(config(&etcd), addr).await;
    written.extend(churn(&mut etcd_client, "r/", "after", 5).await);
    let last = *written.last().unwrap();

    assert!(tokio::time::timeout(WAIT, mirror.wait_for_revision(last)).await.unwrap().unwrap() >= last);
    assert_mirror_equals_etcd(&mirror, &mut etcd_client, "r/").await;
    assert_eq!(changed_until(&mut changes, last).await, written, "every revision once, in order, no reset");

    let (mut revisions, mut shutdown_seen) = (Vec::new(), false);
    while revisions.last() != Some(&last) {
        let item = tokio::time::timeout(WAIT, events.recv()).await.expect("in time").expect("the watch runs");
        match item.expect("no terminal error") {
            WatchEvent::Change { revision, events } => {
                for event in &events {
                    if let Event::Delete { prev_kv, .. } = event {
                        assert!(prev_kv.is_some(), "prev_kv=true: a delete carries the value it removed");
                    }
                }
                revisions.push(revision);
            }
            WatchEvent::Reconnecting { error: Error::Shutdown(_), .. } => shutdown_seen = true,
            WatchEvent::Reconnecting { .. } | WatchEvent::Synced { .. } | WatchEvent::Progress { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(revisions, written, "the watch too: every revision once, in order");
    assert!(shutdown_seen, "the gateway's shutdown event made the watch reconnect");
    reader.abort();
}

#[tokio::test]
async fn a_mirror_whose_position_etcd_no_longer_has_starts_over_from_the_new_state() {
    let old_etcd = Etcd::start().await;
    let mut old = old_etcd.client().await;
    let first = Gateway::start_ready(config(&old_etcd)).await;
    let client = Client::new(first.base_url.clone()).unwrap();
    let seeded = churn(&mut old, "f/", "old", 20).await;
    let mirror = ready_mirror(&client, "f/", seeded[19]).await;
    let (_, mut changes) = mirror.subscribe();

    // The gateway comes back in front of another etcd (think: restored
    // from an older backup) whose history ends before the mirror's position.
    let addr = first.addr;
    first.shutdown().await;
    let new_etcd = Etcd::start().await;
    let mut new = new_etcd.client().await;
    let written = churn(&mut new, "f/", "new", 3).await;
    let _second = Gateway::start_ready_on(config(&new_etcd), addr).await;
    match next_change(&mut changes).await {
        MirrorEvent::Replaced { revision, reason, snapshot } => {
            assert_eq!((revision, reason), (written[2], Some(ResetReason::Other("future_revision".into()))));
            assert_eq!(snapshot.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mirror.revision(), written[2]);
    assert_mirror_equals_etcd(&mirror, &mut new, "f/").await;
    assert!(mirror.error().is_none());
}
