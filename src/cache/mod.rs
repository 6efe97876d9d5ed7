//! The watch cache: exactly etcd's state of one namespace at a known
//! revision, its recent history, and the values, fed by one writer (the
//! reflector) and read by any number of requests and subscribers.
//!
//! I/O-free apart from the [`ValueLoader`] trait, so the whole core is tested
//! against a model without etcd. See DESIGN.md, "The cache".

mod history;
pub mod policy;
mod read;
mod snapshot;
mod status;
mod subscription;
mod types;
mod values;
mod watch_cache;

#[cfg(test)]
mod tests;

pub use history::{Entry, EntryKind, History, Index, RENDER_SLOTS, Rendered};
pub use policy::{EvictionPolicy, RevisionPolicy, TtlPolicy};
pub use read::{At, ReadError};
pub use snapshot::{Page, Snapshot};
pub use status::{NamespaceStatus, Status};
pub use subscription::{Subscription, Update};
pub use types::{Event, EventKind, KeyRange, KeyValue, Meta, Revision, RevisionBatch, prefix_end, successor};
pub use values::{ENTRY_OVERHEAD_BYTES, LoadRequest, Loaded, ValueKey, ValueLoader, ValueStats, ValueStore};
pub use watch_cache::{ApplyError, CacheOptions, ResetMark, ResetReason, SnapshotBuilder, View, WatchCache};
