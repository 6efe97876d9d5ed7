//! The clients of a run: writers straight to etcd (puts, deletes, multi-key
//! transactions, leases that expire), SSE subscribers that disconnect and
//! resume with `Last-Event-ID` on either replica, and REST readers. Each
//! records what it saw for the checker; none of them judges it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checker::{Event, Kv, Read, Received, Selection};
use crate::oracle::PREFIX;

/// Groups of keys: `g0/` .. `g3/`.
const GROUPS: usize = 4;
/// Keys per group: `k0` .. `k7`.
const KEYS_PER_GROUP: usize = 8;
/// Time to live of a leased key; short, so leases expire during the run.
const LEASE_TTL_SECONDS: i64 = 2;

/// The namespace's name in the gateway.
pub const NAMESPACE: &str = "chaos";

fn random_key(rng: &mut fastrand::Rng) -> String {
    format!("g{}/k{}", rng.usize(..GROUPS), rng.usize(..KEYS_PER_GROUP))
}

/// A selection drawn from `rng`: every shape the API offers.
pub fn random_selection(rng: &mut fastrand::Rng) -> Selection {
    match rng.u8(..4) {
        0 => Selection::All,
        1 => Selection::Prefix(format!("g{}/", rng.usize(..GROUPS))),
        2 => Selection::Key(random_key(rng)),
        _ => {
            let (a, b) = (random_key(rng), random_key(rng));
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            Selection::Range(start, format!("{end}\u{7f}"))
        }
    }
}

/// The query parameters of a selection (keys are plain ASCII).
pub fn selection_query(selection: &Selection) -> String {
    match selection {
        Selection::All => String::new(),
        Selection::Prefix(p) => format!("prefix={p}"),
        Selection::Key(k) => format!("key={k}"),
        Selection::Range(s, e) => format!("start={s}&end={}", e.replace('\u{7f}', "%7F")),
    }
}

/// What the writers share: the highest revision etcd acknowledged.
#[derive(Default)]
pub struct Acked {
    /// The highest acknowledged revision (shared with the compactor).
    pub revision: Arc<AtomicI64>,
    /// Writes acknowledged.
    pub writes: AtomicU64,
    /// Writes that failed (a fault: outcome unknown, etcd's history decides).
    pub failed: AtomicU64,
}

/// Writes until `stop`: one operation, then a pause of `pause_ms`.
pub async fn writer(
    mut client: Client,
    seed: u64,
    pause_ms: (u64, u64),
    acked: Arc<Acked>,
    stop: CancellationToken,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !stop.is_cancelled() {
        let result = tokio::time::timeout(Duration::from_secs(5), write_one(&mut client, &mut rng)).await;
        match result {
            Ok(Ok(revision)) => {
                acked.revision.fetch_max(revision, Ordering::SeqCst);
                acked.writes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                acked.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let pause = Duration::from_millis(rng.u64(pause_ms.0..=pause_ms.1));
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One random write: a put, a delete, a prefix delete, a multi-key
/// transaction or a leased put; the revision etcd acknowledged.
pub async fn write_one(client: &mut Client, rng: &mut fastrand::Rng) -> Result<i64, etcd_client::Error> {
    let full = |k: &str| format!("{PREFIX}{k}");
    let value = format!("v{}", rng.u32(..1_000_000));
    let header = match rng.u8(..10) {
        0..=3 => client.put(full(&random_key(rng)), value, None).await?.take_header(),
        4 => client.delete(full(&random_key(rng)), None).await?.take_header(),
        5 => {
            // Several keys deleted at one revision.
            let group = full(&format!("g{}/", rng.usize(..GROUPS)));
            client.delete(group, Some(DeleteOptions::new().with_prefix())).await?.take_header()
        }
        6 | 7 => {
            // A multi-key transaction: distinct keys, puts and a delete.
            let mut keys: Vec<String> = (0..4).map(|_| random_key(rng)).collect();
            keys.sort();
            keys.dedup();
            let mut ops: Vec<TxnOp> =
                keys.iter().skip(1).map(|k| TxnOp::put(full(k), format!("{value}-{k}"), None)).collect();
            ops.push(TxnOp::delete(full(&keys[0]), None));
            client.txn(Txn::new().and_then(ops)).await?.take_header()
        }
        _ => {
            let lease = client.lease_grant(LEASE_TTL_SECONDS, None).await?.id();
            let options = PutOptions::new().with_lease(lease);
            client.put(full(&random_key(rng)), value, Some(options)).await?.take_header()
        }
    };
    Ok(header.map_or(0, |h| h.revision()))
}

/// What a subscriber does and saw.
pub struct SubscriberLog {
    /// What it watched.
    pub selection: Selection,
    /// Everything received, with its connects.
    pub log: Vec<Received>,
    /// Streams opened.
    pub connects: u64,
    /// Of which on a replica other than the previous stream's.
    pub switches: u64,
}

/// How a subscriber behaves.
pub struct SubscriberPlan {
    /// Its random choices.
    pub seed: u64,
    /// Base URLs of the replicas.
    pub replicas: Vec<String>,
    /// What to watch.
    pub selection: Selection,
    /// First stream: `since` the start revision, else `snapshot=true`.
    pub since: Option<i64>,
    /// Longest voluntary stream life.
    pub max_stream_ms: u64,
}

/// Watches until `fence` is set and the stream is complete up to it (or
/// `give_up` passes), disconnecting and resuming at random before that.
pub async fn subscriber(
    plan: SubscriberPlan,
    mut fence: watch::Receiver<Option<i64>>,
    give_up: CancellationToken,
) -> SubscriberLog {
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().expect("client");
    let mut out =
        SubscriberLog { selection: plan.selection.clone(), log: Vec::new(), connects: 0, switches: 0 };
    // `Last-Event-ID` as EventSource keeps it: the last `id:` received.
    let mut last_id: Option<i64> = None;
    let mut in_snapshot = false;
    let mut replica = rng.usize(..plan.replicas.len());
    let query = selection_query(&plan.selection);
    while !give_up.is_cancelled() {
        let target = *fence.borrow();
        if target.is_some_and(|f| last_id.is_some_and(|id| id >= f) && !in_snapshot) {
            break;
        }
        let next = rng.usize(..plan.replicas.len());
        out.switches += u64::from(out.connects > 0 && next != replica);
        replica = next;
        let (since, snapshot) = match (last_id, plan.since) {
            (Some(id), _) => (Some(id), false),
            (None, Some(s)) => (Some(s), false),
            (None, None) => (None, true),
        };
        let mut url = format!(
            "{}/v1/namespaces/{NAMESPACE}/watch?progress_interval=1s&{query}",
            plan.replicas[replica]
        );
        if snapshot {
            url.push_str("&snapshot=true");
        }
        let mut request = http.get(&url);
        if let Some(s) = since {
            request = request.header("last-event-id", s.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status() == 200 => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(rng.u64(50..300))).await;
                continue;
            }
        };
        out.connects += 1;
        out.log.push(Received::Connect { replica, since, snapshot });
        in_snapshot = snapshot;
        let life = Duration::from_millis(rng.u64(200..=plan.max_stream_ms));
        let voluntary_end = Instant::now() + life;
        let mut events = response.bytes_stream().eventsource();
        loop {
            let fenced = fence.borrow().is_some();
            if let Some(f) = *fence.borrow() {
                if last_id.is_some_and(|id| id >= f) && !in_snapshot {
                    break;
                }
            }
            let end = if fenced { Instant::now() + Duration::from_secs(3600) } else { voluntary_end };
            let item = tokio::select! {
                () = give_up.cancelled() => break,
                () = tokio::time::sleep_until(end) => break,
                _ = fence.changed(), if !fenced => continue,
                item = events.next() => item,
            };
            let Some(Ok(event)) = item else { break };
            let Some(received) = parse_event(&event.event, &event.data) else { continue };
            match &received {
                Received::Change { revision, .. }
                | Received::Synced(revision)
                | Received::Progress(revision) => {
                    last_id = Some(*revision);
                }
                _ => {}
            }
            match &received {
                Received::Reset { .. } => in_snapshot = true,
                Received::Synced(_) => in_snapshot = false,
                _ => {}
            }
            let ends = matches!(received, Received::Error(_));
            out.log.push(received);
            if ends {
                // As EventSource does, wait (less than the `retry:` asked,
                // to press the gateway) before resuming.
                tokio::time::sleep(Duration::from_millis(rng.u64(100..1000))).await;
                break;
            }
        }
    }
    out
}

/// One SSE event as the checker sees it (`None` for ones it ignores).
fn parse_event(name: &str, data: &str) -> Option<Received> {
    let data: Value = serde_json::from_str(data).ok()?;
    let revision = data["revision"].as_i64().unwrap_or(-1);
    Some(match name {
        "change" => Received::Change {
            revision,
            events: data["events"].as_array().into_iter().flatten().map(parse_change).collect(),
        },
        "synced" => Received::Synced(revision),
        "progress" => Received::Progress(revision),
        "reset" => Received::Reset { code: data["code"].as_str().unwrap_or("?").to_owned(), revision },
        "snapshot" => Received::Snapshot { revision, kvs: parse_kvs(&data["kvs"]) },
        "error" => Received::Error(data["code"].as_str().unwrap_or("?").to_owned()),
        _ => return None,
    })
}

fn parse_change(event: &Value) -> Event {
    let kv = &event["kv"];
    if event["type"] == "delete" {
        Event::Delete {
            key: kv["key"].as_str().unwrap_or("?").to_owned(),
            mod_revision: kv["mod_revision"].as_i64().unwrap_or(-1),
        }
    } else {
        Event::Put(parse_kv(kv))
    }
}

fn parse_kv(kv: &Value) -> Kv {
    Kv {
        key: kv["key"].as_str().unwrap_or("?").to_owned(),
        value: kv["value"].as_str().unwrap_or("?").to_owned(),
        create_revision: kv["create_revision"].as_i64().unwrap_or(-1),
        mod_revision: kv["mod_revision"].as_i64().unwrap_or(-1),
        version: kv["version"].as_i64().unwrap_or(-1),
        lease: kv["lease"].as_str().and_then(|l| l.parse().ok()).unwrap_or(-1),
    }
}

fn parse_kvs(kvs: &Value) -> Vec<Kv> {
    kvs.as_array().into_iter().flatten().map(parse_kv).collect()
}

/// What readers saw.
#[derive(Default)]
pub struct ReaderLog {
    /// Answers with a body to check.
    pub reads: Vec<Read>,
    /// Answers by status (e.g. 503 while etcd is away before the first sync).
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Answers no fault explains (a 500, a 400 to a valid request).
    pub unexpected: Vec<String>,
    /// `consistent=true` reads answered 410 `compacted`.
    pub consistent_compacted: u64,
}

/// Reads at random until `stop`: one key or a range, some `consistent=true`.
pub async fn reader(
    seed: u64,
    replicas: Vec<String>,
    acked: Arc<Acked>,
    stop: CancellationToken,
) -> ReaderLog {
    let mut rng = fastrand::Rng::with_seed(seed);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut out = ReaderLog::default();
    while !stop.is_cancelled() {
        let base = &replicas[rng.usize(..replicas.len())];
        let selection = random_selection(&mut rng);
        let url = match &selection {
            Selection::Key(k) => format!("{base}/v1/namespaces/{NAMESPACE}/kv/{k}?"),
            other => format!("{base}/v1/namespaces/{NAMESPACE}/kv?{}&", selection_query(other)),
        };
        let latest = acked.revision.load(Ordering::SeqCst);
        // The current state, a linearizable read, or a past revision.
        let (url, at_least) = match rng.u8(..4) {
            0 | 1 => (url, 0),
            2 => (format!("{url}consistent=true"), latest),
            _ => (format!("{url}revision={}", (latest - rng.i64(0..200)).max(1)), 0),
        };
        if let Ok(response) = http.get(&url).send().await {
            let status = response.status().as_u16();
            *out.statuses.entry(status).or_default() += 1;
            let revision = response
                .headers()
                .get("x-etcd-revision")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            let cache_status = response
                .headers()
                .get("x-cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            // 410 to a `revision=` read: etcd compacted it, as documented.
            // 410 to `consistent=true` is a finding (RELIABILITY.md): the
            // fallback read pins etcd's revision from before its wait.
            match status {
                200 | 404 | 503 | 504 => {}
                410 if url.contains("revision=") => {}
                410 if url.contains("consistent=true") => out.consistent_compacted += 1,
                _ => out.unexpected.push(format!("{status} for {url}: {body}")),
            }
            let kvs = match (status, &selection) {
                (200, Selection::Key(_)) => Some(vec![parse_kv(&body["kv"])]),
                (200, _) => Some(parse_kvs(&body["kvs"])),
                (404, Selection::Key(_)) if body["code"] == "key_not_found" => Some(Vec::new()),
                _ => None,
            };
            if let (Some(kvs), Some(revision)) = (kvs, revision) {
                let request = format!("{status} {cache_status} for {url}");
                out.reads.push(Read { selection, revision, kvs, at_least, request });
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(5..40))).await;
    }
    out
}
