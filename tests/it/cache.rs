//! The watch cache against a real etcd: bootstrap, atomic batches, past
//! revisions, restarts, freezes, compactions, progress, consistent reads,
//! both eviction policies, cluster failover, and a differential test.

use std::time::Duration;

use etcd_cache_gateway::cache::{At, EventKind, KeyRange, ResetReason, WatchRestart};
use etcd_cache_gateway::config::{ByteSize, CachePolicy, HumanDuration};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use crate::support::cache::{CacheHarness, Recorder, Seen, assert_equal_at, config_for};
use crate::support::etcd::put;
use crate::support::wait::wait_for;
use crate::support::{Etcd, EtcdCluster, Proxy, wait_until};

const CATCH_UP: Duration = Duration::from_secs(20);

#[tokio::test]
async fn bootstrap_of_20000_keys_in_pages_equals_etcd() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    for chunk in 0..200 {
        let ops: Vec<TxnOp> = (0..100)
            .map(|i| TxnOp::put(format!("big/{:05}", chunk * 100 + i), format!("value-{chunk}-{i}"), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.expect("txn");
    }
    put(&mut client, "elsewhere", "not in the namespace").await;
    let mut config = config_for(&[etcd.endpoint()], "big/");
    // A first page of 1,000 keys, then ~1,400 keys (64 KiB) per page.
    config.etcd.bootstrap_page_size = 1000;
    config.etcd.bootstrap_page_bytes = ByteSize::kib(64);
    let h = CacheHarness::start(config).await;
    let head = h.cache.head();
    assert_eq!(h.cache.report().keys, 20_000);
    assert_equal_at(&h.cache, &mut client, "big/", head).await;
}

#[tokio::test]
async fn multi_key_txn_is_one_atomic_batch() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "tx/c", "old").await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "tx/")).await;
    let recorder = Recorder::start(&h.cache, h.cache.head());
    let txn = Txn::new().and_then([
        TxnOp::put("tx/a", "1", None),
        TxnOp::put("tx/b", "2", None),
        TxnOp::delete("tx/c", None),
    ]);
    let revision = client.txn(txn).await.unwrap().header().unwrap().revision();
    h.wait_head(revision, CATCH_UP).await;
    wait_until("the batch is delivered", CATCH_UP, || async { !recorder.revisions().is_empty() }).await;
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![Seen::Batch(
            revision,
            vec![
                (EventKind::Put, b"a".to_vec()),
                (EventKind::Put, b"b".to_vec()),
                (EventKind::Delete, b"c".to_vec())
            ]
        )]
    );
    let before = h.cache.snapshot(At::Exact(revision - 1)).await.unwrap();
    let after = h.cache.snapshot(At::Exact(revision)).await.unwrap();
    let keys = |page: etcd_cache_gateway::cache::Page| {
        page.kvs.into_iter().map(|kv| kv.key.to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(keys(before.range(&KeyRange::all(), 0, true).await.unwrap()), vec![b"c".to_vec()]);
    assert_eq!(
        keys(after.range(&KeyRange::all(), 0, true).await.unwrap()),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
}

#[tokio::test]
async fn reads_at_past_revisions_equal_etcd() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "past/")).await;
    let first = h.cache.head();
    let mut last = first;
    for i in 0..15 {
        last = if i % 4 == 3 {
            client.delete(format!("past/k{}", i - 1), None).await.unwrap().header().unwrap().revision()
        } else {
            put(&mut client, &format!("past/k{i}"), &format!("v{i}")).await
        };
    }
    h.wait_head(last, CATCH_UP).await;
    for revision in first..=last {
        assert_equal_at(&h.cache, &mut client, "past/", revision).await;
    }
}

#[tokio::test]
async fn resume_after_etcd_restart_loses_nothing() {
    let mut etcd = Etcd::start().await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "r/")).await;
    let recorder = Recorder::start(&h.cache, h.cache.head());
    let mut written = Vec::new();
    let mut client = etcd.client().await;
    for i in 0..20 {
        written.push(put(&mut client, &format!("r/k{}", i % 7), &i.to_string()).await);
    }
    etcd.kill();
    wait_until("the cache notices etcd is gone", CATCH_UP, || async { !h.cache.status().is_connected() })
        .await;
    etcd.restart().await;
    let mut client = etcd.client().await;
    for i in 20..40 {
        written.push(put(&mut client, &format!("r/k{}", i % 7), &i.to_string()).await);
    }
    h.wait_head(*written.last().unwrap(), CATCH_UP).await;
    wait_until("every batch is delivered", CATCH_UP, || async {
        recorder.revisions().len() >= written.len()
    })
    .await;
    assert_eq!(recorder.revisions(), written, "every revision, in order, once");
    assert!(recorder.resets().is_empty());
    assert!(h.cache.status().restarts(WatchRestart::Error) >= 1, "the restart was counted as an error");
    assert_equal_at(&h.cache, &mut client, "r/", h.cache.head()).await;
}

#[tokio::test]
async fn frozen_etcd_is_detected_and_the_watch_resumes() {
    let etcd = Etcd::start().await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "f/")).await;
    let recorder = Recorder::start(&h.cache, h.cache.head());
    let mut client = etcd.client().await;
    let first = put(&mut client, "f/a", "1").await;
    h.wait_head(first, CATCH_UP).await;
    etcd.pause();
    // keep-alive 1s + 1s in the test config: the frozen stream must fail.
    wait_until("the frozen etcd is detected", CATCH_UP, || async { !h.cache.status().is_connected() }).await;
    etcd.resume();
    let second = put(&mut client, "f/b", "2").await;
    h.wait_head(second, CATCH_UP).await;
    wait_until("the cache is fresh again", CATCH_UP, || async { h.cache.status().is_connected() }).await;
    wait_until("both batches delivered", CATCH_UP, || async { recorder.revisions().len() == 2 }).await;
    assert_eq!(recorder.revisions(), vec![first, second]);
    assert_equal_at(&h.cache, &mut client, "f/", second).await;
}

#[tokio::test]
async fn compaction_while_disconnected_relists_and_resets_subscribers() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let h = CacheHarness::start(config_for(&[proxy.endpoint()], "c/")).await;
    let recorder = Recorder::start(&h.cache, h.cache.head());
    let mut client = etcd.client().await;
    for i in 0..5 {
        put(&mut client, &format!("c/k{i}"), "before").await;
    }
    let seen_before = etcd.revision().await;
    h.wait_head(seen_before, CATCH_UP).await;
    proxy.cut();
    wait_until("the cache notices the cut", CATCH_UP, || async { !h.cache.status().is_connected() }).await;
    for i in 0..5 {
        put(&mut client, &format!("c/k{i}"), "while away").await;
    }
    client.delete("c/k0", None).await.unwrap();
    let head = etcd.revision().await;
    etcd.compact(head).await;
    proxy.restore();
    h.wait_head(head, CATCH_UP).await;
    wait_until("the subscriber is reset", CATCH_UP, || async { !recorder.resets().is_empty() }).await;
    assert_eq!(recorder.resets(), vec![ResetReason::Compacted]);
    assert_eq!(recorder.revisions().len(), 5, "the 5 batches before the gap, then a reset");
    assert_eq!(h.cache.status().restarts(WatchRestart::Compacted), 1);
    assert_equal_at(&h.cache, &mut client, "c/", head).await;
    // Reads before the re-list are gone from memory and compacted in etcd.
    let old = h.cache.snapshot(At::Exact(seen_before)).await.unwrap();
    assert!(old.is_from_etcd());
    assert!(old.get(&bytes::Bytes::from_static(b"k1")).await.is_err());
}

#[tokio::test]
async fn quiet_namespace_head_advances_by_progress() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "quiet/k", "v").await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "quiet/")).await;
    let mut last = 0;
    for i in 0..5 {
        last = put(&mut client, &format!("busy/{i}"), "x").await;
    }
    // etcd sends progress every 1s (test setting), up to twice that apart.
    h.wait_head(last, CATCH_UP).await;
    assert_eq!(h.cache.report().keys, 1);
}

#[tokio::test]
async fn consistent_read_sees_a_write_made_just_before() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "lin/")).await;
    for i in 0..20 {
        let value = format!("v{i}");
        let revision = put(&mut client, "lin/k", &value).await;
        let snapshot = h.cache.snapshot(At::Consistent).await.expect("consistent read");
        assert!(snapshot.revision() >= revision);
        let kv = snapshot.get(&bytes::Bytes::from_static(b"k")).await.unwrap().expect("key exists");
        assert_eq!(kv.value, value.as_bytes());
    }
    // A quiet namespace: the write is elsewhere; the consistent read still completes from memory.
    let revision = put(&mut client, "other", "x").await;
    let snapshot = h.cache.snapshot(At::Consistent).await.expect("consistent read");
    assert!(snapshot.revision() >= revision);
}

/// Key `k` at head, read from the cache (through etcd when evicted).
async fn read_k(h: &CacheHarness) -> etcd_cache_gateway::cache::KeyValue {
    let snapshot = h.cache.snapshot(At::Head).await.unwrap();
    snapshot.get(&bytes::Bytes::from_static(b"k")).await.unwrap().unwrap()
}

#[tokio::test]
async fn ttl_policy_reloads_evicted_values_from_etcd() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut config = config_for(&[etcd.endpoint()], "ttl/");
    config.cache.policy = CachePolicy::Ttl;
    config.cache.ttl = Some(HumanDuration::secs(1));
    let h = CacheHarness::start(config).await;
    let revision = put(&mut client, "ttl/k", "the value").await;
    h.wait_head(revision, CATCH_UP).await;
    let values = h.namespaces.values().clone();
    wait_until("the idle value is dropped", CATCH_UP, || {
        let values = values.clone();
        async move {
            values.run_pending_tasks().await;
            values.entry_count() == 0
        }
    })
    .await;
    let stats = h.cache.value_stats();
    let loads_before = stats.read_throughs.load(std::sync::atomic::Ordering::Relaxed);
    let kv = read_k(&h).await;
    assert_eq!(kv.value, "the value");
    assert_eq!(kv.meta.mod_revision, revision);
    assert_eq!(
        stats.read_throughs.load(std::sync::atomic::Ordering::Relaxed),
        loads_before + 1,
        "read through etcd"
    );
    let again = read_k(&h).await;
    assert_eq!(again.value, "the value");
    assert_eq!(
        stats.read_throughs.load(std::sync::atomic::Ordering::Relaxed),
        loads_before + 1,
        "cached again"
    );
}

#[tokio::test]
async fn revision_policy_window_stays_at_history_revisions() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut config = config_for(&[etcd.endpoint()], "w/");
    config.cache.history_revisions = 10;
    let h = CacheHarness::start(config).await;
    let mut last = 0;
    for i in 0..30 {
        last = put(&mut client, &format!("w/k{}", i % 3), &i.to_string()).await;
    }
    h.wait_head(last, CATCH_UP).await;
    let report = h.cache.report();
    assert_eq!(report.oldest_revision, last - 9, "head − 10 < revision");
    assert!(!h.cache.snapshot(At::Exact(last - 9)).await.unwrap().is_from_etcd());
    assert!(h.cache.snapshot(At::Exact(last - 10)).await.unwrap().is_from_etcd());
    assert_equal_at(&h.cache, &mut client, "w/", last - 9).await;
}

#[tokio::test]
async fn killing_the_cluster_member_in_use_does_not_stop_the_cache() {
    let mut cluster = EtcdCluster::start().await;
    let h = CacheHarness::start(config_for(&cluster.endpoints(), "cl/")).await;
    let mut client = cluster.members[0].client().await;
    let first = put(&mut client, "cl/a", "1").await;
    h.wait_head(first, CATCH_UP).await;
    let in_use = h.client.current().0.to_owned();
    let victim = cluster.members.iter().position(|m| m.endpoint() == in_use).expect("member in use");
    cluster.members[victim].kill();
    let survivor = &cluster.members[(victim + 1) % 3];
    let mut client = survivor.client().await;
    let second = wait_for("a write to the surviving cluster", CATCH_UP, || {
        let mut client = client.clone();
        async move { client.put("cl/b", "2", None).await.ok().map(|r| r.header().unwrap().revision()) }
    })
    .await;
    h.wait_head(second, CATCH_UP).await;
    assert_ne!(h.client.current().0, in_use, "failed over to another member");
    assert_equal_at(&h.cache, &mut client, "cl/", second).await;
}

#[tokio::test]
async fn differential_random_operations_equal_etcd_at_head_and_past_revisions() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "d/")).await;
    let start = h.cache.head();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let key = |rng: &mut fastrand::Rng| format!("d/k{:02}", rng.u8(..40));
    let lease = client.lease_grant(2, None).await.unwrap().id();
    client.put("d/leased", "expires", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    for _ in 0..1000 {
        match rng.u8(..10) {
            0..=5 => {
                let k = key(&mut rng);
                put(&mut client, &k, &format!("{}", rng.u32(..))).await;
            }
            6 | 7 => {
                let k = key(&mut rng);
                client.delete(k, None).await.unwrap();
            }
            8 => {
                let ops: Vec<TxnOp> =
                    (0..rng.usize(2..6)).map(|_| TxnOp::put(key(&mut rng), "txn", None)).collect();
                let mut seen = std::collections::HashSet::new();
                let ops: Vec<TxnOp> = ops.into_iter().filter(|op| seen.insert(format!("{op:?}"))).collect();
                let _ = client.txn(Txn::new().and_then(ops)).await;
            }
            _ => {
                let k = key(&mut rng);
                let txn = Txn::new()
                    .when([Compare::version(k.clone(), CompareOp::Greater, 0)])
                    .and_then([TxnOp::delete(k.clone(), None), TxnOp::put(format!("{k}-moved"), "m", None)])
                    .or_else([TxnOp::put(k, "created", None)]);
                client.txn(txn).await.unwrap();
            }
        }
    }
    wait_until("the lease expires", CATCH_UP, || {
        let mut client = client.clone();
        async move { client.get("d/leased", None).await.is_ok_and(|r| r.kvs().is_empty()) }
    })
    .await;
    let head = etcd.revision().await;
    h.wait_head(head, CATCH_UP).await;
    assert_equal_at(&h.cache, &mut client, "d/", head).await;
    for _ in 0..20 {
        let revision = rng.i64(start..=head);
        assert_equal_at(&h.cache, &mut client, "d/", revision).await;
    }
}

#[tokio::test]
async fn bootstrap_pages_larger_than_4mb_load() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let big = "x".repeat(1024 * 1024);
    for i in 0..8 {
        put(&mut client, &format!("large/{i}"), &big).await;
    }
    // One page of 8 MiB: beyond etcd-client's default 4 MB decoding limit.
    let h = CacheHarness::start(config_for(&[etcd.endpoint()], "large/")).await;
    assert_eq!(h.cache.report().keys, 8);
    assert_equal_at(&h.cache, &mut client, "large/", h.cache.head()).await;
    drop(h);

    // A first page (1,000 keys, here 8 MiB) beyond what the client decodes
    // is split until it fits, and the load completes.
    let mut config = config_for(&[etcd.endpoint()], "large/");
    config.etcd.max_message_bytes = ByteSize::mib(4);
    config.etcd.bootstrap_page_bytes = ByteSize::mib(4);
    let h = CacheHarness::start(config).await;
    assert_eq!(h.cache.report().keys, 8);
    assert_equal_at(&h.cache, &mut client, "large/", h.cache.head()).await;
}
