//! The value store: one moka cache per gateway, keyed by `(namespace, key,
//! mod_revision)`. A version's value never changes, so entries never need
//! invalidating for correctness; the question is only how long to keep them.
//! A miss is loaded from etcd through the [`Source`](super::Source).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::types::Revision;
use super::upstream::UpstreamError;

/// Bytes counted per cached value beyond key and value: moka's entry and
/// its bookkeeping, the `Bytes` handles, the key's allocation and the
/// hash-table slot. Measured as RSS growth per value (574 bytes with 31-byte
/// keys and 100-byte values, BENCHMARKS.md), so `max_value_bytes` bounds real
/// memory, not just payload.
pub const ENTRY_OVERHEAD_BYTES: usize = 576;

/// Identity of one cached value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueKey {
    /// Which namespace (index in the configuration).
    pub namespace: u32,
    /// The key, relative to the namespace.
    pub key: Bytes,
    /// The version's `mod_revision`.
    pub mod_revision: Revision,
}

/// Counters of the value store, per namespace.
#[derive(Debug, Default)]
pub struct ValueStats {
    /// Values found in memory.
    pub hits: AtomicU64,
    /// Values that had to be loaded.
    pub misses: AtomicU64,
    /// Requests to etcd made to load values.
    pub read_throughs: AtomicU64,
}

impl ValueStats {
    pub(crate) fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The shared value cache.
#[derive(Clone)]
pub struct ValueStore {
    cache: moka::future::Cache<ValueKey, Bytes>,
    /// Values dropped for the byte budget or for being idle (not the ones
    /// invalidated because their version left the window).
    evictions: Arc<AtomicU64>,
}

impl ValueStore {
    /// A store bounded by `max_bytes` (key + value + overhead), dropping values
    /// idle for `idle` when given.
    pub fn new(max_bytes: u64, idle: Option<Duration>) -> Self {
        let mut builder =
            moka::future::Cache::builder().max_capacity(max_bytes).weigher(|k: &ValueKey, v: &Bytes| {
                u32::try_from(k.key.len() + v.len() + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
            });
        if let Some(idle) = idle {
            builder = builder.time_to_idle(idle);
        }
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evictions);
        builder = builder.eviction_listener(move |_, _, cause| {
            if matches!(
                cause,
                moka::notification::RemovalCause::Size | moka::notification::RemovalCause::Expired
            ) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self { cache: builder.build(), evictions }
    }

    /// Values evicted so far for the byte budget or idleness (counted when
    /// moka's maintenance runs).
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The value if cached.
    pub async fn get(&self, key: &ValueKey) -> Option<Bytes> {
        self.cache.get(key).await
    }

    /// Caches a value (moka may decline to admit it when full).
    pub async fn insert(&self, key: ValueKey, value: Bytes) {
        self.cache.insert(key, value).await;
    }

    /// The value, loading it with `load` on a miss; concurrent misses of one
    /// key share one load.
    pub async fn get_or_load<F>(&self, key: ValueKey, load: F) -> Result<Bytes, Arc<UpstreamError>>
    where
        F: Future<Output = Result<Bytes, UpstreamError>>,
    {
        self.cache.try_get_with(key, load).await
    }

    /// Drops a value that can no longer be read.
    pub async fn invalidate(&self, key: &ValueKey) {
        self.cache.invalidate(key).await;
    }

    /// Runs moka's pending maintenance (expiry, eviction); called from an
    /// interval task so request paths never pay for it.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Bytes currently counted against the budget (approximate until maintenance runs).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Number of cached values (approximate until maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}
