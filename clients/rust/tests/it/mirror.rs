//! `Mirror`: local reads, read-your-writes, and the change subscription.

use std::time::Duration;

use etcd_cache_gateway_client::{Error, MirrorChanges, MirrorEvent, MirrorOptions, Selection};
use etcd_client::{Txn, TxnOp};
use futures_util::StreamExt;

use crate::harness::{NS, PREFIX, Setup, WAIT, assert_mirror_equals_etcd, row};
use crate::watch::describe;

/// The next notification of `changes`, within [`WAIT`].
pub async fn next_change(changes: &mut MirrorChanges) -> MirrorEvent {
    tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("a notification in time")
        .expect("the mirror runs")
}

#[tokio::test]
async fn a_mirror_reads_locally_and_tells_subscribers_every_change() {
    let mut s = Setup::start().await;
    let created_a = s.put("m/a", "1").await;
    let created_b = s.put("m/b", "2").await;
    let head = s.put("outside", "x").await;
    s.client
        .get_with(NS, "outside", &etcd_cache_gateway_client::GetOptions::new().min_revision(head))
        .await
        .unwrap();
    let options = MirrorOptions::new().progress_interval(Duration::from_secs(1));
    let mirror = s.client.mirror(NS, Selection::prefix("m/"), options);
    let (before, mut changes) = mirror.subscribe();
    assert_eq!((before.revision(), before.len(), before.is_empty()), (0, 0, true));

    let ready = tokio::time::timeout(WAIT, mirror.wait_ready()).await.unwrap().unwrap();
    assert_eq!(ready, head);
    assert!(mirror.is_ready() && mirror.is_connected() && mirror.error().is_none());
    assert!(
        matches!(next_change(&mut changes).await, MirrorEvent::Replaced { revision, reason: None, .. } if revision == head)
    );
    assert_eq!((mirror.revision(), mirror.len(), mirror.is_empty()), (head, 2, false));
    assert_eq!(
        mirror.get("m/a").map(|kv| row(&kv)),
        Some((b"m/a".to_vec(), b"1".to_vec(), created_a, created_a, 1, 0))
    );
    assert_eq!(mirror.get("m/none"), None);
    assert_eq!(mirror.get("outside"), None, "only the selection");
    let keys: Vec<_> = mirror.iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["m/a", "m/b"]);
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "m/").await;

    // A transaction: one notification, `prev_kv` from the mirror's state.
    let txn = Txn::new().and_then([
        TxnOp::put(format!("{PREFIX}m/c"), "3", None),
        TxnOp::delete(format!("{PREFIX}m/b"), None),
    ]);
    let rev = s.etcd_client.txn(txn).await.unwrap().header().unwrap().revision();
    assert!(tokio::time::timeout(WAIT, mirror.wait_for_revision(rev)).await.unwrap().unwrap() >= rev);
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "m/").await;
    let MirrorEvent::Changed { revision, events } = next_change(&mut changes).await else {
        panic!("a change")
    };
    assert_eq!(revision, rev);
    let described: Vec<_> = events.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            ("put", b"m/c".to_vec(), Some((b"m/c".to_vec(), b"3".to_vec(), rev, rev, 1, 0)), None),
            (
                "delete",
                b"m/b".to_vec(),
                Some((b"m/b".to_vec(), Vec::new(), 0, rev, 0, 0)),
                Some((b"m/b".to_vec(), b"2".to_vec(), created_b, created_b, 1, 0)),
            ),
        ]
    );

    // Read-your-writes for a write outside the selection: reached by progress.
    let outside = s.put("outside", "y").await;
    let reached = tokio::time::timeout(WAIT, mirror.wait_for_revision(outside)).await.unwrap().unwrap();
    assert!(reached >= outside && mirror.revision() >= outside);
    let (now, _) = mirror.subscribe();
    assert_eq!(now.revision(), mirror.revision());
    assert_eq!(now.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), ["m/a", "m/c"]);
    assert_eq!(now.get("m/c").and_then(|kv| kv.value_str().map(str::to_owned)).as_deref(), Some("3"));

    drop(mirror);
    let end = tokio::time::timeout(WAIT, async {
        loop {
            if changes.next().await.is_none() {
                break;
            }
        }
    });
    end.await.expect("a dropped mirror ends its subscriptions");
}

#[tokio::test]
async fn a_slow_subscriber_learns_it_lagged_and_a_failed_mirror_says_why() {
    let mut s = Setup::start().await;
    let mirror = s.client.mirror(NS, Selection::all(), MirrorOptions::new().changes_capacity(1));
    tokio::time::timeout(WAIT, mirror.wait_ready()).await.unwrap().unwrap();
    let (_, mut changes) = mirror.subscribe();
    let mut last = 0;
    for i in 0..3 {
        last = s.put(&format!("k{i}"), "v").await;
    }
    tokio::time::timeout(WAIT, mirror.wait_for_revision(last)).await.unwrap().unwrap();
    assert!(matches!(next_change(&mut changes).await, MirrorEvent::Lagged { missed: 2 }));
    assert!(
        matches!(next_change(&mut changes).await, MirrorEvent::Changed { revision, .. } if revision == last)
    );
    assert_mirror_equals_etcd(&mirror, &mut s.etcd_client, "").await;

    let missing = s.client.mirror("nope", Selection::all(), MirrorOptions::new());
    let (_, mut failures) = missing.subscribe();
    let error = tokio::time::timeout(WAIT, missing.wait_ready()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::NamespaceNotFound(_)), "{error:?}");
    assert!(matches!(missing.error(), Some(Error::NamespaceNotFound(_))));
    assert!(matches!(next_change(&mut failures).await, MirrorEvent::Failed(Error::NamespaceNotFound(_))));
    assert!(matches!(missing.wait_for_revision(1).await, Err(Error::NamespaceNotFound(_))));
    assert!(!missing.is_ready() && !missing.is_connected());
}
