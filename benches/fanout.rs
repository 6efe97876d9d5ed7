//! Fan-out benchmark: N SSE subscribers on one namespace, one put, time
//! until every subscriber received it; gateway RSS per idle subscriber; and
//! etcd's count of watch streams (one per namespace, whatever N).
//!
//! Driven by `scripts/bench-fanout.sh`, which starts etcd and the release
//! gateway as separate processes and sets FANOUT_GATEWAY, FANOUT_ETCD,
//! FANOUT_GATEWAY_PID and FANOUT_SUBSCRIBERS. Without them (as under
//! `cargo test --benches`) it explains itself and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Barrier, mpsc};

#[path = "common/process.rs"]
mod process;
use process::rss_kib;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn etcd_watch_streams(etcd: &str) -> String {
    let text = reqwest::get(format!("{etcd}/metrics")).await.expect("etcd metrics").text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("etcd_debugging_mvcc_watch_stream_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let (Some(gateway), Some(etcd), Some(pid)) =
        (env("FANOUT_GATEWAY"), env("FANOUT_ETCD"), env("FANOUT_GATEWAY_PID"))
    else {
        println!("fanout: run scripts/bench-fanout.sh (needs a gateway and etcd as separate processes)");
        return;
    };
    let n: usize = env("FANOUT_SUBSCRIBERS").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(gateway, etcd, pid, n));
}

async fn run(gateway: String, etcd: String, pid: String, n: usize) {
    let rss_before = rss_kib(&pid);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("{gateway}/v1/namespaces/default/watch?prefix=fanout/");
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let synced = Arc::new(Barrier::new(n + 1));
    let open_limit = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..n {
        let (client, url, tx, synced, open_limit) =
            (client.clone(), url.clone(), tx.clone(), synced.clone(), open_limit.clone());
        tokio::spawn(async move {
            let permit = open_limit.acquire_owned().await.unwrap();
            let mut response = client.get(&url).send().await.expect("open stream");
            let mut seen = String::new();
            while !seen.contains("event: synced") {
                let chunk = response.chunk().await.unwrap().expect("stream open");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            drop(permit);
            synced.wait().await;
            seen.clear();
            loop {
                let Ok(Some(chunk)) = response.chunk().await else { return };
                let at = Instant::now();
                // Each change is its own frame; count every one.
                let text = String::from_utf8_lossy(&chunk);
                for _ in 0..text.matches("event: change").count() {
                    let _ = tx.send((i, at));
                }
            }
        });
    }
    let opened = Instant::now();
    synced.wait().await;
    println!("fanout: {n} subscribers open and synced in {:.1?}", opened.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(&pid);
    println!(
        "fanout: gateway RSS {rss_before} KiB before, {rss_idle} KiB with {n} idle subscribers = {:.1} KiB per subscriber",
        (rss_idle.saturating_sub(rss_before)) as f64 / n as f64
    );
    println!(
        "fanout: etcd watch streams (etcd_debugging_mvcc_watch_stream_total): {}",
        etcd_watch_streams(&etcd).await
    );

    let mut etcd_client = etcd_client::Client::connect([etcd.as_str()], None).await.unwrap();
    let mut p99s = Vec::new();
    for round in 0..5 {
        let start = Instant::now();
        etcd_client.put(format!("fanout/k{round}"), "x", None).await.unwrap();
        let mut latencies = Vec::with_capacity(n);
        while latencies.len() < n {
            let (_, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("all received")
                .unwrap();
            latencies.push(at.duration_since(start));
        }
        latencies.sort();
        let (p50, p99, max) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies[n - 1]);
        println!(
            "fanout: round {round}: put -> all {n} received: p50 {p50:.1?}, p99 {p99:.1?}, max {max:.1?}"
        );
        p99s.push(p99);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p99s.sort();
    println!("fanout: {n} subscribers: median p99 over 5 puts: {:.1?}", p99s[p99s.len() / 2]);
}
