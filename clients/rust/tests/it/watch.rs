//! `Client::watch`: the typed events of a snapshot, changes and progress;
//! gaps reset or end the watch as asked; a silent connection is replaced
//! and the watch resumes where it stopped.

use std::time::Duration;

use etcd_cache_gateway_client::{
    Backoff, Client, Error, Event, OnGap, ResetReason, Selection, Watch, WatchEvent, WatchOptions,
};
use etcd_client::{Txn, TxnOp};
use futures_util::StreamExt;

use crate::harness::{NS, PREFIX, Row, Setup, WAIT, etcd_state, row};
use crate::support::Proxy;

/// The next item of `watch`, within [`WAIT`].
pub async fn next_item(watch: &mut Watch) -> Option<Result<WatchEvent, Error>> {
    tokio::time::timeout(WAIT, watch.next()).await.expect("an event within the wait")
}

/// The next event of `watch` that is not `Progress`; panics on an error or the end.
pub async fn next_event(watch: &mut Watch) -> WatchEvent {
    loop {
        match next_item(watch).await {
            Some(Ok(WatchEvent::Progress { .. })) => {}
            Some(Ok(event)) => return event,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// An event in comparable form: kind, key, value row, previous row.
pub fn describe(event: &Event) -> (&'static str, Vec<u8>, Option<Row>, Option<Row>) {
    match event {
        Event::Put { kv, prev_kv } => ("put", kv.key.to_vec(), Some(row(kv)), prev_kv.as_ref().map(row)),
        Event::Delete { key, mod_revision, prev_kv } => {
            let tombstone = (key.to_vec(), Vec::new(), 0, *mod_revision, 0, 0);
            ("delete", key.to_vec(), Some(tombstone), prev_kv.as_ref().map(row))
        }
    }
}

#[tokio::test]
async fn a_watch_delivers_a_snapshot_then_each_revision_once_then_progress() {
    let mut s = Setup::start().await;
    let created_a = s.put("w/a", "1").await;
    let created_b = s.put("w/b", "2").await;
    let head = s.put("elsewhere", "x").await;
    s.client
        .get_with(NS, "elsewhere", &etcd_cache_gateway_client::GetOptions::new().min_revision(head))
        .await
        .unwrap();
    let options = WatchOptions::new().snapshot().prev_kv().progress_interval(Duration::from_secs(1));
    let mut watch = s.client.watch(NS, Selection::prefix("w/"), options);
    assert_eq!(watch.last_event_id(), None);

    let WatchEvent::Snapshot { revision, kvs } = next_event(&mut watch).await else {
        panic!("a snapshot first")
    };
    assert_eq!(revision, head);
    let expected = etcd_state(&mut s.etcd_client, "w/", head).await;
    assert_eq!(kvs.iter().map(row).collect::<Vec<_>>(), expected.into_values().collect::<Vec<_>>());
    assert!(matches!(next_event(&mut watch).await, WatchEvent::Synced { revision } if revision == head));
    assert_eq!(watch.last_event_id(), Some(head));

    // One transaction: one change event with both of its events, in order.
    let txn = Txn::new().and_then([
        TxnOp::put(format!("{PREFIX}w/a"), "10", None),
        TxnOp::delete(format!("{PREFIX}w/b"), None),
        TxnOp::put(format!("{PREFIX}elsewhere"), "y", None),
    ]);
    let rev = s.etcd_client.txn(txn).await.unwrap().header().unwrap().revision();
    let WatchEvent::Change { revision, events } = next_event(&mut watch).await else { panic!("a change") };
    assert_eq!(revision, rev);
    let described: Vec<_> = events.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            (
                "put",
                b"w/a".to_vec(),
                Some((b"w/a".to_vec(), b"10".to_vec(), created_a, rev, 2, 0)),
                Some((b"w/a".to_vec(), b"1".to_vec(), created_a, created_a, 1, 0)),
            ),
            (
                "delete",
                b"w/b".to_vec(),
                Some((b"w/b".to_vec(), Vec::new(), 0, rev, 0, 0)),
                Some((b"w/b".to_vec(), b"2".to_vec(), created_b, created_b, 1, 0)),
            ),
        ]
    );
    assert_eq!(watch.last_event_id(), Some(rev));
    // A write outside the selection moves the watch only by progress.
    let outside = s.put("elsewhere", "z").await;
    loop {
        match next_item(&mut watch).await {
            Some(Ok(WatchEvent::Progress { revision })) if revision >= outside => break,
            Some(Ok(WatchEvent::Progress { .. })) => {}
            other => panic!("only progress on a quiet selection, got {other:?}"),
        }
    }
    assert!(watch.last_event_id().unwrap() >= outside);

    // A range with JSON values.
    let json_at = s.put("w/json", r#"{"on":true}"#).await;
    let range = WatchOptions::new().since(json_at - 1).encoding(etcd_cache_gateway_client::Encoding::Json);
    let mut in_range = s.client.watch(NS, Selection::range("w/j", "w/k"), range);
    // The put may reach the gateway's cache after the watch opens: then the
    // (empty) replay ends with `synced` at the resume point and the change
    // follows live; otherwise the change is replayed first.
    let mut first = next_event(&mut in_range).await;
    if let WatchEvent::Synced { revision } = first {
        assert_eq!(revision, json_at - 1, "synced before the change is the resume point");
        first = next_event(&mut in_range).await;
    }
    let WatchEvent::Change { revision, events } = first else {
        panic!("the change at {json_at}, got {first:?}")
    };
    let Event::Put { kv, .. } = &events[0] else { panic!("a put") };
    assert_eq!(
        (revision, kv.value.clone()),
        (json_at, Some(etcd_cache_gateway_client::Value::Json(serde_json::json!({"on": true}))))
    );

    // One key; a missing namespace ends its watch with its error.
    let mut one = s.client.watch(NS, Selection::key("w/a"), WatchOptions::new().since(created_a - 1));
    let WatchEvent::Change { revision, events } = next_event(&mut one).await else { panic!("replayed") };
    assert_eq!((revision, events.len(), events[0].key().as_ref()), (created_a, 1, &b"w/a"[..]));
    let mut missing = s.client.watch("nope", Selection::all(), WatchOptions::new());
    assert!(matches!(next_item(&mut missing).await, Some(Err(Error::NamespaceNotFound(_)))));
    assert!(next_item(&mut missing).await.is_none());
}

#[tokio::test]
async fn a_watch_behind_compacted_history_resets_or_ends_as_asked() {
    let mut s = Setup::start_with(|config| config.cache.history_revisions = 3).await;
    let old = s.put("g/k", "0").await;
    let mut last = old;
    for i in 1..=10 {
        last = s.put(&format!("g/k{}", i % 4), i.to_string()).await;
    }
    s.etcd.compact(last).await;
    s.client
        .get_with(NS, "g/k", &etcd_cache_gateway_client::GetOptions::new().min_revision(last))
        .await
        .unwrap();

    let strict = WatchOptions::new().since(old).on_gap(OnGap::Error);
    let mut watch = s.client.watch(NS, Selection::prefix("g/"), strict);
    match next_item(&mut watch).await {
        Some(Err(Error::Compacted { compact_revision, problem })) => {
            assert_eq!(compact_revision, last, "where etcd's history starts now");
            assert_eq!(problem.status, 410);
        }
        other => panic!("expected compacted, got {other:?}"),
    }
    assert!(next_item(&mut watch).await.is_none(), "the gap ends the watch");

    let mut watch = s.client.watch(NS, Selection::prefix("g/"), WatchOptions::new().since(old));
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Reset { reason: ResetReason::Compacted, revision } if revision == last
    ));
    let WatchEvent::Snapshot { revision, kvs } = next_event(&mut watch).await else { panic!("a snapshot") };
    assert_eq!(revision, last);
    let expected = etcd_state(&mut s.etcd_client, "g/", last).await;
    assert_eq!(kvs.iter().map(row).collect::<Vec<_>>(), expected.into_values().collect::<Vec<_>>());
    assert!(matches!(next_event(&mut watch).await, WatchEvent::Synced { revision } if revision == last));
}

#[tokio::test]
async fn a_silent_stream_is_replaced_and_resumed_without_loss() {
    let mut s = Setup::start().await;
    let proxy = Proxy::start(&s.gateway.base_url).await;
    let via_proxy = Client::new(proxy.endpoint()).unwrap();
    let options = WatchOptions::new()
        .idle_timeout(Duration::from_secs(1))
        .backoff(Backoff::new(Duration::from_millis(10), Duration::from_millis(100)));
    let mut watch = via_proxy.watch(NS, Selection::prefix("s/"), options);
    let WatchEvent::Synced { revision: start } = next_event(&mut watch).await else { panic!("synced first") };
    let mut written = vec![s.put("s/1", "a").await];
    assert!(
        matches!(next_event(&mut watch).await, WatchEvent::Change { revision, .. } if revision == written[0])
    );

    proxy.stall();
    written.push(s.put("s/2", "b").await);
    written.push(s.put("s/3", "c").await);
    let (error, delay) = match next_event(&mut watch).await {
        WatchEvent::Reconnecting { error, delay } => (error, delay),
        other => panic!("expected a reconnect, got {other:?}"),
    };
    assert!(matches!(error, Error::Stalled(idle) if idle == Duration::from_secs(1)), "{error:?}");
    // The gateway's `retry:` (1 to 5 s, jittered per connection), not the
    // 10 ms minimum of the options.
    assert!((Duration::from_secs(1)..Duration::from_secs(5)).contains(&delay), "{delay:?}");
    proxy.restore();
    written.push(s.put("s/4", "d").await);

    let mut changes = Vec::new();
    while changes.last() != written.last() {
        match next_event(&mut watch).await {
            WatchEvent::Change { revision, .. } => changes.push(revision),
            WatchEvent::Synced { .. } | WatchEvent::Reconnecting { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(changes, written[1..], "every revision after the last one seen, once, in order");
    assert!(start < written[0]);
    assert_eq!(watch.last_event_id(), written.last().copied());
}
