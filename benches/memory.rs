//! Memory per cached key and per history event, measured as resident set
//! growth (not estimated), with a breakdown:
//!
//! - the index alone (keys and metadata; a value budget of 0 keeps no value),
//! - the index with the values kept in it (the `revision` policy),
//! - the same values in the value cache (moka; the `ttl` policy),
//! - the history window: bytes per event of batches applied on top of the
//!   loaded index (one random key per revision, and 128 consecutive keys per
//!   revision, as a bulk writer's transactions), which is what the history's
//!   byte bound charges per event.
//!
//! `cargo bench --bench memory` uses 1M keys; `cargo test` 20k.

mod common;

use std::fs;

use etcd_cache_gateway::cache::{
    CacheOptions, Event, EventKind, KeyValue, Meta, Revision, RevisionBatch, RevisionPolicy, ValueKey,
    ValueStore, WatchCache,
};

fn rss_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident_pages: u64 =
        statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm format");
    resident_pages * 4096
}

/// RSS growth per item of what `f` builds (kept alive until measured).
fn per_item<T>(items: usize, f: impl FnOnce() -> T) -> (f64, T) {
    let before = rss_bytes();
    let kept = f();
    let grown = rss_bytes().saturating_sub(before);
    (grown as f64 / items as f64, kept)
}

fn cache(value_budget: u64, history_revisions: u64) -> WatchCache {
    let options = CacheOptions {
        name: "bench".into(),
        id: 0,
        consistent_read_timeout: std::time::Duration::from_secs(1),
        wait_timeout: std::time::Duration::from_secs(1),
        max_history_bytes: u64::MAX,
    };
    let values = ValueStore::new(value_budget, None);
    WatchCache::new(options, values, common::no_etcd(), Box::new(RevisionPolicy { history_revisions }))
}

/// A batch putting keys `keys` at `revision`.
fn batch(keys: impl Iterator<Item = usize>, revision: Revision) -> RevisionBatch {
    let events = keys
        .map(|i| {
            let meta = Meta {
                create_revision: 1,
                mod_revision: revision,
                version: 2,
                lease: 0,
                value_len: common::VALUE_BYTES as u32,
            };
            Event {
                kind: EventKind::Put,
                kv: KeyValue { key: common::key(i), value: common::value(i), meta },
                prev_kv: None,
            }
        })
        .collect();
    RevisionBatch { revision, events }
}

/// Each measurement runs in a process of its own (this program, run again
/// with `MEMORY_PART`), so no part reuses memory another one freed.
fn main() {
    let n = if common::benchmarking() { 1_000_000 } else { 20_000 };
    match std::env::var("MEMORY_PART") {
        Ok(part) => measure(&part, n),
        Err(_) => {
            for part in ["index", "values", "history", "moka"] {
                let status = std::process::Command::new(std::env::current_exe().expect("own path"))
                    .args(std::env::args().skip(1))
                    .env("MEMORY_PART", part)
                    .status()
                    .expect("run a part");
                assert!(status.success(), "part {part} failed");
            }
        }
    }
}

fn measure(part: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw = (common::key(0).len() + common::VALUE_BYTES) as f64;
    let report = |what: &str, per: f64| {
        println!("memory: {what}: {per:.0} bytes/key ({:.2}x the {raw:.0} raw bytes)", per / raw);
    };
    let load = |value_budget| {
        let cache = cache(value_budget, 1_000_000);
        rt.block_on(common::fill(&cache, n));
        cache
    };
    match part {
        "index" => {
            let (per, _kept) = per_item(n, || load(1));
            report(&format!("{n} keys, index alone (no values kept)"), per);
        }
        "values" => {
            let (per, kept) = per_item(n, || load(u64::MAX / 4));
            assert_eq!(kept.report().keys, n as u64);
            report(&format!("{n} keys, index with the values kept in it (the revision policy)"), per);
        }
        "history" => {
            // Batches on top of the loaded index, in a window that keeps them all.
            let loaded = load(u64::MAX / 4);
            let revisions = n / 100;
            let head = loaded.head();
            let (random, _) = per_item(revisions, || {
                rt.block_on(async {
                    for r in 0..revisions {
                        let key = (r * 7919) % n; // spread over the keyspace
                        loaded.apply(batch(std::iter::once(key), head + 1 + r as Revision)).await.unwrap();
                    }
                })
            });
            println!("memory: history, one random key per revision: {random:.0} bytes/event");
            let head = loaded.head();
            let bulk_revisions = revisions / 128 * 4;
            let (bulk, _) = per_item(bulk_revisions * 128, || {
                rt.block_on(async {
                    for r in 0..bulk_revisions {
                        let first = (r * 128 * 31) % (n - 128);
                        loaded.apply(batch(first..first + 128, head + 1 + r as Revision)).await.unwrap();
                    }
                })
            });
            println!("memory: history, 128 consecutive keys per revision: {bulk:.0} bytes/event");
            let charged = loaded.view().history.bytes() as f64 / (revisions + bulk_revisions * 128) as f64;
            println!(
                "memory: history, charged against cache.max_history_bytes: {charged:.0} bytes/event ({} per event beyond keys and values)",
                etcd_cache_gateway::cache::HISTORY_EVENT_OVERHEAD_BYTES
            );
        }
        "moka" => {
            // The value cache alone (where the ttl policy keeps every value).
            let (per_value, _kept) = per_item(n, || {
                let values = ValueStore::new(u64::MAX / 4, Some(std::time::Duration::from_secs(3600)));
                rt.block_on(async {
                    for i in 0..n {
                        let key = ValueKey { namespace: 1, key: common::key(i), mod_revision: i as i64 };
                        values.insert(key, common::value(i)).await;
                    }
                    values.run_pending_tasks().await;
                });
                values
            });
            println!(
                "memory: value cache (moka) alone: {per_value:.0} bytes/value ({:.0} beyond key+value; the weigher counts {})",
                per_value - raw,
                etcd_cache_gateway::cache::ENTRY_OVERHEAD_BYTES,
            );
        }
        other => panic!("unknown MEMORY_PART {other}"),
    }
}
