//! The configured namespaces, each with its own watch cache, fan-out memo
//! and reflector: the wiring between the configuration, the cache core, the
//! etcd layer and the surfaces.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::{
    CacheOptions, EvictionPolicy, NamespaceStatus, RevisionPolicy, TtlPolicy, ValueStore, WatchCache,
};
use crate::config::{CacheConfig, CachePolicy, Config, NamespaceConfig};
use crate::etcd::{EtcdClient, EtcdSource, Prefix, Reflector};
use crate::fanout::FrameMemo;

/// Interval of the value store's maintenance (expiry, eviction bookkeeping):
/// moka has no thread of its own, and request paths should not pay for it.
pub const VALUE_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// One namespace: its configuration and its cache.
#[derive(Debug)]
pub struct Namespace {
    /// Name, prefix and limits from the configuration.
    pub config: NamespaceConfig,
    /// The namespace's watch cache.
    pub cache: WatchCache,
    /// Renderings of its recent batches, shared by every stream.
    pub frames: FrameMemo,
}

/// The eviction policy the configuration asks for.
pub fn policy(config: &CacheConfig) -> Box<dyn EvictionPolicy> {
    match config.policy {
        CachePolicy::Revision => Box::new(RevisionPolicy { history_revisions: config.history_revisions }),
        CachePolicy::Ttl => {
            Box::new(TtlPolicy { ttl: config.ttl.map_or(Duration::from_secs(300), |t| t.get()) })
        }
    }
}

/// Every configured namespace, in configuration order.
#[derive(Debug, Clone)]
pub struct Namespaces {
    list: Arc<[Arc<Namespace>]>,
    values: ValueStore,
    /// The etcd client the caches read through, for surfaces that must ask
    /// etcd what the cache cannot answer (etcd's JSON API).
    etcd: EtcdClient,
}

impl std::fmt::Debug for ValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueStore").field("weighted_bytes", &self.weighted_bytes()).finish()
    }
}

impl Namespaces {
    /// Builds one (not yet loaded) cache per namespace, sharing one value store.
    pub fn new(config: &Config, client: &EtcdClient) -> Self {
        let policy_config = &config.cache;
        let probe = policy(policy_config);
        let values = ValueStore::new(policy_config.max_value_bytes.bytes(), probe.value_idle_timeout());
        let list = config
            .namespaces
            .iter()
            .enumerate()
            .map(|(id, ns)| {
                let options = CacheOptions {
                    name: ns.name.clone(),
                    id: u32::try_from(id).unwrap_or(u32::MAX),
                    consistent_read_timeout: policy_config.consistent_read_timeout.get(),
                    wait_timeout: policy_config.wait_timeout.get(),
                    max_history_bytes: policy_config.max_history_bytes.bytes(),
                };
                let loader = EtcdSource::new(client.clone(), Prefix::new(ns.prefix.clone()));
                let cache = WatchCache::new(options, values.clone(), Arc::new(loader), policy(policy_config));
                Arc::new(Namespace { config: ns.clone(), cache, frames: FrameMemo::default() })
            })
            .collect();
        Self { list, values, etcd: client.clone() }
    }

    /// Starts one reflector per namespace and the value store's maintenance,
    /// all ending on `shutdown`.
    pub fn start(
        &self,
        config: &Config,
        client: &EtcdClient,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        for ns in self.list.iter() {
            let reflector = Reflector::new(
                ns.cache.clone(),
                client.clone(),
                Prefix::new(ns.config.prefix.clone()),
                config.etcd.clone(),
                shutdown.clone(),
            );
            tasks.spawn(reflector.run());
        }
        let values = self.values.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(VALUE_MAINTENANCE_INTERVAL);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => values.run_pending_tasks().await,
                }
            }
        });
    }

    /// The namespace called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.list.iter().find(|ns| ns.config.name == name)
    }

    /// All namespaces.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Namespace>> {
        self.list.iter()
    }

    /// Whether every namespace finished its first load.
    pub fn all_ready(&self) -> bool {
        self.list.iter().all(|ns| ns.cache.status().is_ready())
    }

    /// Reports of every namespace.
    pub fn reports(&self) -> Vec<NamespaceStatus> {
        self.list.iter().map(|ns| ns.cache.report()).collect()
    }

    /// The etcd client.
    pub fn etcd(&self) -> &EtcdClient {
        &self.etcd
    }

    /// The shared value store.
    pub fn values(&self) -> &ValueStore {
        &self.values
    }
}
