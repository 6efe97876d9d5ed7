//! One chaos run of one seed: a 3-node etcd cluster, one or two gateway
//! replicas behind relays, writers, subscribers and readers, compaction
//! every 200 ms and the seed's faults; then etcd's history against what
//! every client saw.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_cache_gateway::config::HumanDuration;
use etcd_client::CompactionOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checker::{Checked, Fault, check_reads, check_subscriber};
use crate::faults::{self, KINDS, Kind, Replica};
use crate::oracle::{self, Oracle, PREFIX};
use crate::support::{EtcdCluster, Gateway, Proxy};
use crate::workload::{self, Acked, NAMESPACE, SubscriberPlan};

/// Compaction interval, as etcd's robustness suite.
const COMPACTION_INTERVAL: Duration = Duration::from_millis(200);
/// How long subscribers may take to catch up to the fence at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest a fault may take to inject and heal.
const FAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// The shape of a run (the seed draws the rest).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time under faults.
    pub duration: Duration,
    /// SSE subscribers.
    pub subscribers: usize,
    /// Writers straight to etcd.
    pub writers: usize,
    /// REST readers.
    pub readers: usize,
}

/// What one run did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Runs with two replicas.
    pub two_replica_runs: u64,
    /// Faults injected by kind.
    pub faults: BTreeMap<Kind, u64>,
    /// Compactions etcd accepted.
    pub compactions: u64,
    /// etcd revisions in the namespace's history.
    pub revisions: u64,
    /// Writes acknowledged / failed.
    pub writes: (u64, u64),
    /// Streams opened, and of those on the other replica.
    pub connects: (u64, u64),
    /// The checker's totals.
    pub checked: Checked,
    /// Read answers by HTTP status.
    pub read_statuses: BTreeMap<u16, u64>,
    /// The gateways' catch-up counter by outcome.
    pub catch_ups: BTreeMap<String, f64>,
    /// The gateways' reset counter by reason.
    pub gateway_resets: BTreeMap<String, f64>,
    /// The gateways' etcd watch restarts by reason.
    pub watch_restarts: BTreeMap<String, f64>,
    /// Read answers no fault explains (status and body).
    pub unexpected_answers: Vec<String>,
    /// `consistent=true` reads answered 410 `compacted`.
    pub consistent_compacted: u64,
    /// Failures of the harness itself (a fault that could not heal, etcd's
    /// history lost): the run proves nothing then.
    pub harness_errors: Vec<String>,
    /// Wall time.
    pub wall: Duration,
}

impl Outcome {
    /// Adds another run's figures.
    pub fn merge(&mut self, other: Outcome) {
        self.seeds.extend(other.seeds);
        self.two_replica_runs += other.two_replica_runs;
        for (k, v) in other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.compactions += other.compactions;
        self.revisions += other.revisions;
        self.writes = (self.writes.0 + other.writes.0, self.writes.1 + other.writes.1);
        self.connects = (self.connects.0 + other.connects.0, self.connects.1 + other.connects.1);
        self.checked.merge(other.checked);
        for (k, v) in other.read_statuses {
            *self.read_statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.catch_ups {
            *self.catch_ups.entry(k).or_default() += v;
        }
        for (k, v) in other.gateway_resets {
            *self.gateway_resets.entry(k).or_default() += v;
        }
        for (k, v) in other.watch_restarts {
            *self.watch_restarts.entry(k).or_default() += v;
        }
        self.harness_errors.extend(other.harness_errors);
        self.unexpected_answers.extend(other.unexpected_answers);
        self.consistent_compacted += other.consistent_compacted;
        self.wall += other.wall;
    }

    /// The figures, one per line.
    pub fn report(&self) -> String {
        let c = &self.checked;
        let mut lines = vec![
            format!("runs: {} (two replicas: {})", self.seeds.len(), self.two_replica_runs),
            format!("seeds: {:?}", self.seeds),
            format!("wall time: {:.0} s", self.wall.as_secs_f64()),
        ];
        for kind in KINDS {
            lines.push(format!("fault {kind}: {}", self.faults.get(&kind).copied().unwrap_or(0)));
        }
        lines.extend([
            format!("compactions: {}", self.compactions),
            format!("etcd revisions: {}", self.revisions),
            format!("writes acknowledged: {}, failed: {}", self.writes.0, self.writes.1),
            format!("streams opened: {}, on the other replica: {}", self.connects.0, self.connects.1),
            format!("changes checked: {}, events in them: {}", c.changes, c.events),
            format!("snapshots checked: {}", c.snapshots),
            format!("reads checked: {}, answers by status: {:?}", c.reads, self.read_statuses),
            format!("resets received by code: {:?}", c.resets),
            format!("in-stream errors by code: {:?}", c.errors),
            format!("gateway resets by reason: {:?}", self.gateway_resets),
            format!("gateway catch-ups by outcome: {:?}", self.catch_ups),
            format!("gateway etcd watch restarts by reason: {:?}", self.watch_restarts),
            format!("lost: {}", c.count(Fault::Lost)),
            format!("duplicated: {}", c.count(Fault::Duplicated)),
            format!("reordered: {}", c.count(Fault::Reordered)),
            format!("wrong events: {}", c.count(Fault::WrongEvents)),
            format!("wrong snapshots: {}", c.count(Fault::WrongSnapshot)),
            format!("wrong reads: {}", c.count(Fault::WrongRead)),
            format!("protocol: {}", c.count(Fault::Protocol)),
            format!(
                "unexpected answers: {} {:?}",
                self.unexpected_answers.len(),
                self.unexpected_answers.iter().take(5).collect::<Vec<_>>()
            ),
            format!("consistent reads answered 410 compacted: {}", self.consistent_compacted),
            format!("harness errors: {:?}", self.harness_errors),
        ]);
        lines.join("\n")
    }
}

/// Runs `seed` and checks it.
pub async fn run(seed: u64, settings: &Settings) -> Outcome {
    let began = Instant::now();
    println!("chaos: seed {seed} (replay with CHAOS_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Outcome { seeds: vec![seed], ..Outcome::default() };
    let mut cluster = EtcdCluster::start().await;
    let endpoints = cluster.endpoints();
    let mut client = oracle::connect(&endpoints).await;
    let start = client.get("\0", None).await.expect("etcd answers").header().expect("header").revision();
    let stop = CancellationToken::new();
    // Its own token: it records past the end of the writes, up to the fence.
    let oracle = Oracle::start(endpoints.clone(), start, CancellationToken::new());

    let drawn = if rng.bool() { 2 } else { 1 };
    // `CHAOS_REPLICAS` overrides the draw (to tell replicas' logs apart).
    let replica_count = crate::env_number("CHAOS_REPLICAS", drawn).clamp(1, 2) as usize;
    out.two_replica_runs = u64::from(replica_count == 2);
    let history_revisions = [20, 200, 2000][rng.usize(..3)];
    let compaction_lag = [0, 50, 500][rng.usize(..3)];
    println!(
        "chaos: seed {seed}: {replica_count} replica(s), history_revisions {history_revisions}, compaction lag {compaction_lag}"
    );
    let mut replicas = Vec::new();
    for _ in 0..replica_count {
        let mut relays = Vec::new();
        for e in &endpoints {
            relays.push(Proxy::start(e).await);
        }
        let relay_endpoints: Vec<String> = relays.iter().map(Proxy::endpoint).collect();
        let mut config = Gateway::config_with_namespace(&relay_endpoints, NAMESPACE, PREFIX);
        config.cache.history_revisions = history_revisions;
        config.watch.max_catch_ups = 4;
        config.watch.max_stream_lifetime = HumanDuration::secs(5);
        let gateway = Gateway::start_ready(config.clone()).await;
        let addr = gateway.addr;
        config.listen = addr;
        replicas.push(Replica { relays, config, addr, gateway: Some(gateway), past: Vec::new() });
    }
    let urls: Vec<String> = replicas.iter().map(|r| format!("http://{}", r.addr)).collect();

    let acked = Arc::new(Acked::default());
    let mut writers = Vec::new();
    for _ in 0..settings.writers {
        let (c, a, s) = (client.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(workload::writer(c, rng.u64(..), (5, 25), a, s)));
    }
    let mut readers = Vec::new();
    for _ in 0..settings.readers {
        readers.push(tokio::spawn(workload::reader(rng.u64(..), urls.clone(), acked.clone(), stop.clone())));
    }
    let (fence_tx, fence_rx) = watch::channel(None);
    let give_up = CancellationToken::new();
    let mut subscribers = Vec::new();
    for _ in 0..settings.subscribers {
        let plan = SubscriberPlan {
            seed: rng.u64(..),
            replicas: urls.clone(),
            selection: workload::random_selection(&mut rng),
            since: rng.bool().then_some(start),
            max_stream_ms: 6000,
        };
        subscribers.push(tokio::spawn(workload::subscriber(plan, fence_rx.clone(), give_up.clone())));
    }
    let compactions = Arc::new(AtomicU64::new(0));
    let compactor = tokio::spawn(compact(
        client.clone(),
        oracle.head.clone(),
        compaction_lag,
        compactions.clone(),
        stop.clone(),
    ));

    let schedule = faults::schedule(&mut rng, &KINDS, replica_count, 1000);
    let under_faults = Instant::now();
    for fault in &schedule {
        if under_faults.elapsed() >= settings.duration {
            break;
        }
        tokio::time::sleep(fault.before).await;
        match tokio::time::timeout(FAULT_TIMEOUT, faults::inject(fault, &mut cluster, &mut replicas)).await {
            Ok(Ok(())) => *out.faults.entry(fault.kind).or_default() += 1,
            Ok(Err(e)) => out.harness_errors.push(format!("{}: {e}", fault.kind)),
            Err(_) => {
                out.harness_errors.push(format!("{} did not heal within {FAULT_TIMEOUT:?}", fault.kind))
            }
        }
    }

    // The end: writes stop, a fence write marks the last revision, and
    // every subscriber reads up to it.
    stop.cancel();
    for w in writers {
        let _ = w.await;
    }
    let _ = compactor.await;
    out.compactions = compactions.load(Ordering::SeqCst);
    out.writes = (acked.writes.load(Ordering::SeqCst), acked.failed.load(Ordering::SeqCst));
    let mut fence = None;
    for _ in 0..100 {
        if let Ok(r) = client.put(format!("{PREFIX}fence"), "end", None).await {
            fence = r.header().map(|h| h.revision());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(fence) = fence else {
        out.harness_errors.push("the fence write failed 100 times".into());
        return out;
    };
    fence_tx.send_replace(Some(fence));
    let give_up_timer = {
        let g = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
            g.cancel();
        })
    };
    let mut logs = Vec::new();
    for s in subscribers {
        logs.push(s.await.expect("subscriber task"));
    }
    give_up_timer.abort();
    let mut reads = Vec::new();
    for r in readers {
        let log = r.await.expect("reader task");
        for (k, v) in log.statuses {
            *out.read_statuses.entry(k).or_default() += v;
        }
        reads.extend(log.reads);
        out.unexpected_answers.extend(log.unexpected);
        out.consistent_compacted += log.consistent_compacted;
    }
    if let Err(e) = oracle.reach(fence).await {
        out.harness_errors.push(e);
    }
    let mut history = oracle.finish();
    history.truncate(fence);
    out.revisions = history.revisions() as u64;
    for (i, log) in logs.iter().enumerate() {
        out.connects.0 += log.connects;
        out.connects.1 += log.switches;
        let name = format!("seed {seed} subscriber {i} {:?}", log.selection);
        out.checked.merge(check_subscriber(&history, &log.selection, &log.log, &name));
    }
    out.checked.merge(check_reads(&history, &reads));

    let mut samples = Vec::new();
    for replica in &mut replicas {
        samples.append(&mut replica.past);
        if let Some(s) = replica.scrape().await {
            samples.push(s);
        }
        if let Some(gw) = replica.gateway.take() {
            gw.shutdown().await;
        }
    }
    out.catch_ups = faults::by_label(&samples, "etcd_cache_gateway_catch_ups_total", "outcome");
    out.gateway_resets = faults::by_label(&samples, "etcd_cache_gateway_sse_resets_total", "reason");
    out.watch_restarts = faults::by_label(&samples, "etcd_cache_gateway_watch_restarts_total", "reason");
    out.wall = began.elapsed();
    for v in out.checked.violations.iter().take(20) {
        println!("chaos: seed {seed}: {v}");
    }
    out
}

/// Compacts every 200 ms to `lag` revisions behind `head`
/// (never past it: the checker needs every revision).
pub async fn compact(
    mut client: etcd_client::Client,
    head: Arc<std::sync::atomic::AtomicI64>,
    lag: i64,
    count: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut last = 0;
    while !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(COMPACTION_INTERVAL) => {}
        }
        let target = head.load(Ordering::SeqCst) - lag;
        if target <= last {
            continue;
        }
        let call = client.compact(target, Some(CompactionOptions::new()));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            last = target;
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}
