//! Everything that talks to etcd: connections with failover ([`client`]),
//! the reflector that keeps a namespace's cache fresh ([`reflector`]), and
//! the cache's loader ([`loader`]). The cache core never calls etcd itself.

mod backoff;
pub mod client;
mod feed;
pub mod keys;
pub mod loader;
pub mod reflector;
mod watchdog;

pub use client::{EtcdClient, SetupError, classify};
pub use keys::Prefix;
pub use loader::EtcdLoader;
pub use reflector::Reflector;
