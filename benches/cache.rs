//! Cache micro-benchmarks: apply throughput, and get / 100-key range latency
//! at 10k and 1M keys. `cargo bench --bench cache`; under `cargo test` each
//! runs once at 10k keys as a smoke test.

mod common;

use std::sync::OnceLock;

use divan::{Bencher, counter::ItemsCount};
use etcd_cache_gateway::cache::{At, KeyRange, WatchCache};
use tokio::runtime::Runtime;

fn main() {
    divan::main();
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn sizes() -> &'static [usize] {
    if common::benchmarking() { &[10_000, 1_000_000] } else { &[10_000] }
}

fn cache(n: usize) -> &'static WatchCache {
    static SMALL: OnceLock<WatchCache> = OnceLock::new();
    static LARGE: OnceLock<WatchCache> = OnceLock::new();
    let cell = if n <= 10_000 { &SMALL } else { &LARGE };
    cell.get_or_init(|| runtime().block_on(common::filled_cache(n, 10_000)))
}

/// Events applied per second: one-event batches on a 10k-key cache with a
/// 10,000-revision window (so trimming and value invalidation are included).
#[divan::bench(sample_count = 20, sample_size = 1000)]
fn apply_one_event_batches(bencher: Bencher) {
    let cache = runtime().block_on(common::filled_cache(10_000, 10_000));
    let mut revision = cache.head();
    let mut i = 0;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        revision += 1;
        i = (i + 7919) % 10_000;
        runtime().block_on(cache.apply(common::update(i, revision))).unwrap();
    });
}

/// A point read at head: snapshot + index lookup + value from moka.
#[divan::bench(args = sizes())]
fn get(bencher: Bencher, n: usize) {
    let cache = cache(n);
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 7919) % n;
        let key = common::key(i);
        runtime().block_on(async {
            let snapshot = cache.snapshot(At::Head).await.unwrap();
            divan::black_box(snapshot.get(&key).await.unwrap())
        })
    });
}

/// A 100-key range with values at head.
#[divan::bench(args = sizes())]
fn range_100_keys(bencher: Bencher, n: usize) {
    bench_range(bencher, n, false);
}

/// A 100-key keys-only range (index only, no values).
#[divan::bench(args = sizes())]
fn range_100_keys_only(bencher: Bencher, n: usize) {
    bench_range(bencher, n, true);
}

fn bench_range(bencher: Bencher, n: usize, keys_only: bool) {
    let cache = cache(n);
    let mut i = 0;
    bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
        i = (i + 7919) % (n - 200);
        let range = KeyRange { start: common::key(i), end: None };
        runtime().block_on(async {
            let snapshot = cache.snapshot(At::Head).await.unwrap();
            divan::black_box(snapshot.range(&range, 100, keys_only).await.unwrap())
        })
    });
}
