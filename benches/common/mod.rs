//! Shared set-up of the cache benchmarks: a cache filled with `n` keys of
//! 100-byte values, without etcd (values stay in memory; the loader is never
//! called).

#![allow(dead_code)] // each bench uses part of it

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_cache_gateway::cache::UpstreamError;
use etcd_cache_gateway::cache::{
    CacheOptions, Event, EventKind, HistoryItem, KeyRange, KeyValue, LoadRequest, Loaded, Meta, ResetReason,
    Revision, RevisionBatch, RevisionPolicy, Source, ValueStore, WatchCache,
};
use futures_util::future::BoxFuture;

/// Value size of the benchmarks (the "100-byte values").
pub const VALUE_BYTES: usize = 100;

struct NoEtcd;

impl Source for NoEtcd {
    fn load(&self, _: LoadRequest) -> BoxFuture<'_, Result<Loaded, UpstreamError>> {
        Box::pin(async { Err(UpstreamError::Unavailable { message: "benchmarks never read etcd".into() }) })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        Box::pin(async { Err(UpstreamError::Unavailable { message: "benchmarks never read etcd".into() }) })
    }

    fn compact_revision(&self, _: Revision) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        Box::pin(async { Err(UpstreamError::Unavailable { message: "benchmarks never read etcd".into() }) })
    }

    fn history(
        &self,
        _: KeyRange,
        _: Revision,
        _: bool,
    ) -> futures_util::stream::BoxStream<'static, Result<HistoryItem, UpstreamError>> {
        let never = UpstreamError::Unavailable { message: "benchmarks never read etcd".into() };
        Box::pin(futures_util::stream::iter([Err(never)]))
    }
}

/// The key of item `i`: realistic shape, sorted like the numbers.
pub fn key(i: usize) -> Bytes {
    // Exactly sized, as the gateway keeps what it decodes from etcd.
    Bytes::from(format!("services/region-{:02}/svc-{i:08}", i % 16).into_bytes().into_boxed_slice())
}

/// A value of `VALUE_BYTES`.
pub fn value(i: usize) -> Bytes {
    let mut v = format!("{{\"id\":{i},\"payload\":\"").into_bytes();
    v.resize(VALUE_BYTES - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v.into_boxed_slice())
}

/// A source that is never read (benchmarks keep every value in memory).
pub fn no_etcd() -> Arc<dyn Source> {
    Arc::new(NoEtcd)
}

/// A loaded cache of `n` keys at revision `n`.
pub async fn filled_cache(n: usize, history_revisions: u64) -> WatchCache {
    let options = CacheOptions {
        name: "bench".into(),
        id: 0,
        consistent_read_timeout: Duration::from_secs(1),
        wait_timeout: Duration::from_secs(1),
        max_history_bytes: u64::MAX,
    };
    let values = ValueStore::new(u64::MAX / 4, None);
    let cache = WatchCache::new(options, values, no_etcd(), Box::new(RevisionPolicy { history_revisions }));
    fill(&cache, n).await;
    cache
}

/// Loads `n` keys at revision `n` into `cache`, as a bootstrap would: in
/// pages of 1,000 in key order (region by region), as etcd returns them.
pub async fn fill(cache: &WatchCache, n: usize) {
    let mut builder = cache.snapshot_builder(n as Revision + 1);
    let mut in_key_order = (0..16).flat_map(|region| (region..n).step_by(16)).peekable();
    while in_key_order.peek().is_some() {
        let page: Vec<KeyValue> = in_key_order
            .by_ref()
            .take(1000)
            .map(|i| KeyValue {
                key: key(i),
                value: value(i),
                meta: Meta {
                    create_revision: i as Revision + 1,
                    mod_revision: i as Revision + 1,
                    version: 1,
                    lease: 0,
                    value_len: VALUE_BYTES as u32,
                },
            })
            .collect();
        builder.add(page).await;
    }
    builder.install(ResetReason::Relisted).await;
}

/// A one-event batch updating key `i` at `revision`.
pub fn update(i: usize, revision: Revision) -> RevisionBatch {
    let meta = Meta {
        create_revision: 1,
        mod_revision: revision,
        version: 2,
        lease: 0,
        value_len: VALUE_BYTES as u32,
    };
    let kv = KeyValue { key: key(i), value: value(i), meta };
    RevisionBatch { revision, events: vec![Event { kind: EventKind::Put, kv, prev_kv: None }] }
}

/// Whether cargo runs this as a benchmark (`cargo bench`) rather than a test.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}
