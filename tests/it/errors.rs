//! Honest errors: each kind of etcd failure a read can meet answers with
//! its own status and code (`crate::error`'s table), with a sentence of the
//! gateway's and never etcd's own text, against a real etcd in that state.

use std::time::Duration;

use etcd_cache_gateway::config::{ByteSize, Config, HumanDuration};
use etcd_client::{Client, ConnectOptions, Permission, RoleRevokePermissionOptions};

use crate::support::etcd::put;
use crate::support::http::{Reply, get};
use crate::support::metrics::{scrape, value};
use crate::support::{Etcd, Gateway, wait_until};

/// A gateway on namespace `e` (prefix `e/`) keeping 2 revisions of history.
async fn gateway(endpoint: &str, tweak: impl FnOnce(&mut Config)) -> Gateway {
    let mut config = Gateway::config_with_namespace(&[endpoint.to_owned()], "e", "e/");
    config.cache.history_revisions = 2;
    tweak(&mut config);
    Gateway::start_ready(config).await
}

/// Writes `e/k` four times (the first revision leaves the window) and waits
/// until the gateway has the last; the first revision.
async fn history(client: &mut Client, gw: &Gateway) -> i64 {
    let first = put(client, "e/k", "v1").await;
    let mut last = first;
    for i in 2..=4 {
        last = put(client, "e/k", format!("v{i}")).await;
    }
    let url = gw.url(&format!("/v1/namespaces/e/kv?count_only=true&min_revision={last}"));
    assert_eq!(get(&url).await.status, 200);
    first
}

/// Asserts status, code and the exact detail (which proves no etcd text
/// was passed on).
fn assert_problem(reply: &Reply, status: u16, code: &str, detail: &str) {
    let body = reply.json();
    assert_eq!(
        (reply.status, body["code"].as_str(), body["detail"].as_str()),
        (status, Some(code), Some(detail)),
        "{body}"
    );
    assert_eq!(reply.header("content-type"), "application/problem+json");
}

async fn wait_stale(gw: &Gateway) {
    wait_until("the gateway notices etcd is gone", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/e")).await.json()["status"] == "stale"
    })
    .await;
}

#[tokio::test]
async fn etcd_down_is_503_etcd_unavailable_with_retry_after() {
    let mut etcd = Etcd::start().await;
    let gw = gateway(&etcd.endpoint(), |_| {}).await;
    let first = history(&mut etcd.client().await, &gw).await;
    etcd.kill();
    wait_stale(&gw).await;
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv/k?revision={first}"))).await;
    assert_problem(
        &reply,
        503,
        "etcd_unavailable",
        "etcd is unavailable; the gateway keeps trying, retry later",
    );
    assert_eq!(reply.header("retry-after"), "2");
    let reply = get(&gw.url("/v1/namespaces/e/kv/k?consistent=true")).await;
    assert_problem(
        &reply,
        503,
        "etcd_unavailable",
        "the namespace's etcd watch is down, so a consistent read cannot be served; reads without \
         consistent=true are served from the cache (X-Cache-Status: stale)",
    );
    // Reads from the cache go on, marked stale.
    let reply = get(&gw.url("/v1/namespaces/e/kv/k")).await;
    assert_eq!((reply.status, reply.header("x-cache-status")), (200, "stale"));
}

#[tokio::test]
async fn etcd_not_answering_in_time_is_503_etcd_unavailable() {
    let etcd = Etcd::start().await;
    let gw = gateway(&etcd.endpoint(), |c| c.etcd.request_timeout = HumanDuration::secs(1)).await;
    let first = history(&mut etcd.client().await, &gw).await;
    etcd.pause();
    wait_stale(&gw).await;
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv/k?revision={first}"))).await;
    etcd.resume();
    assert_problem(
        &reply,
        503,
        "etcd_unavailable",
        "etcd did not answer in time (etcd.request_timeout); retry later",
    );
    assert_eq!(reply.header("retry-after"), "2");
}

#[tokio::test]
async fn etcd_refusing_the_gateways_credentials_is_502_upstream_error() {
    let etcd = Etcd::start().await;
    let mut root = etcd.client().await;
    root.user_add("root", "root-password", None).await.unwrap();
    root.user_grant_role("root", "root").await.unwrap();
    root.role_add("reader").await.unwrap();
    root.role_grant_permission("reader", Permission::read("e/").with_prefix()).await.unwrap();
    root.user_add("gateway", "gateway-password", None).await.unwrap();
    root.user_grant_role("gateway", "reader").await.unwrap();
    root.auth_enable().await.unwrap();
    let options = ConnectOptions::new().with_user("root", "root-password");
    let mut root = Client::connect([etcd.endpoint()], Some(options)).await.unwrap();

    let gw = gateway(&etcd.endpoint(), |c| {
        c.etcd.username = Some("gateway".into());
        c.etcd.password = Some("gateway-password".into());
    })
    .await;
    let first = history(&mut root, &gw).await;
    // Reads the gateway needs etcd for work while it may read the prefix...
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv/k?revision={first}"))).await;
    assert_eq!((reply.status, reply.json()["kv"]["value"].as_str()), (200, Some("v1")));
    // ... and are the gateway operator's problem once it may not.
    let revoke = RoleRevokePermissionOptions::new().with_prefix();
    root.role_revoke_permission("reader", "e/", Some(revoke)).await.unwrap();
    let detail = "etcd refused the gateway's credentials for this read; the gateway's etcd user needs read \
                  permission on the namespace's prefix (see the gateway's log)";
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv/k?revision={first}"))).await;
    assert_problem(&reply, 502, "upstream_error", detail);
    let reply = get(&gw.url("/v1/namespaces/e/kv/k?consistent=true")).await;
    assert_problem(&reply, 502, "upstream_error", detail);
}

#[tokio::test]
async fn an_answer_beyond_max_message_bytes_is_413_too_large() {
    let etcd = Etcd::start().await;
    let gw = gateway(&etcd.endpoint(), |c| c.etcd.max_message_bytes = ByteSize::mib(4)).await;
    let mut client = etcd.client().await;
    // Four values of 1.2 MiB: each write and each event fits, all four together do not.
    let big = "x".repeat(1_200_000);
    let mut at = 0;
    for i in 0..4 {
        at = put(&mut client, format!("e/big{i}"), &big).await;
    }
    history(&mut client, &gw).await;
    // Out of the window: read from etcd, whose answer exceeds 4 MiB.
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv?prefix=big&revision={at}"))).await;
    assert_problem(
        &reply,
        413,
        "too_large",
        "etcd's answer exceeds etcd.max_message_bytes: ask for fewer keys (limit) or raise etcd.max_message_bytes",
    );
    // Fewer keys at once, or keys only, fit.
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv?prefix=big&revision={at}&keys_only=true"))).await;
    assert_eq!((reply.status, reply.json()["count"].as_u64()), (200, Some(4)));
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv?prefix=big&revision={at}&limit=2"))).await;
    assert_eq!((reply.status, reply.json()["kvs"].as_array().map(Vec::len)), (200, Some(2)));
}

#[tokio::test]
async fn a_compacted_version_behind_a_snapshot_is_410_compacted() {
    let etcd = Etcd::start().await;
    // No value fits the budget: every value is read from etcd, at the
    // revision of the snapshot being served.
    let gw = gateway(&etcd.endpoint(), |c| {
        c.cache.history_revisions = 100;
        c.cache.max_value_bytes = ByteSize(1);
    })
    .await;
    let mut client = etcd.client().await;
    let old = put(&mut client, "e/k", "old").await;
    put(&mut client, "e/other", "x").await;
    let new = put(&mut client, "e/k", "new").await;
    assert_eq!(get(&gw.url(&format!("/v1/namespaces/e/kv/k?min_revision={new}"))).await.status, 200);
    etcd.compact(new).await;
    // The three versions written went over the budget and were evicted.
    wait_until("the value store evicted every value", Duration::from_secs(10), || async {
        value(&scrape(&gw).await, "etcd_cache_gateway_value_evictions_total", &[]) >= 3.0
    })
    .await;
    // The window still knows which version of k was current at `old`, but
    // etcd no longer holds it: gone, as etcd would say, not unavailable.
    for url in
        [format!("/v1/namespaces/e/kv/k?revision={old}"), format!("/v1/namespaces/e/kv?revision={old}")]
    {
        let reply = get(&gw.url(&url)).await;
        let body = reply.json();
        assert_eq!((reply.status, body["code"].as_str()), (410, Some("compacted")), "{url}: {body}");
        assert_eq!(
            body["compact_revision"].as_i64(),
            Some(new),
            "{url}: etcd's compaction, learnt from etcd"
        );
    }
    let reply = get(&gw.url(&format!("/v1/namespaces/e/kv/k?revision={new}"))).await;
    assert_eq!((reply.status, reply.json()["kv"]["value"].as_str()), (200, Some("new")));
}
