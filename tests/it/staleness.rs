//! Staleness that tells the truth: while a namespace re-lists after etcd
//! compacted the history it needed, its answers are the previous state and
//! say `stale`; once re-listed, what etcd deleted meanwhile is gone
//! everywhere.

use std::time::Duration;

use etcd_cache_gateway::config::ByteSize;
use serde_json::Value;

use crate::support::etcd::put;
use crate::support::http::get;
use crate::support::sse::SseClient;
use crate::support::{Etcd, EtcdOptions, Gateway, Proxy, wait_until};

fn keys(listing: &Value) -> Vec<&str> {
    listing["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_relisting_namespace_is_stale_and_forgets_what_etcd_deleted() {
    // etcd takes a value larger than the gateway decodes (4 MiB).
    let etcd =
        Etcd::start_with(EtcdOptions { max_request_bytes: Some(6 << 20), ..EtcdOptions::default() }).await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let mut config = Gateway::config_with_namespace(&[proxy.endpoint()], "s", "s/");
    config.etcd.max_message_bytes = ByteSize::mib(4);
    let gw = Gateway::start_ready(config).await;
    let mut client = etcd.client().await;
    put(&mut client, "s/gone", "deleted while the gateway is cut off").await;
    let head = put(&mut client, "s/kept", "1").await;
    assert_eq!(get(&gw.url(&format!("/v1/namespaces/s/kv/gone?min_revision={head}"))).await.status, 200);

    // Cut off, the gateway misses a delete, and etcd compacts it away.
    proxy.cut();
    wait_until("the gateway notices the cut", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/s")).await.json()["status"] == "stale"
    })
    .await;
    client.delete("s/gone", None).await.unwrap();
    // A value larger than the gateway decodes (even alone in a page): the
    // re-list fails until it is gone, which holds the namespace in its
    // re-listing state for as long as this test needs.
    put(&mut client, "s/big", "x".repeat(4_500_000)).await;
    let compacted = etcd.revision().await;
    etcd.compact(compacted).await;
    proxy.restore();

    wait_until("the namespace re-lists", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/s")).await.json()["relisting"] == true
    })
    .await;
    let namespace = get(&gw.url("/v1/namespaces/s")).await.json();
    assert_eq!((namespace["status"].as_str(), namespace["revision"].as_i64()), (Some("stale"), Some(head)));
    let listed = get(&gw.url("/v1/namespaces")).await.json();
    assert_eq!(listed["namespaces"][0]["relisting"], true);
    // Meanwhile the last known state is served, and says it is stale.
    let reply = get(&gw.url("/v1/namespaces/s/kv/gone")).await;
    assert_eq!((reply.status, reply.header("x-cache-status")), (200, "stale"));
    assert!(reply.header("age").parse::<u64>().is_ok(), "stale answers carry Age");
    let reply = get(&gw.url("/v1/namespaces/s/kv")).await;
    assert_eq!((reply.header("x-cache-status"), keys(&reply.json())), ("stale", vec!["gone", "kept"]));

    // The re-list can finish once the big values are gone.
    client.delete("s/big", None).await.unwrap();
    let now = etcd.revision().await;
    wait_until("the namespace is fresh again", Duration::from_secs(30), || async {
        let ns = get(&gw.url("/v1/namespaces/s")).await.json();
        ns["status"] == "fresh" && ns["relisting"] == false
    })
    .await;
    let reply = get(&gw.url(&format!("/v1/namespaces/s/kv/gone?min_revision={now}"))).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (404, Some("key_not_found")));
    assert_eq!(reply.header("x-cache-status"), "fresh");
    let reply = get(&gw.url("/v1/namespaces/s/kv")).await;
    assert_eq!(keys(&reply.json()), vec!["kept"]);
    let mut sse = SseClient::open(&gw.url("/v1/namespaces/s/watch?snapshot=true")).await;
    let snapshot = sse.next().await;
    assert_eq!((snapshot.event.as_str(), keys(&snapshot.data)), ("snapshot", vec!["kept"]));
}

/// etcd (before etcd #18274) drops a delete's tombstone when it compacts at
/// exactly the delete's revision, yet lets a watch start there: a gateway
/// resuming from that revision would never learn of the delete. Found by
/// the chaos suite (RELIABILITY.md); the gateway watches from one revision
/// earlier, which etcd answers `compacted`, and re-lists.
#[tokio::test]
async fn a_delete_at_the_compaction_revision_is_not_lost_when_the_watch_resumes() {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(&etcd.endpoint()).await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[proxy.endpoint()], "s", "s/")).await;
    let mut client = etcd.client().await;
    let head = put(&mut client, "s/gone", "deleted while the gateway is cut off").await;
    assert_eq!(get(&gw.url(&format!("/v1/namespaces/s/kv/gone?min_revision={head}"))).await.status, 200);

    proxy.cut();
    wait_until("the gateway notices the cut", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/s")).await.json()["status"] == "stale"
    })
    .await;
    // The revision after the gateway's head is a delete, and etcd compacts
    // at exactly that revision.
    let deleted = client.delete("s/gone", None).await.unwrap().header().unwrap().revision();
    assert_eq!(deleted, head + 1);
    etcd.compact(deleted).await;
    proxy.restore();

    let after = put(&mut client, "s/after", "1").await;
    let reply = get(&gw.url(&format!("/v1/namespaces/s/kv/gone?min_revision={after}"))).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (404, Some("key_not_found")));
    let reply = get(&gw.url(&format!("/v1/namespaces/s/kv?min_revision={after}"))).await;
    assert_eq!(keys(&reply.json()), vec!["after"]);
}
