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
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(value(&samples, "etcd_cache_gateway_build_info", &[("version", version)]), 1.0);
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6, "the standard process metrics");
    assert!(value(&samples, "process_open_fds", &[]) >= 3.0);

    // Prometheus asks for OpenMetrics; curl gets the classic text format.
    let openmetrics = crate::support::http::get_with(
        &gw.url("/metrics"),
        &[("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")],
    )
    .await;
    assert_eq!(
        openmetrics.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(openmetrics.body).unwrap();
    assert!(text.ends_with("# EOF\n") && text.contains("# TYPE etcd_cache_gateway_http_requests counter"));
    let classic = get(&gw.url("/metrics")).await;
    assert_eq!(classic.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    let text = String::from_utf8(classic.body).unwrap();
    assert!(
        !text.contains("# EOF") && text.contains("# TYPE etcd_cache_gateway_http_requests_total counter")
    );
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

#[tokio::test]
async fn token_series_carry_the_name_and_answers_to_tokens_are_private() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    config.tokens = vec![etcd_cache_gateway::config::TokenConfig {
        name: "reader".into(),
        secret: Some("reader-secret-1".into()),
        secret_env: None,
        secret_file: None,
        namespaces: vec!["*".into()],
        write: false,
    }];
    let gw = Gateway::start_ready(config).await;
    let auth = [("authorization", "Bearer reader-secret-1")];
    for _ in 0..3 {
        let reply = crate::support::http::get_with(&gw.url("/v1/namespaces/app/kv"), &auth).await;
        assert_eq!((reply.status, reply.header("cache-control")), (200, "private, no-cache"));
    }
    let mut stream = SseClient::open_with(&gw.url("/v1/namespaces/app/watch"), &auth).await;
    assert_eq!(stream.next().await.event, "synced");
    assert_eq!(stream.headers["cache-control"], "no-cache", "a stream keeps its own");
    let samples = crate::support::metrics::scrape(&gw).await;
    assert_eq!(value(&samples, "etcd_cache_gateway_token_requests_total", &[("token", "reader")]), 4.0);
    assert_eq!(value(&samples, "etcd_cache_gateway_token_streams", &[("token", "reader")]), 1.0);
    let text = String::from_utf8(get(&gw.url("/metrics")).await.body).unwrap();
    assert!(!text.contains("reader-secret-1"));
}
