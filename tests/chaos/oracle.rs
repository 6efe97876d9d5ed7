//! etcd's own history of the namespace, recorded by a direct etcd watch
//! (etcd-client, no gateway code) from the start revision, resumed after
//! every fault from the last revision it holds. Compaction never passes it:
//! the compactor asks the recorder how far it got.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, KeyValue, WatchOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checker::{Event, History, Kv};

/// The namespace prefix in etcd.
pub const PREFIX: &str = "chaos/";

/// The recorder's shared state.
pub struct Oracle {
    /// The history so far.
    pub history: Arc<Mutex<History>>,
    /// Complete up to here (read without the lock by the compactor).
    pub head: Arc<AtomicI64>,
    /// Why the recorder stopped, if it failed (etcd compacted below it).
    pub failure: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

/// A client to every member, with keep-alive so a frozen member fails the
/// watch instead of hanging it.
pub async fn connect(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true);
    Client::connect(endpoints, Some(options)).await.expect("a lazy connect does not fail")
}

/// A relative kv of etcd's.
pub fn kv(kv: &KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).trim_start_matches(PREFIX).to_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

impl Oracle {
    /// Starts recording after `start` (the namespace is empty then).
    pub fn start(endpoints: Vec<String>, start: i64, stop: CancellationToken) -> Self {
        let history = Arc::new(Mutex::new(History::new(start, [])));
        let head = Arc::new(AtomicI64::new(start));
        let failure = Arc::new(Mutex::new(None));
        let (h, hd, f) = (history.clone(), head.clone(), failure.clone());
        let task = tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                result = record(endpoints, h, hd) => *f.lock().unwrap() = Some(result),
            }
        });
        Self { history, head, failure, task }
    }

    /// Waits (bounded) until the history is complete up to `revision`.
    pub async fn reach(&self, revision: i64) -> Result<(), String> {
        for _ in 0..1200 {
            if let Some(f) = self.failure.lock().unwrap().clone() {
                return Err(f);
            }
            if self.head.load(Ordering::SeqCst) >= revision {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("etcd's history did not reach {revision} within 60 s"))
    }

    /// Stops recording; the history so far.
    pub fn finish(self) -> History {
        self.task.abort();
        self.history.lock().unwrap().clone()
    }
}

/// Records until etcd cannot give the next revision (returns why).
async fn record(endpoints: Vec<String>, history: Arc<Mutex<History>>, head: Arc<AtomicI64>) -> String {
    let mut client = connect(&endpoints).await;
    // Bounded by the run: the caller's stop token ends it.
    loop {
        let from = head.load(Ordering::SeqCst) + 1;
        // No progress notifications: etcd 3.4 may send one ahead of pending
        // events (etcd #15220); the run ends with a fence write instead.
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let Ok(mut stream) = client.watch(PREFIX, Some(options)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while let Ok(Some(resp)) = stream.message().await {
            if resp.compact_revision() > 0 {
                return format!("etcd compacted to {} below the recorder at {from}", resp.compact_revision());
            }
            if resp.canceled() {
                break;
            }
            let mut batch: Vec<(i64, Vec<Event>)> = Vec::new();
            for e in resp.events() {
                let Some(k) = e.kv() else { continue };
                let revision = k.mod_revision();
                let event = match e.event_type() {
                    EventType::Put => Event::Put(kv(k)),
                    EventType::Delete => Event::Delete { key: kv(k).key, mod_revision: revision },
                };
                match batch.last_mut() {
                    Some((r, events)) if *r == revision => events.push(event),
                    _ => batch.push((revision, vec![event])),
                }
            }
            let mut h = history.lock().unwrap();
            for (revision, events) in batch {
                if let Err(e) = h.push(revision, events) {
                    return e;
                }
            }
            head.store(h.head(), Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
