//! Everything that talks to etcd: connections with failover ([`client`]),
//! the reflector that keeps a namespace's cache fresh ([`reflector`]), and
//! the cache's source ([`source`]). The cache core never calls etcd itself.

mod backoff;
pub mod client;
mod coalesce;
mod feed;
mod history;
pub mod keys;
pub mod reflector;
pub mod source;
mod watchdog;

pub use client::{EtcdClient, SetupError, classify};
pub use keys::Prefix;
pub use reflector::Reflector;
pub use source::EtcdSource;
