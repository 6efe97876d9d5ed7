//! The value store: where the values of the versions the index names are
//! kept, under one byte budget for the whole gateway (`max_value_bytes`).
//!
//! Two places, one budget. With a policy that keeps values until their
//! version leaves the window (`revision`), values are kept *with the index*
//! (in its [`Stored`](super::Stored) entries): no second map, no per-entry
//! bookkeeping, shared with the events that wrote them, and dropped with the
//! last index version that holds them. That takes most of the budget; once
//! it is spent, further values go to the moka cache, keyed by `(namespace,
//! key, mod_revision)`, which also holds what reads load from etcd and which
//! evicts by its share of the budget. With a policy that drops idle values
//! (`ttl`), every value is in moka (only moka tracks idleness per value).
//! A version's value never changes, so nothing ever needs invalidating for
//! correctness; a miss is loaded from etcd through the
//! [`Source`](super::Source).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::types::Revision;
use super::upstream::UpstreamError;

/// Bytes counted per value in moka beyond key and value: moka's entry and
/// its bookkeeping, the `Bytes` handles, the key's allocation and the
/// hash-table slot. Measured as RSS growth per value (574 bytes with 31-byte
/// keys and 100-byte values, BENCHMARKS.md), so `max_value_bytes` bounds real
/// memory, not just payload.
pub const ENTRY_OVERHEAD_BYTES: usize = 576;

/// Bytes counted per value kept with the index beyond its length: the
/// allocation's header and rounding (its handle is part of the index entry).
pub const INLINE_OVERHEAD_BYTES: usize = 16;

/// With values kept with the index, moka gets 1/`READ_THROUGH_SHARE` of the
/// budget (values beyond the rest, and what reads load from etcd).
const READ_THROUGH_SHARE: u64 = 8;

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

/// The bytes of values kept with the index, against their share of the budget.
#[derive(Debug, Default)]
struct Inline {
    limit: u64,
    bytes: AtomicU64,
    count: AtomicU64,
}

/// The shared value store.
#[derive(Clone)]
pub struct ValueStore {
    cache: moka::future::Cache<ValueKey, Bytes>,
    /// Values dropped for the byte budget or for being idle (not the ones
    /// invalidated because their version left the window).
    evictions: Arc<AtomicU64>,
    inline: Arc<Inline>,
}

impl ValueStore {
    /// A store bounded by `max_bytes` (key + value + overhead). With `idle`,
    /// values idle that long are dropped, and all of them are in moka;
    /// without, values are kept with the index while 7/8 of the budget
    /// allows, and moka gets the rest.
    pub fn new(max_bytes: u64, idle: Option<Duration>) -> Self {
        let (inline_limit, cache_bytes) = match idle {
            Some(_) => (0, max_bytes),
            None => {
                // Never 0: moka takes a capacity of 0 as "no cache at all",
                // which would neither keep nor count what it turns away.
                let read_through = (max_bytes / READ_THROUGH_SHARE).max(1);
                (max_bytes.saturating_sub(read_through), read_through)
            }
        };
        let mut builder =
            moka::future::Cache::builder().max_capacity(cache_bytes).weigher(|k: &ValueKey, v: &Bytes| {
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
        let inline = Arc::new(Inline { limit: inline_limit, ..Inline::default() });
        Self { cache: builder.build(), evictions, inline }
    }

    /// Whether a value of `len` bytes may be kept with the index; if so, it
    /// is charged to the budget until [`ValueStore::release_inline`].
    pub fn admit_inline(&self, len: usize) -> bool {
        let cost = (len + INLINE_OVERHEAD_BYTES) as u64;
        let inline = &self.inline;
        let admitted = inline
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
                (bytes + cost <= inline.limit).then_some(bytes + cost)
            })
            .is_ok();
        if admitted {
            inline.count.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// `count` values of `len` bytes in total kept with the index are gone
    /// (their versions left the window, or a re-list replaced the index).
    pub fn release_inline(&self, len: u64, count: u64) {
        let cost = len + count * INLINE_OVERHEAD_BYTES as u64;
        self.inline.bytes.fetch_sub(cost, Ordering::Relaxed);
        self.inline.count.fetch_sub(count, Ordering::Relaxed);
    }

    /// Bytes of values kept with the index (with their overhead).
    pub fn inline_bytes(&self) -> u64 {
        self.inline.bytes.load(Ordering::Relaxed)
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

    /// Bytes currently counted against the budget: values kept with the
    /// index and in moka (moka's part is approximate until maintenance runs).
    pub fn weighted_bytes(&self) -> u64 {
        self.inline_bytes() + self.cache.weighted_size()
    }

    /// Number of values held (moka's part is approximate until maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.inline.count.load(Ordering::Relaxed) + self.cache.entry_count()
    }
}
