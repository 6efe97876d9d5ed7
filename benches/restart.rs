//! Restart benchmark: N SSE subscribers of a release gateway, the gateway
//! stopped (SIGTERM) and started again while CHANGES puts go to etcd, then
//! every subscriber resumes at once with `Last-Event-ID`. The new gateway's
//! history begins at its own load, so every resume is older than its window
//! and is caught up from etcd (by replays of etcd's history shared by the
//! subscribers, `watch.max_catch_ups` at once, the others queued). Reports
//! the time until every subscriber has every change, the replays started,
//! the most etcd watchers and queued replays seen, the catch-up outcomes
//! and the resets (must be 0); each check is exact: every subscriber must
//! get exactly the revisions written, in order.
//!
//! Rows, each in the same run on the same etcd: the catch-up bound of each
//! value in RESTART_CATCH_UPS, and a baseline where the same subscribers
//! reconnect to a gateway that kept running (resumes served from its history).
//!
//! Driven by `scripts/bench-restart.sh`, which starts etcd and sets
//! RESTART_ETCD, RESTART_GATEWAY_BIN and RESTART_DIR. Without them (as under
//! `cargo test --benches`) it explains itself and exits.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

#[path = "common/process.rs"]
mod process;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Every wait of the tool is bounded by this.
const PATIENCE: Duration = Duration::from_secs(300);

struct Settings {
    etcd: String,
    bin: String,
    dir: String,
    subscribers: usize,
    changes: u64,
    catch_ups: Vec<usize>,
}

fn main() {
    let (Some(etcd), Some(bin), Some(dir)) =
        (env("RESTART_ETCD"), env("RESTART_GATEWAY_BIN"), env("RESTART_DIR"))
    else {
        println!("restart: run scripts/bench-restart.sh (needs etcd and the release gateway binary)");
        return;
    };
    let settings = Settings {
        etcd,
        bin,
        dir,
        subscribers: env("RESTART_SUBSCRIBERS").and_then(|v| v.parse().ok()).unwrap_or(10_000),
        changes: env("RESTART_CHANGES").and_then(|v| v.parse().ok()).unwrap_or(100),
        catch_ups: env("RESTART_CATCH_UPS")
            .unwrap_or_else(|| "32 100000".into())
            .split_whitespace()
            .map(|v| v.parse().expect("RESTART_CATCH_UPS: numbers"))
            .collect(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for &catch_ups in &settings.catch_ups {
            run(&settings, Some(catch_ups)).await;
        }
        run(&settings, None).await;
    });
}

/// A gateway process on a free port.
struct Gateway {
    url: String,
    child: Child,
}

impl Gateway {
    async fn start(settings: &Settings, port: u16, max_catch_ups: usize) -> Self {
        let config = format!("{}/gateway-{port}.toml", settings.dir);
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n[etcd]\nendpoints = [\"{}\"]\n[watch]\nmax_subscribers = 100000\n\
                 max_subscribers_per_namespace = 100000\nmax_catch_ups = {max_catch_ups}\n[log]\nfilter = \"error\"\n",
                settings.etcd
            ),
        )
        .unwrap();
        let child = Command::new(&settings.bin).arg("--config").arg(&config).spawn().expect("start gateway");
        let url = format!("http://127.0.0.1:{port}");
        let ready = Instant::now();
        while reqwest::get(format!("{url}/readyz")).await.map_or(true, |r| !r.status().is_success()) {
            assert!(ready.elapsed() < PATIENCE, "gateway not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { url, child }
    }

    fn stop(mut self) {
        // SIGTERM: the graceful shutdown a deploy does.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    fn rss_kib(&self) -> u64 {
        process::rss_kib(&self.child.id().to_string())
    }
}

impl Drop for Gateway {
    /// A tool that fails leaves no gateway behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of the first sample of `name` (with its labels, if any) in a
/// Prometheus text answer.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn metrics(url: &str) -> String {
    match reqwest::get(format!("{url}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Opens a stream of `prefix`, resumed after `since` when given.
async fn open(client: &reqwest::Client, gateway: &str, since: Option<u64>) -> reqwest::Response {
    let mut request = client.get(format!("{gateway}/v1/namespaces/default/watch?prefix=restart/"));
    if let Some(since) = since {
        request = request.header("Last-Event-ID", since.to_string());
    }
    let response = request.send().await.expect("open stream");
    assert_eq!(response.status(), 200, "watch answered {}", response.status());
    response
}

/// Reads a stream until `synced`; returns the stream and the synced revision.
async fn until_synced(
    response: reqwest::Response,
) -> (impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin, u64) {
    let mut events = Box::pin(response.bytes_stream().eventsource().map(|e| e.expect("SSE parses")));
    loop {
        let event = events.next().await.expect("stream open until synced");
        match event.event.as_str() {
            "synced" => return (events, event.id.parse().expect("synced id")),
            "reset" => panic!("reset before synced: {}", event.data),
            _ => {}
        }
    }
}

/// Reads changes until revision `last`, asserting they are exactly
/// `first..=last` (the only writes are the benchmark's, one key each).
async fn until_revision(
    mut events: impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin,
    first: u64,
    last: u64,
) -> Result<(), String> {
    let mut next = first;
    while next <= last {
        let Some(event) = events.next().await else { return Err(format!("stream ended before {next}")) };
        match event.event.as_str() {
            "change" => {
                let revision: u64 = event.id.parse().expect("change id");
                if revision != next {
                    return Err(format!("expected revision {next}, got {revision}"));
                }
                next += 1;
            }
            "reset" => return Err(format!("reset: {}", event.data)),
            "error" => return Err(format!("error: {}", event.data)),
            _ => {}
        }
    }
    Ok(())
}

/// One row: `catch_ups` = Some(bound) restarts the gateway with that bound;
/// None reconnects to the same gateway (the baseline).
async fn run(settings: &Settings, catch_ups: Option<usize>) {
    let n = settings.subscribers;
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut etcd = etcd_client::Client::connect([settings.etcd.as_str()], None).await.unwrap();
    let port = free_port();
    let gateway = Gateway::start(settings, port, catch_ups.unwrap_or(32)).await;

    // Phase 1: N subscribers synced at the same revision.
    let opens = Arc::new(Semaphore::new(512));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (client, url, opens) = (client.clone(), gateway.url.clone(), Arc::clone(&opens));
        tasks.push(tokio::spawn(async move {
            let _permit = opens.acquire_owned().await.unwrap();
            let (events, synced) = until_synced(open(&client, &url, None).await).await;
            (events, synced)
        }));
    }
    let mut streams = Vec::with_capacity(n);
    for task in tasks {
        streams.push(tokio::time::timeout(PATIENCE, task).await.expect("subscribers synced").unwrap());
    }
    let since = streams[0].1;
    assert!(streams.iter().all(|(_, s)| *s == since), "every subscriber synced at one revision");

    // Phase 2: the subscribers go away (gateway stopped, or they drop);
    // CHANGES puts to etcd meanwhile.
    let gateway = match catch_ups {
        Some(_) => {
            gateway.stop();
            drop(streams);
            None
        }
        None => {
            drop(streams);
            Some(gateway)
        }
    };
    let mut last = since;
    for i in 0..settings.changes {
        let put = etcd.put(format!("restart/k{}", i % 100), format!("v{i}"), None).await.unwrap();
        last = u64::try_from(put.header().unwrap().revision()).unwrap();
    }
    assert_eq!(last, since + settings.changes, "only the benchmark writes");
    let gateway = match gateway {
        Some(g) => g,
        None => Gateway::start(settings, free_port(), catch_ups.unwrap()).await,
    };

    // Phase 3: every subscriber resumes at once.
    let max_waiting = Arc::new(AtomicU64::new(0));
    let max_watchers = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (gw, etcd_url) = (gateway.url.clone(), settings.etcd.clone());
        let (max_waiting, max_watchers) = (Arc::clone(&max_waiting), Arc::clone(&max_watchers));
        async move {
            loop {
                let (g, e) = tokio::join!(metrics(&gw), metrics(&etcd_url));
                if let Some(w) = metric(&g, "etcd_cache_gateway_catch_ups_waiting") {
                    max_waiting.fetch_max(w as u64, Ordering::Relaxed);
                }
                if let Some(w) = metric(&e, "etcd_debugging_mvcc_watcher_total") {
                    max_watchers.fetch_max(w as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let started = Instant::now();
    let opens = Arc::new(Semaphore::new(1024));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (client, url, opens) = (client.clone(), gateway.url.clone(), Arc::clone(&opens));
        tasks.push(tokio::spawn(async move {
            let permit = opens.acquire_owned().await.unwrap();
            let events = Box::pin(
                open(&client, &url, Some(since))
                    .await
                    .bytes_stream()
                    .eventsource()
                    .map(|e| e.expect("SSE parses")),
            );
            drop(permit);
            until_revision(events, since + 1, last).await.map(|()| started.elapsed())
        }));
    }
    let mut times = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for task in tasks {
        match tokio::time::timeout(PATIENCE, task).await.expect("resumed within patience").unwrap() {
            Ok(t) => times.push(t),
            Err(e) => failures.push(e),
        }
    }
    sampler.abort();
    let rss = gateway.rss_kib();
    let text = metrics(&gateway.url).await;
    let outcome = |o: &str| {
        metric(&text, &format!("etcd_cache_gateway_catch_ups_total{{outcome=\"{o}\"}}")).unwrap_or(0.0) as u64
    };
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let row = match catch_ups {
        Some(bound) => format!("restart, max_catch_ups={bound}"),
        None => "no restart (history window)".into(),
    };
    println!(
        "restart: {row}: {n} subscribers x {} changes: all caught up in {:.2?} (p50 {:.2?}, p99 {:.2?}); \
         failed {} {:?}; catch-ups caught_up {} compacted {} failed {}; replays of etcd's history {}; \
         max queued {}; max etcd watchers {}; gateway RSS {} MiB",
        settings.changes,
        times.last().copied().unwrap_or_default(),
        if times.is_empty() { Duration::ZERO } else { pct(0.5) },
        if times.is_empty() { Duration::ZERO } else { pct(0.99) },
        failures.len(),
        failures.first(),
        outcome("caught_up"),
        outcome("compacted"),
        outcome("failed"),
        metric(&text, "etcd_cache_gateway_catch_up_replays_total").unwrap_or(0.0) as u64,
        max_waiting.load(Ordering::Relaxed),
        max_watchers.load(Ordering::Relaxed),
        rss / 1024,
    );
    gateway.stop();
}
