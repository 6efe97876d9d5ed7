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

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_reset_and_slows_no_one() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "g", "g/");
    config.cache.history_revisions = 100;
    let gw = Gateway::start_ready(config).await;
    let mut client = etcd.client().await;
    let start = client.put("g/start", "", None).await.unwrap().header().unwrap().revision();
    let url = |q: &str| gw.url(&format!("/v1/namespaces/g/watch?{q}"));

    // Two subscribers that read the first event, then stop reading.
    let mut stalled = Vec::new();
    for query in ["", "on_gap=error"] {
        let mut response = reqwest::get(url(query)).await.unwrap();
        let first = response.chunk().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("retry:"));
        stalled.push(response);
    }
    let (until_tx, until) = watch::channel(i64::MAX);
    let fast = tokio::spawn(subscribe(url("progress_interval=1s"), start, until, None));

    // 50,000 events: 500 revisions of 100 puts with 100-byte values.
    let value = "v".repeat(100);
    let mut end = start;
    for round in 0..500 {
        let ops: Vec<TxnOp> =
            (0..100).map(|i| TxnOp::put(format!("g/k{i:03}"), format!("{round}{value}"), None)).collect();
        end = client.txn(Txn::new().and_then(ops)).await.unwrap().header().unwrap().revision();
    }
    until_tx.send_replace(end);
    let seen = fast.await.unwrap();
    assert_eq!(seen.len(), 500, "the reading subscriber got every revision");
    assert!(seen.iter().all(|(_, events)| events.len() == 100));

    // The stalled ones read again: past what their sockets buffered, the
    // history they need is gone.
    for (mut response, expected) in stalled.into_iter().zip(["event: reset", "event: error"]) {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !text.contains(expected) {
            let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("in time").unwrap();
            let Some(chunk) = chunk else { break };
            let tail = text.len().saturating_sub(64);
            text = text[tail..].to_owned() + &String::from_utf8_lossy(&chunk);
        }
        assert!(text.contains(expected), "{expected} never came");
        if expected == "event: reset" {
            let rest = raw_after(&mut response, "}\n\n", &text).await;
            assert!(rest.contains("\"code\":\"lagged\""), "{rest}");
        }
    }
}

/// Reads until `needle` follows what `text` holds.
async fn raw_after(response: &mut reqwest::Response, needle: &str, text: &str) -> String {
    let from = text.find("event: reset").unwrap_or(0);
    let mut out = text[from..].to_owned();
    while !out.contains(needle) {
        let Some(chunk) = response.chunk().await.unwrap() else { break };
        out.push_str(&String::from_utf8_lossy(&chunk));
    }
    out
}
