//! A real browser (Debian's headless Chromium, driven over chromedriver with
//! fantoccini) opens a page that watches the gateway with `EventSource`,
//! receives changes made through etcd, survives a server-side stream close
//! by reconnecting with `Last-Event-ID`, and reports what it saw.

use std::time::Duration;

use etcd_cache_gateway::config::HumanDuration;
use serde_json::Value;

use crate::chromium::{Browser, serve_page};
use crate::support::{Etcd, Gateway, free_port, wait_until};

const PAGE: &str = r#"<!doctype html>
<html><body><script>
  const state = { opens: 0, changes: [], synced: 0, errors: 0 };
  const source = new EventSource(GATEWAY + "/v1/namespaces/app/watch?prefix=b/&progress_interval=1s");
  source.onopen = () => { state.opens += 1; };
  source.onerror = () => { state.errors += 1; };
  source.addEventListener("synced", () => { state.synced += 1; });
  source.addEventListener("change", (e) => {
    const data = JSON.parse(e.data);
    state.changes.push({ id: e.lastEventId, revision: data.revision, keys: data.events.map((ev) => ev.kv.key) });
  });
  window.report = () => JSON.stringify(state);
</script></body></html>"#;

#[tokio::test]
async fn a_browser_eventsource_receives_changes_and_resumes_after_a_server_close() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/");
    // The page is served from another origin; streams close every ~3 s.
    let page_port = free_port();
    config.http.cors_origins = vec![format!("http://127.0.0.1:{page_port}")];
    config.watch.max_stream_lifetime = HumanDuration::secs(3);
    let gw = Gateway::start_ready(config).await;

    let html = PAGE.replace("GATEWAY", &format!("{:?}", gw.base_url));
    serve_page(page_port, html).await;
    let session = Browser::start(1024, 768).await;
    let browser = &session.client;
    browser.goto(&format!("http://127.0.0.1:{page_port}/")).await.unwrap();
    let report = || async {
        let raw = browser.execute("return window.report()", vec![]).await.unwrap();
        serde_json::from_str::<Value>(raw.as_str().unwrap()).unwrap()
    };
    wait_until("the page is subscribed", Duration::from_secs(20), || async { report().await["synced"] == 1 })
        .await;

    let mut client = etcd.client().await;
    let mut written = Vec::new();
    for i in 0..12 {
        let r =
            client.put(format!("app/b/{i}"), i.to_string(), None).await.unwrap().header().unwrap().revision();
        client.put("app/elsewhere", "ignored", None).await.unwrap();
        written.push(r);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until("the page saw every change", Duration::from_secs(30), || async {
        report().await["changes"].as_array().unwrap().len() >= written.len()
    })
    .await;
    let state = report().await;
    let revisions: Vec<i64> =
        state["changes"].as_array().unwrap().iter().map(|c| c["revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, written, "every change once, in order, across reconnects");
    assert!(
        state["opens"].as_u64().unwrap() >= 2,
        "the server closed the stream and the browser reconnected: {state}"
    );
    assert_eq!(state["synced"], state["opens"], "each connection, first or resumed, synced once: {state}");
    let _ = browser.clone().close().await;
}
