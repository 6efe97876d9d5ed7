//! SSE watch streams against a real etcd: the exact wire format of every
//! event, snapshots, resume, gaps, limits and shutdown.

use std::time::Duration;

use etcd_cache_gateway::config::{Config, HumanDuration};
use etcd_client::{Txn, TxnOp};
use serde_json::json;

use crate::support::sse::{SseClient, raw_until};
use crate::support::{Etcd, Gateway, Proxy, wait_until};

struct Env {
    etcd: Etcd,
    gw: Gateway,
    client: etcd_client::Client,
}

async fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    tweak(&mut config);
    let gw = Gateway::start_ready(config).await;
    let client = etcd.client().await;
    Env { etcd, gw, client }
}

impl Env {
    async fn put(&mut self, key: &str, value: &str) -> i64 {
        crate::support::etcd::put(&mut self.client, key, value).await
    }

    /// Puts, then waits until the gateway's cache has the revision, so a
    /// stream opened next starts after it.
    async fn put_seen(&mut self, key: &str, value: &str) -> i64 {
        let revision = self.put(key, value).await;
        let url = self.gw.url(&format!("/v1/namespaces/app/kv?count_only=true&min_revision={revision}"));
        assert_eq!(crate::support::http::get(&url).await.status, 200);
        revision
    }

    fn watch_url(&self, query: &str) -> String {
        self.gw.url(&format!("/v1/namespaces/app/watch?{query}"))
    }
}

#[tokio::test]
async fn stream_starts_with_retry_then_synced_and_has_the_sse_headers() {
    let mut env = env_with(|_| {}).await;
    let head = env.put_seen("app/a", "1").await;
    let raw = raw_until(&env.watch_url("min_revision_is_not_a_watch_param=1"), "\n\n").await;
    assert!(raw.contains("unknown parameter"), "{raw}");
    let url = env.watch_url("prefix=");
    let text = raw_until(&url, "event: synced").await;
    let retry: u64 =
        text.strip_prefix("retry: ").and_then(|r| r.split('\n').next()).unwrap().parse().unwrap();
    assert!((1000..5000).contains(&retry), "jittered retry: {retry}");
    let client = SseClient::open(&url).await;
    assert_eq!(client.status, 200);
    assert_eq!(client.headers["content-type"], "text/event-stream");
    assert_eq!(client.headers["cache-control"], "no-cache");
    assert_eq!(client.headers["x-accel-buffering"], "no");
    assert!(client.headers.get("content-encoding").is_none());
    let wire = raw_until(&url, "}\n\n").await;
    let retry = wire.strip_prefix("retry: ").and_then(|r| r.split('\n').next()).unwrap();
    let expected = format!("retry: {retry}\n\nevent: synced\nid: {head}\ndata: {{\"revision\":{head}}}\n\n");
    assert_eq!(wire, expected);
}

#[tokio::test]
async fn change_events_carry_one_revision_each_with_exact_json() {
    let mut env = env_with(|_| {}).await;
    let created = env.put_seen("app/k", "v1").await;
    let mut sse = SseClient::open(&env.watch_url("prev_kv=true")).await;
    assert_eq!(sse.next().await.event, "synced");
    let updated = env.put("app/k", "v2").await;
    let e = sse.next_not_progress().await;
    assert_eq!((e.event.as_str(), e.id.clone()), ("change", updated.to_string()));
    assert_eq!(
        e.data,
        json!({"revision": updated, "events": [{"type": "put",
            "kv": {"key": "k", "value": "v2", "value_encoding": "utf8", "create_revision": created, "mod_revision": updated, "version": 2, "lease": "0"},
            "prev_kv": {"key": "k", "value": "v1", "value_encoding": "utf8", "create_revision": created, "mod_revision": created, "version": 1, "lease": "0"}}]})
    );
    // One message per revision: a transaction's events come together.
    let txn = Txn::new().and_then([
        TxnOp::put("app/x", "1", None),
        TxnOp::delete("app/k", None),
        TxnOp::put("other/y", "no", None),
    ]);
    let revision = env.client.txn(txn).await.unwrap().header().unwrap().revision();
    let e = sse.next_not_progress().await;
    assert_eq!(e.id, revision.to_string());
    let events = e.data["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "only the namespace's events: {events:?}");
    assert_eq!(events[0]["type"], "put");
    assert_eq!(
        events[1],
        json!({"type": "delete", "kv": {"key": "k", "mod_revision": revision},
        "prev_kv": {"key": "k", "value": "v2", "value_encoding": "utf8", "create_revision": created, "mod_revision": updated, "version": 2, "lease": "0"}})
    );
}

#[tokio::test]
async fn selections_encodings_progress_and_keep_alive() {
    let mut env = env_with(|c| {
        c.watch.heartbeat_interval = HumanDuration::millis(300);
    })
    .await;
    env.put_seen("app/cfg/a", "{\"n\":1}").await;
    let mut by_key = SseClient::open(&env.watch_url("key=cfg/a&encoding=json&progress_interval=1s")).await;
    let mut by_range = SseClient::open(&env.watch_url("start=cfg/b&end=cfg/d&encoding=base64")).await;
    assert_eq!(by_key.next().await.event, "synced");
    assert_eq!(by_range.next().await.event, "synced");
    env.put("app/cfg/b", "B").await;
    let a = env.put("app/cfg/a", "{\"n\":2}").await;
    let e = by_key.next_not_progress().await;
    assert_eq!((e.id.clone(), e.data["events"][0]["kv"]["value"].clone()), (a.to_string(), json!({"n": 2})));
    assert_eq!(e.data["events"][0]["kv"]["value_encoding"], "json");
    let e = by_range.next_not_progress().await;
    assert_eq!(e.data["events"][0]["kv"]["key"], "cfg/b");
    assert_eq!(e.data["events"][0]["kv"]["value"], "Qg==");
    // Quiet for the key: progress moves the client's position past other writes.
    let elsewhere = env.put("app/cfg/c", "C").await;
    let progress = loop {
        let e = by_key.next().await;
        if e.event == "progress" && e.id.parse::<i64>().unwrap() >= elsewhere {
            break e;
        }
    };
    assert_eq!(progress.data, json!({"revision": progress.id.parse::<i64>().unwrap()}));
    let raw = raw_until(&env.watch_url(""), ": keep-alive\n\n").await;
    assert!(raw.contains(": keep-alive\n\n"));
}

#[tokio::test]
async fn snapshot_comes_in_chunks_then_synced_then_changes() {
    let mut env = env_with(|_| {}).await;
    for chunk in 0..25 {
        let ops: Vec<TxnOp> =
            (0..100).map(|i| TxnOp::put(format!("app/s/{:05}", chunk * 100 + i), "v", None)).collect();
        env.client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let head = env.put_seen("app/t", "not in the selection").await;
    let mut sse = SseClient::open(&env.watch_url("prefix=s/&snapshot=true")).await;
    let mut keys = Vec::new();
    loop {
        let e = sse.next().await;
        match e.event.as_str() {
            "snapshot" => {
                assert_eq!(e.id, "", "snapshot events carry no id");
                assert_eq!(e.data["revision"], head);
                let kvs = e.data["kvs"].as_array().unwrap();
                assert!(kvs.len() <= 1000);
                keys.extend(kvs.iter().map(|kv| kv["key"].as_str().unwrap().to_owned()));
            }
            "synced" => {
                assert_eq!((e.id.clone(), e.data.clone()), (head.to_string(), json!({"revision": head})));
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(keys, (0..2500).map(|i| format!("s/{i:05}")).collect::<Vec<_>>());
    let next = env.put("app/s/new", "v").await;
    assert_eq!(sse.next_not_progress().await.id, next.to_string());
}

#[tokio::test]
async fn resume_with_since_or_last_event_id_misses_nothing() {
    let mut env = env_with(|_| {}).await;
    let r1 = env.put("app/a", "1").await;
    let r2 = env.put("app/b", "2").await;
    let r3 = env.put_seen("app/c", "3").await;
    let mut sse = SseClient::open(&env.watch_url(&format!("since={r1}"))).await;
    assert_eq!(sse.next().await.id, r2.to_string());
    assert_eq!(sse.next().await.id, r3.to_string());
    let synced = sse.next().await;
    assert_eq!((synced.event.as_str(), synced.id.as_str()), ("synced", r3.to_string().as_str()));
    // The header wins over the parameter.
    let last_event_id = r2.to_string();
    let mut sse =
        SseClient::open_with(&env.watch_url(&format!("since={r1}")), &[("last-event-id", &last_event_id)])
            .await;
    assert_eq!(sse.next().await.id, r3.to_string());
    assert_eq!(sse.next().await.event, "synced");
    // A resume from the future is refused.
    let reply = crate::support::http::get(&env.watch_url(&format!("since={}", r3 + 100))).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (400, Some("future_revision")));
}

#[tokio::test]
async fn compaction_while_away_resets_or_errors_as_asked() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[proxy.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    let seen = client.put("app/a", "1", None).await.unwrap().header().unwrap().revision();
    let url = |q: &str| gw.url(&format!("/v1/namespaces/app/watch?{q}"));
    wait_until("the gateway saw the write", Duration::from_secs(20), || async {
        crate::support::http::get(&gw.url(&format!("/v1/namespaces/app/kv/a?min_revision={seen}")))
            .await
            .status
            == 200
    })
    .await;
    proxy.cut();
    for i in 0..5 {
        client.put(format!("app/k{i}"), "while away", None).await.unwrap();
    }
    let head = client.put("app/last", "x", None).await.unwrap().header().unwrap().revision();
    etcd.compact(head).await;
    proxy.restore();
    wait_until("the gateway re-listed", Duration::from_secs(20), || async {
        crate::support::http::get(&gw.url(&format!("/v1/namespaces/app/kv/last?min_revision={head}")))
            .await
            .status
            == 200
    })
    .await;
    let mut reset = SseClient::open_with(&url(""), &[("last-event-id", &seen.to_string())]).await;
    let e = reset.next().await;
    assert_eq!(e.event, "reset");
    assert_eq!(e.data["code"], "compacted");
    let mut keys = 0;
    loop {
        let e = reset.next().await;
        match e.event.as_str() {
            "snapshot" => keys += e.data["kvs"].as_array().unwrap().len(),
            "synced" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(keys, 7, "a, k0..k4, last");
    // With on_gap=error a gap known before the stream starts is an HTTP
    // 410: a browser's EventSource stops for good instead of reconnecting
    // into the same error.
    let refused =
        crate::support::http::get_with(&url("on_gap=error"), &[("last-event-id", &seen.to_string())]).await;
    assert_eq!((refused.status, refused.header("content-type")), (410, "application/problem+json"));
    let body = refused.json();
    assert_eq!((body["code"].as_str(), body["reason"].as_str()), (Some("compacted"), Some("compacted")));
    assert!(body["compact_revision"].as_i64().unwrap() > seen);
}

#[tokio::test]
async fn subscriber_caps_answer_503_with_retry_after() {
    let env = env_with(|c| {
        c.namespaces[0].max_subscribers = Some(2);
    })
    .await;
    let mut a = SseClient::open(&env.watch_url("")).await;
    let mut b = SseClient::open(&env.watch_url("")).await;
    assert_eq!((a.next().await.event, b.next().await.event), ("synced".into(), "synced".into()));
    let refused = crate::support::http::get(&env.watch_url("")).await;
    assert_eq!(refused.status, 503, "the namespace's capacity, not the caller's doing");
    assert_eq!(refused.json()["code"], "too_many_watchers");
    assert_eq!(
        refused.json()["detail"],
        "namespace \"app\" already has 2 watch streams open, its limit (namespaces[0].max_subscribers = 2); \
         close one or try again later"
    );
    assert_eq!(refused.header("retry-after"), "5");
    drop(a);
    wait_until("a closed stream frees its place", Duration::from_secs(10), || async {
        let reply = reqwest::get(env.watch_url("")).await.unwrap();
        reply.status() == 200
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_an_error_event() {
    let env = env_with(|_| {}).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut s = SseClient::open(&env.watch_url("")).await;
        assert_eq!(s.next().await.event, "synced");
        streams.push(s);
    }
    let Env { gw, etcd: _etcd, .. } = env;
    let took = tokio::spawn(gw.shutdown());
    for s in &mut streams {
        let e = s.next().await;
        assert_eq!((e.event.as_str(), e.data["code"].as_str()), ("error", Some("shutdown")));
        assert!(s.next_within(Duration::from_secs(5)).await.is_none());
    }
    assert!(took.await.unwrap() < Duration::from_secs(5));
}

#[tokio::test]
async fn streams_end_after_their_lifetime_and_resume_without_loss() {
    let mut env = env_with(|c| {
        c.watch.max_stream_lifetime = HumanDuration::secs(1);
    })
    .await;
    let mut sse = SseClient::open(&env.watch_url("")).await;
    let mut last_id = sse.next().await.id;
    let mut written = Vec::new();
    let mut received = Vec::new();
    for i in 0..20 {
        written.push(env.put(&format!("app/k{}", i % 3), &i.to_string()).await.to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Read until every write arrived, reconnecting with Last-Event-ID as browsers do.
    for _ in 0..20 {
        while let Some(e) = sse.next_within(Duration::from_secs(5)).await {
            if e.event == "change" {
                received.push(e.id.clone());
            }
            if !e.id.is_empty() {
                last_id = e.id;
            }
            if received.len() == written.len() {
                break;
            }
        }
        if received.len() == written.len() {
            break;
        }
        sse = SseClient::open_with(&env.watch_url(""), &[("last-event-id", &last_id)]).await;
    }
    assert_eq!(received, written, "every revision once, in order, across reconnects");
}

#[tokio::test]
async fn json_is_gzipped_on_request_and_streams_never_are() {
    let mut env = env_with(|_| {}).await;
    for i in 0..50 {
        env.put(&format!("app/z/{i:03}"), &"x".repeat(100)).await;
    }
    let head = env.put_seen("app/z/last", "x").await;
    let gzip = [("accept-encoding", "gzip")];
    let list = crate::support::http::get_with(
        &env.gw.url(&format!("/v1/namespaces/app/kv?min_revision={head}")),
        &gzip,
    )
    .await;
    assert_eq!((list.status, list.header("content-encoding")), (200, "gzip"));
    let client = reqwest::Client::new();
    let stream =
        client.get(env.watch_url("snapshot=true")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert!(stream.headers().get("content-encoding").is_none(), "SSE must never be compressed");
}
