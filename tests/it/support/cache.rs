//! A namespace's cache and reflector running against a real etcd, driven
//! through the library (no HTTP), plus helpers comparing it with etcd.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_cache_gateway::cache::{At, EventKind, KeyRange, ResetReason, Revision, WatchCache};
use etcd_cache_gateway::config::{Config, NamespaceConfig};
use etcd_cache_gateway::etcd::EtcdClient;
use etcd_cache_gateway::fanout::{Subscription, Update};
use etcd_cache_gateway::namespaces::Namespaces;
use etcd_client::GetOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Gateway, wait_until};

/// How long a namespace may take to load in tests.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// One namespace's cache, kept fresh by its reflector.
pub struct CacheHarness {
    /// The cache under test.
    pub cache: WatchCache,
    /// The failover client the reflector uses.
    pub client: EtcdClient,
    /// The namespaces (for the shared value store).
    pub namespaces: Namespaces,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A test config with one namespace `test` on `prefix`.
pub fn config_for(endpoints: &[String], prefix: &str) -> Config {
    let mut config = Gateway::config(endpoints);
    config.namespaces =
        vec![NamespaceConfig { name: "test".into(), prefix: prefix.into(), max_subscribers: None }];
    config
}

impl CacheHarness {
    /// Starts the reflector and waits for the first load.
    pub async fn start(config: Config) -> Self {
        let harness = Self::start_unloaded(config).await;
        let cache = harness.cache.clone();
        wait_until("the namespace is loaded", LOAD_TIMEOUT, || {
            let ready = cache.status().is_ready();
            async move { ready }
        })
        .await;
        harness
    }

    /// Starts the reflector without waiting.
    pub async fn start_unloaded(config: Config) -> Self {
        config.validate().expect("valid test config");
        let client = EtcdClient::connect(&config.etcd).await.expect("etcd client");
        let namespaces = Namespaces::new(&config, &client);
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        namespaces.start(&config, &client, &tasks, &shutdown);
        let cache = namespaces.iter().next().expect("one namespace").cache.clone();
        Self { cache, client, namespaces, shutdown, tasks }
    }

    /// Waits until the cache's head reaches `revision`.
    pub async fn wait_head(&self, revision: Revision, timeout: Duration) {
        assert!(
            self.cache.wait_for(revision, timeout).await,
            "head {} did not reach {revision}",
            self.cache.head()
        );
    }

    /// Stops the reflector and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await.expect("reflector stops");
    }
}

impl Drop for CacheHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A comparable key-value: (relative key, value, create, mod, version, lease).
pub type Row = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// etcd's state of `prefix` at `revision`, with keys relative to the prefix.
pub async fn etcd_rows(client: &mut etcd_client::Client, prefix: &str, revision: Revision) -> Vec<Row> {
    let mut options = GetOptions::new().with_revision(revision);
    options = if prefix.is_empty() { options.with_all_keys() } else { options.with_prefix() };
    let key = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
    let mut kv = client.kv_client().max_decoding_message_size(64 << 20);
    let resp = kv.get(key, Some(options)).await.expect("etcd range");
    resp.kvs()
        .iter()
        .map(|kv| {
            let key = kv.key()[prefix.len()..].to_vec();
            (key, kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease())
        })
        .collect()
}

/// The cache's state at `revision`.
pub async fn cache_rows(cache: &WatchCache, revision: Revision) -> Vec<Row> {
    let snapshot = cache.snapshot(At::Exact(revision)).await.expect("snapshot");
    assert!(!snapshot.is_from_etcd(), "revision {revision} should be served from memory");
    let page = snapshot.range(&KeyRange::all(), 0, false).await.expect("range");
    page.kvs
        .into_iter()
        .map(|kv| {
            let m = kv.meta;
            (kv.key.to_vec(), kv.value.to_vec(), m.create_revision, m.mod_revision, m.version, m.lease)
        })
        .collect()
}

/// Asserts the cache equals etcd at `revision`.
pub async fn assert_equal_at(
    cache: &WatchCache,
    client: &mut etcd_client::Client,
    prefix: &str,
    revision: Revision,
) {
    let expected = etcd_rows(client, prefix, revision).await;
    let actual = cache_rows(cache, revision).await;
    assert_eq!(actual.len(), expected.len(), "key count at revision {revision}");
    assert!(actual == expected, "cache differs from etcd at revision {revision}");
}

/// What a recorded subscriber saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A batch: revision and its (kind, key) events.
    Batch(Revision, Vec<(EventKind, Vec<u8>)>),
    /// A reset, after which the recorder re-synced.
    Reset(ResetReason),
}

/// A subscriber draining updates into a list, re-syncing after resets.
pub struct Recorder {
    /// Everything seen so far.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Subscribes after `cursor`.
    pub fn start(cache: &WatchCache, cursor: Revision) -> Self {
        let mut sub = Subscription::new(cache, cursor);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(update) = sub.next().await {
                let item = match update {
                    Update::Batch(entry) => Seen::Batch(
                        entry.revision,
                        entry.events.iter().map(|e| (e.kind, e.kv.key.to_vec())).collect(),
                    ),
                    Update::Reset(reason) => {
                        sub.resync();
                        Seen::Reset(reason)
                    }
                };
                out.lock().unwrap().push(item);
            }
        });
        Self { seen, task }
    }

    /// The revisions of the batches seen.
    pub fn revisions(&self) -> Vec<Revision> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Seen::Batch(r, _) => Some(*r),
                Seen::Reset(_) => None,
            })
            .collect()
    }

    /// The resets seen.
    pub fn resets(&self) -> Vec<ResetReason> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Seen::Reset(r) => Some(*r),
                Seen::Batch(..) => None,
            })
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
