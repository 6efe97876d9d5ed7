//! Load tool of `scripts/bench-kube.sh` (not a Criterion-style bench):
//! N informer-style clients of the Kubernetes surface against the same
//! clients of etcd's own JSON gateway.
//!
//! - `KUBE_MODE=load`: writes `KUBE_OBJECTS` JSON objects as
//!   `apps/widgets/ns{i % 10}/w{i}` into the etcd at `KUBE_ETCD`.
//! - `KUBE_MODE=informers`: `KUBE_CLIENTS` clients sync the resource, then
//!   `KUBE_CHANGES` updates go through etcd and every client follows them.
//!   `KUBE_TARGET=gateway`: a WatchList each
//!   (`sendInitialEvents=true&resourceVersionMatch=NotOlderThan`) at
//!   `KUBE_GATEWAY`, synced at the `k8s.io/initial-events-end` bookmark;
//!   `KUBE_TARGET=etcd`: what a client of etcd's JSON gateway does, a
//!   `/v3/kv/range` of the prefix then a `/v3/watch` from the next revision.
//!   Reports the time until every client is synced (median and last), the
//!   changes delivered per second across all clients (from the first write
//!   until the last client has the last change), the peak RSS of
//!   `KUBE_PID` (the gateway or etcd) and its CPU time while the clients
//!   synced and while they followed, and etcd's watcher count during the
//!   run (`etcd_debugging_mvcc_watcher_total`). Every client checks it got
//!   every object and every change.
//!
//! Without `KUBE_MODE` (as under `cargo test --benches`) it explains itself
//! and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use etcd_client::{Client, Txn, TxnOp};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};

#[path = "common/process.rs"]
mod process;
use process::{cpu_time, rss_kib};

/// Objects per etcd transaction when loading.
const PUTS_PER_TXN: usize = 128;
/// Bound on any one client's whole run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> String {
    env(name).unwrap_or_else(|| panic!("{name} is required"))
}

fn number(name: &str, default: usize) -> usize {
    env(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// Ends the whole run: the other clients would wait for this one forever.
fn fail(why: &str) -> ! {
    eprintln!("kube: a client failed: {why}");
    std::process::exit(1)
}

fn key(i: usize) -> String {
    format!("apps/widgets/ns{}/w{i}", i % 10)
}

fn object(i: usize, generation: usize) -> String {
    json!({"metadata": {"labels": {"tier": "web"}}, "spec": {"id": i, "generation": generation, "payload": "x".repeat(64)}})
        .to_string()
}

fn main() {
    let Some(mode) = env("KUBE_MODE") else {
        println!("kube: run scripts/bench-kube.sh (KUBE_MODE=load|informers, see benches/kube.rs)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match mode.as_str() {
        "load" => rt.block_on(load()),
        "informers" => rt.block_on(informers()),
        other => panic!("unknown KUBE_MODE {other}"),
    }
}

async fn load() {
    let client = Client::connect([required("KUBE_ETCD")], None).await.expect("connect to etcd");
    let objects = number("KUBE_OBJECTS", 10_000);
    let in_flight = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for chunk in (0..objects).collect::<Vec<_>>().chunks(PUTS_PER_TXN) {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let mut kv = client.kv_client();
        let ops: Vec<TxnOp> = chunk.iter().map(|&i| TxnOp::put(key(i), object(i, 0), None)).collect();
        tasks.push(tokio::spawn(async move {
            kv.txn(Txn::new().and_then(ops)).await.expect("txn");
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// A stream of newline-separated JSON documents.
struct Lines {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("one JSON document per line"));
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }
}

/// When a client was synced and when it had the last change.
struct Run {
    synced_at: Instant,
    done_at: Instant,
}

async fn gateway_client(url: String, objects: usize, changes: usize, synced: Arc<Barrier>) -> Run {
    let url = format!(
        "{url}/apis/example.com/v1/widgets?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan\
         &allowWatchBookmarks=true"
    );
    let response = reqwest::get(&url).await.expect("watch");
    if response.status() != 200 {
        fail(&format!(
            "WatchList refused: {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ));
    }
    let mut lines = Lines { stream: response.bytes_stream().boxed(), buffer: Vec::new() };
    let mut added = 0;
    loop {
        let line = lines.next().await.expect("initial events");
        match line["type"].as_str() {
            Some("ADDED") => added += 1,
            Some("BOOKMARK")
                if line["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true" =>
            {
                break;
            }
            _ => {}
        }
    }
    if added != objects {
        fail(&format!("{added} of {objects} objects in the initial events"));
    }
    let synced_at = Instant::now();
    synced.wait().await;
    let mut modified = 0;
    while modified < changes {
        let line = lines.next().await.expect("changes");
        if line["type"] == "MODIFIED" {
            modified += 1;
        }
    }
    Run { synced_at, done_at: Instant::now() }
}

fn prefix_range() -> Value {
    json!({"key": STANDARD.encode("apps/widgets/"), "range_end": STANDARD.encode("apps/widgets0")})
}

async fn etcd_client(url: String, objects: usize, changes: usize, synced: Arc<Barrier>) -> Run {
    let http = reqwest::Client::new();
    let range: Value = http
        .post(format!("{url}/v3/kv/range"))
        .json(&prefix_range())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if range["kvs"].as_array().map_or(0, Vec::len) != objects {
        fail(&format!("the range has not every object: {}", range["count"]));
    }
    let revision: i64 = range["header"]["revision"].as_str().unwrap().parse().unwrap();
    let mut create = prefix_range();
    create["start_revision"] = json!((revision + 1).to_string());
    let response =
        http.post(format!("{url}/v3/watch")).json(&json!({"create_request": create})).send().await.unwrap();
    let mut lines = Lines { stream: response.bytes_stream().boxed(), buffer: Vec::new() };
    let created = lines.next().await.expect("created");
    assert_eq!(created["result"]["created"], true);
    let synced_at = Instant::now();
    synced.wait().await;
    let mut modified = 0;
    while modified < changes {
        let line = lines.next().await.expect("changes");
        modified += line["result"]["events"].as_array().map_or(0, Vec::len);
    }
    Run { synced_at, done_at: Instant::now() }
}

async fn etcd_watchers(etcd: &str) -> u64 {
    let text = reqwest::get(format!("{etcd}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total ")?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn informers() {
    let etcd = required("KUBE_ETCD");
    let target = required("KUBE_TARGET");
    let pid = required("KUBE_PID");
    let clients = number("KUBE_CLIENTS", 100);
    let objects = number("KUBE_OBJECTS", 10_000);
    let changes = number("KUBE_CHANGES", 1_000);
    let synced = Arc::new(Barrier::new(clients + 1));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (peak, pid) = (Arc::clone(&peak), pid.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(&pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let cpu_at_start = cpu_time(&pid);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let synced = Arc::clone(&synced);
        let client = match target.as_str() {
            "gateway" => tokio::spawn(tokio::time::timeout(
                CLIENT_TIMEOUT,
                gateway_client(required("KUBE_GATEWAY"), objects, changes, synced),
            )),
            "etcd" => tokio::spawn(tokio::time::timeout(
                CLIENT_TIMEOUT,
                etcd_client(etcd.clone(), objects, changes, synced),
            )),
            other => panic!("unknown KUBE_TARGET {other}"),
        };
        tasks.push(client);
    }
    synced.wait().await;
    let all_synced = started.elapsed();
    let cpu_at_sync = cpu_time(&pid);
    let watchers = etcd_watchers(&etcd).await;
    let client = Client::connect([etcd.as_str()], None).await.expect("connect to etcd");
    let writes = Instant::now();
    for c in 0..changes {
        let mut kv = client.kv_client();
        let i = (c * 7919) % objects;
        kv.put(key(i), object(i, c + 1), None).await.expect("put");
    }
    let mut runs = Vec::new();
    for task in tasks {
        runs.push(task.await.unwrap().expect("client finished in time"));
    }
    sampler.abort();
    let cpu_at_end = cpu_time(&pid);
    let last = runs.iter().map(|r| r.done_at).max().unwrap();
    let follow = last.duration_since(writes).as_secs_f64();
    let sync: Vec<f64> = runs.iter().map(|r| r.synced_at.duration_since(started).as_secs_f64()).collect();
    println!(
        "target={target} clients={clients} objects={objects} changes={changes} sync_median_s={:.2} sync_all_s={:.2} \
         changes_delivered_per_s={:.0} follow_s={follow:.2} peak_rss_mib={:.0} etcd_watchers={watchers} \
         sync_cpu_s={:.2} follow_cpu_s={:.2}",
        median(sync),
        all_synced.as_secs_f64(),
        (clients * changes) as f64 / follow,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        (cpu_at_sync - cpu_at_start).as_secs_f64(),
        (cpu_at_end - cpu_at_sync).as_secs_f64(),
    );
}
