//! Consistency of REST reads against a real etcd: linearizable reads,
//! waiting for a revision, past revisions, future and compacted revisions,
//! and pagination pinned to one revision while writers run.

use etcd_client::{Txn, TxnOp};
use serde_json::Value;

use crate::support::cache::etcd_rows;
use crate::support::etcd::put;
use crate::support::http::get;
use crate::support::{Etcd, Gateway};

async fn start(history_revisions: u64) -> (Etcd, Gateway, etcd_client::Client) {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.cache.history_revisions = history_revisions;
    let gw = Gateway::start_ready(config).await;
    let client = etcd.client().await;
    (etcd, gw, client)
}

#[tokio::test]
async fn consistent_read_sees_the_write_just_acknowledged() {
    let (_etcd, gw, mut client) = start(10_000).await;
    for i in 0..20 {
        let revision = put(&mut client, "app/counter", &i.to_string()).await;
        let reply = get(&gw.url("/v1/namespaces/app/kv/counter?consistent=true")).await;
        assert_eq!(reply.status, 200);
        let body = reply.json();
        assert_eq!(body["kv"]["value"], i.to_string());
        assert!(body["revision"].as_i64().unwrap() >= revision);
    }
}

#[tokio::test]
async fn min_revision_never_answers_an_older_state() {
    let (_etcd, gw, mut client) = start(10_000).await;
    let head = put(&mut client, "app/a", "1").await;
    // A revision etcd has not reached is refused, never waited for.
    let reply = get(&gw.url(&format!("/v1/namespaces/app/kv/b?min_revision={}", head + 1))).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (400, Some("future_revision")));
    // One it has: the read answers once the cache has it, straight after the
    // write returned, and never with the older state.
    for i in 0..20 {
        let written = put(&mut client, "app/b", &i.to_string()).await;
        let reply = get(&gw.url(&format!("/v1/namespaces/app/kv/b?min_revision={written}"))).await;
        assert_eq!((reply.status, reply.json()["kv"]["value"].as_str()), (200, Some(i.to_string().as_str())));
        assert!(reply.header("x-etcd-revision").parse::<i64>().unwrap() >= written);
    }
}

#[tokio::test]
async fn past_future_and_compacted_revisions() {
    let (etcd, gw, mut client) = start(5).await;
    let first = put(&mut client, "app/k", "v1").await;
    let mut last = first;
    for i in 2..=10 {
        last = put(&mut client, "app/k", &format!("v{i}")).await;
    }
    let at = |revision: i64| gw.url(&format!("/v1/namespaces/app/kv/k?revision={revision}"));
    // In the window.
    let reply = get(&at(last - 2)).await;
    assert_eq!((reply.status, reply.json()["kv"]["value"].as_str()), (200, Some("v8")));
    assert_eq!(reply.header("x-etcd-revision"), (last - 2).to_string());
    // Older than the window: read from etcd.
    let reply = get(&at(first)).await;
    assert_eq!((reply.status, reply.json()["kv"]["value"].as_str()), (200, Some("v1")));
    // Future.
    let reply = get(&at(last + 1000)).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(
        (body["code"].as_str(), body["etcd_revision"].as_i64()),
        (Some("future_revision"), Some(last))
    );
    // Compacted in etcd and out of the window.
    etcd.compact(last).await;
    let reply = get(&at(first)).await;
    assert_eq!(reply.status, 410);
    let body = reply.json();
    assert_eq!(body["code"], "compacted");
    let compact_revision = body["compact_revision"].as_i64().unwrap();
    assert!(compact_revision > first && compact_revision <= last, "{body}");
    assert_eq!(get(&at(compact_revision)).await.status, 200, "compact_revision is readable");
}

#[tokio::test]
async fn pages_read_the_first_pages_revision_while_writers_run() {
    let (_etcd, gw, mut client) = start(100_000).await;
    for chunk in 0..25 {
        let ops: Vec<TxnOp> =
            (0..100).map(|i| TxnOp::put(format!("app/p/{:05}", chunk * 100 + i), "initial", None)).collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let head = put(&mut client, "app/marker", "x").await;
    let mut writer_client = client.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            let key = format!("app/p/{:05}", (i * 37) % 2600);
            if i % 3 == 0 {
                writer_client.delete(key, None).await.unwrap();
            } else {
                writer_client.put(key, format!("changed-{i}"), None).await.unwrap();
            }
        }
    });
    let first =
        get(&gw.url(&format!("/v1/namespaces/app/kv?prefix=p/&limit=1000&min_revision={head}"))).await.json();
    let revision = first["revision"].as_i64().unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut page = first;
    for _ in 0..10 {
        assert_eq!(page["revision"].as_i64(), Some(revision));
        for kv in page["kvs"].as_array().unwrap() {
            rows.push((kv["key"].as_str().unwrap().to_owned(), kv["value"].as_str().unwrap().to_owned()));
        }
        let Some(token) = page["next_page_token"].as_str() else { break };
        let reply =
            get(&gw.url(&format!("/v1/namespaces/app/kv?prefix=p/&limit=1000&page_token={token}"))).await;
        assert_eq!(reply.status, 200);
        page = reply.json();
    }
    writer.await.unwrap();
    let expected: Vec<(String, String)> = etcd_rows(&mut client, "app/", revision)
        .await
        .into_iter()
        .filter(|row| row.0.starts_with(b"p/"))
        .map(|row| (String::from_utf8(row.0).unwrap(), String::from_utf8(row.1).unwrap()))
        .collect();
    assert!(expected.len() >= 2400, "{}", expected.len());
    assert_eq!(rows.len(), expected.len());
    assert!(rows == expected, "the pages differ from etcd's state at {revision}");
}

#[tokio::test]
async fn a_token_whose_revision_was_compacted_expires() {
    let (etcd, gw, mut client) = start(5).await;
    for i in 0..10 {
        put(&mut client, &format!("app/t/{i}"), "v").await;
    }
    let head = put(&mut client, "app/t/x", "v").await;
    let first: Value =
        get(&gw.url(&format!("/v1/namespaces/app/kv?prefix=t/&limit=3&min_revision={head}"))).await.json();
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let mut last = head;
    for i in 0..10 {
        last = put(&mut client, &format!("app/u/{i}"), "v").await;
    }
    etcd.compact(last).await;
    let _ = get(&gw.url(&format!("/v1/namespaces/app/kv/u/9?min_revision={last}"))).await;
    let reply = get(&gw.url(&format!("/v1/namespaces/app/kv?prefix=t/&limit=3&page_token={token}"))).await;
    assert_eq!(reply.status, 410);
    assert_eq!(reply.json()["code"], "page_token_expired");
}
