//! The one integration test binary: suites against a real etcd.
//! Run one test with `cargo test --test it -- name`.

mod auth;
mod binary;
mod browser;
mod browser_client;
mod cache;
mod chromium;
mod compose;
mod cors;
mod errors;
mod etcd3gw;
mod etcd_v3;
mod kubernetes;
mod kubernetes_clients;
mod kubernetes_manifests;
mod kv;
mod kv_bad_input;
mod kv_consistency;
mod metrics;
mod openapi;
mod operations;
mod readme;
mod resume;
mod schemathesis;
mod server;
mod staleness;
mod support;
mod support_selftest;
mod ui;
mod watch;
mod watch_guarantees;
mod watchdog;
