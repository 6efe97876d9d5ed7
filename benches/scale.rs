//! Load tools of `scripts/bench-scale.sh` (not a Criterion-style bench):
//!
//! - `SCALE_MODE=load`: writes `SCALE_KEYS` keys of 31 bytes with 100-byte
//!   values under `SCALE_PREFIX` into the etcd at `SCALE_ETCD`, 128 puts per
//!   transaction, a few transactions in flight.
//! - `SCALE_MODE=watch`: attaches `SCALE_WATCHERS` watchers to one prefix,
//!   directly to etcd (`SCALE_TARGET=etcd`, one gRPC connection each, as
//!   separate programs would) or as SSE subscribers of the gateway at
//!   `SCALE_GATEWAY` (`SCALE_TARGET=gateway`), then pushes `SCALE_EVENTS`
//!   puts through etcd (`SCALE_IN_FLIGHT` at a time) and reports events delivered per second across all
//!   watchers, the time until the last watcher has the last event, the
//!   writer's own rate, and the CPU time etcd and the gateway used
//!   (`SCALE_ETCD_PID`, `SCALE_GATEWAY_PID`). Every watcher's sequence is
//!   checked complete and in order.
//!
//! Without `SCALE_MODE` (as under `cargo test --benches`) it explains itself
//! and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, Txn, TxnOp, WatchOptions};
use futures_util::StreamExt;
use tokio::sync::{Barrier, Semaphore};

#[path = "common/process.rs"]
mod process;
use process::cpu_time;

/// Value size (the 100-byte values).
const VALUE_BYTES: usize = 100;
/// Puts per transaction when loading.
const PUTS_PER_TXN: usize = 128;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> String {
    env(name).unwrap_or_else(|| panic!("{name} is required"))
}

fn number(name: &str, default: usize) -> usize {
    env(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// The 31-byte key of item `i` under `prefix` (`prefix` + zero-padded number).
fn key(prefix: &str, i: usize) -> String {
    let width = 31usize.saturating_sub(prefix.len()).max(8);
    format!("{prefix}{i:0width$}")
}

fn value(i: usize) -> String {
    let mut v = format!("{{\"id\":{i},\"payload\":\"");
    v.extend(std::iter::repeat_n('x', VALUE_BYTES - 2 - v.len()));
    v.push_str("\"}");
    v
}

fn main() {
    let Some(mode) = env("SCALE_MODE") else {
        println!("scale: run scripts/bench-scale.sh (SCALE_MODE=load|watch, see benches/scale.rs)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match mode.as_str() {
        "load" => rt.block_on(load()),
        "watch" => rt.block_on(watch()),
        other => panic!("unknown SCALE_MODE {other}"),
    }
}

async fn load() {
    let etcd = required("SCALE_ETCD");
    let prefix = required("SCALE_PREFIX");
    let keys = number("SCALE_KEYS", 100_000);
    let client = Client::connect([etcd.as_str()], None).await.expect("connect to etcd");
    let in_flight = Arc::new(Semaphore::new(8));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(PUTS_PER_TXN) {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let mut kv = client.kv_client();
        let ops: Vec<TxnOp> = chunk.iter().map(|&i| TxnOp::put(key(&prefix, i), value(i), None)).collect();
        tasks.push(tokio::spawn(async move {
            kv.txn(Txn::new().and_then(ops)).await.expect("txn");
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!("load: {keys} keys in {:.1} s", started.elapsed().as_secs_f64());
}

/// What one watcher saw: events, and whether they came complete and in order.
struct Seen {
    events: usize,
    in_order: bool,
    last_at: Instant,
}

async fn watch() {
    let etcd = required("SCALE_ETCD");
    let target = required("SCALE_TARGET");
    let watchers = number("SCALE_WATCHERS", 100);
    let events = number("SCALE_EVENTS", 20_000);
    let prefix = format!("watch-{}/", std::process::id());
    let ready = Arc::new(Barrier::new(watchers + 1));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let ready = Arc::clone(&ready);
        let task = match target.as_str() {
            "etcd" => tokio::spawn(etcd_watcher(etcd.clone(), prefix.clone(), events, ready)),
            "gateway" => tokio::spawn(sse_watcher(required("SCALE_GATEWAY"), prefix.clone(), events, ready)),
            "none" => break,
            other => panic!("unknown SCALE_TARGET {other}"),
        };
        tasks.push(task);
    }
    if target != "none" {
        ready.wait().await;
    }
    let cpu = |name: &str| env(name).map(|pid| cpu_time(&pid));
    let (etcd_cpu, gateway_cpu) = (cpu("SCALE_ETCD_PID"), cpu("SCALE_GATEWAY_PID"));
    let started = Instant::now();
    write(&etcd, &prefix, events).await;
    let wrote = started.elapsed();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    let last = seen.iter().map(|s| s.last_at).max().unwrap_or_else(Instant::now);
    let until_last = last.duration_since(started);
    let complete = seen.iter().filter(|s| s.events == events && s.in_order).count();
    let delivered: usize = seen.iter().map(|s| s.events).sum();
    let used = |before: Option<Duration>, name: &str| {
        before.map_or("-".to_owned(), |b| {
            let pid = env(name).unwrap();
            format!("{:.2}", (cpu_time(&pid) - b).as_secs_f64())
        })
    };
    let gateway_cpu_s = used(gateway_cpu, "SCALE_GATEWAY_PID");
    let per_event = match (gateway_cpu, delivered) {
        (Some(b), d) if d > 0 && target == "gateway" => {
            let pid = env("SCALE_GATEWAY_PID").unwrap();
            format!("{:.2}", (cpu_time(&pid) - b).as_secs_f64() * 1e6 / d as f64)
        }
        _ => "-".into(),
    };
    println!(
        "watch: target={target} watchers={watchers} events={events} writer={:.0}/s delivered={delivered} \
         events_per_s={:.0} until_last_s={:.2} complete={complete}/{watchers} etcd_cpu_s={} gateway_cpu_s={gateway_cpu_s} \
         gateway_us_per_event={per_event}",
        events as f64 / wrote.as_secs_f64(),
        delivered as f64 / until_last.as_secs_f64(),
        until_last.as_secs_f64(),
        used(etcd_cpu, "SCALE_ETCD_PID"),
    );
    assert_eq!(
        complete,
        if target == "none" { 0 } else { watchers },
        "every watcher got every event in order"
    );
}

/// `events` puts under `prefix`, `SCALE_IN_FLIGHT` (64) at a time, one
/// revision each.
async fn write(etcd: &str, prefix: &str, events: usize) {
    let client = Client::connect([etcd], None).await.expect("connect to etcd");
    let in_flight = Arc::new(Semaphore::new(number("SCALE_IN_FLIGHT", 64)));
    let mut tasks = Vec::new();
    for i in 0..events {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let mut kv = client.kv_client();
        let key = key(prefix, i % 1000);
        tasks.push(tokio::spawn(async move {
            kv.put(key, value(i), None).await.expect("put");
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// A direct etcd watcher on its own connection: counts put events and checks
/// revisions only increase.
async fn etcd_watcher(etcd: String, prefix: String, events: usize, ready: Arc<Barrier>) -> Seen {
    let mut client = Client::connect([etcd.as_str()], None).await.expect("connect to etcd");
    let (_requests, mut stream) =
        client.watch(prefix.as_str(), Some(WatchOptions::new().with_prefix())).await.expect("watch").split();
    ready.wait().await;
    let mut seen = Seen { events: 0, in_order: true, last_at: Instant::now() };
    let mut last_revision = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while seen.events < events {
        let Ok(Some(Ok(response))) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
        for event in response.events() {
            let revision = event.kv().map_or(0, |kv| kv.mod_revision());
            seen.in_order &= revision > last_revision && event.event_type() == EventType::Put;
            last_revision = revision;
            seen.events += 1;
        }
        seen.last_at = Instant::now();
    }
    seen
}

/// A gateway SSE subscriber: counts `change` events (one put each) by
/// scanning the stream's bytes, checking their ids only increase.
async fn sse_watcher(gateway: String, prefix: String, events: usize, ready: Arc<Barrier>) -> Seen {
    let url = format!("{gateway}/v1/namespaces/default/watch?prefix={prefix}");
    let mut response = reqwest::get(&url).await.expect("subscribe");
    assert!(response.status().is_success(), "{}", response.status());
    let mut pending: Vec<u8> = Vec::new();
    // Wait for `synced` before the writer starts.
    while !String::from_utf8_lossy(&pending).contains("event: synced") {
        let chunk = response.chunk().await.expect("stream").expect("stream open");
        pending.extend_from_slice(&chunk);
    }
    pending.clear();
    ready.wait().await;
    let mut seen = Seen { events: 0, in_order: true, last_at: Instant::now() };
    let mut last_id = 0i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while seen.events < events {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else { break };
        pending.extend_from_slice(&chunk);
        // Complete events end with a blank line.
        let Some(end) = pending.windows(2).rposition(|w| w == b"\n\n") else { continue };
        let text = std::str::from_utf8(&pending[..end]).expect("UTF-8 stream");
        let mut change = false;
        for line in text.lines() {
            if line.starts_with("event: ") {
                change = line == "event: change";
            } else if let Some(id) = line.strip_prefix("id: ").filter(|_| change) {
                let id: i64 = id.parse().expect("numeric id");
                seen.in_order &= id > last_id;
                last_id = id;
                seen.events += 1;
            }
        }
        pending.drain(..end + 2);
        seen.last_at = Instant::now();
    }
    seen
}
