//! The gateway's own cost per HTTP request, without sockets: a request
//! through the whole router (the `observe` middleware, authentication,
//! parsing, the cache, rendering) into a collected body, for a cache of 10k
//! keys with 100-byte values. `/healthz` is the floor every route pays.
//! `cargo bench --bench http`; under `cargo test` each runs once.
//!
//! `scripts/bench.sh` measures the same routes over TCP against etcd's JSON
//! gateway; this bench is the stable signal for the user-space part of
//! those numbers, which the shared machines make noisy.

mod common;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use divan::Bencher;
use etcd_cache_gateway::config::{ByteSize, Config};
use etcd_cache_gateway::etcd::EtcdClient;
use etcd_cache_gateway::{AppState, app, namespaces::Namespaces};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const KEYS: usize = 10_000;

fn main() {
    divan::main();
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

/// A router over a filled `default` namespace; `page_cache` sets
/// `http.page_cache_bytes` (0: every listing is rendered afresh).
fn router(page_cache: bool) -> &'static Router {
    static CACHED: OnceLock<Router> = OnceLock::new();
    static UNCACHED: OnceLock<Router> = OnceLock::new();
    let cell = if page_cache { &CACHED } else { &UNCACHED };
    cell.get_or_init(|| {
        runtime().block_on(async {
            let mut config = Config::default();
            // Never dialled: the cache is filled here, and every read is a hit.
            config.etcd.endpoints = vec!["http://127.0.0.1:9".into()];
            if !page_cache {
                config.http.page_cache_bytes = ByteSize(0);
            }
            let client = EtcdClient::connect(&config.etcd).await.unwrap();
            let namespaces = Namespaces::new(&config, &client);
            let ns = namespaces.get("default").unwrap();
            common::fill(&ns.cache, KEYS).await;
            let state =
                AppState::new(Arc::new(config), namespaces, CancellationToken::new(), |_| None).unwrap();
            app(state)
        })
    })
}

fn call(router: &Router, uri: &str) -> usize {
    runtime().block_on(async {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().len()
    })
}

#[divan::bench]
fn healthz(bencher: Bencher) {
    let router = router(true);
    bencher.bench_local(|| call(router, "/healthz"));
}

#[divan::bench]
fn point_get(bencher: Bencher) {
    let router = router(true);
    let uri = format!("/v1/namespaces/default/kv/{}", String::from_utf8_lossy(&common::key(KEYS / 2)));
    bencher.bench_local(|| call(router, &uri));
}

const LIST: &str = "/v1/namespaces/default/kv?prefix=services/region-01/&limit=100";

#[divan::bench]
fn list_100(bencher: Bencher) {
    let router = router(true);
    bencher.bench_local(|| call(router, LIST));
}

#[divan::bench]
fn list_100_without_page_cache(bencher: Bencher) {
    let router = router(false);
    bencher.bench_local(|| call(router, LIST));
}
