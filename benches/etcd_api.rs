//! Load tool of `scripts/bench-etcd-api.sh` (not a Criterion-style bench):
//! `ETCD_API_WATCHERS` clients of etcd's JSON API watching one prefix
//! (`POST /v3/watch`, one HTTP connection each, as separate programs would)
//! plus a read load of `POST /v3/kv/range`, against `ETCD_API_TARGET` (etcd's
//! own JSON gateway, or the gateway's etcd API). Reports, as one line:
//!
//! - etcd's own gauges while every watcher is open:
//!   `etcd_debugging_mvcc_watch_stream_total` and
//!   `etcd_debugging_mvcc_watcher_total` (from `ETCD_API_ETCD/metrics`);
//! - read throughput and latency percentiles of `ETCD_API_READERS`
//!   concurrent readers (ranges of the prefix, 100 keys; linearizable, or
//!   serializable with `ETCD_API_SERIALIZABLE=1`) for `ETCD_API_READ_SECONDS`;
//! - for `ETCD_API_PUTS` puts made through etcd one at a time: the time from
//!   sending the put until every watcher has its event (median and max over
//!   the puts);
//! - CPU time etcd (`ETCD_API_ETCD_PID`) and the gateway
//!   (`ETCD_API_GATEWAY_PID`) used during the run.
//!
//! Without `ETCD_API_TARGET` (as under `cargo test --benches`) it explains
//! itself and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::mpsc;

#[path = "common/process.rs"]
mod process;

/// Keys under the prefix when the run starts (what readers read).
const KEYS: usize = 100;
/// Bound on waiting for one put to reach every watcher.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, default: usize) -> usize {
    env(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// etcd's gauge `name` from its `/metrics`.
async fn etcd_gauge(client: &reqwest::Client, etcd: &str, name: &str) -> f64 {
    let text = client.get(format!("{etcd}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let Some(target) = env("ETCD_API_TARGET") else {
        println!("etcd_api: run scripts/bench-etcd-api.sh (see benches/etcd_api.rs)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(target));
}

async fn run(target: String) {
    let etcd = env("ETCD_API_ETCD").expect("ETCD_API_ETCD");
    let watchers = number("ETCD_API_WATCHERS", 1000);
    let readers = number("ETCD_API_READERS", 32);
    let read_seconds = number("ETCD_API_READ_SECONDS", 10);
    let puts = number("ETCD_API_PUTS", 50);
    let label = env("ETCD_API_LABEL").unwrap_or_else(|| target.clone());
    let (etcd_pid, gateway_pid) = (env("ETCD_API_ETCD_PID"), env("ETCD_API_GATEWAY_PID"));
    let prefix = format!("bench/{}/", std::process::id());
    let end = format!("bench/{}0", std::process::id());
    let range = serde_json::json!({"key": STANDARD.encode(&prefix), "range_end": STANDARD.encode(end)});
    let serializable = env("ETCD_API_SERIALIZABLE").is_some_and(|v| v == "1");
    let mut read = range.clone();
    read["serializable"] = serde_json::json!(serializable);
    let http = reqwest::Client::builder().pool_max_idle_per_host(readers * 2).build().unwrap();
    let mut etcd_client = etcd_client::Client::connect([etcd.as_str()], None).await.expect("etcd");
    for i in 0..KEYS {
        etcd_client.put(format!("{prefix}{i:04}"), vec![b'x'; 100], None).await.expect("put");
    }

    // The watchers: each reports every event's key to the collector.
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let (created_tx, mut created_rx) = mpsc::unbounded_channel::<()>();
    let create = serde_json::json!({"create_request": range}).to_string();
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        // One client per watcher: its own connection, as separate programs.
        let client = reqwest::Client::new();
        let (url, body) = (format!("{target}/v3/watch"), create.clone());
        let (events_tx, created_tx) = (events_tx.clone(), created_tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut response = client.post(url).body(body).send().await.expect("watch");
            let mut buffer = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let message: serde_json::Value = serde_json::from_slice(&line).expect("JSON message");
                    let result = &message["result"];
                    if result["created"] == serde_json::json!(true) {
                        let _ = created_tx.send(());
                    }
                    for event in result["events"].as_array().into_iter().flatten() {
                        let key = event["kv"]["key"].as_str().unwrap_or_default().to_owned();
                        let _ = events_tx.send((w, key));
                    }
                }
            }
        }));
    }
    for _ in 0..watchers {
        tokio::time::timeout(DELIVERY_TIMEOUT, created_rx.recv()).await.expect("every watch is created");
    }
    let streams = etcd_gauge(&http, &etcd, "etcd_debugging_mvcc_watch_stream_total").await;
    let etcd_watchers = etcd_gauge(&http, &etcd, "etcd_debugging_mvcc_watcher_total").await;
    // User + system CPU time of a process so far (zero without a pid).
    let cpu_time = |pid: Option<&str>| pid.map_or(Duration::ZERO, process::cpu_time);
    let (etcd_cpu0, gateway_cpu0) = (cpu_time(etcd_pid.as_deref()), cpu_time(gateway_pid.as_deref()));
    let started = Instant::now();

    // Reads, while the watchers are open.
    let deadline = Instant::now() + Duration::from_secs(read_seconds as u64);
    let body = Arc::new(read.to_string());
    let mut readers_tasks = Vec::new();
    for _ in 0..readers {
        let (http, url, body) = (http.clone(), format!("{target}/v3/kv/range"), Arc::clone(&body));
        readers_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = http.post(&url).body(body.as_str().to_owned()).send().await.expect("range");
                assert_eq!(response.status(), 200);
                let answer: serde_json::Value = response.json().await.expect("JSON");
                assert_eq!(answer["count"], serde_json::json!(KEYS.to_string()));
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in readers_tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let reads_per_second = latencies.len() as f64 / read_seconds as f64;

    // Puts, one at a time: until every watcher has the event.
    let mut deliveries = Vec::with_capacity(puts);
    for p in 0..puts {
        let key = format!("{prefix}put{p:04}");
        let encoded = STANDARD.encode(&key);
        let sent = Instant::now();
        etcd_client.put(key, "v", None).await.expect("put");
        let mut seen = vec![false; watchers];
        let mut missing = watchers;
        while missing > 0 {
            let (w, k) = tokio::time::timeout(DELIVERY_TIMEOUT, events_rx.recv())
                .await
                .expect("the put reaches every watcher")
                .expect("watchers alive");
            if k == encoded && !seen[w] {
                seen[w] = true;
                missing -= 1;
            }
        }
        deliveries.push(sent.elapsed());
    }
    deliveries.sort();
    let elapsed = started.elapsed();
    let etcd_cpu = cpu_time(etcd_pid.as_deref()) - etcd_cpu0;
    let gateway_cpu = cpu_time(gateway_pid.as_deref()) - gateway_cpu0;
    println!(
        "{label}: watchers={watchers} etcd_watch_streams={streams} etcd_watchers={etcd_watchers} \
         readers={readers} serializable={serializable} reads_per_s={reads_per_second:.0} read_p50_ms={:.2} read_p99_ms={:.2} \
         puts={puts} put_to_all_p50_ms={:.1} put_to_all_max_ms={:.1} run_s={:.1} etcd_cpu_s={:.2} gateway_cpu_s={:.2}",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        percentile(&deliveries, 0.5).as_secs_f64() * 1e3,
        deliveries.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        elapsed.as_secs_f64(),
        etcd_cpu.as_secs_f64(),
        gateway_cpu.as_secs_f64(),
    );
    for task in tasks {
        task.abort();
    }
    etcd_client
        .delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("clean up");
}
