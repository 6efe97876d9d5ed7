//! Lossless resume beyond the window: after a gateway restart (or on
//! another replica, started later) every client's `Last-Event-ID` is older
//! than the history the gateway holds; the gateway catches each one up from
//! etcd instead of resetting it, as long as etcd still has the revisions.

use std::time::Duration;

use crate::support::etcd::put;
use crate::support::http::get;
use crate::support::metrics::{scrape, value};
use crate::support::sse::SseClient;
use crate::support::{Etcd, Gateway};

const SUBSCRIBERS: usize = 100;

/// Reads `sse` until it received `count` change events, returning their ids;
/// any `reset` or `error` fails the test.
async fn changes(sse: &mut SseClient, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let e = sse.next().await;
        match e.event.as_str() {
            "change" => ids.push(e.id),
            "synced" | "progress" => {}
            other => panic!("unexpected {other}: {}", e.data),
        }
    }
    ids
}

fn config(etcd: &Etcd) -> etcd_cache_gateway::config::Config {
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    // A window smaller than the downtime's writes: every resume is behind it.
    config.cache.history_revisions = 5;
    config.watch.max_catch_ups = 8;
    config
}

#[tokio::test]
async fn a_hundred_streams_resume_across_a_gateway_restart_without_loss_or_reset() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let first = Gateway::start_ready(config(&etcd)).await;
    let url = first.url("/v1/namespaces/app/watch");
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let mut sse = SseClient::open(&url).await;
        assert_eq!(sse.next().await.event, "synced");
        streams.push(sse);
    }
    let mut before = Vec::new();
    for i in 0..10 {
        before.push(put(&mut client, format!("app/k{i}"), "before").await.to_string());
    }
    let mut last_ids = Vec::with_capacity(SUBSCRIBERS);
    for sse in &mut streams {
        assert_eq!(changes(sse, before.len()).await, before);
        last_ids.push(before.last().unwrap().clone());
    }
    drop(streams);
    first.shutdown().await;

    // While no gateway runs: more writes than the new gateway's window keeps.
    let mut downtime = Vec::new();
    for i in 0..30 {
        downtime.push(put(&mut client, format!("app/k{}", i % 7), format!("down {i}")).await.to_string());
    }
    let second = Gateway::start_ready(config(&etcd)).await;
    let url = second.url("/v1/namespaces/app/watch");
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for last_id in &last_ids {
        streams.push(SseClient::open_with(&url, &[("last-event-id", last_id)]).await);
    }
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(put(&mut client, format!("app/after{i}"), "after").await.to_string());
    }
    let expected: Vec<String> = downtime.iter().chain(&after).cloned().collect();
    for sse in &mut streams {
        assert_eq!(changes(sse, expected.len()).await, expected, "every change of the downtime, then live");
    }
    let samples = scrape(&second).await;
    let outcome = |o| value(&samples, "etcd_cache_gateway_catch_ups_total", &[("outcome", o)]);
    assert_eq!(
        (outcome("caught_up"), outcome("compacted"), outcome("failed")),
        (SUBSCRIBERS as f64, 0.0, 0.0)
    );
    assert_eq!(value(&samples, "etcd_cache_gateway_sse_resets_total", &[]), 0.0);
    // The streams share one replay of etcd's history (a complete replay
    // stays available for streams resuming within catch_up::LINGER); one
    // each would be 100.
    let replays = value(&samples, "etcd_cache_gateway_catch_up_replays_total", &[]);
    assert_eq!(replays, 1.0, "replays for {SUBSCRIBERS} streams");
}

#[tokio::test]
async fn a_stream_moves_to_a_replica_started_later_without_loss() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let one = Gateway::start_ready(config(&etcd)).await;
    let mut sse = SseClient::open(&one.url("/v1/namespaces/app/watch")).await;
    assert_eq!(sse.next().await.event, "synced");
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(put(&mut client, format!("app/k{i}"), "v").await.to_string());
    }
    let received = changes(&mut sse, 5).await;
    drop(sse);
    for i in 5..25 {
        written.push(put(&mut client, format!("app/k{}", i % 3), "v").await.to_string());
    }
    // The other replica starts after all that: its window begins long after
    // the client's position.
    let two = Gateway::start_ready(config(&etcd)).await;
    let last_id = received.last().unwrap().clone();
    let mut sse =
        SseClient::open_with(&two.url("/v1/namespaces/app/watch"), &[("last-event-id", &last_id)]).await;
    let rest =
        tokio::time::timeout(Duration::from_secs(30), changes(&mut sse, written.len() - 5)).await.unwrap();
    let all: Vec<String> = received.into_iter().chain(rest).collect();
    assert_eq!(all, written, "nothing missed, nothing twice");
}

/// The catch-up half of the chaos suite's finding (RELIABILITY.md): etcd
/// (before etcd #18274) drops a delete's tombstone when it compacts at
/// exactly that revision, yet accepts a watch starting there. A stream
/// resuming just below it must get `reset`, not the later revisions
/// without the delete.
#[tokio::test]
async fn a_catch_up_never_skips_a_delete_compacted_at_its_own_revision() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let gw = Gateway::start_ready(config(&etcd)).await;
    put(&mut client, "app/gone", "v").await;
    let since = put(&mut client, "app/x", "v").await;
    let deleted = client.delete("app/gone", None).await.unwrap().header().unwrap().revision();
    assert_eq!(deleted, since + 1);
    let mut last = deleted;
    // More revisions than the window keeps: the resume needs etcd.
    for i in 0..10 {
        last = put(&mut client, format!("app/k{i}"), "v").await;
    }
    etcd.compact(deleted).await;
    let ready = get(&gw.url(&format!("/v1/namespaces/app/kv/x?min_revision={last}"))).await;
    assert_eq!(ready.status, 200, "{}", String::from_utf8_lossy(&ready.body));

    let url = gw.url("/v1/namespaces/app/watch");
    let mut sse = SseClient::open_with(&url, &[("last-event-id", &since.to_string())]).await;
    let first = sse.next_not_progress().await;
    assert_eq!((first.event.as_str(), first.data["code"].as_str()), ("reset", Some("compacted")));
}
