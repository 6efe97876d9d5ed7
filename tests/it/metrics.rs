//! `/metrics` after a scripted workload: the exposition parses and the
//! counters have the expected values.

use std::time::Duration;

use crate::support::http::get;
use crate::support::metrics::value;
use crate::support::sse::SseClient;
use crate::support::{Etcd, Gateway, wait_until};

#[tokio::test]
async fn counters_follow_a_scripted_workload() {
    let mut etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    let head = client.put("app/k", "v", None).await.unwrap().header().unwrap().revision();
    for _ in 0..3 {
        assert_eq!(get(&gw.url(&format!("/v1/namespaces/app/kv/k?min_revision={head}"))).await.status, 200);
    }
    assert_eq!(get(&gw.url("/v1/namespaces/app/kv/missing")).await.status, 404);
    assert_eq!(get(&gw.url("/v1/namespaces/app/kv?limit=5")).await.status, 200);
    assert_eq!(get(&gw.url("/nowhere/at/all")).await.status, 404);
    let mut a = SseClient::open(&gw.url("/v1/namespaces/app/watch")).await;
    let mut b = SseClient::open(&gw.url("/v1/namespaces/app/watch?prefix=k")).await;
    assert_eq!((a.next().await.event, b.next().await.event), ("synced".into(), "synced".into()));
    let changed = client.put("app/k", "v2", None).await.unwrap().header().unwrap().revision();
    assert_eq!(a.next_not_progress().await.id, changed.to_string());
    assert_eq!(b.next_not_progress().await.id, changed.to_string());

    let scrape = || crate::support::metrics::scrape(&gw);
    let samples = scrape().await;
    let key_route = "/v1/namespaces/{ns}/kv/{*key}";
    assert_eq!(
        value(&samples, "etcd_cache_gateway_http_requests_total", &[("route", key_route), ("status", "200")]),
        3.0
    );
    assert_eq!(
        value(&samples, "etcd_cache_gateway_http_requests_total", &[("route", key_route), ("status", "404")]),
        1.0
    );
    assert_eq!(
        value(&samples, "etcd_cache_gateway_http_requests_total", &[("route", "/v1/namespaces/{ns}/kv")]),
        1.0
    );
    assert_eq!(value(&samples, "etcd_cache_gateway_http_requests_total", &[("route", "unmatched")]), 1.0);
    assert_eq!(
        value(&samples, "etcd_cache_gateway_http_request_duration_seconds_count", &[("route", key_route)]),
        4.0
    );
    assert!(
        samples
            .keys()
            .all(|(_, labels)| labels.values().all(|v| !v.contains("/kv/k") && !v.contains("nowhere"))),
        "routes are templates, never raw URLs"
    );
    assert_eq!(value(&samples, "etcd_cache_gateway_sse_subscribers", &[("namespace", "app")]), 2.0);
    assert!(
        value(&samples, "etcd_cache_gateway_sse_events_total", &[("namespace", "app")]) >= 4.0,
        "synced + change, twice"
    );
    assert!(value(&samples, "etcd_cache_gateway_sse_bytes_total", &[("namespace", "app")]) > 100.0);
    assert_eq!(value(&samples, "etcd_cache_gateway_revision", &[("namespace", "app")]), changed as f64);
    assert_eq!(value(&samples, "etcd_cache_gateway_keys", &[("namespace", "app")]), 1.0);
    assert_eq!(value(&samples, "etcd_cache_gateway_fresh", &[("namespace", "app")]), 1.0);
    assert_eq!(value(&samples, "etcd_cache_gateway_relists_total", &[("namespace", "app")]), 1.0);
    assert!(value(&samples, "etcd_cache_gateway_value_hits_total", &[("namespace", "app")]) >= 3.0);

    drop((a, b));
    wait_until("subscribers go back to 0", Duration::from_secs(10), || async {
        value(&scrape().await, "etcd_cache_gateway_sse_subscribers", &[("namespace", "app")]) == 0.0
    })
    .await;
    etcd.kill();
    etcd.restart().await;
    wait_until("a reconnect is counted and the watch is fresh again", Duration::from_secs(20), || async {
        let samples = scrape().await;
        let restarts = |reason| {
            value(
                &samples,
                "etcd_cache_gateway_watch_restarts_total",
                &[("namespace", "app"), ("reason", reason)],
            )
        };
        restarts("error") + restarts("closed") >= 1.0
            && restarts("silent") + restarts("compacted") + restarts("inconsistent") == 0.0
            && value(&samples, "etcd_cache_gateway_fresh", &[("namespace", "app")]) == 1.0
    })
    .await;
}
