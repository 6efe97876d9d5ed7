//! Test support: real etcd child processes, the gateway in-process on port 0,
//! and bounded waits. Everything started here is stopped on drop.

#![allow(dead_code)] // not every suite uses every helper

pub mod cache;
pub mod demo;
pub mod etcd;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod sse;
pub mod tls;
pub mod wait;

use std::net::TcpListener;

use tempfile::TempDir;

pub use etcd::{Etcd, EtcdCluster, EtcdOptions};
pub use gateway::Gateway;
pub use proxy::Proxy;
pub use wait::wait_until;

/// A free loopback port (bound, read, released). Another etcd may hold 2379,
/// so tests never use fixed ports.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("local addr").port()
}

/// A temporary directory, in memory (`/dev/shm`) when available: etcd 3.4 has
/// no `--unsafe-no-fsync`, and fsync on tmpfs is free.
pub fn scratch_dir(prefix: &str) -> TempDir {
    let prefix = format!("ecg-{prefix}-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    builder.tempdir_in("/dev/shm").or_else(|_| builder.tempdir()).expect("create temp dir")
}
