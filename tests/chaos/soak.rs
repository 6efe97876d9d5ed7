//! The soak: the gateway binary (its RSS measured from /proc) in front of
//! a 3-node etcd cluster, many subscribers, a steady write rate, compaction
//! every 200 ms and a fault every interval, for a long time. Subscribers
//! check order on the fly (every change after the last id, no duplicate);
//! the full history check is the chaos runs' job.
//!
//! `scripts/soak.sh` runs it; parameters by environment: `SOAK_SECONDS`
//! (1800), `SOAK_SUBSCRIBERS` (1000), `SOAK_WRITES_PER_SEC` (200),
//! `SOAK_FAULT_EVERY` (seconds, 60), `SOAK_WARMUP` (seconds before the
//! start figure: a sixth of the run, at most 120), `SOAK_SEED`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::env_number;
use crate::faults::{self, KINDS, Kind, Replica};
use crate::oracle::{self, PREFIX};
use crate::support::{EtcdCluster, Proxy, free_port, scratch_dir, wait_until};
use crate::workload::{self, Acked, NAMESPACE};

/// Streams and events seen by all subscribers.
#[derive(Default)]
struct Tally {
    connects: AtomicU64,
    changes: AtomicU64,
    resets: AtomicU64,
    out_of_order: AtomicU64,
    connected: AtomicU64,
}

/// The gateway binary, killed on drop.
struct GatewayProcess {
    child: Child,
    base_url: String,
}

impl GatewayProcess {
    async fn start(dir: &Path, endpoints: &[String]) -> Self {
        let port = free_port();
        let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\n\
             [etcd]\nendpoints = [{}]\nconnect_timeout = \"1s\"\nrequest_timeout = \"2s\"\n\
             keep_alive_interval = \"1s\"\nkeep_alive_timeout = \"1s\"\nbackoff_min = \"50ms\"\nbackoff_max = \"500ms\"\n\
             [[namespaces]]\nname = \"{NAMESPACE}\"\nprefix = \"{PREFIX}\"\n\
             [watch]\nmax_stream_lifetime = \"5m\"\n\
             [log]\nfilter = \"warn\"\n",
            endpoints.join(", ")
        );
        let file = dir.join("gateway.toml");
        std::fs::write(&file, config).expect("write config");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_etcd-cache-gateway"))
            .arg("--config")
            .arg(&file)
            .env_remove("GATEWAY_CONFIG")
            .env_remove("GATEWAY_LISTEN")
            .env_remove("GATEWAY_ETCD__ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the gateway binary");
        let base_url = format!("http://127.0.0.1:{port}");
        let ready = format!("{base_url}/readyz");
        wait_until("the gateway binary is ready", Duration::from_secs(60), || {
            let ready = ready.clone();
            async move { reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        Self { child, base_url }
    }

    /// Resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `RssAnon:`, ...).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// RSS split into memory the process allocated and mapped files (its
    /// code), as "anon/file KiB".
    fn rss_split(&self) -> String {
        format!("{}/{} KiB", self.status_kib("RssAnon:"), self.status_kib("RssFile:"))
    }

    /// The allocator's figures from `/metrics`, in KiB, as
    /// "allocated/active/resident/metadata KiB": what the gateway holds
    /// against what its allocator keeps resident.
    async fn heap(&self) -> String {
        let text = match reqwest::get(format!("{}/metrics", self.base_url)).await {
            Ok(reply) => reply.text().await.unwrap_or_default(),
            Err(e) => return format!("unread ({e})"),
        };
        let figure = |name: &str| {
            let series = format!("etcd_cache_gateway_heap_{name}_bytes ");
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or("?".to_owned(), |bytes| (bytes / 1024).to_string())
        };
        let figures: Vec<String> = ["allocated", "active", "resident", "metadata"].map(figure).into();
        format!("{} KiB", figures.join("/"))
    }

    /// CPU time (user and system) the gateway has used, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which ends with the last ')'.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15, in clock ticks (100 a second on Linux).
        (ticks(11) + ticks(12)) / 100.0
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A subscriber that resumes forever with `Last-Event-ID` and checks order.
async fn subscriber(http: reqwest::Client, url: String, tally: Arc<Tally>, stop: CancellationToken) {
    let mut last_id: Option<i64> = None;
    while !stop.is_cancelled() {
        let mut request = http.get(&url);
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..1000))).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..1000))).await;
            continue;
        }
        tally.connects.fetch_add(1, Ordering::Relaxed);
        tally.connected.fetch_add(1, Ordering::Relaxed);
        let mut events = response.bytes_stream().eventsource();
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => break,
                item = events.next() => item,
            };
            let Some(Ok(event)) = item else { break };
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            let revision = data["revision"].as_i64();
            match (event.event.as_str(), revision) {
                ("change", Some(r)) => {
                    tally.changes.fetch_add(1, Ordering::Relaxed);
                    if last_id.is_some_and(|id| r <= id) {
                        tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    last_id = Some(r);
                }
                ("synced" | "progress", Some(r)) => last_id = Some(r),
                ("reset", _) => {
                    tally.resets.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        tally.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by scripts/soak.sh"]
async fn soak_keeps_rss_flat_and_streams_ordered_under_load_and_faults() {
    let seconds = env_number("SOAK_SECONDS", 1800);
    let subscribers = env_number("SOAK_SUBSCRIBERS", 1000) as usize;
    let rate = env_number("SOAK_WRITES_PER_SEC", 200).max(1);
    let fault_every = Duration::from_secs(env_number("SOAK_FAULT_EVERY", 60));
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..1_000_000_000));
    println!(
        "soak: seed {seed}, {seconds} s, {subscribers} subscribers, {rate} writes/s, a fault every {fault_every:?}"
    );
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut cluster = EtcdCluster::start().await;
    let endpoints = cluster.endpoints();
    let mut relays = Vec::new();
    for e in &endpoints {
        relays.push(Proxy::start(e).await);
    }
    let dir = scratch_dir("soak");
    let relay_endpoints: Vec<String> = relays.iter().map(Proxy::endpoint).collect();
    let mut gateway = GatewayProcess::start(dir.path(), &relay_endpoints).await;
    println!("soak: gateway pid {} log {}", gateway.child.id(), dir.path().join("gateway.log").display());
    let mut replicas = vec![Replica {
        relays,
        config: etcd_cache_gateway::config::Config::default(),
        addr: "127.0.0.1:0".parse().expect("addr"),
        gateway: None,
        past: Vec::new(),
    }];

    let stop = CancellationToken::new();
    let client = oracle::connect(&endpoints).await;
    let acked = Arc::new(Acked::default());
    // Enough writers that etcd's latency (a busy machine, faults) does not
    // cap the rate: each waits for its write before the next tick.
    let writers = (rate / 4).max(4);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (mut client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        let mut wrng = fastrand::Rng::with_seed(seed ^ w);
        let period = Duration::from_secs_f64(writers as f64 / rate as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.is_cancelled() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    workload::write_one(&mut client, &mut wrng),
                )
                .await
                {
                    Ok(Ok(r)) => {
                        acked.revision.fetch_max(r, Ordering::SeqCst);
                        acked.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        acked.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let compactions = Arc::new(AtomicU64::new(0));
    tasks.push(tokio::spawn(crate::run::compact(
        client.clone(),
        acked.revision.clone(),
        1000,
        compactions.clone(),
        stop.clone(),
    )));
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().expect("client");
    for _ in 0..subscribers {
        let selection = workload::random_selection(&mut rng);
        let url = format!(
            "{}/v1/namespaces/{NAMESPACE}/watch?progress_interval=10s&{}",
            gateway.base_url,
            workload::selection_query(&selection)
        );
        tasks.push(tokio::spawn(subscriber(http.clone(), url, tally.clone(), stop.clone())));
    }

    let began = Instant::now();
    let total = Duration::from_secs(seconds);
    // RSS is taken once the history window has filled (10,000 revisions:
    // 50 s at 200 writes/s): after two minutes, or a sixth of a short run,
    // unless SOAK_WARMUP says when (e.g. after a whole stream lifetime and
    // a round of every fault kind).
    let warmup = Duration::from_secs(env_number("SOAK_WARMUP", (seconds / 6).min(120)));
    let kinds: Vec<Kind> = KINDS.into_iter().filter(|k| *k != Kind::GatewayRestart).collect();
    let schedule = faults::schedule(&mut rng, &kinds, 1, 1 + (seconds as usize / 60));
    let mut faults_done = std::collections::BTreeMap::<Kind, u64>::new();
    let mut next_fault = fault_every;
    let mut rss_start = None;
    let mut samples = Vec::new();
    let mut schedule = schedule.into_iter();
    while began.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(gateway.running(), "the gateway exited (log in {})", dir.path().display());
        let elapsed = began.elapsed();
        if rss_start.is_none() && elapsed >= warmup {
            rss_start = Some(gateway.rss_kib());
            println!(
                "soak: start RSS {} KiB (anon/file {}; heap allocated/active/resident/metadata {}) at {:?} with {} streams",
                rss_start.unwrap_or(0),
                gateway.rss_split(),
                gateway.heap().await,
                elapsed,
                tally.connected.load(Ordering::Relaxed)
            );
        }
        if elapsed.as_secs() % 60 == 0 {
            let rss = gateway.rss_kib();
            samples.push(rss);
            println!(
                "soak: {:>5} s RSS {rss} KiB, heap {}, CPU {:.0} s, streams {}, changes {}, writes {}",
                elapsed.as_secs(),
                gateway.heap().await,
                gateway.cpu_seconds(),
                tally.connected.load(Ordering::Relaxed),
                tally.changes.load(Ordering::Relaxed),
                acked.writes.load(Ordering::Relaxed)
            );
        }
        if elapsed >= next_fault {
            next_fault += fault_every;
            if let Some(fault) = schedule.next() {
                match tokio::time::timeout(
                    Duration::from_secs(90),
                    faults::inject(&fault, &mut cluster, &mut replicas),
                )
                .await
                {
                    Ok(Ok(())) => *faults_done.entry(fault.kind).or_default() += 1,
                    other => println!("soak: fault {} failed: {other:?}", fault.kind),
                }
            }
        }
    }
    let (rss_end, rss_end_split, heap_end) = (gateway.rss_kib(), gateway.rss_split(), gateway.heap().await);
    // The last fault may have just dropped streams: they come back.
    for _ in 0..600 {
        if tally.connected.load(Ordering::Relaxed) == subscribers as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let streams_at_end = tally.connected.load(Ordering::Relaxed);
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let writes = acked.writes.load(Ordering::Relaxed);
    println!("soak: SUMMARY");
    println!("duration: {:.0} s, seed {seed}", began.elapsed().as_secs_f64());
    println!(
        "subscribers: {subscribers}, streams open at the end: {streams_at_end}, streams opened: {}",
        tally.connects.load(Ordering::Relaxed)
    );
    println!(
        "writes acknowledged: {writes} ({:.0}/s), failed: {}",
        writes as f64 / began.elapsed().as_secs_f64(),
        acked.failed.load(Ordering::Relaxed)
    );
    println!("compactions: {}", compactions.load(Ordering::Relaxed));
    println!("faults: {faults_done:?}");
    println!(
        "changes received: {}, resets: {}",
        tally.changes.load(Ordering::Relaxed),
        tally.resets.load(Ordering::Relaxed)
    );
    println!("out of order or duplicated: {}", tally.out_of_order.load(Ordering::Relaxed));
    println!("gateway CPU: {:.0} s", gateway.cpu_seconds());
    println!(
        "RSS start: {} KiB, end: {rss_end} KiB (anon/file {rss_end_split}; heap {heap_end}), per minute: {samples:?}",
        rss_start.unwrap_or(0)
    );
    assert_eq!(tally.out_of_order.load(Ordering::Relaxed), 0, "a change at or below the last id");
    assert_eq!(streams_at_end, subscribers as u64, "every subscriber has a stream at the end");
}
