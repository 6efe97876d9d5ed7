//! Memory per cached key, measured as resident set growth (not estimated):
//! load N keys with 100-byte values into a cache and divide the RSS increase
//! by N. `cargo bench --bench memory` uses 1M keys; `cargo test` 20k.

mod common;

use std::fs;

fn rss_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident_pages: u64 =
        statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm format");
    resident_pages * 4096
}

fn main() {
    let n = if common::benchmarking() { 1_000_000 } else { 20_000 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let before = rss_bytes();
    let cache = rt.block_on(common::filled_cache(n, 10_000));
    let after = rss_bytes();
    let per_key = (after.saturating_sub(before)) as f64 / n as f64;
    let key_bytes = common::key(0).len();
    println!(
        "memory: {n} keys, {key_bytes}-byte keys, {}-byte values: RSS +{:.1} MiB = {per_key:.0} bytes/key ({:.0} bytes/key beyond key+value)",
        common::VALUE_BYTES,
        (after - before) as f64 / (1024.0 * 1024.0),
        per_key - (key_bytes + common::VALUE_BYTES) as f64,
    );
    assert_eq!(cache.report().keys, n as u64);

    // The value store alone, to split the total between index and values.
    let before = rss_bytes();
    let values = etcd_cache_gateway::cache::ValueStore::new(u64::MAX / 4, None);
    rt.block_on(async {
        for i in 0..n {
            let key = etcd_cache_gateway::cache::ValueKey {
                namespace: 1,
                key: common::key(i),
                mod_revision: i as i64,
            };
            values.insert(key, common::value(i)).await;
        }
        values.run_pending_tasks().await;
    });
    let per_value = rss_bytes().saturating_sub(before) as f64 / n as f64;
    println!(
        "memory: value store alone: {per_value:.0} bytes/value ({:.0} beyond key+value; the weigher counts {})",
        per_value - (key_bytes + common::VALUE_BYTES) as f64,
        etcd_cache_gateway::cache::ENTRY_OVERHEAD_BYTES,
    );
}
