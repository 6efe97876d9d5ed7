//! The watch guarantees, checked against etcd's own history: ordered,
//! unique, complete, one message per revision with all its selected events,
//! also across resumes with `Last-Event-ID` and across an etcd restart.

use std::time::Duration;

use etcd_cache_gateway::cache::KeyRange;
use etcd_client::{EventType, Txn, TxnOp, WatchOptions};
use serde_json::Value;
use tokio::sync::watch;

use crate::support::sse::SseClient;
use crate::support::{Etcd, Gateway};

/// (revision, [(type, relative key)]) as seen by a subscriber or in etcd.
type History = Vec<(i64, Vec<(String, String)>)>;

/// etcd's own history of `prefix` in (from, to], from a direct watch.
async fn etcd_history(client: &mut etcd_client::Client, prefix: &str, from: i64, to: i64) -> History {
    let options = WatchOptions::new().with_prefix().with_start_revision(from + 1);
    let mut stream = client.watch(prefix, Some(options)).await.unwrap();
    let mut history: History = Vec::new();
    while history.last().is_none_or(|(r, _)| *r < to) {
        let response =
            tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap().unwrap();
        for event in response.events() {
            let kv = event.kv().unwrap();
            let kind = if event.event_type() == EventType::Put { "put" } else { "delete" };
            let key = String::from_utf8(kv.key()[prefix.len()..].to_vec()).unwrap();
            match history.last_mut() {
                Some((r, events)) if *r == kv.mod_revision() => events.push((kind.into(), key)),
                _ => history.push((kv.mod_revision(), vec![(kind.into(), key)])),
            }
        }
    }
    history
}

fn select(history: &History, range: &KeyRange) -> History {
    history
        .iter()
        .filter_map(|(r, events)| {
            let kept: Vec<_> = events.iter().filter(|(_, k)| range.contains(k.as_bytes())).cloned().collect();
            (!kept.is_empty()).then_some((*r, kept))
        })
        .collect()
}

/// A subscriber: reads changes until its position reaches `until` (known
/// once the writer is done), reconnecting with Last-Event-ID after
/// `disconnect_after` changes.
async fn subscribe(
    url: String,
    since: i64,
    until: watch::Receiver<i64>,
    disconnect_after: Option<usize>,
) -> History {
    let mut seen: History = Vec::new();
    let mut last_id = since.to_string();
    let mut sse = SseClient::open_with(&url, &[("last-event-id", &last_id)]).await;
    let mut disconnect_after = disconnect_after;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while last_id.parse::<i64>().unwrap() < *until.borrow() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber stuck at {last_id} (until {})",
            *until.borrow()
        );
        let Some(e) = sse.next_within(Duration::from_secs(20)).await else {
            sse = SseClient::open_with(&url, &[("last-event-id", &last_id)]).await;
            continue;
        };
        match e.event.as_str() {
            "change" => {
                let events = e.data["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|ev: &Value| {
                        (
                            ev["type"].as_str().unwrap().to_owned(),
                            ev["kv"]["key"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                seen.push((e.data["revision"].as_i64().unwrap(), events));
            }
            "synced" | "progress" => {}
            other => panic!("unexpected event {other}: {}", e.data),
        }
        if !e.id.is_empty() {
            last_id = e.id;
        }
        if disconnect_after.is_some_and(|n| seen.len() >= n) {
            disconnect_after = None;
            sse = SseClient::open_with(&url, &[("last-event-id", &last_id)]).await;
        }
    }
    seen
}

fn key(i: u64) -> String {
    format!("g/k{i:02}")
}

#[tokio::test]
async fn ten_subscribers_see_exactly_etcds_history_for_their_selection() {
    let etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "g", "g/")).await;
    let mut client = etcd.client().await;
    let start = client.put("g/start", "", None).await.unwrap().header().unwrap().revision();

    let b = |s: &str| bytes::Bytes::copy_from_slice(s.as_bytes());
    let selections: Vec<(&str, KeyRange)> = vec![
        ("", KeyRange::all()),
        ("prefix=k0", KeyRange::prefix(b("k0"))),
        ("prefix=k1", KeyRange::prefix(b("k1"))),
        ("key=k05", KeyRange::key(b("k05"))),
        ("start=k20&end=k50", KeyRange { start: b("k20"), end: Some(b("k50")) }),
        ("start=k50", KeyRange { start: b("k50"), end: None }),
        ("prefix=k9&prev_kv=true", KeyRange::prefix(b("k9"))),
        ("prev_kv=true&encoding=base64", KeyRange::all()),
        ("prefix=k3&encoding=json", KeyRange::prefix(b("k3"))),
        ("start=k&end=k1", KeyRange { start: b("k"), end: Some(b("k1")) }),
    ];

    // Subscribers watch while the writer writes; the first three disconnect
    // mid-way and resume with Last-Event-ID.
    let (until_tx, until) = watch::channel(i64::MAX);
    let tasks: Vec<_> = selections
        .iter()
        .enumerate()
        .map(|(i, (query, _))| {
            let url = gw.url(&format!("/v1/namespaces/g/watch?progress_interval=1s&{query}"));
            tokio::spawn(subscribe(url, start, until.clone(), (i < 3).then_some(40 + i * 30)))
        })
        .collect();
    let mut writer = client.clone();
    let write = tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut last = 0;
        for _ in 0..1000 {
            last = match rng.u8(..10) {
                0..=5 => writer
                    .put(key(rng.u64(..100)), rng.u32(..).to_string(), None)
                    .await
                    .unwrap()
                    .header()
                    .unwrap()
                    .revision(),
                6 | 7 => writer.delete(key(rng.u64(..100)), None).await.unwrap().header().unwrap().revision(),
                _ => {
                    let mut keys: Vec<u64> = (0..rng.usize(2..5)).map(|_| rng.u64(..100)).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let ops: Vec<TxnOp> = keys
                        .iter()
                        .map(|k| {
                            if k % 3 == 0 {
                                TxnOp::delete(key(*k), None)
                            } else {
                                TxnOp::put(key(*k), "txn", None)
                            }
                        })
                        .collect();
                    writer.txn(Txn::new().and_then(ops)).await.unwrap().header().unwrap().revision()
                }
            };
        }
        last
    });
    let end = write.await.unwrap();
    until_tx.send_replace(end);
    let reference = etcd_history(&mut client, "g/", start, end).await;
    assert!(reference.len() > 900, "{} revisions", reference.len());
    for ((query, range), task) in selections.iter().zip(tasks) {
        let seen = task.await.unwrap();
        let expected = select(&reference, range);
        assert_eq!(seen.len(), expected.len(), "selection {query:?}: number of revisions");
        assert!(seen == expected, "selection {query:?}: events differ from etcd's history");
    }
}

#[tokio::test]
async fn etcd_restart_during_open_streams_loses_and_repeats_nothing() {
    let mut etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "g", "g/")).await;
    let mut client = etcd.client().await;
    let start = client.put("g/start", "", None).await.unwrap().header().unwrap().revision();
    let url = gw.url("/v1/namespaces/g/watch?progress_interval=1s");
    let (until_tx, until) = watch::channel(i64::MAX);
    let reader = tokio::spawn(subscribe(url, start, until, None));
    for i in 0..20 {
        client.put(key(i % 7), i.to_string(), None).await.unwrap();
    }
    etcd.kill();
    etcd.restart().await;
    let mut client = etcd.client().await;
    let mut end = 0;
    for i in 20..40 {
        end = client.put(key(i % 7), i.to_string(), None).await.unwrap().header().unwrap().revision();
    }
    until_tx.send_replace(end);
    let seen = reader.await.unwrap();
    let reference = etcd_history(&mut client, "g/", start, end).await;
    assert_eq!(seen, reference);
}

/// Opens `url` and reads only its first chunk (`retry:`), then stops
/// reading: the gateway can write no more than the socket buffers hold.
async fn stalled(url: &str) -> reqwest::Response {
    let mut response = reqwest::get(url).await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("retry:"));
    response
}

/// Reads a stalled stream again: its events until `done` says stop (or 60 s pass).
async fn read_again(
    response: reqwest::Response,
    mut done: impl FnMut(&eventsource_stream::Event) -> bool,
) -> Vec<eventsource_stream::Event> {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let mut events = response.bytes_stream().eventsource();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        let event = event.expect("a well-formed stream");
        let stop = done(&event);
        seen.push(event);
        if stop {
            break;
        }
    }
    seen
}

/// 500 revisions of 100 puts with 100-byte values: 50,000 events.
async fn flood(client: &mut etcd_client::Client, rounds: usize) -> Vec<i64> {
    let value = "v".repeat(100);
    let mut revisions = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let ops: Vec<TxnOp> =
            (0..100).map(|i| TxnOp::put(format!("g/k{i:03}"), format!("{round}{value}"), None)).collect();
        revisions.push(client.txn(Txn::new().and_then(ops)).await.unwrap().header().unwrap().revision());
    }
    revisions
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_caught_up_from_etcd_and_slows_no_one() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "g", "g/");
    config.cache.history_revisions = 100;
    let gw = Gateway::start_ready(config).await;
    let mut client = etcd.client().await;
    let start = client.put("g/start", "", None).await.unwrap().header().unwrap().revision();
    let url = |q: &str| gw.url(&format!("/v1/namespaces/g/watch?{q}"));
    // From `start` on, not "now": a stream opened before the gateway saw
    // `start` would otherwise also (rightly) deliver it.
    let slow = [
        stalled(&url(&format!("since={start}"))).await,
        stalled(&url(&format!("since={start}&on_gap=error"))).await,
    ];
    let (until_tx, until) = watch::channel(i64::MAX);
    let fast = tokio::spawn(subscribe(url("progress_interval=1s"), start, until, None));

    let written = flood(&mut client, 500).await;
    until_tx.send_replace(*written.last().unwrap());
    let seen = fast.await.unwrap();
    assert_eq!(seen.len(), 500, "the reading subscriber got every revision");
    assert!(seen.iter().all(|(_, events)| events.len() == 100));

    // The stalled ones read again: past what their sockets held, their
    // history left the window, but etcd still has it: they are caught up,
    // every revision once and in order, no reset, no error.
    let last = *written.last().unwrap();
    for response in slow {
        let events = read_again(response, |e| e.id == last.to_string()).await;
        let kinds: std::collections::BTreeSet<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert!(kinds.iter().all(|k| ["change", "progress", "synced"].contains(k)), "{kinds:?}");
        let changes: Vec<i64> =
            events.iter().filter(|e| e.event == "change").map(|e| e.id.parse().unwrap()).collect();
        let first_difference = changes.iter().zip(&written).position(|(a, b)| a != b);
        assert!(
            changes == written,
            "{} changes for {} revisions; first difference at {first_difference:?}; last event {:?}",
            changes.len(),
            written.len(),
            events.last().map(|e| (&e.event, &e.id))
        );
    }
    let samples = crate::support::metrics::scrape(&gw).await;
    let caught_up = crate::support::metrics::value(
        &samples,
        "etcd_cache_gateway_catch_ups_total",
        &[("outcome", "caught_up")],
    );
    assert_eq!(caught_up, 2.0);
}

#[tokio::test]
async fn a_stalled_subscriber_whose_history_etcd_compacted_is_reset_or_ends_with_an_error() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "g", "g/");
    config.cache.history_revisions = 100;
    let gw = Gateway::start_ready(config).await;
    let mut client = etcd.client().await;
    let url = |q: &str| gw.url(&format!("/v1/namespaces/g/watch?{q}"));
    let reset = stalled(&url("")).await;
    let error = stalled(&url("on_gap=error")).await;
    let written = flood(&mut client, 300).await;
    etcd.compact(*written.last().unwrap()).await;

    let mut after_reset = false;
    let events = read_again(reset, |e| {
        after_reset |= e.event == "reset";
        after_reset && e.event == "synced"
    })
    .await;
    let reset_event = events.iter().find(|e| e.event == "reset").expect("a reset");
    let data: Value = serde_json::from_str(&reset_event.data).unwrap();
    assert_eq!(data["code"], "compacted");
    let events = read_again(error, |e| e.event == "error").await;
    let data: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!((data["code"].as_str(), data["reason"].as_str()), (Some("compacted"), Some("compacted")));
    assert_eq!(data["compact_revision"], *written.last().unwrap(), "where etcd's history starts now");
}
