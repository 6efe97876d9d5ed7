//! Operations: stale serving while etcd is away, graceful shutdown of the
//! real binary with open streams, and resuming a stream on another replica.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::etcd::put;
use crate::support::http::get;
use crate::support::sse::SseClient;
use crate::support::{Etcd, EtcdOptions, Gateway, free_port, wait_until};

#[tokio::test]
async fn reads_stay_available_and_marked_stale_while_etcd_is_down() {
    let mut etcd = Etcd::start().await;
    let gw = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    let before = client.put("app/k", "before", None).await.unwrap().header().unwrap().revision();
    let fresh = get(&gw.url(&format!("/v1/namespaces/app/kv/k?min_revision={before}"))).await;
    assert_eq!((fresh.status, fresh.header("x-cache-status")), (200, "fresh"));
    assert_eq!(fresh.header("age"), "");

    etcd.kill();
    wait_until("the namespace goes stale", Duration::from_secs(20), || async {
        get(&gw.url("/v1/namespaces/app/kv/k")).await.header("x-cache-status") == "stale"
    })
    .await;
    let first = get(&gw.url("/v1/namespaces/app/kv/k")).await;
    assert_eq!((first.status, first.json()["kv"]["value"].as_str()), (200, Some("before")));
    let age: u64 = first.header("age").parse().unwrap();
    wait_until("Age grows", Duration::from_secs(10), || async {
        get(&gw.url("/v1/namespaces/app/kv/k")).await.header("age").parse::<u64>().unwrap() > age
    })
    .await;
    let list = get(&gw.url("/v1/namespaces/app/kv")).await;
    assert_eq!((list.status, list.header("x-cache-status")), (200, "stale"));
    let started = Instant::now();
    let consistent = get(&gw.url("/v1/namespaces/app/kv/k?consistent=true")).await;
    assert_eq!((consistent.status, consistent.json()["code"].as_str()), (503, Some("etcd_unavailable")));
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast: {:?}", started.elapsed());
    let ns = get(&gw.url("/v1/namespaces")).await.json();
    assert_eq!(ns["namespaces"][0]["status"], "stale");
    assert_eq!(get(&gw.url("/readyz")).await.status, 200, "losing etcd does not make the gateway unready");

    // Writes made while the gateway was away are served once etcd is back.
    etcd.restart().await;
    let mut client = etcd.client().await;
    let after = client.put("app/k", "after", None).await.unwrap().header().unwrap().revision();
    wait_until("fresh again", Duration::from_secs(20), || async {
        let reply = get(&gw.url(&format!("/v1/namespaces/app/kv/k?min_revision={after}"))).await;
        reply.status == 200 && reply.header("x-cache-status") == "fresh"
    })
    .await;
    let reply = get(&gw.url("/v1/namespaces/app/kv/k?consistent=true")).await;
    assert_eq!(reply.json()["kv"]["value"], "after");
}

#[tokio::test]
async fn sigterm_ends_100_streams_with_shutdown_and_exits_0_within_the_deadline() {
    let etcd = Etcd::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n[etcd]\nendpoints = [\"{}\"]\n[http]\nshutdown_timeout = \"5s\"\n[log]\nfilter = \"warn\"\n",
            etcd.endpoint()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_etcd-cache-gateway"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the binary is ready", Duration::from_secs(30), || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        let mut s = SseClient::open(&format!("{base}/v1/namespaces/default/watch")).await;
        assert_eq!(s.next().await.event, "synced");
        streams.push(s);
    }
    // A unary request in flight while the signal arrives still completes.
    let in_flight = tokio::spawn({
        let base = base.clone();
        async move {
            reqwest::get(format!("{base}/v1/namespaces/default/kv?consistent=true")).await.map(|r| r.status())
        }
    });
    let started = Instant::now();
    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    for s in &mut streams {
        let e = s.next().await;
        assert_eq!((e.event.as_str(), e.data["code"].as_str()), ("error", Some("shutdown")));
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited within the deadline: {:?}",
        started.elapsed()
    );
    if let Ok(Ok(code)) = in_flight.await {
        assert!(code.is_success() || code.as_u16() == 503, "{code}");
    }
}

#[tokio::test]
async fn a_stream_resumes_on_another_replica_without_loss() {
    let etcd = Etcd::start_with(EtcdOptions::default()).await;
    let one = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let two = Gateway::start_ready(Gateway::config_with_namespace(&[etcd.endpoint()], "app", "app/")).await;
    let mut client = etcd.client().await;
    let mut sse = SseClient::open(&one.url("/v1/namespaces/app/watch")).await;
    let mut last_id = sse.next().await.id;
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(put(&mut client, format!("app/k{i}"), "v").await.to_string());
    }
    let mut received = Vec::new();
    while received.len() < 5 {
        let e = sse.next_not_progress().await;
        received.push(e.id.clone());
        last_id = e.id;
    }
    drop(sse);
    one.shutdown().await;
    for i in 10..15 {
        written.push(put(&mut client, format!("app/k{i}"), "v").await.to_string());
    }
    let mut sse =
        SseClient::open_with(&two.url("/v1/namespaces/app/watch"), &[("last-event-id", &last_id)]).await;
    while received.len() < written.len() {
        let e = sse.next().await;
        if e.event == "change" {
            received.push(e.id);
        }
    }
    assert_eq!(
        received, written,
        "the other replica's window covered the gap: nothing missed, nothing twice"
    );
}
