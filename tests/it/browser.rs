//! A real browser (Debian's headless Chromium, driven over chromedriver with
//! fantoccini) opens a page that watches the gateway with `EventSource`,
//! receives changes made through etcd, survives a server-side stream close
//! by reconnecting with `Last-Event-ID`, and reports what it saw.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use etcd_cache_gateway::config::HumanDuration;
use serde_json::{Value, json};

use crate::support::wait::wait_for;
use crate::support::{Etcd, Gateway, free_port, wait_until};

/// chromedriver in its own process group; the whole group (chromedriver
/// and the Chromium processes it started) is killed on drop, also when the
/// test fails before closing the browser.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

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
    let page = axum::Router::new().route("/", get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", page_port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, page).await });

    let driver_port = free_port();
    let _driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed"),
    );
    let capabilities = json!({"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", format!("--user-data-dir={}", tempfile::tempdir().unwrap().keep().display())]
    }});
    let capabilities = capabilities.as_object().unwrap().clone();
    let browser = wait_for("chromedriver accepts a session", Duration::from_secs(30), || {
        let capabilities = capabilities.clone();
        async move {
            fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{driver_port}"))
                .await
                .ok()
        }
    })
    .await;
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
    let _ = browser.close().await;
}
