//! Everything that talks to etcd: connections with failover ([`client`]),
//! the reflector that keeps a namespace's cache fresh ([`reflector`]), and
//! the cache's loader ([`loader`]). The cache core never calls etcd itself.

mod backoff;
pub mod client;
pub mod keys;
pub mod loader;
pub mod reflector;

pub use client::{EtcdClient, EtcdError};
pub use keys::Prefix;
pub use loader::EtcdLoader;
pub use reflector::Reflector;
