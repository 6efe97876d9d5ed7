//! No silent streams: an etcd watch whose connection stays open but
//! delivers nothing is found by the watchdog and re-created from its last
//! revision, and an SSE stream that has nothing to say still says where it
//! is, every `progress_interval`.

use std::time::Duration;

use etcd_cache_gateway::config::HumanDuration;
use serde_json::json;

use crate::support::etcd::put;
use crate::support::http::get;
use crate::support::metrics::{scrape, value};
use crate::support::sse::SseClient;
use crate::support::{Etcd, Gateway, Proxy, wait_until};

#[tokio::test]
async fn a_silent_watch_is_recreated_and_subscribers_lose_nothing() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let mut config = Gateway::config_with_namespace(&[proxy.endpoint()], "w", "w/");
    // HTTP/2 keep-alive would notice a stalled connection too: out of the
    // way, so that only the watchdog can.
    config.etcd.keep_alive_interval = HumanDuration::secs(3600);
    config.etcd.keep_alive_timeout = HumanDuration::secs(3600);
    config.etcd.progress_request_interval = HumanDuration::millis(300);
    config.etcd.watch_silence_timeout = HumanDuration::secs(1);
    let gw = Gateway::start_ready(config).await;
    let mut client = etcd.client().await;
    let start = put(&mut client, "w/start", "").await;
    let synced = get(&gw.url(&format!("/v1/namespaces/w/kv?count_only=true&min_revision={start}"))).await;
    assert_eq!(synced.status, 200);
    let url = gw.url("/v1/namespaces/w/watch?progress_interval=1s");
    let mut sse = SseClient::open_with(&url, &[("last-event-id", &start.to_string())]).await;

    let mut written = Vec::new();
    for i in 0..5 {
        written.push(put(&mut client, format!("w/k{i}"), "before").await);
    }
    let mut received = Vec::new();
    while received.len() < 5 {
        let e = sse.next().await;
        if e.event == "change" {
            received.push(e.data["revision"].as_i64().unwrap());
        }
    }

    // The connection to etcd stays open but nothing flows: writes go on in etcd.
    proxy.stall();
    for i in 5..15 {
        written.push(put(&mut client, format!("w/k{i}"), "during").await);
    }
    let silent_restarts = || async {
        let samples = scrape(&gw).await;
        value(
            &samples,
            "etcd_cache_gateway_watch_restarts_total",
            &[("namespace", "w"), ("reason", "silent")],
        )
    };
    wait_until("the watchdog re-creates the silent watch", Duration::from_secs(20), || async {
        silent_restarts().await >= 1.0
    })
    .await;
    let namespace = get(&gw.url("/v1/namespaces/w")).await.json();
    assert_eq!(namespace["status"], "stale", "a silent watch is not fresh: {namespace}");
    // The subscriber's stream is alive meanwhile: progress at the last revision it has.
    let e = sse.next().await;
    assert_eq!((e.event.as_str(), e.data.clone()), ("progress", json!({"revision": written[4]})));

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.len() < written.len() {
        assert!(tokio::time::Instant::now() < deadline, "received {received:?} of {written:?}");
        let e = sse.next().await;
        match e.event.as_str() {
            "change" => received.push(e.data["revision"].as_i64().unwrap()),
            "progress" => {}
            other => panic!("unexpected {other}: {}", e.data),
        }
    }
    assert_eq!(received, written, "every change, in order, once, and no reset");
    wait_until("the namespace is fresh again", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/w")).await.json()["status"] == "fresh"
    })
    .await;
}

#[tokio::test]
async fn an_idle_stream_gets_progress_at_the_current_revision_every_interval() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    let head = put(&mut client, "app/a", "1").await;
    let synced = get(&gw.url(&format!("/v1/namespaces/app/kv?count_only=true&min_revision={head}"))).await;
    assert_eq!(synced.status, 200);
    let mut sse = SseClient::open(&gw.url("/v1/namespaces/app/watch?progress_interval=1s")).await;
    let first = sse.next().await;
    assert_eq!((first.event.as_str(), first.id.as_str()), ("synced", head.to_string().as_str()));
    // Nothing is written anywhere: the revision does not move, and every
    // interval brings a progress event at it all the same.
    for _ in 0..3 {
        let e = sse.next_within(Duration::from_secs(5)).await.expect("the stream stays open");
        assert_eq!(
            (e.event.as_str(), e.id.as_str(), e.data),
            ("progress", head.to_string().as_str(), json!({"revision": head}))
        );
    }
    // A write outside the namespace moves etcd's revision: the quiet
    // namespace's revision follows (progress notifications), and so do the ids.
    let elsewhere = put(&mut client, "other/x", "1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = sse.next_within(Duration::from_secs(5)).await.expect("the stream stays open");
        assert_eq!(e.event, "progress", "{e:?}");
        let id: i64 = e.id.parse().unwrap();
        assert!(id <= elsewhere, "never beyond etcd: {id}");
        if id == elsewhere {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the revision stayed at {id}");
    }
}
