//! Everything that talks to etcd: connections with failover ([`client`]) and
//! the readiness probe ([`probe`]). The cache core never calls etcd itself.

pub mod client;
pub mod probe;

pub use client::{EtcdClient, EtcdError};
pub use probe::EtcdProbe;
